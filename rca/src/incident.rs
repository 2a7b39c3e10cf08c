//! The incident book: opens incidents by a configurable policy, merges what belongs together,
//! resolves them when everything clears, and records the responders' feedback. Synchronous and
//! pure but for [`IncidentBook::save`] / [`IncidentBook::load`] (one JSON file, replaced
//! atomically); the server's incident task drives it.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use aiops_models::incident::{
    AlertRef, Feedback, Incident, IncidentSource, IncidentStatus, Symptom,
};
use aiops_models::{AnomalyEvent, Selector};
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

/// What changed in the book, for the side effects (ranking, paging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new incident.
    Opened(String),
    /// An existing one gained anomalies or alerts.
    Updated(String),
    /// It resolved.
    Resolved(String),
}

/// A firing or resolved alert (from Alertmanager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInput {
    /// The alert.
    pub alert: AlertRef,
    /// Its summary annotation, if any.
    pub summary: Option<String>,
}

/// Feedback counts: where the true cause stood in our ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackTally {
    /// Feedback received.
    pub total: u64,
    /// The named service was our first candidate.
    pub top1: u64,
    /// … among our first three.
    pub top3: u64,
    /// … among our first five.
    pub top5: u64,
}

/// Every incident and the policy's memory, persisted as one JSON document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IncidentBook {
    /// Incidents, oldest first.
    pub incidents: Vec<Incident>,
    /// Recent qualifying anomalies not (yet) in an incident, for the correlation rule.
    pub pending: Vec<AnomalyEvent>,
    /// Webhook ids already handled (PagerDuty retries deliver again), newest last.
    pub seen_webhooks: VecDeque<String>,
    /// Responder feedback.
    pub feedback: FeedbackTally,
    /// Incidents opened so far (ids are unique even within one millisecond).
    pub opened: u64,
}

/// The error of a book operation a caller can fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// No such incident.
    #[error("no incident {0}")]
    NotFound(String),
    /// The request is not valid for this incident.
    #[error("{0}")]
    Invalid(String),
}

