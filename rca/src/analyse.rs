//! From series to candidates: reads every series around a detection time (through a reader the
//! caller gives, e.g. the archive), aligns them on one time grid, ranks metrics and services
//! ([`crate::rank`]), applies the topology ([`crate::graph`]) and turns the result into the
//! incident's [`Candidate`]s with their confidences.

use std::sync::Arc;

use aiops_models::incident::{Candidate, DataQuality, Evidence};
use aiops_models::{SeriesId, SeriesMeta, counter_rate, is_counter};

use crate::{CallGraph, Direction, RankConfig, ServiceCandidate, rank_metrics_of, rank_services};

/// What one analysis reads and returns.
#[derive(Debug, Clone)]
pub struct AnalysisRequest<'a> {
    /// Series to consider (the catalog, or a part of it).
    pub series: &'a [Arc<SeriesMeta>],
    /// When the symptom was detected (Unix ms): before = normal, after = abnormal.
    pub detected_ms: i64,
    /// Start of the normal window (Unix ms).
    pub start_ms: i64,
    /// End of the abnormal window (Unix ms).
    pub end_ms: i64,
    /// The symptom's service, if known (with a topology: only what it calls can cause it).
    pub symptom_service: Option<&'a str>,
    /// At most this many series are read.
    pub max_series: usize,
    /// Candidates returned.
    pub top: usize,
}

/// The ranked candidates and what the analysis could read.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Best first.
    pub candidates: Vec<Candidate>,
    /// Coverage.
    pub data_quality: DataQuality,
}

/// Reads `(timestamp ms, value)` samples of a series between two times.
pub type Reader<'a> = dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)> + 'a;

/// Runs the analysis. Counters are ranked on their per-second rates.
pub fn analyse(req: &AnalysisRequest<'_>, read: &Reader<'_>, graph: &CallGraph) -> Analysis {
    let truncated = req.series.len().saturating_sub(req.max_series);
    let mut columns = Vec::new();
    let mut services = Vec::new();
    let mut samples = Vec::new();
    let mut without_data = 0;
    for meta in req.series.iter().take(req.max_series) {
        let mut s = read(meta.id, req.start_ms, req.end_ms);
        s.retain(|(_, v)| v.is_finite());
        if is_counter(&meta.metric) {
            s = s
                .windows(2)
                .filter_map(|w| counter_rate(w[0], w[1]).map(|r| (w[1].0, r)))
                .collect();
        }
        let before = s.iter().any(|&(t, _)| t < req.detected_ms);
        let after = s.iter().any(|&(t, _)| t >= req.detected_ms);
        if !(before && after) {
            without_data += 1;
            continue;
        }
        columns.push(meta.to_selector_string());
        services.push(aiops_models::service_of(meta).unwrap_or_else(|| "unknown".to_owned()));
        samples.push(s);
    }
    let data_quality = DataQuality {
        series: req.series.len().min(req.max_series),
        without_data,
        truncated,
    };
    let (times_s, values) = align(&samples, req.start_ms, req.end_ms);
    if times_s.is_empty() {
        return Analysis {
            candidates: Vec::new(),
            data_quality,
        };
    }
    let cfg = RankConfig {
        // The whole window: a long normal period is the baseline.
        max_side: times_s.len(),
        ..RankConfig::default()
    };
    let metrics = rank_metrics_of(
        &columns,
        &services,
        &times_s,
        &values,
        req.detected_ms.div_euclid(1000),
        &cfg,
    );
    let ranked = rank_services(&metrics, &|s: &str| s.to_owned());
    let mut ranked = graph.rerank(&ranked, req.symptom_service);
    crate::rank::lead_explanations(&mut ranked);
    let method = if graph.is_empty() {
        "robust_scorer"
    } else {
        "robust_scorer+topology"
    };
    let confidences = confidences(&ranked);
    let candidates = ranked
        .iter()
        .zip(confidences)
        .take(req.top)
        .map(|(s, confidence)| Candidate {
            rank: s.rank,
            service: s.service.clone(),
            metric: s.evidence.metric.clone(),
            score: s.evidence.score,
            confidence,
            direction: direction(s.evidence.direction),
            onset_ms: s.evidence.onset_s * 1000,
            peak: s.evidence.peak,
            peak_ms: s.evidence.peak_s * 1000,
            baseline: s.evidence.baseline,
            spread: s.evidence.spread,
            path: req
                .symptom_service
                .and_then(|from| graph.path(from, &s.service))
                .filter(|p| p.len() > 1)
                .unwrap_or_default(),
            method: method.to_owned(),
            fault_kind: s.fault_kind.as_str().to_owned(),
            explanation: s.explanation.clone(),
            evidence: metrics
                .iter()
                .filter(|m| m.service == s.service && m.score >= 3.0)
                .take(5)
                .map(|m| Evidence {
                    metric: m.metric.clone(),
                    score: m.score,
                    direction: direction(m.direction),
                    onset_ms: m.onset_s * 1000,
                    baseline: m.baseline,
                    peak: m.peak,
                    peak_ms: m.peak_s * 1000,
                })
                .collect(),
        })
        .collect();
    Analysis {
        candidates,
        data_quality,
    }
}

