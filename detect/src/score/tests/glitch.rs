//! A value far beyond everything seen is reported and not learnt; a series that really moves
//! that far is followed.

use super::*;

const STEP: i64 = 300_000;

/// Ten days of 5-minute noise around 100 (sd 2) with `garbage` for `run` samples after the
/// fifth day, then a shift of +30 (15 sd) for 30 samples after the eighth: the alarms in the
/// garbage and in the shift, each with its reason, by sample.
fn garbage_then_shift(seed: usize, garbage: f64, run: usize) -> [Vec<(usize, AlarmReason)>; 2] {
    let (at, shift) = (5 * 288, 8 * 288);
    let mut d = Detector::new(DetectorConfig::default());
    let mut alarms = [Vec::new(), Vec::new()];
    for i in 0..10 * 288 {
        let mut value = 100.0 + 2.0 * gauss(seed * 1_000_000 + i);
        if (at..at + run).contains(&i) {
            value = garbage;
        }
        if (shift..shift + 30).contains(&i) {
            value += 30.0;
        }
        let s = d.update(i as i64 * STEP, value);
        if let Some(why) = s.reason {
            match i {
                i if (at..at + run).contains(&i) => alarms[0].push((i - at, why)),
                i if (shift..shift + 30).contains(&i) => alarms[1].push((i - shift, why)),
                _ => {}
            }
        }
    }
    alarms
}

#[test]
fn garbage_far_beyond_the_range_is_reported_once_and_does_not_blind_the_series() {
    // Learnt, one sample of 1e9 lifted the floor of the scale to 1e6: the shift then scored a
    // raw surprise of 0 for all its 30 samples.
    for seed in 0..5 {
        for garbage in [1e9, u64::MAX as f64, -1e7] {
            for run in 1..=aiops_models::garbage::RUN as usize {
                let [bad, shift] = garbage_then_shift(seed, garbage, run);
                assert_eq!(bad, [(0, AlarmReason::Range)], "{seed} {garbage} {run}");
                assert!(
                    shift.first().is_some_and(|&(k, _)| k < 3),
                    "{seed} {garbage} {run}: {shift:?}"
                );
            }
        }
    }
}

#[test]
fn a_series_that_really_moves_orders_of_magnitude_away_is_followed() {
    let mut d = Detector::new(DetectorConfig::default());
    let (at, end) = (5 * 288, 10 * 288);
    let mut alarms = Vec::new();
    let mut last = Scored::default();
    for i in 0..end {
        let value = if i < at {
            100.0 + 2.0 * gauss(i)
        } else {
            1e6 + 2e4 * gauss(i)
        };
        last = d.update(i as i64 * STEP, value);
        if last.alarm {
            alarms.push(i);
        }
    }
    // Reported at once; learnt within the rest; nothing more over the last two days.
    assert_eq!(alarms.first(), Some(&at), "{alarms:?}");
    assert!(alarms.iter().all(|&i| i < end - 2 * 288), "{alarms:?}");
    assert!((last.expected - 1e6).abs() < 1e5, "{last:?}");
}
