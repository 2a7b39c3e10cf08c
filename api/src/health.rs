//! Liveness, readiness and our own metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{ApiError, AppState};

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while the archive accepts writes (sources that fail make the answer
/// `degraded`, not unready: remote_write still works); 503 when the archive is failing.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let archive = state.archive.status();
    let sources = state.sources.snapshot();
    let degraded = sources.values().any(|s| !s.healthy);
    let status = match (archive.healthy, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let code = if archive.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "archive": archive,
        "sources": sources,
        "queue": {"queued": state.sender.queued()},
        "series": state.catalog.len(),
    });
    (code, Json(body)).into_response()
}

/// `GET /metrics`: OpenMetrics text, which Prometheus scrapes natively.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut body = String::with_capacity(16 << 10);
    prometheus_client::encoding::text::encode_registry(&mut body, &state.registry)
        .map_err(ApiError::internal)?;
    anomaly_gauges(&state, &mut body);
    prometheus_client::encoding::text::encode_eof(&mut body).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// `aiops_anomaly_score{series, metric, service}` for the series with the highest latest scores,
/// at most `max_score_gauges` of them, so cardinality stays bounded.
fn anomaly_gauges(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    let top = state
        .detect
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .top_scores(state.max_score_gauges);
    out.push_str("# HELP aiops_anomaly_score Latest anomaly score of the series scoring highest right now.\n");
    out.push_str("# TYPE aiops_anomaly_score gauge\n");
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    for (id, score) in top {
        let meta = state.catalog.get(id);
        let metric = meta.as_ref().map(|m| m.metric.clone()).unwrap_or_default();
        let service = meta
            .as_deref()
            .and_then(aiops_models::service_of)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "aiops_anomaly_score{{series=\"{id}\",metric=\"{}\",service=\"{}\"}} {score}",
            esc(&metric),
            esc(&service)
        );
    }
}
