//! The stage's scoring, events, services, warm-up and overrides, end to end.

use super::*;
use aiops_models::{SampleBatchBuilder, SeriesMeta, Source, counter_rate};
use std::sync::Arc;

#[test]
fn a_sensitivity_override_applies_to_the_series_it_selects_also_after_a_restore() {
    let catalog = SeriesCatalog::new();
    let errors = Arc::new(SeriesMeta::new(
        Source::Prometheus,
        "errors",
        [("service".into(), "cart".into())],
    ));
    let latency = Arc::new(SeriesMeta::new(
        Source::Prometheus,
        "latency",
        [("service".into(), "cart".into())],
    ));
    catalog.insert(errors.clone());
    catalog.insert(latency.clone());
    let cfg = DetectConfig {
        sensitivity_overrides: vec![SensitivityOverride {
            selector: r#"errors{service="cart"}"#.into(),
            sensitivity: 0.0001,
        }],
        ..DetectConfig::default()
    };
    let mut problems = Vec::new();
    cfg.validate("detect", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let mut st = DetectState::default();
    let feed = |st: &mut DetectState, from: i64| {
        let mut b = SampleBatchBuilder::with_capacity(20);
        for i in from..from + 10 {
            b.push(errors.id, i * 60_000, 1.0);
            b.push(latency.id, i * 60_000, 1.0);
        }
        st.process(&cfg, &b.finish(), &catalog);
    };
    let sensitivity = |st: &DetectState, id: SeriesId| st.series[&id].detector.config().sensitivity;
    feed(&mut st, 0);
    assert_eq!(sensitivity(&st, errors.id), 0.0001);
    assert_eq!(sensitivity(&st, latency.id), 0.1);
    // A restore sets everyone's parameters; the next sample selects again.
    st.set_detector_config(DetectorConfig::default());
    assert_eq!(sensitivity(&st, errors.id), 0.1);
    feed(&mut st, 10);
    assert_eq!(sensitivity(&st, errors.id), 0.0001);

    let bad = DetectConfig {
        sensitivity_overrides: vec![SensitivityOverride {
            selector: "errors{".into(),
            sensitivity: 0.0,
        }],
        detector: DetectorConfig {
            rank_power: 0.5,
            young_days: f64::NAN,
            profile_drift_min_ratio: 0.5,
            ..DetectorConfig::default()
        },
        ..DetectConfig::default()
    };
    let mut problems = Vec::new();
    bad.validate("detect", &mut problems);
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(problems[0].contains("sensitivity_overrides[0].selector"));
    assert!(problems[2].contains("detect.detector.rank_power = 0.5"));
    assert!(problems[3].contains("detect.detector.profile_drift_min_ratio = 0.5"));
    assert!(problems[4].contains("detect.detector.young_days = NaN"));
}

#[test]
fn a_level_shift_opens_one_event_that_closes_when_quiet() {
    let catalog = SeriesCatalog::new();
    let meta = Arc::new(SeriesMeta::new(
        Source::Prometheus,
        "latency",
        [("service".into(), "payment".into())],
    ));
    catalog.insert(meta.clone());
    let cfg = DetectConfig {
        event_quiet_secs: 600,
        ..DetectConfig::default()
    };
    let mut st = DetectState::default();
    let mut b = SampleBatchBuilder::with_capacity(3000);
    for i in 0..3000i64 {
        let noise = ((i * 7919) % 101) as f64 / 101.0;
        let v = if (2000..2010).contains(&i) {
            500.0
        } else {
            10.0 + noise
        };
        b.push(meta.id, i * 60_000, v);
    }
    st.process(&cfg, &b.finish(), &catalog);
    assert_eq!(st.events.len(), 1, "{:?}", st.events);
    let e = &st.events[0];
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.start_ms, 2000 * 60_000);
    assert!(e.end_ms.is_some());
    // How rare the state was for this series: far beyond one in a million.
    assert!(e.p_value < 1e-6, "{e:?}");
    let json = serde_json::to_value(e).expect("serialises");
    assert!(json["p_value"].as_f64().expect("a number") < 1e-6, "{json}");
    st.take_changed();
    assert_eq!(
        st.published.query(0, i64::MAX, Some("payment"), 0.5).len(),
        1
    );
    assert!(
        st.published
            .query(0, i64::MAX, Some("cart"), 0.0)
            .is_empty()
    );
}

