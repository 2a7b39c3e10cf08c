//! The training rows: the archive's Parquet parts read over a time range into one run per series,
//! ordered by time, as the live stage would have seen them — non-finite values dropped, the
//! newest write of a timestamp winning (a later part, or a later row of one part), counters
//! turned into per-second rates (a reset counts from zero, as PromQL's `rate` does) and, when
//! the readings either side are whole numbers, the events counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType, UInt64Type,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use aiops_models::garbage;

use crate::DetectError;

/// Rows decoded per batch.
const BATCH_ROWS: usize = 64 * 1024;

/// One training row of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Row {
    /// Sample time, Unix ms.
    pub ts: i64,
    /// The value (counters: the per-second rate since the previous reading).
    pub value: f64,
    /// Counters whose readings either side are whole numbers: the events counted.
    pub count: Option<f64>,
}

/// Rows by series (ascending id); each series' rows ascending in time, one per timestamp.
pub(crate) type Rows = BTreeMap<u64, Vec<Row>>;

/// A Parquet failure as our error, naming the file and what was being done.
pub(crate) fn parquet_error<'a>(
    path: &'a Path,
    doing: &'static str,
) -> impl Fn(ParquetError) -> DetectError + Copy + 'a {
    move |source| DetectError::Parquet {
        path: path.to_owned(),
        doing,
        source,
    }
}

/// Reads the training rows of `parts` (oldest first) between `from_ms` and `to_ms` inclusive;
/// series in `counters` become rates.
pub(crate) fn training_rows(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Rows, DetectError> {
    let mut raw: HashMap<u64, Vec<(i64, f64)>> = HashMap::new();
    for part in parts {
        read_batches(
            part,
            "reading the archive",
            &["series_id", "timestamp", "value"],
            |batch| {
                let ids = primitive::<UInt64Type>(batch, "series_id", part)?;
                let ts = timestamps(batch, part)?;
                let vs = primitive::<Float64Type>(batch, "value", part)?;
                let valid = |i: usize| ids.is_valid(i) && ts.is_valid(i) && vs.is_valid(i);
                let (ids, ts_v, vs_v) = (ids.values(), ts.values(), vs.values());
                // Parts are written by series, so rows come in runs: one map lookup per run.
                let mut i = 0;
                while i < ids.len() {
                    let id = ids[i];
                    let run = raw.entry(id).or_default();
                    while i < ids.len() && ids[i] == id {
                        let (t, v) = (ts_v[i], vs_v[i]);
                        if valid(i) && (from_ms..=to_ms).contains(&t) && v.is_finite() {
                            run.push((t, v));
                        }
                        i += 1;
                    }
                }
                Ok(())
            },
        )?;
    }
    Ok(raw
        .into_iter()
        .filter_map(|(id, mut samples)| {
            // A stable sort: of two writes of one timestamp the newer stays behind the older.
            samples.sort_by_key(|s| s.0);
            samples.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    *earlier = *later;
                }
                same
            });
            let rows = if counters.contains(&id) {
                rates(&samples)
            } else {
                samples
                    .iter()
                    .map(|&(ts, value)| Row {
                        ts,
                        value,
                        count: None,
                    })
                    .collect()
            };
            (!rows.is_empty()).then_some((id, rows))
        })
        .collect())
}

/// A counter's readings as per-second rates: the first reading only starts the series, and a
/// reading below the previous one is a reset (the increase counted from zero).
///
/// As live scoring steps a counter (`crate::reading`), a garbage reading — its step up far
/// beyond the middle of the history's rates ([`aiops_models::garbage`]) — is not where the
/// next step starts (once): the next reading is stepped from the one before it, so its rate is
/// the counter's own and not its whole total over one interval, read as a reset. Training then
/// leaves the garbage step out with the other garbage (`fit_series`).
fn rates(readings: &[(i64, f64)]) -> Vec<Row> {
    let plain = steps(readings, None);
    let values: Vec<f64> = plain.iter().map(|r| r.value).collect();
    match garbage::middle_of(&values) {
        Some(range)
            if plain
                .iter()
                .any(|r| garbage::far_beyond(r.value, range.0, range.1)) =>
        {
            steps(readings, Some(range))
        }
        _ => plain,
    }
}

/// The steps between `readings`; with `range`, a reading whose step went up far beyond it is
/// stepped over (see [`rates`]).
fn steps(readings: &[(i64, f64)], range: Option<(f64, f64)>) -> Vec<Row> {
    let mut out = Vec::with_capacity(readings.len());
    let Some((&first, rest)) = readings.split_first() else {
        return out;
    };
    let (mut from, mut held) = (first, false);
    for &now in rest {
        let Some((value, count)) = aiops_models::counter_step(from, now) else {
            continue;
        };
        if value.is_finite() {
            out.push(Row {
                ts: now.0,
                value,
                count,
            });
        }
        let far = range.is_some_and(|(lo, hi)| garbage::far_beyond(value, lo, hi));
        held = garbage::holds_back(from.1, now.1, far, held);
        if !held {
            from = now;
        }
    }
    out
}

