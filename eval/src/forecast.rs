//! Rolling-origin evaluation of the forecaster on one `timestamp,value` series (`aiops eval
//! forecast`).
//!
//! The series is replayed sample by sample through a [`Forecaster`]; after a warm-up, every
//! `stride`-th sample is an *origin*: the forecaster (which has seen exactly the samples up to
//! it) forecasts the next `horizon` samples, and so does seasonal naive (the value one day
//! before the target time, or k days before when the target is more than a day ahead, taken
//! from the samples up to the origin). Every origin with a full horizon is scored, for both
//! methods on the same forecasts:
//!
//! * **MASE**: mean absolute error divided by the mean absolute error of one-day seasonal
//!   naive *in sample* (each sample against the last sample at least a day before it, over the
//!   whole series) — the scale is a property of the series, the same for every method.
//! * **sMAPE**: mean of `200 |y − f| / (|y| + |f|)` (pairs with both 0 are skipped), in percent.
//! * **Coverage**: the share of actual values at or below the forecast's p50 / p90 / p99 (a
//!   calibrated p90 covers 0.90).
//! * **WQL**: weighted quantile loss over p50, p90 and p99 — the mean over the three of
//!   `2 Σ ρ_q(y − f_q) / Σ |y|` (ρ the pinball loss), the discrete CRPS approximation GIFT-Eval
//!   reports.
//!
//! With `keep_forecasts`, every origin's forecasts are returned too, so a comparison script can
//! score ours and its peers with one piece of code (`aiops eval forecast --forecasts-out`).

use serde::Serialize;

use aiops_detect::forecast::{ForecastConfig, Forecaster};

const DAY_MS: i64 = 86_400_000;

/// What to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct BacktestOptions {
    /// Samples ahead forecast from every origin.
    pub horizon: u32,
    /// Samples learnt before the first origin.
    pub warmup: usize,
    /// Samples between origins.
    pub stride: usize,
    /// Return every origin's forecasts in [`Backtest::made`].
    pub keep_forecasts: bool,
}

/// Our forecasts from one origin (index `origin` is the last sample seen), one entry per step
/// ahead.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OriginForecast {
    /// Index of the origin sample in the ordered series.
    pub origin: usize,
    /// Point forecasts.
    pub point: Vec<f64>,
    /// Medians.
    pub p50: Vec<f64>,
    /// 90th percentiles.
    pub p90: Vec<f64>,
    /// 99th percentiles.
    pub p99: Vec<f64>,
}

/// Errors of one method.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MethodScore {
    /// Mean absolute scaled error.
    pub mase: f64,
    /// Symmetric mean absolute percentage error (percent).
    pub smape: f64,
    /// Mean absolute error.
    pub mae: f64,
}

/// Our errors and interval coverage.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OursScore {
    /// Mean absolute scaled error.
    pub mase: f64,
    /// Symmetric mean absolute percentage error (percent).
    pub smape: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Share of actual values at or below the p50 forecast.
    pub coverage_p50: f64,
    /// Share of actual values at or below the p90 forecast.
    pub coverage_p90: f64,
    /// Share of actual values at or below the p99 forecast.
    pub coverage_p99: f64,
    /// Weighted quantile loss over p50, p90 and p99.
    pub wql: f64,
}

/// The outcome on one series.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// Rows in the series.
    pub rows: usize,
    /// Rows dropped before the evaluation because their timestamp repeated (set by the caller).
    pub repeated_rows: usize,
    /// The series' typical interval (seconds).
    pub step_secs: f64,
    /// Samples ahead.
    pub horizon: u32,
    /// Origins scored.
    pub origins: usize,
    /// Forecasts scored per method (origins × horizon).
    pub forecasts: usize,
    /// The season the forecaster chose by the end.
    pub season: String,
    /// Ours.
    pub ours: OursScore,
    /// One-day seasonal naive.
    pub seasonal_naive: MethodScore,
    /// Wall time of our replay (learning every sample and forecasting at every origin).
    pub seconds: f64,
    /// Our forecasts per second (origins × horizon / seconds).
    pub forecasts_per_sec: f64,
    /// The forecaster's state at the end, bytes ([`Forecaster::state_bytes`]).
    pub state_bytes: usize,
    /// Every origin's forecasts, with `keep_forecasts`.
    #[serde(skip)]
    pub made: Vec<OriginForecast>,
}