/// Load, CPU and disk of the `checkout` service, in `catalog`.
fn checkout_series(catalog: &SeriesCatalog) -> Vec<Arc<SeriesMeta>> {
    ["load", "cpu", "disk"]
        .iter()
        .map(|m| {
            let meta = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                *m,
                [("service".into(), "checkout".into())],
            ));
            catalog.insert(meta.clone());
            meta
        })
        .collect()
}

/// Steps `from..to` (a minute apart) of [`checkout_series`]: CPU follows load until step
/// 900, then no longer does (both stay inside their ranges).
fn checkout_steps(metas: &[Arc<SeriesMeta>], from: i64, to: i64) -> SampleBatch {
    let mut b = SampleBatchBuilder::with_capacity(3000);
    for i in from..to {
        let noise = |k: i64| (((i * 7919 + k * 104_729) % 1009) as f64 / 1009.0 - 0.5) * 0.2;
        let load = 100.0 + 20.0 * (i as f64 / 15.0).sin() + 10.0 * noise(0);
        let cpu = if i >= 900 {
            60.0 - 0.5 * (load - 100.0)
        } else {
            0.5 * load
        } + 5.0 * noise(1);
        for (meta, v) in metas.iter().zip([load, cpu, 3.0 + noise(2)]) {
            b.push(meta.id, i * 60_000 + 1_000, v);
        }
    }
    b.finish()
}

