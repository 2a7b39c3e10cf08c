//! Checkpoints: round trips, older layouts, corruption.

use super::*;
use crate::stage::DetectConfig;
use aiops_models::{AlarmReason, SampleBatchBuilder, SeriesCatalog};

fn state() -> DetectState {
    let mut st = DetectState::default();
    let mut b = SampleBatchBuilder::with_capacity(20_000);
    for i in 0..2000 {
        for s in 0..10 {
            b.push(SeriesId(s), i * 1000, ((i + s as i64) % 10) as f64);
        }
    }
    st.process(&DetectConfig::default(), &b.finish(), &SeriesCatalog::new());
    st
}

#[test]
fn round_trips_written_a_slice_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("detect/checkpoint.bin");
    let st = state();
    let mut w = CheckpointWriter::start(&st, &path).expect("starts");
    assert!(!w.step(&st, 3).expect("writes"));
    assert!(w.step(&st, 100).expect("writes"));
    assert_eq!(w.finish().expect("seals"), 10);
    let back = load(&path);
    assert_eq!(back.series.len(), 10);
    assert_eq!(
        back.series[&SeriesId(7)].detector,
        st.series[&SeriesId(7)].detector
    );
    assert_eq!(back.events.len(), st.events.len());
}

/// The scaling targets' policy states (the adapted quantile, the values awaiting their
/// step) come back with the forecasters.
#[test]
fn scaling_policies_round_trip() {
    use crate::scaling::{LoadSample, Policy, ScalingConfig, ScalingMode, ScalingTarget};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("detect/checkpoint.bin");
    let st = state();
    let cfg = ScalingConfig {
        targets: vec![ScalingTarget {
            name: "web".into(),
            namespace: None,
            selector: "rps".into(),
            labels: Default::default(),
            capacity_per_pod: 10.0,
            lead_secs: 60,
            quantile: 0.9,
            under_budget: Some(0.1),
            extra_budget: None,
            mode: ScalingMode::Shadow,
        }],
        ..ScalingConfig::default()
    };
    let policy = Policy::of(&cfg.targets[0]);
    {
        let mut scaling = st.scaling.lock();
        for i in 0..5 {
            scaling.observe_member(
                &cfg,
                &LoadSample {
                    target: "web".into(),
                    series: SeriesId(1),
                    ts_ms: i * 60_000,
                    value: 7.0,
                },
            );
        }
        let mut p = PolicyState::new(&policy);
        p.step(&policy, 0, 5.0, Some(4.0));
        p.step(&policy, 60_000, 5.0, Some(6.0));
        assert!(p.scored == 1 && p.quantile > 0.9);
        scaling.targets.get_mut("web").expect("target").policy = Some(p);
    }
    let mut w = CheckpointWriter::start(&st, &path).expect("starts");
    assert!(w.step(&st, usize::MAX).expect("writes"));
    w.finish().expect("seals");
    let back = load(&path);
    let (before, after) = (st.scaling.lock(), back.scaling.lock());
    let (b, a) = (&before.targets["web"], &after.targets["web"]);
    assert_eq!(a.policy, b.policy);
    assert_eq!(a.forecaster, b.forecaster);
}

/// A checkpoint written before the forecasters' compact layout (a `Header2` frame whose
/// targets hold the frozen layout, here one written by that version) still loads: the
/// target keeps its members, steps, forecaster (which forecasts at once) and its policy
/// state as written before the extra-capacity budget (`Policies`).
#[test]
fn a_checkpoint_with_the_previous_forecaster_layout_still_loads() {
    use crate::forecast::ForecasterV1;
    use crate::scaling::{ScalingStateV1, TargetStateV1};
    let old: ForecasterV1 =
        serde_json::from_str(include_str!("../../forecast/v1_forecaster.json")).expect("v1");
    let target = TargetStateV1 {
        latest: [(SeriesId(1), (5_000, 7.0))].into_iter().collect(),
        step: 42,
        forecaster: old.clone(),
        current: Some((4_000, 7.0)),
        last_good: Some((4_000, 8.0)),
    };
    let header = HeaderV2 {
        services: Vec::new(),
        events: Vec::new(),
        scaling: ScalingStateV1 {
            targets: [("web".to_string(), target)].into_iter().collect(),
        },
    };
    let mut bytes = MAGIC.to_vec();
    write_frame(&mut bytes, &Frame::Header2(Box::new(header))).expect("header");
    let policy = PolicyStateV1 {
        quantile: 0.83,
        pending: [(60_000, 9.0)].into_iter().collect(),
        scored: 12,
        under: 2,
    };
    let policies = vec![("web".to_string(), policy.clone())];
    write_frame(&mut bytes, &Frame::Policies(policies)).expect("policies");
    write_frame(&mut bytes, &Frame::Trailer { series: 0 }).expect("trailer");
    let back = read(&bytes).expect("reads");
    let scaling = back.scaling.lock();
    let t = &scaling.targets["web"];
    assert_eq!(
        (t.step, t.current, t.last_good),
        (42, Some((4_000, 7.0)), Some((4_000, 8.0)))
    );
    assert_eq!(t.latest[&SeriesId(1)], (5_000, 7.0));
    let converted: crate::forecast::Forecaster = old.into();
    assert_eq!(t.forecaster, converted);
    assert_eq!(t.policy, Some(policy.into()));
    let fc = t.forecaster.forecast(2).expect("forecasts");
    assert!(
        fc.point.is_finite() && fc.p50 <= fc.p90 && fc.p90 <= fc.p99,
        "{fc:?}"
    );
}

