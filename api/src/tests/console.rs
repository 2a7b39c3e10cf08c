//! The console's files (open, no data in them) and the two routes its charts read.

use super::scaling::scaling_harness;
use super::*;

async fn raw(h: &Harness, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::get(uri).body(Body::empty()).expect("valid");
    let resp = send(h, req).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_without_credentials_while_its_data_needs_them() {
    let h = harness_with(ApiConfig {
        api_token: Some("t0ken".into()),
        ..ApiConfig::default()
    });
    let (s, headers, _) = raw(&h, "/").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/");
    let (s, headers, body) = raw(&h, "/console/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    assert!(body.contains("<title>aiops console</title>"), "{body}");
    let (s, headers, body) = raw(&h, "/console/app.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/javascript"))
    );
    assert!(body.contains("Authorization"), "the client sends the token");
    let (s, _, body) = raw(&h, "/console/vendor/LICENSE-uPlot.txt").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("MIT"), "{body}");
    let (s, _, body) = raw(&h, "/console/nothing.js").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("\"not_found\""), "{body}");
    // The data stays behind the token.
    assert_eq!(
        raw(&h, "/api/v1/incidents").await.0,
        StatusCode::UNAUTHORIZED
    );

    let off = harness_with(ApiConfig {
        console: false,
        ..ApiConfig::default()
    });
    assert_eq!(raw(&off, "/console/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(raw(&off, "/").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaling_outlook_has_the_loads_and_the_path_ahead() {
    let h = scaling_harness(None);
    let (s, v) = get(&h, "/api/v1/scaling/checkout_rps/outlook").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let history = v["history"].as_array().expect("history");
    assert_eq!(history.len(), 119, "every completed step: {v}");
    assert!(history.iter().all(|h| h[1] == 12.5), "{v}");
    assert_eq!(
        (v["step_secs"].as_u64(), v["lead_secs"].as_u64()),
        (Some(60), Some(120))
    );
    // Twice the lead by default, each step with its band in order.
    let path = v["path"].as_array().expect("path");
    assert_eq!(path.len(), 4, "{v}");
    for f in path {
        let q = |k: &str| f[k].as_f64().expect("a number");
        assert!(q("p50") <= q("p90") && q("p90") <= q("p99"), "{f}");
    }
    let (_, v) = get(&h, "/api/v1/scaling/checkout_rps/outlook?steps=240").await;
    assert_eq!(v["path"].as_array().map(Vec::len), Some(240));
    for (uri, status) in [
        ("/api/v1/scaling/nope/outlook", StatusCode::NOT_FOUND),
        (
            "/api/v1/scaling/checkout_rps/outlook?steps=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/scaling/checkout_rps/outlook?steps=241",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/scaling/checkout_rps/outlook?x=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, v) = get(&h, uri).await;
        assert_eq!(s, status, "{uri}: {v}");
        assert!(v["error"]["message"].is_string(), "{uri}: {v}");
    }
}
