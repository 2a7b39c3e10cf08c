//! Predictive scaling targets: the load of a workload (the sum of the series a selector
//! matches, one sample per step), forecast with a [`Forecaster`], served to the HPA as the load
//! expected when a pod started now would be ready.
//!
//! The served value is `max(forecast quantile at now + lead, current load)` — never below what
//! is needed now. Until the forecaster has `min_history_steps` samples it serves the current
//! load (`reactive`). When the load stops arriving (`stale_secs`), the last good value is held
//! for `hold_secs` (`held`, logged and flagged); after that the value is refused (the HPA then
//! keeps the current replica count) — it never drops to zero because a source went quiet.

use std::collections::HashMap;

use aiops_models::{Selector, SeriesCatalog, SeriesId};
use serde::{Deserialize, Serialize};

use crate::forecast::{ForecastConfig, Forecaster};

mod load;
pub mod outlook;
pub mod policy;
mod serve;
#[cfg(test)]
mod tests;
mod v1;

pub use load::{LoadMerger, LoadMessage, LoadSample};
pub use policy::{Policy, PolicyState, PolicyStateV1, ScalingMode};
pub use serve::{Mode, ScalingValue};
pub use v1::{ScalingStateV1, TargetStateV1};

/// Options of predictive scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Seconds per load sample: the members' latest values are summed once per step.
    pub step_secs: u64,
    /// A member whose latest sample is older than this does not count; a target with no fresh
    /// member is stale.
    pub stale_secs: u64,
    /// How long a stale target keeps serving its last good value.
    pub hold_secs: u64,
    /// Load samples learnt before the forecast is served (until then: the current load).
    pub min_history_steps: u32,
    /// A target first seen (not in the checkpoint) is warmed with this much of its members'
    /// history from the archive, seconds (0: start cold). Two weeks let the weekly season in.
    pub warm_start_secs: u64,
    /// Forecaster parameters.
    pub forecast: ForecastConfig,
    /// The targets.
    pub targets: Vec<ScalingTarget>,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            step_secs: 30,
            stale_secs: 120,
            hold_secs: 600,
            min_history_steps: 2 * 2880,
            warm_start_secs: 14 * 86_400,
            forecast: ForecastConfig::default(),
            targets: Vec::new(),
        }
    }
}

/// One workload scaled ahead of its load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingTarget {
    /// The external metric's name (lower case letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Served only to HPAs in this namespace (any namespace when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Series whose values add up to the load, e.g. `http_requests_total{service="checkout"}`
    /// (counters count as per-second rates).
    pub selector: String,
    /// Labels of the metric, matched against the HPA's `labelSelector`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Load one pod serves (the HPA's `averageValue`); used for `desired_replicas`.
    pub capacity_per_pod: f64,
    /// Pod start-up time: the forecast is for now + this.
    pub lead_secs: u64,
    /// Forecast quantile served, in [0.5, 0.99] (the starting point when `under_budget` is
    /// set).
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// Under-provisioning budget: the share of steps in which the value served `lead_secs`
    /// earlier may fall below the load that arrived (e.g. 0.1). The served quantile then adapts
    /// per target to meet it (see [`policy`]); unset: `quantile` is served as configured.
    #[serde(default)]
    pub under_budget: Option<f64>,
    /// Extra-capacity budget, with `under_budget`: how much capacity above the current load the
    /// target may ask for on average (e.g. 0.1 = 10 %). While it is exceeded, misses no longer
    /// raise the quantile (see [`policy`]); unset: no cap.
    #[serde(default)]
    pub extra_budget: Option<f64>,
    /// `predictive` (default): the HPA gets the predictive value. `shadow`: it gets the current
    /// load, and the predictive value is reported beside it (`would_serve`).
    #[serde(default)]
    pub mode: ScalingMode,
}

fn default_quantile() -> f64 {
    0.9
}