impl IncidentBook {
    /// Reads the book, or starts an empty one when the file does not exist.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the book durably: a temporary file, fsync, rename over the old one, fsync the
    /// directory. A crash leaves the old or the new book, never half of one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// One incident.
    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.incidents.iter().find(|i| i.id == id)
    }

    /// One incident, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Incident> {
        self.incidents.iter_mut().find(|i| i.id == id)
    }

    /// Remembers a webhook id; false when it was seen before.
    pub fn first_delivery(&mut self, webhook_id: &str) -> bool {
        if self.seen_webhooks.iter().any(|w| w == webhook_id) {
            return false;
        }
        if self.seen_webhooks.len() >= 10_000 {
            self.seen_webhooks.pop_front();
        }
        self.seen_webhooks.push_back(webhook_id.to_owned());
        true
    }

    fn new_incident(
        &mut self,
        source: IncidentSource,
        title: String,
        symptom: Symptom,
        now_ms: i64,
    ) -> &mut Incident {
        self.opened += 1;
        let id = format!("inc-{:x}-{}", now_ms, self.opened);
        let mut inc = Incident {
            id,
            title: title.chars().take(1024).collect(),
            status: IncidentStatus::Open,
            source,
            opened_ms: now_ms,
            updated_ms: now_ms,
            resolved_ms: None,
            last_activity_ms: symptom.detected_ms,
            services: symptom.service.iter().cloned().collect(),
            symptom,
            anomalies: Vec::new(),
            open_anomalies: Vec::new(),
            alerts: Vec::new(),
            alerts_dropped: 0,
            candidates: Vec::new(),
            ranked_ms: None,
            window_start_ms: 0,
            window_end_ms: 0,
            data_quality: Default::default(),
            timeline: Vec::new(),
            feedback: None,
            pagerduty: None,
        };
        inc.note(now_ms, "opened", inc.title.clone());
        self.incidents.push(inc);
        self.incidents.last_mut().expect("just pushed")
    }

    /// The open incident an anomaly on `service` at data time `at_ms` belongs to: open, active
    /// within the window, and (with a topology) on a connected service.
    fn matching_open(
        &self,
        service: Option<&str>,
        at_ms: i64,
        window_ms: i64,
        graph: &CallGraph,
    ) -> Option<usize> {
        self.incidents.iter().rposition(|inc| {
            inc.status == IncidentStatus::Open
                && inc.source != IncidentSource::Api
                && at_ms <= inc.last_activity_ms + window_ms
                && at_ms + window_ms >= inc.symptom.detected_ms
                && (graph.is_empty()
                    || service.is_none()
                    || inc.services.is_empty()
                    || inc.services.iter().any(|s| {
                        let svc = service.unwrap_or_default();
                        s == svc
                            || graph.reachable_from(s).contains(svc)
                            || graph.reachable_from(svc).contains(s)
                    }))
        })
    }

    /// Applies an anomaly event (new, extended or closed). `is_symptom` tells whether its
    /// series matches a symptom selector.
    pub fn on_anomaly(
        &mut self,
        cfg: &IncidentConfig,
        graph: &CallGraph,
        ev: &AnomalyEvent,
        is_symptom: bool,
        now_ms: i64,
    ) -> Vec<Change> {
        let window_ms = cfg.window_secs as i64 * 1000;
        // Already part of an incident: update it.
        if let Some(inc) = self
            .incidents
            .iter_mut()
            .rev()
            .find(|i| i.anomalies.contains(&ev.id))
        {
            inc.last_activity_ms = inc.last_activity_ms.max(ev.last_ms);
            if ev.end_ms.is_some() {
                inc.open_anomalies.retain(|a| a != &ev.id);
            } else if !inc.open_anomalies.contains(&ev.id) {
                inc.open_anomalies.push(ev.id.clone());
            }
            inc.updated_ms = now_ms;
            return vec![Change::Updated(inc.id.clone())];
        }
        if !cfg.enabled || ev.score < cfg.min_score {
            return Vec::new();
        }
        // Correlated with an open incident: merge.
        if let Some(i) = self.matching_open(ev.service.as_deref(), ev.start_ms, window_ms, graph) {
            let inc = &mut self.incidents[i];
            attach(inc, ev, cfg.max_services_per_incident, now_ms);
            return vec![Change::Updated(inc.id.clone())];
        }
        // Otherwise remember it (if it is recent), and open when the policy says so.
        if now_ms - ev.start_ms > cfg.max_age_secs as i64 * 1000 {
            return Vec::new();
        }
        self.pending
            .retain(|p| p.id != ev.id && p.start_ms + window_ms >= ev.start_ms);
        self.pending.push(ev.clone());
        let services: BTreeSet<String> = self
            .pending
            .iter()
            .filter_map(|p| p.service.clone())
            .collect();
        if !(is_symptom || services.len() >= cfg.min_services) {
            return Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        // The symptom: the matching series; else, with a topology, the strongest anomaly of a
        // service no other anomalous service calls (the user-facing end); else the strongest.
        let upstream = |p: &&AnomalyEvent| {
            let svc = p.service.as_deref().unwrap_or_default();
            !pending.iter().any(|o| {
                o.service
                    .as_deref()
                    .is_some_and(|os| os != svc && graph.reachable_from(os).contains(svc))
            })
        };
        let strongest = |a: &&AnomalyEvent, b: &&AnomalyEvent| a.score.total_cmp(&b.score);
        let sym = if is_symptom {
            ev.clone()
        } else {
            pending
                .iter()
                .filter(upstream)
                .max_by(strongest)
                .or_else(|| pending.iter().max_by(strongest))
                .expect("pending holds ev")
                .clone()
        };
        let title = if is_symptom {
            format!(
                "Anomaly on {} ({})",
                sym.service.as_deref().unwrap_or("unknown service"),
                sym.metric
            )
        } else {
            format!(
                "Correlated anomalies on {} services: {}",
                services.len(),
                services.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        let detected = pending
            .iter()
            .map(|p| p.start_ms)
            .min()
            .unwrap_or(ev.start_ms);
        let inc = self.new_incident(
            IncidentSource::Detector,
            title,
            Symptom {
                service: sym.service.clone(),
                metric: Some(sym.metric.clone()),
                series: Some(series_text(&sym)),
                detected_ms: detected,
            },
            now_ms,
        );
        for p in &pending {
            attach(inc, p, cfg.max_services_per_incident, now_ms);
        }
        let id = inc.id.clone();
        self.prune(cfg);
        vec![Change::Opened(id)]
    }

    /// Applies an alert: a firing one opens an incident or enriches the open one of its service
    /// (or fingerprint); a resolved one is marked, and resolves its incident when it was the
    /// last thing keeping it open.
    pub fn on_alert(
        &mut self,
        cfg: &IncidentConfig,
        graph: &CallGraph,
        input: &AlertInput,
        now_ms: i64,
    ) -> Vec<Change> {
        let a = &input.alert;
        let service = alert_service(&a.labels);
        let known = self.incidents.iter().rposition(|i| {
            i.status == IncidentStatus::Open
                && i.alerts.iter().any(|x| x.fingerprint == a.fingerprint)
        });
        if a.status == "resolved" {
            let Some(i) = known else {
                return Vec::new();
            };
            let inc = &mut self.incidents[i];
            if let Some(x) = inc
                .alerts
                .iter_mut()
                .find(|x| x.fingerprint == a.fingerprint)
            {
                x.status = "resolved".into();
                x.ends_ms = a.ends_ms.or(Some(now_ms));
            }
            inc.last_activity_ms = inc.last_activity_ms.max(a.ends_ms.unwrap_or(now_ms));
            inc.note(now_ms, "alert", format!("Alert {} resolved.", a.name));
            let id = inc.id.clone();
            // Alert-opened incidents close with their last alert; others wait for their
            // anomalies too.
            if inc.alerts.iter().all(|x| x.status == "resolved") && inc.open_anomalies.is_empty() {
                inc.status = IncidentStatus::Resolved;
                inc.resolved_ms = Some(now_ms);
                inc.note(
                    now_ms,
                    "resolved",
                    "All alerts resolved and no anomaly is open.",
                );
                return vec![Change::Resolved(id)];
            }
            return vec![Change::Updated(id)];
        }
        let window_ms = cfg.window_secs as i64 * 1000;
        let target =
            known.or_else(|| self.matching_open(service.as_deref(), a.starts_ms, window_ms, graph));
        let text = format!(
            "Alert {} firing{}{}.",
            a.name,
            service
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default(),
            input
                .summary
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
        if let Some(i) = target {
            let inc = &mut self.incidents[i];
            if let Some(x) = inc
                .alerts
                .iter_mut()
                .find(|x| x.fingerprint == a.fingerprint)
            {
                x.status = "firing".into();
                return vec![Change::Updated(inc.id.clone())];
            }
            if inc.alerts.len() >= cfg.max_alerts_per_incident {
                inc.alerts_dropped += 1;
                if inc.alerts_dropped == 1 {
                    inc.note(
                        now_ms,
                        "limit",
                        format!(
                            "More than {} alerts: further ones are not kept (incidents.max_alerts_per_incident).",
                            cfg.max_alerts_per_incident
                        ),
                    );
                }
                return vec![Change::Updated(inc.id.clone())];
            }
            inc.alerts.push(a.clone());
            if let Some(s) = &service
                && !inc.services.contains(s)
                && inc.services.len() < cfg.max_services_per_incident
            {
                inc.services.push(s.clone());
            }
            inc.last_activity_ms = inc.last_activity_ms.max(a.starts_ms);
            inc.note(now_ms, "alert", text);
            return vec![Change::Updated(inc.id.clone())];
        }
        let title = input.summary.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                a.name,
                service
                    .as_deref()
                    .map(|s| format!(" on {s}"))
                    .unwrap_or_default()
            )
        });
        let inc = self.new_incident(
            IncidentSource::Alertmanager,
            title,
            Symptom {
                service,
                metric: None,
                series: None,
                detected_ms: a.starts_ms,
            },
            now_ms,
        );
        inc.alerts.push(a.clone());
        inc.note(now_ms, "alert", text);
        let id = inc.id.clone();
        self.prune(cfg);
        vec![Change::Opened(id)]
    }

    /// Opens an incident from outside (on-demand analysis, a PagerDuty incident).
    pub fn open_external(
        &mut self,
        cfg: &IncidentConfig,
        source: IncidentSource,
        title: String,
        symptom: Symptom,
        now_ms: i64,
    ) -> String {
        let inc = self.new_incident(source, title, symptom, now_ms);
        let id = inc.id.clone();
        self.prune(cfg);
        id
    }

    /// Whether [`IncidentBook::tick`] would resolve anything now (a look, no change): the
    /// book is saved only when it would.
    pub fn tick_due(&self, cfg: &IncidentConfig, data_now_ms: i64) -> bool {
        self.incidents
            .iter()
            .any(|inc| Self::quiet(inc, cfg, data_now_ms))
    }

    fn quiet(inc: &Incident, cfg: &IncidentConfig, data_now_ms: i64) -> bool {
        inc.status == IncidentStatus::Open
            && inc.source != IncidentSource::Pagerduty
            && inc.open_anomalies.is_empty()
            && inc.alerts.iter().all(|a| a.status == "resolved")
            && data_now_ms >= inc.last_activity_ms + cfg.resolve_quiet_secs as i64 * 1000
    }

    /// Resolves incidents whose anomalies closed and alerts resolved, quiet for
    /// `resolve_quiet_secs` of data time (`data_now_ms`: the newest data seen).
    pub fn tick(&mut self, cfg: &IncidentConfig, data_now_ms: i64, now_ms: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for inc in &mut self.incidents {
            if Self::quiet(inc, cfg, data_now_ms) {
                inc.status = IncidentStatus::Resolved;
                inc.resolved_ms = Some(now_ms);
                inc.note(
                    now_ms,
                    "resolved",
                    format!("Anomalies cleared; quiet for {} s.", cfg.resolve_quiet_secs),
                );
                out.push(Change::Resolved(inc.id.clone()));
            }
        }
        out
    }

    /// Records the responder's verdict and counts it in the accuracy tally (once per incident:
    /// a second verdict replaces the first in the record, not in the counts).
    pub fn feedback(
        &mut self,
        id: &str,
        service: String,
        metric: Option<String>,
        comment: Option<String>,
        now_ms: i64,
    ) -> Result<Feedback, BookError> {
        if service.trim().is_empty() {
            return Err(BookError::Invalid("`service` must not be empty".into()));
        }
        let inc = self
            .incidents
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| BookError::NotFound(id.to_owned()))?;
        let first = inc.feedback.is_none();
        let rank = inc.rank_of(&service);
        let fb = Feedback {
            service,
            metric,
            comment,
            rank,
            at_ms: now_ms,
        };
        inc.note(
            now_ms,
            "feedback",
            format!(
                "Responder named {} as the root cause ({}).",
                fb.service,
                rank.map_or_else(
                    || "not among our candidates".to_owned(),
                    |r| format!("our rank {r}")
                )
            ),
        );
        inc.feedback = Some(fb.clone());
        if first {
            self.feedback.total += 1;
            let r = rank.unwrap_or(usize::MAX);
            self.feedback.top1 += u64::from(r <= 1);
            self.feedback.top3 += u64::from(r <= 3);
            self.feedback.top5 += u64::from(r <= 5);
        }
        Ok(fb)
    }

    /// Drops the oldest resolved incidents beyond `max_incidents`.
    fn prune(&mut self, cfg: &IncidentConfig) {
        while self.incidents.len() > cfg.max_incidents {
            match self
                .incidents
                .iter()
                .position(|i| i.status == IncidentStatus::Resolved)
            {
                Some(i) => {
                    self.incidents.remove(i);
                }
                None => break,
            }
        }
    }
}

