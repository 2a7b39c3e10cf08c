//! The triage API: list, get, open (with analysis), feedback.

use super::*;

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("request body: {e}")))
}

pub(super) fn summary(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "status": i.status,
        "source": i.source,
        "opened_ms": i.opened_ms,
        "resolved_ms": i.resolved_ms,
        "symptom": i.symptom,
        "services": i.services,
        "top_candidate": i.candidates.first(),
        "pagerduty": i.pagerduty,
    })
}

/// `GET /api/v1/incidents?status=open|resolved&limit=N`: newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents",
    params(
        ("status" = Option<String>, Query, pattern = "^(?:open|resolved)$", description = "`open` or `resolved`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Most incidents listed (default 100)")
    ),
    responses((status = 200, description = "Incident summaries, newest first, and the feedback tally", body = ref("#/components/schemas/IncidentList")), crate::openapi::Refusals),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut status = None;
    let mut limit = 100usize;
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match &*k {
            "status" => {
                status = Some(match &*v {
                    "open" => IncidentStatus::Open,
                    "resolved" => IncidentStatus::Resolved,
                    other => {
                        return Err(ApiError::bad_request(
                            "bad_parameter",
                            format!("status={other:?}: expected open or resolved"),
                        ));
                    }
                })
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_parameter",
                            format!("limit={v:?}: expected 1..=10000"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?} (status, limit)"),
                ));
            }
        }
    }
    let book = state.incidents.snapshot();
    let items: Vec<Value> = book
        .incidents
        .iter()
        .rev()
        .filter(|i| status.is_none_or(|s| i.status == s))
        .take(limit)
        .map(summary)
        .collect();
    // `owner`: this node acts on the incidents (on Kafka, one node does; the others mirror).
    Ok(Json(
        json!({"incidents": items, "feedback": book.feedback, "owner": state.incidents.active()}),
    ))
}

