//! Liveness, readiness and our own metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{ApiError, AppState};

/// `GET /healthz`: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The process serves HTTP (liveness)", body = ref("#/components/schemas/Health"))),
    security(()))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when a write would succeed now — the archive's disk has room and takes a
/// synced test write (probed at most once a second, off the async workers) — else 503. So it
/// turns ready again by itself when space returns. Damage waiting in quarantine, or sources
/// that fail, make the answer `degraded`, not unready: writes still work.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses(
        (status = 200, description = "A write would succeed now (`status`: `ready` or `degraded`)", body = ref("#/components/schemas/Ready")),
        (status = 503, description = "A write would not succeed now (disk full, archive failing)", body = ref("#/components/schemas/Ready"))
    ),
    security(()))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let archive = state.archive.clone();
    let Ok((probe, archive)) =
        tokio::task::spawn_blocking(move || (archive.probe(), archive.status())).await
    else {
        return ApiError::internal("readiness probe panicked").into_response();
    };
    let sources = state.sources.snapshot();
    let mut reasons: Vec<String> = probe.reason.iter().cloned().collect();
    if !archive.quarantined.is_empty() {
        reasons.push(format!(
            "{} damaged archive file(s) in quarantine: {}",
            archive.quarantined.len(),
            archive.quarantined.join(", ")
        ));
    }
    reasons.extend(
        sources
            .iter()
            .filter(|(_, s)| !s.healthy)
            .map(|(name, _)| format!("source {name} is failing")),
    );
    let status = match (probe.ready, reasons.is_empty()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let code = if probe.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "reasons": reasons,
        "disk": probe,
        "archive": archive,
        "sources": sources,
        "queue": {"queued": state.sender.queued()},
        "series": state.catalog.len(),
    });
    (code, Json(body)).into_response()
}

/// `GET /metrics`: OpenMetrics text, which Prometheus scrapes natively.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Our metrics, OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut body = String::with_capacity(16 << 10);
    prometheus_client::encoding::text::encode_registry(&mut body, &state.registry)
        .map_err(ApiError::internal)?;
    anomaly_gauges(&state, &mut body);
    detect_counters(&state, &mut body);
    scaling_gauges(&state, &mut body);
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

/// `aiops_anomaly_score`, `aiops_anomaly_rank_score` and `aiops_anomaly_p_value` `{series,
/// metric, service}` for the series most unusual right now, at most `max_score_gauges` of them,
/// so cardinality stays bounded.
fn anomaly_gauges(state: &AppState, out: &mut String) {
    use aiops_detect::published::TopScore;
    use std::fmt::Write as _;
    let top = state.detect.top_scores();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let labels: Vec<String> = top
        .iter()
        .take(state.max_score_gauges)
        .map(|t| {
            let meta = state.catalog.get(t.series_id);
            let metric = meta.as_ref().map(|m| m.metric.clone()).unwrap_or_default();
            let service = meta
                .as_deref()
                .and_then(aiops_models::service_of)
                .unwrap_or_default();
            format!(
                "series=\"{}\",metric=\"{}\",service=\"{}\"",
                t.series_id,
                esc(&metric),
                esc(&service)
            )
        })
        .collect();
    type Value = fn(&TopScore) -> f64;
    let families: [(&str, &str, Value); 3] = [
        (
            "aiops_anomaly_score",
            "Latest alarm-facing anomaly score (0 while resting after an alarm) of the series most unusual right now.",
            |t| t.score,
        ),
        (
            "aiops_anomaly_rank_score",
            "Latest continuous anomaly score (how unusual the series is now; never held at 0) of the series most unusual right now.",
            |t| t.rank_score,
        ),
        (
            "aiops_anomaly_p_value",
            "Tail probability behind aiops_anomaly_rank_score.",
            TopScore::p_value,
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (t, l) in top.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{{l}}} {}", value(t));
        }
    }
}

