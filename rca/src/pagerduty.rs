//! PagerDuty, the pure parts (protocols.md §4): Events API v2 messages for an incident, the
//! note with our candidates, webhook v3 payloads and their signatures. The HTTP side (durable
//! outbox, retries, the webhook route) lives in `aiops-api`.

use aiops_models::Secret;
use aiops_models::incident::{Incident, IncidentStatus};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

/// `[incidents.pagerduty]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerdutyConfig {
    /// Events API v2 integration (routing) key: incidents trigger and resolve PagerDuty alerts.
    /// Unset: nothing is sent. (`AIOPS__INCIDENTS__PAGERDUTY__ROUTING_KEY`.)
    pub routing_key: Option<Secret>,
    /// Events API endpoint (EU accounts: `https://events.eu.pagerduty.com/v2/enqueue`).
    pub events_url: String,
    /// REST API base (EU: `https://api.eu.pagerduty.com`), for incident notes.
    pub api_url: String,
    /// REST API token: with it, a triggered PagerDuty incident gets our candidates as a note.
    pub api_token: Option<Secret>,
    /// `From:` address for REST calls (a PagerDuty user's e-mail; required by account tokens).
    pub from_email: Option<String>,
    /// Webhook v3 signing secrets (several during a rotation). Empty: the webhook route is off.
    pub webhook_secrets: Vec<Secret>,
    /// Severity of triggered alerts: `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// How aiops is reached by people (links in alerts and notes), e.g.
    /// `https://aiops.example.internal`.
    pub public_url: String,
    /// Candidates sent in `custom_details` and notes.
    pub top: usize,
    /// A PagerDuty service (its id or its name) → our service name, for incidents PagerDuty
    /// tells us about; unmapped services are taken by name.
    pub services: std::collections::BTreeMap<String, String>,
    /// Longest wait between retries of a failed delivery (seconds).
    pub max_backoff_secs: u64,
}

impl Default for PagerdutyConfig {
    fn default() -> Self {
        Self {
            routing_key: None,
            events_url: "https://events.pagerduty.com/v2/enqueue".into(),
            api_url: "https://api.pagerduty.com".into(),
            api_token: None,
            from_email: None,
            webhook_secrets: Vec::new(),
            severity: "error".into(),
            public_url: "http://127.0.0.1:9201".into(),
            top: 3,
            services: Default::default(),
            max_backoff_secs: 300,
        }
    }
}

impl PagerdutyConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if let Some(k) = self.routing_key.as_ref().map(Secret::expose)
            && (k.len() != 32 || !k.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            problems.push(format!(
                "{prefix}.routing_key: must be the 32-character integration key"
            ));
        }
        if !["critical", "error", "warning", "info"].contains(&self.severity.as_str()) {
            problems.push(format!(
                "{prefix}.severity = {:?}: must be critical, error, warning or info",
                self.severity
            ));
        }
        for (key, url) in [
            ("events_url", &self.events_url),
            ("api_url", &self.api_url),
            ("public_url", &self.public_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("{prefix}.{key} = {url:?}: must be an http(s) URL"));
            }
        }
        if self.api_token.is_some() && self.from_email.is_none() {
            problems.push(format!(
                "{prefix}.from_email: needed with api_token (PagerDuty's REST API wants a From: user)"
            ));
        }
        if self.webhook_secrets.iter().any(|s| s.expose().is_empty()) {
            problems.push(format!(
                "{prefix}.webhook_secrets: a secret must not be empty"
            ));
        }
        if !(1..=20).contains(&self.top) {
            problems.push(format!(
                "{prefix}.top = {}: must be between 1 and 20",
                self.top
            ));
        }
        if !(1..=3600).contains(&self.max_backoff_secs) {
            problems.push(format!(
                "{prefix}.max_backoff_secs = {}: must be between 1 and 3600",
                self.max_backoff_secs
            ));
        }
    }

    fn link(&self, inc: &Incident) -> String {
        format!(
            "{}/api/v1/incidents/{}",
            self.public_url.trim_end_matches('/'),
            inc.id
        )
    }
}

