//! Garbage samples (an exporter's overflow, a unit slip) neither win nor hide a metric.

use super::super::*;
use super::table;

const GARBAGE: [f64; 3] = [1e9, u64::MAX as f64, -1e7];

fn ranked(values: &[Vec<f64>]) -> Vec<MetricCandidate> {
    let (cols, times, _) = table();
    rank_metrics(&cols, &times, values, 100, &RankConfig::default())
}

fn score_of(m: &[MetricCandidate], metric: &str) -> f64 {
    m.iter().find(|c| c.metric == metric).expect("ranked").score
}

/// Every garbage value with every run length that is still garbage.
fn garbage_cases() -> impl Iterator<Item = (f64, usize)> {
    GARBAGE
        .into_iter()
        .flat_map(|g| (1..=aiops_models::garbage::RUN as usize).map(move |run| (g, run)))
}

/// The table ranked with `run` values of `g` in column `column` from row `from`.
fn ranked_with(column: usize, from: usize, g: f64, run: usize) -> Vec<MetricCandidate> {
    let (_, _, mut values) = table();
    values[column][from..from + run].fill(g);
    ranked(&values)
}

#[test]
fn garbage_after_the_anomaly_time_does_not_put_its_metric_first() {
    let (_, _, clean) = table();
    let clean_score = score_of(&ranked(&clean), "carts_cpu");
    for (g, run) in garbage_cases() {
        let m = ranked_with(0, 130, g, run);
        assert_eq!(m[0].metric, "orders_cpu", "{g} × {run}: {:?}", m[0]);
        let carts = m.iter().find(|c| c.metric == "carts_cpu").expect("ranked");
        assert!(
            (carts.score - clean_score).abs() < 1e-9,
            "{g} × {run}: {carts:?}"
        );
        // Said where a responder reads the evidence.
        assert_eq!(carts.garbage, run);
        assert!(
            carts.explanation().contains("left out as garbage"),
            "{}",
            carts.explanation()
        );
    }
}

#[test]
fn garbage_before_the_anomaly_time_does_not_hide_the_cause() {
    let (_, _, clean) = table();
    let clean_score = score_of(&ranked(&clean), "orders_cpu");
    for (g, run) in garbage_cases() {
        // The cause's own normal window holds the garbage (orders_cpu is column 2).
        let m = ranked_with(2, 40, g, run);
        assert_eq!(m[0].metric, "orders_cpu", "{g} × {run}: {:?}", m[0]);
        assert!(
            (m[0].score - clean_score).abs() < 0.1 * clean_score,
            "{g} × {run}: {} against {clean_score}",
            m[0].score
        );
        assert_eq!(m[0].garbage, run);
        assert!(m.iter().skip(1).all(|c| c.garbage == 0), "{m:?}");
    }
}

#[test]
fn a_metric_that_really_moves_orders_of_magnitude_away_is_ranked_by_it() {
    let (_, _, mut values) = table();
    // carts_cpu jumps a million-fold and stays: a real move (or a unit change worth a look).
    values[0][120..].fill(5e6);
    let m = ranked(&values);
    assert_eq!(m[0].metric, "carts_cpu", "{:?}", m[0]);
    assert_eq!((m[0].peak, m[0].garbage), (5e6, 0));
    assert!(!m[0].explanation().contains("garbage"));
}
