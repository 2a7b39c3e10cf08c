//! How many alarms noise alone raises, by kind of noise and sampling interval: what
//! `sensitivity` promises, and where it does not hold.

use super::*;

/// One noise process per kind, 20 series of `days` at `step_ms`; the alarms `cfg` raises.
fn alarms_on_noise(cfg: DetectorConfig, kind: &str, step_ms: i64, days: usize) -> usize {
    const SERIES: usize = 20;
    let n = days * 86_400_000 / step_ms as usize;
    let mut count = 0;
    for k in 0..SERIES {
        let mut d = Detector::new(cfg);
        let mut x = 0.0;
        let mut level = 0.0;
        for i in 0..n {
            let j = k * n + i;
            x = match kind {
                "ar(0.5)" => 0.5 * x + normal(j),
                // Unit variance, exponential tails.
                "laplace" => {
                    let u = uniform(j as u64 + 7_000_000_000) - 0.5;
                    -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln() / 2f64.sqrt()
                }
                // Multiplicative, skewed upward like a latency: 50 · e^(0.3 g) in all.
                "lognormal" => 50.0 * ((0.3 * normal(j)).exp() - 1.0),
                _ => normal(j),
            };
            if kind == "walk" {
                level += 0.1 * normal(j + 1_000_000_000);
            }
            count += usize::from(d.update(i as i64 * step_ms, 50.0 + level + x).alarm);
        }
    }
    count
}

/// The short average of the surprise on noise is skewed like the calibration's reference: a
/// gamma of shape about `NOISE_SHAPE` (its moments' shape, mean² / variance, measured at the
/// end of 20,000 samples).
#[test]
fn the_short_average_of_noise_is_skewed_like_the_reference() {
    for (phi, step) in [(0.0, 300_000), (0.9, 300_000), (0.0, 15_000)] {
        let mut d = Detector::new(DetectorConfig::default());
        let mut x = 0.0;
        let mut shapes = Vec::new();
        for i in 0..20_000 {
            x = phi * x + gauss(i);
            d.update(i as i64 * step, 50.0 + x);
            if i % 2_000 == 1_999 {
                shapes.push(d.long_mean * d.long_mean / d.long_var);
            }
        }
        let mean = shapes.iter().sum::<f64>() / shapes.len() as f64;
        assert!(
            (0.7 * NOISE_SHAPE..1.3 * NOISE_SHAPE).contains(&mean),
            "phi {phi}, every {step} ms: shape {mean} ({shapes:?})"
        );
    }
}

/// `sensitivity` is the false alarms a series raises a day on noise alone, whatever its
/// sampling interval: 20 series × 30 days of 5-minute samples and 20 × 10 days of 15 s ones,
/// Gaussian and AR(1) noise and noise over a level that wanders (a random walk, each step a
/// tenth of the noise), the whole detector at 0.1 and 1 a day. Measured at most 2.5 times over
/// and at least 1/2.5 of it at 0.1; at 1 a day at least a quarter — 0.27–0.30 at 5 minutes
/// (0.48–0.54 before the calibrated average alarmed only when the continuous score agrees: at
/// a looser setting more of its alarms are mild ones the longer horizons do not share). Before
/// the skewed reference, at 0.01: 9 times over at 5 minutes, 50 times at 15 s; the walk at
/// 15 s 6.4 times over at 0.1 while the profile learnt by the sample.
#[test]
fn sensitivity_is_the_false_alarms_a_series_raises_a_day_on_noise() {
    let mut found = Vec::new();
    for sensitivity in [0.1, 1.0] {
        let cfg = DetectorConfig {
            sensitivity,
            ..DetectorConfig::default()
        };
        for (step, days) in [(300_000, 30), (15_000, 10)] {
            for kind in ["gaussian", "ar(0.5)", "walk"] {
                let n = alarms_on_noise(cfg, kind, step, days);
                let per_day = n as f64 / (20 * days) as f64;
                println!("{kind} every {step} ms at {sensitivity}: {per_day} a series a day ({n})");
                found.push((sensitivity, per_day));
            }
        }
    }
    for (sensitivity, per_day) in found {
        let under = if sensitivity < 1.0 { 2.5 } else { 4.0 };
        assert!(
            (sensitivity / under..sensitivity * 2.5).contains(&per_day),
            "{per_day} a series a day at {sensitivity}"
        );
    }
}

/// Noise with heavier tails than Gaussian — Laplace, and a latency-like log-normal (σ 0.3) —
/// raises more than the setting promises where samples are frequent: at 0.1 a day, 0.13 / 0.16
/// a series a day at 5 minutes (30 days) but 0.27 / 0.30 at 15 s (10 days). Most of it comes
/// from new highs beyond the range whose deviation is rated as if Gaussian; in a series' first
/// `young_days` (3) only the range's tail may rate them (below). The honest tails tried for
/// them after that — the deviation's own tail, the range's tail throughout — cost NAB windows;
/// pinned so that it does not get worse (before the young guard: 0.16 / 0.17 and 0.48 / 0.40).
#[test]
fn heavy_tailed_noise_raises_at_most_a_few_times_the_setting() {
    let cfg = DetectorConfig::default();
    for (step, days, bound) in [(300_000, 30, 2.5), (15_000, 10, 4.0)] {
        for kind in ["laplace", "lognormal"] {
            let per_day = alarms_on_noise(cfg, kind, step, days) as f64 / (20 * days) as f64;
            println!("{kind} every {step} ms: {per_day} a series a day");
            assert!(
                per_day <= bound * cfg.sensitivity,
                "{kind} every {step} ms: {per_day} a series a day"
            );
        }
    }
}

