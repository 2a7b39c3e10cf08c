//! Online load forecasting for one series: point forecast and quantiles for the next samples,
//! updated on every sample in O(candidates) time.
//!
//! * **Candidates.** Holt–Winters-style exponential smoothing (a level plus a seasonal offset
//!   per time bin) with no season, a daily season and a weekly season, each at three level
//!   smoothings: nine small models that all learn from every sample. The seasons are indexed by
//!   *time* (bins of the day / week at the series' own resolution), so irregular sampling and
//!   gaps do not shift them.
//! * **Automatic season.** Each candidate's absolute one-step error (the forecast it made one
//!   sample ago against what arrived) is tracked; the forecast blends the (at
//!   most three) candidates whose recent error is within 1.5 × the best one's, weighted by
//!   inverse squared error — where several models are about as good, a combination beats
//!   picking one (MASE 0.82 → 0.78 on realTraffic, 0.48 → 0.43 on nyc_taxi); where one is
//!   clearly best, it forecasts alone.
//!   A series without a weekly pattern ends up daily or flat on its own; a candidate becomes
//!   eligible once it has seen a whole period.
//! * **Log space.** Series that are never negative during the first samples (loads, rates) are
//!   modelled as `ln(1 + v)`: the seasonal shape is a factor, and forecasts stay positive.
//!   (A negative value later is taken as 0 by that model.)
//! * **Quantiles.** The errors of the forecasts actually served are kept, per horizon, for
//!   horizons 1, 2, 4, 8, … up to the longest one configured; quantiles at a horizon are the
//!   empirical quantiles of those errors (interpolated between tracked horizons) added to the
//!   point forecast — calibrated on the series itself, with no distributional assumption. Until
//!   enough errors are known, a Gaussian band from the one-step error is used.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

mod garbage;
mod normal;
mod stored;
mod v1;

pub(crate) use normal::inverse_normal;
pub use stored::any_layout;
use stored::nan_as_null;
pub use v1::ForecasterV1;

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Level smoothings tried for every season.
const ALPHAS: [f64; 3] = [0.05, 0.2, 0.6];
/// Intervals looked at to find the series' resolution before the models start.
const WARM_INTERVALS: usize = 16;
/// At most this many candidates forecast together (the best by recent error) ...
const TOP: usize = 3;
/// ... those within this factor of the best one's error ...
const NEAR: f64 = 1.5;
/// ... weighted by their error to the power −POW.
const POW: f64 = 2.0;

/// Forecasting parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// The longest horizon asked for, in samples.
    pub max_horizon: u32,
    /// How far a seasonal bin moves toward a new observation (per visit).
    pub season_gamma: f64,
    /// Smoothing of the candidates' error (per sample).
    pub error_alpha: f64,
    /// Errors kept per tracked horizon for the quantiles.
    pub residuals: u32,
    /// At most this many bins per day (finer series share bins).
    pub max_day_bins: u32,
    /// At most this many bins per week.
    pub max_week_bins: u32,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            max_horizon: 64,
            season_gamma: 0.25,
            error_alpha: 0.02,
            residuals: 128,
            max_day_bins: 96,
            max_week_bins: 336,
        }
    }
}

/// Which seasonal pattern a candidate models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// Level only.
    None,
    /// Time of day.
    Daily,
    /// Time of week.
    Weekly,
}

impl Season {
    fn period_ms(self) -> i64 {
        match self {
            Season::None => 0,
            Season::Daily => DAY_MS,
            Season::Weekly => WEEK_MS,
        }
    }
}

/// A forecast of one future sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    /// Samples ahead.
    pub horizon: u32,
    /// When that sample is expected (Unix ms).
    pub target_ms: i64,
    /// The model's forecast.
    pub point: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Forecast {
    /// The `q` quantile (q in [0.5, 0.99], clamped): interpolated between p50, p90 and p99 in
    /// standard-normal units (0.75 sits 0.67 / 1.28 of the way from p50 to p90).
    pub fn quantile(&self, q: f64) -> f64 {
        let q = q.clamp(0.5, 0.99);
        let (z90, z99) = (inverse_normal(0.9), inverse_normal(0.99));
        let z = inverse_normal(q).max(0.0);
        if z <= z90 {
            self.p50 + (self.p90 - self.p50) * z / z90
        } else {
            self.p90 + (self.p99 - self.p90) * ((z - z90) / (z99 - z90)).min(1.0)
        }
    }
}

