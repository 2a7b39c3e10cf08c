//! A scaling target over time, for people: its latest step loads and the forecast path ahead
//! with its p50 / p90 / p99 band (the console's scaling page). Read under the state's short
//! lock, bounded in both directions.

use serde::Serialize;

use super::{ScalingConfig, ScalingState};
use crate::DetectError;
use crate::forecast::Forecast;

/// Step loads kept per target for the chart (a day at 2-minute steps, 3 hours at 15 s).
pub const HISTORY_STEPS: usize = 720;
/// The longest forecast path served.
pub const MAX_PATH_STEPS: u32 = 240;

/// One target's recent loads and forecast path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlook {
    /// The target's name.
    pub name: String,
    /// Seconds per step (the load is summed per step).
    pub step_secs: u64,
    /// How far ahead the served value looks (the pods' start-up).
    pub lead_secs: u64,
    /// Load one pod serves.
    pub capacity_per_pod: f64,
    /// The served forecast quantile (where the target's `under_budget` has taken it, when set).
    pub quantile: f64,
    /// `[end_ms, load]` of the latest completed steps, oldest first.
    pub history: Vec<(i64, f64)>,
    /// The forecast of the next steps (empty until the forecaster has a sample).
    pub path: Vec<Forecast>,
}

impl ScalingState {
    /// Target `name`'s latest loads and its forecast `steps` steps ahead (default: twice the
    /// lead; at most [`MAX_PATH_STEPS`]).
    pub fn outlook(
        &self,
        cfg: &ScalingConfig,
        name: &str,
        steps: Option<u32>,
    ) -> Result<Outlook, DetectError> {
        let target = cfg
            .targets
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| DetectError::UnknownTarget(name.to_owned()))?;
        let step_secs = cfg.step_secs.max(1);
        let lead_steps = target.lead_secs.div_ceil(step_secs) as u32;
        let steps = steps.unwrap_or(2 * lead_steps).clamp(1, MAX_PATH_STEPS);
        let (history, path) = match self.targets.get(name) {
            Some(st) => (
                st.history.iter().copied().collect(),
                (1..=steps)
                    .map_while(|h| st.forecaster.forecast(h))
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Outlook {
            name: name.to_owned(),
            step_secs,
            lead_secs: target.lead_secs,
            capacity_per_pod: target.capacity_per_pod,
            quantile: self
                .targets
                .get(name)
                .and_then(|st| st.policy.as_ref())
                .filter(|_| target.under_budget.is_some())
                .map_or(target.quantile, |p| p.quantile),
            history,
            path,
        })
    }
}
