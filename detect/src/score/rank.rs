//! The continuous score's state: the mean surprise over two horizons against its own history,
//! the sampling interval, a counter's counts, and the tails of the range seen.

use serde::{Deserialize, Serialize};

use super::tails::upper_quantile;
use super::{DAY_MS, DetectorConfig};

/// How `sensitivity` — the false alarms a series may raise a day on noise alone — is shared
/// among the ways a series alarms: most to the calibrated average of the surprise, a tenth to
/// a value beyond the range's tail, a twentieth to a drifted level, a fortieth to a change in
/// how much it moves (half to its step sizes, half to a burst of large steps) and a fortieth to
/// a departure from the day's shape. A series of few events
/// per sample alarms by its count's tail instead of the average, with the average's share.
pub(super) const SHARE_AVERAGE: f64 = 0.8;
pub(super) const SHARE_RANGE: f64 = 0.1;
pub(super) const SHARE_DRIFT: f64 = 0.05;
pub(super) const SHARE_VOLATILITY: f64 = 0.025;
pub(super) const SHARE_PROFILE_DRIFT: f64 = 0.025;
pub(super) const SHARE_COUNT: f64 = SHARE_AVERAGE;
/// On noise, the calibrated average stays beyond its bar for runs of about this many samples
/// (it averages a dozen; measured on Gaussian and AR(1) noise at 5-minute and 15 s samples: 3
/// to 6), and only a run's first sample alarms.
pub(super) const AVERAGE_RUN: f64 = 4.0;

/// The state of the continuous score: for each horizon, the mean surprise and the exponentially
/// weighted mean and variance of its history.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RankState {
    mean: [f32; 2],
    hist_mean: [f32; 2],
    hist_var: [f32; 2],
    /// The previous sample's time (Unix ms) and the typical interval between samples (ms,
    /// exponentially weighted; 0 unknown).
    pub(super) last_ms: i64,
    pub(super) interval_ms: f32,
    /// A counter's counts, scored as counts while it counts few events per sample.
    #[serde(default)]
    pub(crate) count: crate::score::count::CountState,
    /// The largest and smallest values seen: how rare a value beyond the range is.
    #[serde(default)]
    pub(crate) extremes: super::extremes::Extremes,
    /// The recent mean against a slow baseline: how far the level has drifted.
    #[serde(default)]
    pub(crate) drift: super::drift::Drift,
    /// The recent step sizes against theirs: how much more or less the series moves.
    #[serde(default)]
    pub(crate) volatility: super::volatility::Volatility,
    /// The recent departure from the time-of-day profile.
    #[serde(default)]
    pub(crate) profile_drift: super::profile_drift::ProfileDrift,
    /// The recent share of large steps against theirs: a burst of moves.
    #[serde(default)]
    pub(crate) bursts: super::drift::Drift,
}

/// [`RankState`] as checkpointed before bursts were watched; they start learning afresh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV6 {
    v5: RankStateV5,
    profile_drift: super::profile_drift::ProfileDrift,
}

