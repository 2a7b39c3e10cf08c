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

/// Stands for the `QueryTime` component schema below (a time in a query string).
#[derive(utoipa::ToSchema)]
#[schema(as = QueryTime)]
#[allow(dead_code)]
pub struct QueryTime(String);

/// Stands for the `SeriesSelector` component schema below.
#[derive(utoipa::ToSchema)]
#[schema(as = SeriesSelector)]
#[allow(dead_code)]
pub struct SeriesSelector(String);

/// Stands for the `LabelSelector` component schema below.
#[derive(utoipa::ToSchema)]
#[schema(as = LabelSelector)]
#[allow(dead_code)]
pub struct LabelSelector(String);

/// RFC 3339 as the API reads it (`2024-05-01T12:00:00Z`, `…T12:00:00.250+02:00`), with years
/// matching `year`. The pattern is a little stricter than the parser (days 29–31 are not spelt
/// out), so that every string it allows is a real time.
fn rfc3339(year: &str) -> String {
    format!(
        r"{year}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{{1,9}})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
    )
}
/// Any year.
const ANY_YEAR: &str = "[0-9]{4}";
/// Unix seconds as text.
const UNIX_SECONDS: &str = r"-?[0-9]{1,12}(?:\.[0-9]{1,6})?";

/// A time as the API reads it: RFC 3339 or Unix seconds.
fn time_pattern() -> String {
    format!("^(?:{}|{UNIX_SECONDS})$", rfc3339(ANY_YEAR))
}

/// The series selector grammar (`models::selector`): an optional metric name and matchers in
/// braces, at least one of the two (or nothing: every series). Regex matchers are spelt out
/// only for alternations of literals, `.*` and `.+` (any RE2 pattern is accepted).
fn series_selector_pattern() -> String {
    let label = r"[a-zA-Z_][a-zA-Z0-9_]*";
    let metric = r"[a-zA-Z_:][a-zA-Z0-9_:]*";
    let text = r#""(?:[^"\\]|\\.)*""#;
    let piece = r"(?:[a-zA-Z0-9_:-]|\.\*|\.\+)*";
    let regex = format!(r#""{piece}(?:\|{piece})*""#);
    let matcher = format!(r"{label} *(?:!?= *{text}|[=!]~ *{regex})");
    let matchers = format!(r"{matcher} *(?:, *{matcher} *)*(?:, *)?");
    format!(r"^ *(?:{metric} *(?:\{{ *(?:{matchers})?\}})?|\{{ *{matchers}\}})? *$")
}

/// The Kubernetes label selector grammar the external metrics API reads.
fn label_selector_pattern() -> String {
    let key = r"[a-zA-Z0-9._/-]{1,63}";
    let value = r"[a-zA-Z0-9._-]{0,63}";
    let term =
        format!(r"!?{key}|{key}(?:==?|!=){value}|{key} (?:in|notin) \({value}(?:,{value})*\)");
    format!(r"^(?:(?:{term})(?:,(?:{term}))*)?$")
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
                    "fault_kind": {"type": "string", "enum": ["cpu", "memory", "latency", "errors", "overload", "unknown", ""],
                        "description": "What kind of fault its metrics look like (empty in incidents from before it existed)"},
                    "evidence": {"type": "array", "description": "The service's metrics that moved", "items": {"type": "object", "properties": {
                        "metric": {"type": "string"}, "score": {"type": ["number", "string"]}, "direction": {"type": "string"}, "onset_ms": {"type": "integer"},
                        "baseline": {"type": ["number", "string"]}, "peak": {"type": ["number", "string"]}, "peak_ms": {"type": "integer"}}}}}})
}

