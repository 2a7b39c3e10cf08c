//! Training from the archive (`aiops train`): per-series seasonal profiles and score
//! calibration, so that a series starts scoring well the moment it is (re)seen instead of after
//! days of learning.
//!
//! 1. **Profiles (polars).** The archive's Parquet parts are scanned lazily over the training
//!    range; counters become per-second rates (resets as in PromQL); each series gets robust
//!    statistics (median level, range, mean absolute step) and a time-of-day profile: the median
//!    of every 15-minute bin, so past anomalies do not bend it.
//! 2. **Calibration (the production detector).** A [`Detector`] seeded with the profile replays
//!    the series' training rows; what it ends with — the long-run distribution of its surprise,
//!    its scales — is the calibration. It is the same code that scores live data.
//!
//! The result is a table (one row per series, Parquet) that the registry versions and
//! `serve` loads: a series first seen starts from its row ([`SeriesProfile::detector`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::score::DAY_BINS;
use crate::{DetectError, Detector, DetectorConfig};

const DAY_MS: i64 = 86_400_000;

/// What one series learned from history.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesProfile {
    /// The series.
    pub series_id: u64,
    /// Samples (or counter rates) it was fitted on.
    pub samples: u64,
    /// Median value.
    pub level: f64,
    /// Mean absolute step between consecutive values.
    pub scale: f64,
    /// Smallest and largest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Median of each 15-minute time-of-day bin (NaN where the bin had no data).
    pub day: Vec<f32>,
    /// Calibration: the detector state after replaying the training rows.
    pub state: Detector,
}

impl SeriesProfile {
    /// A detector for this series, ready to score.
    pub fn detector(&self) -> Detector {
        self.state.clone()
    }
}

/// A lazy scan over the archive's parts.
fn scan_parts(parts: &[PathBuf]) -> PolarsResult<LazyFrame> {
    let paths: Vec<PlRefPath> = parts
        .iter()
        .map(|p| PlRefPath::new(p.to_string_lossy().as_ref()))
        .collect();
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), ScanArgsParquet::default())
}

/// A polars failure as our error, naming the file and what was being done.
pub(crate) fn polars_error<'a>(
    path: &'a Path,
    doing: &'static str,
) -> impl Fn(PolarsError) -> DetectError + Copy + 'a {
    move |source| DetectError::Polars {
        path: path.to_owned(),
        doing,
        source,
    }
}

/// One column of the profiles table.
fn column<T>(name: &str, profiles: &[SeriesProfile], f: impl Fn(&SeriesProfile) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), profiles.iter().map(f).collect::<Vec<T>>())
}

/// Reads the training rows: `(series_id, timestamp ms, value, count, bin)` sorted by series and
/// time, with counters (ids in `counters`) turned into per-second rates and, when their
/// readings are whole numbers, the events counted (`count`, else null).
pub(crate) fn training_frame(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    from_ms: i64,
    to_ms: i64,
) -> PolarsResult<LazyFrame> {
    let scan = scan_parts(parts)?;
    let counter_ids = DataFrame::new(
        counters.len(),
        vec![Column::new(
            "series_id".into(),
            counters.iter().copied().collect::<Vec<u64>>(),
        )],
    )?
    .lazy()
    .with_column(lit(true).alias("is_counter"));
    let by_series = [col("series_id")];
    let prev_v = col("value").shift(lit(1)).over(by_series.clone())?;
    let prev_t = col("ts").shift(lit(1)).over(by_series)?;
    let delta = when(col("value").gt_eq(prev_v.clone()))
        .then(col("value") - prev_v.clone())
        .otherwise(col("value"));
    let rate = delta.clone() / ((col("ts") - prev_t).cast(DataType::Float64) / lit(1000.0));
    // Events counted (whole readings either side), as the live stage passes them on.
    let whole = |e: Expr| (e.clone() - e.floor()).eq(lit(0.0));
    let count = when(whole(col("value")).and(whole(prev_v)))
        .then(delta)
        .otherwise(lit(NULL).cast(DataType::Float64));
    Ok(scan
        .select([
            col("series_id"),
            col("timestamp").cast(DataType::Int64).alias("ts"),
            col("value"),
        ])
        .filter(
            col("ts")
                .gt_eq(lit(from_ms))
                .and(col("ts").lt_eq(lit(to_ms))),
        )
        .filter(col("value").is_finite())
        // A timestamp written twice: the newest write wins, as in archive reads.
        .unique_stable(Some(cols(["series_id", "ts"])), UniqueKeepStrategy::Last)
        .join(
            counter_ids,
            [col("series_id")],
            [col("series_id")],
            JoinArgs::new(JoinType::Left),
        )
        // After the join (which need not keep row order): rates look at the previous row.
        .sort(["series_id", "ts"], SortMultipleOptions::default())
        .with_columns([
            when(col("is_counter").fill_null(lit(false)))
                .then(rate)
                .otherwise(col("value"))
                .alias("value"),
            when(col("is_counter").fill_null(lit(false)))
                .then(count)
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("count"),
        ])
        .filter(col("value").is_not_null().and(col("value").is_finite()))
        .select([
            col("series_id"),
            col("ts"),
            col("value"),
            col("count"),
            ((col("ts") % lit(DAY_MS)) * lit(DAY_BINS as i64))
                .floor_div(lit(DAY_MS))
                .alias("bin"),
        ]))
}