fn direction(d: Direction) -> String {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
    }
    .to_owned()
}

/// Puts series on one grid: the step is the median spacing of their samples (at least 1 s);
/// each cell holds a series' last sample in it, NaN where it has none.
fn align(samples: &[Vec<(i64, f64)>], start_ms: i64, end_ms: i64) -> (Vec<i64>, Vec<Vec<f64>>) {
    let mut gaps: Vec<i64> = samples
        .iter()
        .flat_map(|s| s.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|d| *d > 0)
        .collect();
    if gaps.is_empty() || end_ms <= start_ms {
        return (Vec::new(), Vec::new());
    }
    gaps.sort_unstable();
    let step = gaps[gaps.len() / 2].max(1000);
    let cells = ((end_ms - start_ms) / step + 1) as usize;
    let times_s = (0..cells)
        .map(|i| (start_ms + i as i64 * step).div_euclid(1000))
        .collect();
    let values = samples
        .iter()
        .map(|s| {
            let mut col = vec![f64::NAN; cells];
            for &(t, v) in s {
                if (start_ms..=end_ms).contains(&t) {
                    col[((t - start_ms) / step) as usize] = v;
                }
            }
            col
        })
        .collect();
    (times_s, values)
}

/// Candidates the confidence is shared among.
const SHARED_AMONG: usize = 5;

/// The features of the logistic calibration `aiops eval rca` fits for comparison (log-score
/// margin of the first service over the second, ln(1 + services that moved at least 3
/// spreads)). The confidence in use is not fitted: see [`confidences`].
pub fn confidence_features(ranked: &[ServiceCandidate]) -> [f64; 2] {
    let log = |i: usize| {
        ranked.get(i).map_or(0.0, |s: &ServiceCandidate| {
            s.evidence.score.max(0.0).ln_1p()
        })
    };
    let moved = ranked.iter().filter(|s| s.evidence.score >= 3.0).count();
    [log(0) - log(1), (moved as f64).ln_1p()]
}

