//! A level that has left the day's shape for hours: the recent departure from the time-of-day
//! profile, rated by how far that departure usually wanders on the same series.
//!
//! The prediction follows the recent level closely, and the level's own drift compares the
//! last hours with a baseline of about a day, whose gap swings with the daily cycle itself. A
//! service whose traffic falls to a third at the start of the day, or runs at two and a half
//! times its usual for two hours, is surprising to neither: each sample is near the one
//! before, and the daily swing is wider than the change. Against the time-of-day profile
//! (adjusted for the day of the week once that predicts better) the change is plain. The log
//! residual from the profile is watched by [`Drift`] — the mean over the last `drift_window`
//! updates against its slow baseline, rated by its own history with a Student t; an update is
//! a sample, or a five-minute slot's mean for a series sampled more often — and alarms
//! when that is rarer than its share of `sensitivity` allows *and* the recent samples are at
//! least `profile_drift_min_ratio` times the profile, or at most its inverse: a departure a
//! responder would act on, not a profile a few per cent off for a morning.
//!
//! Only for series that are never negative (a log residual) and at least two weeks old: before
//! a week has been seen twice, a first weekend or a first holiday departs from the day's shape
//! as much as an outage does (on NAB's traffic files of two weeks it alarmed on their first
//! Saturday mornings).

use serde::{Deserialize, Serialize};

use super::DetectorConfig;
use super::drift::Drift;

/// The log residual is clipped to this many of its robust scales (or to twice the least
/// departure, when that is wider) before it is averaged: one sample near zero at the trough is
/// many scales below the profile in log and would move the mean of two hours as much as a
/// real departure does. (Unclipped, 35 % Gaussian noise cut at 0 around a daily cycle raised
/// 0.028 false alarms a series a day, eleven times the share; clipped, none.)
const CLIP_SCALES: f64 = 3.0;

/// A series sampled more often than this is watched in means over slots of this length, so
/// that the window and baseline (counted in updates) span the same hours at every interval:
/// two hours against about a day. Counted in samples, at 15 s they were 6 minutes and an hour,
/// and a baseline of an hour followed a departure that set in over the first hour.
pub(crate) const SLOT_MS: i64 = 300_000;

/// The drift of the log residual from the time-of-day profile. Kept in [`RankState`]
/// (`profile_drift`, absent from older JSON, which then learns it afresh; checkpoint files have
/// a frame kind of their own).
///
/// [`RankState`]: super::RankState
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProfileDrift {
    pub(crate) drift: Drift,
    /// The slot being averaged (`ts / SLOT_MS`), and its clipped residuals' sum and count.
    slot: i64,
    sum: f32,
    n: u16,
}

impl ProfileDrift {
    /// Learns `log_resid` (the log residual from the profile at `ts_ms`; `scale`, its robust
    /// scale) and returns whether the recent departure is rarer than `alarm_p` (a tail
    /// probability per slot, or per sample when samples are a slot or more apart) and at
    /// least `profile_drift_min_ratio` either way. Within a slot the residuals are averaged;
    /// the slot's mean is learnt, and judged, at the first sample of the next.
    #[inline]
    pub(crate) fn update(
        &mut self,
        ts_ms: i64,
        log_resid: f64,
        scale: f64,
        cfg: &DetectorConfig,
        alarm_p: f64,
    ) -> bool {
        let least = cfg.profile_drift_min_ratio.max(1.0).ln();
        let clip = (CLIP_SCALES * scale).max(2.0 * least);
        let r = log_resid.clamp(-clip, clip);
        let slot = ts_ms.div_euclid(SLOT_MS);
        let mut found = false;
        if self.n > 0 && slot != self.slot {
            let mean = f64::from(self.sum) / f64::from(self.n);
            let rare =
                (self.drift.update(mean, cfg, alarm_p)).is_some_and(|ln_p| ln_p <= alarm_p.ln());
            found = rare
                && (self.drift.recent_mean(cfg.drift_window)).is_some_and(|m| m.abs() >= least);
            (self.sum, self.n) = (0.0, 0);
        }
        self.slot = slot;
        self.sum += r as f32;
        self.n = self.n.saturating_add(1);
        found
    }
}
