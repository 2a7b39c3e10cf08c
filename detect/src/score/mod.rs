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
//!    variance), and its tail probability — by the skewed tail such an average has on noise,
//!    see `tails::NOISE_SHAPE` — is log-scaled to [0, 1], the alert level where the series
//!    raises its share of `sensitivity` false alarms a day: the "anomaly likelihood" idea of
//!    Numenta's detector. A score means the same on every series, so one threshold serves all.
//!    A level that drifts from its slow baseline further than it wanders on this series (a
//!    slow ramp the prediction follows step by step, see `drift`) alarms too, and so does a
//!    series that moves much more or less than it did (a frozen gauge, a flapping one, see
//!    `volatility`) and one that has left the day's shape for hours (`profile_drift`).
//! 3. **Sparsity.** After a score crosses the alert level, scores are held at 0 for a rest
//!    period: a change is reported once, early.
//!
//! Gaps, NaN and infinities are skipped (they score 0 and leave the state alone); garbage far
//! beyond the range seen alarms and is not learnt (`glitch`).

use aiops_models::AlarmReason;
use serde::{Deserialize, Serialize};

mod config;
pub(crate) mod count;
mod drift;
mod extremes;
mod glitch;
mod learn;
mod profile_drift;
mod rank;
mod scored;
mod serde_array;
mod tails;
#[cfg(test)]
mod tests;
mod volatility;

pub use config::DetectorConfig;
pub use rank::RankState;
pub(crate) use rank::{
    RankStateV1, RankStateV2, RankStateV3, RankStateV4, RankStateV5, RankStateV6,
};
use rank::{SHARE_COUNT, SHARE_DRIFT, SHARE_PROFILE_DRIFT, SHARE_RANGE, SHARE_VOLATILITY};
pub use scored::Scored;
use tails::{LN_CALM_TAIL, ew_step, ln_noise_tail};
#[cfg(test)]
use tails::{NOISE_SHAPE, upper_quantile};
pub(crate) use tails::{ln_tail, log_score, tail_probability};
pub use tails::{p_value_of_rank, rank_score_of};

