//! The HTTP API of aiops (axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/write` | Prometheus remote_write 1.0 receiver |
//! | `GET /api/v1/series` | the series catalog, filtered by `match[]` selectors |
//! | `GET /api/v1/series/{id}/samples` | one series over `start`..`end` from the archive |
//! | `GET /api/v1/anomalies` | anomaly events, filtered by time, service and score |
//! | `GET /api/v1/series/{id}/scored` | one series with the expected band and scores (replayed) |
//! | `GET /api/v1/scores` | the series most unusual right now: continuous score, p-value, alarm |
//! | `GET /api/v1/scaling`, `/api/v1/scaling/{name}` | predictive scaling values (KEDA `metrics-api`) |
//! | `GET /api/v1/scaling/{name}/outlook` | a target's recent load and forecast path (p50/p90/p99) |
//! | `GET /apis/external.metrics.k8s.io/v1beta1/…` | the Kubernetes external metrics API (HPA) |
//! | `GET /api/v1/incidents`, `/api/v1/incidents/{id}` | incidents with ranked root-cause candidates |
//! | `POST /api/v1/incidents` | analyse a symptom and window on demand (token) |
//! | `POST /api/v1/incidents/{id}/feedback` | the responder names the true root cause (token) |
//! | `POST /api/v1/alertmanager` | Alertmanager webhook, payload version 4 (token) |
//! | `POST /api/v1/pagerduty/webhook` | PagerDuty webhooks v3 (HMAC-SHA256 signature) |
//! | `GET /api/v1/openapi.json` | the OpenAPI document of these routes |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | the archive accepts writes; source health |
//! | `GET /metrics` | our own metrics (OpenMetrics text) |
//! | `GET /`, `/console/…` | the web console (static, embedded; its data comes from the routes above) |
//!
//! Beside them, on `server.keda_listen`: KEDA's external scaler protocol over gRPC ([`keda`]).
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a status chosen in
//! [`error`]. Bodies are limited, every request has a deadline, and the server drains in-flight
//! requests on shutdown (see `serve` in the binary).
//!
//! Owns the routes, their auth and limits, the incident task and the PagerDuty outbox; every
//! handler is bounded and moves blocking work (scans, reads, fsyncs) off the async threads. It
//! never scores or ranks itself: it calls `detect`'s published state and `rca`.

pub mod auth;
mod config;
mod console;
pub mod credentials;
pub mod error;
pub mod external;
pub mod front_proxy;
mod health;
pub mod incidents;
pub mod keda;
pub mod listen;
mod metrics;
mod openapi;
pub mod pagerduty;
mod query;
pub mod ratelimit;
pub mod tls;
mod views;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_ingest::IngestMetrics;
use aiops_ingest::SourceStates;
use aiops_ingest::archive::Archive;
use aiops_ingest::transport::BatchSender;
use aiops_models::SeriesCatalog;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

pub use config::{ApiConfig, LimitsConfig};
pub use error::{ApiError, StartError};
pub use metrics::ApiMetrics;
pub use ratelimit::RateLimit;

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Server options.
    pub config: Arc<ApiConfig>,
    /// Series known to this process.
    pub catalog: Arc<SeriesCatalog>,
    /// The archive (reads).
    pub archive: Archive,
    /// Where accepted batches go.
    pub sender: BatchSender,
    /// Health of pulling sources.
    pub sources: SourceStates,
    /// Every metric of the process, for `/metrics`.
    pub registry: Arc<Registry>,
    /// Ingest counters.
    pub ingest_metrics: IngestMetrics,
    /// API counters.
    pub api_metrics: ApiMetrics,
    /// What detection publishes (anomaly events, top scores, counters). Readers never take
    /// the detector's own lock, so they never wait for scoring.
    pub detect: Arc<aiops_detect::published::Published>,
    /// The detection stage's parameters (the series page replays a series with them).
    pub detect_config: Arc<aiops_detect::DetectConfig>,
    /// The scaling targets' state, behind a short lock of its own.
    pub scaling_state: aiops_detect::published::SharedScaling,
    /// How many series `/metrics` exports as `aiops_anomaly_score`.
    pub max_score_gauges: usize,
    /// Predictive scaling targets (served by the external metrics API).
    pub scaling: Arc<aiops_detect::scaling::ScalingConfig>,
    /// Incidents, their ranking and integrations.
    pub incidents: Arc<incidents::IncidentService>,
    /// Limits that shed load and cap series.
    pub limits: Arc<LimitsConfig>,
    /// Turns for heavy reads (`server.max_concurrent_reads`).
    pub heavy_reads: Arc<tokio::sync::Semaphore>,
    /// Credentials and their scopes.
    pub auth: Arc<auth::Authenticator>,
    /// On-demand analyses per caller (`incidents.max_analyses_per_minute`).
    pub analyses: Arc<RateLimit>,
}

/// The router with every route and middleware.
pub fn router(state: AppState) -> Router {
    use auth::{require_read, require_scaling, require_write};
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    // Each handler is registered through its `#[utoipa::path]` attribute: the route and its
    // documentation are one thing.
    let scaling = OpenApiRouter::new()
        .routes(routes!(external::api_group_list))
        .routes(routes!(external::api_group))
        .routes(routes!(external::resource_list))
        .routes(routes!(external::metric_value))
        .routes(routes!(external::list_scaling))
        .routes(routes!(external::get_scaling))
        .routes(routes!(views::scaling_outlook))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_scaling,
        ));
    let writes = OpenApiRouter::new()
        .routes(routes!(write::remote_write))
        .routes(routes!(incidents::create))
        .routes(routes!(incidents::feedback))
        .routes(routes!(incidents::alertmanager))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_write));
    let reads = OpenApiRouter::new()
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::get))
        .routes(routes!(query::list_series))
        .routes(routes!(query::series_samples))
        .routes(routes!(views::series_scored))
        .routes(routes!(query::anomalies))
        .routes(routes!(query::scores))
        .routes(routes!(health::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_read));
    // Open: the probes, the API document, and the PagerDuty webhook (signed: it checks the
    // `X-PagerDuty-Signature` itself).
    let open = OpenApiRouter::new()
        .routes(routes!(incidents::pagerduty_webhook))
        .routes(routes!(openapi::openapi))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz));
    let (router, api) = OpenApiRouter::default()
        .merge(scaling)
        .merge(writes)
        .merge(reads)
        .merge(open)
        .split_for_parts();
    let document = Arc::new(openapi::document(api, state.config.max_series_selectors));
    let router = if state.config.console {
        router.merge(console::routes())
    } else {
        router
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(document))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Deadline and latency metrics for every request.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let uri_len = req.uri().to_string().len();
    if uri_len > state.config.max_uri_bytes {
        return ApiError::new(
            axum::http::StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target is {uri_len} bytes, over the limit of {} (server.max_uri_bytes)",
                state.config.max_uri_bytes
            ),
        )
        .into_response();
    }
    let deadline = Duration::from_secs(state.config.request_timeout_secs);
    // Dropping a timed-out handler is safe: a remote_write whose batch was already queued is
    // either made durable (and the sender's retry duplicates it) or failed; nothing is lost.
    let resp = match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable(
            "timeout",
            format!("request did not finish within {}s", deadline.as_secs()),
        )
        .into_response(),
    };
    state
        .api_metrics
        .request_seconds
        .get_or_create(&metrics::RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    json_errors(resp).await
}

/// Every error answer is JSON: the rejections of axum's extractors (a body over its limit, a
/// bad query string) and the like come as text; they are rewrapped as
/// `{"error": {"code", "message"}}` with their status kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        _ => "error",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != axum::http::header::CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