/// The detection side's counters (published atomics: reading them never waits for scoring).
fn detect_counters(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let c = &state.detect.counters;
    for (name, kind, help, v) in [
        (
            "aiops_detect_received_samples",
            "counter",
            "Samples that reached detection (scored, or skipped as duplicates or a counter's first sample).",
            &c.received,
        ),
        (
            "aiops_detect_samples",
            "counter",
            "Samples scored by the detectors.",
            &c.scored,
        ),
        (
            "aiops_detect_series",
            "gauge",
            "Series with a detector.",
            &c.series,
        ),
        (
            "aiops_detect_state_bytes",
            "gauge",
            "Bytes of detector state (series and services), estimated.",
            &c.state_bytes,
        ),
        (
            "aiops_detect_warm_backlog",
            "gauge",
            "Series with history waiting to be warmed (scored cold meanwhile).",
            &c.warm_backlog,
        ),
        (
            "aiops_detect_queue_bytes",
            "gauge",
            "Bytes of sample batches waiting for detection; at detect.max_queue_bytes writes wait.",
            &c.queue_bytes,
        ),
        (
            "aiops_detect_warmed",
            "counter",
            "Series warmed from their history in the background.",
            &c.warmed,
        ),
        (
            "aiops_detect_warm_skipped",
            "counter",
            "Series that started cold because the warm queue was full.",
            &c.warm_skipped,
        ),
        (
            "aiops_detect_fresh_series",
            "counter",
            "Series first seen with no history (new to the archive): started cold at once.",
            &c.fresh,
        ),
    ] {
        let suffix = if kind == "counter" { "_total" } else { "" };
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{suffix} {}",
            v.load(Relaxed)
        );
    }
    let name = "aiops_detect_alarms";
    let _ = writeln!(
        out,
        "# HELP {name} Alarms raised by the detectors, by reason (a service's once per event).\n# TYPE {name} counter"
    );
    for (r, n) in aiops_models::AlarmReason::ALL.iter().zip(&c.alarms) {
        let _ = writeln!(
            out,
            "{name}_total{{reason=\"{}\"}} {}",
            r.as_str(),
            n.load(Relaxed)
        );
    }
}

/// Per scaling target (bounded by the config): the served value, the current load, the
/// forecast, and whether the value is held because the load stopped arriving (1) or refused
/// because it stopped longer than the hold time (2).
fn scaling_gauges(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    if state.scaling.targets.is_empty() {
        return;
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let mut rows = Vec::new();
    {
        let mut st = state.scaling_state.lock();
        for t in &state.scaling.targets {
            rows.push((t.name.clone(), st.value(&state.scaling, &t.name, None, now)));
        }
    }
    for (name, help) in [
        (
            "aiops_scaling_value",
            "Value served to the HPA for a scaling target (load units).",
        ),
        ("aiops_scaling_current", "Latest load of a scaling target."),
        (
            "aiops_scaling_forecast",
            "Forecast load at now + lead time (served quantile).",
        ),
        (
            "aiops_scaling_desired_replicas",
            "Replicas the served value asks for.",
        ),
        (
            "aiops_scaling_would_serve",
            "Shadow mode: the value predictive scaling would serve (load units).",
        ),
        (
            "aiops_scaling_quantile",
            "Forecast quantile served (adapted to the target's under_budget when set).",
        ),
        (
            "aiops_scaling_under_share",
            "Share of steps whose served value fell below the load that arrived.",
        ),
        (
            "aiops_scaling_stale",
            "1: the load stopped arriving and the last good value is held; 2: held too long, refused.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (target, v) in &rows {
            let value = match (name, v) {
                ("aiops_scaling_stale", Ok(v)) => Some(f64::from(u8::from(v.stale))),
                ("aiops_scaling_stale", Err(aiops_detect::DetectError::LoadExpired { .. })) => {
                    Some(2.0)
                }
                ("aiops_scaling_value", Ok(v)) => Some(v.value),
                ("aiops_scaling_current", Ok(v)) => Some(v.current),
                ("aiops_scaling_forecast", Ok(v)) => v.forecast,
                ("aiops_scaling_desired_replicas", Ok(v)) => Some(v.desired_replicas as f64),
                ("aiops_scaling_would_serve", Ok(v)) => v.would_serve,
                ("aiops_scaling_quantile", Ok(v)) => v.quantile,
                ("aiops_scaling_under_share", Ok(v)) => v.under_share,
                _ => None,
            };
            if let Some(x) = value {
                let _ = writeln!(out, "{name}{{target=\"{target}\"}} {x}");
            }
        }
    }
}