/// `GET /api/v1/incidents/{id}`: the whole incident (candidates, timeline).
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc-…`)")),
    responses(
        (status = 200, description = "The incident with its ranked candidates and timeline", body = ref("#/components/schemas/Incident")),
        (status = 404, description = "No such incident", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    state
        .incidents
        .snapshot()
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalyseRequest {
    /// The symptom's service.
    service: Option<String>,
    /// The symptom's series (a selector).
    series: Option<String>,
    /// Detection time (RFC 3339 or Unix seconds).
    detected_at: Value,
    /// Start of the normal window (default: detected_at − lookback).
    start: Option<Value>,
    /// End of the window (default: now).
    end: Option<Value>,
    /// Title.
    title: Option<String>,
}

pub(super) fn time_field(name: &str, v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => crate::query::parse_time(name, &n.to_string()),
        Value::String(s) => crate::query::parse_time(name, s),
        _ => Err(ApiError::bad_request(
            "bad_parameter",
            format!("{name}: expected RFC 3339 text or Unix seconds"),
        )),
    }
}

/// `POST /api/v1/incidents`: analyse a given symptom and window now. 201 with the incident.
///
/// Bounded: the window at most `incidents.max_window_secs` and within the data kept, at most
/// `incidents.max_analyses_per_minute` per caller (429 + `Retry-After`), one read permit among
/// `server.max_concurrent_reads`. The incident is recorded only once the analysis is done: a
/// request that fails or is cut off by its deadline leaves nothing behind.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents",
    request_body(content = ref("#/components/schemas/AnalyseRequest"), content_type = "application/json"),
    responses(
        (status = 201, description = "The analysis, recorded as a resolved incident", body = ref("#/components/schemas/Incident")),
        (status = 400, description = "Malformed body, a time or selector that does not parse", body = ref("#/components/schemas/Error")),
        (status = 422, description = "A window out of order (`start < detected_at < end`), a detection time outside the data kept, or a window over `incidents.max_window_secs`", body = ref("#/components/schemas/Error")),
        (status = 429, description = "Over `incidents.max_analyses_per_minute` for this caller (see `Retry-After`)", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AnalyseRequest = parse_json(&body)?;
    let detected = time_field("detected_at", &req.detected_at)?;
    let svc = state.incidents.clone();
    let start = match &req.start {
        Some(v) => time_field("start", v)?,
        None => detected - svc.cfg.lookback_secs as i64 * 1000,
    };
    let now = now_ms();
    let end = match &req.end {
        Some(v) => time_field("end", v)?,
        None => now.max(detected + 1000),
    };
    if !(start < detected && detected < end) {
        return Err(ApiError::unprocessable(
            "bad_window",
            "need start < detected_at < end (a normal window before the detection time and an abnormal one after)",
        ));
    }
    let oldest = match state.config.max_sample_age_secs {
        0 => i64::MIN,
        age => now.saturating_sub(age as i64 * 1000),
    };
    if detected < oldest || detected > now + 3_600_000 {
        return Err(ApiError::unprocessable(
            "bad_window",
            format!(
                "detected_at {} is outside the data this node keeps ({} to an hour from now)",
                show_ms(detected),
                show_ms(oldest)
            ),
        ));
    }
    let max_window = svc.cfg.max_window_secs as i64 * 1000;
    if end - start > max_window {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            format!(
                "the window from start to end spans {} s, over the limit of {} s (incidents.max_window_secs)",
                (end - start) / 1000,
                svc.cfg.max_window_secs
            ),
        ));
    }
    if let Some(s) = &req.series {
        s.parse::<Selector>()
            .map_err(|e| ApiError::bad_request("bad_selector", format!("series={s:?}: {e}")))?;
    }
    let who = caller
        .and_then(|axum::Extension(c)| c.0)
        .unwrap_or_else(|| "anonymous".into());
    if let Err(wait) = state.analyses.take(&who) {
        let secs = wait.as_secs().max(1);
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "{who} asked for more than {} analyses a minute (incidents.max_analyses_per_minute); retry in {secs} s",
                svc.cfg.max_analyses_per_minute
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return Ok(resp);
    }
    let permit = state
        .heavy_reads
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    let title = req.title.clone().unwrap_or_else(|| {
        format!(
            "Analysis of {} at {}",
            req.service
                .as_deref()
                .or(req.series.as_deref())
                .unwrap_or("the system"),
            jiff::Timestamp::from_millisecond(detected)
                .map(|t| t.to_string())
                .unwrap_or_default()
        )
    });
    let symptom = Symptom {
        service: req.service.clone(),
        metric: None,
        series: req.series.clone(),
        detected_ms: detected,
    };
    let (svc2, catalog, archive) = (svc.clone(), state.catalog.clone(), state.archive.clone());
    let (symptom, analysis) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        analyse_window(&svc2, &catalog, &archive, symptom, start, end)
    })
    .await
    .map_err(ApiError::internal)?;
    let id = svc.apply(|b, _| {
        let id = b.open_external(&svc.cfg, IncidentSource::Api, title, symptom, now_ms());
        let now = now_ms();
        if let Some(i) = b.get_mut(&id) {
            i.candidates = analysis.candidates;
            i.data_quality = analysis.data_quality;
            i.window_start_ms = start;
            i.window_end_ms = end;
            i.ranked_ms = Some(now);
            let text = match i.candidates.first() {
                Some(c) => format!("Ranked: {} first ({}).", c.service, c.metric),
                None => "Ranked: no metric moved around the detection time.".to_owned(),
            };
            i.note(now, "ranked", text);
            // An on-demand analysis resolves at once (nothing keeps it open): a record, not a
            // page.
            i.status = IncidentStatus::Resolved;
            i.resolved_ms = Some(now);
        }
        (id, Vec::new())
    })?;
    let inc = svc
        .snapshot()
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::internal("incident vanished"))?;
    let mut resp = (StatusCode::CREATED, Json(inc)).into_response();
    if let Ok(v) = format!("/api/v1/incidents/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub(super) fn show_ms(t: i64) -> String {
    jiff::Timestamp::from_millisecond(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{t} ms"))
}

/// An on-demand analysis of `symptom` over an explicit window. Returns the symptom (its
/// service filled in from its series when not given) and the ranking.
pub(super) fn analyse_window(
    svc: &IncidentService,
    catalog: &SeriesCatalog,
    archive: &Archive,
    mut symptom: Symptom,
    start: i64,
    end: i64,
) -> (Symptom, aiops_rca::analyse::Analysis) {
    let graph = svc.graph.read().unwrap_or_else(|p| p.into_inner()).clone();
    let window = svc.window(catalog, archive, start, end);
    let series = &window.series;
    if symptom.service.is_none()
        && let Some(sel) = symptom
            .series
            .as_deref()
            .and_then(|s| s.parse::<Selector>().ok())
        && let Some(m) = series.iter().find(|m| sel.matches(m))
    {
        // The symptom series' service is the symptom service, when not given.
        symptom.service = aiops_models::service_of(m);
    }
    let read = |sid, _from, _to| window.samples.get(&sid).cloned().unwrap_or_default();
    let analysis = analyse(
        &AnalysisRequest {
            series,
            detected_ms: symptom.detected_ms,
            start_ms: start,
            end_ms: end,
            symptom_service: symptom.service.as_deref(),
            max_series: svc.cfg.max_series,
            top: svc.cfg.max_candidates,
        },
        &read,
        &graph,
    );
    (symptom, analysis)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedbackRequest {
    service: String,
    metric: Option<String>,
    comment: Option<String>,
}

/// `POST /api/v1/incidents/{id}/feedback`: the responder names the true root cause.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/feedback", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc-…`)")),
    request_body(content = ref("#/components/schemas/FeedbackRequest"), content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded; the accuracy tally so far", body = ref("#/components/schemas/FeedbackResult")),
        (status = 202, description = "Forwarded to the node that owns the incidents", body = ref("#/components/schemas/Accepted")),
        (status = 404, description = "No such incident", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn feedback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: FeedbackRequest = parse_json(&body)?;
    if state.incidents.snapshot().get(&id).is_none() {
        return Err(ApiError::not_found(format!("no incident {id}")));
    }
    let cmd = Command::Feedback {
        id,
        service: req.service,
        metric: req.metric,
        comment: req.comment,
    };
    submit(&state.incidents, cmd, StatusCode::OK).await
}

/// Applies `cmd` here, or — on a Kafka deployment — sends it to the incident owner and
/// answers 202 once it is durable on its way (the change shows in the incidents shortly).
pub(super) async fn submit(
    svc: &IncidentService,
    cmd: Command,
    ok: StatusCode,
) -> Result<Response, ApiError> {
    if let Some((_, Forward(forward))) = &svc.role {
        forward(cmd).await.map_err(|e| {
            ApiError::unavailable(
                "not_durable",
                format!("cannot pass the change to the incident owner: {e}"),
            )
        })?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "applied_by": "incident owner"})),
        )
            .into_response());
    }
    let out = svc.execute(cmd)?;
    Ok((ok, Json(out)).into_response())
}