impl ScalingConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if self.step_secs == 0 {
            problems.push(format!("{prefix}.step_secs: must be at least 1"));
        }
        if self.hold_secs == 0 || self.stale_secs == 0 {
            problems.push(format!(
                "{prefix}.stale_secs and hold_secs: must be at least 1"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("{prefix}.targets[{i}]");
            let name_ok = !t.name.is_empty()
                && t.name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !name_ok {
                problems.push(format!(
                    "{key}.name = {:?}: use lower-case letters, digits, '-', '_' and '.'",
                    t.name
                ));
            }
            if !names.insert(t.name.as_str()) {
                problems.push(format!("{key}.name = {:?}: used twice", t.name));
            }
            if let Err(e) = t.selector.parse::<Selector>() {
                problems.push(format!("{key}.selector = {:?}: {e}", t.selector));
            }
            if !(t.capacity_per_pod > 0.0 && t.capacity_per_pod.is_finite()) {
                problems.push(format!(
                    "{key}.capacity_per_pod = {}: must be positive",
                    t.capacity_per_pod
                ));
            }
            let (lo, hi) = policy::QUANTILE_RANGE;
            if !(lo..=hi).contains(&t.quantile) {
                problems.push(format!(
                    "{key}.quantile = {}: must be in [{lo}, {hi}]",
                    t.quantile
                ));
            }
            if let Some(b) = t.under_budget
                && !(0.01..=0.5).contains(&b)
            {
                problems.push(format!("{key}.under_budget = {b}: must be in [0.01, 0.5]"));
            }
            if let Some(b) = t.extra_budget
                && !(0.0..=10.0).contains(&b)
            {
                problems.push(format!("{key}.extra_budget = {b}: must be in [0, 10]"));
            }
        }
    }
}

/// The state of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetState {
    /// Latest (time, value) of each member series.
    #[serde(with = "members_as_pairs")]
    pub latest: HashMap<SeriesId, (i64, f64)>,
    /// The step being filled (index of `step_secs` since the epoch).
    pub step: i64,
    /// The load forecaster (JSON checkpoints of older versions hold the previous layout).
    #[serde(deserialize_with = "crate::forecast::any_layout")]
    pub forecaster: Forecaster,
    /// The latest load (sum of fresh members) and when.
    pub current: Option<(i64, f64)>,
    /// The last value served from fresh data, and when its data arrived.
    pub last_good: Option<(i64, f64)>,
    /// The latest steps' loads (end of step, load), oldest first, at most
    /// [`outlook::HISTORY_STEPS`]: what the console charts. Not checkpointed (it refills as
    /// steps complete; a warmed target starts with its warm-up's steps).
    #[serde(skip)]
    pub history: std::collections::VecDeque<(i64, f64)>,
    /// A stale state was logged (logged once per episode).
    #[serde(skip)]
    warned: bool,
    /// The policy's state (checkpointed in a frame of its own; None until first used, and
    /// after restoring a checkpoint from before it).
    #[serde(skip)]
    pub policy: Option<PolicyState>,
}

fn step_ms(cfg: &ScalingConfig) -> i64 {
    cfg.step_secs.max(1) as i64 * 1000
}

impl TargetState {
    fn new(cfg: &ScalingConfig, lead_secs: u64, ts_ms: i64) -> Self {
        // The forecaster's quantiles are calibrated up to the lead (in steps), at least.
        let lead_steps = (lead_secs * 1000).div_ceil(step_ms(cfg) as u64) as u32;
        let forecast = ForecastConfig {
            max_horizon: cfg.forecast.max_horizon.max(lead_steps),
            ..cfg.forecast
        };
        Self {
            latest: HashMap::new(),
            step: ts_ms.div_euclid(step_ms(cfg)),
            forecaster: Forecaster::new(forecast),
            current: None,
            last_good: None,
            history: std::collections::VecDeque::new(),
            warned: false,
            policy: None,
        }
    }

    /// The policy's state, started (or brought in line with a changed configuration) for `p`.
    fn policy_state(&mut self, p: &Policy) -> &mut PolicyState {
        let st = self.policy.get_or_insert_with(|| PolicyState::new(p));
        st.reconfigure(p);
        st
    }