#[test]
fn deferred_refits_go_to_the_fitting_thread_at_most_once_per_refit_min_secs() {
    let catalog = SeriesCatalog::new();
    let metas = checkout_series(&catalog);
    let steps = |from, to| checkout_steps(&metas, from, to);
    let mut cfg = DetectConfig::default();
    cfg.services.refit_min_secs = 3600;
    // The first fit on two full cycles of the load.
    cfg.services.model.min_fit_rows = 200;
    let mut st = DetectState::default();
    st.defer_fits();
    st.process(&cfg, &steps(0, 300), &catalog);
    // The first fit was asked for, not made in line; one only, however many steps passed.
    let reqs = st.take_fit_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].service, "checkout");
    assert!(st.services["checkout"].model.fitted().is_none());

    let fitter = crate::fit::Fitter::spawn();
    assert!(fitter.submit(reqs).is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut done = Vec::new();
    while done.is_empty() && std::time::Instant::now() < deadline {
        done = fitter.finished();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    st.apply_fits(done);
    assert!(st.services["checkout"].model.fitted().is_some());
    fitter.stop();

    // Within the hour no refit is asked for; the fit in place still scores the break.
    st.process(&cfg, &steps(300, 1000), &catalog);
    assert!(st.take_fit_requests().is_empty());
    assert!(
        st.events
            .iter()
            .any(|e| e.metric == SERVICE_ANOMALY_METRIC && e.start_ms >= 900 * 60_000),
        "{:?}",
        st.events
    );
}

#[test]
fn a_broken_correlation_opens_a_service_event_naming_the_metric() {
    let catalog = SeriesCatalog::new();
    let metas = checkout_series(&catalog);
    let mut st = DetectState::default();
    // An output selecting no series still gets the service's score.
    let out = Arc::new(Collect::default());
    st.outputs.push(crate::derived::OutputSink::new(
        Box::new(out.clone()),
        &["nothing_selected".to_owned()],
        10,
    ));
    st.process(
        &DetectConfig::default(),
        &checkout_steps(&metas, 0, 1000),
        &catalog,
    );
    let written = out.series.lock().expect("lock").clone();
    let service_scores: Vec<(i64, f64)> = written
        .iter()
        .filter(|s| {
            s.labels
                == [
                    (
                        "__name__".to_owned(),
                        crate::derived::SERVICE_SCORE.to_owned(),
                    ),
                    ("service".to_owned(), "checkout".to_owned()),
                ]
        })
        .flat_map(|s| s.samples.clone())
        .collect();
    assert!(service_scores.len() > 100, "{}", service_scores.len());
    assert!(
        service_scores
            .iter()
            .all(|&(_, v)| (0.0..=1.0).contains(&v))
    );
    assert!(
        service_scores
            .iter()
            .any(|&(t, v)| t >= 900 * 60_000 && v >= 0.5)
    );
    assert_eq!(written.len(), service_scores.len(), "no series selected");
    let service_events: Vec<&AnomalyEvent> = st
        .events
        .iter()
        .filter(|e| e.metric == SERVICE_ANOMALY_METRIC)
        .collect();
    assert!(!service_events.is_empty(), "{:?}", st.events);
    let first = service_events[0];
    assert!(first.start_ms >= 900 * 60_000, "{first:?}");
    assert_eq!(first.service.as_deref(), Some("checkout"));
    assert!(
        first
            .labels
            .iter()
            .any(|(k, v)| k == "top_metric" && (v == "cpu" || v == "load")),
        "{first:?}"
    );
    assert!(st.services["checkout"].model.fitted().is_some());

    // The service models survive a checkpoint, missing values (NaN) included.
    st.services.get_mut("checkout").expect("service").latest[0].1 = f64::NAN;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    crate::stage::checkpoint::save(&st, &path);
    let back = crate::stage::checkpoint::load(&path);
    let (a, b) = (&st.services["checkout"], &back.services["checkout"]);
    assert_eq!(a.members, b.members);
    assert!(b.latest[0].1.is_nan());
    let row = [110.0, 40.0, 3.0];
    let (sa, sb) = (a.model.score_only(&row), b.model.score_only(&row));
    assert!(
        sa.score > 0.0 && (sa.score - sb.score).abs() < 1e-9,
        "{sa:?} {sb:?}"
    );
}

#[test]
fn counters_are_scored_as_rates_with_resets() {
    assert!(is_counter("http_requests_total") && is_counter("latency_seconds_bucket"));
    assert!(!is_counter("up") && !is_counter("total_memory_bytes"));
    assert_eq!(counter_rate((0, 10.0), (10_000, 30.0)), Some(2.0));
    assert_eq!(counter_rate((0, 100.0), (10_000, 5.0)), Some(0.5));
    assert_eq!(counter_rate((0, 1.0), (0, 2.0)), None);

    // A counter growing steadily for a long time raises nothing; its rate tripling does.
    let events = counter_events("requests_total", 10.0, None);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].start_ms, 2500 * 15_000);
    assert!((events[0].observed - 40.0 / 15.0).abs() < 1e-9);
}

/// The events of counter `metric` (service `api`) read every 15 s for 3,000 readings, counting
/// `base` plus 0–6 a reading, then 40 a reading from the 2,500th (its rate tripled); with
/// `garbage`, the 1,000th reading is that instead.
fn counter_events(metric: &str, base: f64, garbage: Option<f64>) -> Vec<AnomalyEvent> {
    let catalog = SeriesCatalog::new();
    let meta = Arc::new(SeriesMeta::new(
        Source::Prometheus,
        metric,
        [("service".into(), "api".into())],
    ));
    catalog.insert(meta.clone());
    let mut st = DetectState::default();
    let mut b = SampleBatchBuilder::with_capacity(3000);
    let mut v = 0.0;
    for i in 0..3000i64 {
        v += if i < 2500 {
            base + ((i * 7919) % 7) as f64
        } else {
            40.0
        };
        let reading = garbage.filter(|_| i == 1000).unwrap_or(v);
        b.push(meta.id, i * 15_000, reading);
    }
    st.process(&DetectConfig::default(), &b.finish(), &catalog);
    st.events
}

