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
    /// Forecast quantile served: 0.5, 0.9 or 0.99.
    #[serde(default = "default_quantile")]
    pub quantile: f64,
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
            if ![0.5, 0.9, 0.99].contains(&t.quantile) {
                problems.push(format!(
                    "{key}.quantile = {}: must be 0.5, 0.9 or 0.99",
                    t.quantile
                ));
            }
        }
    }
}

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
    /// How the value was obtained.
    pub mode: Mode,
    /// The load stopped arriving (the value is held).
    pub stale: bool,
    /// When the load was last seen (Unix ms).
    pub updated_ms: i64,
    /// When the served value is for (Unix ms): now + lead.
    pub for_ms: i64,
}

/// Why a target has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScalingError {
    /// No such target (in that namespace).
    Unknown(String),
    /// No load has arrived yet.
    NoData(String),
    /// The load stopped arriving longer than `hold_secs` ago.
    Expired {
        /// The target.
        name: String,
        /// Seconds since the last load sample.
        age_secs: i64,
    },
}

impl std::fmt::Display for ScalingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScalingError::Unknown(n) => write!(f, "no scaling target {n}"),
            ScalingError::NoData(n) => write!(f, "no load has arrived for {n} yet"),
            ScalingError::Expired { name, age_secs } => write!(
                f,
                "the load of {name} stopped arriving {age_secs}s ago (longer than the hold time); not guessing"
            ),
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
    /// The load forecaster.
    pub forecaster: Forecaster,
    /// The latest load (sum of fresh members) and when.
    pub current: Option<(i64, f64)>,
    /// The last value served from fresh data, and when its data arrived.
    pub last_good: Option<(i64, f64)>,
    /// A stale state was logged (logged once per episode).
    #[serde(skip)]
    warned: bool,
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
            warned: false,
        }
    }

    /// One member's sample; when it starts a new step, the finished step's load (the sum of
    /// the fresh members' latest values) goes to the forecaster.
    fn add(&mut self, cfg: &ScalingConfig, id: SeriesId, ts_ms: i64, value: f64) {
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
                self.current = Some((end, load));
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

/// One sample of a scaling target's member series (a rate for counters), as the detector
/// workers of a Kafka deployment share them: every node sums the members of every partition,
/// so each serves the whole load, not its partitions' share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    /// The target's name.
    pub target: String,
    /// The member series.
    pub series: SeriesId,
    /// Sample time, Unix ms.
    pub ts_ms: i64,
    /// The value (per-second rate for counters).
    pub value: f64,
}

/// What a detector worker writes to the load topic for one samples partition: the member
/// samples it just scored, and how far (in sample time) it has read the partition. Workers
/// also send it without samples now and then, so a partition without members does not hold
/// the others up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadMessage {
    /// The newest sample time the worker has read from the partition.
    pub watermark_ms: i64,
    /// Member samples.
    pub samples: Vec<LoadSample>,
}

/// Puts the member samples of several partitions back in time order before they are summed.
///
/// Partitions arrive at their own pace (a consumer reads a chunk of one partition's backlog,
/// then of the next; a dead worker's partitions pause until another worker takes them over),
/// and a step closes when a later sample arrives: summed as they come, a step would count only
/// the partitions that happened to be ahead. So samples wait until every partition has passed
/// their time (its watermark). A partition holds the others up while it has messages left to
/// deliver, and — read to its end but behind, or with nothing yet — for `hold_ms` after it fell
/// behind (or the merger started): long enough for a hand-over or a slow start; after that it is
/// taken as gone quiet (or as carrying no members).
#[derive(Debug)]
pub struct LoadMerger {
    partitions: HashMap<i32, Lane>,
    hold_ms: i64,
    /// Samples waiting, by time.
    waiting: std::collections::BTreeMap<i64, Vec<LoadSample>>,
}

/// What the merger knows of one partition.
#[derive(Debug, Clone, Copy)]
struct Lane {
    /// Newest sample time seen (None: nothing yet).
    watermark: Option<i64>,
    /// Read to its end.
    at_end: bool,
    /// Since when (wall clock, ms) others are ahead of it; None while it is not behind.
    behind_since: Option<i64>,
}

impl LoadMerger {
    /// A merger over `partitions` (each holds the others up until its first samples or its
    /// end) that waits at most `hold_ms` for a partition that went quiet behind the others.
    pub fn new(partitions: impl IntoIterator<Item = i32>, hold_ms: i64, now_ms: i64) -> Self {
        let lane = Lane {
            watermark: None,
            at_end: false,
            behind_since: Some(now_ms),
        };
        Self {
            partitions: partitions.into_iter().map(|p| (p, lane)).collect(),
            hold_ms,
            waiting: Default::default(),
        }
    }

