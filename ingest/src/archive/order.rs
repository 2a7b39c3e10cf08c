//! The order a segment's rows take in its part: by series, then time, without sorting rows.
//!
//! A remote_write body (and most other sources) holds each series' samples one after another,
//! so a segment is made of *runs*: stretches of one series in non-decreasing time inside one
//! batch. Only runs are sorted (by series, then arrival), and rows are then copied a run at a
//! time — on bodies of 10 samples per series that sorts a tenth of the keys and copies
//! contiguous slices instead of gathering rows one by one. A series whose runs overlap in time
//! (out-of-order or rewritten samples) falls back to its rows sorted by time, arrival breaking
//! ties, so a rewritten (series, timestamp) keeps its order and reads let the newest write win.

/// Columns of one head batch: series ids, timestamps, values.
pub(super) type Columns<'a> = (&'a [u64], &'a [i64], &'a [f64]);

/// A stretch of rows of one batch, copied as one: `(batch, first row, rows)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub batch: u32,
    pub start: u32,
    pub len: u32,
}

/// Where run `r` of a batch ends: the first row of another series or of an earlier time.
fn run_end(ids: &[u64], ts: &[i64], r: usize) -> usize {
    let id = ids[r];
    let mut e = r + 1;
    while e < ids.len() && ids[e] == id && ts[e] >= ts[e - 1] {
        e += 1;
    }
    e
}

/// The pieces of `cols` in (series, time, arrival) order. Every batch and row index must fit
/// in 32 bits (checked by the caller).
pub(super) fn pieces(cols: &[Columns<'_>]) -> Vec<Piece> {
    // One key per run: series id, then batch and row (arrival order).
    let mut keys: Vec<u128> = Vec::new();
    for (b, &(ids, ts, _)) in cols.iter().enumerate() {
        let mut r = 0;
        while r < ids.len() {
            keys.push((u128::from(ids[r]) << 64) | ((b as u128) << 32) | r as u128);
            r = run_end(ids, ts, r);
        }
    }
    keys.sort_unstable();
    let at = |k: u128| ((k >> 32) as u32 as usize, k as u32 as usize);
    let mut out = Vec::with_capacity(keys.len());
    let mut start = 0;
    while start < keys.len() {
        let id = (keys[start] >> 64) as u64;
        let mut end = start;
        // Runs of this series, and whether each starts no earlier than the previous ended.
        let mut in_order = true;
        let mut last_ts = i64::MIN;
        while end < keys.len() && (keys[end] >> 64) as u64 == id {
            let (b, r) = at(keys[end]);
            let (ids, ts, _) = cols[b];
            let e = run_end(ids, ts, r);
            in_order &= ts[r] >= last_ts;
            last_ts = ts[e - 1];
            out.push(Piece {
                batch: b as u32,
                start: r as u32,
                len: (e - r) as u32,
            });
            end += 1;
        }
        if !in_order {
            // Rare: this series' rows, one by one, by time then arrival.
            let runs = out.split_off(out.len() - (end - start));
            let mut rows: Vec<(i64, u32, u32)> = runs
                .iter()
                .flat_map(|p| {
                    let ts = cols[p.batch as usize].1;
                    (p.start..p.start + p.len).map(move |r| (ts[r as usize], p.batch, r))
                })
                .collect();
            rows.sort_unstable();
            out.extend(rows.into_iter().map(|(_, batch, start)| Piece {
                batch,
                start,
                len: 1,
            }));
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The row-by-row order the pieces must reproduce.
    fn naive(cols: &[Columns<'_>]) -> Vec<(usize, usize)> {
        let mut rows: Vec<(u64, i64, usize, usize)> = cols
            .iter()
            .enumerate()
            .flat_map(|(b, c)| (0..c.0.len()).map(move |r| (c.0[r], c.1[r], b, r)))
            .collect();
        rows.sort_unstable();
        rows.into_iter().map(|(_, _, b, r)| (b, r)).collect()
    }

    fn expand(pieces: &[Piece]) -> Vec<(usize, usize)> {
        pieces
            .iter()
            .flat_map(|p| (p.start..p.start + p.len).map(move |r| (p.batch as usize, r as usize)))
            .collect()
    }

    #[test]
    fn runs_of_a_series_are_copied_whole() {
        let (ids, ts) = ([7u64, 7, 7, 3, 3], [10i64, 20, 30, 10, 20]);
        let vs = [0.0; 5];
        let p = pieces(&[(&ids, &ts, &vs)]);
        assert_eq!(
            p,
            vec![
                Piece {
                    batch: 0,
                    start: 3,
                    len: 2
                },
                Piece {
                    batch: 0,
                    start: 0,
                    len: 3
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn pieces_give_the_rows_in_series_time_arrival_order(
            batches in prop::collection::vec(
                prop::collection::vec((0u64..4, 0i64..6), 0..24), 1..4)
        ) {
            let owned: Vec<(Vec<u64>, Vec<i64>, Vec<f64>)> = batches
                .iter()
                .map(|b| (
                    b.iter().map(|r| r.0).collect(),
                    b.iter().map(|r| r.1).collect(),
                    vec![0.0; b.len()],
                ))
                .collect();
            let cols: Vec<Columns<'_>> =
                owned.iter().map(|(i, t, v)| (&i[..], &t[..], &v[..])).collect();
            prop_assert_eq!(expand(&pieces(&cols)), naive(&cols));
        }
    }
}