/// One exponential-smoothing model: a level smoothed at `alpha`, plus its season's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Candidate {
    season: Season,
    alpha: f64,
    level: f64,
    /// Mean absolute one-step error (once `measured` > 0).
    error: f64,
    /// Errors measured so far.
    measured: u32,
}

/// One season's offsets per time bin, shared by the candidates of that season and learnt
/// against the slowest one's level (the most stable baseline, as STL estimates a season
/// against a smooth trend): one profile per season, not one per smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    season: Season,
    /// Seasonal offsets per bin (NaN: not seen yet).
    #[serde(with = "nan_as_null")]
    bins: Vec<f32>,
}

impl Profile {
    fn bin(&self, ts_ms: i64) -> usize {
        let p = self.season.period_ms().max(1);
        (ts_ms.rem_euclid(p) as i128 * self.bins.len() as i128 / p as i128) as usize
    }

    /// The offset at `ts_ms`, if its bin has been seen.
    fn offset(&self, ts_ms: i64) -> Option<f64> {
        self.bins
            .get(self.bin(ts_ms))
            .filter(|s| s.is_finite())
            .map(|&s| f64::from(s))
    }
}

/// The forecasts served at one tracked horizon, waiting for their sample (one per sample
/// since, oldest first: the front is due when `horizon` of them wait), and the errors of those
/// that arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    horizon: u32,
    pending: VecDeque<f32>,
    errors: VecDeque<f32>,
}

/// The forecasting state of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    cfg: ForecastConfig,
    seen: u64,
    first_ms: i64,
    last_ms: i64,
    /// The first intervals, until the resolution is known.
    intervals: Vec<i64>,
    /// Typical interval between samples (0: not known yet).
    step_ms: i64,
    /// Model `ln(1 + v)` instead of `v`.
    log: bool,
    /// Last value (model space).
    last: f64,
    /// Mean absolute one-step change (model space), for the fallback band.
    change: f64,
    /// The smallest and largest value seen (NaN before the first): the served forecast stays
    /// within half their span of them.
    lo: f64,
    hi: f64,
    candidates: Vec<Candidate>,
    profiles: Vec<Profile>,
    tracked: Vec<Tracked>,
}

impl Forecaster {
    /// A fresh forecaster.
    pub fn new(cfg: ForecastConfig) -> Self {
        Self {
            cfg,
            seen: 0,
            first_ms: 0,
            last_ms: 0,
            intervals: Vec::new(),
            step_ms: 0,
            log: true,
            last: 0.0,
            change: 0.0,
            lo: f64::NAN,
            hi: f64::NAN,
            candidates: Vec::new(),
            profiles: Vec::new(),
            tracked: Vec::new(),
        }
    }

    /// Samples learnt from.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The series' typical interval between samples, once known.
    pub fn step_ms(&self) -> Option<i64> {
        (self.step_ms > 0).then_some(self.step_ms)
    }

    /// When the last sample arrived (Unix ms), if any.
    pub fn last_ms(&self) -> Option<i64> {
        (self.seen > 0).then_some(self.last_ms)
    }

