//! The detection stage: one [`Detector`] per series, fed from sample batches, turning alerts
//! into [`AnomalyEvent`]s.
//!
//! Synchronous and single-threaded: the binary runs it on its own thread behind the archive
//! (batches arrive only once durable) and shares [`DetectState`] snapshots with the API.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use aiops_models::{
    AnomalyEvent, IdHashMap, IdHasher, SampleBatch, SeriesCatalog, SeriesId, service_of,
};
use serde::{Deserialize, Serialize};

use crate::multi::{MultiConfig, MultiScored, ServiceModel};
use std::sync::atomic::Ordering::Relaxed;

use crate::published::{Published, SharedScaling};
use crate::scaling::ScalingConfig;
use crate::warm::{WarmRequest, Warmed};
use crate::{Detector, DetectorConfig, Scored};

/// Reads a series' samples in `from_ms..=to_ms` (the archive, in the pipeline).
pub type History = dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)> + Send;

/// Options of the detection stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Scoring parameters shared by every series.
    pub detector: DetectorConfig,
    /// A score at least this high raises (or extends) an anomaly event.
    pub event_score: f64,
    /// An event closes after this long without another alert.
    pub event_quiet_secs: u64,
    /// Events kept in memory for the API (oldest dropped first).
    pub max_events: usize,
    /// Series exported as `aiops_anomaly_score` gauges (the highest scores win).
    pub max_score_gauges: usize,
    /// How often the detector state is checkpointed, seconds.
    pub checkpoint_secs: u64,
    /// A series first seen (no checkpointed state) that already has history in the archive is
    /// warmed with this much of it, seconds (0: start cold). Series new to the archive start
    /// cold at once; the others are scored cold while a background thread warms them.
    pub warm_start_secs: u64,
    /// Most series warmed from history per second (bounded background work).
    pub warm_series_per_sec: u32,
    /// Series warmed together in one pass over their history.
    pub warm_batch: usize,
    /// Most series waiting to be warmed; more start (and stay) cold, counted in
    /// `aiops_detect_warm_skipped_total`.
    pub warm_queue_max: usize,
    /// Most bytes of sample batches waiting for detection (24 a sample); when detection falls
    /// that far behind, the archive stage and the writers behind it wait.
    pub max_queue_bytes: usize,
    /// Multivariate scoring of each service's metrics as one vector.
    pub services: ServicesConfig,
    /// Predictive scaling targets (load forecasts served to the HPA).
    pub scaling: ScalingConfig,
    /// Sensitivities for the series a selector matches (`[[detect.sensitivity_overrides]]`;
    /// the first that matches wins, the others take `detector.sensitivity`).
    pub sensitivity_overrides: Vec<SensitivityOverride>,
}

/// A sensitivity (false alarms per series per day) for the series a selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitivityOverride {
    /// A series selector, e.g. `http_request_errors_total{namespace="shop"}`.
    pub selector: String,
    /// Its sensitivity.
    pub sensitivity: f64,
}

impl DetectConfig {
    /// The detector parameters of the series `meta` describes: `detector`, with the sensitivity
    /// of the first override whose selector matches it.
    pub fn detector_for(&self, meta: Option<&aiops_models::SeriesMeta>) -> DetectorConfig {
        let mut c = self.detector;
        if let Some(m) = meta
            && let Some(o) = self.sensitivity_overrides.iter().find(|o| {
                o.selector
                    .parse::<aiops_models::Selector>()
                    .is_ok_and(|s| s.matches(m))
            })
        {
            c.sensitivity = o.sensitivity;
        }
        c
    }
}

/// Options of the per-service multivariate scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Score services as a whole at all.
    pub enabled: bool,
    /// One vector per service per step: the latest value of each of its series, seconds.
    pub step_secs: u64,
    /// A series silent for this many steps counts as missing in the vector.
    pub stale_steps: u32,
    /// At most this many series per service (the first seen); later ones are scored alone.
    pub max_metrics: usize,
    /// A service event opens only after this many steps in a row score at or above
    /// `event_score`: a change that holds, not a blip.
    pub sustain_steps: u32,
    /// A service's model refits at most once per this many seconds of wall-clock time, on the
    /// fitting thread (0: every `model.refit_rows` steps). Live, a step is a minute and refits
    /// come half an hour apart; a backfill or a replay brings steps much faster, and its refits
    /// would otherwise take a core.
    pub refit_min_secs: u64,
    /// Model parameters.
    pub model: MultiConfig,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            step_secs: 60,
            stale_steps: 5,
            max_metrics: 64,
            sustain_steps: 3,
            refit_min_secs: 10,
            model: MultiConfig::default(),
        }
    }
}

/// The metric name of service-level events.
pub const SERVICE_ANOMALY_METRIC: &str = "aiops_service_anomaly";

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            detector: DetectorConfig::default(),
            event_score: 0.5,
            event_quiet_secs: 900,
            max_events: 10_000,
            max_score_gauges: 1_000,
            checkpoint_secs: 300,
            warm_start_secs: 7 * 86_400,
            warm_series_per_sec: 2_000,
            warm_batch: 1_000,
            warm_queue_max: 1_000_000,
            max_queue_bytes: 32 << 20,
            services: ServicesConfig::default(),
            scaling: ScalingConfig::default(),
            sensitivity_overrides: Vec::new(),
        }
    }
}

impl DetectConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if !(0.0..=1.0).contains(&self.event_score) {
            problems.push(format!(
                "{prefix}.event_score = {}: must be between 0 and 1",
                self.event_score
            ));
        }
        if self.max_events == 0 {
            problems.push(format!("{prefix}.max_events: must be at least 1"));
        }
        let d = &self.detector;
        if !(d.sensitivity > 0.0 && d.sensitivity <= 1000.0) {
            problems.push(format!(
                "{prefix}.detector.sensitivity = {}: false alarms per series per day, must be \
                 above 0 and at most 1000",
                d.sensitivity
            ));
        }
        for (k, o) in self.sensitivity_overrides.iter().enumerate() {
            if let Err(e) = o.selector.parse::<aiops_models::Selector>() {
                problems.push(format!(
                    "{prefix}.sensitivity_overrides[{k}].selector = {:?}: {e}",
                    o.selector
                ));
            }
            if !(o.sensitivity > 0.0 && o.sensitivity <= 1000.0) {
                problems.push(format!(
                    "{prefix}.sensitivity_overrides[{k}].sensitivity = {}: must be above 0 and \
                     at most 1000",
                    o.sensitivity
                ));
            }
        }
        if d.rank_windows
            .iter()
            .chain(&d.rank_memory)
            .any(|w| !(1.0..=1e6).contains(w))
        {
            problems.push(format!(
                "{prefix}.detector.rank_windows / rank_memory = {:?} / {:?}: each between 1 and \
                 1000000",
                d.rank_windows, d.rank_memory
            ));
        }
        if !(1.0..=16.0).contains(&d.rank_power) {
            problems.push(format!(
                "{prefix}.detector.rank_power = {}: must be between 1 and 16",
                d.rank_power
            ));
        }
        if self.checkpoint_secs == 0 {
            problems.push(format!("{prefix}.checkpoint_secs: must be at least 1"));
        }
        if self.max_queue_bytes < 1 << 20 {
            problems.push(format!(
                "{prefix}.max_queue_bytes = {}: must be at least 1048576",
                self.max_queue_bytes
            ));
        }
        if self.warm_series_per_sec == 0 {
            problems.push(format!("{prefix}.warm_series_per_sec: must be at least 1"));
        }
        if !(1..=100_000).contains(&self.warm_batch) {
            problems.push(format!(
                "{prefix}.warm_batch = {}: must be between 1 and 100000",
                self.warm_batch
            ));
        }
        if self.services.step_secs == 0 {
            problems.push(format!("{prefix}.services.step_secs: must be at least 1"));
        }
        if self.services.max_metrics == 0 || self.services.max_metrics > 1024 {
            problems.push(format!(
                "{prefix}.services.max_metrics = {}: must be between 1 and 1024",
                self.services.max_metrics
            ));
        }
        let m = &self.services.model;
        if m.min_fit_rows < 6 || m.window_rows < m.min_fit_rows {
            problems.push(format!(
                "{prefix}.services.model: need 6 <= min_fit_rows ({}) <= window_rows ({})",
                m.min_fit_rows, m.window_rows
            ));
        }
        if !(0.0..=1.0).contains(&m.variance_kept) {
            problems.push(format!(
                "{prefix}.services.model.variance_kept = {}: must be between 0 and 1",
                m.variance_kept
            ));
        }
        self.scaling
            .validate(&format!("{prefix}.scaling"), problems);
        if self.detector.short_window == 0 || self.detector.short_window > 16 {
            problems.push(format!(
                "{prefix}.detector.short_window = {}: must be between 1 and 16",
                self.detector.short_window
            ));
        }
    }
}

