//! Parquet parts: one per compacted WAL segment, rows sorted by `(series_id, timestamp)`,
//! zstd-compressed, with the time range in the footer's key-value metadata so that queries
//! and retention can skip a part without reading it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiops_models::{SampleBatch, sample_schema};
use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::integrity::{self, PartSums};
use super::page_crc::PartWriter;
use crate::IngestError;

pub(super) const MIN_TS: &str = "aiops.min_timestamp_ms";
pub(super) const MAX_TS: &str = "aiops.max_timestamp_ms";
pub(super) const ROW_GROUP_ROWS: usize = 128 * 1024;
/// zstd level of parts compacted from the WAL (written while ingest waits on the head).
pub const FRESH_ZSTD_LEVEL: i32 = 1;
/// zstd level of merged parts (written in the background, kept long).
pub(super) const MERGED_ZSTD_LEVEL: i32 = 3;

/// What the archive knows of a part without opening it again.
#[derive(Debug, Clone)]
pub struct PartInfo {
    /// The first WAL segment it holds (its only one unless parts were merged).
    pub first_seq: u64,
    /// The last WAL segment it holds.
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Smallest sample timestamp, ms.
    pub min_ts: i64,
    /// Largest sample timestamp, ms.
    pub max_ts: i64,
    /// Size on disk.
    pub bytes: u64,
    /// Samples.
    pub rows: u64,
    /// Its checksums (see `integrity`).
    pub sums: Arc<PartSums>,
}

/// How parts are encoded. Rows are sorted by (series, time), so series ids and timestamps are
/// delta-encoded (a series scraped every 15 s has a constant delta: its timestamps cost almost
/// nothing) and values are byte-stream-split (the bytes of each position together, so that
/// zstd sees exponents next to exponents); no dictionaries. On the cardinality workload
/// (counters, integer and full-precision float gauges) this takes a part from 8.5 to 2.5 bytes
/// per sample and writes it 3.5× faster than Parquet's defaults.
pub fn writer_properties(zstd_level: i32) -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).expect("levels 1 to 22 are valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for (column, encoding) in [
        ("series_id", Encoding::DELTA_BINARY_PACKED),
        ("timestamp", Encoding::DELTA_BINARY_PACKED),
        ("value", Encoding::BYTE_STREAM_SPLIT),
    ] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), encoding);
    }
    b
}

