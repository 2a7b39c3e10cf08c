//! The incident service's commands, book and paging.

use super::*;
use aiops_models::incident::AlertRef;

fn alert(status: &str) -> Command {
    Command::Alerts {
        alerts: vec![AlertInput {
            alert: AlertRef {
                fingerprint: "f1".into(),
                name: "QueueDepthHigh".into(),
                status: status.into(),
                labels: vec![("service".into(), "carts".into())],
                starts_ms: now_ms() - 60_000,
                ends_ms: None,
            },
            summary: Some("queue depth high".into()),
        }],
    }
}

#[tokio::test]
async fn a_node_that_does_not_own_the_incidents_forwards_changes_and_stays_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sent = Arc::new(Mutex::new(Vec::new()));
    let to_owner = sent.clone();
    let mut cfg = IncidentConfig::default();
    cfg.pagerduty.routing_key = Some(aiops_models::Secret::new("r".repeat(32)));
    let svc = IncidentService::open(cfg, dir.path(), &mut Registry::default())
        .expect("opens")
        .with_forward(Forward(Box::new(move |cmd| {
            to_owner.lock().expect("lock").push(cmd);
            Box::pin(async { Ok(()) })
        })));
    assert!(!svc.active());
    // Over HTTP: forwarded (202), not applied here.
    let resp = submit(&svc, alert("firing"), StatusCode::OK)
        .await
        .expect("accepted");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(svc.snapshot().incidents.is_empty());
    let cmd = sent.lock().expect("lock").pop().expect("forwarded");
    // The command survives the trip through the topic.
    let cmd: Command =
        serde_json::from_slice(&serde_json::to_vec(&cmd).expect("encode")).expect("decode");
    // The owner applies it: an incident opens.
    svc.set_owner(true);
    let out = svc.execute(cmd).expect("applied");
    assert_eq!(out["incidents"].as_array().map(Vec::len), Some(1), "{out}");
    // A node that is not the owner pages nothing, even for an open ranked incident...
    svc.set_owner(false);
    {
        let mut book = svc.lock();
        book.incidents[0].ranked_ms = Some(now_ms());
    }
    svc.repage();
    assert!(svc.outbox.pending().expect("outbox").is_empty());
    // ... the owner that took it over queues its page again (PagerDuty de-duplicates).
    svc.set_owner(true);
    assert_eq!(svc.repage(), 1);
    assert_eq!(svc.outbox.pending().expect("outbox").len(), 1);
}
