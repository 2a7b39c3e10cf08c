//! A value far beyond everything seen is reported and not learnt; a series that really moves
//! that far is followed.

use super::*;

const STEP: i64 = 300_000;

/// Puts the alarm of sample `i` (if any) in the bucket of the span holding it, as its offset
/// from the span's start.
fn sort_alarm(
    alarms: &mut [Vec<(usize, AlarmReason)>; 2],
    spans: [std::ops::Range<usize>; 2],
    i: usize,
    reason: Option<AlarmReason>,
) {
    let Some(why) = reason else { return };
    if let Some(k) = spans.iter().position(|span| span.contains(&i)) {
        alarms[k].push((i - spans[k].start, why));
    }
}

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
        sort_alarm(&mut alarms, [at..at + run, shift..shift + 30], i, s.reason);
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

/// A request counter read every 15 s (about 300 requests between readings, whole numbers)
/// with `garbage` as `times` readings in a row after its first day, then half as many requests
/// again for 30 readings a day later, scored as the stage scores counters
/// ([`crate::reading::score_reading`]): the alarms from the garbage to the first honest
/// reading after it, and in the rise.
fn counter_garbage_then_rise(
    seed: usize,
    garbage: f64,
    times: usize,
) -> [Vec<(usize, AlarmReason)>; 2] {
    const DAY: usize = 5760;
    let (at, rise) = (DAY, 2 * DAY);
    let mut d = Detector::new(DetectorConfig::default());
    let mut alarms = [Vec::new(), Vec::new()];
    let (mut total, mut prev, mut last) = (0.0, None, i64::MIN);
    for i in 0..rise + DAY / 4 {
        let mut requests = (300.0 + 17.0 * gauss(seed * 1_000_000 + i)).round();
        if (rise..rise + 30).contains(&i) {
            requests = (requests * 1.5).round();
        }
        total += requests;
        let ts = i as i64 * 15_000;
        let reading = if (at..at + times).contains(&i) {
            garbage
        } else {
            total
        };
        let scored = crate::reading::score_reading(&mut d, Some(&mut prev), last, (ts, reading));
        last = ts;
        let Some((_, s)) = scored else { continue };
        sort_alarm(
            &mut alarms,
            [at..at + times + 1, rise..rise + 30],
            i,
            s.reason,
        );
    }
    alarms
}

#[test]
fn a_garbage_reading_of_a_counter_is_reported_once_and_does_not_blind_it() {
    // A counter of whole events is scored with its count beside its rate; that kept it out of
    // the rule, and one reading of 1e9 widened its range for good: the rise's first sample
    // scored a raw surprise of 0.0001 (1 now), and only the time-of-day profile found it later.
    // Read twice, the garbage read as a stalled counter in between (a rate of 0, learnt, which
    // widened the range enough for the reset after it, the counter's total over one interval,
    // to be learnt too): the second reading is now stepped from the one before the garbage.
    for seed in 0..3 {
        for garbage in [1e9, 2f64.powi(53), u64::MAX as f64] {
            for times in [1, 2] {
                let [bad, rise] = counter_garbage_then_rise(seed, garbage, times);
                assert_eq!(bad, [(0, AlarmReason::Range)], "{seed} {garbage} {times}");
                assert!(
                    rise.first().is_some_and(|&(k, _)| k == 0),
                    "{seed} {garbage} {times}: {rise:?}"
                );
            }
        }
    }
}