/// Writes `batches` as a sorted Parquet file at `path` (through a temporary file, fsynced and
/// renamed, so a crash never leaves a half part under the final name).
pub fn write_part(seq: u64, path: &Path, batches: &[SampleBatch]) -> Result<PartInfo, IngestError> {
    // Rows are gathered straight from the head's batches (no concatenated copy of the segment).
    let cols: Vec<super::order::Columns<'_>> = batches
        .iter()
        .map(|b| (b.series_ids(), b.timestamps(), b.values()))
        .collect();
    let rows: usize = cols.iter().map(|c| c.0.len()).sum();
    if cols.len() > u32::MAX as usize || cols.iter().any(|c| c.0.len() > u32::MAX as usize) {
        return Err(IngestError::Pipeline(
            "segment too large for one part".into(),
        ));
    }
    // Sorted by (series, time), a run of one series at a time (see `order`).
    let pieces = super::order::pieces(&cols);
    let (min_ts, max_ts) = cols
        .iter()
        .flat_map(|c| c.1.iter())
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    // A fresh part is short-lived (it is merged soon): compressed fast; merges compress harder.
    let (tmp, mut w) = create(path, min_ts, max_ts, FRESH_ZSTD_LEVEL)?;
    // A row group at a time: the sorted copy never exists whole beside the segment.
    let mut pieces = pieces.into_iter().peekable();
    let mut cut: Option<super::order::Piece> = None;
    let mut left = rows;
    while left > 0 {
        let n = left.min(ROW_GROUP_ROWS);
        let (mut ids, mut ts, mut vs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        while ids.len() < n {
            let Some(mut p) = cut.take().or_else(|| pieces.next()) else {
                break;
            };
            let room = (n - ids.len()) as u32;
            if p.len > room {
                // The rest of this piece opens the next row group.
                cut = Some(super::order::Piece {
                    start: p.start + room,
                    len: p.len - room,
                    ..p
                });
                p.len = room;
            }
            let (b, r) = (p.batch as usize, p.start as usize);
            let e = r + p.len as usize;
            ids.extend_from_slice(&cols[b].0[r..e]);
            ts.extend_from_slice(&cols[b].1[r..e]);
            vs.extend_from_slice(&cols[b].2[r..e]);
        }
        left -= ids.len();
        write_rows(&mut w, ids, ts, vs)?;
    }
    let sums = seal(w, &tmp, path)?;
    Ok(PartInfo {
        first_seq: seq,
        seq,
        path: path.to_owned(),
        min_ts,
        max_ts,
        bytes: sums.bytes,
        rows: rows as u64,
        sums: Arc::new(sums),
    })
}

/// Reads the footer of a part holding segments `first_seq..=seq`, checked against `sums`.
pub fn open_part(
    first_seq: u64,
    seq: u64,
    path: &Path,
    sums: Arc<PartSums>,
) -> Result<PartInfo, IngestError> {
    let file = File::open(path).map_err(IngestError::io("open", path))?;
    integrity::verify_footer(&file, &sums)?;
    let bytes = sums.bytes;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(IngestError::codec(
        format!("parquet footer of {}", path.display()),
    ))?;
    let meta = builder.metadata().file_metadata();
    let kv = |key: &str| -> Option<i64> {
        meta.key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_deref()?
            .parse()
            .ok()
    };
    let (min_ts, max_ts) = kv(MIN_TS).zip(kv(MAX_TS)).ok_or_else(|| {
        IngestError::damaged(format!(
            "{} lacks the aiops time range metadata",
            path.display()
        ))
    })?;
    Ok(PartInfo {
        first_seq,
        seq,
        path: path.to_owned(),
        min_ts,
        max_ts,
        bytes,
        rows: meta.num_rows() as u64,
        sums,
    })
}

/// Reads the row groups of a part whose `series_id` range `holds` accepts (a group without
/// statistics is always read), calling `each` with every batch. The footer and each group read
/// are checked against the part's checksums first: damage is an [`IngestError::ArchiveCorrupt`],
/// a part that vanished (merged or expired meanwhile) an [`IngestError::ArchiveIo`].
fn read_groups(
    part: &PartInfo,
    holds: impl Fn(u64, u64) -> bool,
    mut each: impl FnMut(&RecordBatch),
) -> Result<(), IngestError> {
    let damaged = |reason: String| IngestError::ArchiveCorrupt {
        path: part.path.clone(),
        reason,
    };
    let file = File::open(&part.path).map_err(IngestError::io("open", &part.path))?;
    integrity::verify_footer(&file, &part.sums).map_err(|e| damaged(e.to_string()))?;
    let check = file
        .try_clone()
        .map_err(IngestError::io("open", &part.path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| damaged(format!("parquet footer: {e}")))?;
    let conv =
        StatisticsConverter::try_new("series_id", builder.schema(), builder.parquet_schema())
            .map_err(|e| damaged(format!("statistics: {e}")))?;
    let meta = builder.metadata().clone();
    let groups = meta.row_groups();
    let stat = |a: Result<arrow::array::ArrayRef, _>| -> Result<UInt64Array, IngestError> {
        a.map_err(|e: parquet::errors::ParquetError| damaged(format!("statistics: {e}")))?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| damaged("series_id statistics type".to_owned()))
    };
    let mins = stat(conv.row_group_mins(groups))?;
    let maxs = stat(conv.row_group_maxes(groups))?;
    let chosen: Vec<usize> = (0..groups.len())
        .filter(|&i| mins.is_null(i) || maxs.is_null(i) || holds(mins.value(i), maxs.value(i)))
        .collect();
    if chosen.is_empty() {
        return Ok(());
    }
    for &i in &chosen {
        integrity::verify_group(&check, &meta, &part.sums, i)
            .map_err(|e| damaged(e.to_string()))?;
    }
    let reader = builder
        .with_row_groups(chosen)
        .build()
        .map_err(|e| damaged(format!("parquet: {e}")))?;
    for batch in reader {
        each(&batch.map_err(|e| damaged(format!("parquet: {e}")))?);
    }
    Ok(())
}

/// Samples of `series_id` with `start <= ts <= end` in a part, reading only the row groups whose
/// statistics can contain it.
pub fn read_series(
    part: &PartInfo,
    series_id: u64,
    start: i64,
    end: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), IngestError> {
    read_groups(
        part,
        |lo, hi| lo <= series_id && series_id <= hi,
        |batch| collect(batch, series_id, start, end, out),
    )
}

/// Visits the rows of a part that `wanted` asks for, reading only the row groups whose id
/// range holds a wanted series.
pub fn scan(
    part: &PartInfo,
    wanted: &super::read::Wanted,
    visit: &mut dyn FnMut(aiops_models::SeriesId, i64, f64),
) -> Result<(), IngestError> {
    read_groups(
        part,
        |lo, hi| wanted.any_in(lo, hi),
        |batch| wanted.visit(batch, visit),
    )
}

/// Creates the temporary file of a part going to `path` and its writer: the part's encodings
/// at `zstd_level`, its time range in the footer.
pub(super) fn create(
    path: &Path,
    min_ts: i64,
    max_ts: i64,
    zstd_level: i32,
) -> Result<(PathBuf, PartWriter), IngestError> {
    let props = writer_properties(zstd_level)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(MIN_TS.into(), min_ts.to_string()),
            KeyValue::new(MAX_TS.into(), max_ts.to_string()),
        ]))
        .build();
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(IngestError::io("create", &tmp))?;
    Ok((tmp, PartWriter::new(file, props)?))
}