/// An event as a checkpoint of that time held it: [`EventV2`] (before reasons), whose first
/// part is [`EventV1`] (before p-values). The older layouts are today's event's first fields,
/// so they read from its bytes (postcard leaves the rest unread).
fn as_v2(e: &AnomalyEvent) -> EventV2 {
    postcard::from_bytes(&postcard::to_stdvec(e).expect("writes")).expect("a prefix reads")
}

fn drift_event() -> AnomalyEvent {
    AnomalyEvent {
        id: "4-7000".into(),
        series_id: SeriesId(4),
        metric: "m".into(),
        service: None,
        labels: vec![("pod".into(), "a".into())],
        start_ms: 7000,
        peak_ms: 7000,
        last_ms: 7000,
        end_ms: None,
        score: 1.0,
        observed: 5.0,
        expected: 2.0,
        lower: 1.0,
        upper: 3.0,
        p_value: 1e-5,
        reason: Some(AlarmReason::Drift),
    }
}

/// An open event keeps why it alarmed through a checkpoint; one from a checkpoint written
/// before events carried their reason (a `Header3` frame) loads with its p-value and none.
#[test]
fn events_keep_their_reason_and_older_ones_load_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("detect/checkpoint.bin");
    let mut st = state();
    st.events.push(drift_event());
    save(&st, &path);
    let back = load(&path);
    let find = |st: &DetectState| st.events.iter().find(|e| e.id == "4-7000").cloned();
    assert_eq!(find(&back), Some(drift_event()));

    let header = HeaderV3 {
        services: Vec::new(),
        events: st.events.iter().map(as_v2).collect(),
        scaling: Default::default(),
    };
    let mut bytes = MAGIC.to_vec();
    write_frame(&mut bytes, &Frame::Header3(Box::new(header))).expect("header");
    write_frame(&mut bytes, &Frame::Trailer { series: 0 }).expect("trailer");
    let ev = find(&read(&bytes).expect("reads")).expect("event");
    assert_eq!((ev.p_value, ev.reason), (1e-5, None));
    assert_eq!(ev.labels, drift_event().labels);
    // The frozen layout is the event's as it was, byte for byte: today's event without a
    // reason is that and the `None` postcard writes (one zero byte).
    let old = postcard::to_stdvec(&as_v2(&ev)).expect("writes");
    let now = postcard::to_stdvec(&ev).expect("writes");
    assert_eq!(now, [old, vec![0]].concat());
}

/// A checkpoint written before the continuous score had a state of its own still loads: the
/// detectors resume, the continuous score learns afresh.
#[test]
fn a_checkpoint_of_the_previous_version_still_loads() {
    let mut st = state();
    st.events.push(AnomalyEvent {
        id: "3-5000".into(),
        series_id: SeriesId(3),
        metric: "m".into(),
        service: Some("svc".into()),
        labels: vec![],
        start_ms: 5000,
        peak_ms: 5000,
        last_ms: 6000,
        end_ms: None,
        score: 0.9,
        observed: 9.0,
        expected: 1.0,
        lower: 0.0,
        upper: 2.0,
        p_value: 1e-7,
        reason: Some(AlarmReason::Range),
    });
    let mut bytes = MAGIC.to_vec();
    let events = st.events.iter().map(|e| as_v2(e).v1).collect();
    let header = HeaderV1 {
        services: Vec::new(),
        events,
        scaling: Default::default(),
    };
    write_frame(&mut bytes, &Frame::Header(Box::new(header))).expect("header");
    let old: Vec<(SeriesId, SeriesState)> = st
        .series
        .iter()
        .map(|(id, s)| (*id, (**s).clone()))
        .collect();
    write_frame(&mut bytes, &Frame::Series(old)).expect("series");
    write_frame(&mut bytes, &Frame::Trailer { series: 10 }).expect("trailer");
    let back = read(&bytes).expect("reads");
    assert_eq!(back.series.len(), 10);
    let (was, now) = (&st.series[&SeriesId(3)], &back.series[&SeriesId(3)]);
    assert_eq!(was.last_ms, now.last_ms);
    assert_ne!(was.detector.rank, RankState::default());
    assert_eq!(now.detector.rank, RankState::default());
    assert_eq!(back.events.len(), st.events.len());
    let ev = back
        .events
        .iter()
        .find(|e| e.id == "3-5000")
        .expect("event");
    assert_eq!((ev.last_ms, ev.score, ev.p_value), (6000, 0.9, 1.0));
}

