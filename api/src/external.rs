//! The Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`) for the HPA, and a
//! plain JSON view of the same values for KEDA's `metrics-api` scaler (protocols.md §5).
//!
//! Every configured scaling target is one external metric. Errors are Kubernetes `Status`
//! objects (404 unknown metric, 400 bad selector, 401 missing token, 503 no fresh value) so
//! that `kubectl` and the HPA controller read them.

use std::collections::BTreeMap;

use aiops_detect::DetectError;
use aiops_detect::scaling::ScalingValue;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;

const GROUP: &str = "external.metrics.k8s.io";
const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";

/// A Kubernetes `Status` error.
#[derive(Debug)]
pub struct Status {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Status {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        (self.code, Json(body)).into_response()
    }
}

fn group() -> Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": "v1beta1"});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// `GET /apis`: the API groups we serve.
#[utoipa::path(get, path = "/apis", tag = "kubernetes",
    responses((status = 200, description = "`APIGroupList`", body = ref("#/components/schemas/KubeObject")), crate::openapi::KubeRefusals),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn api_group_list() -> Json<Value> {
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]}))
}

/// `GET /apis/external.metrics.k8s.io`.
#[utoipa::path(get, path = "/apis/external.metrics.k8s.io", tag = "kubernetes",
    responses((status = 200, description = "`APIGroup`", body = ref("#/components/schemas/KubeObject")), crate::openapi::KubeRefusals),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn api_group() -> Json<Value> {
    let mut g = group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Json(g)
}

/// `GET /apis/external.metrics.k8s.io/v1beta1`: one resource per scaling target.
#[utoipa::path(get, path = "/apis/external.metrics.k8s.io/v1beta1", tag = "kubernetes",
    responses((status = 200, description = "`APIResourceList`: one resource per scaling target", body = ref("#/components/schemas/KubeObject")), crate::openapi::KubeRefusals),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn resource_list(State(state): State<AppState>) -> Json<Value> {
    let resources: Vec<Value> = state
        .scaling
        .targets
        .iter()
        .map(|t| {
            json!({"name": t.name, "singularName": "", "namespaced": true,
                   "kind": "ExternalMetricValueList", "verbs": ["get"]})
        })
        .collect();
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": resources,
    }))
}

/// A Kubernetes quantity with milli precision, rounded up like the HPA's `MilliValue()`:
/// `0.93` → `930m`, `12.0` → `12`, `0.0004` → `1m`. None for values a quantity cannot hold.
pub fn to_quantity(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    // Rounded up, except for float noise: 0.1 + 0.2 is 300m, not 301m.
    let x = v * 1000.0;
    let milli = if (x - x.round()).abs() < 1e-6 {
        x.round()
    } else {
        x.ceil()
    };
    if milli.abs() >= i64::MAX as f64 {
        return None;
    }
    let m = milli as i64;
    Some(if m % 1000 == 0 {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    })
}