impl From<RankStateV6> for RankState {
    fn from(RankStateV6 { v5, profile_drift }: RankStateV6) -> Self {
        Self {
            profile_drift,
            ..v5.into()
        }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV6 {
    fn from(r: RankState) -> Self {
        Self {
            v5: r.into(),
            profile_drift: r.profile_drift,
        }
    }
}

/// [`RankState`] as checkpointed before the departure from the day's shape was watched; it
/// starts learning afresh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV5 {
    v4: RankStateV4,
    volatility: super::volatility::Volatility,
}

impl From<RankStateV5> for RankState {
    fn from(RankStateV5 { v4, volatility }: RankStateV5) -> Self {
        Self {
            volatility,
            ..v4.into()
        }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV5 {
    fn from(r: RankState) -> Self {
        Self {
            v4: r.into(),
            volatility: r.volatility,
        }
    }
}

/// [`RankState`] as checkpointed before the step sizes were watched; they start learning
/// afresh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV4 {
    v3: RankStateV3,
    drift: super::drift::Drift,
}

impl From<RankStateV4> for RankState {
    fn from(RankStateV4 { v3, drift }: RankStateV4) -> Self {
        Self { drift, ..v3.into() }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV4 {
    fn from(r: RankState) -> Self {
        Self {
            v3: r.into(),
            drift: r.drift,
        }
    }
}

/// [`RankState`] as checkpointed before the level's drift was kept; it starts learning
/// afresh.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV3 {
    v2: RankStateV2,
    extremes: super::extremes::Extremes,
}

impl From<RankStateV3> for RankState {
    fn from(RankStateV3 { v2, extremes }: RankStateV3) -> Self {
        Self {
            extremes,
            ..v2.into()
        }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV3 {
    fn from(r: RankState) -> Self {
        Self {
            v2: r.into(),
            extremes: r.extremes,
        }
    }
}

/// [`RankState`] as checkpointed before the range's tails were kept; they start learning
/// afresh. (Postcard writes a struct as its fields one after the other, so the nested state
/// reads as the fields of its time did.)
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct RankStateV2 {
    v1: RankStateV1,
    count: crate::score::count::CountState,
}

impl From<RankStateV2> for RankState {
    fn from(RankStateV2 { v1: r, count }: RankStateV2) -> Self {
        Self {
            mean: r.mean,
            hist_mean: r.hist_mean,
            hist_var: r.hist_var,
            last_ms: r.last_ms,
            interval_ms: r.interval_ms,
            count,
            extremes: Default::default(),
            drift: Default::default(),
            volatility: Default::default(),
            profile_drift: Default::default(),
            bursts: Default::default(),
        }
    }
}

#[cfg(test)]
impl From<RankState> for RankStateV2 {
    fn from(r: RankState) -> Self {
        Self {
            v1: r.into(),
            count: r.count,
        }
    }
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
    fn from(v1: RankStateV1) -> Self {
        RankStateV2 {
            v1,
            count: Default::default(),
        }
        .into()
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
    #[inline]
    pub(super) fn observe_time(&mut self, ts_ms: i64) {
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

    /// The per-sample tail of the calibrated average that raises its share of `sensitivity`
    /// false alarms a day: its exceedances on noise come in runs ([`AVERAGE_RUN`]), and only a
    /// run's first sample alarms.
    #[inline]
    pub(super) fn average_p(&self, sensitivity: f64) -> f64 {
        self.alarm_p(SHARE_AVERAGE * sensitivity * AVERAGE_RUN)
    }

    /// The per-sample tail probability that raises `sensitivity` false alarms a day.
    #[inline]
    pub(super) fn alarm_p(&self, sensitivity: f64) -> f64 {
        let per_day = if self.interval_ms > 0.0 {
            (DAY_MS as f64 / f64::from(self.interval_ms)).max(1.0)
        } else {
            288.0
        };
        (sensitivity / per_day).clamp(1e-15, 0.5)
    }

    /// The tail probability per update, for updates at most once per `every_ms`, that raises
    /// `sensitivity` false alarms a day.
    #[inline]
    pub(super) fn alarm_p_every(&self, sensitivity: f64, every_ms: i64) -> f64 {
        let interval = f64::from(self.interval_ms).max(every_ms as f64);
        (sensitivity / (DAY_MS as f64 / interval).max(1.0)).clamp(1e-15, 0.5)
    }

    /// The deviation a single sample needs to alarm at `sensitivity` false alarms a day.
    #[inline]
    pub(super) fn alarm_z(&self, sensitivity: f64) -> f64 {
        upper_quantile(self.alarm_p(sensitivity))
    }

    /// Learns `raw` (sample `seen`, learning for the first `learning`) and returns the one-sided
    /// z of the more unusual horizon (`None` while learning).
    #[inline]
    pub(super) fn update(
        &mut self,
        cfg: &DetectorConfig,
        raw: f64,
        seen: u64,
        learning: u64,
    ) -> Option<f64> {
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
            let (mean, var) = super::tails::ew_step(mu, var, x, a);
            self.mean[h] = e as f32;
            self.hist_mean[h] = mean as f32;
            self.hist_var[h] = var as f32;
        }
        (seen >= learning).then_some(z_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_before_the_tails_is_written_field_for_field() {
        let mut r = RankState {
            mean: [0.1, 0.2],
            hist_mean: [0.3, 0.4],
            hist_var: [0.5, 0.6],
            last_ms: 1_700_000_000_000,
            interval_ms: 15_000.0,
            ..RankState::default()
        };
        r.count.update(3.0, 15.0, 15.0, 0);
        let nested = postcard::to_stdvec(&RankStateV2::from(r)).expect("nested");
        let flat = (
            r.mean,
            r.hist_mean,
            r.hist_var,
            r.last_ms,
            r.interval_ms,
            r.count,
        );
        assert_eq!(nested, postcard::to_stdvec(&flat).expect("flat"));
    }
}
