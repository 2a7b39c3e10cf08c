//! `[incidents]`: when incidents open, merge and resolve, and how they are analysed.

use aiops_models::Selector;
use serde::{Deserialize, Serialize};

use crate::{CallGraph, Edge};

/// `[incidents]`: when incidents open, merge and resolve, and how they are analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// Open incidents at all (alerts and on-demand analyses work either way).
    pub enabled: bool,
    /// Selectors of symptom series (e.g. `http_request_duration_seconds{service="frontend"}`):
    /// one anomaly on a matching series opens an incident.
    pub symptoms: Vec<String>,
    /// Anomalies on this many different services within `window_secs` open an incident
    /// (correlated anomalies). 1 opens one for every anomaly.
    pub min_services: usize,
    /// Anomalies this close in time (seconds, by data time) are correlated and merge into one
    /// incident.
    pub window_secs: u64,
    /// Anomaly events below this score are ignored.
    pub min_score: f64,
    /// Anomalies that started longer ago than this (seconds, wall clock) open no incident:
    /// backfilled or replayed history is not paged. They still merge into an open incident.
    pub max_age_secs: u64,
    /// An incident resolves once all its anomalies closed and alerts resolved, and nothing new
    /// came for this long (seconds, by data time).
    pub resolve_quiet_secs: u64,
    /// Open incidents are re-ranked this often (seconds) as data arrives.
    pub rerank_secs: u64,
    /// The normal window before the detection time the analysis reads (seconds).
    pub lookback_secs: u64,
    /// At most this many series are read per analysis.
    pub max_series: usize,
    /// Candidates kept per incident.
    pub max_candidates: usize,
    /// Incidents kept (the oldest resolved ones go first).
    pub max_incidents: usize,
    /// Alerts in one Alertmanager notification (more: `413`; Alertmanager's `max_alerts`).
    pub max_alerts_per_request: usize,
    /// Alerts one incident keeps; further new alerts are counted in a note, not kept.
    pub max_alerts_per_incident: usize,
    /// Services one incident lists; further services are left out of it.
    pub max_services_per_incident: usize,
    /// Longest window one analysis reads (seconds): on-demand analyses asking for more get
    /// `422`; the re-ranking of a long-open incident reads from its detection time up to this.
    pub max_window_secs: u64,
    /// On-demand analyses (`POST /api/v1/incidents`) per caller per minute (0: no limit).
    pub max_analyses_per_minute: u32,
    /// Known call edges (caller → callee). Learned edges from mesh metrics are added when
    /// `learn_topology` is on.
    pub topology: Vec<Edge>,
    /// Learn call edges from series labelled with both ends of a call (Istio's
    /// `source_workload`/`destination_workload`, Linkerd, OpenTelemetry service graphs).
    pub learn_topology: bool,
    /// PagerDuty out (Events API v2) and in (webhooks v3).
    pub pagerduty: crate::pagerduty::PagerdutyConfig,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            symptoms: Vec::new(),
            min_services: 2,
            window_secs: 300,
            min_score: 0.5,
            max_age_secs: 900,
            resolve_quiet_secs: 300,
            rerank_secs: 30,
            lookback_secs: 3600,
            max_series: 5000,
            max_candidates: 10,
            max_incidents: 1000,
            max_alerts_per_request: 1000,
            max_alerts_per_incident: 1000,
            max_services_per_incident: 50,
            max_window_secs: 6 * 3600,
            max_analyses_per_minute: 6,
            topology: Vec::new(),
            learn_topology: true,
            pagerduty: Default::default(),
        }
    }
}

impl IncidentConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        for (i, s) in self.symptoms.iter().enumerate() {
            if let Err(e) = s.parse::<Selector>() {
                problems.push(format!("{prefix}.symptoms[{i}] = {s:?}: {e}"));
            }
        }
        if self.min_services == 0 {
            problems.push(format!("{prefix}.min_services: must be at least 1"));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            problems.push(format!(
                "{prefix}.window_secs = {}: must be between 1 and 86400",
                self.window_secs
            ));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            problems.push(format!(
                "{prefix}.min_score = {}: must be between 0 and 1",
                self.min_score
            ));
        }
        if self.max_age_secs == 0 {
            problems.push(format!("{prefix}.max_age_secs: must be at least 1"));
        }
        if !(1..=3600).contains(&self.rerank_secs) {
            problems.push(format!(
                "{prefix}.rerank_secs = {}: must be between 1 and 3600",
                self.rerank_secs
            ));
        }
        if self.max_window_secs <= self.lookback_secs || self.max_window_secs > 31 * 86_400 {
            problems.push(format!(
                "{prefix}.max_window_secs = {}: must be over lookback_secs ({}) and at most 2678400",
                self.max_window_secs, self.lookback_secs
            ));
        }
        if !(60..=30 * 86_400).contains(&self.lookback_secs) {
            problems.push(format!(
                "{prefix}.lookback_secs = {}: must be between 60 and 2592000",
                self.lookback_secs
            ));
        }
        self.pagerduty
            .validate(&format!("{prefix}.pagerduty"), problems);
        for (key, v) in [
            ("max_series", self.max_series),
            ("max_candidates", self.max_candidates),
            ("max_incidents", self.max_incidents),
            ("max_alerts_per_request", self.max_alerts_per_request),
            ("max_alerts_per_incident", self.max_alerts_per_incident),
            ("max_services_per_incident", self.max_services_per_incident),
        ] {
            if v == 0 {
                problems.push(format!("{prefix}.{key}: must be at least 1"));
            }
        }
    }

    /// The configured topology as a graph.
    pub fn graph(&self) -> CallGraph {
        CallGraph::new(self.topology.iter().cloned())
    }
}
