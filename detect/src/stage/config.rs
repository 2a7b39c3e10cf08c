//! The detection stage's options: scoring parameters, per-selector sensitivity, services,
//! warming and checkpoints, and their validation.

use super::*;

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
        if !(d.profile_drift_min_ratio >= 1.0 && d.profile_drift_min_ratio <= 1000.0) {
            problems.push(format!(
                "{prefix}.detector.profile_drift_min_ratio = {}: how far from the day's shape a \
                 departure must be (a ratio), must be between 1 and 1000",
                d.profile_drift_min_ratio
            ));
        }
        if !(0.0..=365.0).contains(&d.young_days) {
            problems.push(format!(
                "{prefix}.detector.young_days = {}: days a new series alarms only by its range's \
                 tail, must be between 0 (off) and 365",
                d.young_days
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
