//! The book: policy, merging, resolving, feedback, persistence.

use super::*;
use crate::Edge;
use aiops_models::SeriesId;

fn ev(id: &str, service: &str, start_ms: i64, end_ms: Option<i64>) -> AnomalyEvent {
    AnomalyEvent {
        id: id.into(),
        series_id: SeriesId(1),
        metric: "latency_seconds".into(),
        service: Some(service.into()),
        labels: vec![("service".into(), service.into())],
        start_ms,
        peak_ms: start_ms,
        last_ms: start_ms + 10_000,
        end_ms,
        score: 0.9,
        observed: 2.0,
        expected: 1.0,
        lower: 0.5,
        upper: 1.5,
        p_value: 1.0,
        reason: None,
    }
}

#[test]
fn correlated_anomalies_open_one_incident_that_merges_and_resolves() {
    let cfg = IncidentConfig::default();
    let g = CallGraph::default();
    let mut b = IncidentBook::default();
    // One service alone: pending, no incident (min_services 2).
    assert!(
        b.on_anomaly(&cfg, &g, &ev("a", "carts", 0, None), false, 1)
            .is_empty()
    );
    // A second service within the window: one incident with both.
    let c = b.on_anomaly(&cfg, &g, &ev("b", "frontend", 20_000, None), false, 2);
    let Change::Opened(id) = &c[0] else {
        panic!("{c:?}")
    };
    let inc = b.get(id).expect("opened");
    assert_eq!(inc.anomalies, ["a", "b"]);
    assert_eq!(inc.symptom.detected_ms, 0);
    // A third, later but within the window: merged, not a new incident.
    let c = b.on_anomaly(&cfg, &g, &ev("c", "orders", 200_000, None), false, 3);
    assert_eq!(c, [Change::Updated(id.clone())]);
    assert_eq!(b.incidents.len(), 1);
    // The same event again (extended): still the same incident, no duplicate.
    b.on_anomaly(&cfg, &g, &ev("c", "orders", 200_000, None), false, 4);
    assert_eq!(b.get(id).expect("kept").anomalies.len(), 3);
    // Not resolved while anomalies are open.
    assert!(b.tick(&cfg, 10_000_000, 5).is_empty());
    for x in ["a", "b", "c"] {
        let mut e = ev(x, "carts", 0, Some(210_000));
        e.last_ms = 210_000;
        b.on_anomaly(&cfg, &g, &e, false, 6);
    }
    // Closed, but not quiet long enough yet.
    assert!(b.tick(&cfg, 300_000, 7).is_empty());
    assert_eq!(b.tick(&cfg, 600_000, 8), [Change::Resolved(id.clone())]);
    // Survives a save and load.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.json");
    b.save(&path).expect("saved");
    let back = IncidentBook::load(&path).expect("loaded");
    assert_eq!(back.incidents, b.incidents);
    assert!(
        IncidentBook::load(&dir.path().join("none.json"))
            .expect("empty")
            .incidents
            .is_empty()
    );
}

#[test]
fn a_symptom_opens_alone_and_the_topology_keeps_unrelated_services_apart() {
    let cfg = IncidentConfig {
        topology: vec![Edge {
            caller: "frontend".into(),
            callee: "carts".into(),
        }],
        ..IncidentConfig::default()
    };
    let g = cfg.graph();
    let mut b = IncidentBook::default();
    let c = b.on_anomaly(&cfg, &g, &ev("a", "frontend", 0, None), true, 1);
    assert!(matches!(c[0], Change::Opened(_)));
    // carts is called by frontend: merged; billing is not connected: kept out.
    assert!(matches!(
        b.on_anomaly(&cfg, &g, &ev("b", "carts", 1000, None), false, 2)[0],
        Change::Updated(_)
    ));
    assert!(
        b.on_anomaly(&cfg, &g, &ev("c", "billing", 1000, None), false, 3)
            .is_empty()
    );
    assert_eq!(b.incidents.len(), 1);
    // Correlated anomalies: the symptom is the caller, even when the callee scores higher.
    let mut b = IncidentBook::default();
    let mut strong = ev("x", "carts", 0, None);
    strong.score = 0.99;
    b.on_anomaly(&cfg, &g, &strong, false, 1);
    b.on_anomaly(&cfg, &g, &ev("y", "frontend", 0, None), false, 2);
    assert_eq!(b.incidents[0].symptom.service.as_deref(), Some("frontend"));
    // History (an anomaly an hour old when it arrives) is not paged.
    let mut b = IncidentBook::default();
    assert!(
        b.on_anomaly(&cfg, &g, &ev("old", "frontend", 0, None), true, 3_600_000)
            .is_empty()
    );
    assert!(b.incidents.is_empty());
}

