//! End to end: anomalies on two services open an incident whose first candidate is the faulty
//! service; it pages the PagerDuty test double (throttled and failing at first, and across a
//! `kill -9`: the outbox keeps the page), resolves when the anomalies clear, and a signed
//! PagerDuty webhook gets our candidates back as a note.

mod common;

use std::time::Duration;

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::pagerduty::PagerDuty;
use common::*;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

fn config(pd: &PagerDuty) -> String {
    format!(
        r#"
[detect]
checkpoint_secs = 1
event_quiet_secs = 60
[detect.detector]
learning_samples = 50
[incidents]
min_services = 2
resolve_quiet_secs = 1
rerank_secs = 1
topology = [{{caller = "frontend", callee = "carts"}}, {{caller = "frontend", callee = "orders"}}]
[incidents.pagerduty]
routing_key = "{ROUTING_KEY}"
events_url = "{base}/v2/enqueue"
api_url = "{base}"
api_token = "pd-rest-token"
from_email = "oncall@example.com"
webhook_secrets = ["whsec-1"]
public_url = "https://aiops.example.internal"
max_backoff_secs = 2
"#,
        base = pd.base
    )
}

/// One step of the three services: frontend latency, carts and orders CPU; `fault` makes carts
/// burn CPU and frontend (which calls it) slower.
fn step(t0: i64, k: i64, fault: bool) -> WriteRequest {
    let n = |s: i64| ((k * 7 + s * 3) % 5) as f64;
    let t = t0 + k * 10_000;
    let (lat, cpu) = if fault { (0.5, 4.0) } else { (0.0, 0.0) };
    WriteRequest {
        timeseries: vec![
            TimeSeries::from_parts(
                [
                    ("__name__", "http_request_duration_seconds"),
                    ("service", "frontend"),
                ],
                [(t, 0.2 + 0.01 * n(1) + lat)],
            ),
            TimeSeries::from_parts(
                [("__name__", "process_cpu_usage"), ("service", "carts")],
                [(t, 0.5 + 0.02 * n(2) + cpu)],
            ),
            TimeSeries::from_parts(
                [("__name__", "process_cpu_usage"), ("service", "orders")],
                [(t, 0.4 + 0.02 * n(3))],
            ),
        ],
        metadata: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_ranks_the_cause_pages_through_the_outbox_and_answers_webhooks() {
    let pd = PagerDuty::start().await;
    // PagerDuty is down at first: the page must wait in the outbox.
    pd.state.lock().expect("lock").down = true;
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        server,
        port,
        base,
        data,
        config: cfg,
        http,
    } = serve_with_config(dir.path(), &config(&pd)).await;
    let mut server = server;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    // Recent data (the fault ends a minute ago): history is not paged.
    let t0 = jiff::Timestamp::now().as_millisecond() - 1_300_000;
    for k in 0..100 {
        client.send(&step(t0, k, false)).await.expect("accepted");
    }
    for k in 100..106 {
        client.send(&step(t0, k, true)).await.expect("accepted");
    }
    // The incident opens and ranks carts first, with evidence.
    let inc = wait_for("a ranked incident", Duration::from_secs(30), || async {
        let v = get_json(&http, &format!("{base}/api/v1/incidents?status=open")).await?;
        let id = v["incidents"][0]["id"].as_str()?.to_owned();
        let inc = get_json(&http, &format!("{base}/api/v1/incidents/{id}")).await?;
        (inc["ranked_ms"].is_i64() && !inc["candidates"].as_array()?.is_empty()).then_some(inc)
    })
    .await;
    let id = inc["id"].as_str().expect("id").to_owned();
    assert_eq!(inc["source"], "detector");
    let top = &inc["candidates"][0];
    assert_eq!(top["service"], "carts", "{inc:#}");
    assert_eq!(top["direction"], "up");
    assert_eq!(top["fault_kind"], "cpu", "{top}");
    assert!(
        top["metric"]
            .as_str()
            .is_some_and(|m| m.starts_with("process_cpu_usage"))
    );
    assert!(
        top["confidence"]
            .as_f64()
            .is_some_and(|c| c > 0.0 && c <= 1.0)
    );
    assert_eq!(
        top["path"],
        serde_json::json!(["frontend", "carts"]),
        "{inc:#}"
    );
    assert!(
        top["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("went up"))
    );
    assert_eq!(top["evidence"][0]["metric"], top["metric"], "{top}");
    let services: Vec<&str> = inc["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        services.contains(&"carts") && services.contains(&"frontend"),
        "{services:?}"
    );
    assert!(
        inc["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["kind"] == "ranked"))
    );

    // The page is queued on disk while PagerDuty is down; kill -9 now.
    let outbox = data.join("incidents/outbox");
    wait_for(
        "the page in the outbox",
        Duration::from_secs(20),
        || async {
            let n = std::fs::read_dir(&outbox)
                .ok()?
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count();
            (n > 0).then_some(())
        },
    )
    .await;
    server.kill9();
    // PagerDuty comes back throttling (429, Retry-After: 1) and then failing once (500).
    {
        let mut d = pd.state.lock().expect("lock");
        d.down = false;
        d.script.extend([429, 500]);
    }
    let _server = start_serve(port, &data, Some(&cfg));
    wait_ready(&http, &base).await;
    let trigger = wait_for(
        "the trigger to be accepted",
        Duration::from_secs(30),
        || async {
            pd.accepted("event")
                .into_iter()
                .find(|r| r.body["event_action"] == "trigger")
        },
    )
    .await;
    assert_eq!(trigger.body["dedup_key"], id.as_str());
    assert_eq!(trigger.body["routing_key"], ROUTING_KEY);
    assert_eq!(trigger.body["payload"]["component"], "carts");
    assert_eq!(
        trigger.body["payload"]["custom_details"]["candidates"][0]["service"],
        "carts"
    );
    assert!(
        trigger.body["links"][0]["href"]
            .as_str()
            .is_some_and(|h| h == format!("https://aiops.example.internal/api/v1/incidents/{id}"))
    );
    let all = pd.all();
    let throttled = all
        .iter()
        .find(|r| r.status == 429)
        .expect("the 429 was seen");
    assert!(all.iter().any(|r| r.status == 500), "the 500 was retried");
    assert!(
        trigger.at.duration_since(throttled.at) >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    // The incident survived the crash too.
    let again = get_json(&http, &format!("{base}/api/v1/incidents/{id}"))
        .await
        .expect("incident kept");
    assert_eq!(again["candidates"][0]["service"], "carts");

    // PagerDuty tells us about its incident (signed): our candidates go back as a note.
    let hook = serde_json::json!({"event": {
        "id": "01HWZ4Q0R2V3M8K5B7C9D1E2F3", "event_type": "incident.triggered", "resource_type": "incident",
        "occurred_at": "2024-05-01T12:00:03.512Z", "agent": null, "client": null,
        "data": {"id": "Q1AB2CD3EF4GH5", "type": "incident", "html_url": "https://acme.pagerduty.com/incidents/Q1AB2CD3EF4GH5",
                 "number": 4711, "status": "triggered", "incident_key": id, "title": "carts",
                 "service": {"id": "PSVC123", "type": "service_reference", "summary": "Checkout API"}}}})
    .to_string();
    let post = |sig: String| {
        http.post(format!("{base}/api/v1/pagerduty/webhook"))
            .header("content-type", "application/json")
            .header("x-webhook-id", "wh-1")
            .header("x-pagerduty-signature", sig)
            .body(hook.clone())
            .send()
    };
    let r = post("v1=deadbeef".into()).await.expect("answered");
    assert_eq!(r.status(), 401);
    let r = post(aiops_rca::pagerduty::sign("whsec-1", hook.as_bytes()))
        .await
        .expect("answered");
    assert_eq!(r.status(), 202);
    let note = wait_for(
        "the note on the PagerDuty incident",
        Duration::from_secs(30),
        || async { pd.accepted("note").into_iter().next() },
    )
    .await;
    assert_eq!(note.incident.as_deref(), Some("Q1AB2CD3EF4GH5"));
    let content = note.body["note"]["content"].as_str().expect("content");
    assert!(content.contains("1. carts"), "{content}");
    // A retried delivery is not handled twice.
    let r = post(aiops_rca::pagerduty::sign("whsec-1", hook.as_bytes()))
        .await
        .expect("answered");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["status"],
        "duplicate"
    );

    // The fault ends; the anomalies close; the incident resolves and so does the PagerDuty alert.
    for k in 106..130 {
        client.send(&step(t0, k, false)).await.expect("accepted");
    }
    wait_for("the resolve event", Duration::from_secs(40), || async {
        pd.accepted("event")
            .into_iter()
            .find(|r| r.body["event_action"] == "resolve" && r.body["dedup_key"] == id.as_str())
    })
    .await;
    let done = get_json(&http, &format!("{base}/api/v1/incidents/{id}"))
        .await
        .expect("incident");
    assert_eq!(done["status"], "resolved");
    assert_eq!(
        pd.violations(),
        Vec::<String>::new(),
        "every request kept the contract"
    );
    assert_eq!(
        pd.accepted("note").len(),
        1,
        "one note per PagerDuty incident"
    );
}