    fn lane(&mut self, partition: i32, now_ms: i64) -> &mut Lane {
        self.partitions.entry(partition).or_insert(Lane {
            watermark: None,
            at_end: false,
            behind_since: Some(now_ms),
        })
    }

    /// Takes one partition's message; returns the samples now safe to sum, oldest first.
    pub fn push(&mut self, partition: i32, msg: LoadMessage, now_ms: i64) -> Vec<LoadSample> {
        let samples = msg.samples;
        let newest = samples
            .iter()
            .map(|s| s.ts_ms)
            .chain([msg.watermark_ms])
            .max();
        let lane = self.lane(partition, now_ms);
        lane.at_end = false;
        if let Some(n) = newest {
            lane.watermark = Some(lane.watermark.map_or(n, |w| w.max(n)));
        }
        for s in samples {
            self.waiting.entry(s.ts_ms).or_default().push(s);
        }
        self.release(now_ms)
    }

    /// `partition` is read to its end.
    pub fn at_end(&mut self, partition: i32, now_ms: i64) -> Vec<LoadSample> {
        self.lane(partition, now_ms).at_end = true;
        self.release(now_ms)
    }

    /// What may be summed now (a quiet partition's hold may have run out).
    pub fn release(&mut self, now_ms: i64) -> Vec<LoadSample> {
        let newest = self
            .partitions
            .values()
            .filter_map(|l| l.watermark)
            .max()
            .unwrap_or(i64::MIN);
        let mut until = i64::MAX;
        for l in self.partitions.values_mut() {
            if l.watermark.is_none_or(|w| w < newest) {
                l.behind_since.get_or_insert(now_ms);
            } else {
                l.behind_since = None;
            }
            // Read to its end but behind (or nothing yet: at start, a partition's first
            // samples may still be on their way): waited for, for a while.
            let holds = !l.at_end
                || l.behind_since
                    .is_some_and(|since| now_ms - since < self.hold_ms);
            if holds {
                until = until.min(l.watermark.unwrap_or(i64::MIN));
            }
        }
        if until == i64::MIN {
            return Vec::new();
        }
        let later = match until.checked_add(1) {
            Some(after) => self.waiting.split_off(&after),
            None => Default::default(),
        };
        std::mem::replace(&mut self.waiting, later)
            .into_values()
            .flatten()
            .collect()
    }