/// The document: the paths generated from the handlers, with the component schemas, the
/// security schemes and the description.
///
/// `max_selectors` is `server.max_series_selectors`: the most `match[]` a series listing takes.
pub fn document(generated: utoipa::openapi::OpenApi, max_selectors: usize) -> Value {
    let mut doc = serde_json::to_value(generated).expect("an OpenAPI document serialises");
    doc["info"] = json!({
        "title": "aiops API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "remote_write in; series, samples and anomalies; incidents with ranked root-cause candidates, responder feedback, the Alertmanager and PagerDuty webhooks; the Kubernetes external metrics API and the KEDA JSON of scaling targets; health. Errors are `{\"error\": {\"code\", \"message\"}}` (Kubernetes `Status` objects under `/apis`). With credentials configured, every route but `/healthz`, `/readyz`, this document and the signed PagerDuty webhook needs one with its scope (README, Security)."
    });
    doc["components"] = components();
    if let Some(params) = doc["paths"]["/api/v1/series"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "match[]") {
            p["schema"]["maxItems"] = json!(max_selectors);
        }
    }
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
    let event = json!({"$ref": "#/components/schemas/AnomalyEvent"});
    // A float as `json_f64` writes it: a number, or "+Inf", "-Inf", "NaN".
    let number = json!({"type": ["number", "string"]});
    let mut reasons: Vec<Value> = (aiops_models::AlarmReason::ALL.iter())
        .map(|r| Value::from(r.as_str()))
        .collect();
    reasons.push(Value::Null);
    let time = json!({"$ref": "#/components/schemas/Time"});
    let mut schemas = serde_json::Map::new();
    for (name, schema) in [
        (
            "Time",
            json!({"description": "RFC 3339 or Unix seconds", "anyOf": [
                {"type": "string", "pattern": time_pattern()},
                {"type": "number", "minimum": -1e12, "maximum": 1e12}]}),
        ),
        (
            "QueryTime",
            json!({"type": "string", "description": "RFC 3339 or Unix seconds", "pattern": time_pattern()}),
        ),
        (
            "SeriesSelector",
            json!({"type": "string", "description": "A series selector: `metric{label=\"v\", other=~\"re\", x!=\"y\", z!~\"re\"}`", "pattern": series_selector_pattern()}),
        ),
        (
            "LabelSelector",
            json!({"type": "string", "description": "A Kubernetes label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, joined by commas", "pattern": label_selector_pattern()}),
        ),
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
            "Scored",
            json!({"type": "object", "required": ["points", "events"], "properties": {
                "series": {"$ref": "#/components/schemas/Series"},
                "start_ms": {"type": "integer"}, "end_ms": {"type": "integer"}, "warmup_from_ms": {"type": "integer"},
                "counter": {"type": "boolean", "description": "Values are the counter's per-second rate"},
                "columns": {"type": "array", "items": {"type": "string"}},
                "points": {"type": "array", "items": {"type": "array", "description": "[unix_ms, value, expected, lower, upper, score, rank_score] (null: not a number)", "items": {"type": ["number", "null"]}}},
                "events": {"type": "array", "items": event}}}),
        ),
        (
            "AnomalyEvent",
            json!({"type": "object", "required": ["id", "series_id", "metric", "labels", "start_ms", "peak_ms", "last_ms", "score"], "properties": {
                "id": {"type": "string"}, "series_id": {"type": "string"}, "metric": {"type": "string"},
                "service": {"type": ["string", "null"]},
                "labels": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}},
                "start_ms": {"type": "integer"}, "peak_ms": {"type": "integer"}, "last_ms": {"type": "integer"},
                "end_ms": {"type": ["integer", "null"], "description": "null while open"},
                "score": number, "observed": number, "expected": number, "lower": number, "upper": number,
                "p_value": number,
                "reason": {"enum": reasons, "description": "Why it alarmed: which of the detector's alarms opened the event (README, Anomaly detection); null before it alarmed, or for events recorded before reasons were kept"}}}),
        ),
        (
            "Anomalies",
            json!({"type": "object", "required": ["anomalies"], "properties": {
                "since_ms": {"type": "integer"}, "until_ms": {"type": "integer"},
                "anomalies": {"type": "array", "items": event}}}),
        ),
        (
            "Scores",
            json!({"type": "object", "required": ["scores"], "properties": {
                "scores": {"type": "array", "items": {"type": "object",
                    "required": ["series_id", "rank_score", "p_value", "score", "alarm"],
                    "properties": {
                        "series_id": {"type": "string"},
                        "metric": {"type": ["string", "null"]},
                        "service": {"type": ["string", "null"]},
                        "labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                        "rank_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "How unusual the series is now: L / (L + 5), L = −log10(p_value)"},
                        "p_value": {"type": "number", "minimum": 0, "maximum": 1},
                        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "The alarm-facing score (0 while resting after an alarm)"},
                        "alarm": {"type": "boolean"}}}}}}),
        ),
        (
            "FeedbackTally",
            json!({"type": "object", "properties": {"total": {"type": "integer"}, "top1": {"type": "integer"}, "top3": {"type": "integer"}, "top5": {"type": "integer"}}}),
        ),
        (
            "AnalyseRequest",
            json!({"type": "object", "required": ["detected_at"], "additionalProperties": false, "properties": {
                "service": {"type": "string", "description": "The symptom's service"},
                "series": {"$ref": "#/components/schemas/SeriesSelector", "description": "The symptom's series"},
                "detected_at": time,
                "start": {"$ref": "#/components/schemas/Time", "description": "Start of the normal window (default: detected_at − incidents.lookback_secs)"},
                "end": {"$ref": "#/components/schemas/Time", "description": "End of the window (default: now)"},
                "title": {"type": "string"}}}),
        ),
        (
            "FeedbackRequest",
            json!({"type": "object", "required": ["service"], "additionalProperties": false, "properties": {
                "service": {"type": "string", "minLength": 1, "description": "The true root cause's service"},
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
                "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "startsAt", "fingerprint"], "properties": {
                    "status": {"enum": ["firing", "resolved"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "startsAt": {"type": "string", "pattern": format!("^{}$", rfc3339(r"(?:197[1-9]|19[89][0-9]|[2-9][0-9]{3})")), "description": "After 1970"},
                    "endsAt": {"type": ["string", "null"], "pattern": format!("^{}$", rfc3339(ANY_YEAR)), "description": "`0001-01-01T00:00:00Z` (or absent) while firing"},
                    "fingerprint": {"type": "string"}}}}}}),
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
                "current": {"type": "number"}, "forecast": {"type": ["number", "null"]}, "forecast_p50": {"type": ["number", "null"]}, "forecast_p90": {"type": ["number", "null"]}, "forecast_p99": {"type": ["number", "null"]},
                "quantile": {"type": ["number", "null"], "description": "forecast quantile served (adapted to under_budget when set)"},
                "would_serve": {"type": ["number", "null"], "description": "shadow mode: the value predictive scaling would serve"},
                "under_share": {"type": ["number", "null"], "description": "share of steps whose served value fell below the load that arrived"},
                "mode": {"type": "string", "enum": ["predictive", "reactive", "held", "shadow"]}, "stale": {"type": "boolean"}, "updated_ms": {"type": "integer"}, "for_ms": {"type": "integer"}}}),
        ),
        (
            "ScalingOutlook",
            json!({"type": "object", "required": ["name", "history", "path"], "properties": {
                "name": {"type": "string"}, "step_secs": {"type": "integer"}, "lead_secs": {"type": "integer"},
                "capacity_per_pod": {"type": "number"}, "quantile": {"type": "number"},
                "history": {"type": "array", "description": "[end_ms, load] per completed step, oldest first", "items": {"type": "array", "items": {"type": "number"}}},
                "path": {"type": "array", "items": {"type": "object", "properties": {
                    "horizon": {"type": "integer"}, "target_ms": {"type": "integer"}, "point": {"type": ["number", "null"]},
                    "p50": {"type": ["number", "null"]}, "p90": {"type": ["number", "null"]}, "p99": {"type": ["number", "null"]}}}}}}),
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

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = ref("#/components/schemas/Object"))),
    security(()))]