/// Per-series state: the detector, the latest score and the open event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesState {
    /// The detector.
    pub detector: Detector,
    /// Latest score.
    pub score: f64,
    /// Time of the latest sample, Unix ms.
    pub last_ms: i64,
    /// The id of the open event.
    pub open_event: Option<String>,
    /// For counters: the previous raw sample, to score the per-second rate instead.
    #[serde(default)]
    pub counter_prev: Option<(i64, f64)>,
    /// True when the series is a Prometheus counter (scored as a rate).
    #[serde(default)]
    pub is_counter: bool,
    /// Its service, once looked up in the catalog.
    #[serde(skip)]
    pub service: Option<Option<Arc<str>>>,
    /// Scored cold while its history is being read (see [`crate::warm`]).
    #[serde(skip)]
    pub warming: bool,
    /// Whether it feeds a scaling target, once looked up (only members' samples go there).
    #[serde(skip)]
    pub scaling_member: Option<bool>,
    /// Its place in its service's vector, once found ([`SLOT_UNKNOWN`], [`SLOT_NONE`] when the
    /// vector was full): a hint checked against the vector, never trusted blindly.
    #[serde(skip, default = "slot_unknown")]
    pub service_slot: u16,
    /// Its detector's parameters were matched to `sensitivity_overrides` (again after a
    /// restore, a hand-over, a warm-up or a change of parameters).
    #[serde(skip)]
    pub tuned: bool,
}

/// [`SeriesState::service_slot`] not looked up yet.
pub const SLOT_UNKNOWN: u16 = u16::MAX;
/// [`SeriesState::service_slot`]: the service's vector was full when the series came.
pub const SLOT_NONE: u16 = u16::MAX - 1;

fn slot_unknown() -> u16 {
    SLOT_UNKNOWN
}

/// Services by name, hashed with FxHash (one lookup per scored sample; SipHash's DoS resistance
/// buys nothing for names the operator's own series carry).
pub type ServiceMap = HashMap<String, ServiceState, rustc_hash::FxBuildHasher>;

/// A partition's share of the state: series, services, open events.
pub type PartitionShare = (
    Vec<(SeriesId, SeriesState)>,
    Vec<(String, ServiceState)>,
    Vec<AnomalyEvent>,
);

/// Which series and services belong to one partition (see [`DetectState::export_partition`]).
pub struct Ownership<'a> {
    /// Series by id.
    pub series: &'a dyn Fn(SeriesId) -> bool,
    /// Services by name (their multivariate models).
    pub service: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for Ownership<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ownership")
    }
}

impl Ownership<'_> {
    /// A service's event goes with its service, a series' with its series.
    fn event(&self, e: &AnomalyEvent) -> bool {
        if e.metric == SERVICE_ANOMALY_METRIC {
            e.service.as_deref().is_some_and(|s| (self.service)(s))
        } else {
            (self.series)(e.series_id)
        }
    }
}

/// Per-service state: which series make up the vector, their latest values, the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    /// The series of the vector, in order.
    pub members: Vec<SeriesId>,
    /// Their metric names (for events).
    pub metrics: Vec<String>,
    /// Latest (scored) value of each member and its time, Unix ms.
    #[serde(with = "crate::multi::nan_as_null::pairs")]
    pub latest: Vec<(i64, f64)>,
    /// The step the latest values belong to.
    pub step: i64,
    /// The model.
    pub model: ServiceModel,
    /// Latest score.
    pub score: f64,
    /// The id of the open event.
    pub open_event: Option<String>,
    /// Steps in a row at or above the event score.
    #[serde(default)]
    pub run: u32,
    /// No refit is asked for before this (see [`ServicesConfig::refit_min_secs`]).
    #[serde(skip)]
    pub next_fit: Option<std::time::Instant>,
}

pub use aiops_models::{counter_rate, counter_step, is_counter};

/// Everything the stage knows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DetectState {
    /// Per series, boxed: the map's spare capacity (up to half its slots) then costs a
    /// pointer each, not a whole state (a kilobyte).
    pub series: IdHashMap<Box<SeriesState>>,
    /// Per service (multivariate).
    #[serde(default)]
    pub services: ServiceMap,
    /// Recent events, oldest first.
    pub events: Vec<AnomalyEvent>,
    /// Predictive scaling targets (shared with the API, behind a lock of their own).
    #[serde(default)]
    pub scaling: SharedScaling,
    /// Samples scored since start.
    #[serde(skip)]
    pub scored: u64,
    /// Trained detectors (`aiops train`) for series not yet seen, taken on first sight.
    #[serde(skip)]
    pub profiles: HashMap<u64, Detector>,
    /// Ids of events opened, extended or closed since the last [`DetectState::take_changed`].
    #[serde(skip)]
    changed: Vec<String>,
    /// Set by a Kafka detector worker: scaling targets' member samples are collected here
    /// (to be shared with every node through the load topic) instead of summed locally, where
    /// only this node's partitions would count.
    #[serde(skip)]
    pub load_out: Option<Vec<crate::scaling::LoadSample>>,
    /// What readers see (events, top scores, counters); they never take this state's lock.
    #[serde(skip)]
    pub published: Arc<Published>,
    /// Series waiting to be warmed from history, oldest first.
    #[serde(skip)]
    warm_queue: VecDeque<WarmRequest>,
    /// Series handed to the warmer and not back yet.
    #[serde(skip)]
    warm_in_flight: usize,
    /// Service names, shared by their series.
    #[serde(skip)]
    service_names: HashSet<Arc<str>>,
    /// Refit services' models on a fitting thread ([`DetectState::take_fit_requests`]) rather
    /// than in line.
    #[serde(skip)]
    defer_fits: bool,
    /// Refits asked for and not yet handed over.
    #[serde(skip)]
    fit_queue: Vec<crate::fit::FitRequest>,
}

/// How a series first seen with history in the archive gets it.
enum Warm<'a> {
    /// Read synchronously, before its first sample is scored (tests, offline use).
    Now(&'a dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>),
    /// Queued for the background warmer (the pipeline).
    Queue,
}

impl DetectState {
    /// Scores every sample of `batch` in order, opening, extending and closing events.
    pub fn process(&mut self, cfg: &DetectConfig, batch: &SampleBatch, catalog: &SeriesCatalog) {
        let none = |_, _, _| Vec::new();
        self.process_inner(cfg, batch, catalog, Warm::Now(&none), &none);
    }

    /// As [`DetectState::process`]; a series seen for the first time with history in the
    /// archive is first warmed with `history(id, from_ms, to_ms)` (e.g. read from the archive:
    /// earlier runs, backfills), so that it does not start cold. Warming raises no events.
    pub fn process_with_history(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        self.process_inner(cfg, batch, catalog, Warm::Now(history), history);
    }

    /// As [`DetectState::process_with_history`], but a series with history is scored cold at
    /// once and queued for the background warmer ([`DetectState::take_warm_requests`],
    /// [`DetectState::apply_warmed`]): a batch never waits for history. `history` is read only
    /// when a scaling target is first seen (its members' recent load).
    pub fn process_queued(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        self.process_inner(cfg, batch, catalog, Warm::Queue, history);
    }

