//! A local stand-in for the Azure Application Insights REST API, written from its documented
//! contract (protocols.md §3): metrics (literal or `%2F` metric ids, timespan/interval/
//! aggregation/segment, partial first and last buckets, nested segments, `null` aggregates),
//! KQL over apps and workspaces (typed columns, `null` cells), API keys (switchable off, as after
//! their retirement) and Entra ID client-credential tokens, error bodies, `Retry-After` on 429,
//! injected 5xx and slow answers. Loopback only.
//!
//! Its data: roles `api` and `web`; per minute m (Unix minutes), `requests/count` is
//! `100 + 10·(m mod 7)` (`+5` for web) and `null` for `api` when `m mod 13 = 0`;
//! `requests/duration` avg is `200 + 3·(m mod 5)`, max is 4× that, and the whole bucket is `null`
//! when `m mod 11 = 0`.

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const APP_ID: &str = "0b5c2b7e-1f0a-4c4e-9a55-3e1d2f6a7b8c";
pub const WORKSPACE_ID: &str = "7f3e9d21-55aa-4b0c-8e41-c2a9f8d3e6b1";
pub const API_KEY: &str = "double-api-key";
pub const TENANT: &str = "double-tenant";
pub const CLIENT_ID: &str = "double-client";
pub const CLIENT_SECRET: &str = "double-secret";
pub const ROLES: [&str; 2] = ["api", "web"];

/// A failure to inject into the next API request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (429 carries `Retry-After: retry_after` when given).
    Status(u16, Option<u64>),
    /// Wait this long before answering normally.
    Slow(Duration),
}

#[derive(Debug, Default)]
pub struct DoubleState {
    pub api_key_enabled: AtomicBool,
    pub tokens: Mutex<HashSet<String>>,
    pub token_requests: AtomicUsize,
    pub api_requests: AtomicUsize,
    pub token_ttl_secs: Mutex<u64>,
    pub faults: Mutex<VecDeque<Fault>>,
    /// Paths (with query) of API requests, in order.
    pub seen: Mutex<Vec<String>>,
}

pub struct Double {
    pub addr: SocketAddr,
    pub state: Arc<DoubleState>,
}

impl Double {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn token_url(&self) -> String {
        format!("http://{}/{TENANT}/oauth2/v2.0/token", self.addr)
    }
    pub fn inject(&self, f: Fault) {
        self.state.faults.lock().expect("lock").push_back(f);
    }
}

/// Starts the double on an ephemeral loopback port.
pub async fn start() -> Double {
    let state = Arc::new(DoubleState::default());
    state.api_key_enabled.store(true, Ordering::SeqCst);
    *state.token_ttl_secs.lock().expect("lock") = 3599;
    let app = axum::Router::new()
        .route("/v1/apps/{app}/metrics/{*metric}", get(metrics))
        .route("/v1/apps/{app}/query", get(query_get).post(query_post))
        .route("/v1/workspaces/{ws}/query", post(workspace_query))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Double { addr, state }
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        "application/json; charset=utf-8".parse().expect("valid"),
    );
    h.insert(
        "x-ms-request-id",
        "00000000-0000-0000-0000-000000000001"
            .parse()
            .expect("valid"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str, inner: Option<(&str, &str)>) -> Response {
    let mut e = json!({"error": {"code": code, "message": message, "correlationId": "c0ffee"}});
    if let Some((ic, im)) = inner {
        e["error"]["innererror"] = json!({"code": ic, "message": im});
    }
    answer(status, e)
}

/// Auth and injected faults, shared by the API routes.
async fn gate(state: &DoubleState, headers: &HeaderMap, app_ok: bool) -> Result<(), Response> {
    state.api_requests.fetch_add(1, Ordering::SeqCst);
    let fault = state.faults.lock().expect("lock").pop_front();
    match fault {
        Some(Fault::Status(429, retry)) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottledError",
                "Your request was throttled",
                Some((
                    "ThrottledError",
                    "Rate limit of 200 per 30 seconds is exceeded.",
                )),
            );
            if let Some(s) = retry {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().expect("valid"));
            }
            return Err(r);
        }
        Some(Fault::Status(code, _)) => {
            let status = StatusCode::from_u16(code).expect("valid status");
            return Err(error(
                status,
                "GatewayTimeout",
                "The service is temporarily unavailable",
                None,
            ));
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authed = match (key, bearer) {
        (None, None) => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "AuthorizationRequiredError",
                "Valid authentication was not provided",
                None,
            ));
        }
        (Some(k), _) => state.api_key_enabled.load(Ordering::SeqCst) && k == API_KEY,
        (None, Some(t)) => state.tokens.lock().expect("lock").contains(t),
    };
    if !authed {
        let msg = if key.is_some() && !state.api_key_enabled.load(Ordering::SeqCst) {
            "API key authentication has been retired; use Microsoft Entra ID"
        } else {
            "The provided credentials have insufficient access to perform the requested operation"
        };
        return Err(error(
            StatusCode::FORBIDDEN,
            "InsufficientAccessError",
            msg,
            None,
        ));
    }
    if !app_ok {
        return Err(error(
            StatusCode::FORBIDDEN,
            "InsufficientAccessError",
            "The provided credentials have insufficient access to perform the requested operation",
            None,
        ));
    }
    Ok(())
}