/// A checkpoint written before counts were scored as counts (its `Series2` frames) keeps
/// the continuous score's state; a counter's counts learn afresh. The current frames keep
/// them.
#[test]
fn a_checkpoint_from_before_counts_keeps_the_continuous_score() {
    let mut st = state();
    let d = &mut st.series.get_mut(&SeriesId(3)).expect("series").detector;
    for i in 0..400 {
        d.update_counted(2_000_000 + i * 15_000, 1.0 / 15.0, Some(1.0));
    }
    // (The departure from the day's shape is watched from two weeks on: learnt here directly.)
    for i in 0..10 {
        (d.rank.profile_drift).update(
            i64::from(i) * 300_000,
            0.1 * f64::from(i),
            1.0,
            &Default::default(),
            1e-3,
        );
    }
    let counted = d.rank;
    assert_ne!(counted.count, Default::default());
    // Every series with its continuous score's state as an older frame held it.
    fn series_as<R: From<RankState>>(st: &DetectState) -> Vec<(SeriesId, SeriesState, R)> {
        (st.series.iter())
            .map(|(id, s)| (*id, (**s).clone(), s.detector.rank.into()))
            .collect()
    }
    // Series 3's state as read back from a checkpoint of that time with `series` as its frame.
    let read_back = |series: Frame| {
        let header = HeaderV2 {
            services: Vec::new(),
            events: Vec::new(),
            scaling: Default::default(),
        };
        let mut bytes = MAGIC.to_vec();
        write_frame(&mut bytes, &Frame::Header2(Box::new(header))).expect("header");
        write_frame(&mut bytes, &series).expect("series");
        write_frame(&mut bytes, &Frame::Trailer { series: 10 }).expect("trailer");
        read(&bytes).expect("reads").series[&SeriesId(3)]
            .detector
            .rank
    };
    assert_ne!(counted.drift, Default::default());
    assert_ne!(counted.volatility, Default::default());
    let mut now = read_back(Frame::Series2(series_as::<RankStateV1>(&st)));
    assert_eq!(now.count, Default::default());
    assert_eq!(now.extremes, Default::default());
    assert_eq!(now.drift, Default::default());
    assert_eq!(now.volatility, Default::default());
    now.count = counted.count;
    now.extremes = counted.extremes;
    now.drift = counted.drift;
    now.volatility = counted.volatility;
    now.profile_drift = counted.profile_drift;
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    // Written before the range's tails were kept (`Series3`): the counts stay, the tails
    // learn afresh.
    let mut now = read_back(Frame::Series3(series_as::<RankStateV2>(&st)));
    assert_eq!(now.count, counted.count);
    assert_ne!(counted.extremes, Default::default());
    assert_eq!(now.extremes, Default::default());
    now.extremes = counted.extremes;
    now.drift = counted.drift;
    now.volatility = counted.volatility;
    now.profile_drift = counted.profile_drift;
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    // Written before the level's drift was kept (`Series4`): the tails stay, the drift
    // learns afresh.
    let mut now = read_back(Frame::Series4(series_as::<RankStateV3>(&st)));
    assert_eq!(now.extremes, counted.extremes);
    assert_eq!(now.drift, Default::default());
    now.drift = counted.drift;
    now.volatility = counted.volatility;
    now.profile_drift = counted.profile_drift;
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    // Written before the step sizes were watched (`Series5`): the drift stays, the step
    // sizes learn afresh.
    let mut now = read_back(Frame::Series5(series_as::<RankStateV4>(&st)));
    assert_eq!(now.drift, counted.drift);
    assert_eq!(now.volatility, Default::default());
    now.volatility = counted.volatility;
    now.profile_drift = counted.profile_drift;
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    // Written before the departure from the day's shape was watched (`Series6`): the step
    // sizes stay, the departure learns afresh.
    assert_ne!(counted.profile_drift, Default::default());
    let mut now = read_back(Frame::Series6(series_as::<RankStateV5>(&st)));
    assert_eq!(now.volatility, counted.volatility);
    assert_eq!(now.profile_drift, Default::default());
    now.profile_drift = counted.profile_drift;
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    // Written before bursts were watched (`Series7`): the departure from the day's shape
    // stays, the share of large steps learns afresh.
    assert_ne!(counted.bursts, Default::default());
    let mut now = read_back(Frame::Series7(series_as::<RankStateV6>(&st)));
    assert_eq!(now.profile_drift, counted.profile_drift);
    assert_eq!(now.bursts, Default::default());
    now.bursts = counted.bursts;
    assert_eq!(now, counted);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("checkpoint.bin");
    save(&st, &path);
    assert_eq!(load(&path).series[&SeriesId(3)].detector.rank, counted);
}

#[test]
fn a_flipped_byte_or_a_cut_is_reported_not_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("checkpoint.bin");
    save(&state(), &path);
    let good = std::fs::read(&path).expect("read");
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(read(&flipped).expect_err("corrupt").contains("checksum"));
    assert!(read(&good[..good.len() - 3]).is_err());
    std::fs::write(&path, &flipped).expect("write");
    assert!(load(&path).series.is_empty());
}
