//! PagerDuty webhooks v3: signed events link, open or resolve incidents.

use super::*;

/// `POST /api/v1/pagerduty/webhook`: verifies `X-PagerDuty-Signature` over the raw body (401
/// when missing or wrong), drops repeated deliveries (by `X-Webhook-Id`, else the event id),
/// and on `incident.triggered` ranks causes for the incident's service and time and posts them
/// back as a note. Answers 202 at once; the work happens in the incident task.
#[utoipa::path(post, path = "/api/v1/pagerduty/webhook", tag = "incidents",
    request_body(content = ref("#/components/schemas/PagerdutyWebhook"), content_type = "application/json",
        description = "A PagerDuty webhook v3 delivery, signed (`X-PagerDuty-Signature`)"),
    params(("X-PagerDuty-Signature" = Option<String>, Header, description = "`v1=<hex HMAC-SHA256 of the body>`, one per secret")),
    responses(
        (status = 202, description = "Accepted (or a repeated delivery, ignored)", body = ref("#/components/schemas/WebhookAccepted")),
        (status = 401, description = "Missing or wrong signature", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(()))]
pub async fn pagerduty_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let svc = &state.incidents;
    let secrets = &svc.cfg.pagerduty.webhook_secrets;
    if secrets.is_empty() {
        return Err(ApiError::not_found(
            "the PagerDuty webhook is off: set incidents.pagerduty.webhook_secrets",
        ));
    }
    let sig = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing X-PagerDuty-Signature",
            )
        })?;
    if !pd::signature_ok(secrets, &body, sig) {
        warn!("A PagerDuty webhook carried no valid signature; refused.");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-PagerDuty-Signature does not match the body under any configured secret",
        ));
    }
    let env: WebhookEnvelope = parse_json(&body)?;
    let delivery = headers
        .get("x-webhook-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| env.event.id.clone(), str::to_owned);
    let ev = env.event;
    if ev.event_type.starts_with("incident.") && ev.event_type != "incident.annotated" {
        serde_json::from_value::<WebhookIncident>(ev.data.clone()).map_err(|e| {
            ApiError::bad_request("bad_event", format!("event.data is not an incident: {e}"))
        })?;
    }
    submit(
        svc,
        Command::Pagerduty {
            delivery,
            event: ev,
        },
        StatusCode::ACCEPTED,
    )
    .await
}

impl IncidentService {
    /// A verified PagerDuty webhook event: links or opens an incident, or resolves one.
    pub(super) fn on_pagerduty(
        &self,
        delivery: &str,
        ev: pd::WebhookEvent,
    ) -> Result<&'static str, ApiError> {
        let incident: Option<WebhookIncident> =
            if ev.event_type.starts_with("incident.") && ev.event_type != "incident.annotated" {
                serde_json::from_value(ev.data.clone()).ok()
            } else {
                None
            };
        let now = now_ms();
        let cfg = self.cfg.clone();
        self.apply(|b, _| {
            if !b.first_delivery(delivery) {
                return ("duplicate", Vec::new());
            }
            let Some(pdi) = incident else {
                return ("ignored", Vec::new());
            };
            let pref = PagerdutyRef {
                incident_id: pdi.id.clone(),
                html_url: pdi.html_url.clone(),
            };
            let ours = pdi
                .incident_key
                .as_deref()
                .and_then(|k| b.get(k).map(|i| i.id.clone()));
            let linked = ours.or_else(|| {
                b.incidents
                    .iter()
                    .rev()
                    .find(|i| {
                        i.pagerduty
                            .as_ref()
                            .is_some_and(|p| p.incident_id == pdi.id)
                    })
                    .map(|i| i.id.clone())
            });
            match ev.event_type.as_str() {
                "incident.triggered" => {
                    if let Some(id) = linked {
                        let inc = b.get_mut(&id).expect("found above");
                        inc.pagerduty = Some(pref);
                        inc.note(
                            now,
                            "pagerduty",
                            format!("PagerDuty incident {} triggered.", pdi.id),
                        );
                        // Our own incident: its candidates go back as a note at the next ranking.
                        inc.ranked_ms = None;
                        ("linked", vec![Change::Updated(id)])
                    } else {
                        let detected = pdi
                            .created_at
                            .as_deref()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .map_or(now, |t| t.as_millisecond());
                        let service = pdi
                            .service
                            .as_ref()
                            .and_then(|s| cfg.pagerduty.our_service(s));
                        let title = pdi
                            .title
                            .clone()
                            .unwrap_or_else(|| format!("PagerDuty incident {}", pdi.id));
                        let id = b.open_external(
                            &cfg,
                            IncidentSource::Pagerduty,
                            title,
                            Symptom {
                                service,
                                metric: None,
                                series: None,
                                detected_ms: detected,
                            },
                            now,
                        );
                        let inc = b.get_mut(&id).expect("just opened");
                        inc.pagerduty = Some(pref);
                        ("opened", vec![Change::Opened(id)])
                    }
                }
                "incident.resolved" => match linked {
                    Some(id) => {
                        let inc = b.get_mut(&id).expect("found above");
                        inc.note(
                            now,
                            "pagerduty",
                            format!("PagerDuty incident {} resolved.", pdi.id),
                        );
                        if inc.source == IncidentSource::Pagerduty
                            && inc.status == IncidentStatus::Open
                        {
                            inc.status = IncidentStatus::Resolved;
                            inc.resolved_ms = Some(now);
                        }
                        ("resolved", Vec::new())
                    }
                    None => ("ignored", Vec::new()),
                },
                _ => ("ignored", Vec::new()),
            }
        })
    }
}
