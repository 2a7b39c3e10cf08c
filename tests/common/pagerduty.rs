//! A PagerDuty test double written from the documented contract (protocols.md §4.1 and §4.4):
//! `POST /v2/enqueue` (Events API v2) and `POST /incidents/{id}/notes` (REST). It checks every
//! request against the contract — a violation is answered 400 the way PagerDuty answers it and
//! recorded, so a test can assert there was none — and can be told to throttle (429 with
//! `Retry-After`) or fail (5xx) for the next requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the double saw.
#[derive(Debug, Clone)]
pub struct Received {
    /// `event` or `note`.
    pub kind: &'static str,
    /// The parsed body.
    pub body: Value,
    /// The status it answered.
    pub status: u16,
    /// When.
    pub at: Instant,
    /// For notes: the incident id of the path.
    pub incident: Option<String>,
}

/// Scripted answers and the record.
#[derive(Debug, Default)]
pub struct Double {
    /// Answers to use, one per request, before the contract's own (e.g. 429, 500).
    pub script: VecDeque<u16>,
    /// While true, every request gets 503.
    pub down: bool,
    /// Every request, in order.
    pub received: Vec<Received>,
    /// Contract violations (the 400s it gave).
    pub violations: Vec<String>,
}

/// A running double.
#[derive(Debug, Clone)]
pub struct PagerDuty {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its state.
    pub state: Arc<Mutex<Double>>,
}

impl PagerDuty {
    /// Starts the double on an ephemeral port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Double::default()));
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .route("/incidents/{id}/notes", post(note))
            .with_state(state.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(l, app).await });
        Self { base, state }
    }

    /// Accepted (2xx) requests of a kind.
    pub fn accepted(&self, kind: &str) -> Vec<Received> {
        let s = self.state.lock().expect("lock");
        s.received
            .iter()
            .filter(|r| r.kind == kind && (200..300).contains(&r.status))
            .cloned()
            .collect()
    }

    /// Everything received.
    pub fn all(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Contract violations so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().expect("lock").violations.clone()
    }
}

fn scripted(d: &mut Double) -> Option<u16> {
    if d.down {
        return Some(503);
    }
    d.script.pop_front()
}

fn record(d: &mut Double, kind: &'static str, body: Value, status: u16, incident: Option<String>) {
    d.received.push(Received {
        kind,
        body,
        status,
        at: Instant::now(),
        incident,
    });
}

fn refuse(d: &mut Double, kind: &'static str, body: Value, errors: Vec<String>) -> Response {
    d.violations.extend(errors.iter().cloned());
    record(d, kind, body, 400, None);
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
    )
        .into_response()
}

/// Events API v2 (§4.1).
async fn enqueue(
    State(state): State<Arc<Mutex<Double>>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let mut d = state.lock().expect("lock");
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if let Some(code) = scripted(&mut d) {
        record(&mut d, "event", body, code, None);
        let mut r = StatusCode::from_u16(code).expect("status").into_response();
        if code == 429 {
            r.headers_mut()
                .insert("retry-after", "1".parse().expect("value"));
        }
        return r;
    }
    let mut errors = Vec::new();
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        errors.push("Content-Type must be application/json".to_owned());
    }
    if raw.len() > 512 * 1024 {
        errors.push("body larger than 512 KB".to_owned());
    }
    if headers.contains_key("authorization") {
        errors.push("the Events API takes no Authorization header".to_owned());
    }
    if !body.is_object() {
        errors.push("JSON parse error".to_owned());
        return refuse(&mut d, "event", body, errors);
    }
    let key = body["routing_key"].as_str().unwrap_or_default();
    if key.len() != 32 {
        errors.push("routing_key must be the 32-character integration key".to_owned());
    }
    let action = body["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push(format!(
            "event_action {action:?} is not trigger, acknowledge or resolve"
        ));
    }
    if let Some(k) = body.get("dedup_key") {
        if !k.as_str().is_some_and(|k| !k.is_empty() && k.len() <= 255) {
            errors.push("dedup_key must be a string of at most 255 characters".to_owned());
        }
    } else if action != "trigger" {
        errors.push("dedup_key is required for acknowledge and resolve".to_owned());
    }
    if action == "trigger" {
        let p = &body["payload"];
        let summary = p["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.chars().count() > 1024 {
            errors.push("payload.summary is required, at most 1024 characters".to_owned());
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            errors.push("payload.source is required".to_owned());
        }
        if !["critical", "error", "warning", "info"]
            .contains(&p["severity"].as_str().unwrap_or_default())
        {
            errors.push("payload.severity must be critical, error, warning or info".to_owned());
        }
        if let Some(ts) = p.get("timestamp").and_then(Value::as_str)
            && ts.parse::<jiff::Timestamp>().is_err()
        {
            errors.push(format!("payload.timestamp {ts:?} is not ISO 8601"));
        }
        if p.get("custom_details").is_some_and(|c| !c.is_object()) {
            errors.push("payload.custom_details must be an object".to_owned());
        }
        for l in body["links"].as_array().into_iter().flatten() {
            if l["href"].as_str().is_none() {
                errors.push("links[].href is required".to_owned());
            }
        }
    }
    if !errors.is_empty() {
        return refuse(&mut d, "event", body, errors);
    }
    let dedup = body["dedup_key"]
        .as_str()
        .unwrap_or("generated-key")
        .to_owned();
    record(&mut d, "event", body, 202, None);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup})),
    )
        .into_response()
}

/// REST API: add a note (§4.4).
async fn note(
    State(state): State<Arc<Mutex<Double>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let mut d = state.lock().expect("lock");
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if let Some(code) = scripted(&mut d) {
        record(&mut d, "note", body, code, Some(id));
        return StatusCode::from_u16(code).expect("status").into_response();
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if !h("authorization").starts_with("Token token=") {
        d.violations
            .push("notes need Authorization: Token token=<key>".to_owned());
        record(&mut d, "note", body, 401, Some(id));
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": "Unauthorized", "code": 2006}})),
        )
            .into_response();
    }
    let mut errors = Vec::new();
    if h("accept") != "application/vnd.pagerduty+json;version=2" {
        errors.push("Accept must be application/vnd.pagerduty+json;version=2".to_owned());
    }
    if !h("from").contains('@') {
        errors.push("From must be a PagerDuty user's e-mail".to_owned());
    }
    if body["note"]["content"].as_str().is_none_or(str::is_empty) {
        errors.push("note.content is required".to_owned());
    }
    if !errors.is_empty() {
        d.violations.extend(errors.iter().cloned());
        record(&mut d, "note", body, 400, Some(id));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "Invalid Input Provided", "code": 2001, "errors": errors}})),
        )
            .into_response();
    }
    let content = body["note"]["content"].clone();
    record(&mut d, "note", body, 201, Some(id));
    (
        StatusCode::CREATED,
        axum::Json(json!({"note": {"id": "PNOTE1", "content": content, "created_at": "2024-05-01T12:41:07Z",
            "user": {"id": "PUSR123", "type": "user_reference"}, "channel": {"summary": "The PagerDuty website or APIs"}}})),
    )
        .into_response()
}
