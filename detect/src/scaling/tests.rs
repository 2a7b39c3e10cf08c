//! Serving ahead, holding and refusing, warm-up, checkpoints, the load merger, validation.

use std::sync::Arc;

use aiops_models::{SeriesCatalog, SeriesMeta, Source};

use super::*;
use crate::DetectError;

fn setup() -> (ScalingConfig, SeriesCatalog, Vec<SeriesId>) {
    let cfg = ScalingConfig {
        step_secs: 60,
        stale_secs: 120,
        hold_secs: 300,
        min_history_steps: 3 * 1440,
        targets: vec![ScalingTarget {
            name: "checkout_rps".into(),
            namespace: Some("shop".into()),
            selector: r#"rps{service="checkout"}"#.into(),
            labels: Default::default(),
            capacity_per_pod: 10.0,
            lead_secs: 600,
            quantile: 0.9,
            under_budget: None,
            extra_budget: None,
            mode: Default::default(),
        }],
        ..ScalingConfig::default()
    };
    let catalog = SeriesCatalog::new();
    let ids = ["a", "b"]
        .iter()
        .map(|pod| {
            let meta = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                "rps",
                [
                    ("service".into(), "checkout".into()),
                    ("pod".into(), (*pod).into()),
                ],
            ));
            catalog.insert(meta.clone());
            meta.id
        })
        .collect();
    (cfg, catalog, ids)
}

/// Per-pod load with a daily peak at noon.
fn load(t: i64) -> f64 {
    let hour = (t % 86_400_000) as f64 / 3_600_000.0;
    20.0 + 15.0 * (std::f64::consts::PI * hour / 24.0).sin().powi(4)
}

#[test]
fn serves_the_load_ahead_then_holds_then_refuses_and_never_zero() {
    let (cfg, catalog, ids) = setup();
    let mut s = ScalingState::default();
    assert!(matches!(
        s.value(&cfg, "checkout_rps", Some("shop"), 0),
        Err(DetectError::NoLoad(n)) if n == "checkout_rps"
    ));
    // Four days, then stop at 10:00 on the fifth, while the load is rising.
    let end = 4 * 86_400_000 + 10 * 3_600_000;
    let mut t = 0;
    while t <= end {
        for id in &ids {
            s.observe(&cfg, &catalog, *id, t, load(t));
        }
        t += 60_000;
    }
    let v = s
        .value(&cfg, "checkout_rps", Some("shop"), end)
        .expect("value");
    assert_eq!(v.mode, Mode::Predictive);
    // Two pods; ten minutes ahead the load is higher than now, and served at least now's.
    assert!(v.value >= v.current, "{v:?}");
    assert!(v.value > 2.0 * load(end - 60_000), "{v:?}");
    assert!(
        (v.value - 2.0 * load(end + 600_000)).abs() < 3.0,
        "{v:?} vs {}",
        2.0 * load(end + 600_000)
    );
    assert_eq!(v.desired_replicas, (v.value / 10.0).ceil() as u64);
    // The chart's view: the latest steps' loads and the path ahead, bands ordered; the
    // served p90 is the path's point at the lead (10 steps).
    let o = s.outlook(&cfg, "checkout_rps", None).expect("outlook");
    assert_eq!(o.history.len(), outlook::HISTORY_STEPS);
    assert_eq!(o.history.last().map(|h| h.0), Some(end));
    assert!(o.history.windows(2).all(|w| w[1].0 - w[0].0 == 60_000));
    assert_eq!(o.path.len(), 20);
    assert!(
        o.path.iter().all(|f| f.p50 <= f.p90 && f.p90 <= f.p99),
        "{o:?}"
    );
    assert_eq!(v.forecast, Some(o.path[9].p90));
    assert_eq!(
        s.outlook(&cfg, "checkout_rps", Some(10_000))
            .map(|o| o.path.len())
            .ok(),
        Some(240)
    );
    assert!(matches!(
        s.outlook(&cfg, "nope", None),
        Err(DetectError::UnknownTarget(_))
    ));
    // Other namespaces do not see it; unknown names are unknown.
    assert!(matches!(
        s.value(&cfg, "checkout_rps", Some("other"), end),
        Err(DetectError::UnknownTarget(_))
    ));
    // Quiet for five minutes: held at the last good value, flagged.
    let held = s
        .value(&cfg, "checkout_rps", Some("shop"), end + 300_000)
        .expect("held");
    assert_eq!(held.mode, Mode::Held);
    assert!(held.stale && held.value == v.value, "{held:?}");
    // Quiet for longer than the hold: refused, not zero.
    assert!(matches!(
        s.value(&cfg, "checkout_rps", Some("shop"), end + 900_000),
        Err(DetectError::LoadExpired { .. })
    ));
}