    /// One member's sample; when it starts a new step, the finished step's load (the sum of
    /// the fresh members' latest values) goes to the forecaster, and the policy scores the
    /// values served for that step and notes the one for `lead` ahead.
    fn add(
        &mut self,
        cfg: &ScalingConfig,
        target: &ScalingTarget,
        id: SeriesId,
        ts_ms: i64,
        value: f64,
    ) {
        // A member's sample seen again (at-least-once delivery) or out of order: already counted.
        if self.latest.get(&id).is_some_and(|&(t, _)| t >= ts_ms) {
            return;
        }
        let step_ms = step_ms(cfg);
        let step = ts_ms.div_euclid(step_ms);
        if step > self.step {
            let end = (self.step + 1) * step_ms;
            let stale_ms = cfg.stale_secs as i64 * 1000;
            let (load, fresh) = self
                .latest
                .values()
                .filter(|&&(t, _)| end - t <= stale_ms)
                .fold((0.0, 0usize), |(sum, n), &(_, v)| (sum + v, n + 1));
            if fresh > 0 {
                self.forecaster.update(end, load);
                let p = Policy::of(target);
                let warmed = self.forecaster.seen() >= u64::from(cfg.min_history_steps);
                let fc = self
                    .forecaster
                    .forecast_at(end + p.lead_ms)
                    .filter(|_| warmed);
                let st = self.policy_state(&p);
                let next = fc.map(|f| p.predictive(st, &f, load));
                st.step(&p, end, load, next);
                self.current = Some((end, load));
                if self.history.len() == outlook::HISTORY_STEPS {
                    self.history.pop_front();
                }
                self.history.push_back((end, load));
            }
            self.step = step;
        }
        self.latest.insert(id, (ts_ms, value));
    }
}

/// JSON maps need string keys: members are stored as pairs.
mod members_as_pairs {
    use std::collections::HashMap;

    use aiops_models::SeriesId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &HashMap<SeriesId, (i64, f64)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|(k, v)| (k.0, v.0, v.1)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<SeriesId, (i64, f64)>, D::Error> {
        let v = Vec::<(u64, i64, f64)>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(k, t, x)| (SeriesId(k), (t, x)))
            .collect())
    }
}

/// Every target's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScalingState {
    /// By target name.
    pub targets: HashMap<String, TargetState>,
    /// Which targets each member series feeds (computed once per series; not persisted).
    #[serde(skip)]
    members: HashMap<SeriesId, Vec<usize>>,
    /// Compiled selectors, in config order (not persisted).
    #[serde(skip)]
    selectors: Vec<Option<Selector>>,
}

impl ScalingState {
    /// True when series `id` feeds some target (looked up once per member and cached; ask once
    /// per non-member and remember the answer).
    pub fn is_member(
        &mut self,
        cfg: &ScalingConfig,
        id: SeriesId,
        catalog: &SeriesCatalog,
    ) -> bool {
        !self.targets_of(cfg, id, catalog).is_empty()
    }

    /// The names of the targets series `id` feeds.
    pub fn member_of(
        &mut self,
        cfg: &ScalingConfig,
        id: SeriesId,
        catalog: &SeriesCatalog,
    ) -> Vec<String> {
        self.targets_of(cfg, id, catalog)
            .into_iter()
            .map(|i| cfg.targets[i].name.clone())
            .collect()
    }

    /// Takes a member sample another node computed (see [`LoadSample`]); targets are warmed
    /// by replaying these, not from the local archive (which holds only this node's share).
    /// Samples of targets not configured here are ignored.
    pub fn observe_member(&mut self, cfg: &ScalingConfig, s: &LoadSample) {
        if !s.value.is_finite() {
            return;
        }
        let Some(t) = cfg.targets.iter().find(|t| t.name == s.target) else {
            return;
        };
        self.targets
            .entry(t.name.clone())
            .or_insert_with(|| TargetState::new(cfg, t.lead_secs, s.ts_ms))
            .add(cfg, t, s.series, s.ts_ms, s.value);
    }