#[test]
fn a_counters_garbage_reading_opens_one_event_and_its_rate_tripling_another() {
    // A counter like the one above, counting fractions (a `_sum`: scored by its rate alone),
    // with one reading of 10⁹ (or 2⁶⁴ − 1) after 1,000 readings (about 13,000 counted).
    // Stepped from the garbage, the next reading read as a reset whose rate, 13,000 over 15 s,
    // was learnt: it widened the range, and the tripling went unseen.
    for garbage in [1e9, u64::MAX as f64] {
        let events = counter_events("request_duration_seconds_sum", 10.25, Some(garbage));
        let starts: Vec<i64> = events.iter().map(|e| e.start_ms / 15_000).collect();
        assert_eq!(starts, [1000, 2500], "{garbage}: {events:?}");
        assert!((events[1].observed - 40.0 / 15.0).abs() < 1e-9);
    }
}

#[test]
fn a_new_series_is_warmed_from_history() {
    let catalog = SeriesCatalog::new();
    let cfg = DetectConfig {
        detector: DetectorConfig {
            learning_samples: 100,
            ..DetectorConfig::default()
        },
        ..DetectConfig::default()
    };
    let history = |_: SeriesId, from: i64, to: i64| -> Vec<(i64, f64)> {
        (0..500i64)
            .map(|k| (k * 60_000, 10.0 + ((k * 7919) % 5) as f64 * 0.1))
            .filter(|p| p.0 >= from && p.0 <= to)
            .collect()
    };
    // Cold: the spike right after start falls in the learning period.
    let mut b = SampleBatchBuilder::with_capacity(1);
    b.push(SeriesId(3), 500 * 60_000, 90.0);
    let batch = b.finish();
    let mut cold = DetectState::default();
    cold.process(&cfg, &batch, &catalog);
    assert!(cold.events.is_empty());
    // Warm: 500 samples of history, so the spike is an anomaly at once.
    let mut warm = DetectState::default();
    warm.process_with_history(&cfg, &batch, &catalog, &history);
    assert_eq!(warm.events.len(), 1);
}

#[test]
fn a_series_with_history_is_warmed_in_the_background_and_its_spike_still_reported() {
    let catalog = SeriesCatalog::new();
    let cfg = DetectConfig {
        detector: DetectorConfig {
            learning_samples: 100,
            ..DetectorConfig::default()
        },
        ..DetectConfig::default()
    };
    let value = |k: i64| 10.0 + ((k * 7919) % 5) as f64 * 0.1;
    let mut b = SampleBatchBuilder::with_capacity(1);
    b.push(SeriesId(3), 500 * 60_000, 90.0);
    let mut st = DetectState::default();
    let no_history = |_, _, _| Vec::new();
    st.process_queued(&cfg, &b.finish(), &catalog, &no_history);
    // Scored cold at once, no event yet; queued for the warmer.
    assert!(st.events.is_empty());
    assert_eq!(st.warm_backlog(), 1);
    let reqs = st.take_warm_requests(10);
    assert_eq!(reqs.len(), 1);
    assert!(st.take_warm_requests(10).is_empty(), "one pass at a time");
    // The archive holds 500 minutes of history and the spike detection already saw.
    let scan = |wanted: &[(SeriesId, i64)], visit: &mut dyn FnMut(SeriesId, i64, f64)| {
        for &(id, from) in wanted {
            for k in 0..=500i64 {
                let t = k * 60_000;
                if t >= from {
                    visit(id, t, if k == 500 { 90.0 } else { value(k) });
                }
            }
        }
    };
    let warmed = crate::warm::warm_batch(&cfg.detector, &reqs, scan);
    st.apply_warmed(&cfg, &catalog, warmed);
    assert_eq!(st.warm_backlog(), 0);
    assert_eq!(st.events.len(), 1, "{:?}", st.events);
    assert_eq!(st.events[0].start_ms, 500 * 60_000);
    assert!(!st.series[&SeriesId(3)].warming);
}

#[test]
fn a_series_new_to_the_archive_starts_cold_without_reading_history() {
    let catalog = SeriesCatalog::new();
    let meta = Arc::new(SeriesMeta::new(Source::Prometheus, "up", []));
    let mut b = SampleBatchBuilder::with_capacity(1);
    b.push_series(meta.clone());
    b.push(meta.id, 60_000, 1.0);
    let mut st = DetectState::default();
    let read = std::sync::atomic::AtomicUsize::new(0);
    let history = |_, _, _| {
        read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Vec::new()
    };
    st.process_queued(&DetectConfig::default(), &b.finish(), &catalog, &history);
    st.process_with_history(
        &DetectConfig::default(),
        &SampleBatch::empty(),
        &catalog,
        &history,
    );
    assert_eq!(st.warm_backlog(), 0);
    assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(st.published.counters.fresh.load(Relaxed), 1);
}

