//! The scaling policy: which value a target serves, how cautious it is, and whether the HPA
//! sees it at all.
//!
//! * **Served value** = `max(forecast quantile at now + lead, current load)`. The value only
//!   falls when *both* the forecast and the current load are below what was served: the
//!   forecast alone never scales in.
//! * **Quantile.** Any quantile in [0.5, 0.99] ([`Forecast::quantile`]: interpolated between
//!   the forecaster's p50, p90 and p99 in standard-normal units).
//! * **Under-provisioning budget** (`under_budget`, e.g. 0.1): the share of steps in which the
//!   value served `lead` earlier may fall below the load that then arrived. Every step scores
//!   the value served for it and moves the quantile by `ETA × (under − budget)` (adaptive
//!   conformal inference): a target whose forecasts run low serves a higher quantile, one whose
//!   forecasts are sharp a lower one, so each pays only for the caution its own errors need.
//!   The quantile starts at `1 − budget`.
//! * **Extra-capacity budget** (`extra_budget`, e.g. 0.1): how much capacity above the current
//!   load the target may ask for on average (served − load over load, smoothed over about
//!   `1 / COST_ALPHA` steps). While it is exceeded, misses no longer raise the quantile, which
//!   drifts down: a workload whose spikes no forecast sees (a margin buys little there) falls
//!   back toward the median forecast and spends its caution nowhere, while one with sharp
//!   forecasts keeps a high quantile — the caution goes where it is cheap.
//! * **Shadow mode**: the HPA gets the current load (reactive); the value predictive scaling
//!   would have served is reported beside it, and the budget adapts as if it were served — a
//!   team sees what it would get before it lets the forecast steer replicas.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::ScalingTarget;
use crate::forecast::Forecast;

/// How far one step moves the adapted quantile per unit of (under − budget).
const ETA: f64 = 0.01;
/// The quantiles a target may serve.
pub const QUANTILE_RANGE: (f64, f64) = (0.5, 0.99);
/// Smoothing of the extra capacity measured against `extra_budget` (per step).
const COST_ALPHA: f64 = 0.005;
/// Values awaiting their step, at most (a lead of this many steps is absurd anyway).
const MAX_PENDING: usize = 4096;

/// What the HPA is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMode {
    /// The predictive value (the forecast quantile, or the current load when higher).
    #[default]
    Predictive,
    /// The current load; the predictive value is only reported (`would_serve`).
    Shadow,
}

/// A target's policy: the parts of its configuration that decide the served value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The quantile served (the starting point when a budget is set).
    pub quantile: f64,
    /// The share of under-provisioned steps aimed at (the quantile adapts to it).
    pub under_budget: Option<f64>,
    /// The capacity above the current load the target may ask for on average (a share of the
    /// load); while exceeded, misses do not raise the quantile.
    pub extra_budget: Option<f64>,
    /// Pod start-up time: values are for now + this.
    pub lead_ms: i64,
    /// Whether the HPA gets the value.
    pub mode: ScalingMode,
}

impl Policy {
    /// The policy of `target`.
    pub fn of(target: &ScalingTarget) -> Self {
        Self {
            quantile: target.quantile,
            under_budget: target.under_budget,
            extra_budget: target.extra_budget,
            lead_ms: target.lead_secs as i64 * 1000,
            mode: target.mode,
        }
    }

    /// The predictive value for the forecast `f` at now + lead with `current` load now, at
    /// the quantile `state` serves.
    pub fn predictive(&self, state: &PolicyState, f: &Forecast, current: f64) -> f64 {
        f.quantile(state.quantile).max(current)
    }
}

/// What a target's policy remembers: the quantile it serves now and the values served for
/// steps not yet arrived. Checkpointed in a frame of its own (older checkpoints load with a
/// fresh state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    /// The quantile served now.
    pub quantile: f64,
    /// Values served (in shadow mode: that would have been) and the step end they are for.
    pending: VecDeque<(i64, f64)>,
    /// Steps whose served value has been compared with their load.
    pub scored: u64,
    /// Of those, the steps whose load exceeded the value served for them.
    pub under: u64,
    /// Smoothed (served − load) and load of the latest steps, and how many, for
    /// `extra_budget` (measured afresh after restoring an older checkpoint).
    extra: (f64, f64, u64),
}

