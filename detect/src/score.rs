//! Online anomaly scoring of one series: strictly online, O(1) per sample, a few hundred bytes
//! of state.
//!
//! 1. **Raw surprise.** The value is compared with a prediction (a fast exponentially weighted
//!    level) in units of a robust scale (the exponentially weighted mean absolute residual), and
//!    with the range seen so far: a value well outside it is surprising however noisy the
//!    series.
//!    While the recent level predicts best, a large deviation from the time-of-day profile
//!    (in log space for non-negative series) still counts, at a coarser scale — adjusted for
//!    the day of the week once that predicts better (84 two-hour bins of the week, one byte
//!    each, used after two weeks): a Wednesday that looks like a Sunday is a holiday.
//!    A surprise that recurs at the same time of day (a nightly job) is discounted: each
//!    15-minute bin remembers the largest surprise of earlier days, fading by half a day.
//! 2. **Calibration.** A short moving average of the raw surprise is compared with the long-run
//!    distribution of that average on the same series (exponentially weighted mean and
//!    variance), and its Gaussian tail probability is log-scaled to [0, 1] — the "anomaly
//!    likelihood" idea of Numenta's detector. A score means the same on every series, so one
//!    threshold serves all.
//! 3. **Sparsity.** After a score crosses the alert level, scores are held at 0 for a rest
//!    period: a change is reported once, early.
//!
//! Gaps, NaN and infinities are skipped (they score 0 and leave the state alone).

use serde::{Deserialize, Serialize};

/// Parameters, one set for every series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Samples used only to learn before the first score.
    pub learning_samples: u32,
    /// After an alert, samples during which scores are held at 0 (0: learning_samples / 5, at
    /// most 150).
    pub rest_samples: u32,
    /// Score that counts as an alert for the rest period.
    pub alert_score: f64,
    /// Smoothing of the predicted level.
    pub level_alpha: f64,
    /// Smoothing of the residual scale.
    pub scale_alpha: f64,
    /// Samples in the short moving average of raw surprise.
    pub short_window: u32,
    /// Smoothing of the long-run distribution of that average.
    pub long_alpha: f64,
    /// A value this share of the seen range outside it is fully surprising.
    pub range_margin: f64,
    /// Such a value scores 1 at once, without waiting for the calibrated average ...
    pub spatial_alerts: bool,
    /// ... when it is also at least this many robust deviations from the prediction.
    pub spatial_min_z: f64,
    /// How much a surprise that recurs at the same time of day (within a bin either side) is
    /// discounted: 0 never, 1 fully. A nightly backup spike is routine, not an anomaly.
    pub recurrence_discount: f64,
    /// Each day, the remembered surprise of a time-of-day bin fades by this factor.
    pub recurrence_decay: f64,
    /// Only surprises at least this large are remembered.
    pub recurrence_min: f64,
    /// While the recent level is the better predictor, the time-of-day profile is still asked:
    /// its surprise, weighted by this (0: never), counts too. For series that are never
    /// negative it is measured in log space (a night that falls to a tenth of its usual level
    /// is as surprising as a day that does), which is what makes a holiday or a storm visible
    /// in traffic whose recent level follows the fall smoothly.
    pub seasonal_weight: f64,
    /// Deviations from the profile (in its robust scale, log space for non-negative series)
    /// this large give about 40 % surprise: the profile is a coarse predictor, so only large
    /// deviations count.
    pub seasonal_z: f64,
    /// How far the weekly adjustment of a two-hour bin moves toward a new week's value (the
    /// step is shared among the samples that fall in the bin).
    pub week_alpha: f64,
    /// Like `seasonal_z`, for the deviation from the profile adjusted for the day of the week
    /// (used once that predicts better than the plain profile): a sharper predictor, so a
    /// smaller deviation counts.
    pub weekly_z: f64,
    /// A weekly adjustment learns from residuals clipped to this many of its robust scales: one
    /// holiday does not rewrite the week.
    pub week_clip: f64,
    /// The two horizons (samples) of the continuous score: the mean surprise over each is
    /// compared with its own history (exponentially weighted averages of this length).
    pub rank_windows: [f64; 2],
    /// How long that history is, in multiples of each horizon.
    pub rank_memory: [f64; 2],
    /// The history learns from values clipped to this many of its standard deviations: an
    /// anomaly does not make the next one look normal.
    pub rank_clip: f64,
    /// The horizons average the raw surprise raised to this power: a few large surprises
    /// outweigh many small ones (1: the plain mean). Raw surprise is below 1, so a higher
    /// power leaves the everyday floor of small surprises near 0.
    pub rank_power: f64,
    /// Sensitivity: the false alarms a series may raise per day on noise alone. With the
    /// series' own sampling interval (learnt from its timestamps) it sets the per-sample tail
    /// probability `sensitivity / samples per day` that alarms — the alert level of the
    /// calibrated score and the bar of the one-sample alarm (a value far outside the range
    /// seen, `spatial_min_z` its lowest bar): a series sampled every 15 s needs a rarer state
    /// to alarm than one sampled every 5 minutes.
    pub sensitivity: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            learning_samples: 300,
            rest_samples: 0,
            alert_score: 0.5,
            level_alpha: 0.8,
            scale_alpha: 0.005,
            short_window: 12,
            long_alpha: 0.002,
            range_margin: 0.05,
            spatial_alerts: true,
            spatial_min_z: 3.0,
            recurrence_discount: 0.5,
            recurrence_decay: 0.5,
            recurrence_min: 0.8,
            seasonal_weight: 0.5,
            seasonal_z: 6.0,
            week_alpha: 0.5,
            weekly_z: 4.0,
            week_clip: 2.0,
            rank_windows: [64.0, 256.0],
            rank_memory: [16.0, 4.0],
            rank_clip: 3.0,
            rank_power: 4.0,
            sensitivity: 0.01,
        }
    }
}

