//! Training from the archive (`aiops train`): per-series seasonal profiles and score
//! calibration, so that a series starts scoring well the moment it is (re)seen instead of after
//! days of learning.
//!
//! 1. **Profiles.** The archive's Parquet parts are read over the training range ([`rows`]);
//!    counters become per-second rates (resets as in PromQL); each series gets robust statistics
//!    (median level, range, mean absolute step) and a time-of-day profile: the median of every
//!    15-minute bin, so past anomalies do not bend it.
//! 2. **Calibration (the production detector).** A [`Detector`] seeded with the profile replays
//!    the series' training rows; what it ends with — the long-run distribution of its surprise,
//!    its scales — is the calibration. It is the same code that scores live data.
//!
//! The result is a table (one row per series, Parquet, [`table`]) that the registry versions
//! and `serve` loads: a series first seen starts from its row ([`SeriesProfile::detector`]).

mod rows;
mod table;

use std::collections::HashSet;
use std::path::PathBuf;

use aiops_models::garbage::{garbage_runs, middle_of};

pub use rows::time_range;
pub(crate) use rows::{Row, training_rows};
pub use table::{read_profiles, write_profiles};

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
    /// Mean absolute step between consecutive values (NaN with a single sample).
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

/// Fits every series found in `parts` (oldest first) over `from_ms..=to_ms`, ascending by
/// series; the series are shared out over the machine's cores.
pub fn fit_profiles(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    from_ms: i64,
    to_ms: i64,
    cfg: &DetectorConfig,
) -> Result<Vec<SeriesProfile>, DetectError> {
    let rows: Vec<(u64, Vec<Row>)> = training_rows(parts, counters, from_ms, to_ms)?
        .into_iter()
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = rows.len().div_ceil(threads).max(1);
    Ok(std::thread::scope(|s| {
        let workers: Vec<_> = rows
            .chunks(chunk)
            .map(|series| {
                s.spawn(move || {
                    series
                        .iter()
                        .map(|(id, rows)| fit_series(*id, rows, cfg))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("fitting a series does not panic"))
            .collect()
    }))
}

/// One series' profile: robust statistics, the time-of-day medians, then the production
/// detector seeded with them replaying the rows (the calibration).
fn fit_series(series_id: u64, rows: &[Row], cfg: &DetectorConfig) -> SeriesProfile {
    // Garbage far beyond the rest of the history (see `score::glitch`) is left out: runs of
    // at most `garbage::RUN` such values; a longer one is a real move, kept as live scoring
    // keeps it.
    let in_time: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let kept: Vec<Row>;
    let garbage = middle_of(&in_time).map(|range| garbage_runs(&in_time, range));
    let rows = match garbage {
        Some(g) if g.contains(&true) => {
            kept = (rows.iter().zip(g))
                .filter(|(_, g)| !g)
                .map(|(r, _)| *r)
                .collect();
            &kept[..]
        }
        _ => rows,
    };
    let mut values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let steps = values.windows(2).map(|w| (w[1] - w[0]).abs());
    let scale = steps.sum::<f64>() / (values.len() as f64 - 1.0);
    let scale = if values.len() > 1 { scale } else { f64::NAN };
    values.sort_unstable_by(f64::total_cmp);
    let (min, max) = (values[0], values[values.len() - 1]);
    let level = median(&values);

    let mut by_bin: Vec<(usize, f64)> = rows.iter().map(|r| (day_bin(r.ts), r.value)).collect();
    by_bin.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut day = vec![f32::NAN; DAY_BINS];
    for bin in by_bin.chunk_by(|a, b| a.0 == b.0) {
        let sorted: Vec<f64> = bin.iter().map(|b| b.1).collect();
        day[bin[0].0] = median(&sorted) as f32;
    }

    let mut state = Detector::seeded(*cfg, level, scale.max(0.0), (min, max), &day);
    for r in rows {
        state.update_counted(r.ts, r.value, r.count);
    }
    SeriesProfile {
        series_id,
        samples: rows.len() as u64,
        level,
        scale,
        min,
        max,
        day,
        state,
    }
}

/// The 15-minute time-of-day bin of a Unix ms time, as the live detector bins it.
fn day_bin(ts_ms: i64) -> usize {
    (ts_ms.rem_euclid(DAY_MS) * DAY_BINS as i64 / DAY_MS) as usize
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
    use parquet::arrow::ArrowWriter;

    /// Writes a part with the archive's schema (`aiops_models::sample_schema`).
    pub(crate) fn write_part(path: &Path, rows: &[(u64, i64, f64)]) {
        let schema = aiops_models::sample_schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(rows.iter().map(|r| r.0).collect::<UInt64Array>()),
                Arc::new(
                    TimestampMillisecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            ],
        )
        .expect("batch");
        let f = std::fs::File::create(path).expect("create");
        let mut w = ArrowWriter::try_new(f, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }

    const STEP: i64 = 900_000; // one sample per 15-minute bin
    const DAYS: i64 = 4;

    /// Two parts: a gauge (the bin number, one wild value, one timestamp rewritten by the
    /// second part) and a counter (+90 per step, reset once; counters: `{2}`).
    fn two_parts(dir: &Path) -> Vec<PathBuf> {
        let mut gauge = Vec::new();
        let mut counter = Vec::new();
        for i in 0..DAYS * 96 {
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
        write_part(&dir.join("a.parquet"), &gauge[..200]);
        // The second part rewrites one gauge timestamp: the newest write wins.
        let mut rest = gauge[200..].to_vec();
        rest.push((1, 5 * STEP, -7.0));
        rest.extend(&counter);
        write_part(&dir.join("b.parquet"), &rest);
        vec![dir.join("a.parquet"), dir.join("b.parquet")]
    }

    #[test]
    fn fits_profiles_rates_and_newest_writes_from_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = two_parts(dir.path());

        assert_eq!(
            time_range(&parts).expect("range"),
            Some((0, (DAYS * 96 - 1) * STEP))
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
        // The wild value (10⁴ ranges beyond the rest) is left out, as live scoring does.
        assert_eq!(g.samples, (DAYS * 96 - 1) as u64);
        assert_eq!(g.max, 95.0, "{g:?}");
        assert!(g.scale < 10.0, "{g:?}");
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
        assert!(d.update(DAYS * 96 * STEP + 3 * STEP, 1e9).score > 0.5);
    }

    #[test]
    fn training_leaves_out_short_runs_of_garbage_and_keeps_a_real_move() {
        // 1,000 readings about 100; two of 10⁹ in a row (garbage) and the last five at 10⁹ (a
        // real move, too short a part of the history to be in its middle 98 %). Before, every
        // value far beyond that middle was left out, the move too: live scoring then reported
        // it once more and followed it.
        let mut rows: Vec<Row> = (0..1000)
            .map(|i| Row {
                ts: i * STEP,
                value: 100.0 + (i % 5) as f64,
                count: None,
            })
            .collect();
        rows[300].value = 1e9;
        rows[301].value = 1e9;
        for r in &mut rows[995..] {
            r.value = 1e9;
        }
        let p = fit_series(7, &rows, &DetectorConfig::default());
        assert_eq!(p.samples, 998, "{p:?}");
        assert_eq!((p.min, p.max), (100.0, 1e9));
        assert_eq!(p.level, 102.0, "the median");
    }

    #[test]
    fn a_table_written_by_the_polars_version_still_loads() {
        // Written by `write_profiles` when it used polars 0.55 (string columns as views), from
        // the profiles of the test above.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/profiles-polars-0.55.parquet");
        let back = read_profiles(&path).expect("read");
        assert_eq!(back.len(), 2);
        let mut d = back.get(&1).expect("gauge detector").clone();
        assert!(d.update(DAYS * 96 * STEP + 3 * STEP, 1e9).score > 0.5);
        // This version fits the same parts to the same detectors, bit for bit, when its
        // profile learns as it did then (unclipped: `profile_clip` came later) — but for the
        // range's tails, the level's drift, the step sizes and their bursts, which came later
        // too: a table from before has none of them, and they learn afresh. (The gauge, series
        // 1, learnt its wild value then; it is left out now: the counter is compared.)
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = two_parts(dir.path());
        let then = DetectorConfig {
            profile_clip: 0.0,
            ..DetectorConfig::default()
        };
        let profiles = fit_profiles(&parts, &HashSet::from([2]), 0, i64::MAX, &then).expect("fit");
        for p in profiles.iter().filter(|p| p.series_id == 2) {
            let mut state = p.state.clone();
            state.set_config(DetectorConfig::default());
            assert_ne!(state.rank.extremes, Default::default());
            state.rank.extremes = Default::default();
            assert_ne!(state.rank.drift, Default::default());
            state.rank.drift = Default::default();
            assert_ne!(state.rank.volatility, Default::default());
            state.rank.volatility = Default::default();
            assert_ne!(state.rank.bursts, Default::default());
            state.rank.bursts = Default::default();
            assert_eq!(
                back.get(&p.series_id),
                Some(&state),
                "series {}",
                p.series_id
            );
        }
    }
}