/// A [`PolicyState`] as checkpoints stored it before `extra_budget` (frozen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStateV1 {
    pub quantile: f64,
    pub pending: VecDeque<(i64, f64)>,
    pub scored: u64,
    pub under: u64,
}

impl From<PolicyStateV1> for PolicyState {
    fn from(v: PolicyStateV1) -> Self {
        Self {
            quantile: v.quantile,
            pending: v.pending,
            scored: v.scored,
            under: v.under,
            extra: (0.0, 0.0, 0),
        }
    }
}

impl PolicyState {
    /// The state a target starts with.
    pub fn new(p: &Policy) -> Self {
        Self {
            quantile: p
                .under_budget
                .map_or(p.quantile, |b| 1.0 - b)
                .clamp(QUANTILE_RANGE.0, QUANTILE_RANGE.1),
            pending: VecDeque::new(),
            scored: 0,
            under: 0,
            extra: (0.0, 0.0, 0),
        }
    }

    /// The share of scored steps that were under-provisioned (None before the first).
    pub fn under_share(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.under as f64 / self.scored as f64)
    }

    /// The recent extra capacity served over the load, as a share of the load (None before
    /// the first step with a value).
    pub fn extra_share(&self) -> Option<f64> {
        let (extra, load, n) = self.extra;
        (n > 0 && load > 0.0).then(|| extra / load)
    }

    /// A step's `load` arrived at `end_ms`: the values served for it are scored (the quantile
    /// adapts when a budget is set), and `next` — the predictive value for `end_ms + lead`,
    /// None while the forecast is not served yet — is remembered for its step.
    pub fn step(&mut self, p: &Policy, end_ms: i64, load: f64, next: Option<f64>) {
        while let Some(&(for_ms, served)) = self.pending.front() {
            if for_ms > end_ms {
                break;
            }
            self.pending.pop_front();
            let under = load > served;
            self.scored += 1;
            self.under += u64::from(under);
            if let Some(budget) = p.under_budget {
                let spent = p
                    .extra_budget
                    .zip(self.extra_share())
                    .is_some_and(|(cap, share)| share > cap);
                let miss = if under && !spent { 1.0 } else { 0.0 };
                self.quantile = (self.quantile + ETA * (miss - budget))
                    .clamp(QUANTILE_RANGE.0, QUANTILE_RANGE.1);
            }
        }
        if let Some(v) = next.filter(|v| v.is_finite()) {
            let (extra, avg, n) = &mut self.extra;
            *n += 1;
            let a = (1.0 / *n as f64).max(COST_ALPHA);
            *extra += a * ((v - load).max(0.0) - *extra);
            *avg += a * (load.max(0.0) - *avg);
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back((end_ms + p.lead_ms, v));
        }
    }

    /// Follows a changed configuration: a fixed quantile is taken as configured.
    pub fn reconfigure(&mut self, p: &Policy) {
        if p.under_budget.is_none() {
            self.quantile = p.quantile;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(p50: f64, p90: f64, p99: f64) -> Forecast {
        Forecast {
            horizon: 1,
            target_ms: 0,
            point: p50,
            p50,
            p90,
            p99,
        }
    }

    fn policy(budget: Option<f64>) -> Policy {
        Policy {
            quantile: 0.9,
            under_budget: budget,
            extra_budget: None,
            lead_ms: 60_000,
            mode: ScalingMode::Predictive,
        }
    }

    #[test]
    fn quantiles_interpolate_between_the_forecast_ones() {
        let f = fc(100.0, 200.0, 300.0);
        assert!((f.quantile(0.5) - 100.0).abs() < 1e-9);
        assert!((f.quantile(0.9) - 200.0).abs() < 1e-6);
        assert!((f.quantile(0.99) - 300.0).abs() < 1e-6);
        let q75 = f.quantile(0.75);
        assert!(
            (q75 - (100.0 + 100.0 * 0.6745 / 1.2816)).abs() < 0.1,
            "{q75}"
        );
        let q95 = f.quantile(0.95);
        assert!(q95 > 200.0 && q95 < 300.0, "{q95}");
        // Monotone in q.
        let mut last = f64::NEG_INFINITY;
        for i in 0..=49 {
            let v = f.quantile(0.5 + i as f64 * 0.01);
            assert!(v >= last, "{i}: {v} < {last}");
            last = v;
        }
    }

    #[test]
    fn the_forecast_alone_never_scales_in() {
        let p = policy(None);
        let st = PolicyState::new(&p);
        // The forecast falls below the load: the load is served.
        assert_eq!(p.predictive(&st, &fc(50.0, 60.0, 70.0), 80.0), 80.0);
        // Both below the previous value: it may fall.
        assert_eq!(p.predictive(&st, &fc(50.0, 60.0, 70.0), 40.0), 60.0);
    }

    #[test]
    fn the_quantile_adapts_to_the_budget() {
        let p = policy(Some(0.1));
        let mut st = PolicyState::new(&p);
        assert!((st.quantile - 0.9).abs() < 1e-12);
        // Every served value too low: the quantile climbs to its ceiling.
        for i in 0..200 {
            st.step(&p, i * 60_000, 100.0, Some(90.0));
        }
        assert!((st.quantile - 0.99).abs() < 1e-12, "{}", st.quantile);
        assert!(st.under_share().expect("scored") > 0.99);
        // Every served value ample: it falls until it reaches the floor.
        let mut st = PolicyState::new(&p);
        for i in 0..1000 {
            st.step(&p, i * 60_000, 100.0, Some(150.0));
        }
        assert!((st.quantile - 0.5).abs() < 1e-12, "{}", st.quantile);
        assert_eq!(st.under, 0);
        // Misses at exactly the budget's rate hold it where it is.
        let mut st = PolicyState::new(&p);
        for i in 0..2000 {
            let next = if i % 10 == 0 { 90.0 } else { 150.0 };
            st.step(&p, i * 60_000, 100.0, Some(next));
        }
        assert!((st.quantile - 0.9).abs() < 0.02, "{}", st.quantile);
        assert!((st.under_share().expect("scored") - 0.1).abs() < 0.01);
    }

    #[test]
    fn values_are_scored_against_the_step_they_were_for() {
        let p = policy(None);
        let mut st = PolicyState::new(&p);
        // Served at 0 for 60 s: the load at 30 s does not score it, the one at 60 s does.
        st.step(&p, 0, 10.0, Some(100.0));
        st.step(&p, 30_000, 500.0, None);
        assert_eq!(st.scored, 0);
        st.step(&p, 60_000, 150.0, None);
        assert_eq!((st.scored, st.under), (1, 1));
        // A fixed quantile never moves.
        assert_eq!(st.quantile, 0.9);
    }

    /// With an extra-capacity budget, a target whose margin costs more than it may spend stops
    /// climbing on misses and drifts down to the median; within the budget it adapts as before.
    #[test]
    fn an_extra_budget_caps_what_misses_can_buy() {
        let p = Policy {
            extra_budget: Some(0.1),
            ..policy(Some(0.1))
        };
        // Served 50 % above the load, and still under-provisioned one step in three (spikes):
        // over the extra budget, so the quantile falls to its floor.
        let mut st = PolicyState::new(&p);
        for i in 0..3000 {
            let load = if i % 3 == 0 { 200.0 } else { 100.0 };
            st.step(&p, i * 60_000, load, Some(150.0));
        }
        assert!((st.quantile - 0.5).abs() < 1e-9, "{}", st.quantile);
        assert!(st.extra_share().expect("measured") > 0.1);
        // Without the cap the same misses push it to the ceiling.
        let q = policy(Some(0.1));
        let mut st = PolicyState::new(&q);
        for i in 0..3000 {
            let load = if i % 3 == 0 { 200.0 } else { 100.0 };
            st.step(&q, i * 60_000, load, Some(150.0));
        }
        assert!(st.quantile > 0.98, "{}", st.quantile);
        // Within the cap (5 % above the load), misses still raise it.
        let mut st = PolicyState::new(&p);
        for i in 0..3000 {
            st.step(
                &p,
                i * 60_000,
                100.0,
                Some(if i % 3 == 0 { 90.0 } else { 110.0 }),
            );
        }
        assert!(st.quantile > 0.95, "{}", st.quantile);
        assert!(st.extra_share().expect("measured") < 0.1);
    }
}