#[test]
fn reactive_until_warm_and_round_trips_a_checkpoint() {
    let (cfg, catalog, ids) = setup();
    let mut s = ScalingState::default();
    for i in 0..30 {
        s.observe(&cfg, &catalog, ids[0], i * 60_000, 5.0);
    }
    let v = s
        .value(&cfg, "checkout_rps", None, 29 * 60_000)
        .expect("value");
    assert_eq!(
        (v.mode, v.value, v.desired_replicas),
        (Mode::Reactive, 5.0, 1)
    );
    let json = serde_json::to_string(&s).expect("serialise");
    let mut back: ScalingState = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(
        back.value(&cfg, "checkout_rps", None, 29 * 60_000)
            .expect("served"),
        v
    );
}

#[test]
fn a_new_target_is_warmed_from_its_members_history_and_forecasts_at_once() {
    let (cfg, catalog, ids) = setup();
    let end = 4 * 86_400_000 + 10 * 3_600_000;
    let history = |_: SeriesId, from: i64, to: i64| -> Vec<(i64, f64)> {
        (from.max(0) / 60_000..=to / 60_000)
            .map(|m| (m * 60_000, load(m * 60_000)))
            .collect()
    };
    let shared = crate::published::SharedScaling::default();
    let first = [(end, ids[0], load(end)), (end, ids[1], load(end))];
    let warmed = ScalingState::warm_new_targets(&shared, &cfg, &catalog, &first, &history);
    assert_eq!(warmed.len(), 1);
    let mut s = shared.lock();
    s.insert_targets(warmed);
    s.observe(&cfg, &catalog, ids[0], end, load(end));
    s.observe(&cfg, &catalog, ids[1], end, load(end));
    let st = &s.targets["checkout_rps"];
    // Four days of one-minute steps, learnt before the first live sample.
    assert!(
        st.forecaster.seen() >= 4 * 1440 - 2,
        "{}",
        st.forecaster.seen()
    );
    s.observe(&cfg, &catalog, ids[0], end + 60_000, load(end + 60_000));
    let v = s
        .value(&cfg, "checkout_rps", Some("shop"), end + 60_000)
        .expect("value");
    assert_eq!(v.mode, Mode::Predictive);
    // Both pods' history counted.
    assert!((v.current - 2.0 * load(end)).abs() < 1.0, "{v:?}");
}

#[test]
fn partitions_read_one_after_another_sum_like_one_stream() {
    let (cfg, catalog, ids) = setup();
    let sample = |i: usize, m: i64| LoadSample {
        target: "checkout_rps".into(),
        series: ids[i],
        ts_ms: m * 60_000,
        value: 1.0 + i as f64,
    };
    let msg = |samples: Vec<LoadSample>| LoadMessage {
        watermark_ms: samples.iter().map(|s| s.ts_ms).max().unwrap_or(0),
        samples,
    };
    // In time order, as one process sees them.
    let mut one = ScalingState::default();
    for m in 0..30 {
        for (i, id) in ids.iter().enumerate() {
            one.observe(&cfg, &catalog, *id, m * 60_000, 1.0 + i as f64);
        }
    }
    // Two partitions (one member each) read in chunks: partition 0 runs ten minutes ahead.
    let hold = 120_000;
    let mut merged = ScalingState::default();
    let mut merger = LoadMerger::new([0, 1], hold, 0);
    let apply = |ready: Vec<LoadSample>, st: &mut ScalingState| {
        for s in ready {
            st.observe_member(&cfg, &s);
        }
    };
    for chunk in 0..3 {
        for (p, i) in [(0, 0), (1, 1)] {
            let part: Vec<LoadSample> = (chunk * 10..chunk * 10 + 10)
                .map(|m| sample(i, m))
                .collect();
            apply(merger.push(p, msg(part), 0), &mut merged);
        }
    }
    apply(merger.at_end(0, 0), &mut merged);
    apply(merger.at_end(1, 0), &mut merged);
    assert_eq!(merger.waiting(), 0);
    let now = 29 * 60_000;
    let (a, b) = (
        one.value(&cfg, "checkout_rps", None, now).expect("one"),
        merged
            .value(&cfg, "checkout_rps", None, now)
            .expect("merged"),
    );
    // Both members in every step: 1 + 2.
    assert_eq!((a.current, b.current), (3.0, 3.0));
    assert_eq!(
        one.targets["checkout_rps"].forecaster.seen(),
        merged.targets["checkout_rps"].forecaster.seen()
    );
    // At start, a partition with nothing yet is waited for (its worker may be slower to
    // start), for the hold time at most.
    let mut fresh = LoadMerger::new([0, 1], hold, 0);
    assert!(fresh.at_end(1, 0).is_empty());
    assert!(fresh.push(0, msg(vec![sample(0, 0)]), 1_000).is_empty());
    assert!(fresh.at_end(0, 1_000).is_empty());
    assert_eq!(fresh.release(hold).len(), 1);
    // Partition 1's worker dies (both were quiet for a while before): partition 0 goes on
    // alone and waits for it...
    let mut wall = 10 * hold;
    for m in 30..35 {
        apply(merger.push(0, msg(vec![sample(0, m)]), wall), &mut merged);
        apply(merger.at_end(0, wall), &mut merged);
        wall += 10_000;
    }
    assert_eq!(merger.waiting(), 5);
    // ... until its new owner delivers the backlog: every step still has both members.
    let backlog = (30..35).map(|m| sample(1, m)).collect();
    apply(merger.push(1, msg(backlog), wall), &mut merged);
    apply(merger.at_end(1, wall), &mut merged);
    assert_eq!(merger.waiting(), 0);
    apply(merger.push(0, msg(vec![sample(0, 35)]), wall), &mut merged);
    let v = merged
        .value(&cfg, "checkout_rps", None, 35 * 60_000)
        .expect("merged");
    assert_eq!(v.current, 3.0);
    // A partition quiet for longer than the hold holds nobody up any more...
    assert_eq!(merger.release(wall + hold).len(), 1);
    // ... and one whose worker says how far it has read (no members there) at once.
    let mut lanes = LoadMerger::new([0, 1], hold, 0);
    assert!(lanes.push(0, msg(vec![sample(0, 1)]), 0).is_empty());
    let heartbeat = LoadMessage {
        watermark_ms: 60_000,
        samples: Vec::new(),
    };
    assert_eq!(lanes.push(1, heartbeat, 0).len(), 1);
}