fn parse_duration(s: &str) -> Option<i64> {
    aiops_ingest::parse_iso_duration(s).map(|d| d.as_millis() as i64)
}

fn parse_ts(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// `PT1H` (ending now), `start/end` or `start/duration`.
fn parse_timespan(s: &str) -> Option<(i64, i64)> {
    let now = jiff::Timestamp::now().as_millisecond();
    match s.split_once('/') {
        None => parse_duration(s).map(|d| (now - d, now)),
        Some((a, b)) => {
            let start = parse_ts(a)?;
            let end = parse_ts(b).or_else(|| parse_duration(b).map(|d| start + d))?;
            (start < end).then_some((start, end))
        }
    }
}

fn fmt_ts(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("in range")
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub fn requests_count(role: &str, minute: i64) -> Option<f64> {
    if role == "api" && minute.rem_euclid(13) == 0 {
        return None;
    }
    Some(100.0 + 10.0 * minute.rem_euclid(7) as f64 + if role == "web" { 5.0 } else { 0.0 })
}

pub fn requests_duration(minute: i64) -> Option<(f64, f64)> {
    if minute.rem_euclid(11) == 0 {
        return None;
    }
    let avg = 200.0 + 3.0 * minute.rem_euclid(5) as f64;
    Some((avg, 4.0 * avg))
}

fn params(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn metrics(
    State(state): State<Arc<DoubleState>>,
    Path((app, metric)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    state.seen.lock().expect("lock").push(format!(
        "/v1/apps/{app}/metrics/{metric}?{}",
        raw.clone().unwrap_or_default()
    ));
    if let Err(r) = gate(&state, &headers, app == APP_ID).await {
        return r;
    }
    let p = params(raw);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bad = |m: String| {
        error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            "The request had some invalid properties",
            Some(("InvalidArgument", m.as_str())),
        )
    };
    let Some((start, end)) = parse_timespan(get("timespan").unwrap_or("PT12H")) else {
        return bad("timespan is not a valid ISO 8601 period or interval".into());
    };
    let interval = match get("interval") {
        Some(i) => match parse_duration(i) {
            Some(d) => Some(d),
            None => return bad(format!("interval {i:?} is not a valid ISO 8601 duration")),
        },
        None => None,
    };
    let (default_agg, allowed): (&str, &[&str]) = match metric.as_str() {
        "requests/count" => ("sum", &["sum", "count"]),
        "requests/duration" => ("avg", &["avg", "min", "max", "count"]),
        other => {
            return bad(format!(
                "The metric '{other}' is not supported by this application"
            ));
        }
    };
    let aggs: Vec<String> = match get("aggregation") {
        Some(a) => a.split(',').map(str::to_owned).collect(),
        None => vec![default_agg.to_owned()],
    };
    for a in &aggs {
        if !["min", "max", "avg", "sum", "count", "unique"].contains(&a.as_str()) {
            return bad(format!(
                "aggregation {a:?} is not one of min, max, avg, sum, count, unique"
            ));
        }
        if !allowed.contains(&a.as_str()) {
            return bad(format!("aggregation {a:?} is not supported for {metric}"));
        }
    }
    let segment: Vec<&str> = get("segment")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    if segment.iter().any(|s| *s != "cloud/roleName")
        || (!segment.is_empty() && metric != "requests/count")
    {
        return bad(format!(
            "segment {segment:?} is not supported by the double for {metric}"
        ));
    }
    // The aggregate object of one (bucket, role): null when the double has no data.
    let aggregate = |minute: i64, role: Option<&str>| -> Value {
        match metric.as_str() {
            "requests/count" => {
                let v = match role {
                    Some(r) => requests_count(r, minute),
                    None => ROLES
                        .iter()
                        .map(|r| requests_count(r, minute))
                        .sum::<Option<f64>>(),
                };
                let mut o = serde_json::Map::new();
                for a in &aggs {
                    o.insert(
                        a.clone(),
                        v.map_or(Value::Null, |v| json!(if a == "count" { 1.0 } else { v })),
                    );
                }
                Value::Object(o)
            }
            _ => match requests_duration(minute) {
                None => Value::Null,
                Some((avg, max)) => {
                    let mut o = serde_json::Map::new();
                    for a in &aggs {
                        let v = match a.as_str() {
                            "avg" => avg,
                            "max" => max,
                            "min" => avg / 2.0,
                            _ => 60.0,
                        };
                        o.insert(a.clone(), json!(v));
                    }
                    Value::Object(o)
                }
            },
        }
    };
    let leaf = |minute: i64| -> Value {
        if segment.is_empty() {
            json!({ metric.clone(): aggregate(minute, None) })
        } else {
            json!({"segments": ROLES.iter().map(|r| json!({"cloud/roleName": r, metric.clone(): aggregate(minute, Some(r))})).collect::<Vec<_>>()})
        }
    };
    let mut value = json!({"start": fmt_ts(start), "end": fmt_ts(end)});
    match interval {
        None => {
            let body = leaf(start.div_euclid(60_000));
            for (k, v) in body.as_object().expect("object") {
                value[k] = v.clone();
            }
        }
        Some(step) => {
            value["interval"] = json!(get("interval"));
            let mut buckets = Vec::new();
            let mut s = start;
            while s < end {
                let e = ((s.div_euclid(step) + 1) * step).min(end);
                let mut b = json!({"start": fmt_ts(s), "end": fmt_ts(e)});
                for (k, v) in leaf(s.div_euclid(60_000)).as_object().expect("object") {
                    b[k] = v.clone();
                }
                buckets.push(b);
                s = e;
            }
            value["segments"] = json!(buckets);
        }
    }
    answer(StatusCode::OK, json!({ "value": value }))
}

async fn run_kql(
    state: &DoubleState,
    headers: &HeaderMap,
    ok: bool,
    query: &str,
    timespan: Option<&str>,
) -> Response {
    state
        .seen
        .lock()
        .expect("lock")
        .push(format!("query {query}"));
    if let Err(r) = gate(state, headers, ok).await {
        return r;
    }
    if query.contains("| summarize summarize") || query.contains("syntax error") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            "The request had some invalid properties",
            Some((
                "SyntaxError",
                "Query could not be parsed at 'summarize' on line [1,12]",
            )),
        );
    }
    let Some((start, end)) = parse_timespan(timespan.unwrap_or("P1D")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            "The timespan is invalid",
            None,
        );
    };
    if !(query.starts_with("requests") && query.contains("requests_count")) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            "The request had some invalid properties",
            Some((
                "SemanticError",
                "The double only knows `requests | summarize requests_count = …`",
            )),
        );
    }
    let mut rows = Vec::new();
    let mut m = start.div_euclid(60_000);
    while m * 60_000 < end {
        if m * 60_000 >= start {
            for r in ROLES {
                let v = requests_count(r, m).map_or(Value::Null, |v| json!(v as i64));
                rows.push(json!([fmt_ts(m * 60_000), r, v]));
            }
        }
        m += 1;
    }
    answer(
        StatusCode::OK,
        json!({"tables": [{"name": "PrimaryResult", "columns": [
            {"name": "timestamp", "type": "datetime"},
            {"name": "cloud_RoleName", "type": "string"},
            {"name": "requests_count", "type": "long"}], "rows": rows}]}),
    )
}