/// The Events API v2 message for an incident's state: `trigger` while open (a re-trigger with
/// the same `dedup_key` updates the alert), `resolve` once resolved. `None` without a routing key.
pub fn event_for(cfg: &PagerdutyConfig, inc: &Incident) -> Option<serde_json::Value> {
    let key = cfg.routing_key.as_ref()?.expose();
    if inc.status == IncidentStatus::Resolved {
        return Some(json!({
            "routing_key": key,
            "event_action": "resolve",
            "dedup_key": inc.id,
        }));
    }
    let top: Vec<serde_json::Value> = inc
        .candidates
        .iter()
        .take(cfg.top)
        .map(|c| {
            json!({
                "rank": c.rank,
                "service": c.service,
                "metric": c.metric,
                "confidence": (c.confidence * 100.0).round() / 100.0,
                "direction": c.direction,
                "explanation": c.explanation,
            })
        })
        .collect();
    let mut summary = match inc.candidates.first() {
        Some(c) => format!("{} — likely cause: {} ({})", inc.title, c.service, c.metric),
        None => inc.title.clone(),
    };
    if summary.chars().count() > 1024 {
        summary = summary.chars().take(1021).collect::<String>() + "...";
    }
    let timestamp = jiff::Timestamp::from_millisecond(inc.symptom.detected_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Some(json!({
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": inc.id,
        "payload": {
            "summary": summary,
            "source": inc.symptom.service.clone().unwrap_or_else(|| "aiops".into()),
            "severity": cfg.severity,
            "timestamp": timestamp,
            "component": inc.candidates.first().map(|c| c.service.clone()),
            "class": "anomaly",
            "custom_details": {
                "incident": inc.id,
                "symptom": inc.symptom,
                "services": inc.services,
                "candidates": top,
            },
        },
        "links": [{"href": cfg.link(inc), "text": "aiops incident: ranked root-cause candidates"}],
        "client": "aiops",
        "client_url": cfg.link(inc),
    }))
}

/// The note posted on a PagerDuty incident: our candidates, one line each.
pub fn note_text(cfg: &PagerdutyConfig, inc: &Incident) -> String {
    if inc.candidates.is_empty() {
        return format!(
            "aiops: no root-cause candidate yet for {} (no data moved around {}). {}",
            inc.symptom.service.as_deref().unwrap_or("this incident"),
            inc.symptom.detected_ms,
            cfg.link(inc)
        );
    }
    let mut s = format!("aiops root-cause candidates ({}):\n", cfg.link(inc));
    for c in inc.candidates.iter().take(cfg.top) {
        let kind = match c.fault_kind.as_str() {
            "" | "unknown" => String::new(),
            k => format!("{k}, "),
        };
        s.push_str(&format!(
            "{}. {} — {} ({kind}confidence {:.0} %): {}\n",
            c.rank,
            c.service,
            c.metric,
            c.confidence * 100.0,
            c.explanation
        ));
    }
    s.chars().take(25_000).collect()
}

/// Whether `header` (`v1=<hex>[,v1=<hex>…]`) holds an HMAC-SHA256 of `body` under any of the
/// `secrets`. Compared in constant time, over the exact bytes received.
pub fn signature_ok(secrets: &[Secret], body: &[u8], header: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .filter_map(|s| s.strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|sig| {
            secrets.iter().any(|secret| {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                    .expect("any key length");
                mac.update(body);
                mac.verify_slice(&sig).is_ok()
            })
        })
}

/// The header value PagerDuty would send for `body` under `secret` (for tests and tools).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A webhook v3 delivery.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEnvelope {
    /// The one event it carries.
    pub event: WebhookEvent,
}

/// The event of a webhook delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Event id (unique per event).
    pub id: String,
    /// e.g. `incident.triggered`.
    pub event_type: String,
    /// e.g. `incident`.
    #[serde(default)]
    pub resource_type: String,
    /// When it happened (ISO 8601).
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// The resource.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The incident of an `incident.*` webhook event.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookIncident {
    /// PagerDuty's incident id.
    pub id: String,
    /// Its page.
    #[serde(default)]
    pub html_url: Option<String>,
    /// `triggered`, `acknowledged`, `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// The Events API `dedup_key` it came from (ours: an incident id).
    #[serde(default)]
    pub incident_key: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// The PagerDuty service.
    #[serde(default)]
    pub service: Option<ServiceReference>,
}

impl PagerdutyConfig {
    /// Our service for a PagerDuty service reference.
    pub fn our_service(&self, svc: &ServiceReference) -> Option<String> {
        self.services
            .get(&svc.id)
            .or_else(|| self.services.get(&svc.summary))
            .cloned()
            .or_else(|| (!svc.summary.is_empty()).then(|| svc.summary.clone()))
    }
}