/// A counter of few events per sample alarms by its count's tail with the average's share of
/// `sensitivity`: on Poisson counts (0.2, 1 and 5 a sample; 20 series × 5 days at 15 s and ×
/// 30 days at 5 minutes) it stays below the setting (measured 0.005–0.057 a series a day at
/// 0.1 — the weighted sum of recent counts is compared with a Poisson that varies more).
#[test]
fn counts_on_poisson_noise_raise_no_more_than_sensitivity() {
    let sensitivity = DetectorConfig::default().sensitivity;
    for lambda in [0.2, 1.0, 5.0] {
        for (step, days) in [(15_000, 5), (300_000, 30)] {
            let n = days * 86_400_000 / step as usize;
            let mut alarms = 0;
            for k in 0..20 {
                let mut d = Detector::new(DetectorConfig::default());
                for i in 0..n {
                    // Poisson by inversion of its distribution function.
                    let u = uniform((k * n + i) as u64 * 7 + 3);
                    let (mut c, mut p) = (0.0_f64, f64::exp(-lambda));
                    let mut cdf = p;
                    while u > cdf && c < 200.0 {
                        c += 1.0;
                        p *= lambda / c;
                        cdf += p;
                    }
                    let rate = c / (step as f64 / 1000.0);
                    let s = d.update_counted(i as i64 * step, rate, Some(c));
                    alarms += usize::from(s.alarm);
                }
            }
            let per_day = alarms as f64 / (20 * days) as f64;
            assert!(
                per_day <= sensitivity,
                "λ {lambda} every {step} ms: {per_day} a series a day ({alarms})"
            );
        }
    }
}

/// A series' first days: every sample is a new high with chance 1/n, and a latency's highs come
/// further out than a Gaussian's. Only the range's tail rates them while the series is young:
/// 20 series × one day of 15 s samples, Laplace and log-normal noise, raise 0.05 / 0.3 a series
/// that day at 0.1 (1.55 / 1.1 with `young_days` 0). A latency that grows tenfold in its third
/// hour still alarms at once; one that quadruples, three samples later.
#[test]
fn a_young_series_alarms_on_its_range_tail_not_its_deviation_alone() {
    let cfg = DetectorConfig::default();
    let grown = DetectorConfig {
        young_days: 0.0,
        ..cfg
    };
    for kind in ["laplace", "lognormal"] {
        let young = alarms_on_noise(cfg, kind, 15_000, 1) as f64 / 20.0;
        let unguarded = alarms_on_noise(grown, kind, 15_000, 1) as f64 / 20.0;
        println!("{kind}, first day at 15 s: {young} a series ({unguarded} unguarded)");
        assert!(young <= 4.0 * cfg.sensitivity, "{kind}: {young} a series");
        assert!(
            unguarded > 2.0 * young,
            "{kind}: {unguarded} against {young}"
        );
    }
    // (From index 1: the draw at index 0 is a 37 σ outlier.)
    let latency = |i: usize| 0.2 * (0.3 * normal(i + 1)).exp();
    for factor in [4.0, 10.0] {
        let mut d = Detector::new(cfg);
        for i in 0..720 {
            d.update(i as i64 * 15_000, latency(i));
        }
        let after = (720..760).position(|i| d.update(i as i64 * 15_000, factor * latency(i)).alarm);
        // The tail calls ×10 rare at once; ×4 is found by the calibrated average, within a
        // minute (at once with `young_days` 0).
        let within = if factor > 5.0 { 0 } else { 4 };
        assert!(after.is_some_and(|n| n <= within), "×{factor}: {after:?}");
    }
}

/// The calibrated average alarms only when the continuous score agrees that the series is more
/// surprised than usual: on 20 days of 5-minute Gaussian noise at 1 a day, every alarm below a
/// score of 1 (the average's; beyond the range, a drift and a count's tail score 1) has a tail
/// probability of at most one half, and the average's alarms it disagreed with — there are
/// some — are shown just below the alert.
#[test]
fn the_average_alarms_only_when_the_continuous_score_agrees() {
    let cfg = DetectorConfig {
        sensitivity: 1.0,
        ..DetectorConfig::default()
    };
    let (mut alarms, mut withheld) = (0, 0);
    for k in 0..20 {
        let mut d = Detector::new(cfg);
        for i in 0..20 * 288 {
            let s = d.update(i as i64 * 300_000, 50.0 + normal(k * 10_000 + i + 1));
            if s.alarm && s.score < 1.0 {
                alarms += 1;
                assert!(s.p_value <= 0.5, "series {k}, sample {i}: {s:?}");
            }
            withheld += usize::from(s.score == BELOW_ALERT * cfg.alert_score);
        }
    }
    println!("{alarms} alarms of the average, {withheld} withheld");
    assert!(alarms > 0 && withheld > 0, "{alarms} / {withheld}");
}
