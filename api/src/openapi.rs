//! The OpenAPI 3.1 document (`GET /api/v1/openapi.json`). Every route's method, path,
//! parameters, statuses and security come from the `#[utoipa::path]` attribute on its handler,
//! and the router registers each handler through that same attribute (`utoipa_axum::routes!`):
//! a route cannot exist undocumented. The shapes of the JSON bodies are the component schemas
//! below.

use serde_json::{Value, json};

/// The error answers every route may give besides its own, named once for all the
/// `#[utoipa::path]` attributes (documentation only: handlers answer with [`crate::ApiError`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    #[response(
        status = "4XX",
        description = "Refused: `error.code` and `error.message` say why (401 without a valid credential, 403 without the scope, 413/414 over a size limit, …)"
    )]
    Client(ErrorBody),
    #[response(
        status = "5XX",
        description = "Failed or unavailable (503: retry; see `Retry-After`)"
    )]
    Server(ErrorBody),
}

/// The same under `/apis`, where errors are Kubernetes `Status` objects.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum KubeRefusals {
    #[response(
        status = "4XX",
        description = "Refused, as a Kubernetes `Status` (401 without a front-proxy certificate or credential, 403 without the scaling scope)"
    )]
    Client(KubeStatus),
    #[response(status = "5XX", description = "Failed, as a Kubernetes `Status`")]
    Server(KubeStatus),
}

/// Stands for the `Error` component schema below (the document's components are those).
#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: String,
}

/// Stands for the `Status` component schema below.
#[derive(utoipa::ToSchema)]
#[schema(as = Status)]
#[allow(dead_code)]
pub struct KubeStatus {
    status: String,
}

fn candidate_schema() -> Value {
    json!({"type": "object", "properties": {
                    "rank": {"type": "integer"}, "service": {"type": "string"}, "metric": {"type": "string"},
                    "score": {"type": ["number", "string"], "description": "Move after detection in spreads of the normal window"},
                    "confidence": {"type": ["number", "string"], "description": "Calibrated probability of being the root cause"},
                    "direction": {"type": "string", "enum": ["up", "down"]},
                    "onset_ms": {"type": "integer"}, "peak": {"type": ["number", "string"]}, "peak_ms": {"type": "integer"},
                    "baseline": {"type": ["number", "string"]}, "spread": {"type": ["number", "string"]},
                    "path": {"type": "array", "items": {"type": "string"}, "description": "Call path from the symptom"},
                    "method": {"type": "string"}, "explanation": {"type": "string"},
                    "evidence": {"type": "array", "description": "The service's metrics that moved", "items": {"type": "object", "properties": {
                        "metric": {"type": "string"}, "score": {"type": ["number", "string"]}, "direction": {"type": "string"}, "onset_ms": {"type": "integer"},
                        "baseline": {"type": ["number", "string"]}, "peak": {"type": ["number", "string"]}, "peak_ms": {"type": "integer"}}}}}})
}

/// The document: the paths generated from the handlers, with the component schemas, the
/// security schemes and the description.
pub fn document(generated: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(generated).expect("an OpenAPI document serialises");
    doc["info"] = json!({
        "title": "aiops API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "remote_write in; series, samples and anomalies; incidents with ranked root-cause candidates, responder feedback, the Alertmanager and PagerDuty webhooks; the Kubernetes external metrics API and the KEDA JSON of scaling targets; health. Errors are `{\"error\": {\"code\", \"message\"}}` (Kubernetes `Status` objects under `/apis`). With credentials configured, every route but `/healthz`, `/readyz`, this document and the signed PagerDuty webhook needs one with its scope (README, Security)."
    });
    doc["components"] = components();
    // Every body this API takes is required.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths.values_mut().filter_map(Value::as_object_mut) {
            for o in op.values_mut() {
                if o.get("requestBody").is_some() {
                    o["requestBody"]["required"] = json!(true);
                }
            }
        }
    }
    doc
}

