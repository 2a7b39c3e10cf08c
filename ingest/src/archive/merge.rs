//! Merging parts: a few parts of similar size, consecutive in sequence, become one sorted part.
//!
//! At a million series a WAL segment holds only a few samples of each series, so a fresh part
//! compresses poorly (each series' run of timestamps and values is short) and a read of one
//! series over a day would open thousands of files. Merging keeps both in check, the way an LSM
//! tree does: parts of similar size merge `fan_in` at a time into a part of the next tier, up to
//! `max_rows`. The merge streams: each input is read a batch at a time, rows are interleaved in
//! (series, time, input) order with a heap, and the output is written a row group at a time, so
//! memory stays at a few batches per input whatever the parts' sizes.
//!
//! A merged part is named by the range of segment sequence numbers it covers
//! (`<first>-<last>.parquet`). It is written through a synced temporary file and renamed; only
//! then are its inputs removed from the part list and deleted. After a crash in between, the
//! inputs are covered by the merged part and are deleted on open.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::part::{self, PartInfo, ROW_GROUP_ROWS};
use crate::IngestError;
use arrow::array::{Float64Array, TimestampMillisecondArray, UInt64Array};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// Rows read per batch from each input.
const READ_BATCH: usize = 65_536;

/// The parts to merge next, if any: the oldest run of `fan_in` consecutive parts whose sizes
/// are within a factor of two of each other and whose sum stays within `max_rows`.
pub fn plan(parts: &[PartInfo], fan_in: usize, max_rows: u64) -> Option<Vec<PartInfo>> {
    if fan_in < 2 || parts.len() < fan_in {
        return None;
    }
    let mut sorted: Vec<&PartInfo> = parts.iter().collect();
    sorted.sort_by_key(|p| p.first_seq);
    sorted.windows(fan_in).find_map(|w| {
        let rows: u64 = w.iter().map(|p| p.rows).sum();
        let lo = w.iter().map(|p| p.rows).min().unwrap_or(0);
        let hi = w.iter().map(|p| p.rows).max().unwrap_or(0);
        (rows <= max_rows && hi <= lo.saturating_mul(2).max(1))
            .then(|| w.iter().map(|p| (*p).clone()).collect())
    })
}

struct Input {
    reader: ParquetRecordBatchReader,
    ids: UInt64Array,
    ts: TimestampMillisecondArray,
    vs: Float64Array,
    row: usize,
}