/// The outcome of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Scored {
    /// The alarm-facing score in [0, 1]: the fast calibrated surprise, held at 0 for the rest
    /// period after an alarm. Events open when it reaches the alert level.
    pub score: f64,
    /// The continuous score in [0, 1] that ranks samples by how unusual the series is now:
    /// `L / (L + 5)` with `L = −log10(p_value)` — 0.5 means a one-in-100,000 state of this
    /// series, 0.2 about one in 18. Never held at 0; 0 while learning.
    pub rank_score: f64,
    /// The tail probability behind `rank_score` (1 while learning).
    pub p_value: f64,
    /// True when this sample raises an alarm (`score` at the alert level).
    pub alarm: bool,
    /// True when the series counts few events per sample (see [`crate::count`]): its score is
    /// its count's tail, and its service's model leaves it out.
    pub counted: bool,
    /// Uncalibrated surprise in [0, 1].
    pub raw: f64,
    /// The value expected.
    pub expected: f64,
    /// Lower edge of the expected band.
    pub lower: f64,
    /// Upper edge of the expected band.
    pub upper: f64,
}

const SHORT_MAX: usize = 16;
/// Time-of-day bins of the seasonal profile (15 minutes each).
pub(crate) const DAY_BINS: usize = 96;
const DAY_MS: i64 = 86_400_000;
/// Two-hour bins of the week (84) for the weekly adjustment of the time-of-day profile.
const WEEK_BINS: usize = 84;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Weekly adjustments are stored in 1/64ths of a natural log (±2: a factor of 7.4).
const WEEK_UNIT: f64 = 64.0;
/// A week bin not seen yet.
const WEEK_UNSEEN: i8 = i8::MIN;

fn unseen_week() -> [i8; WEEK_BINS] {
    [WEEK_UNSEEN; WEEK_BINS]
}

impl Scored {
    /// How far `value` is from the expected value, in units of the band's half-width / 3 (a
    /// robust standard deviation): the series' own surprise, signed, with its level, trend and
    /// time-of-day pattern taken out. 0 when the band is empty.
    pub fn deviation(&self, value: f64) -> f64 {
        let unit = (self.upper - self.expected) / 3.0;
        if unit > 0.0 && value.is_finite() {
            (value - self.expected) / unit
        } else {
            0.0
        }
    }
}

/// The state of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// Shared by every detector with the same parameters (interned), not copied into each:
    /// a million series would otherwise carry a million copies. Not checkpointed: a restored
    /// detector takes the parameters in use ([`Detector::set_config`]).
    #[serde(skip, default = "default_config")]
    cfg: &'static DetectorConfig,
    seen: u64,
    level: f64,
    scale: f64,
    min: f64,
    max: f64,
    short: [f32; SHORT_MAX],
    #[serde(with = "serde_array")]
    day: [f32; DAY_BINS],
    #[serde(with = "serde_array")]
    day_n: [u8; DAY_BINS],
    /// The largest raw surprise seen in each time-of-day bin, fading daily (255 = 1.0).
    #[serde(with = "serde_array")]
    day_peak: [u8; DAY_BINS],
    last_bin: u8,
    /// The largest surprise in the current bin so far today.
    cur_peak: u8,
    /// The previous bin's remembered surprise from before today.
    prev_peak: u8,
    day_scale: f64,
    #[serde(default)]
    day_log_scale: f64,
    /// How each two-hour bin of the week differs from the time-of-day profile (log space, in
    /// 1/64ths): Sunday mornings are not Tuesday mornings.
    #[serde(with = "serde_array", default = "unseen_week")]
    week: [i8; WEEK_BINS],
    /// The robust log scale of residuals after the weekly adjustment.
    #[serde(default)]
    week_log_scale: f64,
    /// When the first sample arrived (Unix ms): the weekly adjustment is used after two weeks.
    #[serde(default)]
    first_ms: i64,
    short_sum: f64,
    long_mean: f64,
    long_var: f64,
    rest_left: u32,
    /// The continuous score's state (checkpointed beside the detector, see `checkpoint`).
    #[serde(skip)]
    pub(crate) rank: RankState,
}

