//! What a sensitivity would have raised: archived samples replayed through fresh detectors, one
//! per series and setting (`aiops eval backtest`) — the question every team asks before paging is
//! turned on. Reads the archive's parts as training does (counters as rates, the
//! newest write of a timestamp winning); events are counted as the detection stage opens them:
//! an alarm opens one unless the series alarmed within the quiet period.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::{DetectError, Detector, DetectorConfig};

/// One series' replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReplay {
    /// The series.
    pub series_id: u64,
    /// Samples replayed (counters: rates).
    pub samples: u64,
    /// First and last sample time, Unix ms.
    pub first_ms: i64,
    /// Last sample time, Unix ms.
    pub last_ms: i64,
    /// Events it would have opened, one count per sensitivity given.
    pub events: Vec<u64>,
}

/// Replays the samples of `parts` between `from_ms` and `to_ms` of the series `keep` accepts,
/// once per sensitivity, through detectors with `cfg`'s other parameters. An alarm is a score of
/// at least `event_score`; one within `quiet_ms` of the series' previous alarm extends its event.
#[allow(clippy::too_many_arguments)]
pub fn replay_events(
    parts: &[PathBuf],
    counters: &HashSet<u64>,
    from_ms: i64,
    to_ms: i64,
    keep: &dyn Fn(u64) -> bool,
    cfg: &DetectorConfig,
    sensitivities: &[f64],
    event_score: f64,
    quiet_ms: i64,
) -> Result<Vec<SeriesReplay>, DetectError> {
    let rows = crate::train::training_rows(parts, counters, from_ms, to_ms)?;
    let mut out: Vec<SeriesReplay> = Vec::new();
    for (&series_id, rows) in rows.iter().filter(|(id, _)| keep(**id)) {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            continue;
        };
        let mut r = SeriesReplay {
            series_id,
            samples: rows.len() as u64,
            first_ms: first.ts,
            last_ms: last.ts,
            events: vec![0; sensitivities.len()],
        };
        for (k, &sensitivity) in sensitivities.iter().enumerate() {
            let mut d = Detector::new(DetectorConfig {
                sensitivity,
                ..*cfg
            });
            let mut last_alarm: Option<i64> = None;
            for row in rows {
                if d.update_counted(row.ts, row.value, row.count).score >= event_score {
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
            0,
            i64::MAX,
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
}
