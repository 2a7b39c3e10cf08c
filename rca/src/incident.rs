//! The incident book: opens incidents by a configurable policy, merges what belongs together,
//! resolves them when everything clears, and records the responders' feedback. Synchronous and
//! pure but for [`IncidentBook::save`] / [`IncidentBook::load`] (one JSON file, replaced
//! atomically); the server's incident task drives it.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use aiops_models::AnomalyEvent;
use aiops_models::incident::{
    AlertRef, Feedback, Incident, IncidentSource, IncidentStatus, Symptom,
};
use serde::{Deserialize, Serialize};

use crate::CallGraph;

mod config;

pub use config::IncidentConfig;

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
            inc.touch(now_ms);
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
            "{} anomalous from {} ({}score {:.2}; observed {:.4} vs expected {:.4}).",
            series_text(ev),
            ev.start_ms,
            ev.reason
                .map_or(String::new(), |r| format!("{}; ", r.describe())),
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
mod tests;