    /// A first-seen series' state; warmed now, queued, or cold.
    fn first_sight(
        &mut self,
        cfg: &DetectConfig,
        id: SeriesId,
        ts: i64,
        fresh: bool,
        catalog: &SeriesCatalog,
        warm: &Warm<'_>,
    ) -> SeriesState {
        let trained = self.profiles.remove(&id.0);
        // An event left open by a crash before the last checkpoint is still this series' open
        // event: it extends or closes like any other.
        let open_event = self
            .events
            .iter()
            .rev()
            .find(|e| e.series_id == id && e.end_ms.is_none())
            .map(|e| e.id.clone());
        let is_counter = catalog.get(id).is_some_and(|m| is_counter(&m.metric));
        // A trained detector has seen its history already; a series new to the archive has none.
        let warm_wanted = cfg.warm_start_secs > 0 && trained.is_none() && !fresh;
        if fresh {
            self.published.counters.fresh.fetch_add(1, Relaxed);
        }
        let mut st = SeriesState {
            detector: trained.unwrap_or_else(|| Detector::new(cfg.detector)),
            score: 0.0,
            last_ms: i64::MIN,
            open_event,
            counter_prev: None,
            is_counter,
            service: None,
            warming: false,
            scaling_member: None,
            service_slot: SLOT_UNKNOWN,
            tuned: false,
        };
        if !warm_wanted {
            return st;
        }
        let from = ts - cfg.warm_start_secs as i64 * 1000;
        match warm {
            Warm::Now(history) => {
                for (t, v) in history(id, from, ts - 1) {
                    crate::warm::learn(
                        &mut st.detector,
                        &mut st.last_ms,
                        &mut st.counter_prev,
                        is_counter,
                        t,
                        v,
                    );
                }
            }
            Warm::Queue if self.warm_queue.len() < cfg.warm_queue_max => {
                st.warming = true;
                self.warm_queue.push_back(WarmRequest {
                    id,
                    from_ms: from,
                    live_from_ms: ts,
                    is_counter,
                });
            }
            Warm::Queue => {
                self.published.counters.warm_skipped.fetch_add(1, Relaxed);
            }
        }
        st
    }

    /// Makes every detector score with `cfg` (after restoring a checkpoint, which does not
    /// carry parameters: the ones in use now apply).
    pub fn set_detector_config(&mut self, cfg: crate::DetectorConfig) {
        for st in self.series.values_mut() {
            st.detector.set_config(cfg);
            st.tuned = false;
        }
    }

    /// Up to `max` queued series for the warmer (none while a pass is in flight).
    pub fn take_warm_requests(&mut self, max: usize) -> Vec<WarmRequest> {
        if self.warm_in_flight > 0 {
            return Vec::new();
        }
        let n = max.min(self.warm_queue.len());
        let out: Vec<WarmRequest> = self.warm_queue.drain(..n).collect();
        self.warm_in_flight = out.len();
        out
    }

    /// From now on, services' models are refitted elsewhere: each refit due is queued for
    /// [`DetectState::take_fit_requests`] and installed by [`DetectState::apply_fits`].
    pub fn defer_fits(&mut self) {
        self.defer_fits = true;
    }

    /// The refits queued since the last call.
    pub fn take_fit_requests(&mut self) -> Vec<crate::fit::FitRequest> {
        std::mem::take(&mut self.fit_queue)
    }

    /// Installs fits made elsewhere (or lets a refit not made be asked for again).
    pub fn apply_fits(&mut self, done: Vec<crate::fit::FitDone>) {
        for d in done {
            if let Some(st) = self.services.get_mut(d.service.as_str()) {
                st.model.install_background(d.fitted, d.dims);
            }
        }
    }

    /// Series waiting for, or being, warmed.
    pub fn warm_backlog(&self) -> usize {
        self.warm_queue.len() + self.warm_in_flight
    }

    /// Swaps warmed detectors in (each has seen at least what the cold one scored, because
    /// detection runs behind the archive; otherwise the cold one stays), then raises the events
    /// of the samples the cold detector had scored, as the warmed one scored them.
    pub fn apply_warmed(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        warmed: Vec<Warmed>,
    ) {
        self.warm_in_flight = self.warm_in_flight.saturating_sub(warmed.len());
        let n = warmed.len() as u64;
        for w in warmed {
            let Some(mut st) = self.series.remove(&w.id) else {
                continue;
            };
            if !st.warming {
                self.series.insert(w.id, st);
                continue;
            }
            st.warming = false;
            if w.last_ms < st.last_ms {
                self.series.insert(w.id, st);
                continue;
            }
            st.detector = w.detector;
            st.tuned = false;
            st.last_ms = w.last_ms;
            st.counter_prev = w.counter_prev.or(st.counter_prev);
            if let Some(&(_, _, s)) = w.live.last() {
                st.score = s.score;
            }
            for (t, value, s) in w.live {
                self.after_score(cfg, catalog, &mut st, w.id, t, value, &s, false);
            }
            self.series.insert(w.id, st);
        }
        self.published.counters.warmed.fetch_add(n, Relaxed);
        self.published
            .counters
            .warm_backlog
            .store(self.warm_backlog() as u64, Relaxed);
    }

    fn process_inner(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        warm: Warm<'_>,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        let (ids, ts, vs) = (batch.series_ids(), batch.timestamps(), batch.values());
        self.published
            .counters
            .received
            .fetch_add(batch.len() as u64, Relaxed);
        // Series this batch announced were not in the catalog when it was decoded: the archive
        // holds nothing older of them.
        let fresh: HashSet<SeriesId, std::hash::BuildHasherDefault<IdHasher>> =
            batch.new_series.iter().map(|m| m.id).collect();
        // A batch holds series one after another; scaling sums series per step, so it takes
        // the batch's samples in time order.
        let mut scaling_samples = Vec::new();
        // A batch holds a series' samples one after another (a remote_write body does): the
        // series' state is taken out of the map once per run, not looked up per sample.
        for run in aiops_models::series_runs(ids) {
            let (start, end) = (run.start, run.end);
            let id = SeriesId(ids[start]);
            // The next run's state comes into cache while this run is scored.
            if let Some(next) = ids.get(end).and_then(|&n| self.series.get(&SeriesId(n))) {
                crate::prefetch::prefetch::<SeriesState>(next);
            }
            let mut st = match self.series.remove(&id) {
                Some(st) => st,
                None => Box::new(self.first_sight(
                    cfg,
                    id,
                    ts[start],
                    fresh.contains(&id),
                    catalog,
                    &warm,
                )),
            };
            for i in start..end {
                if ts[i] <= st.last_ms {
                    // Duplicates from retried writes, or late samples: already scored.
                    continue;
                }
                st.last_ms = ts[i];
                let (value, count) = if st.is_counter {
                    let prev = st.counter_prev.replace((ts[i], vs[i]));
                    match prev.and_then(|p| counter_step(p, (ts[i], vs[i]))) {
                        Some(step) => step,
                        None => continue,
                    }
                } else {
                    (vs[i], None)
                };
                if !st.tuned {
                    st.tuned = true;
                    if !cfg.sensitivity_overrides.is_empty() {
                        let meta = catalog.get(id);
                        st.detector.set_config(cfg.detector_for(meta.as_deref()));
                    }
                }
                let s = st.detector.update_counted(ts[i], value, count);
                st.score = s.score;
                if !cfg.scaling.targets.is_empty()
                    && *st.scaling_member.get_or_insert_with(|| {
                        self.scaling.lock().is_member(&cfg.scaling, id, catalog)
                    })
                {
                    scaling_samples.push((ts[i], id, value));
                }
                self.scored += 1;
                self.after_score(cfg, catalog, &mut st, id, ts[i], value, &s, true);
            }
            self.series.insert(id, st);
        }
        self.scored_samples(cfg, catalog, scaling_samples, history);
    }

    /// Hands a batch's scored samples to the scaling targets (or, on Kafka, to the load feed).
    fn scored_samples(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        mut samples: Vec<(i64, SeriesId, f64)>,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        if samples.is_empty() {
            return;
        }
        samples.sort_by_key(|&(t, _, _)| t);
        if let Some(out) = &mut self.load_out {
            let mut sc = self.scaling.lock();
            for (t, id, v) in samples {
                for target in sc.member_of(&cfg.scaling, id, catalog) {
                    out.push(crate::scaling::LoadSample {
                        target,
                        series: id,
                        ts_ms: t,
                        value: v,
                    });
                }
            }
            return;
        }
        // A target seen for the first time is warmed from its members' history before the
        // lock is taken: readers of served values never wait for that read.
        let warmed = crate::scaling::ScalingState::warm_new_targets(
            &self.scaling,
            &cfg.scaling,
            catalog,
            &samples,
            history,
        );
        let mut sc = self.scaling.lock();
        sc.insert_targets(warmed);
        for (t, id, v) in samples {
            sc.observe(&cfg.scaling, catalog, id, t, v);
        }
    }

