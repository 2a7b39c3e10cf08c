//! Every edge answered: the bounds of issue 15 (each of these was accepted, or answered in
//! text, on the old main).

use super::triage::post_json;
use super::*;

fn bounded_harness(incidents: aiops_rca::incident::IncidentConfig) -> Harness {
    let mut h = harness_all(
        ApiConfig {
            api_token: Some("t0ken".into()),
            max_sample_age_secs: 15 * 86_400,
            ..ApiConfig::default()
        },
        Default::default(),
        Default::default(),
        Default::default(),
        incidents,
        Default::default(),
    );
    h.token = Some("t0ken".into());
    h
}

fn analysis(detected: &str, start: Option<&str>, end: &str) -> String {
    let start = start
        .map(|s| format!(r#","start":"{s}""#))
        .unwrap_or_default();
    format!(r#"{{"service":"api","detected_at":"{detected}","end":"{end}"{start}}}"#)
}

fn rfc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("in range")
        .to_string()
}

#[tokio::test]
async fn on_demand_analyses_are_bounded_and_rate_limited_per_caller() {
    let h = bounded_harness(Default::default());
    let now = jiff::Timestamp::now().as_millisecond();
    let (detected, end) = (rfc(now - 600_000), rfc(now - 60_000));
    // A window over incidents.max_window_secs (6 h).
    let wide = analysis(&detected, Some(&rfc(now - 8 * 3_600_000)), &end);
    let (s, e) = call(&h, post_json("/api/v1/incidents", Some("t0ken"), &wide)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("incidents.max_window_secs"))
    );
    // A schema-valid detected_at of 0: 1970, outside the data kept (the old main opened a 1970
    // incident).
    let (s, e) = call(
        &h,
        post_json("/api/v1/incidents", Some("t0ken"), r#"{"detected_at":0}"#),
    )
    .await;
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_window"),
        "{e}"
    );
    // Nothing was recorded by the refused requests.
    let (_, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(list["incidents"], serde_json::json!([]));
    // Six a minute per caller, then 429 with Retry-After.
    let ok = analysis(&detected, None, &end);
    for _ in 0..6 {
        let (s, e) = call(&h, post_json("/api/v1/incidents", Some("t0ken"), &ok)).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
    }
    let resp = send(&h, post_json("/api/v1/incidents", Some("t0ken"), &ok)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key(axum::http::header::RETRY_AFTER));
    let (_, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn alertmanager_notifications_and_incidents_are_bounded() {
    let h = bounded_harness(aiops_rca::incident::IncidentConfig {
        max_alerts_per_request: 100,
        max_alerts_per_incident: 20,
        max_services_per_incident: 5,
        ..Default::default()
    });
    let alerts = |n: usize, from: usize| {
        let a: Vec<String> = (from..from + n)
            .map(|i| {
                format!(
                    r#"{{"status":"firing","labels":{{"alertname":"A{i}","service":"svc{}"}},"annotations":{{}},"startsAt":"{}","fingerprint":"f{i}"}}"#,
                    i % 50,
                    rfc(jiff::Timestamp::now().as_millisecond() - 1000)
                )
            })
            .collect();
        format!(
            r#"{{"version":"4","groupKey":"g","truncatedAlerts":0,"status":"firing","receiver":"aiops","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[{}]}}"#,
            a.join(",")
        )
    };
    let (s, e) = call(
        &h,
        post_json("/api/v1/alertmanager", Some("t0ken"), &alerts(101, 0)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("incidents.max_alerts_per_request"))
    );
    let (s, e) = call(
        &h,
        post_json("/api/v1/alertmanager", Some("t0ken"), &alerts(100, 0)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, list) = get(&h, "/api/v1/incidents").await;
    for inc in list["incidents"].as_array().expect("incidents") {
        let id = inc["id"].as_str().expect("id");
        let (_, full) = get(&h, &format!("/api/v1/incidents/{id}")).await;
        assert!(
            full["alerts"].as_array().expect("alerts").len() <= 20,
            "{full}"
        );
        assert!(
            full["services"].as_array().expect("services").len() <= 5,
            "{full}"
        );
    }
}

#[tokio::test]
async fn every_error_is_json_even_from_the_framework() {
    let h = bounded_harness(Default::default());
    // A JSON route's body over axum's limit (text/plain 413 on the old main).
    let big = format!(r#"{{"detected_at":"{}"}}"#, "x".repeat(3 << 20));
    let (s, e) = call(&h, post_json("/api/v1/incidents", Some("t0ken"), &big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(error_code(&e), "payload_too_large");
    // A request target over server.max_uri_bytes (an empty 414 on the old main).
    let long = format!("/api/v1/series?match[]={}", "a".repeat(20 << 10));
    let (s, e) = get(&h, &long).await;
    assert_eq!(s, StatusCode::URI_TOO_LONG, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.max_uri_bytes"))
    );
    // A wrong method.
    let (s, e) = call(
        &h,
        Request::delete("/healthz")
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(e["error"]["code"].is_string(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn infinities_round_trip_as_prometheus_writes_them() {
    let h = bounded_harness(Default::default());
    let now = jiff::Timestamp::now().as_millisecond();
    let req = WriteRequest {
        timeseries: vec![TimeSeries::from_parts(
            [("__name__", "inf_test")],
            [
                (now - 3000, f64::INFINITY),
                (now - 2000, f64::NEG_INFINITY),
                (now - 1000, 1.5),
            ],
        )],
        metadata: vec![],
    };
    let mut w = write_req(encode_write_request(&req));
    w.headers_mut()
        .insert("authorization", "Bearer t0ken".parse().expect("header"));
    let (s, e) = call(&h, w).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let (_, list) = get(&h, "/api/v1/series?match[]=inf_test").await;
    let id = list["series"][0]["id"].as_str().expect("id").to_owned();
    let (s, got) = get(
        &h,
        &format!("/api/v1/series/{id}/samples?start={}", now / 1000 - 10),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let values: Vec<&serde_json::Value> = got["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|p| &p[1])
        .collect();
    assert_eq!(
        values,
        [
            &serde_json::json!("+Inf"),
            &serde_json::json!("-Inf"),
            &serde_json::json!(1.5)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn series_listings_over_a_limit_get_422_naming_it() {
    let h = harness_limited(
        ApiConfig {
            max_series_selectors: 2,
            max_series_scanned: 3,
            ..ApiConfig::default()
        },
        Default::default(),
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = get(&h, "/api/v1/series?match[]=up&match[]=up&match[]=up").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.max_series_selectors")),
        "{body}"
    );
    // Two selectors over two series would scan four, more than three.
    let (status, body) = get(&h, "/api/v1/series?match[]=up&match[]=down").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.max_series_scanned")),
        "{body}"
    );
    let (status, body) = get(&h, "/api/v1/series?match[]=up").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_series_over_the_series_limit_get_429_and_known_ones_are_stored() {
    let h = harness_limited(
        ApiConfig::default(),
        crate::LimitsConfig {
            max_series: 2,
            ..Default::default()
        },
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let more = WriteRequest {
        timeseries: vec![
            TimeSeries::from_parts([("__name__", "up"), ("job", "api")], [(5_000, 7.0)]),
            TimeSeries::from_parts([("__name__", "up"), ("job", "new-1")], [(5_000, 1.0)]),
            TimeSeries::from_parts([("__name__", "up"), ("job", "new-2")], [(5_000, 1.0)]),
        ],
        metadata: vec![],
    };
    let (status, body) = call(&h, write_req(encode_write_request(&more))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "series_limit");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("limits.max_series") && msg.contains("2 new series"),
        "{msg}"
    );
    // The known series' sample was stored; the new series were not.
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = get(&h, "/api/v1/series?match[]=up%7Bjob%3D%22api%22%7D").await;
    let id = body["series"][0]["id"].as_str().expect("id").to_owned();
    let (_, body) = get(&h, &format!("/api/v1/series/{id}/samples?start=0&end=10")).await;
    assert_eq!(
        body["samples"],
        serde_json::json!([[1000, 1.0], [5000, 7.0]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_shed_with_503_and_retry_after_while_compaction_is_behind() {
    let h = harness_limited(
        ApiConfig::default(),
        crate::LimitsConfig {
            max_head_bytes: 1,
            shed_wait_ms: 50,
            ..Default::default()
        },
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "an empty head takes a write"
    );
    let resp = send(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(error_code(&body), "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_head_bytes")),
        "{body}"
    );
}