    /// The memory its state takes: the struct and its buffers' capacity, in bytes.
    pub fn state_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Self>()
            + self.intervals.capacity() * size_of::<i64>()
            + self.candidates.capacity() * size_of::<Candidate>()
            + self.profiles.capacity() * size_of::<Profile>()
            + self
                .profiles
                .iter()
                .map(|p| p.bins.capacity() * size_of::<f32>())
                .sum::<usize>()
            + self.tracked.capacity() * size_of::<Tracked>()
            + self
                .tracked
                .iter()
                .map(|t| (t.pending.capacity() + t.errors.capacity()) * size_of::<f32>())
                .sum::<usize>()
    }

    /// The season of the candidate currently forecasting.
    pub fn season(&self) -> Option<Season> {
        self.best().map(|c| c.season)
    }

    fn to_model(&self, v: f64) -> f64 {
        if self.log { v.max(0.0).ln_1p() } else { v }
    }

    fn to_value(&self, m: f64) -> f64 {
        if self.log { m.exp_m1() } else { m }
    }

    fn profile(&self, season: Season) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.season == season)
    }

    /// Candidate `c`'s forecast for `ts_ms` (model space).
    fn predict(&self, c: &Candidate, ts_ms: i64) -> f64 {
        c.level
            + self
                .profile(c.season)
                .and_then(|p| p.offset(ts_ms))
                .unwrap_or(0.0)
    }

    /// The candidate with the lowest recent error (a level-only one until errors are known).
    fn best_index(&self) -> Option<usize> {
        let c = &self.candidates;
        (0..c.len())
            .filter(|&i| c[i].measured >= 10 && c[i].error.is_finite())
            .min_by(|&a, &b| c[a].error.total_cmp(&c[b].error))
            .or_else(|| c.iter().position(|c| c.season == Season::None))
    }

    /// The candidates that forecast together and their weights: of the `TOP` with the lowest
    /// recent error, those within `NEAR` × the best error, weighted by inverse squared error (a
    /// level-only one until errors are known).
    fn blend(&self) -> ([(usize, f64); TOP], usize) {
        let mut out = [(0usize, 0.0f64); TOP];
        let c = &self.candidates;
        // On the stack: this runs for every sample (there are nine candidates).
        let mut ranked: [(usize, f64); 16] = [(0, f64::INFINITY); 16];
        let mut k = 0;
        for (i, x) in c.iter().enumerate() {
            if x.measured >= 10 && x.error.is_finite() && k < ranked.len() {
                ranked[k] = (i, x.error);
                k += 1;
            }
        }
        let ranked = &mut ranked[..k];
        ranked.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
        if ranked.is_empty() {
            return match c.iter().position(|c| c.season == Season::None) {
                Some(i) => {
                    out[0] = (i, 1.0);
                    (out, 1)
                }
                None => (out, 0),
            };
        }
        let best = ranked[0].1;
        let n = ranked
            .iter()
            .take(TOP)
            .take_while(|r| r.1 <= NEAR * best)
            .count()
            .max(1);
        let mut total = 0.0;
        for (slot, &(i, e)) in out.iter_mut().zip(ranked.iter()).take(n) {
            let w = 1.0 / e.max(1e-12).powf(POW);
            *slot = (i, w);
            total += w;
        }
        for slot in &mut out[..n] {
            slot.1 /= total;
        }
        (out, n)
    }

    /// The served forecast for `target_ms` (model space) with the blend's weights `w`: within
    /// half the span of values seen beyond them ([`Self::bounds`]), so that a seasonal offset
    /// learnt during a burst cannot send it to values the series never came near.
    fn served(&self, (w, n): &([(usize, f64); TOP], usize), target_ms: i64) -> f64 {
        let m = if *n == 0 {
            self.last
        } else {
            w[..*n]
                .iter()
                .map(|&(i, w)| w * self.predict(&self.candidates[i], target_ms))
                .sum()
        };
        match self.bounds() {
            Some((lo, hi)) => m.clamp(lo, hi),
            None => m,
        }
    }

    /// What a served forecast and its quantiles may be (model space): the values seen, widened
    /// by half their span on each side.
    fn bounds(&self) -> Option<(f64, f64)> {
        let half = (self.hi - self.lo) / 2.0;
        let (lo, hi) = (self.to_model(self.lo - half), self.to_model(self.hi + half));
        (lo.is_finite() && hi.is_finite()).then_some((lo, hi.max(lo)))
    }

    fn best(&self) -> Option<&Candidate> {
        self.best_index().map(|i| &self.candidates[i])
    }

    /// Learns from `value` observed at `ts_ms` (Unix ms). NaN and infinities are skipped, and
    /// so are samples not after the previous one and garbage far beyond the values seen
    /// (`garbage`).
    pub fn update(&mut self, ts_ms: i64, value: f64) {
        if !value.is_finite()
            || (self.seen > 0 && ts_ms <= self.last_ms)
            || self.is_garbage(ts_ms, value)
        {
            return;
        }
        if self.seen == 0 {
            self.first_ms = ts_ms;
            self.log = value >= 0.0;
        } else if self.step_ms == 0 {
            self.intervals.push(ts_ms - self.last_ms);
            self.log &= value >= 0.0;
        }
        (self.lo, self.hi) = (self.lo.min(value), self.hi.max(value));
        let y = self.to_model(value);
        if self.seen > 0 {
            let a = (1.0 / self.seen as f64).max(self.cfg.error_alpha);
            self.change += a * ((y - self.last).abs() - self.change);
        }
        // One-step errors, before anyone learns: a season is only judged once a whole period
        // had been seen by the previous sample.
        let elapsed = self.last_ms - self.first_ms;
        let ea = self.cfg.error_alpha;
        for i in 0..self.candidates.len() {
            let c = &self.candidates[i];
            if elapsed >= c.season.period_ms() {
                let e = (y - self.predict(c, ts_ms)).abs();
                let c = &mut self.candidates[i];
                let a = (1.0 / (f64::from(c.measured) + 1.0)).max(ea);
                c.error += a * (e - c.error);
                c.measured += 1;
            }
        }
        if self.step_ms == 0 && self.intervals.len() >= WARM_INTERVALS {
            self.start(y);
        }
        self.learn(ts_ms, y);
        for t in &mut self.tracked {
            if t.pending.len() >= t.horizon as usize
                && let Some(f) = t.pending.pop_front()
            {
                if t.errors.len() >= self.cfg.residuals as usize {
                    t.errors.pop_front();
                }
                t.errors.push_back((y - f64::from(f)) as f32);
            }
        }
        self.seen += 1;
        self.last_ms = ts_ms;
        self.last = y;
        self.plan();
    }

    /// Every candidate's level moves toward `y` less its season's offset (a bin seen for the
    /// first time leaves the levels alone); then each profile's bin moves toward `y` less the
    /// slowest level of its season.
    fn learn(&mut self, ts_ms: i64, y: f64) {
        let gamma = self.cfg.season_gamma;
        let offsets: [Option<f64>; 2] = [Season::Daily, Season::Weekly]
            .map(|s| self.profile(s).map(|p| p.offset(ts_ms)).unwrap_or(None));
        let offset_of = |s: Season| match s {
            Season::None => Some(0.0),
            Season::Daily => offsets[0],
            Season::Weekly => offsets[1],
        };
        // Per season: (alpha, level) of its slowest candidate.
        let mut reference: [Option<(f64, f64)>; 2] = [None; 2];
        for c in &mut self.candidates {
            if let Some(s) = offset_of(c.season) {
                c.level += c.alpha * (y - c.level - s);
            }
            let slot = match c.season {
                Season::None => continue,
                Season::Daily => 0,
                Season::Weekly => 1,
            };
            if reference[slot].is_none_or(|(a, _)| c.alpha < a) {
                reference[slot] = Some((c.alpha, c.level));
            }
        }
        for p in &mut self.profiles {
            let slot = usize::from(p.season == Season::Weekly);
            let Some((_, level)) = reference[slot] else {
                continue;
            };
            let b = p.bin(ts_ms);
            if let Some(bin) = p.bins.get_mut(b) {
                *bin = if bin.is_finite() {
                    let s = f64::from(*bin);
                    (s + gamma * (y - level - s)) as f32
                } else {
                    (y - level) as f32
                };
            }
        }
    }

    /// The resolution is known: allocate the candidates and the seasons' profiles.
    fn start(&mut self, y: f64) {
        let mut iv = std::mem::take(&mut self.intervals);
        iv.sort_unstable();
        self.step_ms = iv[iv.len() / 2].max(1);
        let bins = |period: i64, max: u32| {
            ((period as f64 / self.step_ms as f64).round() as usize).clamp(1, max as usize)
        };
        let day = bins(DAY_MS, self.cfg.max_day_bins);
        let week = bins(WEEK_MS, self.cfg.max_week_bins);
        for season in [Season::None, Season::Daily, Season::Weekly] {
            for alpha in ALPHAS {
                self.candidates.push(Candidate {
                    season,
                    alpha,
                    level: y,
                    error: 0.0,
                    measured: 0,
                });
            }
        }
        self.candidates.shrink_to_fit();
        self.profiles = vec![
            Profile {
                season: Season::Daily,
                bins: vec![f32::NAN; day],
            },
            Profile {
                season: Season::Weekly,
                bins: vec![f32::NAN; week],
            },
        ];
        let mut h = 1;
        while h < self.cfg.max_horizon {
            self.tracked.push(Tracked::new(h, self.cfg.residuals));
            h *= 2;
        }
        self.tracked.push(Tracked::new(
            self.cfg.max_horizon.max(1),
            self.cfg.residuals,
        ));
        self.tracked.shrink_to_fit();
    }

    /// After learning: the served forecast is recorded at every tracked horizon.
    fn plan(&mut self) {
        if self.candidates.is_empty() {
            return;
        }
        let (last_ms, step_ms) = (self.last_ms, self.step_ms.max(1));
        let w = self.blend();
        let due: Vec<f32> = self
            .tracked
            .iter()
            .map(|t| self.served(&w, last_ms + i64::from(t.horizon) * step_ms) as f32)
            .collect();
        for (t, f) in self.tracked.iter_mut().zip(due) {
            t.pending.push_back(f);
        }
    }

    fn target_ms(&self, horizon: u32) -> i64 {
        self.last_ms + i64::from(horizon) * self.step_ms.max(1)
    }

    /// The served forecast in model space.
    fn model_point(&self, horizon: u32) -> f64 {
        self.served(&self.blend(), self.target_ms(horizon))
    }

    /// The quantiles `qs` of the served forecasts' errors at `horizon` (model space),
    /// interpolated (in log horizon) between the tracked horizons around it; a Gaussian band from
    /// the one-step change while fewer than 20 errors are known there.
    fn error_quantiles<const N: usize>(&self, horizon: u32, qs: [f64; N]) -> [f64; N] {
        let sorted = |t: &Tracked| {
            (t.errors.len() >= 20).then(|| {
                let mut e: Vec<f32> = t.errors.iter().copied().collect();
                e.sort_unstable_by(f32::total_cmp);
                (f64::from(t.horizon), e)
            })
        };
        let quantile = |e: &[f32], q: f64| {
            let pos = q * (e.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let w = pos - lo as f64;
            f64::from(e[lo]) * (1.0 - w) + f64::from(e[hi]) * w
        };
        let below = self.tracked.iter().rev().find(|t| t.horizon <= horizon);
        let above = self.tracked.iter().find(|t| t.horizon >= horizon);
        let ends = match (below, above) {
            (Some(l), Some(h)) if l.horizon != h.horizon => sorted(l).zip(sorted(h)),
            (Some(t), _) | (None, Some(t)) => sorted(t).map(|e| (e.clone(), e)),
            (None, None) => None,
        };
        qs.map(|q| match &ends {
            Some(((h0, e0), (h1, e1))) => {
                let (a, b) = (quantile(e0, q), quantile(e1, q));
                if h1 > h0 {
                    let w = (f64::from(horizon).ln() - h0.ln()) / (h1.ln() - h0.ln());
                    a + w * (b - a)
                } else {
                    a
                }
            }
            None => inverse_normal(q) * 1.2533 * self.change * f64::from(horizon).sqrt(),
        })
    }

    /// The forecast `horizon` samples ahead (1 = the next one), or None before the first sample.
    pub fn forecast(&self, horizon: u32) -> Option<Forecast> {
        if self.seen == 0 {
            return None;
        }
        let horizon = horizon.max(1);
        let m = self.model_point(horizon);
        let (lo, hi) = self.bounds().unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let [p50, p90, p99] = self
            .error_quantiles(horizon, [0.5, 0.9, 0.99])
            .map(|e| self.to_value((m + e).clamp(lo, hi)));
        Some(Forecast {
            horizon,
            target_ms: self.target_ms(horizon),
            point: self.to_value(m),
            p50,
            p90: p90.max(p50),
            p99: p99.max(p90).max(p50),
        })
    }

    /// The forecast for the sample expected at or after `target_ms`, or None before the
    /// resolution is known.
    pub fn forecast_at(&self, target_ms: i64) -> Option<Forecast> {
        let step = self.step_ms()?;
        let ahead = (target_ms - self.last_ms).max(1);
        let horizon = ((ahead + step - 1) / step).clamp(1, i64::from(u32::MAX)) as u32;
        self.forecast(horizon)
    }
}

impl Tracked {
    fn new(horizon: u32, residuals: u32) -> Self {
        Self {
            horizon,
            pending: VecDeque::with_capacity(horizon as usize),
            errors: VecDeque::with_capacity(residuals as usize),
        }
    }
}

#[cfg(test)]
mod tests;