/// Confidence that each service is the root cause, fitted to nothing: a candidate's share of
/// `1 + score` among the first five (a missing candidate counts as score 0) — a softmax of
/// `ln(1 + score)`, the log scale the graph walk uses too. One service far ahead of the rest
/// approaches 1; five that moved alike get about 0.2 each; a first candidate the call graph put
/// ahead of larger changes gets its own, smaller share. Nothing is fitted, so it means the same
/// on systems no case came from; `aiops eval rca` reports its reliability per data set. The
/// others are handed out in rank order (never above the first).
pub fn confidences(ranked: &[ServiceCandidate]) -> Vec<f64> {
    let Some(first) = ranked.first() else {
        return Vec::new();
    };
    // A candidate counts the callers whose latency rise it explains; an explained caller
    // counts nothing (its evidence is the callee's).
    let score = |s: &ServiceCandidate| {
        if s.explained {
            0.0
        } else {
            s.evidence.score.max(s.absorbed).max(0.0)
        }
    };
    let total = SHARED_AMONG as f64 + ranked.iter().take(SHARED_AMONG).map(score).sum::<f64>();
    let top = (1.0 + score(first)) / total;
    let mut rest: Vec<f64> = ranked
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, s)| {
            if i < SHARED_AMONG {
                ((1.0 + score(s)) / total).min(top)
            } else {
                0.0
            }
        })
        .collect();
    rest.sort_by(|a, b| b.total_cmp(a));
    std::iter::once(top).chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::Source;

    fn meta(metric: &str, service: &str) -> Arc<SeriesMeta> {
        Arc::new(SeriesMeta::new(
            Source::Prometheus,
            metric,
            [("service".to_owned(), service.to_owned())],
        ))
    }

    #[test]
    fn the_faulty_service_ranks_first_from_raw_series_and_counters() {
        let series = vec![
            meta("http_requests_total", "frontend"),
            meta("latency_seconds", "frontend"),
            meta("cpu_seconds_total", "carts"),
            meta("cpu_seconds_total", "orders"),
        ];
        let ids: Vec<SeriesId> = series.iter().map(|m| m.id).collect();
        let detected_ms = 600_000;
        // 15 s scrapes, jittered per series; carts' CPU rate triples at 10 minutes.
        let read = |id: SeriesId, from: i64, to: i64| -> Vec<(i64, f64)> {
            let k = ids.iter().position(|&i| i == id).expect("known id");
            let mut acc = 0.0;
            (0..80)
                .map(|i| {
                    let t = i * 15_000 + k as i64 * 700;
                    let noise = ((i * 37 + k as i64 * 11) % 13) as f64 / 13.0;
                    let after = t >= detected_ms;
                    let v = match k {
                        0 => {
                            acc += 15.0 * (10.0 + noise);
                            acc
                        }
                        1 => 0.2 + 0.01 * noise + if after { 0.05 } else { 0.0 },
                        2 => {
                            acc += 15.0 * (0.5 + 0.05 * noise + if after { 1.0 } else { 0.0 });
                            acc
                        }
                        _ => {
                            acc += 15.0 * (0.5 + 0.05 * noise);
                            acc
                        }
                    };
                    (t, v)
                })
                .filter(|(t, _)| (from..=to).contains(t))
                .collect()
        };
        let graph: CallGraph = [("frontend", "carts"), ("frontend", "orders")]
            .into_iter()
            .collect();
        let a = analyse(
            &AnalysisRequest {
                series: &series,
                detected_ms,
                start_ms: 0,
                end_ms: 1_200_000,
                symptom_service: Some("frontend"),
                max_series: 100,
                top: 5,
            },
            &read,
            &graph,
        );
        assert_eq!(a.candidates[0].service, "carts", "{:?}", a.candidates);
        assert!(a.candidates[0].metric.starts_with("cpu_seconds_total"));
        assert_eq!(a.candidates[0].path, ["frontend", "carts"]);
        assert_eq!(a.candidates[0].method, "robust_scorer+topology");
        assert_eq!(a.candidates[0].evidence[0].metric, a.candidates[0].metric);
        assert_eq!(a.candidates[0].evidence[0].direction, "up");
        let sum: f64 = a.candidates.iter().map(|c| c.confidence).sum();
        assert!(
            sum <= 1.0 + 1e-9 && a.candidates[0].confidence > 0.0,
            "{sum}"
        );
        assert_eq!(a.data_quality.series, 4);
        // Nothing read: no candidates, and it says so.
        let none = analyse(
            &AnalysisRequest {
                series: &series,
                detected_ms,
                start_ms: 0,
                end_ms: 1_200_000,
                symptom_service: None,
                max_series: 2,
                top: 5,
            },
            &|_, _, _| Vec::new(),
            &CallGraph::default(),
        );
        assert!(none.candidates.is_empty());
        assert_eq!(
            (none.data_quality.without_data, none.data_quality.truncated),
            (2, 2)
        );
    }

    #[test]
    fn confidence_is_the_share_of_one_plus_the_score_among_the_first_five() {
        let cand = |score: f64| crate::ServiceCandidate {
            rank: 0,
            service: format!("s{score}"),
            confidence: 0.0,
            evidence: crate::MetricCandidate {
                rank: 0,
                service: format!("s{score}"),
                metric: "m".into(),
                score,
                direction: crate::Direction::Up,
                onset_s: 0,
                peak: 0.0,
                peak_s: 0,
                baseline: 0.0,
                spread: 1.0,
                garbage: 0,
            },
            fault_kind: crate::FaultKind::Unknown,
            explanation: String::new(),
            explained: false,
            absorbed: 0.0,
        };
        // Far ahead: nearly sure. Alike: about a fifth each.
        let far = confidences(&[cand(995.0)]);
        assert!((far[0] - 0.996).abs() < 1e-9, "{far:?}");
        let alike: Vec<_> = (0..6).map(|_| cand(4.0)).collect();
        let c = confidences(&alike);
        assert!(c[..5].iter().all(|x| (x - 0.2).abs() < 1e-9), "{c:?}");
        assert_eq!(c[5], 0.0);
        // The graph put a smaller change first: its own share, and no later one above it.
        let c = confidences(&[cand(4.0), cand(9.0), cand(1.0)]);
        assert!((c[0] - 5.0 / 19.0).abs() < 1e-9, "{c:?}");
        assert!(
            c.iter().all(|x| *x <= c[0]) && c.iter().sum::<f64>() <= 1.0,
            "{c:?}"
        );
        assert!(confidences(&[]).is_empty());
    }
}