pub async fn openapi(
    axum::Extension(doc): axum::Extension<std::sync::Arc<Value>>,
) -> axum::Json<Value> {
    axum::Json((*doc).clone())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A strategy for the strings a documented pattern allows (anchors dropped: the generator
    /// makes whole strings).
    fn allowed(pattern: &str) -> impl Strategy<Value = String> {
        let inner = pattern.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(inner).expect("the pattern compiles")
    }

    // What the document allows, the handlers accept: a client that follows the document is
    // never refused for the form of a selector or a time.
    proptest! {
        // Each case compiles the regexes of its matchers: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn every_series_selector_the_document_allows_parses(s in allowed(&series_selector_pattern())) {
            prop_assert!(s.parse::<aiops_models::Selector>().is_ok(), "{s:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_label_selector_the_document_allows_parses(s in allowed(&label_selector_pattern())) {
            prop_assert!(crate::external::parse_selector(&s).is_ok(), "{s:?}");
        }

        #[test]
        fn every_time_the_document_allows_parses(
            s in allowed(&time_pattern())
        ) {
            prop_assert!(crate::query::parse_time("t", &s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn the_patterns_allow_what_people_write() {
        let selector = regex::Regex::new(&series_selector_pattern()).expect("compiles");
        for s in [
            "",
            "up",
            r#"http_requests_total{service="checkout", code!="200"}"#,
            r#"{__name__=~"node_.*", job!~"test|dev",}"#,
            r#"rps{path="/a \"quoted\" \\ path"}"#,
        ] {
            assert!(selector.is_match(s), "{s}");
        }
        for s in ["{}", "up{", r#"up{a="b"} x"#, "1up"] {
            assert!(!selector.is_match(s), "{s}");
            assert!(s.parse::<aiops_models::Selector>().is_err(), "{s}");
        }
        let labels = regex::Regex::new(&label_selector_pattern()).expect("compiles");
        for s in [
            "",
            "service=checkout",
            "app.kubernetes.io/name==web,env!=dev",
            "env in (prod,staging),!canary,tier",
        ] {
            assert!(labels.is_match(s), "{s}");
        }
    }
}