fn attach(inc: &mut Incident, ev: &AnomalyEvent, max_services: usize, now_ms: i64) {
    if inc.anomalies.contains(&ev.id) {
        return;
    }
    inc.anomalies.push(ev.id.clone());
    if ev.end_ms.is_none() {
        inc.open_anomalies.push(ev.id.clone());
    }
    if let Some(s) = &ev.service
        && !inc.services.contains(s)
        && inc.services.len() < max_services
    {
        inc.services.push(s.clone());
    }
    inc.last_activity_ms = inc.last_activity_ms.max(ev.last_ms);
    inc.symptom.detected_ms = inc.symptom.detected_ms.min(ev.start_ms);
    inc.note(
        now_ms,
        "anomaly",
        format!(
            "{} anomalous from {} (score {:.2}; observed {:.4} vs expected {:.4}).",
            series_text(ev),
            ev.start_ms,
            ev.score,
            ev.observed,
            ev.expected
        ),
    );
}

fn series_text(ev: &AnomalyEvent) -> String {
    let labels: Vec<String> = ev
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{}{{{}}}", ev.metric, labels.join(","))
}

/// The service an alert is about: its `service`, `app`, `job` or `cloud_role_name` label.
pub fn alert_service(labels: &[(String, String)]) -> Option<String> {
    ["service", "app", "cloud_role_name", "job"]
        .iter()
        .find_map(|k| labels.iter().find(|(n, _)| n == k))
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::SeriesId;

    fn ev(id: &str, service: &str, start_ms: i64, end_ms: Option<i64>) -> AnomalyEvent {
        AnomalyEvent {
            id: id.into(),
            series_id: SeriesId(1),
            metric: "latency_seconds".into(),
            service: Some(service.into()),
            labels: vec![("service".into(), service.into())],
            start_ms,
            peak_ms: start_ms,
            last_ms: start_ms + 10_000,
            end_ms,
            score: 0.9,
            observed: 2.0,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            p_value: 1.0,
        }
    }

    #[test]
    fn correlated_anomalies_open_one_incident_that_merges_and_resolves() {
        let cfg = IncidentConfig::default();
        let g = CallGraph::default();
        let mut b = IncidentBook::default();
        // One service alone: pending, no incident (min_services 2).
        assert!(
            b.on_anomaly(&cfg, &g, &ev("a", "carts", 0, None), false, 1)
                .is_empty()
        );
        // A second service within the window: one incident with both.
        let c = b.on_anomaly(&cfg, &g, &ev("b", "frontend", 20_000, None), false, 2);
        let Change::Opened(id) = &c[0] else {
            panic!("{c:?}")
        };
        let inc = b.get(id).expect("opened");
        assert_eq!(inc.anomalies, ["a", "b"]);
        assert_eq!(inc.symptom.detected_ms, 0);
        // A third, later but within the window: merged, not a new incident.
        let c = b.on_anomaly(&cfg, &g, &ev("c", "orders", 200_000, None), false, 3);
        assert_eq!(c, [Change::Updated(id.clone())]);
        assert_eq!(b.incidents.len(), 1);
        // The same event again (extended): still the same incident, no duplicate.
        b.on_anomaly(&cfg, &g, &ev("c", "orders", 200_000, None), false, 4);
        assert_eq!(b.get(id).expect("kept").anomalies.len(), 3);
        // Not resolved while anomalies are open.
        assert!(b.tick(&cfg, 10_000_000, 5).is_empty());
        for x in ["a", "b", "c"] {
            let mut e = ev(x, "carts", 0, Some(210_000));
            e.last_ms = 210_000;
            b.on_anomaly(&cfg, &g, &e, false, 6);
        }
        // Closed, but not quiet long enough yet.
        assert!(b.tick(&cfg, 300_000, 7).is_empty());
        assert_eq!(b.tick(&cfg, 600_000, 8), [Change::Resolved(id.clone())]);
        // Survives a save and load.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("incidents.json");
        b.save(&path).expect("saved");
        let back = IncidentBook::load(&path).expect("loaded");
        assert_eq!(back.incidents, b.incidents);
        assert!(
            IncidentBook::load(&dir.path().join("none.json"))
                .expect("empty")
                .incidents
                .is_empty()
        );
    }

    #[test]
    fn a_symptom_opens_alone_and_the_topology_keeps_unrelated_services_apart() {
        let cfg = IncidentConfig {
            topology: vec![Edge {
                caller: "frontend".into(),
                callee: "carts".into(),
            }],
            ..IncidentConfig::default()
        };
        let g = cfg.graph();
        let mut b = IncidentBook::default();
        let c = b.on_anomaly(&cfg, &g, &ev("a", "frontend", 0, None), true, 1);
        assert!(matches!(c[0], Change::Opened(_)));
        // carts is called by frontend: merged; billing is not connected: kept out.
        assert!(matches!(
            b.on_anomaly(&cfg, &g, &ev("b", "carts", 1000, None), false, 2)[0],
            Change::Updated(_)
        ));
        assert!(
            b.on_anomaly(&cfg, &g, &ev("c", "billing", 1000, None), false, 3)
                .is_empty()
        );
        assert_eq!(b.incidents.len(), 1);
        // Correlated anomalies: the symptom is the caller, even when the callee scores higher.
        let mut b = IncidentBook::default();
        let mut strong = ev("x", "carts", 0, None);
        strong.score = 0.99;
        b.on_anomaly(&cfg, &g, &strong, false, 1);
        b.on_anomaly(&cfg, &g, &ev("y", "frontend", 0, None), false, 2);
        assert_eq!(b.incidents[0].symptom.service.as_deref(), Some("frontend"));
        // History (an anomaly an hour old when it arrives) is not paged.
        let mut b = IncidentBook::default();
        assert!(
            b.on_anomaly(&cfg, &g, &ev("old", "frontend", 0, None), true, 3_600_000)
                .is_empty()
        );
        assert!(b.incidents.is_empty());
    }

    #[test]
    fn alerts_open_enrich_and_resolve_and_feedback_is_counted_once() {
        let cfg = IncidentConfig::default();
        let g = CallGraph::default();
        let mut b = IncidentBook::default();
        let alert = |fp: &str, status: &str| AlertInput {
            alert: AlertRef {
                fingerprint: fp.into(),
                name: "HighLatency".into(),
                status: status.into(),
                labels: vec![("service".into(), "api".into())],
                starts_ms: 1000,
                ends_ms: None,
            },
            summary: Some("p99 above SLO".into()),
        };
        let Change::Opened(id) = b.on_alert(&cfg, &g, &alert("f1", "firing"), 1)[0].clone() else {
            panic!()
        };
        assert_eq!(b.get(&id).expect("open").title, "p99 above SLO");
        // A second alert of the same service enriches; a repeat of the first changes nothing.
        b.on_alert(&cfg, &g, &alert("f2", "firing"), 2);
        b.on_alert(&cfg, &g, &alert("f1", "firing"), 3);
        assert_eq!(b.get(&id).expect("open").alerts.len(), 2);
        assert_eq!(
            b.on_alert(&cfg, &g, &alert("f1", "resolved"), 4),
            [Change::Updated(id.clone())]
        );
        assert_eq!(
            b.on_alert(&cfg, &g, &alert("f2", "resolved"), 5),
            [Change::Resolved(id.clone())]
        );
        // Feedback: unknown incident, empty service, then counted once.
        assert!(matches!(
            b.feedback("nope", "x".into(), None, None, 6),
            Err(BookError::NotFound(_))
        ));
        assert!(matches!(
            b.feedback(&id, " ".into(), None, None, 6),
            Err(BookError::Invalid(_))
        ));
        b.feedback(&id, "api".into(), None, None, 7)
            .expect("recorded");
        b.feedback(&id, "db".into(), None, None, 8)
            .expect("replaced");
        assert_eq!(b.feedback.total, 1);
        assert_eq!(
            b.get(&id)
                .and_then(|i| i.feedback.as_ref())
                .map(|f| f.service.as_str()),
            Some("db")
        );
        assert!(b.first_delivery("w1") && !b.first_delivery("w1"));
    }
}