    /// What follows a series' score: its event opens, extends or closes, and (with `services`)
    /// its service's vector takes the value.
    #[allow(clippy::too_many_arguments)]
    fn after_score(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        st: &mut SeriesState,
        id: SeriesId,
        ts: i64,
        value: f64,
        s: &Scored,
        services: bool,
    ) {
        // The series is out of the map while it is scored: its event is tracked only when one
        // is open or the score reaches the event score (almost never), its service vector fed
        // through a slot hint.
        if st.service.is_none() {
            // One shared name per service, not one string per series.
            let name = catalog.get(id).as_deref().and_then(service_of);
            st.service = Some(name.map(|n| match self.service_names.get(n.as_str()) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(n);
                    self.service_names.insert(a.clone());
                    a
                }
            }));
        }
        let service = st.service.as_ref().and_then(|s| s.as_ref());
        if st.open_event.is_some() || s.score >= cfg.event_score {
            let open = st.open_event.take();
            st.open_event = self.track_event(cfg, open, ts, s, value, || {
                let meta = catalog.get(id);
                AnomalyEvent {
                    id: format!("{id}-{ts}"),
                    series_id: id,
                    metric: meta.as_ref().map(|m| m.metric.clone()).unwrap_or_default(),
                    service: service.map(|s| s.to_string()),
                    labels: meta.as_ref().map(|m| m.labels.to_vec()).unwrap_or_default(),
                    start_ms: ts,
                    peak_ms: ts,
                    last_ms: ts,
                    end_ms: None,
                    score: s.score,
                    observed: value,
                    expected: s.expected,
                    lower: s.lower,
                    upper: s.upper,
                    p_value: s.p_value,
                }
            });
        }
        if services
            && cfg.services.enabled
            && let Some(service) = st.service.as_ref().and_then(|s| s.as_ref())
        {
            // A series of few events per sample is watched by its count's own tail: in the
            // service's standardised vector its quantised steps (one error, then none) would
            // read as the largest deviations there are.
            let fed = if s.counted { f64::NAN } else { value };
            st.service_slot =
                self.feed_service(cfg, service, id, st.service_slot, catalog, ts, fed);
        }
    }

    /// Opens, extends or closes the event of one series or service after a score; returns the
    /// id of the event left open.
    fn track_event(
        &mut self,
        cfg: &DetectConfig,
        open: Option<String>,
        ts: i64,
        s: &Scored,
        value: f64,
        new_event: impl FnOnce() -> AnomalyEvent,
    ) -> Option<String> {
        let quiet_ms = cfg.event_quiet_secs as i64 * 1000;
        let mut open = open;
        // Close an event that has been quiet long enough.
        if let Some(eid) = open.clone() {
            match self.events.iter_mut().rev().find(|e| e.id == eid) {
                Some(ev) if ts - ev.last_ms > quiet_ms && s.score < cfg.event_score => {
                    ev.end_ms = Some(ev.last_ms);
                    self.changed.push(eid);
                    open = None;
                }
                // While open, the series' state may grow rarer after the alarm (the continuous
                // score's horizons fill): recorded a decade at a time, not every sample.
                Some(ev) if s.p_value < 0.1 * ev.p_value => {
                    ev.p_value = s.p_value;
                    self.changed.push(eid);
                }
                Some(_) => {}
                None => open = None,
            }
        }
        if s.score < cfg.event_score {
            return open;
        }
        match open {
            Some(eid) => {
                if let Some(ev) = self.events.iter_mut().rev().find(|e| e.id == eid) {
                    ev.last_ms = ts;
                    ev.p_value = ev.p_value.min(s.p_value);
                    if s.score > ev.score {
                        ev.score = s.score;
                        ev.peak_ms = ts;
                        ev.observed = value;
                        ev.expected = s.expected;
                        ev.lower = s.lower;
                        ev.upper = s.upper;
                    }
                }
                self.changed.push(eid.clone());
                Some(eid)
            }
            None => {
                let ev = new_event();
                let eid = ev.id.clone();
                self.changed.push(eid.clone());
                self.events.push(ev);
                if self.events.len() > cfg.max_events {
                    let drop = self.events.len() - cfg.max_events;
                    self.events.drain(..drop);
                }
                Some(eid)
            }
        }
    }

    /// Records a series' scored value in its service's vector; when the step moves on, scores
    /// the finished step's vector as a whole.
    /// Returns the series' slot in the vector (or [`SLOT_NONE`]), the hint for next time.
    #[allow(clippy::too_many_arguments)]
    fn feed_service(
        &mut self,
        cfg: &DetectConfig,
        service: &str,
        id: SeriesId,
        hint: u16,
        catalog: &SeriesCatalog,
        ts: i64,
        value: f64,
    ) -> u16 {
        let sc = &cfg.services;
        let step_ms = sc.step_secs as i64 * 1000;
        let step = ts.div_euclid(step_ms);
        // One lookup per sample (the key compare is most of its cost), two on first sight.
        let st = match self.services.get_mut(service) {
            Some(st) => st,
            None => {
                self.services.insert(
                    service.to_owned(),
                    ServiceState {
                        members: Vec::new(),
                        metrics: Vec::new(),
                        latest: Vec::new(),
                        step,
                        model: ServiceModel::new(sc.model, 0),
                        score: 0.0,
                        open_event: None,
                        run: 0,
                        next_fit: None,
                    },
                );
                self.services.get_mut(service).expect("inserted above")
            }
        };
        let full = st.members.len() >= sc.max_metrics;
        let known = match hint {
            // Still full: still not a member (a vector only grows, until its service goes).
            SLOT_NONE if full => return SLOT_NONE,
            j if st.members.get(usize::from(j)) == Some(&id) => Some(usize::from(j)),
            _ => st.members.iter().position(|m| *m == id),
        };
        let slot = match known {
            Some(j) => j,
            None if !full => {
                // A new member changes the vector: the model starts over.
                let metric = catalog
                    .get(id)
                    .map(|m| m.metric.clone())
                    .unwrap_or_default();
                st.members.push(id);
                st.metrics.push(metric);
                st.latest.push((i64::MIN, f64::NAN));
                st.model = ServiceModel::new(sc.model, st.members.len());
                st.members.len() - 1
            }
            None => return SLOT_NONE,
        };
        let mut finished = None;
        if step > st.step && st.members.len() >= 2 {
            let stale_ms = i64::from(sc.stale_steps) * step_ms;
            let end = (st.step + 1) * step_ms;
            let row: Vec<f64> = st
                .latest
                .iter()
                .map(|&(t, v)| if end - t <= stale_ms { v } else { f64::NAN })
                .collect();
            let scored = if self.defer_fits {
                let scored = st.model.observe(&row);
                let now = std::time::Instant::now();
                if st.next_fit.is_none_or(|t| now >= t)
                    && let Some((rows, cfg)) = st.model.take_fit()
                {
                    st.next_fit = Some(now + std::time::Duration::from_secs(sc.refit_min_secs));
                    self.fit_queue.push(crate::fit::FitRequest {
                        service: service.to_owned(),
                        dims: st.model.dims(),
                        rows,
                        cfg,
                    });
                }
                scored
            } else {
                st.model.update(&row)
            };
            st.score = scored.score;
            finished = Some((st.step * step_ms, scored, st.open_event.take()));
            st.step = step;
        }
        st.step = st.step.max(step);
        st.latest[slot] = (ts, value);
        if let Some((at, scored, open)) = finished {
            self.service_scored(cfg, service, at, scored, open);
        }
        // max_metrics is at most 1024: every slot fits.
        slot as u16
    }

    fn service_scored(
        &mut self,
        cfg: &DetectConfig,
        service: &str,
        at: i64,
        m: MultiScored,
        open: Option<String>,
    ) {
        let Some(st) = self.services.get_mut(service) else {
            return;
        };
        st.run = if m.score >= cfg.event_score {
            st.run + 1
        } else {
            0
        };
        let sustained = st.run >= cfg.services.sustain_steps.max(1);
        let top = m
            .top_metric
            .and_then(|j| st.metrics.get(j))
            .cloned()
            .unwrap_or_default();
        let labels = vec![
            ("service".to_owned(), service.to_owned()),
            ("top_metric".to_owned(), top),
        ];
        let meta = aiops_models::SeriesMeta::new(
            aiops_models::Source::Prometheus,
            SERVICE_ANOMALY_METRIC,
            [("service".to_owned(), service.to_owned())],
        );
        // Observed: the squared prediction error per metric; expected: 0 (on the model), band:
        // about one standard deviation per metric.
        let s = Scored {
            score: if sustained { m.score } else { 0.0 },
            rank_score: m.score,
            p_value: 1.0,
            alarm: sustained && m.score >= cfg.event_score,
            counted: false,
            raw: m.score,
            expected: 0.0,
            lower: 0.0,
            upper: 1.0,
        };
        let opened = self.track_event(cfg, open, at, &s, m.spe, || AnomalyEvent {
            id: format!("{}-{at}", meta.id),
            series_id: meta.id,
            metric: SERVICE_ANOMALY_METRIC.to_owned(),
            service: Some(service.to_owned()),
            labels,
            start_ms: at,
            peak_ms: at,
            last_ms: at,
            end_ms: None,
            score: m.score,
            observed: m.spe,
            expected: 0.0,
            lower: 0.0,
            upper: 1.0,
            p_value: 1.0,
        });
        if let Some(st) = self.services.get_mut(service) {
            st.open_event = opened;
        }
    }

    /// A partition's share of the state, for a hand-over between workers: the series `owns`
    /// picks, the services `owns_service` picks (their multivariate models), and the events
    /// still open on either.
    pub fn export_partition(&self, owns: &Ownership<'_>) -> PartitionShare {
        let series = self
            .series
            .iter()
            .filter(|(id, _)| (owns.series)(**id))
            .map(|(id, st)| (*id, (**st).clone()))
            .collect();
        let services = self
            .services
            .iter()
            .filter(|(name, _)| (owns.service)(name))
            .map(|(name, st)| (name.clone(), st.clone()))
            .collect();
        let events = self
            .events
            .iter()
            .filter(|e| e.end_ms.is_none() && owns.event(e))
            .cloned()
            .collect();
        (series, services, events)
    }

    /// Forgets what `owns` picks (after handing it over).
    pub fn remove_partition(&mut self, owns: &Ownership<'_>) {
        self.series.retain(|id, _| !(owns.series)(*id));
        self.services.retain(|name, _| !(owns.service)(name));
    }

    /// Takes over what another worker handed over; series and services already here and
    /// further along are kept.
    pub fn import_partition(
        &mut self,
        series: Vec<(SeriesId, SeriesState)>,
        services: Vec<(String, ServiceState)>,
        events: Vec<AnomalyEvent>,
    ) {
        for (id, st) in series {
            match self.series.get(&id) {
                Some(mine) if mine.last_ms >= st.last_ms => {}
                _ => {
                    self.series.insert(id, Box::new(st));
                }
            }
        }
        for (name, st) in services {
            match self.services.get(&name) {
                Some(mine) if mine.step >= st.step => {}
                _ => {
                    self.services.insert(name, st);
                }
            }
        }
        for ev in events {
            if !self.events.iter().any(|e| e.id == ev.id) {
                self.events.push(ev);
            }
        }
    }

    /// After the event log replaced the checkpoint's events: a series whose checkpoint knew
    /// no open event takes the open event the log has for it (a crash between the log and
    /// the checkpoint), so it closes when the series is quiet again.
    pub fn reattach_open_events(&mut self) {
        for ev in self.events.iter().filter(|e| e.end_ms.is_none()) {
            if let Some(st) = self.series.get_mut(&ev.series_id)
                && st.open_event.is_none()
            {
                st.open_event = Some(ev.id.clone());
            }
        }
    }

    /// The current state of every event that changed since the last call, once each; also
    /// publishes them, the counters and (once a second) the top scores for readers.
    pub fn take_changed(&mut self) -> Vec<AnomalyEvent> {
        let mut ids = std::mem::take(&mut self.changed);
        ids.sort();
        ids.dedup();
        let changed: Vec<AnomalyEvent> = self
            .events
            .iter()
            .filter(|e| ids.binary_search(&e.id).is_ok())
            .cloned()
            .collect();
        // An event is when the top scores matter most: they are refreshed with it, before it
        // is visible.
        self.publish_stats(!changed.is_empty());
        self.published.upsert_events(&changed);
        changed
    }

    /// Counters and, once a second (or now, with `refresh`), the top scores and the state
    /// size, for readers.
    fn publish_stats(&self, refresh: bool) {
        let c = &self.published.counters;
        c.scored.store(self.scored, Relaxed);
        c.series.store(self.series.len() as u64, Relaxed);
        c.warm_backlog.store(self.warm_backlog() as u64, Relaxed);
        if self.published.top_due(refresh) {
            self.published
                .set_top(self.top_scores(self.published.max_scores()));
            c.state_bytes.store(self.state_bytes(), Relaxed);
        }
    }

    /// Bytes held by the per-series and per-service state, estimated from the maps' capacity.
    pub fn state_bytes(&self) -> u64 {
        let series = self.series.capacity()
            * (std::mem::size_of::<(SeriesId, Box<SeriesState>)>() + 1)
            + self.series.len() * std::mem::size_of::<SeriesState>()
            + self
                .service_names
                .iter()
                .map(|s| s.len() + 16)
                .sum::<usize>();
        let services: usize = self
            .services
            .values()
            .map(|s| {
                std::mem::size_of::<ServiceState>()
                    + s.members.capacity() * (8 + 16 + 24)
                    + s.model.heap_bytes()
            })
            .sum();
        (series + services) as u64
    }

    /// The `limit` series with the highest latest scores above 0.
    pub fn top_scores(&self, limit: usize) -> Vec<(SeriesId, f64)> {
        let mut v: Vec<(SeriesId, f64)> = self
            .series
            .iter()
            .filter(|(_, s)| s.score > 0.0)
            .map(|(id, s)| (*id, s.score))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::{SampleBatchBuilder, SeriesMeta, Source};
    use std::sync::Arc;

    #[test]
    fn a_sensitivity_override_applies_to_the_series_it_selects_also_after_a_restore() {
        let catalog = SeriesCatalog::new();
        let errors = Arc::new(SeriesMeta::new(
            Source::Prometheus,
            "errors",
            [("service".into(), "cart".into())],
        ));
        let latency = Arc::new(SeriesMeta::new(
            Source::Prometheus,
            "latency",
            [("service".into(), "cart".into())],
        ));
        catalog.insert(errors.clone());
        catalog.insert(latency.clone());
        let cfg = DetectConfig {
            sensitivity_overrides: vec![SensitivityOverride {
                selector: r#"errors{service="cart"}"#.into(),
                sensitivity: 0.0001,
            }],
            ..DetectConfig::default()
        };
        let mut problems = Vec::new();
        cfg.validate("detect", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut st = DetectState::default();
        let feed = |st: &mut DetectState, from: i64| {
            let mut b = SampleBatchBuilder::with_capacity(20);
            for i in from..from + 10 {
                b.push(errors.id, i * 60_000, 1.0);
                b.push(latency.id, i * 60_000, 1.0);
            }
            st.process(&cfg, &b.finish(), &catalog);
        };
        let sensitivity =
            |st: &DetectState, id: SeriesId| st.series[&id].detector.config().sensitivity;
        feed(&mut st, 0);
        assert_eq!(sensitivity(&st, errors.id), 0.0001);
        assert_eq!(sensitivity(&st, latency.id), 0.01);
        // A restore sets everyone's parameters; the next sample selects again.
        st.set_detector_config(DetectorConfig::default());
        assert_eq!(sensitivity(&st, errors.id), 0.01);
        feed(&mut st, 10);
        assert_eq!(sensitivity(&st, errors.id), 0.0001);

        let bad = DetectConfig {
            sensitivity_overrides: vec![SensitivityOverride {
                selector: "errors{".into(),
                sensitivity: 0.0,
            }],
            detector: DetectorConfig {
                rank_power: 0.5,
                ..DetectorConfig::default()
            },
            ..DetectConfig::default()
        };
        let mut problems = Vec::new();
        bad.validate("detect", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("sensitivity_overrides[0].selector"));
        assert!(problems[2].contains("detect.detector.rank_power = 0.5"));
    }

    #[test]
    fn a_level_shift_opens_one_event_that_closes_when_quiet() {
        let catalog = SeriesCatalog::new();
        let meta = Arc::new(SeriesMeta::new(
            Source::Prometheus,
            "latency",
            [("service".into(), "payment".into())],
        ));
        catalog.insert(meta.clone());
        let cfg = DetectConfig {
            event_quiet_secs: 600,
            ..DetectConfig::default()
        };
        let mut st = DetectState::default();
        let mut b = SampleBatchBuilder::with_capacity(3000);
        for i in 0..3000i64 {
            let noise = ((i * 7919) % 101) as f64 / 101.0;
            let v = if (2000..2010).contains(&i) {
                500.0
            } else {
                10.0 + noise
            };
            b.push(meta.id, i * 60_000, v);
        }
        st.process(&cfg, &b.finish(), &catalog);
        assert_eq!(st.events.len(), 1, "{:?}", st.events);
        let e = &st.events[0];
        assert_eq!(e.service.as_deref(), Some("payment"));
        assert_eq!(e.start_ms, 2000 * 60_000);
        assert!(e.end_ms.is_some());
        // How rare the state was for this series: far beyond one in a million.
        assert!(e.p_value < 1e-6, "{e:?}");
        let json = serde_json::to_value(e).expect("serialises");
        assert!(json["p_value"].as_f64().expect("a number") < 1e-6, "{json}");
        st.take_changed();
        assert_eq!(
            st.published.query(0, i64::MAX, Some("payment"), 0.5).len(),
            1
        );
        assert!(
            st.published
                .query(0, i64::MAX, Some("cart"), 0.0)
                .is_empty()
        );
    }

    /// Load, CPU and disk of the `checkout` service, in `catalog`.
    fn checkout_series(catalog: &SeriesCatalog) -> Vec<Arc<SeriesMeta>> {
        ["load", "cpu", "disk"]
            .iter()
            .map(|m| {
                let meta = Arc::new(SeriesMeta::new(
                    Source::Prometheus,
                    *m,
                    [("service".into(), "checkout".into())],
                ));
                catalog.insert(meta.clone());
                meta
            })
            .collect()
    }

    /// Steps `from..to` (a minute apart) of [`checkout_series`]: CPU follows load until step
    /// 900, then no longer does (both stay inside their ranges).
    fn checkout_steps(metas: &[Arc<SeriesMeta>], from: i64, to: i64) -> SampleBatch {
        let mut b = SampleBatchBuilder::with_capacity(3000);
        for i in from..to {
            let noise = |k: i64| (((i * 7919 + k * 104_729) % 1009) as f64 / 1009.0 - 0.5) * 0.2;
            let load = 100.0 + 20.0 * (i as f64 / 15.0).sin() + 10.0 * noise(0);
            let cpu = if i >= 900 {
                60.0 - 0.5 * (load - 100.0)
            } else {
                0.5 * load
            } + 5.0 * noise(1);
            for (meta, v) in metas.iter().zip([load, cpu, 3.0 + noise(2)]) {
                b.push(meta.id, i * 60_000 + 1_000, v);
            }
        }
        b.finish()
    }

    #[test]
    fn deferred_refits_go_to_the_fitting_thread_at_most_once_per_refit_min_secs() {
        let catalog = SeriesCatalog::new();
        let metas = checkout_series(&catalog);
        let steps = |from, to| checkout_steps(&metas, from, to);
        let mut cfg = DetectConfig::default();
        cfg.services.refit_min_secs = 3600;
        // The first fit on two full cycles of the load.
        cfg.services.model.min_fit_rows = 200;
        let mut st = DetectState::default();
        st.defer_fits();
        st.process(&cfg, &steps(0, 300), &catalog);
        // The first fit was asked for, not made in line; one only, however many steps passed.
        let reqs = st.take_fit_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].service, "checkout");
        assert!(st.services["checkout"].model.fitted().is_none());

        let fitter = crate::fit::Fitter::spawn();
        assert!(fitter.submit(reqs).is_empty());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut done = Vec::new();
        while done.is_empty() && std::time::Instant::now() < deadline {
            done = fitter.finished();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        st.apply_fits(done);
        assert!(st.services["checkout"].model.fitted().is_some());
        fitter.stop();

        // Within the hour no refit is asked for; the fit in place still scores the break.
        st.process(&cfg, &steps(300, 1000), &catalog);
        assert!(st.take_fit_requests().is_empty());
        assert!(
            st.events
                .iter()
                .any(|e| e.metric == SERVICE_ANOMALY_METRIC && e.start_ms >= 900 * 60_000),
            "{:?}",
            st.events
        );
    }

    #[test]
    fn a_broken_correlation_opens_a_service_event_naming_the_metric() {
        let catalog = SeriesCatalog::new();
        let metas = checkout_series(&catalog);
        let mut st = DetectState::default();
        st.process(
            &DetectConfig::default(),
            &checkout_steps(&metas, 0, 1000),
            &catalog,
        );
        let service_events: Vec<&AnomalyEvent> = st
            .events
            .iter()
            .filter(|e| e.metric == SERVICE_ANOMALY_METRIC)
            .collect();
        assert!(!service_events.is_empty(), "{:?}", st.events);
        let first = service_events[0];
        assert!(first.start_ms >= 900 * 60_000, "{first:?}");
        assert_eq!(first.service.as_deref(), Some("checkout"));
        assert!(
            first
                .labels
                .iter()
                .any(|(k, v)| k == "top_metric" && (v == "cpu" || v == "load")),
            "{first:?}"
        );
        assert!(st.services["checkout"].model.fitted().is_some());

        // The service models survive a checkpoint, missing values (NaN) included.
        st.services.get_mut("checkout").expect("service").latest[0].1 = f64::NAN;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        crate::checkpoint::save(&st, &path);
        let back = crate::checkpoint::load(&path);
        let (a, b) = (&st.services["checkout"], &back.services["checkout"]);
        assert_eq!(a.members, b.members);
        assert!(b.latest[0].1.is_nan());
        let row = [110.0, 40.0, 3.0];
        let (sa, sb) = (a.model.score_only(&row), b.model.score_only(&row));
        assert!(
            sa.score > 0.0 && (sa.score - sb.score).abs() < 1e-9,
            "{sa:?} {sb:?}"
        );
    }

    #[test]
    fn counters_are_scored_as_rates_with_resets() {
        assert!(is_counter("http_requests_total") && is_counter("latency_seconds_bucket"));
        assert!(!is_counter("up") && !is_counter("total_memory_bytes"));
        assert_eq!(counter_rate((0, 10.0), (10_000, 30.0)), Some(2.0));
        assert_eq!(counter_rate((0, 100.0), (10_000, 5.0)), Some(0.5));
        assert_eq!(counter_rate((0, 1.0), (0, 2.0)), None);

        // A counter growing steadily for a long time raises nothing; its rate tripling does.
        let catalog = SeriesCatalog::new();
        let meta = Arc::new(SeriesMeta::new(
            Source::Prometheus,
            "requests_total",
            [("service".into(), "api".into())],
        ));
        catalog.insert(meta.clone());
        let mut st = DetectState::default();
        let mut b = SampleBatchBuilder::with_capacity(3000);
        let mut v = 0.0;
        for i in 0..3000i64 {
            v += if i < 2500 {
                10.0 + ((i * 7919) % 7) as f64
            } else {
                40.0
            };
            b.push(meta.id, i * 15_000, v);
        }
        st.process(&DetectConfig::default(), &b.finish(), &catalog);
        assert_eq!(st.events.len(), 1, "{:?}", st.events);
        assert_eq!(st.events[0].start_ms, 2500 * 15_000);
        assert!((st.events[0].observed - 40.0 / 15.0).abs() < 1e-9);
    }

    #[test]
    fn a_new_series_is_warmed_from_history() {
        let catalog = SeriesCatalog::new();
        let cfg = DetectConfig {
            detector: DetectorConfig {
                learning_samples: 100,
                ..DetectorConfig::default()
            },
            ..DetectConfig::default()
        };
        let history = |_: SeriesId, from: i64, to: i64| -> Vec<(i64, f64)> {
            (0..500i64)
                .map(|k| (k * 60_000, 10.0 + ((k * 7919) % 5) as f64 * 0.1))
                .filter(|p| p.0 >= from && p.0 <= to)
                .collect()
        };
        // Cold: the spike right after start falls in the learning period.
        let mut b = SampleBatchBuilder::with_capacity(1);
        b.push(SeriesId(3), 500 * 60_000, 90.0);
        let batch = b.finish();
        let mut cold = DetectState::default();
        cold.process(&cfg, &batch, &catalog);
        assert!(cold.events.is_empty());
        // Warm: 500 samples of history, so the spike is an anomaly at once.
        let mut warm = DetectState::default();
        warm.process_with_history(&cfg, &batch, &catalog, &history);
        assert_eq!(warm.events.len(), 1);
    }

    #[test]
    fn a_series_with_history_is_warmed_in_the_background_and_its_spike_still_reported() {
        let catalog = SeriesCatalog::new();
        let cfg = DetectConfig {
            detector: DetectorConfig {
                learning_samples: 100,
                ..DetectorConfig::default()
            },
            ..DetectConfig::default()
        };
        let value = |k: i64| 10.0 + ((k * 7919) % 5) as f64 * 0.1;
        let mut b = SampleBatchBuilder::with_capacity(1);
        b.push(SeriesId(3), 500 * 60_000, 90.0);
        let mut st = DetectState::default();
        let no_history = |_, _, _| Vec::new();
        st.process_queued(&cfg, &b.finish(), &catalog, &no_history);
        // Scored cold at once, no event yet; queued for the warmer.
        assert!(st.events.is_empty());
        assert_eq!(st.warm_backlog(), 1);
        let reqs = st.take_warm_requests(10);
        assert_eq!(reqs.len(), 1);
        assert!(st.take_warm_requests(10).is_empty(), "one pass at a time");
        // The archive holds 500 minutes of history and the spike detection already saw.
        let scan = |wanted: &[(SeriesId, i64)], visit: &mut dyn FnMut(SeriesId, i64, f64)| {
            for &(id, from) in wanted {
                for k in 0..=500i64 {
                    let t = k * 60_000;
                    if t >= from {
                        visit(id, t, if k == 500 { 90.0 } else { value(k) });
                    }
                }
            }
        };
        let warmed = crate::warm::warm_batch(&cfg.detector, &reqs, scan);
        st.apply_warmed(&cfg, &catalog, warmed);
        assert_eq!(st.warm_backlog(), 0);
        assert_eq!(st.events.len(), 1, "{:?}", st.events);
        assert_eq!(st.events[0].start_ms, 500 * 60_000);
        assert!(!st.series[&SeriesId(3)].warming);
    }

    #[test]
    fn a_series_new_to_the_archive_starts_cold_without_reading_history() {
        let catalog = SeriesCatalog::new();
        let meta = Arc::new(SeriesMeta::new(Source::Prometheus, "up", []));
        let mut b = SampleBatchBuilder::with_capacity(1);
        b.push_series(meta.clone());
        b.push(meta.id, 60_000, 1.0);
        let mut st = DetectState::default();
        let read = std::sync::atomic::AtomicUsize::new(0);
        let history = |_, _, _| {
            read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Vec::new()
        };
        st.process_queued(&DetectConfig::default(), &b.finish(), &catalog, &history);
        st.process_with_history(
            &DetectConfig::default(),
            &SampleBatch::empty(),
            &catalog,
            &history,
        );
        assert_eq!(st.warm_backlog(), 0);
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(st.published.counters.fresh.load(Relaxed), 1);
    }

    #[test]
    fn duplicate_samples_are_not_scored_twice() {
        let catalog = SeriesCatalog::new();
        let mut st = DetectState::default();
        let mut b = SampleBatchBuilder::with_capacity(2);
        b.push(SeriesId(1), 1000, 1.0);
        b.push(SeriesId(1), 1000, 1.0);
        st.process(&DetectConfig::default(), &b.finish(), &catalog);
        assert_eq!(st.scored, 1);
    }
}

