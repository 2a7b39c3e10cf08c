//! The OpenAPI 3.1 document of the triage API and the webhooks (`GET /api/v1/openapi.json`).

use serde_json::{Value, json};

fn error_response(what: &str) -> Value {
    json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn candidate_schema() -> Value {
    json!({"type": "object", "properties": {
                    "rank": {"type": "integer"}, "service": {"type": "string"}, "metric": {"type": "string"},
                    "score": {"type": "number", "description": "Move after detection in spreads of the normal window"},
                    "confidence": {"type": "number", "description": "Calibrated probability of being the root cause"},
                    "direction": {"type": "string", "enum": ["up", "down"]},
                    "onset_ms": {"type": "integer"}, "peak": {"type": "number"}, "peak_ms": {"type": "integer"},
                    "baseline": {"type": "number"}, "spread": {"type": "number"},
                    "path": {"type": "array", "items": {"type": "string"}, "description": "Call path from the symptom"},
                    "method": {"type": "string"}, "explanation": {"type": "string"},
                    "evidence": {"type": "array", "description": "The service's metrics that moved", "items": {"type": "object", "properties": {
                        "metric": {"type": "string"}, "score": {"type": "number"}, "direction": {"type": "string"}, "onset_ms": {"type": "integer"},
                        "baseline": {"type": "number"}, "peak": {"type": "number"}, "peak_ms": {"type": "integer"}}}}}})
}

/// The document.
pub fn document() -> Value {
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Incident id (`inc-…`)"});
    let bearer = json!([{"bearer": []}]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "aiops triage API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Incidents with ranked root-cause candidates, responder feedback, and the Alertmanager and PagerDuty webhooks. Errors are `{\"error\": {\"code\", \"message\"}}`. Write routes need `Authorization: Bearer <server.api_token>` when one is configured."
        },
        "paths": {
            "/api/v1/incidents": {
                "get": {
                    "summary": "List incidents, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "resolved"]}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}}
                    ],
                    "responses": {
                        "200": {"description": "Incident summaries and the feedback tally", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/IncidentSummary"}},
                            "feedback": {"$ref": "#/components/schemas/FeedbackTally"},
                            "owner": {"type": "boolean", "description": "This node acts on the incidents (on Kafka one node does; the others mirror them)"}}}}}},
                        "400": error_response("Bad parameter")
                    }
                },
                "post": {
                    "summary": "Analyse a symptom and window on demand",
                    "security": bearer,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AnalyseRequest"}}}},
                    "responses": {
                        "201": {"description": "The analysis, stored as an incident", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Incident"}}}},
                        "400": error_response("Malformed body, bad time or window"),
                        "401": error_response("Missing or wrong bearer token")
                    }
                }
            },
            "/api/v1/incidents/{id}": {
                "get": {
                    "summary": "One incident: symptom, timeline, ranked candidates",
                    "parameters": [id_param],
                    "responses": {
                        "200": {"description": "The incident", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Incident"}}}},
                        "404": error_response("No such incident")
                    }
                }
            },
            "/api/v1/incidents/{id}/feedback": {
                "post": {
                    "summary": "Name the true root cause (counted in the accuracy metric)",
                    "security": bearer,
                    "parameters": [id_param],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["service"], "additionalProperties": false, "properties": {
                        "service": {"type": "string"}, "metric": {"type": "string"}, "comment": {"type": "string"}}}}}},
                    "responses": {
                        "200": {"description": "Recorded; where we had ranked it, and the running tally"},
                        "202": {"description": "On Kafka: durable on its way to the incident owner, which records it"},
                        "400": error_response("Malformed body"),
                        "401": error_response("Missing or wrong bearer token"),
                        "404": error_response("No such incident")
                    }
                }
            },
            "/api/v1/alertmanager": {
                "post": {
                    "summary": "Alertmanager webhook receiver (payload version 4)",
                    "security": bearer,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version", "alerts"], "properties": {
                        "version": {"const": "4"}, "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "startsAt", "fingerprint"]}}}}}}},
                    "responses": {
                        "200": {"description": "Applied and durable; the incidents touched"},
                        "202": {"description": "On Kafka: durable on its way to the incident owner, which applies it"},
                        "400": error_response("Malformed payload or unsupported version"),
                        "401": error_response("Missing or wrong bearer token"),
                        "503": error_response("Could not persist; Alertmanager retries")
                    }
                }
            },
            "/api/v1/pagerduty/webhook": {
                "post": {
                    "summary": "PagerDuty webhooks v3 receiver (HMAC-SHA256 signed)",
                    "parameters": [
                        {"name": "X-PagerDuty-Signature", "in": "header", "required": true, "schema": {"type": "string"}, "description": "`v1=<hex>[,v1=<hex>…]`"},
                        {"name": "X-Webhook-Id", "in": "header", "schema": {"type": "string"}, "description": "De-duplicates retried deliveries"}
                    ],
                    "responses": {
                        "202": {"description": "Accepted (`opened`, `linked`, `resolved`, `ignored` or `duplicate`)"},
                        "400": error_response("Malformed event"),
                        "401": error_response("Missing or wrong signature"),
                        "404": error_response("No webhook secret configured")
                    }
                }
            },
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "FeedbackTally": {"type": "object", "properties": {"total": {"type": "integer"}, "top1": {"type": "integer"}, "top3": {"type": "integer"}, "top5": {"type": "integer"}}},
                "AnalyseRequest": {"type": "object", "required": ["detected_at"], "additionalProperties": false, "properties": {
                    "service": {"type": "string", "description": "The symptom's service"},
                    "series": {"type": "string", "description": "The symptom's series, a selector"},
                    "detected_at": {"type": ["string", "number"], "description": "RFC 3339 or Unix seconds"},
                    "start": {"type": ["string", "number"], "description": "Start of the normal window (default: detected_at − incidents.lookback_secs)"},
                    "end": {"type": ["string", "number"], "description": "End of the window (default: now)"},
                    "title": {"type": "string"}}},
                "Candidate": candidate_schema(),
                "IncidentSummary": {"type": "object", "properties": {
                    "id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string", "enum": ["open", "resolved"]},
                    "source": {"type": "string", "enum": ["detector", "alertmanager", "pagerduty", "api"]},
                    "opened_ms": {"type": "integer"}, "resolved_ms": {"type": ["integer", "null"]},
                    "symptom": {"type": "object"}, "services": {"type": "array", "items": {"type": "string"}},
                    "top_candidate": {"oneOf": [{"$ref": "#/components/schemas/Candidate"}, {"type": "null"}]}}},
                "Incident": {"type": "object", "properties": {
                    "id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string"}, "source": {"type": "string"},
                    "opened_ms": {"type": "integer"}, "updated_ms": {"type": "integer"}, "resolved_ms": {"type": ["integer", "null"]},
                    "symptom": {"type": "object", "properties": {"service": {"type": ["string", "null"]}, "metric": {"type": ["string", "null"]}, "series": {"type": ["string", "null"]}, "detected_ms": {"type": "integer"}}},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "anomalies": {"type": "array", "items": {"type": "string"}},
                    "alerts": {"type": "array", "items": {"type": "object"}},
                    "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
                    "ranked_ms": {"type": ["integer", "null"]},
                    "window_start_ms": {"type": "integer"}, "window_end_ms": {"type": "integer"},
                    "data_quality": {"type": "object"},
                    "timeline": {"type": "array", "items": {"type": "object", "properties": {"at_ms": {"type": "integer"}, "kind": {"type": "string"}, "text": {"type": "string"}}}},
                    "feedback": {"type": ["object", "null"]},
                    "pagerduty": {"type": ["object", "null"]}}}
            }
        }
    })
}
