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

/// Three weeks of `traffic`, then `times` for `hours` from `start_hour` of the next day; why
/// each alarm raised in them fired.
fn alarms_in_the_change(
    cfg: DetectorConfig,
    seed: usize,
    start_hour: usize,
    hours: usize,
    times: f64,
) -> Vec<AlarmReason> {
    let start = 21 * DAY + start_hour * 12;
    let end = start + hours * 12;
    let mut d = Detector::new(cfg);
    let mut alarms = Vec::new();
    for i in 0..end {
        let j = seed * 1_000_000 + i;
        let value = traffic(j, i) * if i >= start { times } else { 1.0 };
        let s = d.update(i as i64 * STEP, value);
        alarms.extend(s.reason.filter(|_| i >= start));
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
        let (found, before) = found_of_10(on, off, |cfg, seed| {
            alarms_in_the_change(cfg, seed, start_hour, hours, times).len()
        });
        let shape = (0..10)
            .filter(|&seed| {
                alarms_in_the_change(on, seed, start_hour, hours, times)
                    .contains(&AlarmReason::DayShape)
            })
            .count();
        println!("{name}: left the day's shape in {shape} of 10");
        assert!(shape >= found - before, "{name}: {shape} of 10");
        println!("{name}: {found} of 10 ({before} without)");
        assert!(found >= 9, "{name}: {found} of 10");
        assert!(found > before, "{name}: {found} of 10, {before} without");
    }
}

/// The alarms a day the departure from the day's shape adds, over the days it is watched, on
/// 20 series of `days` days sampled every `step` ms: 35 % Gaussian noise (cut at 0, so a
/// sample near zero at the trough lies far below the profile in log), 50 % log-normal noise,
/// and a level that wanders from week to week.
fn added_a_day(step: i64, days: usize) -> [(&'static str, f64); 3] {
    const SERIES: usize = 20;
    let day = (DAY_MS / step) as usize;
    // The day's shape and the wander by the five-minute slot, whatever the interval.
    let per_slot = (day / DAY).max(1);
    let alarms = |profile_drift_alerts: bool, kind: &str| {
        let mut n = 0;
        for k in 0..SERIES {
            let mut d = Detector::new(DetectorConfig {
                profile_drift_alerts,
                ..DetectorConfig::default()
            });
            let mut level: f64 = 0.0;
            for i in 0..days * day {
                let (j, slot) = (k * days * day + i, i / per_slot);
                let value = match kind {
                    "gaussian" => traffic(j, slot),
                    "log-normal" => 100.0 * day_shape(slot) * (0.5 * gauss(3 * j)).exp(),
                    _ => {
                        level += 0.01 / (per_slot as f64).sqrt() * gauss(3 * j + 1);
                        100.0 * level.exp() * day_shape(slot) * (0.2 * gauss(3 * j)).exp()
                    }
                };
                n += usize::from(d.update(i as i64 * step, value).alarm);
            }
        }
        n
    };
    ["gaussian", "log-normal", "walk"].map(|kind| {
        let added = alarms(true, kind) as f64 - alarms(false, kind) as f64;
        (kind, added / (SERIES * (days - 14)) as f64)
    })
}

/// On traffic alone the departure from the day's shape adds at most its share of
/// `sensitivity` (a fortieth of 0.1: 0.0025 a series a day) at 5-minute samples.
#[test]
fn departures_from_the_days_shape_on_noise_alone_stay_within_their_share_of_sensitivity() {
    for (kind, per_day) in added_a_day(STEP, 44) {
        println!("{kind}: {per_day} a series a day added");
        assert!(per_day <= 0.0025, "{kind}: {per_day} a series a day");
    }
}

/// The same at 15 s samples, where the residuals are averaged over five-minute slots (34
/// days of 5,760 samples: slow in a debug build, so run on demand with `cargo test --release --
/// --ignored`; measured 0 / 0 / 0.0025 — one alarm in 400 series-days on the walk).
#[test]
#[ignore = "about two minutes unoptimised; run with --release -- --ignored"]
fn departures_from_the_days_shape_at_15_s_stay_within_their_share_of_sensitivity() {
    for (kind, per_day) in added_a_day(15_000, 34) {
        println!("{kind}: {per_day} a series a day added");
        assert!(per_day <= 0.0025, "{kind}: {per_day} a series a day");
    }
}

/// A 15 s series at half its usual from 10:00 to 14:00 under 50 % noise: every sample is
/// within the noise, and the departure sets in at once but lasts hours. Once the series is two
/// weeks old the departure from the day's shape reports it. Its window and baseline count
/// five-minute means, so at 15 s they span two hours and about a day as at 5 minutes; counted
/// in samples (6 minutes and an hour at 15 s) they found it in no series of 10.
#[test]
fn a_15_s_series_at_half_its_usual_for_four_hours_is_found_once_the_day_is_known() {
    const STEP: i64 = 15_000;
    let per_day = DAY_MS / STEP;
    let traffic = traffic_15_s;
    let on = DetectorConfig::default();
    let off = DetectorConfig {
        profile_drift_alerts: false,
        ..on
    };
    let alarms = |cfg, seed: usize| {
        let mut d = Detector::new(cfg);
        let mut found = 0;
        for i in 0..16 * per_day {
            let hour = ((i * STEP) % DAY_MS) as f64 / 3_600_000.0;
            let half = i >= 15 * per_day && (10.0..14.0).contains(&hour);
            let noise = (1.0 + 0.5 * gauss(seed * 10_000_000 + i as usize)).max(0.0);
            let v = traffic(i) * noise * if half { 0.5 } else { 1.0 };
            found += usize::from(d.update(i * STEP, v).alarm && half);
        }
        found
    };
    let (on, off) = found_of_10(on, off, alarms);
    println!("{on} of 10 ({off} without)");
    assert!(on >= 9 && off < on, "{on} of 10, {off} without");
}