/// Runs the stage until `input` closes: scores each batch under the write lock of `state`,
/// checkpoints every `checkpoint_secs` and at the end. Blocking: give it its own thread.
/// Series written per slice of a checkpoint (between two batches).
const CHECKPOINT_SLICE: usize = 20_000;

/// Where the detection stage reads history: one series over a range (scaling targets first
/// seen), and many series in one pass (warming detectors, [`crate::warm`]).
pub struct HistoryReaders {
    /// One series, `from..=to`.
    pub series: Box<History>,
    /// Many series in one pass.
    pub scan: Box<crate::warm::HistoryScan>,
}

impl std::fmt::Debug for HistoryReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryReaders")
    }
}

/// The detection stage's thread: scores every batch from `input` in order, appends changed
/// events to the event log beside `checkpoint` and hands them to `publish`, checkpoints every
/// `checkpoint_secs`, and runs the warmer (a thread of its own) for series with history.
pub fn run(
    cfg: DetectConfig,
    input: aiops_models::queue::BatchReceiver,
    catalog: std::sync::Arc<SeriesCatalog>,
    state: std::sync::Arc<std::sync::RwLock<DetectState>>,
    checkpoint: Option<std::path::PathBuf>,
    history: HistoryReaders,
    publish: Box<dyn Fn(&AnomalyEvent) + Send>,
) {
    use aiops_models::queue::RecvError;
    use std::io::Write as _;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let HistoryReaders {
        series: history,
        scan,
    } = history;
    let mut log = checkpoint.as_ref().and_then(|p| {
        let path = p.with_file_name("events.jsonl");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "Cannot open the anomaly event log."))
            .ok()
    });
    // The warmer: one pass of history per chunk of queued series, at a bounded rate.
    let (warm_tx, warm_rx) = mpsc::sync_channel::<Vec<WarmRequest>>(1);
    let (warmed_tx, warmed_rx) = mpsc::channel::<Vec<Warmed>>();
    let warmer = {
        let (dcfg, per_sec) = (cfg.detector, cfg.warm_series_per_sec);
        std::thread::Builder::new()
            .name("aiops-warm".into())
            .spawn(move || {
                let mut limit = crate::warm::RateLimit::new(per_sec);
                for reqs in warm_rx {
                    std::thread::sleep(limit.take(reqs.len()));
                    let out = crate::warm::warm_batch(&dcfg, &reqs, &*scan);
                    if warmed_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources")
    };
    let fitter = crate::fit::Fitter::spawn();
    state
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .defer_fits();
    let every = Duration::from_secs(cfg.checkpoint_secs);
    let mut last = Instant::now();
    // A checkpoint in progress: a slice of series is written after each batch, so scoring
    // pauses for milliseconds, not for the whole state.
    let mut writing: Option<crate::checkpoint::CheckpointWriter> = None;
    loop {
        // Poll often while series are being warmed, so warmed detectors go in promptly.
        let busy = state
            .read()
            .map(|s| s.warm_backlog() > 0 || s.published.top_pending())
            .unwrap_or(false);
        let wait = if busy {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        let received = input.recv_timeout(wait);
        let changed = {
            let mut st = state.write().unwrap_or_else(|p| p.into_inner());
            st.published.counters.queue_bytes.store(
                input.queued_bytes() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            while let Ok(w) = warmed_rx.try_recv() {
                st.apply_warmed(&cfg, &catalog, w);
            }
            st.apply_fits(fitter.finished());
            match &received {
                Ok(batch) => st.process_queued(&cfg, batch, &catalog, &*history),
                Err(RecvError::Timeout) => {}
                Err(RecvError::Disconnected) => break,
            }
            let refused = fitter.submit(st.take_fit_requests());
            st.apply_fits(refused);
            let reqs = st.take_warm_requests(cfg.warm_batch);
            if !reqs.is_empty() && warm_tx.send(reqs).is_err() {
                tracing::warn!("The warmer stopped; series with history start cold.");
            }
            let changed = st.take_changed();
            if let Some(f) = log.as_mut() {
                for ev in &changed {
                    let mut line = serde_json::to_vec(ev).expect("an event always serialises");
                    line.push(b'\n');
                    if let Err(e) = f.write_all(&line) {
                        tracing::warn!(error = %e, "Cannot append to the anomaly event log.");
                    }
                }
            }
            changed
        };
        for ev in &changed {
            publish(ev);
        }
        if let Some(path) = &checkpoint {
            let st = state.read().unwrap_or_else(|p| p.into_inner());
            if writing.is_none() && last.elapsed() >= every {
                last = Instant::now();
                match crate::checkpoint::CheckpointWriter::start(&st, path) {
                    Ok(w) => writing = Some(w),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "Could not start a detector checkpoint.")
                    }
                }
            }
            if let Some(w) = writing.as_mut() {
                match w.step(&st, CHECKPOINT_SLICE) {
                    Ok(false) => {}
                    Ok(true) => {
                        let started = last;
                        match writing.take().map(|w| w.finish()) {
                            Some(Ok(n)) => tracing::debug!(
                                series = n,
                                secs = started.elapsed().as_secs_f64(),
                                "Checkpointed detector state."
                            ),
                            Some(Err(e)) => {
                                tracing::warn!(path = %path.display(), error = %e, "Could not checkpoint detector state.")
                            }
                            None => {}
                        }
                    }
                    Err(e) => {
                        writing = None;
                        tracing::warn!(path = %path.display(), error = %e, "Could not checkpoint detector state.");
                    }
                }
            }
        }
    }
    drop(warm_tx);
    let _ = warmer.join();
    fitter.stop();
    if let Some(path) = &checkpoint {
        crate::checkpoint::save(&state.read().unwrap_or_else(|p| p.into_inner()), path);
    }
    tracing::info!("Detection stage stopped.");
}

const CHECKPOINT_VERSION: u32 = 1;

#[derive(Deserialize)]
struct CheckpointIn {
    version: u32,
    state: DetectState,
}

/// Reads a checkpoint an older version wrote as JSON (see [`crate::checkpoint`] for today's).
pub fn load_json_checkpoint(path: &std::path::Path) -> DetectState {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DetectState::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot read the detector checkpoint; starting cold.");
            return DetectState::default();
        }
    };
    match serde_json::from_slice::<CheckpointIn>(&bytes) {
        Ok(c) if c.version == CHECKPOINT_VERSION => {
            tracing::info!(path = %path.display(), series = c.state.series.len(), events = c.state.events.len(), "Restored detector state (JSON checkpoint of an older version).");
            c.state
        }
        Ok(c) => {
            tracing::warn!(path = %path.display(), version = c.version, "Detector checkpoint has an incompatible version; starting cold.");
            DetectState::default()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Detector checkpoint is corrupt; starting cold.");
            DetectState::default()
        }
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;
    use aiops_models::SampleBatchBuilder;

    #[test]
    fn an_event_the_checkpoint_missed_still_closes() {
        // A crash after the event log was written and before the checkpoint: the log has an
        // open event the (cold or older) series state does not know.
        let cfg = DetectConfig {
            event_quiet_secs: 60,
            ..DetectConfig::default()
        };
        let mut st = DetectState::default();
        st.events.push(AnomalyEvent {
            id: "7-1000".into(),
            series_id: SeriesId(7),
            metric: "m".into(),
            service: None,
            labels: vec![],
            start_ms: 1000,
            peak_ms: 1000,
            last_ms: 1000,
            end_ms: None,
            score: 1.0,
            observed: 9.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            p_value: 1.0,
        });
        st.reattach_open_events();
        let mut b = SampleBatchBuilder::with_capacity(10);
        for i in 1..10 {
            b.push(SeriesId(7), 1000 + i * 10_000, 1.0);
        }
        st.process(&cfg, &b.finish(), &SeriesCatalog::new());
        assert_eq!(st.events[0].end_ms, Some(1000), "{:?}", st.events[0]);
    }

    #[test]
    fn a_partition_hands_over_its_series_and_service_models() {
        use aiops_models::{SeriesMeta, Source};
        use std::sync::Arc;
        let cfg = DetectConfig::default();
        let catalog = SeriesCatalog::new();
        let mut b = SampleBatchBuilder::with_capacity(2000);
        let mut ids = Vec::new();
        for svc in ["carts", "orders"] {
            for metric in ["latency", "errors"] {
                let m = Arc::new(SeriesMeta::new(
                    Source::Prometheus,
                    metric,
                    [("service".to_owned(), svc.to_owned())],
                ));
                catalog.insert(m.clone());
                ids.push((svc, m.id));
            }
        }
        for k in 0..200 {
            for (_, id) in &ids {
                b.push(*id, k * 60_000, 1.0 + (k % 7) as f64 * 0.1);
            }
        }
        let mut from = DetectState::default();
        from.process(&cfg, &b.finish(), &catalog);
        assert_eq!(from.services.len(), 2);
        // The partition holding "carts" (both its series and its model).
        let carts: Vec<SeriesId> = ids
            .iter()
            .filter(|(s, _)| *s == "carts")
            .map(|(_, id)| *id)
            .collect();
        let series = |id: SeriesId| carts.contains(&id);
        let service = |s: &str| s == "carts";
        let owns = Ownership {
            series: &series,
            service: &service,
        };
        let (series_st, services, events) = from.export_partition(&owns);
        assert_eq!((series_st.len(), services.len()), (2, 1));
        // The model arrives fitted, as it was.
        assert!(services[0].1.model.fitted().is_some());
        let rows = services[0].1.model.fit_data();
        let mut to = DetectState::default();
        to.import_partition(series_st, services, events);
        assert!(to.services["carts"].model.fitted().is_some());
        assert_eq!(to.services["carts"].model.fit_data(), rows);
        from.remove_partition(&owns);
        assert_eq!(
            (from.series.len(), from.services.keys().collect::<Vec<_>>()),
            (2, vec![&"orders".to_owned()])
        );
    }

    #[test]
    fn older_json_checkpoints_are_read_and_bad_ones_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("detect/checkpoint.json");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(
            &path,
            br#"{"version": 1, "state": {"series": {}, "events": []}}"#,
        )
        .expect("write");
        assert!(load_json_checkpoint(&path).series.is_empty());
        // The binary loader falls back to the JSON file beside it.
        assert!(
            crate::checkpoint::load(&path.with_extension("bin"))
                .events
                .is_empty()
        );
        std::fs::write(&path, b"{not json").expect("write");
        assert!(load_json_checkpoint(&path).series.is_empty());
        std::fs::write(
            &path,
            br#"{"version": 99, "state": {"series": {}, "events": []}}"#,
        )
        .expect("write");
        assert!(load_json_checkpoint(&path).series.is_empty());
        assert!(
            load_json_checkpoint(&dir.path().join("missing.json"))
                .series
                .is_empty()
        );
    }
}

/// Rebuilds the event list from the event log written by [`run`] (the last line of an id wins),
/// keeping the newest `max_events`. A torn last line after a crash is skipped.
pub fn load_events(path: &std::path::Path, max_events: usize) -> Vec<AnomalyEvent> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut by_id: std::collections::HashMap<String, AnomalyEvent> =
        std::collections::HashMap::new();
    for line in text.lines() {
        if let Ok(ev) = serde_json::from_str::<AnomalyEvent>(line) {
            by_id.insert(ev.id.clone(), ev);
        }
    }
    let mut events: Vec<AnomalyEvent> = by_id.into_values().collect();
    events.sort_by_key(|e| (e.start_ms, e.id.clone()));
    let drop = events.len().saturating_sub(max_events);
    events.drain(..drop);
    events
}

/// Rewrites the event log with just `events` (one line each), through a synced temporary
/// file: called at start so the log does not grow without bound.
pub fn compact_events(path: &std::path::Path, events: &[AnomalyEvent]) {
    let res = (|| -> std::io::Result<()> {
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = Vec::new();
        for e in events {
            serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        std::fs::write(&tmp, out)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "Cannot compact the anomaly event log.");
    }
}
