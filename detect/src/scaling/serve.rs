//! The value served for a target: predictive, reactive while learning, shadow, or held when
//! the load stops arriving (and refused after `hold_secs`).

use serde::{Deserialize, Serialize};

use super::{Policy, PolicyState, ScalingConfig, ScalingMode, ScalingState};
use crate::DetectError;

/// How a served value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The forecast at now + lead (or the current load, when higher).
    Predictive,
    /// The current load: the forecaster is still learning.
    Reactive,
    /// The load stopped arriving: the last good value, held.
    Held,
    /// Shadow mode: the current load is served; `would_serve` is the predictive value.
    Shadow,
}

/// The value served for a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingValue {
    /// The target's name.
    pub name: String,
    /// The value for the HPA (load units).
    pub value: f64,
    /// `ceil(value / capacity_per_pod)`, at least 1.
    pub desired_replicas: u64,
    /// The latest load.
    pub current: f64,
    /// The forecast at now + lead (the served quantile), when there is one.
    pub forecast: Option<f64>,
    /// The median forecast at now + lead.
    pub forecast_p50: Option<f64>,
    /// The 90th percentile at now + lead.
    pub forecast_p90: Option<f64>,
    /// The 99th percentile at now + lead.
    pub forecast_p99: Option<f64>,
    /// The forecast quantile behind `forecast` (adapted to `under_budget` when one is set).
    pub quantile: Option<f64>,
    /// In shadow mode: the value predictive scaling would serve now.
    pub would_serve: Option<f64>,
    /// The share of steps so far whose served value (in shadow mode: the value it would have
    /// served) fell below the load that arrived, once one was scored.
    pub under_share: Option<f64>,
    /// How the value was obtained.
    pub mode: Mode,
    /// The load stopped arriving (the value is held).
    pub stale: bool,
    /// When the load was last seen (Unix ms).
    pub updated_ms: i64,
    /// When the served value is for (Unix ms): now + lead.
    pub for_ms: i64,
}

impl ScalingState {
    /// The value served for target `name` at `now_ms` (as seen from `namespace`, when given).
    pub fn value(
        &mut self,
        cfg: &ScalingConfig,
        name: &str,
        namespace: Option<&str>,
        now_ms: i64,
    ) -> Result<ScalingValue, DetectError> {
        let target = cfg
            .targets
            .iter()
            .find(|t| {
                t.name == name
                    && match (&t.namespace, namespace) {
                        (Some(want), Some(ns)) => want == ns,
                        _ => true,
                    }
            })
            .ok_or_else(|| DetectError::UnknownTarget(name.to_owned()))?;
        let st = self
            .targets
            .get_mut(name)
            .ok_or_else(|| DetectError::NoLoad(name.to_owned()))?;
        let (seen_ms, current) = st
            .current
            .ok_or_else(|| DetectError::NoLoad(name.to_owned()))?;
        let for_ms = now_ms + target.lead_secs as i64 * 1000;
        let replicas = |v: f64| ((v / target.capacity_per_pod).ceil().max(1.0)) as u64;
        let age_ms = now_ms - seen_ms;
        // The step's load lands at its end: data up to two steps old is fresh.
        let stale_after = cfg.stale_secs as i64 * 1000 + 2 * cfg.step_secs as i64 * 1000;
        if age_ms > stale_after {
            let (good_ms, good) = st.last_good.unwrap_or((seen_ms, current));
            if !st.warned {
                st.warned = true;
                tracing::warn!(
                    scaling_target = name,
                    age_secs = age_ms / 1000,
                    held = good,
                    hold_secs = cfg.hold_secs,
                    "The load of a scaling target stopped arriving; serving its last good value."
                );
            }
            if now_ms - good_ms > stale_after + cfg.hold_secs as i64 * 1000 {
                return Err(DetectError::LoadExpired {
                    name: name.to_owned(),
                    age_secs: age_ms / 1000,
                });
            }
            return Ok(ScalingValue {
                name: name.to_owned(),
                value: good,
                desired_replicas: replicas(good),
                current,
                forecast: None,
                forecast_p50: None,
                forecast_p90: None,
                forecast_p99: None,
                quantile: None,
                would_serve: None,
                under_share: st.policy.as_ref().and_then(PolicyState::under_share),
                mode: Mode::Held,
                stale: true,
                updated_ms: seen_ms,
                for_ms,
            });
        }
        if st.warned {
            st.warned = false;
            tracing::info!(
                scaling_target = name,
                "The load of a scaling target arrives again."
            );
        }
        let warmed = st.forecaster.seen() >= u64::from(cfg.min_history_steps);
        let fc = st.forecaster.forecast_at(for_ms);
        let p = Policy::of(target);
        let pst = st.policy_state(&p);
        let quantile = pst.quantile;
        let under_share = pst.under_share();
        let (value, forecast, mode, would_serve) = match fc {
            Some(f) if warmed => {
                let q = f.quantile(quantile);
                match p.mode {
                    ScalingMode::Predictive => (q.max(current), Some(q), Mode::Predictive, None),
                    ScalingMode::Shadow => (current, Some(q), Mode::Shadow, Some(q.max(current))),
                }
            }
            _ => (current, None, Mode::Reactive, None),
        };
        st.last_good = Some((seen_ms, value));
        Ok(ScalingValue {
            name: name.to_owned(),
            value,
            desired_replicas: replicas(value),
            current,
            forecast,
            forecast_p50: fc.map(|f| f.p50),
            forecast_p90: fc.map(|f| f.p90),
            forecast_p99: fc.map(|f| f.p99),
            quantile: forecast.map(|_| quantile),
            would_serve,
            under_share,
            mode,
            stale: false,
            updated_ms: seen_ms,
            for_ms,
        })
    }
}