const SHORT_MAX: usize = 16;
/// Time-of-day bins of the seasonal profile (15 minutes each).
pub(crate) const DAY_BINS: usize = 96;
const DAY_MS: i64 = 86_400_000;
/// The score of an alarm the continuous score disagrees with: just below the alert score.
const BELOW_ALERT: f64 = 0.98;
/// One time-of-day bin.
const BIN_MS: i64 = DAY_MS / DAY_BINS as i64;
/// How far a time-of-day bin moves toward each sample that falls into it.
const PROFILE_RATE: f64 = 0.3;
/// A visit to a bin (once a day) with more samples than this learns as much as this many
/// would: a series sampled every 15 s learns its profile as a 5-minute one does. Per sample, a
/// 15 s series' profile followed the current value within each visit (sixty samples), looked
/// as accurate as the recent level, was chosen to predict, and then missed by the whole day's
/// wander at the next bin: a level that wandered raised six times its sensitivity.
const PROFILE_VISIT_SAMPLES: f64 = 3.0;
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
    /// When the first sample arrived (Unix ms): the weekly adjustment is used after two weeks,
    /// and the series is young for `young_days`.
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
        // Two weeks seen: the day of the week, and a departure from the day's shape, count.
        let two_weeks_old = ts_ms - self.first_ms >= 2 * WEEK_MS;
        let weekly = self.week[wbin] != WEEK_UNSEEN
            && two_weeks_old
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
                // How far depends on how often the series is sampled (`sensitivity`), and on
                // how spread out the edge of the range is (see `extremes`).
                // (The tail is asked only when the deviation alone does not decide.)
                let share = SHARE_RANGE * cfg.sensitivity;
                // A young series only by the tail (see `young_days`).
                let young = cfg.is_young(ts_ms - self.first_ms);
                spatial = z >= cfg.spatial_min_z
                    && (z >= self.rank.alarm_z(share) && !young
                        || cfg.tail_alerts
                            && (self.rank.extremes.ln_beyond(value, range * 1e-3))
                                .is_some_and(|ln_p| ln_p <= self.rank.alarm_p(share).ln()));
            } else if outside > 0.0 {
                raw = raw.max(outside / (cfg.range_margin * range));
            }
        }

        // A value far beyond everything seen is reported and held out of learning (`glitch`),
        // a counter's rate too (its count with it).
        if spatial && self.is_glitch(value) {
            return self.glitch(value, expected, band, range);
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
            // The tail of noise's short average (skewed, see `tails::NOISE_SHAPE`), log-scaled
            // so that the alert level (0.5) is the tail that raises the average's share of
            // `sensitivity` false alarms a day at this series' sampling rate, 1 its square.
            let ln_tail = if z > 0.0 {
                ln_noise_tail(z)
            } else {
                *LN_CALM_TAIL
            };
            score = (ln_tail / (2.0 * self.rank.average_p(cfg.sensitivity).ln())).clamp(0.0, 1.0);
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
        (self.long_mean, self.long_var) = ew_step(self.long_mean, self.long_var, avg, a);

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
        let learnt = self.seen >= u64::from(cfg.learning_samples);
        let (ln_p, p) = match counted {
            Some(ln_c) if learnt => {
                let p = self.rank.alarm_p(SHARE_COUNT * cfg.sensitivity);
                score = (ln_c / (2.0 * p.ln())).clamp(0.0, 1.0);
                (ln_c, ln_c.exp())
            }
            Some(_) => {
                score = 0.0;
                (ln_p, p)
            }
            None => (ln_p, p),
        };

        // The calibrated average alarms only when the continuous score agrees that the series
        // is more surprised than usual (its tail probability below one half): a few hours of
        // mild surprises on a smooth series, whose longer horizons are no more surprised than
        // they usually are, stay below the alert.
        // (It is then shown just below the alert.)
        if score >= cfg.alert_score
            && counted.is_none()
            && !(spatial && cfg.spatial_alerts)
            && p > 0.5
        {
            score = BELOW_ALERT * cfg.alert_score;
        }

        // 3. Sparsity.
        let mut reason = None;
        if self.rest_left > 0 {
            self.rest_left -= 1;
            score = 0.0;
        } else if score >= cfg.alert_score {
            self.rest_left = self.rest_samples();
            reason = Some(match counted {
                Some(_) => AlarmReason::Count,
                None if spatial && cfg.spatial_alerts => AlarmReason::Range,
                None => AlarmReason::Surprise,
            });
        }

        // A level that has drifted from its baseline further than it wanders (its share of the
        // false alarms `sensitivity` allows), a series that moves much more or less than it
        // did (its step sizes, likewise), or one that has left the day's shape for hours (never
        // negative, two weeks old: a first weekend departs as much), when nothing else alarms
        // — and once the baseline holds no alarm of this series: a drift does not report again
        // a change already reported (a shift that stays, or a level that came back).
        let drift_p = self.rank.alarm_p(SHARE_DRIFT * cfg.sensitivity);
        // (Not at a time of day whose surprises recur lately: a routine — a nightly job's spike
        // moves the recent mean too — is no drift, as it is no surprise.)
        let routine = recur > 0 && cfg.recurrence_discount > 0.0;
        let mut drifted = (self.rank.drift.update(value, &cfg, drift_p))
            .is_some_and(|ln_p| ln_p <= drift_p.ln() && !routine)
            .then_some(AlarmReason::Drift);
        if cfg.volatility_alerts {
            // The step sizes and the share of large ones, half the share each.
            let p = self.rank.alarm_p(0.5 * SHARE_VOLATILITY * cfg.sensitivity);
            let unit = self.scale.max(range * 1e-3).max(f64::EPSILON);
            let bursts_p = if cfg.burst_alerts { p } else { 0.0 };
            let rank = &mut self.rank;
            let moved =
                (rank.volatility).update(&mut rank.bursts, value, unit, &cfg, [p, bursts_p]);
            drifted = drifted.or(moved);
        }
        if cfg.profile_drift_alerts
            && self.min >= 0.0
            && self.day_n[bin] >= 2
            && self.seen > 300
            && two_weeks_old
        {
            let share = SHARE_PROFILE_DRIFT * cfg.sensitivity;
            let shape_p = (self.rank).alarm_p_every(share, profile_drift::SLOT_MS);
            let (resid, scale) = match weekly {
                true => (log_resid - week_adj, self.week_log_scale),
                false => (log_resid, self.day_log_scale),
            };
            let left = (self.rank.profile_drift).update(ts_ms, resid, scale, &cfg, shape_p);
            drifted = drifted.or(left.then_some(AlarmReason::DayShape));
        }
        let drift = &mut self.rank.drift;
        if score >= cfg.alert_score {
            drift.quiet = 0;
        } else if learnt
            && counted.is_none()
            && self.rest_left == 0
            && drift.quiet >= cfg.drift_baseline
            && let Some(why) = drifted
        {
            score = 1.0;
            reason = Some(why);
            drift.quiet = 0;
            // It rests like any other alarm: the next sample's surprise is the same change.
            self.rest_left = self.rest_samples();
        } else {
            drift.quiet = drift.quiet.saturating_add(1);
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
            self.learn_week(ts_ms, wbin, log_resid, week_adj, sa);
            let step = if cfg.profile_clip > 0.0 {
                let lim = cfg.profile_clip * 1.2533 * self.day_scale.max(range * 1e-3);
                day_resid.clamp(-lim, lim)
            } else {
                day_resid
            };
            self.day[bin] += (self.profile_rate(ts_ms, bin, entered) * step) as f32;
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
        self.rank.extremes.observe(value);
        self.seen += 1;
        let alarm = score >= cfg.alert_score;
        Scored {
            score,
            rank_score: rank_score_of(ln_p),
            p_value: p,
            alarm,
            reason: reason.filter(|_| alarm),
            counted: sparse,
            held_out: false,
            raw,
            expected,
            lower: expected - band,
            upper: expected + band,
        }
    }
}