/// The first and last sample time in `parts`, Unix ms (`None` when they hold no rows).
pub fn time_range(parts: &[PathBuf]) -> Result<Option<(i64, i64)>, DetectError> {
    let first = parts.first().cloned().unwrap_or_default();
    let err = polars_error(&first, "reading the archive with polars");
    let df = scan_parts(parts)
        .map_err(err)?
        .select([
            col("timestamp").cast(DataType::Int64).min().alias("from"),
            col("timestamp").cast(DataType::Int64).max().alias("to"),
        ])
        .collect()
        .map_err(err)?;
    let get = |name: &str| -> Result<Option<i64>, DetectError> {
        Ok(df.column(name).and_then(|c| c.i64()).map_err(err)?.get(0))
    };
    Ok(get("from")?.zip(get("to")?))
}

/// Fits every series found in `parts` over `from_ms..=to_ms`.
pub fn fit_profiles(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    from_ms: i64,
    to_ms: i64,
    cfg: &DetectorConfig,
) -> Result<Vec<SeriesProfile>, DetectError> {
    let first = parts.first().cloned().unwrap_or_default();
    let err = polars_error(&first, "reading the archive with polars");
    let rows = training_frame(parts, counters, from_ms, to_ms)
        .map_err(err)?
        .collect()
        .map_err(err)?;
    let stats = rows
        .clone()
        .lazy()
        .group_by([col("series_id")])
        .agg([
            len().alias("samples"),
            col("value").median().alias("level"),
            col("value").min().alias("min"),
            col("value").max().alias("max"),
            col("value")
                .diff(lit(1), Default::default())
                .abs()
                .mean()
                .alias("scale"),
        ])
        .sort(["series_id"], SortMultipleOptions::default())
        .collect()
        .map_err(err)?;
    let bins = rows
        .clone()
        .lazy()
        .group_by([col("series_id"), col("bin")])
        .agg([col("value").median().alias("median")])
        .collect()
        .map_err(err)?;

    // Profiles by series.
    let mut day: HashMap<u64, Vec<f32>> = HashMap::new();
    {
        let ids = bins
            .column("series_id")
            .and_then(|c| c.u64())
            .map_err(err)?;
        let bin = bins.column("bin").and_then(|c| c.i64()).map_err(err)?;
        let med = bins.column("median").and_then(|c| c.f64()).map_err(err)?;
        for ((id, b), m) in ids.iter().zip(bin.iter()).zip(med.iter()) {
            if let (Some(id), Some(b), Some(m)) = (id, b, m) {
                let v = day.entry(id).or_insert_with(|| vec![f32::NAN; DAY_BINS]);
                if let Some(slot) = v.get_mut(b as usize) {
                    *slot = m as f32;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(stats.height());
    let get = |name: &str| -> Result<Vec<f64>, DetectError> {
        let c = stats
            .column(name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(err)?;
        let c = c.f64().map_err(err)?;
        Ok(c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let ids: Vec<u64> = stats
        .column("series_id")
        .and_then(|c| c.u64())
        .map_err(err)?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect();
    let (samples, level, min, max, scale) = (
        get("samples")?,
        get("level")?,
        get("min")?,
        get("max")?,
        get("scale")?,
    );

    // Calibration: the production detector, seeded, replays each series' rows.
    let row_ids = rows
        .column("series_id")
        .and_then(|c| c.u64())
        .map_err(err)?;
    let row_ts = rows.column("ts").and_then(|c| c.i64()).map_err(err)?;
    let row_v = rows.column("value").and_then(|c| c.f64()).map_err(err)?;
    let row_k = rows.column("count").and_then(|c| c.f64()).map_err(err)?;
    let mut replay: HashMap<u64, Vec<(i64, f64, Option<f64>)>> = HashMap::new();
    for (((id, t), v), k) in row_ids
        .iter()
        .zip(row_ts.iter())
        .zip(row_v.iter())
        .zip(row_k.iter())
    {
        if let (Some(id), Some(t), Some(v)) = (id, t, v) {
            replay.entry(id).or_default().push((t, v, k));
        }
    }
    for (i, &id) in ids.iter().enumerate() {
        let day = day.remove(&id).unwrap_or_else(|| vec![f32::NAN; DAY_BINS]);
        let mut state = Detector::seeded(*cfg, level[i], scale[i].max(0.0), (min[i], max[i]), &day);
        for &(t, v, k) in replay.get(&id).map(Vec::as_slice).unwrap_or_default() {
            state.update_counted(t, v, k);
        }
        out.push(SeriesProfile {
            series_id: id,
            samples: samples[i] as u64,
            level: level[i],
            scale: scale[i],
            min: min[i],
            max: max[i],
            day,
            state,
        });
    }
    Ok(out)
}

/// Writes profiles as one Parquet table: the statistics in columns, the calibrated detector
/// state as JSON (it is what `serve` loads) and its continuous score's state beside it.
pub fn write_profiles(path: &Path, profiles: &[SeriesProfile]) -> Result<(), DetectError> {
    let err = polars_error(path, "writing profiles");
    let states: Vec<String> = profiles
        .iter()
        .map(|p| serde_json::to_string(&p.state).expect("a detector always serialises"))
        .collect();
    let n = profiles.len();
    let mut columns = vec![
        column("series_id", profiles, |p| p.series_id),
        column("samples", profiles, |p| p.samples),
        column("level", profiles, |p| p.level),
        column("scale", profiles, |p| p.scale),
        column("min", profiles, |p| p.min),
        column("max", profiles, |p| p.max),
    ];
    for b in 0..DAY_BINS {
        columns.push(column(&format!("bin_{b:02}"), profiles, |p| p.day[b]));
    }
    columns.push(Column::new("state".into(), states));
    let ranks: Vec<String> = profiles
        .iter()
        .map(|p| serde_json::to_string(&p.state.rank).expect("plain numbers"))
        .collect();
    columns.push(Column::new("rank".into(), ranks));
    let mut df = DataFrame::new(n, columns).map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DetectError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|source| DetectError::Io {
        path: tmp.clone(),
        source,
    })?;
    ParquetWriter::new(file).finish(&mut df).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|source| DetectError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// Reads the calibrated detectors of a profiles table, by series.
pub fn read_profiles(path: &Path) -> Result<HashMap<u64, Detector>, DetectError> {
    let err = polars_error(path, "reading profiles");
    let file = std::fs::File::open(path).map_err(|source| DetectError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    // Tables written before the continuous score have no `rank` column.
    let has_rank = reader
        .schema()
        .map_err(&err)?
        .iter_names()
        .any(|n| n.as_str() == "rank");
    let mut wanted = vec!["series_id".into(), "state".into()];
    if has_rank {
        wanted.push("rank".into());
    }
    let df = reader.with_columns(Some(wanted)).finish().map_err(&err)?;
    let ids = df.column("series_id").and_then(|c| c.u64()).map_err(&err)?;
    let states = df.column("state").and_then(|c| c.str()).map_err(&err)?;
    let ranks = if has_rank {
        Some(df.column("rank").and_then(|c| c.str()).map_err(&err)?)
    } else {
        None
    };
    let bad = |id: u64, e: serde_json::Error| DetectError::BadInput {
        path: path.to_owned(),
        reason: format!("series {id:016x}: {e}"),
    };
    let mut out = HashMap::with_capacity(df.height());
    for (i, (id, s)) in ids.iter().zip(states.iter()).enumerate() {
        if let (Some(id), Some(s)) = (id, s) {
            let mut d: Detector = serde_json::from_str(s).map_err(|e| bad(id, e))?;
            if let Some(r) = ranks.and_then(|r| r.get(i)) {
                d.rank = serde_json::from_str(r).map_err(|e| bad(id, e))?;
            }
            out.insert(id, d);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a part with the archive's schema (series_id u64, timestamp ms UTC, value f64).
    pub(crate) fn write_part(path: &Path, rows: &[(u64, i64, f64)]) {
        let mut df = DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    "series_id".into(),
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                ),
                Column::new(
                    "timestamp".into(),
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )
                .cast(&DataType::Datetime(
                    TimeUnit::Milliseconds,
                    Some(TimeZone::UTC),
                ))
                .expect("cast"),
                Column::new("value".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            ],
        )
        .expect("frame");
        let f = std::fs::File::create(path).expect("create");
        ParquetWriter::new(f).finish(&mut df).expect("write");
    }

    #[test]
    fn fits_profiles_rates_and_newest_writes_from_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        const STEP: i64 = 900_000; // one sample per 15-minute bin
        let days = 4;
        let mut gauge = Vec::new();
        let mut counter = Vec::new();
        for i in 0..days * 96 {
            let bin = i % 96;
            // Gauge: the bin number, except one wild value that the median ignores.
            let v = if i == 100 { 1e6 } else { bin as f64 };
            gauge.push((1, i * STEP, v));
            // Counter: +90 per step (0.1/s), reset to 0 once.
            let c = if i >= 200 {
                (i - 200) as f64 * 90.0
            } else {
                i as f64 * 90.0
            };
            counter.push((2, i * STEP, c));
        }
        write_part(&dir.path().join("a.parquet"), &gauge[..200]);
        // The second part rewrites one gauge timestamp: the newest write wins.
        let mut rest = gauge[200..].to_vec();
        rest.push((1, 5 * STEP, -7.0));
        rest.extend(&counter);
        write_part(&dir.path().join("b.parquet"), &rest);
        let parts = vec![dir.path().join("a.parquet"), dir.path().join("b.parquet")];

        assert_eq!(
            time_range(&parts).expect("range"),
            Some((0, (days * 96 - 1) * STEP))
        );
        let profiles = fit_profiles(
            &parts,
            &HashSet::from([2]),
            0,
            i64::MAX,
            &DetectorConfig::default(),
        )
        .expect("fit");
        assert_eq!(profiles.len(), 2);
        let g = profiles.iter().find(|p| p.series_id == 1).expect("gauge");
        assert_eq!(g.samples, (days * 96) as u64);
        assert_eq!(g.day[10], 10.0);
        assert_eq!(g.day[4], 4.0, "the wild value does not move the median");
        assert_eq!(g.min, -7.0, "the rewritten value is the one kept");
        let c = profiles.iter().find(|p| p.series_id == 2).expect("counter");
        // Rates: 0.1/s everywhere, the reset included (counted from 0, as PromQL does).
        assert!((c.level - 0.1).abs() < 1e-9, "{c:?}");
        assert!(c.max <= 0.1 + 1e-9, "{c:?}");

        // The table round-trips and yields scoring detectors.
        let path = dir.path().join("models/profiles.parquet");
        write_profiles(&path, &profiles).expect("write");
        let back = read_profiles(&path).expect("read");
        let mut d = back.get(&1).expect("gauge detector").clone();
        assert_eq!(d, g.state);
        assert!(d.update(days * 96 * STEP + 3 * STEP, 1e9).score > 0.5);
    }
}