#[test]
fn duplicate_samples_are_not_scored_twice() {
    let catalog = SeriesCatalog::new();
    let mut st = DetectState::default();
    let mut b = SampleBatchBuilder::with_capacity(2);
    b.push(SeriesId(1), 1000, 1.0);
    b.push(SeriesId(1), 1000, 1.0);
    st.process(&DetectConfig::default(), &b.finish(), &catalog);
    assert_eq!(st.scored, 1);
}

/// Collects what an output is handed.
#[derive(Debug, Default)]
struct Collect {
    series: std::sync::Mutex<Vec<crate::derived::DerivedSeries>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl crate::derived::DerivedOut for Arc<Collect> {
    fn send(&self, series: Vec<crate::derived::DerivedSeries>) {
        self.series.lock().expect("lock").extend(series);
    }
    fn series_not_selected(&self) {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn selected_series_are_written_as_five_derived_series_per_sample_up_to_max_series() {
    let catalog = SeriesCatalog::new();
    let metas: Vec<Arc<SeriesMeta>> = ["cart", "orders", "payment"]
        .iter()
        .map(|s| {
            let m = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                "latency",
                [("service".into(), (*s).into())],
            ));
            catalog.insert(m.clone());
            m
        })
        .collect();
    let other = Arc::new(SeriesMeta::new(Source::Prometheus, "errors", []));
    catalog.insert(other.clone());
    let out = Arc::new(Collect::default());
    let mut st = DetectState::default();
    // Latency series only, at most two of them.
    st.outputs.push(crate::derived::OutputSink::new(
        Box::new(out.clone()),
        &["latency".to_owned()],
        2,
    ));
    let mut b = SampleBatchBuilder::with_capacity(40);
    for m in metas.iter().chain([&other]) {
        for i in 0..10 {
            b.push(m.id, i * 60_000, 1.0 + (i % 3) as f64);
        }
    }
    st.process(&DetectConfig::default(), &b.finish(), &catalog);
    let got = out.series.lock().expect("lock").clone();
    // Two series × five derived series, each with every sample.
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|s| s.samples.len() == 10));
    assert_eq!(out.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    let label = |s: &crate::derived::DerivedSeries, k: &str| {
        s.labels.iter().find(|l| l.0 == k).map(|l| l.1.clone())
    };
    let names: std::collections::BTreeSet<String> =
        got.iter().filter_map(|s| label(s, "__name__")).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "aiops_anomaly_rank_score",
            "aiops_anomaly_score",
            "aiops_expected",
            "aiops_expected_lower",
            "aiops_expected_upper"
        ]
    );
    assert!(
        got.iter()
            .all(|s| label(s, "source_metric").as_deref() == Some("latency"))
    );
    assert!(
        got.iter()
            .all(|s| s.labels.windows(2).all(|w| w[0].0 < w[1].0))
    );
    let services: std::collections::BTreeSet<String> =
        got.iter().filter_map(|s| label(s, "service")).collect();
    assert_eq!(services.len(), 2);
    // The band holds the expectation, sample by sample.
    let of = |name: &str, service: &str| {
        got.iter()
            .find(|s| {
                label(s, "__name__").as_deref() == Some(name)
                    && label(s, "service").as_deref() == Some(service)
            })
            .map(|s| s.samples.clone())
            .expect("series")
    };
    let svc = services.first().expect("a service").clone();
    let (lo, mid, hi) = (
        of("aiops_expected_lower", &svc),
        of("aiops_expected", &svc),
        of("aiops_expected_upper", &svc),
    );
    for ((l, m), h) in lo.iter().zip(&mid).zip(&hi) {
        assert!(l.0 == m.0 && l.1 <= m.1 && m.1 <= h.1, "{l:?} {m:?} {h:?}");
    }
}
