//! Reading the catalog and the archive.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiops_models::{Selector, SeriesId, SeriesMeta};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use crate::{ApiError, AppState};

/// A series as the API shows it.
#[derive(Debug, Serialize)]
pub struct SeriesView {
    id: SeriesId,
    source: &'static str,
    metric: String,
    labels: BTreeMap<String, String>,
    /// Unix ms of the stale marker that ended the series, if it has ended.
    stale_at_ms: Option<i64>,
}

pub(crate) fn view(meta: &SeriesMeta, stale_at_ms: Option<i64>) -> SeriesView {
    SeriesView {
        id: meta.id,
        source: meta.source.as_str(),
        metric: meta.metric.clone(),
        labels: meta
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        stale_at_ms,
    }
}

pub(crate) fn params(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The largest `limit` a series listing takes (it is cut to `server.max_series_per_query`).
const MAX_LIMIT: usize = 1_000_000;

/// `GET /api/v1/series?match[]=SELECTOR&limit=N`: series matching any of the selectors (all
/// series without one), sorted by metric and labels.
///
/// Bounded: at most `server.max_series_selectors` selectors and `server.max_series_scanned`
/// series visited (catalog size × selectors), each answered `422` naming the limit; the scan runs
/// on the blocking pool, one shard of the catalog at a time, and stops at the request deadline.
#[utoipa::path(get, path = "/api/v1/series", tag = "query",
    params(
        ("match[]" = Option<Vec<crate::openapi::SeriesSelector>>, Query, description = "Series selectors (any matches; at most `server.max_series_selectors`); none: every series"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1_000_000, description = "Most series listed (at most `server.max_series_per_query`)")
    ),
    responses(
        (status = 200, description = "Matching series, sorted by metric and labels", body = ref("#/components/schemas/SeriesList")),
        (status = 422, description = "Over `server.max_series_selectors` or `server.max_series_scanned`", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn list_series(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut selectors = Vec::new();
    let mut limit = state.config.max_series_per_query;
    let max_selectors = state.config.max_series_selectors;
    for (k, v) in params(raw) {
        match k.as_str() {
            "match[]" | "match" => {
                if selectors.len() == max_selectors {
                    return Err(ApiError::limit(
                        "server.max_series_selectors",
                        format!("more than {max_selectors} match[] selectors in one request"),
                    ));
                }
                selectors.push(
                    v.parse::<Selector>()
                        .map_err(|e| ApiError::bad_request("bad_selector", e.to_string()))?,
                )
            }
            "limit" => {
                limit = parse_limit(&v, MAX_LIMIT)?.min(state.config.max_series_per_query);
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?}; expected match[] or limit"),
                ));
            }
        }
    }
    if selectors.is_empty() {
        selectors.push(Selector::default());
    }
    let max_scanned = state.config.max_series_scanned;
    let scanned = state.catalog.len().saturating_mul(selectors.len());
    if scanned > max_scanned {
        return Err(ApiError::limit(
            "server.max_series_scanned",
            format!(
                "{} selectors over {} series would scan {scanned} series, more than {max_scanned}; use fewer selectors",
                selectors.len(),
                state.catalog.len()
            ),
        ));
    }
    let _permit = state
        .heavy_reads
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(state.config.request_timeout_secs);
    let (catalog, archive) = (state.catalog.clone(), state.archive.clone());
    tokio::task::spawn_blocking(move || {
        let mut found: Vec<Arc<SeriesMeta>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut visited = 0usize;
        let mut late = false;
        for sel in &selectors {
            catalog.scan(|m| {
                visited += 1;
                if visited.is_multiple_of(4096) && std::time::Instant::now() > deadline {
                    late = true;
                    return false;
                }
                if sel.matches(m) && seen.insert(m.id) {
                    found.push(m.clone());
                }
                true
            });
            if late {
                return Err(ApiError::unavailable(
                    "timeout",
                    "listing series did not finish within the request deadline; narrow the selectors",
                ));
            }
        }
        found.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        let total = found.len();
        let series: Vec<SeriesView> = found
            .iter()
            .take(limit)
            .map(|m| view(m, archive.stale_at(m.id)))
            .collect();
        Ok(Json(serde_json::json!({
            "series": series,
            "total": total,
            "truncated": total > limit,
        })))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Parses a `limit` parameter: an integer from 1 to `max`, else a 400 naming the range.
fn parse_limit(v: &str, max: usize) -> Result<usize, ApiError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_parameter",
                format!("limit={v:?}: expected an integer from 1 to {max}"),
            )
        })
}

