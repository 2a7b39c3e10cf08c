//! Every documented route and the credentials it asks for.

use super::*;

/// A concrete path for a documented one: its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "inc-1")
        .replace("{name}", "checkout")
        .replace("{namespace}", "shop")
        .replace("{metric}", "checkout_rps")
}

/// Every operation of the API document: method, concrete path and the scope its security
/// names (`None`: open).
async fn documented_routes(h: &Harness) -> Vec<(String, String, Option<crate::auth::Scope>)> {
    let (_, doc) = get(h, "/api/v1/openapi.json").await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let scopes: Vec<&str> = op["security"]
                .as_array()
                .expect("every operation states its security")
                .iter()
                .flat_map(|req| req.as_object().expect("requirement").values())
                .flat_map(|v| v.as_array().expect("scopes").iter())
                .map(|v| v.as_str().expect("scope"))
                .collect();
            let scope = scopes.first().map(|s| match *s {
                "read" => crate::auth::Scope::Read,
                "write" => crate::auth::Scope::Write,
                "scaling" => crate::auth::Scope::Scaling,
                other => panic!("{method} {path}: unknown scope {other}"),
            });
            assert!(
                scopes.iter().all(|s| Some(*s) == scopes.first().copied()),
                "{method} {path}: one scope"
            );
            out.push((method.to_uppercase(), concrete(path), scope));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_401_without_credentials_403_without_the_scope_and_passes_with_it() {
    use crate::auth::{CredentialConfig, Scope};
    let cred = |name: &str, token: &str, scope: Scope| CredentialConfig {
        name: name.into(),
        scopes: vec![scope],
        token: Some(token.into()),
        token_file: None,
        username: None,
        password: None,
        password_file: None,
    };
    let h = harness_with(ApiConfig {
        credentials: vec![
            cred("writer", "w", Scope::Write),
            cred("reader", "r", Scope::Read),
            cred("hpa", "s", Scope::Scaling),
        ],
        ..ApiConfig::default()
    });
    let token_of = |s: Scope| match s {
        Scope::Write => "w",
        Scope::Read => "r",
        Scope::Scaling => "s",
    };
    let req = |method: &str, path: &str, token: Option<&str>| {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.header("content-type", "application/json")
            .body(Body::from("{}"))
            .expect("valid")
    };
    let routes = documented_routes(&h).await;
    assert_eq!(
        routes.len(),
        23,
        "every route is in the document: {routes:?}"
    );
    for (method, path, scope) in routes {
        let (method, path) = (method.as_str(), path.as_str());
        let Some(scope) = scope else {
            let (s, _) = call(&h, req(method, path, None)).await;
            assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "{method} {path} is open, got {s}"
            );
            continue;
        };
        let resp = send(&h, req(method, path, None)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            resp.headers().contains_key("www-authenticate"),
            "{method} {path}"
        );
        assert_eq!(
            call(&h, req(method, path, Some("nope"))).await.0,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong token"
        );
        for other in [Scope::Write, Scope::Read, Scope::Scaling] {
            let (s, body) = call(&h, req(method, path, Some(token_of(other)))).await;
            let allowed = other == scope || (scope == Scope::Scaling && other == Scope::Read);
            if allowed {
                assert!(
                    s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                    "{method} {path} with {other:?}: {s} {body}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} with {other:?}");
                let named = if path.starts_with("/apis") {
                    body["message"].as_str()
                } else {
                    body["error"]["message"].as_str()
                };
                assert!(named.is_some_and(|m| m.contains("scope")), "{body}");
            }
        }
    }
    // An unknown route is 404 whoever asks, not 401.
    assert_eq!(
        call(&h, req("GET", "/api/v1/nothing", None)).await.0,
        StatusCode::NOT_FOUND
    );
    let metrics = get_text(
        &Harness {
            token: Some("r".into()),
            ..h
        },
        "/metrics",
    )
    .await;
    assert!(
        metrics.contains("aiops_api_auth_denied_total{scope=\"write\",reason=\"missing\"}"),
        "{metrics}"
    );
}