fn components() -> Value {
    let object = json!({"type": "object"});
    let time = json!({"type": ["string", "number"], "description": "RFC 3339 or Unix seconds"});
    let mut schemas = serde_json::Map::new();
    for (name, schema) in [
        (
            "Error",
            json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
        ),
        (
            "Status",
            json!({"type": "object", "required": ["kind", "status"], "properties": {"kind": {"const": "Status"}, "apiVersion": {"type": "string"}, "status": {"const": "Failure"}, "message": {"type": "string"}, "reason": {"type": "string"}, "code": {"type": "integer"}}}),
        ),
        ("Object", json!(object)),
        (
            "KubeObject",
            json!({"type": "object", "required": ["kind", "apiVersion"], "properties": {"kind": {"type": "string"}, "apiVersion": {"type": "string"}}}),
        ),
        (
            "RemoteWriteBody",
            json!({"type": "string", "format": "binary"}),
        ),
        (
            "Health",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
        ),
        (
            "Ready",
            json!({"type": "object", "required": ["status"], "properties": {
                "status": {"enum": ["ready", "degraded", "unavailable"]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "disk": object, "archive": object, "sources": object, "queue": object, "series": {"type": "integer"}}}),
        ),
        (
            "Series",
            json!({"type": "object", "required": ["id", "metric"], "properties": {
                "id": {"type": "string"}, "metric": {"type": "string"}, "source": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "stale_at_ms": {"type": ["integer", "null"]}}}),
        ),
        (
            "SeriesList",
            json!({"type": "object", "required": ["series", "total", "truncated"], "properties": {
                "series": {"type": "array", "items": {"$ref": "#/components/schemas/Series"}},
                "total": {"type": "integer"}, "truncated": {"type": "boolean"}}}),
        ),
        (
            "Samples",
            json!({"type": "object", "required": ["samples"], "properties": {
                "series": {"$ref": "#/components/schemas/Series"},
                "start_ms": {"type": "integer"}, "end_ms": {"type": "integer"},
                "samples": {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": ["number", "string"], "description": "`\"+Inf\"`, `\"-Inf\"`, `\"NaN\"` where JSON has no number"}]}}}}),
        ),
        (
            "Anomalies",
            json!({"type": "object", "required": ["anomalies"], "properties": {
                "since_ms": {"type": "integer"}, "until_ms": {"type": "integer"},
                "anomalies": {"type": "array", "items": object}}}),
        ),
        (
            "FeedbackTally",
            json!({"type": "object", "properties": {"total": {"type": "integer"}, "top1": {"type": "integer"}, "top3": {"type": "integer"}, "top5": {"type": "integer"}}}),
        ),
        (
            "AnalyseRequest",
            json!({"type": "object", "required": ["detected_at"], "additionalProperties": false, "properties": {
                "service": {"type": "string", "description": "The symptom's service"},
                "series": {"type": "string", "description": "The symptom's series, a selector"},
                "detected_at": time,
                "start": {"type": ["string", "number"], "description": "Start of the normal window (default: detected_at − incidents.lookback_secs)"},
                "end": {"type": ["string", "number"], "description": "End of the window (default: now)"},
                "title": {"type": "string"}}}),
        ),
        (
            "FeedbackRequest",
            json!({"type": "object", "required": ["service"], "additionalProperties": false, "properties": {
                "service": {"type": "string", "description": "The true root cause's service"},
                "metric": {"type": "string"}, "comment": {"type": "string"}}}),
        ),
        (
            "FeedbackResult",
            json!({"type": "object", "properties": {"feedback": object, "accuracy": {"$ref": "#/components/schemas/FeedbackTally"}}}),
        ),
        (
            "Accepted",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "accepted"}, "applied_by": {"type": "string"}}}),
        ),
        (
            "AlertmanagerPayload",
            json!({"type": "object", "required": ["version", "alerts"], "properties": {
                "version": {"const": "4"},
                "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "labels", "startsAt", "fingerprint"], "properties": {
                    "status": {"enum": ["firing", "resolved"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "startsAt": {"type": "string"}, "endsAt": {"type": "string"}, "fingerprint": {"type": "string"}}}}}}),
        ),
        (
            "AlertsApplied",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}, "alerts": {"type": "integer"}, "incidents": {"type": "array", "items": {"type": "string"}}}}),
        ),
        (
            "PagerdutyWebhook",
            json!({"type": "object", "required": ["event"], "properties": {"event": object}}),
        ),
        (
            "WebhookAccepted",
            json!({"type": "object", "properties": {"status": {"type": "string"}}}),
        ),
        (
            "ScalingValue",
            json!({"type": "object", "required": ["name", "value", "desired_replicas"], "properties": {
                "name": {"type": "string"}, "value": {"type": "number"}, "desired_replicas": {"type": "integer"},
                "current": {"type": "number"}, "forecast": {"type": ["number", "null"]}, "forecast_p50": {"type": ["number", "null"]},
                "mode": {"type": "string"}, "stale": {"type": "boolean"}, "updated_ms": {"type": "integer"}, "for_ms": {"type": "integer"}}}),
        ),
        (
            "ScalingList",
            json!({"type": "object", "required": ["targets"], "properties": {"targets": {"type": "array", "items": object}}}),
        ),
        (
            "IncidentList",
            json!({"type": "object", "required": ["incidents"], "properties": {
                "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/IncidentSummary"}},
                "feedback": {"$ref": "#/components/schemas/FeedbackTally"},
                "owner": {"type": "boolean", "description": "This node acts on the incidents (on Kafka one node does; the others mirror them)"}}}),
        ),
        ("Candidate", json!(candidate_schema())),
        (
            "IncidentSummary",
            json!({"type": "object", "properties": {
                "id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string", "enum": ["open", "resolved"]},
                "source": {"type": "string", "enum": ["detector", "alertmanager", "pagerduty", "api"]},
                "opened_ms": {"type": "integer"}, "resolved_ms": {"type": ["integer", "null"]},
                "symptom": {"type": "object"}, "services": {"type": "array", "items": {"type": "string"}},
                "top_candidate": {"oneOf": [{"$ref": "#/components/schemas/Candidate"}, {"type": "null"}]}}}),
        ),
        (
            "Incident",
            json!({"type": "object", "properties": {
                "id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string"}, "source": {"type": "string"},
                "opened_ms": {"type": "integer"}, "updated_ms": {"type": "integer"}, "resolved_ms": {"type": ["integer", "null"]},
                "symptom": {"type": "object", "properties": {"service": {"type": ["string", "null"]}, "metric": {"type": ["string", "null"]}, "series": {"type": ["string", "null"]}, "detected_ms": {"type": "integer"}}},
                "services": {"type": "array", "items": {"type": "string"}},
                "anomalies": {"type": "array", "items": {"type": "string"}},
                "alerts": {"type": "array", "items": {"type": "object"}},
                "alerts_dropped": {"type": "integer", "description": "Alerts not kept over incidents.max_alerts_per_incident"},
                "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
                "ranked_ms": {"type": ["integer", "null"]},
                "window_start_ms": {"type": "integer"}, "window_end_ms": {"type": "integer"},
                "data_quality": {"type": "object"},
                "timeline": {"type": "array", "items": {"type": "object", "properties": {"at_ms": {"type": "integer"}, "kind": {"type": "string"}, "text": {"type": "string"}}}},
                "feedback": {"type": ["object", "null"]},
                "pagerduty": {"type": ["object", "null"]}}}),
        ),
    ] {
        schemas.insert(name.to_owned(), schema);
    }
    json!({"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A `[[server.credentials]]` token (or `server.api_token` / `server.scaling_token`)"},
            "basic": {"type": "http", "scheme": "basic", "description": "A `[[server.credentials]]` username and password"},
            "frontProxy": {"type": "mutualTLS", "description": "The Kubernetes aggregator's front-proxy client certificate (`server.front_proxy_ca_file`), on `server.tls_listen`: the scaling scope"}
        }, "schemas": schemas})
}