#[test]
fn alerts_open_enrich_and_resolve_and_feedback_is_counted_once() {
    let cfg = IncidentConfig::default();
    let g = CallGraph::default();
    let mut b = IncidentBook::default();
    let alert = |fp: &str, status: &str| AlertInput {
        alert: AlertRef {
            fingerprint: fp.into(),
            name: "HighLatency".into(),
            status: status.into(),
            labels: vec![("service".into(), "api".into())],
            starts_ms: 1000,
            ends_ms: None,
        },
        summary: Some("p99 above SLO".into()),
    };
    let Change::Opened(id) = b.on_alert(&cfg, &g, &alert("f1", "firing"), 1)[0].clone() else {
        panic!()
    };
    assert_eq!(b.get(&id).expect("open").title, "p99 above SLO");
    // A second alert of the same service enriches; a repeat of the first changes nothing.
    b.on_alert(&cfg, &g, &alert("f2", "firing"), 2);
    b.on_alert(&cfg, &g, &alert("f1", "firing"), 3);
    assert_eq!(b.get(&id).expect("open").alerts.len(), 2);
    assert_eq!(
        b.on_alert(&cfg, &g, &alert("f1", "resolved"), 4),
        [Change::Updated(id.clone())]
    );
    assert_eq!(
        b.on_alert(&cfg, &g, &alert("f2", "resolved"), 5),
        [Change::Resolved(id.clone())]
    );
    // Feedback: unknown incident, empty service, then counted once.
    assert!(matches!(
        b.feedback("nope", "x".into(), None, None, 6),
        Err(BookError::NotFound(_))
    ));
    assert!(matches!(
        b.feedback(&id, " ".into(), None, None, 6),
        Err(BookError::Invalid(_))
    ));
    b.feedback(&id, "api".into(), None, None, 7)
        .expect("recorded");
    b.feedback(&id, "db".into(), None, None, 8)
        .expect("replaced");
    assert_eq!(b.feedback.total, 1);
    assert_eq!(
        b.get(&id)
            .and_then(|i| i.feedback.as_ref())
            .map(|f| f.service.as_str()),
        Some("db")
    );
    assert!(b.first_delivery("w1") && !b.first_delivery("w1"));
}

/// Every change moves `updated_ms` on, even several in one millisecond: the newest state of an
/// incident is the one with the largest, and a change that left it equal was never published
/// (a mirror kept the incident without the last service; `tests/kafka_e2e.rs` caught it).
#[test]
fn every_change_moves_updated_ms_on_even_within_one_millisecond() {
    let cfg = IncidentConfig::default();
    let g = CallGraph::default();
    let mut b = IncidentBook::default();
    b.on_anomaly(&cfg, &g, &ev("a", "carts", 0, None), false, 5);
    b.on_anomaly(&cfg, &g, &ev("b", "frontend", 0, None), false, 5);
    let mut last = b.incidents[0].updated_ms;
    for (i, service) in ["orders", "payment", "shipping"].into_iter().enumerate() {
        let id = format!("c{i}");
        b.on_anomaly(&cfg, &g, &ev(&id, service, 0, None), false, 5);
        let inc = &b.incidents[0];
        assert!(inc.services.iter().any(|s| s == service), "{service}");
        assert!(
            inc.updated_ms > last,
            "{service}: {} after {last}",
            inc.updated_ms
        );
        last = inc.updated_ms;
    }
    // An update of an anomaly already attached (it ended), in the same millisecond too.
    b.on_anomaly(&cfg, &g, &ev("c0", "orders", 0, Some(1)), false, 5);
    assert!(b.incidents[0].updated_ms > last);
}