async fn query_get(
    State(state): State<Arc<DoubleState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let p = params(raw);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let q = get("query").unwrap_or_default();
    run_kql(
        &state,
        &headers,
        app == APP_ID,
        &q,
        get("timespan").as_deref(),
    )
    .await
}

async fn query_post(
    State(state): State<Arc<DoubleState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let q = body["query"].as_str().unwrap_or_default().to_owned();
    run_kql(
        &state,
        &headers,
        app == APP_ID,
        &q,
        body["timespan"].as_str(),
    )
    .await
}

async fn workspace_query(
    State(state): State<Arc<DoubleState>>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let q = body["query"].as_str().unwrap_or_default().to_owned();
    run_kql(
        &state,
        &headers,
        ws == WORKSPACE_ID,
        &q,
        body["timespan"].as_str(),
    )
    .await
}

async fn token(
    State(state): State<Arc<DoubleState>>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let p: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if tenant != TENANT
        || get("grant_type") != "client_credentials"
        || get("client_id") != CLIENT_ID
        || get("client_secret") != CLIENT_SECRET
    {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
        );
    }
    if get("scope") != "https://api.applicationinsights.io/.default" {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_scope", "error_description": "AADSTS70011: The provided scope is not valid."}),
        );
    }
    let n = state.token_requests.load(Ordering::SeqCst);
    let t = format!("token-{n}");
    state.tokens.lock().expect("lock").insert(t.clone());
    let ttl = *state.token_ttl_secs.lock().expect("lock");
    answer(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": t}),
    )
}