#[derive(Default)]
struct Sums {
    abs: f64,
    smape: f64,
    smape_n: usize,
    n: usize,
}

impl Sums {
    fn add(&mut self, y: f64, f: f64) {
        self.abs += (y - f).abs();
        let d = y.abs() + f.abs();
        if d > 0.0 {
            self.smape += 200.0 * (y - f).abs() / d;
            self.smape_n += 1;
        }
        self.n += 1;
    }

    fn score(&self, scale: f64) -> MethodScore {
        let mae = self.abs / self.n.max(1) as f64;
        MethodScore {
            mase: if scale > 0.0 { mae / scale } else { f64::NAN },
            smape: self.smape / self.smape_n.max(1) as f64,
            mae,
        }
    }
}

/// The index of the last sample at or before `t` among `times[..=upto]`.
fn at_or_before(times: &[i64], upto: usize, t: i64) -> Option<usize> {
    let k = times[..=upto].partition_point(|&x| x <= t);
    k.checked_sub(1)
}

/// Seasonal naive for the sample at `target` seen from origin `origin`: the last sample at or
/// before the target time minus the fewest whole days that reach back to the origin.
fn seasonal_naive(times: &[i64], values: &[f64], origin: usize, target: usize) -> Option<f64> {
    let ahead = times[target] - times[origin];
    let days = (ahead.max(0) / DAY_MS) + 1;
    at_or_before(times, origin, times[target] - days * DAY_MS).map(|j| values[j])
}

/// The in-sample scale of MASE: mean |y_t − y_{t−1 day}| over the series.
fn naive_scale(times: &[i64], values: &[f64]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for i in 0..times.len() {
        if let Some(j) = at_or_before(times, i, times[i] - DAY_MS) {
            sum += (values[i] - values[j]).abs();
            n += 1;
        }
    }
    if n > 0 { sum / n as f64 } else { f64::NAN }
}

/// Runs the rolling-origin evaluation. `times` must be ascending (Unix ms).
pub fn run(times: &[i64], values: &[f64], cfg: ForecastConfig, opts: BacktestOptions) -> Backtest {
    let h = opts.horizon.max(1);
    let stride = opts.stride.max(1);
    let mut f = Forecaster::new(ForecastConfig {
        max_horizon: cfg.max_horizon.max(h),
        ..cfg
    });
    let (mut ours, mut naive) = (Sums::default(), Sums::default());
    let (mut c50, mut c90, mut c99) = (0usize, 0usize, 0usize);
    let (mut pinball, mut abs_y) = (0.0, 0.0);
    let mut made = Vec::new();
    let mut origins = 0;
    let mut ours_secs = 0.0;
    let n = times.len();
    for i in 0..n {
        let t0 = std::time::Instant::now();
        f.update(times[i], values[i]);
        ours_secs += t0.elapsed().as_secs_f64();
        let last = i + h as usize;
        if i + 1 < opts.warmup.max(1)
            || !(i + 1 - opts.warmup.max(1)).is_multiple_of(stride)
            || last >= n
        {
            continue;
        }
        // Both methods are scored on the same origins: those where seasonal naive has history.
        let naive_f: Option<Vec<f64>> = (1..=h as usize)
            .map(|k| seasonal_naive(times, values, i, i + k))
            .collect();
        let Some(naive_f) = naive_f else { continue };
        let t0 = std::time::Instant::now();
        let ours_f: Vec<_> = (1..=h).filter_map(|k| f.forecast(k)).collect();
        ours_secs += t0.elapsed().as_secs_f64();
        if ours_f.len() != h as usize {
            continue;
        }
        origins += 1;
        for (k, (fc, nf)) in ours_f.iter().zip(&naive_f).enumerate() {
            let y = values[i + k + 1];
            ours.add(y, fc.point);
            naive.add(y, *nf);
            c50 += usize::from(y <= fc.p50);
            c90 += usize::from(y <= fc.p90);
            c99 += usize::from(y <= fc.p99);
            pinball += pinball_loss(y, fc.p50, 0.5)
                + pinball_loss(y, fc.p90, 0.9)
                + pinball_loss(y, fc.p99, 0.99);
            abs_y += y.abs();
        }
        if opts.keep_forecasts {
            made.push(OriginForecast {
                origin: i,
                point: ours_f.iter().map(|f| f.point).collect(),
                p50: ours_f.iter().map(|f| f.p50).collect(),
                p90: ours_f.iter().map(|f| f.p90).collect(),
                p99: ours_f.iter().map(|f| f.p99).collect(),
            });
        }
    }
    let scale = naive_scale(times, values);
    let o = ours.score(scale);
    let share = |c: usize| c as f64 / ours.n.max(1) as f64;
    Backtest {
        rows: n,
        repeated_rows: 0,
        step_secs: f.step_ms().unwrap_or(0) as f64 / 1000.0,
        horizon: h,
        origins,
        forecasts: ours.n,
        season: f
            .season()
            .map(|s| format!("{s:?}").to_lowercase())
            .unwrap_or_default(),
        ours: OursScore {
            mase: o.mase,
            smape: o.smape,
            mae: o.mae,
            coverage_p50: share(c50),
            coverage_p90: share(c90),
            coverage_p99: share(c99),
            wql: if abs_y > 0.0 {
                2.0 * pinball / 3.0 / abs_y
            } else {
                f64::NAN
            },
        },
        seasonal_naive: naive.score(scale),
        seconds: ours_secs,
        forecasts_per_sec: if ours_secs > 0.0 {
            ours.n as f64 / ours_secs
        } else {
            0.0
        },
        state_bytes: f.state_bytes(),
        made,
    }
}

