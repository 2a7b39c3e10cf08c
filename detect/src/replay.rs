//! What a sensitivity would have raised: archived samples replayed through fresh detectors, one
//! per series and setting (`aiops eval backtest`) — the question every team asks before paging is
//! turned on. Reads the archive's parts as training does (counters as rates, the
//! newest write of a timestamp winning); events are counted as the detection stage opens them:
//! an alarm opens one unless the series alarmed within the quiet period.
//!
//! [`score_series`] replays one series the same way for a chart: value, expected band and
//! scores per sample (the console's series page).

use std::collections::HashSet;
use std::path::PathBuf;

#[cfg(test)]
use crate::Scored;
use crate::reading::score_reading;
use crate::{DetectError, Detector, DetectorConfig};

/// One series' replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReplay {
    /// The series.
    pub series_id: u64,
    /// Samples counted (counters: rates), after the warm-up.
    pub samples: u64,
    /// First counted sample time, Unix ms.
    pub first_ms: i64,
    /// Last sample time, Unix ms.
    pub last_ms: i64,
    /// The first sample replayed, warm-up included: a series whose history starts less than
    /// `young_days` before `first_ms` was counted partly as a new series.
    pub history_from_ms: i64,
    /// Events it would have opened, one count per sensitivity given.
    pub events: Vec<u64>,
}

/// The time a replay reads: samples from `teach_from_ms` teach the detectors, those from
/// `from_ms` to `to_ms` are also counted — as the server warm-starts each series from its
/// archive before it scores live samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayWindow {
    /// The warm-up's start, Unix ms (at most `from_ms`).
    pub teach_from_ms: i64,
    /// The counted part's start, Unix ms.
    pub from_ms: i64,
    /// Its end, Unix ms.
    pub to_ms: i64,
}