    fn targets_of(
        &mut self,
        cfg: &ScalingConfig,
        id: SeriesId,
        catalog: &SeriesCatalog,
    ) -> Vec<usize> {
        if self.selectors.len() != cfg.targets.len() {
            self.selectors = cfg
                .targets
                .iter()
                .map(|t| t.selector.parse().ok())
                .collect();
            self.members.clear();
        }
        if let Some(t) = self.members.get(&id) {
            return t.clone();
        }
        let Some(meta) = catalog.get(id) else {
            return Vec::new();
        };
        let t: Vec<usize> = self
            .selectors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.matches(&meta)))
            .map(|(i, _)| i)
            .collect();
        // Only members are remembered: each series' own state remembers that it is not one.
        if !t.is_empty() {
            self.members.insert(id, t.clone());
        }
        t
    }

    /// Takes one sample (already a rate for counters) of series `id`. A target not seen yet
    /// starts cold (see [`ScalingState::warm_new_targets`] to warm it first).
    pub fn observe(
        &mut self,
        cfg: &ScalingConfig,
        catalog: &SeriesCatalog,
        id: SeriesId,
        ts_ms: i64,
        value: f64,
    ) {
        if cfg.targets.is_empty() || !value.is_finite() {
            return;
        }
        for i in self.targets_of(cfg, id, catalog) {
            let t = &cfg.targets[i];
            self.targets
                .entry(t.name.clone())
                .or_insert_with(|| TargetState::new(cfg, t.lead_secs, ts_ms))
                .add(cfg, t, id, ts_ms, value);
        }
    }

    /// Targets that `samples` (time, series, value) feed and that `shared` does not hold yet,
    /// each warmed with `warm_start_secs` of its members' history (e.g. from the archive),
    /// replayed through the same step sums, so that its forecasts need not wait days. The
    /// history is read without holding `shared`'s lock; insert the result with
    /// [`ScalingState::insert_targets`].
    pub fn warm_new_targets(
        shared: &crate::published::SharedScaling,
        cfg: &ScalingConfig,
        catalog: &SeriesCatalog,
        samples: &[(i64, SeriesId, f64)],
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) -> Vec<(String, TargetState)> {
        if cfg.targets.is_empty() {
            return Vec::new();
        }
        let mut missing: Vec<(usize, i64)> = Vec::new();
        {
            let mut st = shared.lock();
            for &(ts, id, v) in samples {
                if !v.is_finite() {
                    continue;
                }
                for i in st.targets_of(cfg, id, catalog) {
                    if !st.targets.contains_key(&cfg.targets[i].name)
                        && !missing.iter().any(|m| m.0 == i)
                    {
                        missing.push((i, ts));
                    }
                }
            }
        }
        missing
            .into_iter()
            .map(|(i, ts_ms)| {
                let t = &cfg.targets[i];
                let mut st = TargetState::new(cfg, t.lead_secs, ts_ms);
                if cfg.warm_start_secs > 0
                    && let Ok(selector) = t.selector.parse::<Selector>()
                {
                    let from = ts_ms - cfg.warm_start_secs as i64 * 1000;
                    let mut past = Vec::new();
                    for m in catalog.select(&selector, usize::MAX) {
                        let samples = history(m.id, from, ts_ms - 1);
                        if aiops_models::is_counter(&m.metric) {
                            past.extend(samples.windows(2).filter_map(|w| {
                                aiops_models::counter_rate(w[0], w[1]).map(|r| (w[1].0, m.id, r))
                            }));
                        } else {
                            past.extend(samples.into_iter().map(|(t, v)| (t, m.id, v)));
                        }
                    }
                    past.sort_by_key(|&(t, _, _)| t);
                    st.step = past
                        .first()
                        .map_or(st.step, |p| p.0.div_euclid(step_ms(cfg)));
                    for (ts, member, v) in past {
                        st.add(cfg, t, member, ts, v);
                    }
                    if st.forecaster.seen() > 0 {
                        tracing::info!(
                            scaling_target = %t.name,
                            steps = st.forecaster.seen(),
                            "Warmed a scaling target's forecaster from history."
                        );
                    }
                }
                (t.name.clone(), st)
            })
            .collect()
    }

    /// Inserts targets warmed by [`ScalingState::warm_new_targets`] (a target that started
    /// meanwhile is kept).
    pub fn insert_targets(&mut self, warmed: Vec<(String, TargetState)>) {
        for (name, st) in warmed {
            self.targets.entry(name).or_insert(st);
        }
    }
}