/// A PagerDuty service reference.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceReference {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::incident::{Candidate, IncidentSource, Symptom};

    fn incident() -> Incident {
        Incident {
            id: "inc-1".into(),
            title: "Correlated anomalies on 2 services".into(),
            status: IncidentStatus::Open,
            source: IncidentSource::Detector,
            opened_ms: 0,
            updated_ms: 0,
            resolved_ms: None,
            symptom: Symptom {
                service: Some("frontend".into()),
                metric: Some("latency".into()),
                series: None,
                detected_ms: 1_714_564_800_000,
            },
            services: vec!["frontend".into(), "carts".into()],
            anomalies: vec![],
            open_anomalies: vec![],
            last_activity_ms: 0,
            alerts: vec![],
            alerts_dropped: 0,
            candidates: vec![Candidate {
                rank: 1,
                service: "carts".into(),
                metric: "cpu{service=\"carts\"}".into(),
                score: 12.0,
                confidence: 0.81,
                direction: "up".into(),
                onset_ms: 0,
                peak: 2.0,
                peak_ms: 0,
                baseline: 0.5,
                spread: 0.1,
                path: vec![],
                method: "robust_scorer".into(),
                fault_kind: "cpu".into(),
                evidence: vec![],
                explanation: "carts changed first and most.".into(),
            }],
            ranked_ms: Some(0),
            window_start_ms: 0,
            window_end_ms: 0,
            data_quality: Default::default(),
            timeline: vec![],
            feedback: None,
            pagerduty: None,
        }
    }

    #[test]
    fn trigger_and_resolve_follow_the_events_api_contract() {
        let cfg = PagerdutyConfig {
            routing_key: Some("0123456789abcdef0123456789abcdef".into()),
            ..PagerdutyConfig::default()
        };
        // The key goes to PagerDuty, never into a log line of the configuration.
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"));
        let mut inc = incident();
        let t = event_for(&cfg, &inc).expect("a routing key is set");
        assert_eq!(t["routing_key"], "0123456789abcdef0123456789abcdef");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "inc-1");
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["source"], "frontend");
        assert_eq!(t["payload"]["component"], "carts");
        assert_eq!(t["payload"]["timestamp"], "2024-05-01T12:00:00Z");
        assert_eq!(
            t["payload"]["custom_details"]["candidates"][0]["service"],
            "carts"
        );
        assert!(
            t["links"][0]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with("/api/v1/incidents/inc-1"))
        );
        inc.status = IncidentStatus::Resolved;
        let r = event_for(&cfg, &inc).expect("resolve");
        assert_eq!(
            (r["event_action"].as_str(), r.get("payload")),
            (Some("resolve"), None)
        );
        assert!(event_for(&PagerdutyConfig::default(), &inc).is_none());
        assert!(
            note_text(&cfg, &incident())
                .contains("1. carts — cpu{service=\"carts\"} (cpu, confidence 81 %)")
        );
    }

    #[test]
    fn signatures_any_matching_secret_any_listed_signature() {
        let body = br#"{"event":{"id":"e1"}}"#;
        let secrets: Vec<Secret> = vec!["old".into(), "new".into()];
        let good = sign("new", body);
        assert!(signature_ok(&secrets, body, &good));
        assert!(signature_ok(&secrets, body, &format!("v1=00ff, {good}")));
        assert!(!signature_ok(&secrets, body, &sign("other", body)));
        assert!(
            !signature_ok(&secrets, b"{}", &good),
            "over the exact bytes"
        );
        assert!(!signature_ok(&secrets, body, ""));
        assert!(!signature_ok(&secrets, body, "v1=zz"));
        assert!(!signature_ok(&[], body, &good));
    }

    #[test]
    fn config_validation_names_the_key() {
        let mut p = Vec::new();
        PagerdutyConfig {
            routing_key: Some("short".into()),
            severity: "high".into(),
            api_token: Some("t".into()),
            ..PagerdutyConfig::default()
        }
        .validate("incidents.pagerduty", &mut p);
        let text = p.join("\n");
        for key in ["routing_key", "severity", "from_email"] {
            assert!(
                text.contains(&format!("incidents.pagerduty.{key}")),
                "{text}"
            );
        }
    }
}