/// Replays the samples of `parts` in `window` of the series `keep` accepts, once per
/// sensitivity, through detectors with `cfg`'s other parameters. An alarm is a score of at least
/// `event_score`; one within `quiet_ms` of the series' previous alarm extends its event. Series
/// with no sample in the counted part are left out.
#[allow(clippy::too_many_arguments)]
pub fn replay_events(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    window: ReplayWindow,
    keep: &dyn Fn(u64) -> bool,
    cfg: &DetectorConfig,
    sensitivities: &[f64],
    event_score: f64,
    quiet_ms: i64,
) -> Result<Vec<SeriesReplay>, DetectError> {
    let from_ms = window.from_ms;
    let teach_from = window.teach_from_ms.min(from_ms);
    let rows = crate::train::training_rows(parts, counters, teach_from, window.to_ms)?;
    let mut out: Vec<SeriesReplay> = Vec::new();
    for (&series_id, rows) in rows.iter().filter(|(id, _)| keep(**id)) {
        let counted = rows.partition_point(|r| r.ts < from_ms);
        let (Some(history), Some(first), Some(last)) =
            (rows.first(), rows.get(counted), rows.last())
        else {
            continue;
        };
        let mut r = SeriesReplay {
            series_id,
            samples: (rows.len() - counted) as u64,
            first_ms: first.ts,
            last_ms: last.ts,
            history_from_ms: history.ts,
            events: vec![0; sensitivities.len()],
        };
        for (k, &sensitivity) in sensitivities.iter().enumerate() {
            let mut d = Detector::new(DetectorConfig {
                sensitivity,
                ..*cfg
            });
            let mut last_alarm: Option<i64> = None;
            for row in rows {
                let score = d.update_counted(row.ts, row.value, row.count).score;
                if score >= event_score && row.ts >= from_ms {
                    if last_alarm.is_none_or(|l| row.ts - l > quiet_ms) {
                        r.events[k] += 1;
                    }
                    last_alarm = Some(row.ts);
                }
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// One sample as the detector saw it: what a chart of the series draws.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScoredPoint {
    /// Unix ms.
    pub ts: i64,
    /// The value scored (a counter's per-second rate).
    pub value: f64,
    /// The value expected.
    pub expected: f64,
    /// The expected band's lower edge.
    pub lower: f64,
    /// Its upper edge.
    pub upper: f64,
    /// The alarm score (0 during the rest after an alarm).
    pub score: f64,
    /// The continuous score.
    pub rank_score: f64,
    /// This sample raised an alarm.
    pub alarm: bool,
}

/// One series' samples replayed through a fresh detector with `cfg`, as the detection stage
/// scores them (a counter as per-second rates with PromQL resets and counted events; late,
/// duplicate and non-finite samples skipped). Samples before `from_ms` only teach the detector
/// (the warm-up); those from `from_ms` on are returned.
pub fn score_series(
    cfg: DetectorConfig,
    is_counter: bool,
    samples: &[(i64, f64)],
    from_ms: i64,
) -> Vec<ScoredPoint> {
    let mut d = Detector::new(cfg);
    let mut out = Vec::new();
    let (mut last_ms, mut prev) = (i64::MIN, None);
    for &(ts, v) in samples {
        if ts <= last_ms {
            continue;
        }
        let last = std::mem::replace(&mut last_ms, ts);
        let counter = is_counter.then_some(&mut prev);
        let Some((value, s)) = score_reading(&mut d, counter, last, (ts, v)) else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        if ts >= from_ms {
            out.push(ScoredPoint {
                ts,
                value,
                expected: s.expected,
                lower: s.lower,
                upper: s.upper,
                score: s.score,
                rank_score: s.rank_score,
                alarm: s.alarm,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_one_event_and_more_sensitivity_never_raises_fewer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.parquet");
        const STEP: i64 = 60_000;
        let mut rows: Vec<(u64, i64, f64)> = Vec::new();
        for i in 0..3000i64 {
            let noise = ((i * 7919) % 101) as f64 / 101.0;
            let spike = if (2000..2003).contains(&i) {
                500.0
            } else {
                0.0
            };
            rows.push((1, i * STEP, 10.0 + noise + spike));
            rows.push((2, i * STEP, 5.0 + noise));
            rows.push((3, i * STEP, 1.0));
        }
        crate::train::tests::write_part(&path, &rows);
        let sens = [0.001, 0.01, 1.0, 100.0];
        let out = replay_events(
            &[path],
            &HashSet::new(),
            ReplayWindow {
                teach_from_ms: 0,
                from_ms: 0,
                to_ms: i64::MAX,
            },
            &|id| id != 3,
            &DetectorConfig::default(),
            &sens,
            0.5,
            900_000,
        )
        .expect("replays");
        assert_eq!(out.len(), 2, "series 3 is not kept");
        let spiky = out.iter().find(|r| r.series_id == 1).expect("series 1");
        assert_eq!(spiky.samples, 3000);
        assert_eq!((spiky.first_ms, spiky.last_ms), (0, 2999 * STEP));
        assert_eq!(spiky.events[1], 1, "{spiky:?}");
        for r in &out {
            assert!(r.events.windows(2).all(|w| w[0] <= w[1]), "{r:?}");
        }
    }

    /// Samples before the counted part teach the detector only: a spike there opens no event,
    /// and the series is counted from the window's start, with its history noted.
    #[test]
    fn the_warm_up_teaches_and_is_not_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.parquet");
        const STEP: i64 = 60_000;
        let rows: Vec<(u64, i64, f64)> = (0..3000i64)
            .map(|i| {
                let spike = if (1000..1003).contains(&i) {
                    500.0
                } else {
                    0.0
                };
                (
                    1,
                    i * STEP,
                    10.0 + ((i * 7919) % 101) as f64 / 101.0 + spike,
                )
            })
            .collect();
        crate::train::tests::write_part(&path, &rows);
        let replay = |teach_from_ms: i64, from_ms: i64| {
            let window = ReplayWindow {
                teach_from_ms,
                from_ms,
                to_ms: i64::MAX,
            };
            let cfg = DetectorConfig::default();
            replay_events(
                std::slice::from_ref(&path),
                &HashSet::new(),
                window,
                &|_| true,
                &cfg,
                &[1.0],
                0.5,
                900_000,
            )
            .expect("replays")
            .remove(0)
        };
        let all = replay(0, 0);
        // (At 1 a day this noise raises one event later on, counted both times.)
        let warmed = replay(0, 2000 * STEP);
        assert_eq!(warmed.samples, 1000);
        assert_eq!((warmed.first_ms, warmed.history_from_ms), (2000 * STEP, 0));
        assert_eq!(
            warmed.events[0] + 1,
            all.events[0],
            "the same detector on the same samples: all but the warm-up's spike ({warmed:?}, {all:?})"
        );
        // Without the warm-up the same days are counted as a new series'.
        let cold = replay(2000 * STEP, 2000 * STEP);
        assert_eq!((cold.samples, cold.history_from_ms), (1000, 2000 * STEP));
    }

    #[test]
    fn a_replayed_series_scores_like_the_detector_and_returns_only_the_asked_range() {
        const STEP: i64 = 15_000;
        let samples: Vec<(i64, f64)> = (0..2000i64)
            .map(|i| {
                let spike = if i == 1500 { 80.0 } else { 0.0 };
                (i * STEP, 10.0 + ((i * 7919) % 13) as f64 / 13.0 + spike)
            })
            .collect();
        let cfg = DetectorConfig {
            learning_samples: 300,
            ..DetectorConfig::default()
        };
        let out = score_series(cfg, false, &samples, 1000 * STEP);
        assert_eq!(out.len(), 1000);
        assert_eq!(out[0].ts, 1000 * STEP);
        let mut d = Detector::new(cfg);
        let direct: Vec<Scored> = samples.iter().map(|&(t, v)| d.update(t, v)).collect();
        for (p, s) in out.iter().zip(&direct[1000..]) {
            assert_eq!(
                (p.expected, p.score, p.alarm),
                (s.expected, s.score, s.alarm)
            );
            assert!(p.lower <= p.expected && p.expected <= p.upper, "{p:?}");
        }
        let spike = out.iter().find(|p| p.ts == 1500 * STEP).expect("the spike");
        assert!(spike.alarm && spike.value > spike.upper, "{spike:?}");
        assert_eq!(out.iter().filter(|p| p.alarm).count(), 1);

        // A counter is scored as its rate: a steady 2/s counter with one reset.
        let counter: Vec<(i64, f64)> = (0..400i64)
            .map(|i| {
                (
                    i * STEP,
                    if i < 200 { i * 30 } else { (i - 199) * 30 } as f64,
                )
            })
            .collect();
        let rates = score_series(cfg, true, &counter, 0);
        assert_eq!(rates.len(), 399, "the first sample has no rate");
        assert!(
            rates.iter().all(|p| (p.value - 2.0).abs() < 1e-9),
            "{:?}",
            &rates[195..205]
        );
    }
}
