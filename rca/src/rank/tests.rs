//! Tests of the change ranking.

use super::*;

mod garbage;

fn table() -> (Vec<String>, Vec<i64>, Vec<Vec<f64>>) {
    let times: Vec<i64> = (0..200).collect();
    let noise = |i: usize, k: usize| (((i * 7919 + k * 104_729) % 101) as f64 / 101.0) - 0.5;
    let cols = [
        "carts_cpu",
        "carts-db_cpu",
        "orders_cpu",
        "orders_lat_90",
        "user_mem",
    ];
    let mut values = Vec::new();
    for (k, c) in cols.iter().enumerate() {
        values.push(
            (0..200)
                .map(|i| match *c {
                    // The fault: orders' CPU doubles at t = 100.
                    "orders_cpu" => 10.0 + noise(i, k) + if i >= 100 { 10.0 } else { 0.0 },
                    // Its symptom, smaller.
                    "orders_lat_90" => 0.2 + 0.01 * noise(i, k) + if i >= 105 { 0.03 } else { 0.0 },
                    // Flat but for one blip, then a tiny step in bytes: must not win
                    // through a zero spread.
                    "user_mem" => {
                        1.0e9
                            + if i >= 100 || i == 10 { 4096.0 } else { 0.0 }
                            + if i == 150 { 4096.0 } else { 0.0 }
                    }
                    _ => 5.0 + noise(i, k),
                })
                .collect(),
        );
    }
    (
        cols.iter().map(|c| (*c).to_owned()).collect(),
        times,
        values,
    )
}

#[test]
fn the_changed_service_ranks_first_with_evidence() {
    let (cols, times, values) = table();
    let m = rank_metrics(&cols, &times, &values, 100, &RankConfig::default());
    assert_eq!(m[0].metric, "orders_cpu");
    assert_eq!(m[0].direction, Direction::Up);
    assert_eq!(m[0].onset_s, 100);
    assert!((m[0].baseline - 10.0).abs() < 0.5, "{:?}", m[0]);
    // A step of 4 KB on a flat 1 GB series is 0.0004 % — not a cause.
    let mem = m.iter().find(|c| c.metric == "user_mem").expect("ranked");
    assert!(mem.score < 1.0, "{mem:?}");
    let s = rank_services(&m, &|s| s.trim_end_matches("-db").to_owned());
    assert_eq!(s[0].service, "orders");
    assert!(
        s[0].confidence > 0.5 && s[0].confidence <= 1.0,
        "{:?}",
        s[0]
    );
    assert!(
        s[0].explanation.contains("orders_cpu went up"),
        "{}",
        s[0].explanation
    );
    assert!(s.iter().filter(|x| x.service == "carts").count() == 1);
}

#[test]
fn a_metric_that_spikes_in_normal_times_is_not_news_when_it_spikes_again() {
    let times: Vec<i64> = (0..200).collect();
    let noise = |i: usize| ((i * 7919 % 101) as f64 / 101.0) - 0.5;
    // Latency with a spike every 20 rows all along (a batch job), and one more after t = 100:
    // its IQR alone is tiny, so BARO's scorer would put it first by far.
    let spiky: Vec<f64> = (0..200)
        .map(|i| 1.0 + 0.01 * noise(i) + if i % 20 == 7 { 4.0 } else { 0.0 })
        .collect();
    // CPU that never spiked rises by about eight of its spreads.
    let quiet: Vec<f64> = (0..200)
        .map(|i| 10.0 + noise(i + 3) + if i >= 100 { 3.0 } else { 0.0 })
        .collect();
    let cols = vec!["batch_lat_90".to_owned(), "orders_cpu".to_owned()];
    let m = rank_metrics(&cols, &times, &[spiky, quiet], 100, &RankConfig::default());
    assert_eq!(m[0].metric, "orders_cpu", "{m:?}");
    assert!(m[0].score > 1.5 * m[1].score, "{m:?}");
}