/// The first and last sample time in `parts`, Unix ms (`None` when they hold no rows).
pub fn time_range(parts: &[PathBuf]) -> Result<Option<(i64, i64)>, DetectError> {
    let mut range: Option<(i64, i64)> = None;
    for part in parts {
        read_batches(part, "reading the archive", &["timestamp"], |batch| {
            let ts = timestamps(batch, part)?;
            for (i, &t) in ts.values().iter().enumerate() {
                if ts.is_valid(i) {
                    range = Some(range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
                }
            }
            Ok(())
        })?;
    }
    Ok(range)
}

/// Calls `f` with every batch of `columns` of the Parquet file at `path`.
pub(crate) fn read_batches(
    path: &Path,
    doing: &'static str,
    columns: &[&str],
    mut f: impl FnMut(&RecordBatch) -> Result<(), DetectError>,
) -> Result<(), DetectError> {
    let err = parquet_error(path, doing);
    let file = File::open(path).map_err(|source| DetectError::Io {
        path: path.to_owned(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(err)?;
    for batch in reader {
        f(&batch.map_err(|e| err(e.into()))?)?;
    }
    Ok(())
}

/// A column that is missing or of another type, as our error.
fn bad_column(path: &Path, name: &str, found: Option<&DataType>, want: &str) -> DetectError {
    DetectError::BadInput {
        path: path.to_owned(),
        reason: match found {
            Some(t) => format!("column {name} is {t}, expected {want}"),
            None => format!("no column {name}"),
        },
    }
}

/// The column `name` of `batch` as primitive type `T` (`UInt64Type`, `Float64Type`, …).
pub(crate) fn primitive<'b, T: ArrowPrimitiveType>(
    batch: &'b RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'b PrimitiveArray<T>, DetectError> {
    let c = batch.column_by_name(name);
    c.and_then(|c| c.as_primitive_opt::<T>()).ok_or_else(|| {
        bad_column(
            path,
            name,
            c.map(|c| c.data_type()),
            &T::DATA_TYPE.to_string(),
        )
    })
}

/// The `timestamp` column of `batch` in Unix ms (a millisecond timestamp, or plain integers).
fn timestamps<'b>(batch: &'b RecordBatch, path: &Path) -> Result<TimestampsMs<'b>, DetectError> {
    let c = batch.column_by_name("timestamp");
    match c.map(|c| c.data_type()) {
        Some(DataType::Timestamp(TimeUnit::Millisecond, _)) => c
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .map(|a| TimestampsMs {
                values: a.values(),
                array: a,
            }),
        Some(DataType::Int64) => {
            c.and_then(|c| c.as_primitive_opt::<Int64Type>())
                .map(|a| TimestampsMs {
                    values: a.values(),
                    array: a,
                })
        }
        _ => None,
    }
    .ok_or_else(|| {
        bad_column(
            path,
            "timestamp",
            c.map(|c| c.data_type()),
            "Timestamp(ms) or Int64",
        )
    })
}

/// A timestamp column's values (Unix ms) and validity.
struct TimestampsMs<'b> {
    values: &'b [i64],
    array: &'b dyn Array,
}

impl TimestampsMs<'_> {
    fn values(&self) -> &[i64] {
        self.values
    }

    fn is_valid(&self, i: usize) -> bool {
        self.array.is_valid(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_reading_is_stepped_over_as_live_scoring_does() {
        // A young counter (10–14 a second at 15 s) with one reading of 10⁹. Stepped from the
        // garbage, the next reading read as a reset: its rate, the whole total over 15 s
        // (about 2,000 a second), is not far beyond the rates, and training learnt it.
        let mut total = 1000.0;
        let mut readings: Vec<(i64, f64)> = (0..400)
            .map(|i| {
                total += 150.0 + (i % 7 * 10) as f64;
                (i * 15_000, total)
            })
            .collect();
        let (before, after) = (readings[199], readings[201]);
        readings[200].1 = 1e9;
        let rows = rates(&readings);
        assert_eq!(rows.len(), 399);
        for r in &rows {
            match r.ts / 15_000 {
                200 => assert!(r.value > 6e7, "{r:?}"),
                201 => assert_eq!(r.value, (after.1 - before.1) / 30.0, "{r:?}"),
                _ => assert!((10.0..=14.0).contains(&r.value), "{r:?}"),
            }
        }
    }

    #[test]
    fn a_counter_reset_counts_from_zero_and_fractions_are_not_counted() {
        let rows = rates(&[
            (0, 10.0),
            (1000, 15.0),
            (3000, 4.0),
            (4000, 4.5),
            (5000, 5.5),
        ]);
        let got: Vec<(i64, f64, Option<f64>)> =
            rows.iter().map(|r| (r.ts, r.value, r.count)).collect();
        assert_eq!(
            got,
            vec![
                (1000, 5.0, Some(5.0)),
                (3000, 2.0, Some(4.0)),
                (4000, 0.5, None),
                (5000, 1.0, None),
            ]
        );
    }
}