    /// Samples waiting for slower partitions.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }
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
            .add(cfg, s.series, s.ts_ms, s.value);
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
                .add(cfg, id, ts_ms, value);
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
                    for (t, member, v) in past {
                        st.add(cfg, member, t, v);
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

    /// The value served for target `name` at `now_ms` (as seen from `namespace`, when given).
    pub fn value(
        &mut self,
        cfg: &ScalingConfig,
        name: &str,
        namespace: Option<&str>,
        now_ms: i64,
    ) -> Result<ScalingValue, ScalingError> {
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
            .ok_or_else(|| ScalingError::Unknown(name.to_owned()))?;
        let st = self
            .targets
            .get_mut(name)
            .ok_or_else(|| ScalingError::NoData(name.to_owned()))?;
        let (seen_ms, current) = st
            .current
            .ok_or_else(|| ScalingError::NoData(name.to_owned()))?;
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
                return Err(ScalingError::Expired {
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
        let (value, forecast, p50, mode) = match fc {
            Some(f) if warmed => {
                let q = f.quantile(target.quantile);
                (q.max(current), Some(q), Some(f.p50), Mode::Predictive)
            }
            _ => (current, None, fc.map(|f| f.p50), Mode::Reactive),
        };
        st.last_good = Some((seen_ms, value));
        Ok(ScalingValue {
            name: name.to_owned(),
            value,
            desired_replicas: replicas(value),
            current,
            forecast,
            forecast_p50: p50,
            mode,
            stale: false,
            updated_ms: seen_ms,
            for_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aiops_models::{SeriesCatalog, SeriesMeta, Source};

    use super::*;

    fn setup() -> (ScalingConfig, SeriesCatalog, Vec<SeriesId>) {
        let cfg = ScalingConfig {
            step_secs: 60,
            stale_secs: 120,
            hold_secs: 300,
            min_history_steps: 3 * 1440,
            targets: vec![ScalingTarget {
                name: "checkout_rps".into(),
                namespace: Some("shop".into()),
                selector: r#"rps{service="checkout"}"#.into(),
                labels: Default::default(),
                capacity_per_pod: 10.0,
                lead_secs: 600,
                quantile: 0.9,
            }],
            ..ScalingConfig::default()
        };
        let catalog = SeriesCatalog::new();
        let ids = ["a", "b"]
            .iter()
            .map(|pod| {
                let meta = Arc::new(SeriesMeta::new(
                    Source::Prometheus,
                    "rps",
                    [
                        ("service".into(), "checkout".into()),
                        ("pod".into(), (*pod).into()),
                    ],
                ));
                catalog.insert(meta.clone());
                meta.id
            })
            .collect();
        (cfg, catalog, ids)
    }

    /// Per-pod load with a daily peak at noon.
    fn load(t: i64) -> f64 {
        let hour = (t % 86_400_000) as f64 / 3_600_000.0;
        20.0 + 15.0 * (std::f64::consts::PI * hour / 24.0).sin().powi(4)
    }

    #[test]
    fn serves_the_load_ahead_then_holds_then_refuses_and_never_zero() {
        let (cfg, catalog, ids) = setup();
        let mut s = ScalingState::default();
        assert_eq!(
            s.value(&cfg, "checkout_rps", Some("shop"), 0),
            Err(ScalingError::NoData("checkout_rps".into()))
        );
        // Four days, then stop at 10:00 on the fifth, while the load is rising.
        let end = 4 * 86_400_000 + 10 * 3_600_000;
        let mut t = 0;
        while t <= end {
            for id in &ids {
                s.observe(&cfg, &catalog, *id, t, load(t));
            }
            t += 60_000;
        }
        let v = s
            .value(&cfg, "checkout_rps", Some("shop"), end)
            .expect("value");
        assert_eq!(v.mode, Mode::Predictive);
        // Two pods; ten minutes ahead the load is higher than now, and served at least now's.
        assert!(v.value >= v.current, "{v:?}");
        assert!(v.value > 2.0 * load(end - 60_000), "{v:?}");
        assert!(
            (v.value - 2.0 * load(end + 600_000)).abs() < 3.0,
            "{v:?} vs {}",
            2.0 * load(end + 600_000)
        );
        assert_eq!(v.desired_replicas, (v.value / 10.0).ceil() as u64);
        // Other namespaces do not see it; unknown names are unknown.
        assert!(matches!(
            s.value(&cfg, "checkout_rps", Some("other"), end),
            Err(ScalingError::Unknown(_))
        ));
        // Quiet for five minutes: held at the last good value, flagged.
        let held = s
            .value(&cfg, "checkout_rps", Some("shop"), end + 300_000)
            .expect("held");
        assert_eq!(held.mode, Mode::Held);
        assert!(held.stale && held.value == v.value, "{held:?}");
        // Quiet for longer than the hold: refused, not zero.
        assert!(matches!(
            s.value(&cfg, "checkout_rps", Some("shop"), end + 900_000),
            Err(ScalingError::Expired { .. })
        ));
    }

    #[test]
    fn reactive_until_warm_and_round_trips_a_checkpoint() {
        let (cfg, catalog, ids) = setup();
        let mut s = ScalingState::default();
        for i in 0..30 {
            s.observe(&cfg, &catalog, ids[0], i * 60_000, 5.0);
        }
        let v = s
            .value(&cfg, "checkout_rps", None, 29 * 60_000)
            .expect("value");
        assert_eq!(
            (v.mode, v.value, v.desired_replicas),
            (Mode::Reactive, 5.0, 1)
        );
        let json = serde_json::to_string(&s).expect("serialise");
        let mut back: ScalingState = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.value(&cfg, "checkout_rps", None, 29 * 60_000), Ok(v));
    }

    #[test]
    fn a_new_target_is_warmed_from_its_members_history_and_forecasts_at_once() {
        let (cfg, catalog, ids) = setup();
        let end = 4 * 86_400_000 + 10 * 3_600_000;
        let history = |_: SeriesId, from: i64, to: i64| -> Vec<(i64, f64)> {
            (from.max(0) / 60_000..=to / 60_000)
                .map(|m| (m * 60_000, load(m * 60_000)))
                .collect()
        };
        let shared = crate::published::SharedScaling::default();
        let first = [(end, ids[0], load(end)), (end, ids[1], load(end))];
        let warmed = ScalingState::warm_new_targets(&shared, &cfg, &catalog, &first, &history);
        assert_eq!(warmed.len(), 1);
        let mut s = shared.lock();
        s.insert_targets(warmed);
        s.observe(&cfg, &catalog, ids[0], end, load(end));
        s.observe(&cfg, &catalog, ids[1], end, load(end));
        let st = &s.targets["checkout_rps"];
        // Four days of one-minute steps, learnt before the first live sample.
        assert!(
            st.forecaster.seen() >= 4 * 1440 - 2,
            "{}",
            st.forecaster.seen()
        );
        s.observe(&cfg, &catalog, ids[0], end + 60_000, load(end + 60_000));
        let v = s
            .value(&cfg, "checkout_rps", Some("shop"), end + 60_000)
            .expect("value");
        assert_eq!(v.mode, Mode::Predictive);
        // Both pods' history counted.
        assert!((v.current - 2.0 * load(end)).abs() < 1.0, "{v:?}");
    }

    #[test]
    fn partitions_read_one_after_another_sum_like_one_stream() {
        let (cfg, catalog, ids) = setup();
        let sample = |i: usize, m: i64| LoadSample {
            target: "checkout_rps".into(),
            series: ids[i],
            ts_ms: m * 60_000,
            value: 1.0 + i as f64,
        };
        let msg = |samples: Vec<LoadSample>| LoadMessage {
            watermark_ms: samples.iter().map(|s| s.ts_ms).max().unwrap_or(0),
            samples,
        };
        // In time order, as one process sees them.
        let mut one = ScalingState::default();
        for m in 0..30 {
            for (i, id) in ids.iter().enumerate() {
                one.observe(&cfg, &catalog, *id, m * 60_000, 1.0 + i as f64);
            }
        }
        // Two partitions (one member each) read in chunks: partition 0 runs ten minutes ahead.
        let hold = 120_000;
        let mut merged = ScalingState::default();
        let mut merger = LoadMerger::new([0, 1], hold, 0);
        let apply = |ready: Vec<LoadSample>, st: &mut ScalingState| {
            for s in ready {
                st.observe_member(&cfg, &s);
            }
        };
        for chunk in 0..3 {
            for (p, i) in [(0, 0), (1, 1)] {
                let part: Vec<LoadSample> = (chunk * 10..chunk * 10 + 10)
                    .map(|m| sample(i, m))
                    .collect();
                apply(merger.push(p, msg(part), 0), &mut merged);
            }
        }
        apply(merger.at_end(0, 0), &mut merged);
        apply(merger.at_end(1, 0), &mut merged);
        assert_eq!(merger.waiting(), 0);
        let now = 29 * 60_000;
        let (a, b) = (
            one.value(&cfg, "checkout_rps", None, now).expect("one"),
            merged
                .value(&cfg, "checkout_rps", None, now)
                .expect("merged"),
        );
        // Both members in every step: 1 + 2.
        assert_eq!((a.current, b.current), (3.0, 3.0));
        assert_eq!(
            one.targets["checkout_rps"].forecaster.seen(),
            merged.targets["checkout_rps"].forecaster.seen()
        );
        // At start, a partition with nothing yet is waited for (its worker may be slower to
        // start), for the hold time at most.
        let mut fresh = LoadMerger::new([0, 1], hold, 0);
        assert!(fresh.at_end(1, 0).is_empty());
        assert!(fresh.push(0, msg(vec![sample(0, 0)]), 1_000).is_empty());
        assert!(fresh.at_end(0, 1_000).is_empty());
        assert_eq!(fresh.release(hold).len(), 1);
        // Partition 1's worker dies (both were quiet for a while before): partition 0 goes on
        // alone and waits for it...
        let mut wall = 10 * hold;
        for m in 30..35 {
            apply(merger.push(0, msg(vec![sample(0, m)]), wall), &mut merged);
            apply(merger.at_end(0, wall), &mut merged);
            wall += 10_000;
        }
        assert_eq!(merger.waiting(), 5);
        // ... until its new owner delivers the backlog: every step still has both members.
        let backlog = (30..35).map(|m| sample(1, m)).collect();
        apply(merger.push(1, msg(backlog), wall), &mut merged);
        apply(merger.at_end(1, wall), &mut merged);
        assert_eq!(merger.waiting(), 0);
        apply(merger.push(0, msg(vec![sample(0, 35)]), wall), &mut merged);
        let v = merged
            .value(&cfg, "checkout_rps", None, 35 * 60_000)
            .expect("merged");
        assert_eq!(v.current, 3.0);
        // A partition quiet for longer than the hold holds nobody up any more...
        assert_eq!(merger.release(wall + hold).len(), 1);
        // ... and one whose worker says how far it has read (no members there) at once.
        let mut lanes = LoadMerger::new([0, 1], hold, 0);
        assert!(lanes.push(0, msg(vec![sample(0, 1)]), 0).is_empty());
        let heartbeat = LoadMessage {
            watermark_ms: 60_000,
            samples: Vec::new(),
        };
        assert_eq!(lanes.push(1, heartbeat, 0).len(), 1);
    }

    #[test]
    fn validation_names_every_problem() {
        let (mut cfg, _, _) = setup();
        cfg.targets.push(ScalingTarget {
            name: "Bad Name".into(),
            namespace: None,
            selector: "rps{".into(),
            labels: Default::default(),
            capacity_per_pod: 0.0,
            lead_secs: 60,
            quantile: 0.7,
        });
        let mut p = Vec::new();
        cfg.validate("detect.scaling", &mut p);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter().all(|m| m.starts_with("detect.scaling.targets[1]")),
            "{p:?}"
        );
    }
}