#[test]
fn validation_names_every_problem() {
    let (mut cfg, _, _) = setup();
    cfg.targets.push(ScalingTarget {
        name: "Bad Name".into(),
        namespace: None,
        selector: "rps{".into(),
        labels: Default::default(),
        capacity_per_pod: 0.0,
        lead_secs: 60,
        quantile: 0.999,
        under_budget: Some(0.9),
        extra_budget: None,
        mode: Default::default(),
    });
    let mut p = Vec::new();
    cfg.validate("detect.scaling", &mut p);
    assert_eq!(p.len(), 5, "{p:?}");
    assert!(
        p.iter().all(|m| m.starts_with("detect.scaling.targets[1]")),
        "{p:?}"
    );
}

#[test]
fn shadow_mode_serves_the_load_and_reports_what_it_would_serve() {
    let (mut cfg, catalog, ids) = setup();
    let mut predictive = ScalingState::default();
    let mut shadow = ScalingState::default();
    let shadow_cfg = {
        let mut c = cfg.clone();
        c.targets[0].mode = ScalingMode::Shadow;
        c.targets[0].under_budget = Some(0.2);
        c
    };
    cfg.targets[0].under_budget = Some(0.2);
    let end = 4 * 86_400_000 + 10 * 3_600_000;
    let mut t = 0;
    while t <= end {
        for id in &ids {
            predictive.observe(&cfg, &catalog, *id, t, load(t));
            shadow.observe(&shadow_cfg, &catalog, *id, t, load(t));
        }
        t += 60_000;
    }
    let p = predictive
        .value(&cfg, "checkout_rps", None, end)
        .expect("predictive");
    let s = shadow
        .value(&shadow_cfg, "checkout_rps", None, end)
        .expect("shadow");
    assert_eq!(p.mode, Mode::Predictive);
    assert_eq!(s.mode, Mode::Shadow);
    // The HPA gets the load now; the report is exactly what predictive serves.
    assert_eq!(s.value, s.current);
    assert_eq!(s.would_serve, Some(p.value));
    assert!(p.value > p.current, "{p:?}");
    // The budget moved the quantile off its start (0.8) on this smooth load, the same way in
    // both modes, and the under-provisioned share is counted.
    let q = p.quantile.expect("quantile");
    assert_eq!(s.quantile, Some(q));
    assert!((0.5..=0.99).contains(&q) && q != 0.8, "{q}");
    let share = p.under_share.expect("scored steps");
    assert_eq!(s.under_share, Some(share));
    assert!(share < 0.5, "{share}");
}
