//! A series that leaves the day's shape for hours: traffic at a third of its usual since the
//! morning, or two and a half times it for two hours.

use super::*;

const STEP: i64 = 300_000;
const DAY: usize = 288;

/// Five-minute traffic with a daily cycle (a trough at 40 % and a peak at 160 % of 100) and
/// 35 % noise (as bursty as request counts; near zero now and then at the trough).
fn traffic(j: usize, i: usize) -> f64 {
    (100.0 * day_shape(i) * (1.0 + 0.35 * gauss(j))).max(0.0)
}

fn day_shape(i: usize) -> f64 {
    1.0 + 0.6 * (2.0 * std::f64::consts::PI * (i % DAY) as f64 / DAY as f64).sin()
}

/// Three weeks of `traffic`, then `times` for `hours` from `start_hour` of the next day; the
/// alarms raised in them.
fn alarms_in_the_change(
    cfg: DetectorConfig,
    seed: usize,
    start_hour: usize,
    hours: usize,
    times: f64,
) -> usize {
    let start = 21 * DAY + start_hour * 12;
    let end = start + hours * 12;
    let mut d = Detector::new(cfg);
    let mut alarms = 0;
    for i in 0..end {
        let j = seed * 1_000_000 + i;
        let value = traffic(j, i) * if i >= start { times } else { 1.0 };
        let s = d.update(i as i64 * STEP, value);
        alarms += usize::from(i >= start && s.alarm);
    }
    alarms
}

/// Traffic that falls to a third from the morning on, or runs at two and a half times its
/// usual for two hours, follows the recent level sample by sample; against the time of day it
/// is plain. Each is reported, and less often without the departure from the day's shape.
#[test]
fn traffic_that_leaves_the_days_shape_for_hours_is_reported() {
    let on = DetectorConfig::default();
    let off = DetectorConfig {
        profile_drift_alerts: false,
        ..on
    };
    for (name, start_hour, hours, times) in [("a third", 6, 12, 0.3), ("2.5 times", 14, 2, 2.5)] {
        let (mut found, mut before) = (0, 0);
        for seed in 0..10 {
            found += usize::from(alarms_in_the_change(on, seed, start_hour, hours, times) > 0);
            before += usize::from(alarms_in_the_change(off, seed, start_hour, hours, times) > 0);
        }
        println!("{name}: {found} of 10 ({before} without)");
        assert!(found >= 9, "{name}: {found} of 10");
        assert!(found > before, "{name}: {found} of 10, {before} without");
    }
}

/// On traffic alone the departure from the day's shape adds at most its share of
/// `sensitivity` (a fortieth of 0.1: 0.0025 a series a day, over the days it is watched): 35 %
/// Gaussian noise (clipped at 0, so a sample near zero at the trough lies far below the profile
/// in log), 50 % log-normal noise, and a level that wanders from week to week.
#[test]
fn departures_from_the_days_shape_on_noise_alone_stay_within_their_share_of_sensitivity() {
    const SERIES: usize = 20;
    const DAYS: usize = 44;
    let alarms = |profile_drift_alerts: bool, kind: &str| {
        let mut n = 0;
        for k in 0..SERIES {
            let mut d = Detector::new(DetectorConfig {
                profile_drift_alerts,
                ..DetectorConfig::default()
            });
            let mut level: f64 = 0.0;
            for i in 0..DAYS * DAY {
                let j = k * DAYS * DAY + i;
                let value = match kind {
                    "gaussian" => traffic(j, i),
                    "log-normal" => 100.0 * day_shape(i) * (0.5 * gauss(3 * j)).exp(),
                    _ => {
                        level += 0.01 * gauss(3 * j + 1);
                        100.0 * level.exp() * day_shape(i) * (0.2 * gauss(3 * j)).exp()
                    }
                };
                n += usize::from(d.update(i as i64 * STEP, value).alarm);
            }
        }
        n
    };
    for kind in ["gaussian", "log-normal", "walk"] {
        let added = alarms(true, kind) as f64 - alarms(false, kind) as f64;
        let per_day = added / (SERIES * (DAYS - 14)) as f64;
        println!("{kind}: {per_day} a series a day added");
        assert!(per_day <= 0.0025, "{kind}: {per_day} a series a day");
    }
}