/// Writes one row group's columns (rows already in part order).
pub(super) fn write_rows(
    w: &mut PartWriter,
    ids: Vec<u64>,
    ts: Vec<i64>,
    vs: Vec<f64>,
) -> Result<(), IngestError> {
    let batch = RecordBatch::try_new(
        sample_schema(),
        vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(vs)),
        ],
    )
    .map_err(IngestError::codec("batch"))?;
    w.write(&batch)
}

/// Closes a part written with [`create`]: fsync, checksums, then rename into place.
pub(super) fn seal(w: PartWriter, tmp: &Path, path: &Path) -> Result<PartSums, IngestError> {
    let file = w.finish()?;
    file.sync_all().map_err(IngestError::io("fsync", &tmp))?;
    let sums = integrity::sums_of(tmp)?;
    std::fs::rename(tmp, path).map_err(IngestError::io("rename to", path))?;
    Ok(sums)
}

/// Appends the samples of `series_id` in `[start, end]` from a sample-schema batch.
pub fn collect(
    batch: &RecordBatch,
    series_id: u64,
    start: i64,
    end: i64,
    out: &mut Vec<(i64, f64)>,
) {
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .expect("sample schema");
    let ts = batch
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("sample schema");
    let vs = batch
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("sample schema");
    for (i, &id) in ids.values().iter().enumerate() {
        if id == series_id {
            let t = ts.value(i);
            if (start..=end).contains(&t) {
                out.push((t, vs.value(i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::{SampleBatchBuilder, SeriesId};

    #[test]
    fn a_series_that_arrived_out_of_order_is_written_in_time_order_newest_write_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = SampleBatchBuilder::with_capacity(4);
        a.push(SeriesId(7), 30, 3.0);
        a.push(SeriesId(7), 10, 1.0);
        a.push(SeriesId(5), 10, 5.0);
        let mut b = SampleBatchBuilder::with_capacity(4);
        b.push(SeriesId(7), 20, 2.0);
        b.push(SeriesId(7), 10, 9.0);
        let path = dir.path().join("1.parquet");
        let info = write_part(1, &path, &[a.finish(), b.finish()]).expect("writes");
        let mut out = Vec::new();
        read_series(&info, 7, 0, 100, &mut out).expect("reads");
        // The rewrite of t=10 (9.0, second batch) comes after the first write.
        assert_eq!(out, vec![(10, 1.0), (10, 9.0), (20, 2.0), (30, 3.0)]);
    }

    #[test]
    fn writes_sorted_part_and_reads_a_series_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = SampleBatchBuilder::with_capacity(4);
        a.push(SeriesId(9), 20, 2.0);
        a.push(SeriesId(3), 10, 1.0);
        let mut b = SampleBatchBuilder::with_capacity(4);
        b.push(SeriesId(9), 10, 1.0);
        b.push(SeriesId(u64::MAX), 30, 3.0);
        let path = dir.path().join("1.parquet");
        let info = write_part(1, &path, &[a.finish(), b.finish()]).expect("writes");
        assert_eq!((info.min_ts, info.max_ts, info.rows), (10, 30, 4));
        let reopened = open_part(1, 1, &path, info.sums.clone()).expect("opens");
        assert_eq!((reopened.min_ts, reopened.max_ts), (10, 30));
        let mut out = Vec::new();
        read_series(&reopened, 9, 0, 100, &mut out).expect("reads");
        assert_eq!(out, vec![(10, 1.0), (20, 2.0)]);
        out.clear();
        read_series(&reopened, u64::MAX, 0, 100, &mut out).expect("reads");
        assert_eq!(out, vec![(30, 3.0)]);
        out.clear();
        read_series(&reopened, 9, 15, 100, &mut out).expect("reads");
        assert_eq!(out, vec![(20, 2.0)]);
    }
}