impl Input {
    fn open(p: &PartInfo) -> Result<Self, IngestError> {
        let file = File::open(&p.path).map_err(IngestError::io("open", &p.path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(READ_BATCH).build())
            .map_err(IngestError::codec(format!("parquet {}", p.path.display())))?;
        let mut input = Self {
            reader,
            ids: UInt64Array::from(Vec::<u64>::new()),
            ts: TimestampMillisecondArray::from(Vec::<i64>::new()),
            vs: Float64Array::from(Vec::<f64>::new()),
            row: 0,
        };
        input.refill()?;
        Ok(input)
    }

    /// Loads the next batch when the current one is used up; false at the end.
    fn refill(&mut self) -> Result<bool, IngestError> {
        while self.row >= self.ids.len() {
            match self.reader.next() {
                None => return Ok(false),
                Some(b) => {
                    let b = b.map_err(IngestError::codec("parquet"))?;
                    let (ids, ts, vs) = super::read::columns(&b);
                    (self.ids, self.ts, self.vs) = (ids.clone(), ts.clone(), vs.clone());
                    self.row = 0;
                }
            }
        }
        Ok(true)
    }

    fn key(&self) -> (u64, i64) {
        (self.ids.value(self.row), self.ts.value(self.row))
    }
}

/// Merges `inputs` (consecutive, in sequence order) into one part at `path` covering their
/// sequence range. Inputs are left in place.
/// Merges `inputs` into one part at `path`; gives up (an error, nothing written under `path`)
/// as soon as `stop` is set, so that a shutdown never waits for a long merge.
pub fn merge(inputs: &[PartInfo], path: &Path, stop: &AtomicBool) -> Result<PartInfo, IngestError> {
    let first_seq = inputs
        .iter()
        .map(|p| p.first_seq)
        .min()
        .ok_or_else(|| IngestError::Pipeline("nothing to merge".into()))?;
    let seq = inputs.iter().map(|p| p.seq).max().unwrap_or(first_seq);
    let min_ts = inputs.iter().map(|p| p.min_ts).min().unwrap_or(i64::MAX);
    let max_ts = inputs.iter().map(|p| p.max_ts).max().unwrap_or(i64::MIN);
    if stop.load(Ordering::Relaxed) {
        return Err(IngestError::Stopped);
    }
    let mut sources = Vec::with_capacity(inputs.len());
    let mut heap = BinaryHeap::new();
    for (i, p) in inputs.iter().enumerate() {
        let input = Input::open(p)?;
        if input.row < input.ids.len() {
            let (id, t) = input.key();
            heap.push(Reverse((id, t, i)));
        }
        sources.push(input);
    }
    let (tmp, mut w) = part::create(path, min_ts, max_ts, part::MERGED_ZSTD_LEVEL)?;
    let (mut ids, mut ts, mut vs) = (
        Vec::with_capacity(ROW_GROUP_ROWS),
        Vec::with_capacity(ROW_GROUP_ROWS),
        Vec::with_capacity(ROW_GROUP_ROWS),
    );
    let mut rows = 0u64;
    let flush = |ids: &mut Vec<u64>,
                 ts: &mut Vec<i64>,
                 vs: &mut Vec<f64>,
                 w: &mut super::page_crc::PartWriter|
     -> Result<(), IngestError> {
        if ids.is_empty() {
            return Ok(());
        }
        part::write_rows(
            w,
            std::mem::take(ids),
            std::mem::take(ts),
            std::mem::take(vs),
        )
    };
    while let Some(Reverse((_, _, i))) = heap.pop() {
        // Emit from this input while it stays ahead of every other (a series' run at once).
        let next = heap.peek().map(|Reverse(k)| *k);
        let src = &mut sources[i];
        loop {
            ids.push(src.ids.value(src.row));
            ts.push(src.ts.value(src.row));
            vs.push(src.vs.value(src.row));
            rows += 1;
            src.row += 1;
            if ids.len() == ROW_GROUP_ROWS {
                if stop.load(Ordering::Relaxed) {
                    return Err(IngestError::Stopped);
                }
                flush(&mut ids, &mut ts, &mut vs, &mut w)?;
            }
            if !src.refill()? {
                break;
            }
            let (id, t) = src.key();
            if next.is_some_and(|k| (id, t, i) > k) {
                heap.push(Reverse((id, t, i)));
                break;
            }
        }
    }
    flush(&mut ids, &mut ts, &mut vs, &mut w)?;
    let sums = part::seal(w, &tmp, path)?;
    Ok(PartInfo {
        first_seq,
        seq,
        path: path.to_owned(),
        min_ts,
        max_ts,
        bytes: sums.bytes,
        rows,
        sums: std::sync::Arc::new(sums),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::{SampleBatchBuilder, SeriesId};

    fn info(first: u64, last: u64, rows: u64) -> PartInfo {
        PartInfo {
            first_seq: first,
            seq: last,
            path: format!("{first}-{last}").into(),
            min_ts: 0,
            max_ts: 0,
            bytes: 0,
            rows,
            sums: Default::default(),
        }
    }

    #[test]
    fn plans_runs_of_similar_parts_oldest_first() {
        let parts = vec![
            info(1, 8, 800),
            info(9, 9, 100),
            info(10, 10, 90),
            info(11, 11, 120),
        ];
        assert!(plan(&parts, 4, 10_000).is_none(), "800 is not like 100");
        let mut more = parts.clone();
        more.push(info(12, 12, 100));
        let p = plan(&more, 4, 10_000).expect("a plan");
        assert_eq!(p.iter().map(|p| p.seq).collect::<Vec<_>>(), [9, 10, 11, 12]);
        assert!(plan(&more, 4, 300).is_none(), "over max_rows");
    }

    #[test]
    fn merges_in_series_time_and_write_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inputs = Vec::new();
        for (seq, rows) in [
            (1u64, vec![(5u64, 10i64, 1.0), (9, 10, 1.0)]),
            (2, vec![(5, 20, 2.0), (7, 5, 2.0), (9, 10, 9.0)]),
            (3, vec![(1, 1, 3.0), (5, 15, 3.0)]),
        ] {
            let mut b = SampleBatchBuilder::with_capacity(4);
            for (id, t, v) in rows {
                b.push(SeriesId(id), t, v);
            }
            let path = dir.path().join(format!("{seq}.parquet"));
            inputs.push(part::write_part(seq, &path, &[b.finish()]).expect("writes"));
        }
        let out = dir.path().join("1-3.parquet");
        let stop = AtomicBool::new(true);
        assert!(matches!(
            merge(&inputs, &out, &stop),
            Err(IngestError::Stopped)
        ));
        assert!(!out.exists() && !out.with_extension("parquet.tmp").exists());
        stop.store(false, Ordering::Relaxed);
        let merged = merge(&inputs, &out, &stop).expect("merges");
        assert_eq!((merged.first_seq, merged.seq, merged.rows), (1, 3, 7));
        assert_eq!((merged.min_ts, merged.max_ts), (1, 20));
        let mut got = Vec::new();
        for id in [1, 5, 7, 9] {
            let mut s = Vec::new();
            part::read_series(&merged, id, 0, 100, &mut s).expect("reads");
            got.push((id, s));
        }
        assert_eq!(
            got,
            vec![
                (1, vec![(1, 3.0)]),
                (5, vec![(10, 1.0), (15, 3.0), (20, 2.0)]),
                (7, vec![(5, 2.0)]),
                // The later write of (9, 10) comes last, so reads let it win.
                (9, vec![(10, 1.0), (10, 9.0)]),
            ]
        );
    }
}
