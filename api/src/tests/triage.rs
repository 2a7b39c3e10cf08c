//! The triage API and the incidents that Alertmanager and PagerDuty open.

use super::*;

fn incident_harness() -> Harness {
    let cfg = aiops_rca::incident::IncidentConfig {
        pagerduty: aiops_rca::pagerduty::PagerdutyConfig {
            webhook_secrets: vec!["old-secret".into(), "new-secret".into()],
            services: [("PSVC".to_owned(), "checkout-svc".to_owned())].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = harness_all(
        ApiConfig {
            api_token: Some("t0ken".into()),
            ..ApiConfig::default()
        },
        Default::default(),
        Default::default(),
        Default::default(),
        cfg,
        Default::default(),
    );
    h.token = Some("t0ken".into());
    h
}

pub(super) fn post_json(uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_owned())).expect("valid")
}

#[tokio::test]
async fn triage_routes_answer_and_refuse_with_json_errors() {
    let h = incident_harness();
    let (s, doc) = get(&h, "/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/feedback",
        "/api/v1/alertmanager",
        "/api/v1/pagerduty/webhook",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
    let (s, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["incidents"], serde_json::json!([]));
    assert_eq!(
        get(&h, "/api/v1/incidents?status=maybe").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&h, "/api/v1/incidents/inc-nope").await.0,
        StatusCode::NOT_FOUND
    );
    // Write routes need the token.
    let body =
        r#"{"service":"api","detected_at":"2024-05-01T12:00:00Z","end":"2024-05-01T12:10:00Z"}"#;
    let (s, e) = call(&h, post_json("/api/v1/incidents", None, body)).await;
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, e) = call(
        &h,
        post_json("/api/v1/incidents", Some("t0ken"), "{not json"),
    )
    .await;
    assert_eq!((s, error_code(&e)), (StatusCode::BAD_REQUEST, "bad_json"));
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/incidents",
            Some("t0ken"),
            r#"{"detected_at":"yesterday"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("detected_at"))
    );
    // A valid analysis with no data: stored, no candidates, and it says what it read.
    let (s, inc) = call(&h, post_json("/api/v1/incidents", Some("t0ken"), body)).await;
    assert_eq!(s, StatusCode::CREATED, "{inc}");
    assert_eq!(inc["source"], "api");
    assert_eq!(inc["candidates"], serde_json::json!([]));
    let id = inc["id"].as_str().expect("id").to_owned();
    let (s, got) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!((s, &got["id"]), (StatusCode::OK, &inc["id"]));
    // Feedback: validated, counted.
    let fb = format!("/api/v1/incidents/{id}/feedback");
    assert_eq!(
        call(&h, post_json(&fb, None, r#"{"service":"db"}"#))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&h, post_json(&fb, Some("t0ken"), r#"{"servce":"db"}"#))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &h,
            post_json(
                "/api/v1/incidents/inc-x/feedback",
                Some("t0ken"),
                r#"{"service":"db"}"#
            )
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (s, r) = call(
        &h,
        post_json(
            &fb,
            Some("t0ken"),
            r#"{"service":"db","comment":"disk full"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["accuracy"]["total"], 1);
    assert_eq!(r["feedback"]["rank"], serde_json::Value::Null);
    let metrics = get_text(&h, "/metrics").await;
    assert!(
        metrics.contains("aiops_rca_feedback_total{outcome=\"missed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn alertmanager_payloads_open_and_resolve_incidents() {
    let h = incident_harness();
    let alert = |status: &str, ends: &str| {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"HighLatency\"}}","truncatedAlerts":0,"status":"{status}","receiver":"aiops",
            "groupLabels":{{"alertname":"HighLatency"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am:9093","notification_reason":"x",
            "alerts":[{{"status":"{status}","labels":{{"alertname":"HighLatency","service":"api"}},"annotations":{{"summary":"p99 latency above SLO"}},
            "startsAt":"2024-05-01T11:58:30.123Z","endsAt":"{ends}","generatorURL":"http://p:9090/graph","fingerprint":"3f1c2a9b8d7e6f50"}}]}}"#
        )
    };
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("firing", "0001-01-01T00:00:00Z")
                .replace(r#""version":"4""#, r#""version":"3""#),
        ),
    )
    .await;
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::BAD_REQUEST, "unsupported_version")
    );
    // An endsAt that is not a time is refused like a bad startsAt (accepted as "not ended"
    // before).
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("resolved", ""),
        ),
    )
    .await;
    assert_eq!((s, error_code(&e)), (StatusCode::BAD_REQUEST, "bad_alert"));
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("endsAt"))
    );
    assert_eq!(
        call(&h, post_json("/api/v1/alertmanager", None, "{}"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, r) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("firing", "0001-01-01T00:00:00Z"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["incidents"][0].as_str().expect("an incident").to_owned();
    let (_, inc) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(
        (inc["status"].as_str(), inc["source"].as_str()),
        (Some("open"), Some("alertmanager"))
    );
    assert_eq!(inc["title"], "p99 latency above SLO");
    assert_eq!(inc["symptom"]["service"], "api");
    let (s, _) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("resolved", "2024-05-01T12:08:00Z"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, inc) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "resolved");
}

#[tokio::test]
async fn pagerduty_webhooks_are_verified_and_deduplicated() {
    let h = incident_harness();
    let body = r#"{"event":{"id":"01HWZ","event_type":"incident.triggered","resource_type":"incident","occurred_at":"2024-05-01T12:00:03.512Z","agent":null,"client":null,
        "data":{"id":"Q1AB","type":"incident","html_url":"https://acme.pagerduty.com/incidents/Q1AB","number":1,"status":"triggered","incident_key":"other:key",
        "created_at":"2024-05-01T12:00:03Z","title":"Checkout slow","service":{"id":"PSVC","type":"service_reference","summary":"checkout"}}}}"#;
    let hook = |sig: Option<String>, id: &str| {
        let mut r = Request::post("/api/v1/pagerduty/webhook")
            .header("content-type", "application/json")
            .header("x-webhook-id", id);
        if let Some(s) = sig {
            r = r.header("x-pagerduty-signature", s);
        }
        r.body(Body::from(body)).expect("valid")
    };
    let sign = |secret: &str| aiops_rca::pagerduty::sign(secret, body.as_bytes());
    assert_eq!(call(&h, hook(None, "w1")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&h, hook(Some(sign("wrong")), "w1")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Several signatures (a rotation): any valid one will do.
    let both = format!("{},{}", sign("wrong"), sign("new-secret"));
    let (s, r) = call(&h, hook(Some(both), "w1")).await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::ACCEPTED, Some("opened"))
    );
    let (s, r) = call(&h, hook(Some(sign("old-secret")), "w1")).await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::ACCEPTED, Some("duplicate"))
    );
    let (_, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["incidents"][0]["source"], "pagerduty");
    assert_eq!(list["incidents"][0]["pagerduty"]["incident_id"], "Q1AB");
    // PagerDuty's service id maps to ours.
    assert_eq!(list["incidents"][0]["symptom"]["service"], "checkout-svc");
    // Off without a secret.
    assert_eq!(
        call(&harness(), hook(Some(sign("new-secret")), "w2"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
