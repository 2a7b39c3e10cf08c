//! What the console draws, computed on request: a series' samples with the detector's expected
//! band and scores (the series replayed from the archive), and a scaling target's recent load
//! with its forecast path. Both bounded, both off the async threads or under a short lock.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use crate::query::{params, series_range, view};
use crate::{ApiError, AppState};

/// `GET /api/v1/series/{id}/scored?start=&end=`: the series over the range as the detector
/// sees it — per sample `[unix_ms, value, expected, lower, upper, score, rank_score]` (a
/// counter's value is its per-second rate) — and the anomaly events that overlap the range.
///
/// Recomputed: the series' archived samples from `server.scored_warmup_secs` before `start`
/// are replayed through a fresh detector with the stage's parameters (the warm-up teaches it
/// the series; only the range is returned). The live detector has seen more (or a trained
/// profile): its scores can differ, most in the first days of a series.
#[utoipa::path(get, path = "/api/v1/series/{id}/scored", tag = "query",
    params(
        ("id" = String, Path, pattern = "^[0-9a-fA-F]{16}$", description = "Series id (16 hex digits)"),
        ("start" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: end − 1 h)"),
        ("end" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: now)")
    ),
    responses(
        (status = 200, description = "Samples with the expected band and scores, and the events overlapping the range", body = ref("#/components/schemas/Scored")),
        (status = 404, description = "Unknown series", body = ref("#/components/schemas/Error")),
        (status = 422, description = "`start` after `end`, or over `server.max_samples_per_query` samples in the range", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn series_scored(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (id, meta, start, end) = series_range(&state, &id, raw)?;
    let warmup_ms = state.config.scored_warmup_secs as i64 * 1000;
    let from = start.saturating_sub(warmup_ms);
    let max = state.config.max_samples_per_query;
    let cfg = state.detect_config.detector_for(Some(&meta));
    let is_counter = aiops_models::is_counter(&meta.metric);
    let _permit = state
        .heavy_reads
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let archive = state.archive.clone();
    let points = tokio::task::spawn_blocking(move || {
        let samples = archive.read_series(id, from, end)?;
        let in_range = samples.len() - samples.partition_point(|s| s.0 < start);
        if in_range > max {
            return Ok(Err(in_range));
        }
        // The warm-up is bounded like the range: its latest `max` samples.
        let first = samples.len().saturating_sub(in_range + max);
        Ok(Ok(aiops_detect::replay::score_series(
            cfg,
            is_counter,
            &samples[first..],
            start,
        )))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e: aiops_ingest::IngestError| ApiError::from(e))?
    .map_err(|n| {
        ApiError::unprocessable(
            "too_many_samples",
            format!(
                "{n} samples in range, more than the limit of {max} (server.max_samples_per_query); narrow start..end"
            ),
        )
    })?;
    let rows: Vec<[Value; 7]> = points
        .iter()
        .map(|p| {
            [
                p.ts.into(),
                finite(p.value),
                finite(p.expected),
                finite(p.lower),
                finite(p.upper),
                finite(p.score),
                finite(p.rank_score),
            ]
        })
        .collect();
    let mut events: Vec<_> = state
        .detect
        .query(start, end, None, 0.0)
        .into_iter()
        .filter(|e| e.series_id == id)
        .collect();
    events.sort_by_key(|e| e.start_ms);
    Ok(Json(json!({
        "series": view(&meta, state.archive.stale_at(id)),
        "start_ms": start,
        "end_ms": end,
        "warmup_from_ms": from,
        "counter": is_counter,
        "columns": ["unix_ms", "value", "expected", "lower", "upper", "score", "rank_score"],
        "points": rows,
        "events": events,
    })))
}

/// A number, or `null` where JSON has none.
fn finite(v: f64) -> Value {
    if v.is_finite() { v.into() } else { Value::Null }
}

/// `GET /api/v1/scaling/{name}/outlook?steps=`: a target's latest step loads and its forecast
/// path ahead (p50 / p90 / p99 per step; default twice the lead, at most 240 steps).
#[utoipa::path(get, path = "/api/v1/scaling/{name}/outlook", tag = "scaling",
    params(
        ("name" = String, Path, description = "A scaling target's name"),
        ("steps" = Option<u32>, Query, minimum = 1, maximum = 240, description = "Forecast steps ahead (default: twice the lead)")
    ),
    responses(
        (status = 200, description = "Recent loads and the forecast path", body = ref("#/components/schemas/ScalingOutlook")),
        (status = 404, description = "No such target", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn scaling_outlook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let max = aiops_detect::scaling::outlook::MAX_PATH_STEPS;
    let mut steps = None;
    for (k, v) in params(raw) {
        match k.as_str() {
            "steps" => {
                steps = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=max).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "bad_parameter",
                                format!("steps={v:?}: expected an integer from 1 to {max}"),
                            )
                        })?,
                );
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?}; expected steps"),
                ));
            }
        }
    }
    let outlook = state
        .scaling_state
        .lock()
        .outlook(&state.scaling, &name, steps)
        .map_err(|_| ApiError::not_found(format!("no scaling target {name}")))?;
    Ok(Json(json!(outlook)))
}