#[test]
fn idle_metrics_that_wake_are_left_out_but_new_errors_and_falling_availability_count() {
    let times: Vec<i64> = (0..120).collect();
    let step = |before: f64, after: f64| -> Vec<f64> {
        (0..120)
            .map(|i| if i >= 100 { after } else { before })
            .collect()
    };
    let cols: Vec<String> = [
        "s3_requests",
        "payment_errors",
        "payment_availability",
        "cart_latency",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    let values = vec![
        // Traffic that starts where there was none has nothing to be compared with.
        step(0.0, 40.0),
        // Errors where there were none are news.
        step(0.0, 5.0),
        // A healthy metric at its bound (100 %) that falls.
        step(100.0, 90.0),
        // Latency that starts being recorded: idle before, left out.
        step(0.0, 0.3),
    ];
    let m = rank_metrics(&cols, &times, &values, 100, &RankConfig::default());
    let names: Vec<&str> = m.iter().map(|c| c.metric.as_str()).collect();
    assert!(!names.contains(&"s3_requests"), "{m:?}");
    assert!(!names.contains(&"cart_latency"), "{m:?}");
    assert!(names.contains(&"payment_errors"), "{m:?}");
    let avail = m
        .iter()
        .find(|c| c.metric == "payment_availability")
        .expect("availability ranked");
    assert_eq!(avail.direction, Direction::Down);
    assert!(avail.score >= 3.0, "{avail:?}");
}

#[test]
fn a_late_anomaly_time_still_finds_the_cause() {
    let (cols, times, values) = table();
    let m = rank_metrics(&cols, &times, &values, 160, &RankConfig::default());
    // 60 s late: 60 abnormal points leak into the normal window; the median barely moves.
    assert_eq!(m[0].service, "orders", "{m:?}");
}

#[test]
fn missing_values_and_degenerate_windows() {
    let cols = vec!["a_x".to_owned(), "b_y".to_owned()];
    let times: Vec<i64> = (0..10).collect();
    let values = vec![
        vec![
            f64::NAN,
            1.0,
            f64::NAN,
            2.0,
            1.0,
            5.0,
            f64::NAN,
            6.0,
            5.0,
            7.0,
        ],
        vec![3.0; 10],
    ];
    let m = rank_metrics(&cols, &times, &values, 5, &RankConfig::default());
    assert_eq!(m.len(), 1, "constant columns are left out: {m:?}");
    assert!(m[0].score.is_finite());
    assert!(rank_metrics(&cols, &times, &values, 0, &RankConfig::default()).is_empty());
    assert!(rank_metrics(&cols, &times, &values, 99, &RankConfig::default()).is_empty());
}

#[test]
fn a_handful_of_normal_rows_still_ranks_the_cause_first() {
    // Faults injected back to back: three rows before the fault. The cause's memory sat
    // flat over them (flat over a few rows is no evidence of a dead metric), then jumped;
    // a noisy neighbour's three quiet rows must not make its usual noise look like a move.
    let cols = vec![
        "carts_mem".to_owned(),
        "orders_cpu".to_owned(),
        "front_cpu".to_owned(),
    ];
    let times: Vec<i64> = (0..103).collect();
    let noise = |i: i64, k: i64| ((i * 7919 + k * 104_729) % 97) as f64 / 97.0;
    let values = vec![
        times
            .iter()
            .map(|&t| if t < 3 { 100.0 } else { 160.0 + noise(t, 3) })
            .collect(),
        times
            .iter()
            .map(|&t| {
                if t < 3 {
                    50.0 + 0.01 * t as f64
                } else {
                    50.0 + 8.0 * noise(t, 1)
                }
            })
            .collect(),
        times.iter().map(|&t| 20.0 + 2.0 * noise(t, 2)).collect(),
    ];
    let m = rank_metrics(&cols, &times, &values, 3, &RankConfig::default());
    assert_eq!(m[0].metric, "carts_mem", "{m:?}");
    // Flat before and after alike: nothing moved, nothing ranked.
    let flat = vec![vec![3.0; 103]];
    assert!(rank_metrics(&cols[..1], &times, &flat, 3, &RankConfig::default()).is_empty());
}

fn candidate(service: &str, score: f64, onset_s: i64) -> ServiceCandidate {
    let evidence = MetricCandidate {
        rank: 0,
        service: service.into(),
        metric: format!("{service}_lat"),
        score,
        direction: Direction::Up,
        onset_s,
        peak: 2.0,
        peak_s: onset_s + 60,
        baseline: 1.0,
        spread: 0.1,
        garbage: 0,
    };
    ServiceCandidate {
        rank: 0,
        service: service.into(),
        confidence: 0.0,
        explanation: evidence.explanation(),
        evidence,
        fault_kind: crate::kind::FaultKind::Unknown,
        explained: false,
        absorbed: 0.0,
    }
}

#[test]
fn only_the_first_candidate_reads_first_and_most_and_the_others_say_how_they_compare() {
    let mut r = vec![
        candidate("payment", 40.0, 1000),
        candidate("orders", 25.0, 1000),
        candidate("db", 2.0, 940),
    ];
    lead_explanations(&mut r);
    assert!(
        r[0].explanation
            .starts_with("payment changed most (db moved earlier, at "),
        "{}",
        r[0].explanation
    );
    assert!(
        r[1].explanation.starts_with(
            "orders changed at the same time as payment and less (25.0 against 40.0 spreads): orders_lat went up"
        ),
        "{}",
        r[1].explanation
    );
    assert!(
        r[2].explanation
            .starts_with("db changed 60 s before payment and less")
    );

    let mut r = vec![
        candidate("payment", 40.0, 900),
        candidate("orders", 25.0, 1000),
    ];
    lead_explanations(&mut r);
    assert!(
        r[0].explanation
            .starts_with("payment changed first and most: payment_lat went up")
    );
    assert!(
        r[1].explanation
            .starts_with("orders changed 100 s after payment and less")
    );

    // The call graph can put a smaller, later change first.
    let mut r = vec![candidate("db", 5.0, 1000), candidate("orders", 25.0, 900)];
    lead_explanations(&mut r);
    assert!(
        r[0].explanation
            .starts_with("db is where the changes along the call graph lead")
    );
    assert!(
        r[1].explanation
            .starts_with("orders changed 100 s before db and at least as much")
    );
}

#[test]
fn a_success_share_that_leaves_its_bound_is_measured_against_its_own_spread() {
    // Availability sat at 100 % (two dips to 99.5 % in 60 rows) and falls to 96 %: a share of
    // failures that was never there. Its spread is its own, not 1 % of 100 — so it outranks a
    // neighbour's latency that moved eight of its spreads.
    let cols = vec!["api_availability".to_owned(), "db_latency".to_owned()];
    let times: Vec<i64> = (0..70).collect();
    let noise = |i: i64| ((i * 7919) % 97) as f64 / 97.0 - 0.5;
    let values = vec![
        times
            .iter()
            .map(|&t| match t {
                20 | 45 => 99.5,
                t if t >= 60 => 96.0,
                _ => 100.0,
            })
            .collect(),
        times
            .iter()
            .map(|&t| 0.2 + 0.01 * noise(t) + if t >= 60 { 0.08 } else { 0.0 })
            .collect(),
    ];
    let m = rank_metrics(&cols, &times, &values, 60, &RankConfig::default());
    assert_eq!(m[0].metric, "api_availability", "{m:?}");
    assert_eq!(m[0].direction, Direction::Down);
    assert!(m[0].score > 20.0, "{m:?}");
}

#[test]
fn a_share_flat_at_its_bound_scores_alike_whichever_side_its_first_dip_falls() {
    // Availability at 100 % over 100 rows, then 99.5, 98.4, 97.7: the first dip falls just
    // before or just after the detection time, and the fall is judged alike either way — not
    // against the fault's own steps on one side and an accidental one-row spread on the other.
    let cols = vec!["api_availability".to_owned()];
    let times: Vec<i64> = (0..103).collect();
    let values = vec![
        times
            .iter()
            .map(|&t| match t {
                100 => 99.5,
                101 => 98.4,
                102 => 97.7,
                _ => 100.0,
            })
            .collect(),
    ];
    let at = |t: i64| rank_metrics(&cols, &times, &values, t, &RankConfig::default())[0].score;
    let (early, late) = (at(100), at(101));
    assert!(early > 20.0 && late > 20.0, "{early} {late}");
    assert!(early / late < 1.5 && late / early < 1.5, "{early} {late}");
}
