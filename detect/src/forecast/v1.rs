//! The forecaster's state as checkpoints stored it before issue 21's compact layout (frozen: a
//! checkpoint written then still loads). Each candidate had seasonal bins of its own and a
//! pending one-step forecast; the served forecasts waited with their sample index.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Candidate, ForecastConfig, Forecaster, Profile, Season, Tracked, nan_as_null};

/// One exponential-smoothing model, as stored before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CandidateV1 {
    pub season: Season,
    pub alpha: f64,
    pub level: f64,
    #[serde(with = "nan_as_null")]
    pub bins: Vec<f32>,
    pub error: f64,
    pub measured: u32,
    pub pending: VecDeque<(u64, f64)>,
}

/// The forecasts served at one horizon and their errors, as stored before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TrackedV1 {
    pub horizon: u32,
    pub pending: VecDeque<(u64, f64)>,
    pub errors: VecDeque<f32>,
}

/// The forecasting state of one series, as stored before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecasterV1 {
    pub(crate) cfg: ForecastConfig,
    pub(crate) seen: u64,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    pub(crate) intervals: Vec<i64>,
    pub(crate) step_ms: i64,
    pub(crate) log: bool,
    pub(crate) last: f64,
    pub(crate) change: f64,
    pub(crate) candidates: Vec<CandidateV1>,
    pub(crate) tracked: Vec<TrackedV1>,
}

impl From<ForecasterV1> for Forecaster {
    /// Levels, errors and the served forecasts' errors carry over; each season's profile is the
    /// bins of its slowest candidate (the one profiles are now learnt against); the value range
    /// is the one the models span (levels plus offsets) until new samples widen it.
    fn from(v: ForecasterV1) -> Self {
        let slowest = |s: Season| {
            v.candidates
                .iter()
                .filter(|c| c.season == s)
                .min_by(|a, b| a.alpha.total_cmp(&b.alpha))
        };
        let profiles: Vec<Profile> = [Season::Daily, Season::Weekly]
            .into_iter()
            .filter_map(|s| {
                slowest(s).map(|c| Profile {
                    season: s,
                    bins: c.bins.clone(),
                })
            })
            .collect();
        let mut span = (f64::INFINITY, f64::NEG_INFINITY);
        for c in &v.candidates {
            let offsets = profiles
                .iter()
                .filter(|p| p.season == c.season)
                .flat_map(|p| p.bins.iter().copied().filter(|b| b.is_finite()));
            for m in std::iter::once(c.level).chain(offsets.map(|b| c.level + f64::from(b))) {
                span = (span.0.min(m), span.1.max(m));
            }
        }
        let mut f = Forecaster {
            cfg: v.cfg,
            seen: v.seen,
            first_ms: v.first_ms,
            last_ms: v.last_ms,
            intervals: v.intervals,
            step_ms: v.step_ms,
            log: v.log,
            last: v.last,
            change: v.change,
            lo: f64::NAN,
            hi: f64::NAN,
            candidates: v
                .candidates
                .iter()
                .map(|c| Candidate {
                    season: c.season,
                    alpha: c.alpha,
                    level: c.level,
                    error: c.error,
                    measured: c.measured,
                })
                .collect(),
            profiles,
            tracked: v
                .tracked
                .into_iter()
                .map(|t| Tracked {
                    horizon: t.horizon,
                    pending: t.pending.into_iter().map(|(_, x)| x as f32).collect(),
                    errors: t.errors,
                })
                .collect(),
        };
        if span.0 <= span.1 {
            (f.lo, f.hi) = (f.to_value(span.0), f.to_value(span.1));
        } else if v.seen > 0 {
            (f.lo, f.hi) = (f.to_value(f.last), f.to_value(f.last));
        }
        f
    }
}