/// One requirement of a Kubernetes label selector.
#[derive(Debug, PartialEq)]
pub(crate) enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses the `labelSelector` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`,
/// `a`, `!a`, joined by commas (AND).
pub(crate) fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced ')' at {i}"));
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    terms.push(&s[start..]);
    let bad = |t: &str, why: &str| format!("{t:?}: {why}");
    let set = |t: &str, rest: &str| -> Result<Vec<String>, String> {
        let rest = rest.trim();
        let inner = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad(t, "expected a parenthesised list of values"))?;
        let vs: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        if vs.iter().any(|v| !valid_value(v)) {
            return Err(bad(t, "invalid value in the list"));
        }
        Ok(vs)
    };
    let mut out = Vec::new();
    for term in terms {
        let t = term.trim();
        if t.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err("empty requirement".into());
        }
        let req = if let Some(k) = t.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_owned())
        } else if let Some((k, v)) = t.split_once("!=") {
            Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, rest)) = t.split_once(" notin ") {
            Requirement::NotIn(k.trim().to_owned(), set(t, rest)?)
        } else if let Some((k, rest)) = t.split_once(" in ") {
            Requirement::In(k.trim().to_owned(), set(t, rest)?)
        } else {
            Requirement::Exists(t.to_owned())
        };
        let (key, value) = match &req {
            Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => (k, None),
        };
        if !valid_key(key) {
            return Err(bad(t, "invalid label key"));
        }
        if value.is_some_and(|v| !valid_value(v)) {
            return Err(bad(t, "invalid label value"));
        }
        out.push(req);
    }
    Ok(out)
}

fn selector_param(raw: Option<String>) -> Option<String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn scaling_value(
    state: &AppState,
    name: &str,
    namespace: Option<&str>,
) -> Result<ScalingValue, DetectError> {
    state
        .scaling_state
        .lock()
        .value(&state.scaling, name, namespace, now_ms())
}

/// `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=…`.
#[utoipa::path(get, path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}", tag = "kubernetes",
    params(
        ("namespace" = String, Path, description = "The HPA's namespace"),
        ("metric" = String, Path, description = "A scaling target's name"),
        ("labelSelector" = Option<crate::openapi::LabelSelector>, Query, description = "Kubernetes label selector the target's labels must match")
    ),
    responses(
        (status = 200, description = "`ExternalMetricValueList` with the served value", body = ref("#/components/schemas/KubeObject")),
        (status = 404, description = "No such target, or its selector does not match (`Status`)", body = ref("#/components/schemas/Status")),
        crate::openapi::KubeRefusals
    ),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn metric_value(
    State(state): State<AppState>,
    Path((namespace, metric)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Status> {
    let requirements = match selector_param(raw) {
        Some(s) => parse_selector(&s).map_err(|e| {
            Status::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("unable to parse labelSelector: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    let not_found = || {
        Status::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the metric {metric} for namespaces/{namespace}"),
        )
    };
    let target = state
        .scaling
        .targets
        .iter()
        .find(|t| t.name == metric)
        .ok_or_else(not_found)?;
    if !requirements.iter().all(|r| r.matches(&target.labels)) {
        return Err(Status::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the metric {metric} in namespaces/{namespace} has no series matching the labelSelector"
            ),
        ));
    }
    let v = scaling_value(&state, &metric, Some(&namespace)).map_err(|e| match e {
        DetectError::UnknownTarget(_) => not_found(),
        other => Status::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            other.to_string(),
        ),
    })?;
    let quantity = to_quantity(v.value).ok_or_else(|| {
        Status::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("the value of {metric} cannot be written as a quantity"),
        )
    })?;
    let ts = jiff::Timestamp::from_second(v.updated_ms.div_euclid(1000))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    Ok(Json(json!({
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [{
            "metricName": metric,
            "metricLabels": target.labels,
            "timestamp": ts,
            "value": quantity,
        }],
    })))
}

/// `GET /api/v1/scaling`: every target's served value (or why there is none).
#[utoipa::path(get, path = "/api/v1/scaling", tag = "scaling",
    responses((status = 200, description = "Every target's served value, or why there is none", body = ref("#/components/schemas/ScalingList")), crate::openapi::Refusals),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn list_scaling(State(state): State<AppState>) -> Json<Value> {
    let names: Vec<String> = state
        .scaling
        .targets
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let items: Vec<Value> = names
        .iter()
        .map(|n| match scaling_value(&state, n, None) {
            Ok(v) => json!(v),
            Err(e) => json!({"name": n, "error": e.to_string()}),
        })
        .collect();
    Json(json!({ "targets": items }))
}

/// `GET /api/v1/scaling/{name}`: one target's value as plain JSON, for KEDA's `metrics-api`
/// scaler (`valueLocation: value`).
#[utoipa::path(get, path = "/api/v1/scaling/{name}", tag = "scaling",
    params(("name" = String, Path, description = "A scaling target's name")),
    responses(
        (status = 200, description = "The target's value (KEDA `metrics-api`: `valueLocation: value`)", body = ref("#/components/schemas/ScalingValue")),
        (status = 404, description = "No such target", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["scaling"]), ("basic" = ["scaling"]), ("frontProxy" = ["scaling"])))]
pub async fn get_scaling(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, crate::ApiError> {
    match scaling_value(&state, &name, None) {
        Ok(v) => Ok(Json(json!(v))),
        Err(DetectError::UnknownTarget(_)) => Err(crate::ApiError::not_found(format!(
            "no scaling target {name}"
        ))),
        Err(e) => Err(crate::ApiError::unavailable("no_value", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_milli_and_rounded_up() {
        assert_eq!(to_quantity(0.93).as_deref(), Some("930m"));
        assert_eq!(to_quantity(1.5).as_deref(), Some("1500m"));
        assert_eq!(to_quantity(12.0).as_deref(), Some("12"));
        assert_eq!(to_quantity(0.0004).as_deref(), Some("1m"));
        assert_eq!(to_quantity(0.0).as_deref(), Some("0"));
        assert_eq!(to_quantity(-0.25).as_deref(), Some("-250m"));
        assert_eq!(to_quantity(0.1 + 0.2).as_deref(), Some("300m"));
        assert_eq!(to_quantity(1e12).as_deref(), Some("1000000000000"));
        assert_eq!(to_quantity(f64::NAN), None);
        assert_eq!(to_quantity(f64::INFINITY), None);
        assert_eq!(to_quantity(1e17), None);
    }

    #[test]
    fn label_selectors_parse_and_match() {
        let labels: BTreeMap<String, String> = [("service", "api"), ("env", "prod")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let ok = |s: &str| {
            parse_selector(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .iter()
                .all(|r| r.matches(&labels))
        };
        assert!(ok("service=api,env in (prod,staging),!canary,tier!=batch"));
        assert!(ok("service==api"));
        assert!(ok("env"));
        assert!(ok(""));
        assert!(!ok("env notin (prod)"));
        assert!(!ok("service=web"));
        assert!(!ok("!env"));
        for bad in [
            "service=(",
            "env in prod",
            "a=b,,c=d",
            "bad key=x",
            "env in (prod",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }
}
