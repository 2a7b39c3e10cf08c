//! The forecaster on made-up series: seasons, gaps, quantiles, checkpoints.

use super::*;

const STEP: i64 = 1_800_000; // 30 minutes

/// Requests per second with a daily shape and quiet weekends.
fn load(i: i64) -> f64 {
    let t = i * STEP;
    let hour = (t % DAY_MS) as f64 / 3_600_000.0;
    let weekend = matches!((t / DAY_MS) % 7, 2 | 3);
    let daily = 100.0 + 80.0 * (std::f64::consts::PI * (hour - 4.0) / 24.0).sin().powi(2);
    let noise = (((i * 7919) % 101) as f64 / 101.0 - 0.5) * 4.0;
    daily * if weekend { 0.4 } else { 1.0 } + noise
}

#[test]
fn learns_a_weekly_pattern_and_forecasts_it() {
    let mut f = Forecaster::new(ForecastConfig {
        max_horizon: 8,
        ..ForecastConfig::default()
    });
    let n = 5 * 7 * 48;
    for i in 0..n {
        f.update(i * STEP, load(i));
    }
    assert_eq!(f.season(), Some(Season::Weekly));
    assert_eq!(f.step_ms(), Some(STEP));
    for h in 1..=8 {
        let fc = f.forecast(h).expect("forecast");
        let actual = load(n - 1 + i64::from(h));
        assert!(
            (fc.point - actual).abs() < 10.0,
            "h={h}: {fc:?} vs {actual}"
        );
        assert!(fc.p50 <= fc.p90 && fc.p90 <= fc.p99, "{fc:?}");
        assert_eq!(fc.target_ms, (n - 1 + i64::from(h)) * STEP);
    }
}

#[test]
fn quantiles_cover_what_they_promise() {
    let mut f = Forecaster::new(ForecastConfig {
        max_horizon: 4,
        ..ForecastConfig::default()
    });
    let (mut below90, mut total) = (0, 0);
    let n = 6 * 7 * 48;
    let mut pending: VecDeque<(i64, f64)> = VecDeque::new();
    for i in 0..n {
        while pending.front().is_some_and(|&(due, _)| due == i) {
            let (_, p90) = pending.pop_front().expect("front");
            if i > 4 * 7 * 48 {
                total += 1;
                below90 += i32::from(load(i) <= p90);
            }
        }
        f.update(i * STEP, load(i));
        pending.push_back((i + 4, f.forecast(4).expect("forecast").p90));
    }
    let coverage = f64::from(below90) / f64::from(total);
    assert!((0.8..=0.97).contains(&coverage), "{coverage}");
}

#[test]
fn survives_a_checkpoint_round_trip() {
    let mut f = Forecaster::new(ForecastConfig::default());
    for i in 0..300 {
        f.update(i * STEP, load(i));
    }
    let json = serde_json::to_string(&f).expect("serialise");
    let back: Forecaster = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(
        back.forecast(3).map(|x| x.point),
        f.forecast(3).map(|x| x.point)
    );
}

#[test]
fn skips_bad_values_and_negative_series_stay_linear() {
    let mut f = Forecaster::new(ForecastConfig::default());
    assert!(f.forecast(1).is_none());
    for i in 0..100 {
        f.update(i * 60_000, -5.0 + (i % 3) as f64);
        f.update(i * 60_000 + 1, f64::NAN);
    }
    let fc = f.forecast(2).expect("forecast");
    assert!(fc.point < 0.0 && fc.point.is_finite(), "{fc:?}");
    assert_eq!(f.step_ms(), Some(60_000));
}

#[test]
fn inverse_normal_is_accurate() {
    assert!((inverse_normal(0.5)).abs() < 1e-9);
    assert!((inverse_normal(0.975) - 1.959_963_985).abs() < 1e-6);
    assert!((inverse_normal(0.01) + 2.326_347_874).abs() < 1e-6);
}

#[test]
fn a_five_minute_series_fits_in_a_few_kilobytes() {
    // Three weeks of 5-minute samples (the finest resolution the bins still split).
    let step = 300_000;
    let feed = |cfg: ForecastConfig| {
        let mut f = Forecaster::new(cfg);
        for i in 0..3 * 7 * 288 {
            f.update(i * step, load(i / 6));
        }
        f
    };
    let now = feed(ForecastConfig::default());
    let before = feed(ForecastConfig {
        residuals: 256,
        max_day_bins: 288,
        max_week_bins: 2016,
        ..ForecastConfig::default()
    });
    let (small, large) = (now.state_bytes(), before.state_bytes());
    assert!(small <= 14 * 1024, "{small} bytes");
    // The previous defaults (finer bins, more errors kept) took almost three times as much.
    assert!(large >= 5 * small / 2, "{large} vs {small}");
    // Each candidate waits on one forecast (its one-step error), not on half the horizon's.
    assert!(now.candidates.iter().all(|c| c.pending.len() <= 1));
}