/// The pinball (quantile) loss of forecast `f` for quantile `q` when `y` arrived.
fn pinball_loss(y: f64, f: f64, q: f64) -> f64 {
    if y >= f {
        q * (y - f)
    } else {
        (1.0 - q) * (f - y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_pattern_is_forecast_better_than_seasonal_naive_and_scored_on_the_same_origins() {
        let step = 600_000; // 10 minutes
        let times: Vec<i64> = (0..144 * 21).map(|i| i * step).collect();
        let values: Vec<f64> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let hour = (t % DAY_MS) as f64 / 3_600_000.0;
                50.0 + 30.0 * (hour / 24.0 * std::f64::consts::TAU).sin()
                    + (((i * 7919) % 101) as f64 / 101.0 - 0.5) * 6.0
            })
            .collect();
        let b = run(
            &times,
            &values,
            ForecastConfig::default(),
            BacktestOptions {
                horizon: 6,
                warmup: 144 * 7,
                stride: 1,
                keep_forecasts: true,
            },
        );
        assert_eq!(b.forecasts, b.origins * 6);
        assert!(b.origins > 1000, "{b:?}");
        assert!(b.ours.mase < b.seasonal_naive.mase, "{b:?}");
        assert!((0.8..0.97).contains(&b.ours.coverage_p90), "{b:?}");
        assert_eq!(b.step_secs, 600.0);
        assert_eq!(b.made.len(), b.origins);
        assert!(
            b.made
                .iter()
                .all(|m| m.p90.len() == 6 && m.p50.iter().zip(&m.p90).all(|(a, b)| a <= b))
        );
        assert!(b.ours.wql > 0.0 && b.ours.wql < 0.2, "{b:?}");
    }

    #[test]
    fn seasonal_naive_looks_back_whole_days_from_the_origin() {
        let times: Vec<i64> = (0..10).map(|i| i * DAY_MS / 2).collect();
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        // Origin 4 (day 2.0); target 5 (day 2.5) -> day 1.5 = index 3.
        assert_eq!(seasonal_naive(&times, &values, 4, 5), Some(3.0));
        // Target 7 (day 3.5) is 1.5 days ahead -> two days back, day 1.5 = index 3.
        assert_eq!(seasonal_naive(&times, &values, 4, 7), Some(3.0));
        assert_eq!(seasonal_naive(&times, &values, 0, 1), None);
    }
}