/// Parses a time parameter: RFC 3339 or Unix seconds (fractions allowed), like Prometheus.
pub(crate) fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e13
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            ApiError::bad_request(
                "bad_parameter",
                format!("{name}={v:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or Unix seconds"),
            )
        })
}

/// A sample value in JSON: a number, or as Prometheus' JSON writes what JSON numbers cannot
/// hold, `"+Inf"`, `"-Inf"` or `"NaN"`.
pub fn sample_value(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::Value::from(v)
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// `GET /api/v1/series/{id}/samples?start=&end=`: the samples of one series, `[unix_ms, value]`
/// pairs in time order (`"+Inf"`, `"-Inf"`, `"NaN"` where JSON has no number). Defaults: the
/// last hour.
#[utoipa::path(get, path = "/api/v1/series/{id}/samples", tag = "query",
    params(
        ("id" = String, Path, pattern = "^[0-9a-fA-F]{16}$", description = "Series id (16 hex digits)"),
        ("start" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: end − 1 h)"),
        ("end" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: now)")
    ),
    responses(
        (status = 200, description = "The samples, `[unix_ms, value]` in time order", body = ref("#/components/schemas/Samples")),
        (status = 404, description = "Unknown series", body = ref("#/components/schemas/Error")),
        (status = 422, description = "`start` after `end`, or over `server.max_samples_per_query` samples in the range", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn series_samples(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (id, meta, start, end) = series_range(&state, &id, raw)?;
    let _permit = state
        .heavy_reads
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let archive = state.archive.clone();
    let samples = tokio::task::spawn_blocking(move || archive.read_series(id, start, end))
        .await
        .map_err(ApiError::internal)??;
    if samples.len() > state.config.max_samples_per_query {
        return Err(ApiError::unprocessable(
            "too_many_samples",
            format!(
                "{} samples in range, more than the limit of {}; narrow start..end",
                samples.len(),
                state.config.max_samples_per_query
            ),
        ));
    }
    let points: Vec<(i64, serde_json::Value)> = samples
        .into_iter()
        .map(|(t, v)| (t, sample_value(v)))
        .collect();
    Ok(Json(serde_json::json!({
        "series": view(&meta, state.archive.stale_at(id)),
        "start_ms": start,
        "end_ms": end,
        "samples": points,
    })))
}

/// `GET /api/v1/anomalies?since=&until=&service=&min_score=`: anomaly events overlapping the
/// range (default: the last 24 hours), newest first.
#[utoipa::path(get, path = "/api/v1/anomalies", tag = "query",
    params(
        ("since" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: 24 h ago)"),
        ("until" = Option<crate::openapi::QueryTime>, Query, description = "RFC 3339 or Unix seconds (default: now)"),
        ("service" = Option<String>, Query, description = "Only this service's"),
        ("min_score" = Option<f64>, Query, minimum = 0, maximum = 1, description = "Only events scoring at least this (0–1)")
    ),
    responses(
        (status = 200, description = "Anomaly events, newest first", body = ref("#/components/schemas/Anomalies")),
        (status = 422, description = "`since` after `until`", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn anomalies(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (mut since, mut until, mut service, mut min_score) = (None, None, None, 0.0);
    for (k, v) in params(raw) {
        match k.as_str() {
            "since" => since = Some(parse_time("since", &v)?),
            "until" => until = Some(parse_time("until", &v)?),
            "service" => service = Some(v),
            "min_score" => {
                min_score = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_parameter",
                            format!("min_score={v:?}: expected a number between 0 and 1"),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!(
                        "unknown parameter {other:?}; expected since, until, service or min_score"
                    ),
                ));
            }
        }
    }
    let until = until.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let since = since.unwrap_or(until - 86_400_000);
    if since > until {
        return Err(ApiError::unprocessable(
            "bad_range",
            format!("since ({since} ms) is after until ({until} ms)"),
        ));
    }
    let mut events = state
        .detect
        .query(since, until, service.as_deref(), min_score);
    events.sort_by_key(|e| std::cmp::Reverse(e.start_ms));
    Ok(Json(
        serde_json::json!({"since_ms": since, "until_ms": until, "anomalies": events}),
    ))
}

/// The most entries `GET /api/v1/scores` lists.
const MAX_SCORES_LIMIT: usize = 10_000;

/// `GET /api/v1/scores?limit=&service=`: the series most unusual right now — each series'
/// latest continuous score (`rank_score`, its tail probability `p_value`) and alarm score,
/// highest `rank_score` first. Read from what detection publishes about once a second (at most
/// `detect.max_score_gauges` series); never waits for scoring.
#[utoipa::path(get, path = "/api/v1/scores", tag = "query",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10_000, description = "Most series listed (default 100)"),
        ("service" = Option<String>, Query, description = "Only this service's series")
    ),
    responses(
        (status = 200, description = "Series by how unusual they are now, most unusual first", body = ref("#/components/schemas/Scores")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn scores(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (mut limit, mut service) = (100usize, None);
    for (k, v) in params(raw) {
        match k.as_str() {
            "limit" => {
                limit = parse_limit(&v, MAX_SCORES_LIMIT)?;
            }
            "service" => service = Some(v),
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?}; expected limit or service"),
                ));
            }
        }
    }
    let top = state.detect.top_scores();
    let mut out = Vec::new();
    for t in top.iter() {
        if out.len() == limit {
            break;
        }
        let meta = state.catalog.get(t.series_id);
        let svc = meta.as_deref().and_then(aiops_models::service_of);
        if service.is_some() && svc != service {
            continue;
        }
        out.push(serde_json::json!({
            "series_id": t.series_id,
            "metric": meta.as_ref().map(|m| m.metric.clone()),
            "service": svc,
            "labels": meta.as_ref().map(|m| {
                m.labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_string())))
                    .collect::<serde_json::Map<_, _>>()
            }),
            "rank_score": t.rank_score,
            "p_value": t.p_value(),
            "score": t.score,
            "alarm": t.alarm,
        }));
    }
    Ok(Json(serde_json::json!({ "scores": out })))
}

/// A series route's path id and `start`/`end` parameters: the series (400 for a malformed id,
/// 404 for an unknown one) and the range (default: the last hour; 422 when backwards).
pub(crate) fn series_range(
    state: &AppState,
    id: &str,
    raw: Option<String>,
) -> Result<(SeriesId, Arc<SeriesMeta>, i64, i64), ApiError> {
    let id: SeriesId = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_series_id",
            format!("{id:?} is not a series id (16 hex digits)"),
        )
    })?;
    let meta = state
        .catalog
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("series {id} is not known")))?;
    let (mut start, mut end) = (None, None);
    for (k, v) in params(raw) {
        match k.as_str() {
            "start" => start = Some(parse_time("start", &v)?),
            "end" => end = Some(parse_time("end", &v)?),
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?}; expected start or end"),
                ));
            }
        }
    }
    let end = end.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let start = start.unwrap_or(end - 3_600_000);
    if start > end {
        return Err(ApiError::unprocessable(
            "bad_range",
            format!("start ({start} ms) is after end ({end} ms)"),
        ));
    }
    Ok((id, meta, start, end))
}
