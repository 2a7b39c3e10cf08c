//! The demo's workload, run through detection as `aiops demo` runs it (three hours of history at
//! 15 s, then live samples at 15 s), with no fault: no anomaly event may open — for many seeds,
//! at every hour of the day. A newcomer's first look must not be a false alarm. And with a fault
//! injected, the faulty service's events come.

use std::sync::Arc;

use aiops_demo::simulate::{Fault, FaultKind, Simulator};
use aiops_detect::{DetectConfig, DetectState};
use aiops_models::{AnomalyEvent, SampleBatchBuilder, SeriesCatalog, SeriesMeta, Source};

const STEP_MS: i64 = 15_000;

/// Mid-week (a Tuesday, 2027-01-12 00:00 UTC): the simulator's weekend step (load × 0.6 at
/// midnight) is a real change, not what these tests are about.
const TUESDAY_MS: i64 = 1_799_712_000_000;

/// Events raised on the demo workload of `seed` over `history_h` hours of history and
/// `live_min` minutes of live samples, the history ending at `end` (Unix ms).
fn events(seed: u64, end: i64, history_h: i64, live_min: i64) -> Vec<String> {
    let events = run(seed, end, history_h, live_min, None);
    events
        .iter()
        .map(|e| {
            format!(
                "{} {:?} at {} (score {:.2})",
                e.metric,
                e.labels,
                e.start_ms - end,
                e.score
            )
        })
        .collect()
}

/// The demo workload through detection, with `fault` (service, kind) from two minutes into the
/// live samples for ten minutes (the demo's defaults); the events raised.
fn run(
    seed: u64,
    end: i64,
    history_h: i64,
    live_min: i64,
    fault: Option<(&str, FaultKind)>,
) -> Vec<AnomalyEvent> {
    let mut sim = Simulator::demo(seed);
    if let Some((service, kind)) = fault {
        sim.inject(Fault {
            service: sim.service_index(service).expect("a demo service"),
            kind,
            start_ms: end + 120_000,
            end_ms: end + 720_000,
        });
    }
    let catalog = SeriesCatalog::new();
    let mut st = DetectState::default();
    let cfg = DetectConfig::default();
    let start = end - history_h * 3_600_000;
    let mut t = start;
    while t < end + live_min * 60_000 {
        let tick = sim.tick(t);
        let mut b = SampleBatchBuilder::with_capacity(tick.len());
        for ts in tick {
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .expect("named");
            let labels = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone()));
            let meta = Arc::new(SeriesMeta::new(Source::Prometheus, name, labels));
            catalog.insert(meta.clone());
            for s in &ts.samples {
                b.push(meta.id, s.timestamp, s.value);
            }
        }
        st.process(&cfg, &b.finish(), &catalog);
        t += STEP_MS;
    }
    st.events.into_iter().collect()
}

/// 25 seeds × 3.5 hours × 42 series ≈ 150 series-days: at the default sensitivity (0.01 false
/// alarms per series per day) the expected count is about 1.5 if the calibration held exactly;
/// at the previous fixed bars (3 deviations, tail 1e-5 per sample, whatever the sampling rate)
/// the same run raised 573 events, and before error counters were scored as counts two of them
/// on the sparse error counters. Deterministic: the simulator is seeded.
#[test]
fn the_demo_raises_no_event_without_a_fault_run_after_run() {
    let mut noisy = Vec::new();
    for seed in (1..=24).chain([42]) {
        let end = TUESDAY_MS + 4 * 3_600_000 + (seed as i64 * 3_600_000 * 7) % (20 * 3_600_000);
        let ev = events(seed, end, 3, 30);
        if !ev.is_empty() {
            noisy.push(format!("seed {seed}: {ev:#?}"));
        }
    }
    assert!(noisy.is_empty(), "{}", noisy.join("\n"));
}

/// Every hour of the day, four seeds each, the live half hour starting at half past. (Before
/// error counters were scored as counts, 12 of these 96 runs raised events: a catalog error
/// counter at one error per scrape, then a scrape with none.)
#[test]
fn the_demo_raises_no_event_without_a_fault_at_any_hour() {
    let mut noisy = Vec::new();
    for hour in 0..24 {
        for seed in [7, 11, 42, 99] {
            let end = TUESDAY_MS + hour * 3_600_000 + 1_800_000;
            let ev = events(seed, end, 3, 30);
            if !ev.is_empty() {
                noisy.push(format!("hour {hour} seed {seed}: {ev:#?}"));
            }
        }
    }
    assert!(noisy.is_empty(), "{}", noisy.join("\n"));
}

/// Each kind of fault, in a service deep in the call graph and in one near the top: an event on
/// the faulty service opens while the fault lasts. The memory leak of the demo's ten minutes —
/// 2 MiB a minute on a few hundred MB with 2 % noise — is a slow ramp the prediction follows:
/// the level's drift from its baseline reports it (before that alarm, it raised nothing).
#[test]
fn an_injected_fault_is_reported_on_its_service() {
    let end = TUESDAY_MS + 14 * 3_600_000 + 1_800_000;
    let mut missed = Vec::new();
    for service in ["payment", "cart"] {
        for kind in [
            FaultKind::CpuHog,
            FaultKind::Latency,
            FaultKind::Errors,
            FaultKind::MemoryLeak,
        ] {
            let events = run(42, end, 3, 15, Some((service, kind)));
            let hit = events.iter().any(|e| {
                e.service.as_deref() == Some(service)
                    && (end + 120_000..end + 720_000).contains(&e.start_ms)
            });
            if !hit {
                let seen: Vec<_> = events.iter().map(|e| (&e.metric, &e.service)).collect();
                missed.push(format!("{service}:{kind:?}: {seen:?}"));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
