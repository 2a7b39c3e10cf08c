//! Reading many series at once: one pass over the parts and the head for a whole set of series
//! (warming detectors, root-cause windows), instead of one pass per series.
//!
//! Parts are sorted by series id, so a row group is read only when its id range holds a wanted
//! series. Head batches carry a small Bloom filter of their series ([`IdBloom`]), so a read of a
//! few series skips the batches that cannot hold them.

use aiops_models::{IdHashMap, SampleBatch, SeriesId};
use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};

/// A Bloom filter over the series of one batch: two probes, ten bits per series (about 3 %
/// false positives), built in one pass over the id column.
#[derive(Debug, Clone)]
pub struct IdBloom {
    bits: Box<[u64]>,
    mask: u64,
}

impl IdBloom {
    /// The filter of `batch`'s series.
    pub fn of(batch: &SampleBatch) -> Self {
        let ids = batch.series_ids();
        // Rows of a series are usually together: count runs, not rows.
        let runs = 1 + ids.windows(2).filter(|w| w[0] != w[1]).count();
        let nbits = (runs * 10).next_power_of_two().max(64);
        let mut bits = vec![0u64; nbits / 64].into_boxed_slice();
        let mask = nbits as u64 - 1;
        let mut prev = None;
        for &id in ids {
            if prev == Some(id) {
                continue;
            }
            prev = Some(id);
            for b in Self::probes(id, mask) {
                bits[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        Self { bits, mask }
    }

    #[inline]
    fn probes(id: u64, mask: u64) -> [u64; 2] {
        // Ids are hashes already: two independent slices of their bits.
        [id & mask, (id >> 32 ^ id >> 13) & mask]
    }

    /// False when `id` is certainly not in the batch.
    #[inline]
    pub fn may_hold(&self, id: u64) -> bool {
        Self::probes(id, self.mask)
            .iter()
            .all(|&b| self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// The three columns of a sample-schema batch.
pub(crate) fn columns(
    batch: &RecordBatch,
) -> (&UInt64Array, &TimestampMillisecondArray, &Float64Array) {
    (
        batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("sample schema"),
        batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("sample schema"),
        batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("sample schema"),
    )
}

/// The series wanted by one multi-series read: id → first timestamp wanted.
#[derive(Debug)]
pub struct Wanted {
    from: IdHashMap<i64>,
    sorted: Vec<u64>,
    /// Smallest `from` of all.
    pub min_from: i64,
    /// Largest timestamp wanted.
    pub to: i64,
}

impl Wanted {
    /// Series with their own start, all up to `to`.
    pub fn new(series: &[(SeriesId, i64)], to: i64) -> Self {
        let mut sorted: Vec<u64> = series.iter().map(|(id, _)| id.0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        Self {
            from: series.iter().copied().collect(),
            sorted,
            min_from: series.iter().map(|s| s.1).min().unwrap_or(i64::MAX),
            to,
        }
    }

    /// True when a series in `lo..=hi` is wanted.
    pub fn any_in(&self, lo: u64, hi: u64) -> bool {
        let i = self.sorted.partition_point(|&x| x < lo);
        i < self.sorted.len() && self.sorted[i] <= hi
    }

    /// True when no series is wanted.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Visits the wanted rows of `batch`.
    pub fn visit(&self, batch: &RecordBatch, visit: &mut dyn FnMut(SeriesId, i64, f64)) {
        let (ids, ts, vs) = columns(batch);
        let (ids, ts, vs) = (ids.values(), ts.values(), vs.values());
        let mut last = None;
        let mut from = None;
        for i in 0..ids.len() {
            let id = ids[i];
            if last != Some(id) {
                last = Some(id);
                from = self.from.get(&SeriesId(id)).copied();
            }
            if let Some(f) = from {
                let t = ts[i];
                if t >= f && t <= self.to {
                    visit(SeriesId(id), t, vs[i]);
                }
            }
        }
    }

    /// True when `bloom` may hold a wanted series (checks each one for small sets).
    pub fn may_be_in(&self, bloom: &IdBloom) -> bool {
        self.sorted.len() > 64 || self.sorted.iter().any(|&id| bloom.may_hold(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::SampleBatchBuilder;

    #[test]
    fn a_bloom_holds_its_series_and_rejects_most_others() {
        let mut b = SampleBatchBuilder::with_capacity(3000);
        for id in 0..1000u64 {
            let id = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            b.push(SeriesId(id), 1, 1.0);
            b.push(SeriesId(id), 2, 1.0);
        }
        let batch = b.finish();
        let bloom = IdBloom::of(&batch);
        assert!(batch.series_ids().iter().all(|&id| bloom.may_hold(id)));
        let false_positives = (1000..11_000u64)
            .filter(|k| bloom.may_hold(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .count();
        assert!(false_positives < 600, "{false_positives} of 10000");
    }

    #[test]
    fn wanted_rows_are_visited_from_each_series_start() {
        let mut b = SampleBatchBuilder::with_capacity(10);
        for (id, t) in [(1, 10), (1, 20), (2, 10), (2, 20), (3, 10)] {
            b.push(SeriesId(id), t, t as f64);
        }
        let w = Wanted::new(&[(SeriesId(1), 15), (SeriesId(3), 0)], 100);
        let mut got = Vec::new();
        w.visit(&b.finish().samples, &mut |id, t, _| got.push((id.0, t)));
        assert_eq!(got, [(1, 20), (3, 10)]);
        assert!(w.any_in(2, 5) && !w.any_in(4, 9));
    }
}
