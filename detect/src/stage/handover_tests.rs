//! Checkpoints and partition hand-overs of the stage's state.

use super::*;
use aiops_models::SampleBatchBuilder;

#[test]
fn an_event_the_checkpoint_missed_still_closes() {
    // A crash after the event log was written and before the checkpoint: the log has an
    // open event the (cold or older) series state does not know.
    let cfg = DetectConfig {
        event_quiet_secs: 60,
        ..DetectConfig::default()
    };
    let mut st = DetectState::default();
    st.events.push(AnomalyEvent {
        id: "7-1000".into(),
        series_id: SeriesId(7),
        metric: "m".into(),
        service: None,
        labels: vec![],
        start_ms: 1000,
        peak_ms: 1000,
        last_ms: 1000,
        end_ms: None,
        score: 1.0,
        observed: 9.0,
        expected: 1.0,
        lower: 0.0,
        upper: 2.0,
        p_value: 1.0,
        reason: None,
    });
    st.reattach_open_events();
    let mut b = SampleBatchBuilder::with_capacity(10);
    for i in 1..10 {
        b.push(SeriesId(7), 1000 + i * 10_000, 1.0);
    }
    st.process(&cfg, &b.finish(), &SeriesCatalog::new());
    assert_eq!(st.events[0].end_ms, Some(1000), "{:?}", st.events[0]);
}

#[test]
fn a_partition_hands_over_its_series_and_service_models() {
    use aiops_models::{SeriesMeta, Source};
    use std::sync::Arc;
    let cfg = DetectConfig::default();
    let catalog = SeriesCatalog::new();
    let mut b = SampleBatchBuilder::with_capacity(2000);
    let mut ids = Vec::new();
    for svc in ["carts", "orders"] {
        for metric in ["latency", "errors"] {
            let m = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                metric,
                [("service".to_owned(), svc.to_owned())],
            ));
            catalog.insert(m.clone());
            ids.push((svc, m.id));
        }
    }
    for k in 0..200 {
        for (_, id) in &ids {
            b.push(*id, k * 60_000, 1.0 + (k % 7) as f64 * 0.1);
        }
    }
    let mut from = DetectState::default();
    from.process(&cfg, &b.finish(), &catalog);
    assert_eq!(from.services.len(), 2);
    // The partition holding "carts" (both its series and its model).
    let carts: Vec<SeriesId> = ids
        .iter()
        .filter(|(s, _)| *s == "carts")
        .map(|(_, id)| *id)
        .collect();
    let series = |id: SeriesId| carts.contains(&id);
    let service = |s: &str| s == "carts";
    let owns = Ownership {
        series: &series,
        service: &service,
    };
    let (series_st, services, events) = from.export_partition(&owns);
    assert_eq!((series_st.len(), services.len()), (2, 1));
    // The model arrives fitted, as it was.
    assert!(services[0].1.model.fitted().is_some());
    let rows = services[0].1.model.fit_data();
    let mut to = DetectState::default();
    to.import_partition(series_st, services, events);
    assert!(to.services["carts"].model.fitted().is_some());
    assert_eq!(to.services["carts"].model.fit_data(), rows);
    from.remove_partition(&owns);
    assert_eq!(
        (from.series.len(), from.services.keys().collect::<Vec<_>>()),
        (2, vec![&"orders".to_owned()])
    );
}

#[test]
fn older_json_checkpoints_are_read_and_bad_ones_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("detect/checkpoint.json");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &path,
        br#"{"version": 1, "state": {"series": {}, "events": []}}"#,
    )
    .expect("write");
    assert!(load_json_checkpoint(&path).series.is_empty());
    // The binary loader falls back to the JSON file beside it.
    assert!(
        crate::stage::checkpoint::load(&path.with_extension("bin"))
            .events
            .is_empty()
    );
    std::fs::write(&path, b"{not json").expect("write");
    assert!(load_json_checkpoint(&path).series.is_empty());
    std::fs::write(
        &path,
        br#"{"version": 99, "state": {"series": {}, "events": []}}"#,
    )
    .expect("write");
    assert!(load_json_checkpoint(&path).series.is_empty());
    assert!(
        load_json_checkpoint(&dir.path().join("missing.json"))
            .series
            .is_empty()
    );
}