/// The state of the continuous score: for each horizon, the mean surprise and the exponentially
/// weighted mean and variance of its history.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RankState {
    mean: [f32; 2],
    hist_mean: [f32; 2],
    hist_var: [f32; 2],
    /// The previous sample's time (Unix ms) and the typical interval between samples (ms,
    /// exponentially weighted; 0 unknown).
    last_ms: i64,
    interval_ms: f32,
    /// A counter's counts, scored as counts while it counts few events per sample.
    #[serde(default)]
    pub(crate) count: crate::count::CountState,
}

/// [`RankState`] as checkpointed before counts were scored as counts (postcard: field for
/// field); its counts start learning afresh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV1 {
    mean: [f32; 2],
    hist_mean: [f32; 2],
    hist_var: [f32; 2],
    last_ms: i64,
    interval_ms: f32,
}

impl From<RankStateV1> for RankState {
    fn from(r: RankStateV1) -> Self {
        Self {
            mean: r.mean,
            hist_mean: r.hist_mean,
            hist_var: r.hist_var,
            last_ms: r.last_ms,
            interval_ms: r.interval_ms,
            count: Default::default(),
        }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV1 {
    fn from(r: RankState) -> Self {
        Self {
            mean: r.mean,
            hist_mean: r.hist_mean,
            hist_var: r.hist_var,
            last_ms: r.last_ms,
            interval_ms: r.interval_ms,
        }
    }
}

impl RankState {
    /// Learns the sampling interval from a sample at `ts_ms`.
    fn observe_time(&mut self, ts_ms: i64) {
        let dt = ts_ms - self.last_ms;
        if self.last_ms != 0 && dt > 0 {
            let dt = dt as f32;
            self.interval_ms = if self.interval_ms > 0.0 {
                self.interval_ms + 0.05 * (dt - self.interval_ms)
            } else {
                dt
            };
        }
        self.last_ms = ts_ms;
    }

    /// The per-sample tail probability that raises `sensitivity` false alarms a day.
    fn alarm_p(&self, sensitivity: f64) -> f64 {
        let per_day = if self.interval_ms > 0.0 {
            (DAY_MS as f64 / f64::from(self.interval_ms)).max(1.0)
        } else {
            288.0
        };
        (sensitivity / per_day).clamp(1e-15, 0.5)
    }

    /// The deviation a single sample needs to alarm at `sensitivity` false alarms a day.
    fn alarm_z(&self, sensitivity: f64) -> f64 {
        upper_quantile(self.alarm_p(sensitivity))
    }

    /// Learns `raw` (sample `seen`, learning for the first `learning`) and returns the one-sided
    /// z of the more unusual horizon (`None` while learning).
    fn update(&mut self, cfg: &DetectorConfig, raw: f64, seen: u64, learning: u64) -> Option<f64> {
        let mut z_max = f64::NEG_INFINITY;
        let raw = if cfg.rank_power == 4.0 {
            (raw * raw) * (raw * raw)
        } else {
            raw.powf(cfg.rank_power)
        };
        for h in 0..2 {
            let m = cfg.rank_windows[h].max(1.0);
            let mut e = f64::from(self.mean[h]);
            e += (raw - e) / m;
            let (mu, var) = (f64::from(self.hist_mean[h]), f64::from(self.hist_var[h]));
            let sd = var.sqrt().max(1e-3);
            z_max = z_max.max((e - mu) / sd);
            let (a, x) = if seen < learning {
                (1.0 / (seen as f64 + 1.0), e)
            } else {
                let lim = cfg.rank_clip * sd;
                (
                    1.0 / (cfg.rank_memory[h] * m).max(1.0),
                    mu + (e - mu).clamp(-lim, lim),
                )
            };
            let d = x - mu;
            self.mean[h] = e as f32;
            self.hist_mean[h] = (mu + a * d) as f32;
            self.hist_var[h] = ((1.0 - a) * (var + a * d * d)) as f32;
        }
        (seen >= learning).then_some(z_max)
    }
}

/// The natural log of the upper Gaussian tail probability at `z`, accurate far into the tail.
pub(crate) fn ln_tail(z: f64) -> f64 {
    if z <= 0.0 {
        return tail_probability(z).ln();
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    (0.5 * as_poly(t)).ln() - x * x
}

/// The z whose upper Gaussian tail probability is `p` (0 < p ≤ 0.5), Acklam's rational
/// approximation (relative error below 1.2e-9).
fn upper_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = 0.5 - p;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// A tail probability's score in [0, 1): `L / (L + 5)`, `L = −log10 p`.
pub fn rank_score_of(ln_p: f64) -> f64 {
    let l = (-ln_p / std::f64::consts::LN_10).max(0.0);
    if l.is_finite() { l / (l + 5.0) } else { 1.0 }
}

/// A tail probability as a score in [0, 1], log-scaled: 1e-5 scores 0.5, 1e-10 scores 1.
pub(crate) fn log_score(tail: f64) -> f64 {
    (tail.max(1e-300).ln() / -23.025_850_929_940_46).clamp(0.0, 1.0)
}

/// The polynomial of Abramowitz–Stegun 7.1.26 at `t`.
const fn as_poly(t: f64) -> f64 {
    t * (0.254829592
        + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
}

/// [`tail_probability`] at 0, bit for bit (t = 1, exp(0) = 1).
const TAIL_AT_0: f64 = 0.5 * as_poly(1.0);

/// The calibration's log tail when the short average is at or below its long-run mean (most
/// samples): a constant, not an `exp` and a `ln` per sample.
static LN_CALM_TAIL: std::sync::LazyLock<f64> =
    std::sync::LazyLock::new(|| (1.000_000_000_1 - (1.0 - TAIL_AT_0)).ln());

pub(crate) fn tail_probability(z: f64) -> f64 {
    // Q(z) = erfc(z / sqrt 2) / 2, Abramowitz–Stegun 7.1.26 for erfc.
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = as_poly(t);
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// The one shared copy of `cfg` (parameter sets are few; each is kept for the process).
fn intern(cfg: DetectorConfig) -> &'static DetectorConfig {
    static TABLE: std::sync::Mutex<Vec<&'static DetectorConfig>> =
        std::sync::Mutex::new(Vec::new());
    let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = table.iter().find(|c| ***c == cfg) {
        return c;
    }
    let c: &'static DetectorConfig = Box::leak(Box::new(cfg));
    table.push(c);
    c
}

fn default_config() -> &'static DetectorConfig {
    intern(DetectorConfig::default())
}

impl Detector {
    /// A fresh detector.
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg: intern(cfg),
            seen: 0,
            level: 0.0,
            scale: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            short: [0.0; SHORT_MAX],
            day: [0.0; DAY_BINS],
            day_n: [0; DAY_BINS],
            day_peak: [0; DAY_BINS],
            last_bin: u8::MAX,
            cur_peak: 0,
            prev_peak: 0,
            day_scale: 0.0,
            day_log_scale: 0.0,
            week: unseen_week(),
            week_log_scale: 0.0,
            first_ms: 0,
            short_sum: 0.0,
            long_mean: 0.0,
            long_var: 0.0,
            rest_left: 0,
            rank: RankState::default(),
        }
    }

    /// A detector that starts from a fitted profile (see `train`): a level, a scale, the range
    /// seen and the median of each 15-minute time-of-day bin (NaN: no data). It still learns
    /// its calibration from the samples it is given, but knows the daily shape from the start.
    pub fn seeded(
        cfg: DetectorConfig,
        level: f64,
        scale: f64,
        range: (f64, f64),
        day: &[f32],
    ) -> Self {
        let mut d = Self::new(cfg);
        if level.is_finite() {
            d.level = level;
        }
        if scale.is_finite() {
            d.scale = scale;
            d.day_scale = scale;
        }
        if range.0.is_finite() && range.1.is_finite() && range.0 <= range.1 {
            (d.min, d.max) = range;
        }
        for (b, &m) in day.iter().enumerate().take(DAY_BINS) {
            if m.is_finite() {
                d.day[b] = m;
                d.day_n[b] = 2;
            }
        }
        d
    }

    /// The continuous score's state, kept outside the detector's serde form (checkpoints and
    /// hand-overs carry it beside the detector, so older checkpoints stay readable).
    pub fn rank_state(&self) -> RankState {
        self.rank
    }

    /// Restores the continuous score's state.
    pub fn set_rank_state(&mut self, rank: RankState) {
        self.rank = rank;
    }

    /// The parameters it scores with.
    pub fn config(&self) -> &DetectorConfig {
        self.cfg
    }

    /// Scores with `cfg` from now on (a detector restored from a checkpoint).
    pub fn set_config(&mut self, cfg: DetectorConfig) {
        if *self.cfg != cfg {
            self.cfg = intern(cfg);
        }
    }

    fn rest_samples(&self) -> u32 {
        if self.cfg.rest_samples > 0 {
            self.cfg.rest_samples
        } else {
            (self.cfg.learning_samples / 5).clamp(1, 150)
        }
    }

    /// Scores `value` observed at `ts_ms` (Unix ms) and learns from it.
    pub fn update(&mut self, ts_ms: i64, value: f64) -> Scored {
        self.update_counted(ts_ms, value, None)
    }

    /// Scores a counter's per-second `rate` at `ts_ms` and learns from it; `count` is the
    /// number of events since the previous sample when the counter counts whole events (see
    /// [`crate::count`]: few events per sample are scored as counts).
    pub fn update_counted(&mut self, ts_ms: i64, value: f64, count: Option<f64>) -> Scored {
        if !value.is_finite() {
            return Scored {
                expected: self.level,
                lower: self.level - 3.0 * self.scale,
                upper: self.level + 3.0 * self.scale,
                p_value: 1.0,
                ..Scored::default()
            };
        }
        let cfg = *self.cfg;
        let prev_ms = self.rank.last_ms;
        self.rank.observe_time(ts_ms);
        if self.seen == 0 || self.first_ms == 0 {
            // (0 also after restoring a checkpoint from before the weekly adjustment.)
            self.first_ms = ts_ms;
        }
        if self.seen == 0 && !self.min.is_finite() {
            self.level = value;
            self.min = value;
            self.max = value;
        }
        // The prediction that has been more accurate lately: the recent level, or the same time
        // of day (once that bin has been seen twice).
        let bin = ((ts_ms.rem_euclid(DAY_MS)) * DAY_BINS as i64 / DAY_MS) as usize;
        // (`day_n` counts visits to the bin — days — not samples.)
        let entered = bin as u8 != self.last_bin;
        let seasonal = self.day_n[bin] >= 2 && self.seen > 300 && self.day_scale < self.scale;
        let (expected, scale) = if seasonal {
            (f64::from(self.day[bin]), self.day_scale)
        } else {
            (self.level, self.scale)
        };
        let band = 3.0 * 1.2533 * scale;

        // 1. Raw surprise.
        let resid = value - expected;
        let range = (self.max - self.min).max(f64::EPSILON);
        let spread = scale.max(range * 1e-3).max(f64::EPSILON);
        let z = resid.abs() / (1.2533 * spread);
        let mut raw = 1.0 - (-0.5 * (z / 3.0).powi(2)).exp();
        let wbin = (ts_ms.rem_euclid(WEEK_MS) * WEEK_BINS as i64 / WEEK_MS) as usize;
        let week_adj = f64::from(self.week[wbin]) / WEEK_UNIT;
        let weekly = self.week[wbin] != WEEK_UNSEEN
            && ts_ms - self.first_ms >= 2 * WEEK_MS
            && self.week_log_scale < self.day_log_scale;
        let log_resid = value.max(0.0).ln_1p() - f64::from(self.day[bin]).max(0.0).ln_1p();
        if cfg.seasonal_weight > 0.0 && !seasonal && self.day_n[bin] >= 2 && self.seen > 300 {
            // Also ask the time-of-day profile (adjusted for the day of the week once that
            // predicts better): a smooth fall at noon is no surprise to the recent level, but it
            // is to the same time on other days.
            let zs = if self.min >= 0.0 {
                let (resid, scale) = if weekly {
                    (log_resid - week_adj, self.week_log_scale)
                } else {
                    (log_resid, self.day_log_scale)
                };
                resid.abs() / (1.2533 * scale.max(1e-3))
            } else {
                (value - f64::from(self.day[bin])).abs()
                    / (1.2533 * self.day_scale.max(range * 1e-3).max(f64::EPSILON))
            };
            let sz = if weekly && self.min >= 0.0 {
                cfg.weekly_z
            } else {
                cfg.seasonal_z
            };
            let rs = 1.0 - (-0.5 * (zs / sz).powi(2)).exp();
            raw = raw.max(cfg.seasonal_weight * rs);
        }
        let mut spatial = false;
        if self.seen > 0 {
            let outside = (value - self.max).max(self.min - value);
            if outside > cfg.range_margin * range {
                raw = 1.0;
                // Far outside the range *and* far from the prediction: a trend that sets new
                // highs step by step is not an anomaly.
                // How far depends on how often the series is sampled (`sensitivity`).
                spatial = z >= cfg.spatial_min_z && z >= self.rank.alarm_z(cfg.sensitivity);
            } else if outside > 0.0 {
                raw = raw.max(outside / (cfg.range_margin * range));
            }
        }

        // A surprise like one seen at this time of day on earlier days is routine (a nightly
        // job). Today's surprises are kept aside until the bin ends, so that an anomaly does not
        // excuse itself.
        if bin as u8 != self.last_bin {
            if let Some(old) = self.day_peak.get_mut(usize::from(self.last_bin)) {
                self.prev_peak = *old;
                *old = ((f64::from(*old) * cfg.recurrence_decay) as u8).max(self.cur_peak);
            }
            self.prev_peak = if (usize::from(self.last_bin) + 1) % DAY_BINS == bin {
                self.prev_peak
            } else {
                0
            };
            self.last_bin = bin as u8;
            self.cur_peak = 0;
        }
        let recur = self
            .prev_peak
            .max(self.day_peak[bin])
            .max(self.day_peak[(bin + 1) % DAY_BINS]);
        let felt = raw;
        raw *= 1.0 - cfg.recurrence_discount * f64::from(recur) / 255.0;
        if self.seen >= u64::from(cfg.learning_samples) && felt >= cfg.recurrence_min {
            self.cur_peak = self.cur_peak.max((felt * 255.0) as u8);
        }

        // 2. Calibration: short average against its long-run distribution.
        let w = (cfg.short_window as usize).clamp(1, SHORT_MAX);
        let slot = (self.seen as usize) % w;
        self.short_sum += raw - f64::from(self.short[slot]);
        self.short[slot] = raw as f32;
        let n = (self.seen as usize + 1).min(w) as f64;
        let avg = (self.short_sum / n).max(0.0);
        let std = self.long_var.sqrt().max(1e-4);
        let mut score = 0.0;
        if self.seen >= u64::from(cfg.learning_samples) {
            let z = (avg - self.long_mean) / std;
            // Log-scaled so that the alert level (0.5) is the tail probability that raises
            // `sensitivity` false alarms a day at this series' sampling rate, 1 its square.
            let ln_tail = if z > 0.0 {
                let likelihood = 1.0 - tail_probability(z);
                (1.000_000_000_1 - likelihood).ln()
            } else {
                *LN_CALM_TAIL
            };
            score = (ln_tail / (2.0 * self.rank.alarm_p(cfg.sensitivity).ln())).clamp(0.0, 1.0);
            if spatial && cfg.spatial_alerts {
                // Far outside everything seen: no calibration needed.
                score = 1.0;
            }
        }
        let a = if self.seen < u64::from(cfg.learning_samples) {
            1.0 / (self.seen as f64 + 1.0)
        } else {
            cfg.long_alpha
        };
        let d = avg - self.long_mean;
        self.long_mean += a * d;
        self.long_var = (1.0 - a) * (self.long_var + a * d * d);

        // The continuous score, from the same surprise over longer horizons.
        let z = self
            .rank
            .update(&cfg, raw, self.seen, u64::from(cfg.learning_samples));
        // The tail probability and its log: one `exp` or `ln` of them from the other.
        let (ln_p, p) = match z {
            None => (0.0, 1.0),
            Some(z) if z <= 0.0 => {
                let p = tail_probability(z);
                (p.ln(), p)
            }
            Some(z) => {
                let ln_p = ln_tail(z);
                (ln_p, ln_p.exp())
            }
        };

        // Few events per sample: the count's own tail, not the rate's calibration.
        let dt_s = (ts_ms - prev_ms) as f64 / 1000.0;
        let count = count.filter(|_| prev_ms != 0);
        let sparse = count.is_some() && self.rank.count.sparse(dt_s);
        let counted = count.and_then(|k| {
            let interval_s = f64::from(self.rank.interval_ms) / 1000.0;
            self.rank
                .count
                .update(k, dt_s, interval_s, cfg.learning_samples)
        });
        if let Some(ln_c) = counted {
            score = if self.seen >= u64::from(cfg.learning_samples) {
                (ln_c / (2.0 * self.rank.alarm_p(cfg.sensitivity).ln())).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
        let (ln_p, p) = match counted {
            Some(ln_c) if self.seen >= u64::from(cfg.learning_samples) => (ln_c, ln_c.exp()),
            _ => (ln_p, p),
        };

        // 3. Sparsity.
        if self.rest_left > 0 {
            self.rest_left -= 1;
            score = 0.0;
        } else if score >= cfg.alert_score {
            self.rest_left = self.rest_samples();
        }

        // Learn.
        let sa = if self.seen < 30 {
            1.0 / (self.seen as f64 + 1.0)
        } else {
            cfg.scale_alpha
        };
        let level_resid = value - self.level;
        self.scale += sa * (level_resid.abs() - self.scale);
        self.level += cfg.level_alpha * level_resid;
        if self.day_n[bin] > 0 {
            let day_resid = value - f64::from(self.day[bin]);
            self.day_scale += sa * (day_resid.abs() - self.day_scale);
            self.day_log_scale += sa * (log_resid.abs() - self.day_log_scale);
            let w = &mut self.week[wbin];
            if *w == WEEK_UNSEEN {
                *w = (log_resid * WEEK_UNIT).round().clamp(-127.0, 127.0) as i8;
            } else {
                self.week_log_scale += sa * ((log_resid - week_adj).abs() - self.week_log_scale);
                // Huber-clipped: one holiday does not rewrite the week.
                let lim = cfg.week_clip * self.week_log_scale.max(1e-3);
                let per_bin = (self.seen as f64 * (WEEK_MS / WEEK_BINS as i64) as f64
                    / (ts_ms - self.first_ms).max(1) as f64)
                    .max(1.0);
                let next =
                    week_adj + cfg.week_alpha / per_bin * (log_resid - week_adj).clamp(-lim, lim);
                // Dithered rounding (deterministic, from the timestamp): small steps add up
                // on average instead of vanishing in the 1/64 grid.
                let dither = ((ts_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64
                    / (1u64 << 24) as f64;
                *w = (next * WEEK_UNIT + dither).floor().clamp(-127.0, 127.0) as i8;
            }
            self.day[bin] += (0.3 * day_resid) as f32;
        } else {
            self.day[bin] = value as f32;
            if self.seen < 30 {
                self.day_scale = self.scale;
            }
        }
        if entered || self.day_n[bin] == 0 {
            self.day_n[bin] = self.day_n[bin].saturating_add(1);
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.seen += 1;
        Scored {
            score,
            rank_score: rank_score_of(ln_p),
            p_value: p,
            alarm: score >= cfg.alert_score,
            counted: sparse,
            raw,
            expected,
            lower: expected - band,
            upper: expected + band,
        }
    }
}

/// Serde for fixed arrays longer than 32 (serde implements up to 32).
mod serde_array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(
        v: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} values, got {len}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noise(i: usize) -> f64 {
        (((i * 7919) % 101) as f64 / 101.0 - 0.5) * 2.0
    }

    #[test]
    fn the_calm_constants_are_the_functions_at_zero_bit_for_bit() {
        assert_eq!(TAIL_AT_0.to_bits(), tail_probability(0.0).to_bits());
        let by_hand = (1.000_000_000_1 - (1.0 - tail_probability(0.0))).ln();
        assert_eq!(LN_CALM_TAIL.to_bits(), by_hand.to_bits());
    }

    #[test]
    fn a_spike_after_learning_scores_high_and_noise_does_not() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut max_quiet: f64 = 0.0;
        for i in 0..1000 {
            let s = d.update(i as i64 * 300_000, 100.0 + noise(i));
            if i > 400 {
                max_quiet = max_quiet.max(s.score);
            }
        }
        let spike = d.update(1000 * 300_000, 160.0);
        assert!(spike.score > 0.5, "{spike:?}");
        assert!(max_quiet < 0.5, "{max_quiet}");
    }

    #[test]
    fn alerts_are_followed_by_rest() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..500 {
            d.update(i as i64 * 300_000, 10.0 + noise(i));
        }
        // Far outside the range seen: an alert at once, then rest.
        let first = d.update(500 * 300_000, 100.0);
        assert_eq!(first.score, 1.0);
        let second = d.update(501 * 300_000, 150.0);
        assert_eq!(second.score, 0.0);
    }

    #[test]
    fn a_spike_at_the_same_time_every_day_becomes_routine() {
        const STEP: i64 = 300_000; // 5 minutes: 288 samples a day
        let run = |new_time_on_last_day: bool| {
            let mut d = Detector::new(DetectorConfig::default());
            let mut last = Scored::default();
            for i in 0..288 * 8 {
                let day = i / 288;
                let spike_at = if day == 7 && new_time_on_last_day {
                    200
                } else {
                    40
                };
                let v = if day >= 2 && i % 288 == spike_at {
                    12.0
                } else {
                    1.0 + 0.1 * noise(i)
                };
                let s = d.update(i as i64 * STEP, v);
                if day == 7 && i % 288 == spike_at {
                    last = s;
                }
            }
            last
        };
        let routine = run(false);
        let novel = run(true);
        assert!(routine.raw <= 0.5 * novel.raw, "{routine:?} vs {novel:?}");
        assert!(routine.score < novel.score, "{routine:?} vs {novel:?}");
    }

    #[test]
    fn nothing_scores_during_learning() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..300 {
            assert_eq!(
                d.update(i * 60_000, if i % 50 == 0 { 1e6 } else { 1.0 })
                    .score,
                0.0
            );
        }
    }

    proptest! {
        #[test]
        fn scores_are_finite_and_in_unit_interval(values in prop::collection::vec(prop_oneof![
            any::<f64>(), -1e12f64..1e12, Just(f64::NAN), Just(0.0)], 1..400)) {
            let mut d = Detector::new(DetectorConfig { learning_samples: 10, ..DetectorConfig::default() });
            for (i, v) in values.into_iter().enumerate() {
                let s = d.update(i as i64 * 60_000, v);
                prop_assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{s:?}");
                prop_assert!(s.raw.is_finite() || !v.is_finite(), "{s:?}");
            }
        }
    }

    /// Traffic with a daily shape whose weekends run at 40 %: a Wednesday that looks like a
    /// Sunday (a holiday) is an anomaly, the weekends themselves are not.
    #[test]
    fn a_weekday_like_a_weekend_is_found_and_weekends_are_routine() {
        const STEP: i64 = 1_800_000; // 30 minutes: 48 samples a day
        let traffic = |i: i64, holiday: bool| {
            let t = i * STEP;
            let hour = (t % DAY_MS) as f64 / 3_600_000.0;
            // 1970-01-01 was a Thursday: days 2 and 3 of each week are the weekend.
            let weekend = holiday || matches!((t / DAY_MS) % 7, 2 | 3);
            let daily = 1000.0 + 800.0 * (std::f64::consts::PI * (hour - 4.0) / 24.0).sin().powi(2);
            daily * if weekend { 0.4 } else { 1.0 } * (1.0 + 0.02 * noise(i as usize))
        };
        let mut d = Detector::new(DetectorConfig::default());
        let weeks = 6 * 7 * 48;
        let mut weekend_max: f64 = 0.0;
        for i in 0..weeks {
            let s = d.update(i * STEP, traffic(i, false));
            if i > 4 * 7 * 48 {
                weekend_max = weekend_max.max(s.score);
            }
        }
        // The next Wednesday (day 6 of the week) is a holiday.
        let mut holiday_max: f64 = 0.0;
        for i in weeks..weeks + 7 * 48 {
            let holiday = (i * STEP / DAY_MS) % 7 == 6;
            let s = d.update(i * STEP, traffic(i, holiday));
            if holiday {
                holiday_max = holiday_max.max(s.score);
            }
        }
        assert!(weekend_max < 0.5, "{weekend_max}");
        assert!(holiday_max >= 0.5, "{holiday_max}");
    }

    #[test]
    fn the_upper_quantile_inverts_the_tail() {
        for p in [0.4, 0.1, 0.02, 1e-3, 1e-5, 1e-9, 1e-14] {
            let z = upper_quantile(p);
            let back = ln_tail(z).exp();
            // (the tail itself is Abramowitz–Stegun 7.1.26: a few per mille far out)
            assert!((back / p - 1.0).abs() < 1e-2, "{p}: z {z} gives {back}");
        }
        assert!((upper_quantile(0.5)).abs() < 1e-9);
    }

    /// With `rank_power` 4 one sample far off the expected (raw surprise 1) ranks above ten a
    /// little off (0.3 each); with 1 (the plain mean) the ten win.
    #[test]
    fn the_rank_power_lets_one_large_surprise_outrank_many_small_ones() {
        let z_after = |power: f64, burst: &[f64]| {
            let cfg = DetectorConfig {
                rank_power: power,
                ..DetectorConfig::default()
            };
            let mut r = RankState::default();
            let mut z = None;
            // The everyday floor of small surprises.
            for k in 0..5000u64 {
                z = r.update(&cfg, if k % 2 == 0 { 0.05 } else { 0.1 }, k, 300);
            }
            for (k, &raw) in burst.iter().enumerate() {
                z = r.update(&cfg, raw, 5000 + k as u64, 300);
            }
            z.expect("learnt")
        };
        let (one, ten) = ([1.0], [0.3; 10]);
        assert!(z_after(4.0, &one) > z_after(4.0, &ten), "power 4");
        assert!(z_after(1.0, &one) < z_after(1.0, &ten), "power 1");
    }

    #[test]
    fn state_is_small() {
        assert!(
            std::mem::size_of::<Detector>() <= 1024,
            "{}",
            std::mem::size_of::<Detector>()
        );
    }
}
