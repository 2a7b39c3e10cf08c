//! Incidents: what a responder is paged for. An incident names its symptom (the anomaly or alert
//! that opened it), keeps a timeline, and carries ranked root-cause candidates with the evidence
//! behind each (rca.md §6), re-ranked as data arrives.

use serde::{Deserialize, Serialize};

/// Open until its anomalies and alerts clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Something is still anomalous or firing.
    Open,
    /// Everything cleared.
    Resolved,
}

/// What opened the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSource {
    /// Our own anomaly events, by the incident policy.
    Detector,
    /// A firing Alertmanager alert.
    Alertmanager,
    /// A PagerDuty incident (webhook).
    Pagerduty,
    /// `POST /api/v1/incidents`: an analysis asked for on demand.
    Api,
}

/// What is visibly wrong: the symptom, as opposed to its causes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Symptom {
    /// The affected service, when known.
    pub service: Option<String>,
    /// The metric (name) that showed it.
    pub metric: Option<String>,
    /// The series, as a selector string (`metric{label="v"}`), when one series showed it.
    pub series: Option<String>,
    /// When it was detected (Unix ms): the analysis compares before and after this time.
    pub detected_ms: i64,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened (Unix ms).
    pub at_ms: i64,
    /// `opened`, `anomaly`, `alert`, `ranked`, `feedback`, `pagerduty`, `resolved`, …
    pub kind: String,
    /// One line for a person.
    pub text: String,
}

/// One ranked root-cause candidate: an entity (service) with its strongest metric as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 1 = most likely.
    pub rank: usize,
    /// The service.
    pub service: String,
    /// The metric (series) that shows the change.
    pub metric: String,
    /// Robust change score: the move after the detection time in spreads of the normal window.
    #[serde(with = "crate::json_f64")]
    pub score: f64,
    /// Probability that this is the root cause: its share of `1 + score` among the first five
    /// candidates, fitted to nothing (see `aiops_rca::analyse::confidences`).
    #[serde(with = "crate::json_f64")]
    pub confidence: f64,
    /// `up` or `down`.
    pub direction: String,
    /// When the metric first moved past the threshold (Unix ms); can precede detection.
    pub onset_ms: i64,
    /// The value at the peak of the move.
    #[serde(with = "crate::json_f64")]
    pub peak: f64,
    /// When the peak was (Unix ms).
    pub peak_ms: i64,
    /// Median of the normal window.
    #[serde(with = "crate::json_f64")]
    pub baseline: f64,
    /// The spread the score is measured in.
    #[serde(with = "crate::json_f64")]
    pub spread: f64,
    /// The call path from the symptom to this service, when the topology knows one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// How it was ranked (`robust_scorer`, `robust_scorer+topology`).
    pub method: String,
    /// What kind of fault its metrics look like: `cpu`, `memory`, `latency`, `errors`,
    /// `overload` or `unknown` (from the metrics' names and moves; empty in incidents written
    /// before it existed).
    #[serde(default)]
    pub fault_kind: String,
    /// The service's other metrics that moved (strongest first), to check in seconds.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// One sentence a responder can check.
    pub explanation: String,
}

/// One metric's change behind a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The series.
    pub metric: String,
    /// Its move in spreads of its normal window.
    #[serde(with = "crate::json_f64")]
    pub score: f64,
    /// `up` or `down`.
    pub direction: String,
    /// First past the threshold (Unix ms).
    pub onset_ms: i64,
    /// Median of the normal window.
    #[serde(with = "crate::json_f64")]
    pub baseline: f64,
    /// The value at the peak.
    #[serde(with = "crate::json_f64")]
    pub peak: f64,
    /// When (Unix ms).
    pub peak_ms: i64,
}

/// A firing (or resolved) alert attached to an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRef {
    /// Alertmanager's fingerprint of the label set.
    pub fingerprint: String,
    /// `alertname` label.
    pub name: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// When it started (Unix ms).
    pub starts_ms: i64,
    /// When it ended (Unix ms), once resolved.
    pub ends_ms: Option<i64>,
}

/// What the responder said the root cause was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The true root-cause service.
    pub service: String,
    /// The true root-cause metric, if named.
    pub metric: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Where that service stood in our ranking when the feedback came (1 = first), if at all.
    pub rank: Option<usize>,
    /// When it was given (Unix ms).
    pub at_ms: i64,
}

/// The PagerDuty incident this one is linked to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagerdutyRef {
    /// PagerDuty's incident id.
    pub incident_id: String,
    /// Its web page.
    pub html_url: Option<String>,
}

/// How much of the data the analysis could use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataQuality {
    /// Series read for the analysis.
    pub series: usize,
    /// Of those, series without samples on one side of the detection time.
    pub without_data: usize,
    /// Series left out because the analysis reads at most this many.
    pub truncated: usize,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (`inc-…`); also the PagerDuty `dedup_key`.
    pub id: String,
    /// One line.
    pub title: String,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// What opened it.
    pub source: IncidentSource,
    /// Opened (Unix ms, wall clock).
    pub opened_ms: i64,
    /// Last change (Unix ms, wall clock): strictly increasing with every change, even two in
    /// one millisecond, since the newest state of an incident — what is published, and what
    /// a mirror keeps — is the one with the largest.
    pub updated_ms: i64,
    /// Resolved (Unix ms).
    pub resolved_ms: Option<i64>,
    /// The symptom.
    pub symptom: Symptom,
    /// Services with anomalies or alerts in this incident.
    pub services: Vec<String>,
    /// Anomaly event ids merged into it.
    pub anomalies: Vec<String>,
    /// Open anomaly events (ids) that keep it open.
    pub open_anomalies: Vec<String>,
    /// Latest data time seen from its anomalies and alerts (Unix ms).
    pub last_activity_ms: i64,
    /// Alerts merged into it.
    pub alerts: Vec<AlertRef>,
    /// Alerts not kept because the incident had `incidents.max_alerts_per_incident` already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub alerts_dropped: u64,
    /// Ranked root-cause candidates, best first.
    pub candidates: Vec<Candidate>,
    /// When they were last ranked (Unix ms), if ever.
    pub ranked_ms: Option<i64>,
    /// The window the last ranking read: start (Unix ms).
    pub window_start_ms: i64,
    /// The window the last ranking read: end (Unix ms).
    pub window_end_ms: i64,
    /// What the last ranking could read.
    pub data_quality: DataQuality,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The responder's verdict, once given.
    pub feedback: Option<Feedback>,
    /// The linked PagerDuty incident, if any.
    pub pagerduty: Option<PagerdutyRef>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Incident {
    /// Appends to the timeline (bounded: the oldest entries after the first go first).
    pub fn note(&mut self, at_ms: i64, kind: &str, text: impl Into<String>) {
        const MAX: usize = 200;
        if self.timeline.len() >= MAX {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry {
            at_ms,
            kind: kind.to_owned(),
            text: text.into(),
        });
        self.touch(at_ms);
    }

    /// Marks a change at `at_ms`: `updated_ms` becomes that, or one more than before when that
    /// is not later. Two services added in the same millisecond used to leave it unchanged,
    /// and the second was never published: a mirror kept the incident without it.
    pub fn touch(&mut self, at_ms: i64) {
        self.updated_ms = at_ms.max(self.updated_ms.saturating_add(1));
    }

    /// Where `service` stands among the candidates (1 = first).
    pub fn rank_of(&self, service: &str) -> Option<usize> {
        self.candidates
            .iter()
            .find(|c| c.service == service)
            .map(|c| c.rank)
    }
}
