//! The Alertmanager webhook: firing and resolved alerts into the book.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AmPayload {
    version: String,
    alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AmAlert {
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    fingerprint: String,
}

/// An Alertmanager time in ms: `Err` when it is not RFC 3339, `None` before 1970 (Alertmanager's
/// zero time, 0001-01-01, means "not ended").
pub(super) fn am_time(s: &str) -> Result<Option<i64>, jiff::Error> {
    let t: jiff::Timestamp = s.parse()?;
    Ok((t.as_second() >= 0).then(|| t.as_millisecond()))
}

/// `POST /api/v1/alertmanager`: Alertmanager's webhook (payload version 4). Firing alerts open
/// or enrich incidents; resolved ones resolve them. 200 once the book is durable.
#[utoipa::path(post, path = "/api/v1/alertmanager", tag = "incidents",
    request_body(content = ref("#/components/schemas/AlertmanagerPayload"), content_type = "application/json",
        description = "Alertmanager's webhook payload, version 4"),
    responses(
        (status = 200, description = "Applied: firing alerts opened or enriched incidents, resolved ones resolved them", body = ref("#/components/schemas/AlertsApplied")),
        (status = 202, description = "Forwarded to the node that owns the incidents", body = ref("#/components/schemas/Accepted")),
        (status = 413, description = "Over `incidents.max_alerts_per_request`", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn alertmanager(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p: AmPayload = parse_json(&body)?;
    if p.version != "4" {
        return Err(ApiError::bad_request(
            "unsupported_version",
            format!(
                "webhook payload version {:?}: only \"4\" is understood",
                p.version
            ),
        ));
    }
    let max = state.incidents.cfg.max_alerts_per_request;
    if p.alerts.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{} alerts in one notification, over the limit of {max} (incidents.max_alerts_per_request); set max_alerts in Alertmanager's webhook_config",
                p.alerts.len()
            ),
        ));
    }
    let mut inputs = Vec::new();
    for (i, a) in p.alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            return Err(ApiError::bad_request(
                "bad_alert",
                format!(
                    "alerts[{i}].status = {:?}: expected firing or resolved",
                    a.status
                ),
            ));
        }
        let starts_ms = am_time(&a.starts_at).ok().flatten().ok_or_else(|| {
            ApiError::bad_request(
                "bad_alert",
                format!(
                    "alerts[{i}].startsAt = {:?}: not an RFC 3339 time after 1970",
                    a.starts_at
                ),
            )
        })?;
        // Absent, or the zero time while firing: not ended.
        let ends_ms = match a.ends_at.as_deref().map(am_time).transpose() {
            Ok(t) => t.flatten(),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "bad_alert",
                    format!("alerts[{i}].endsAt = {:?}: not an RFC 3339 time", a.ends_at),
                ));
            }
        };
        inputs.push(AlertInput {
            alert: AlertRef {
                fingerprint: a.fingerprint.clone(),
                name: a
                    .labels
                    .get("alertname")
                    .cloned()
                    .unwrap_or_else(|| "alert".into()),
                status: a.status.clone(),
                labels: a
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                starts_ms,
                ends_ms: ends_ms.filter(|_| a.status == "resolved"),
            },
            summary: a.annotations.get("summary").cloned(),
        });
    }
    submit(
        &state.incidents,
        Command::Alerts { alerts: inputs },
        StatusCode::OK,
    )
    .await
}
