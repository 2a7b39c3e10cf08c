//! Robust change ranking (BARO's RobustScorer, rca.md §4.1, with a unit-free rule for a zero
//! spread): every metric is scored by how far it moved after the anomaly time, in units of its
//! own spread before it; services are ranked by their best metric.

use serde::Serialize;

/// Ranking options.
#[derive(Debug, Clone, Copy)]
pub struct RankConfig {
    /// At most this many samples on each side of the anomaly time are used.
    pub max_side: usize,
    /// Count only upward moves (BARO's reference code); false: moves either way.
    pub up_only: bool,
    /// A move counts as started once it is this many spreads from the baseline (onset time).
    pub onset_spreads: f64,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            max_side: 300,
            up_only: true,
            onset_spreads: 3.0,
        }
    }
}

/// Which way a metric moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above its baseline.
    Up,
    /// Below its baseline.
    Down,
}

/// One ranked metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricCandidate {
    /// 1 = most likely.
    pub rank: usize,
    /// The service (the column name before its first `_`).
    pub service: String,
    /// The full column / series name.
    pub metric: String,
    /// Largest move after the anomaly time, in spreads of the normal window.
    pub score: f64,
    /// Which way it moved.
    pub direction: Direction,
    /// When the move first passed `onset_spreads` (Unix seconds), or the peak time.
    pub onset_s: i64,
    /// The value at the peak of the move.
    pub peak: f64,
    /// When the peak was (Unix seconds).
    pub peak_s: i64,
    /// Median of the normal window.
    pub baseline: f64,
    /// The spread used (IQR, or the unit-free fallback).
    pub spread: f64,
}

impl MetricCandidate {
    /// One sentence a responder can check.
    pub fn explanation(&self) -> String {
        format!(
            "{} went {} from a baseline of {} to {} at {} ({:.1} spreads; first past the threshold at {}).",
            self.metric,
            match self.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            },
            short(self.baseline),
            short(self.peak),
            when(self.peak_s),
            self.score,
            when(self.onset_s)
        )
    }
}

/// A time for people: RFC 3339 (UTC).
fn when(unix_s: i64) -> String {
    jiff::Timestamp::from_second(unix_s).map_or_else(|_| unix_s.to_string(), |t| t.to_string())
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The service of a column `<service>_<metric>`: everything before the first `_`.
pub fn service_of(column: &str) -> &str {
    column.split_once('_').map_or(column, |(s, _)| s)
}

/// Metrics whose bad direction is down (availability, success ratios, apdex).
fn falls_when_bad(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["availability", "success", "apdex", "uptime"]
        .iter()
        .any(|k| n.contains(k))
}

/// Linear-interpolated quantile of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The spread of the normal window, never 0 and never in the metric's units alone: the IQR;
/// when that is 0 (a mostly flat series), the largest of 1.4826 × MAD, the standard deviation
/// and 1 % of |median| — so a few kilobytes on a flat gigabyte are not a change — or, for a
/// series flat at 0, its smallest step (its resolution), at most 1.
/// The series' sample-to-sample noise, robustly: 1.4826 / √2 × the median absolute step over
/// the whole table (a level shift moves one step, not the median).
fn step_noise(all: &[f64]) -> f64 {
    let mut d: Vec<f64> = all.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    if d.is_empty() {
        return 0.0;
    }
    d.sort_unstable_by(f64::total_cmp);
    1.4826 / std::f64::consts::SQRT_2 * quantile(&d, 0.5)
}

fn spread(normal_sorted: &[f64], median: f64, all: &[f64]) -> f64 {
    let iqr = quantile(normal_sorted, 0.75) - quantile(normal_sorted, 0.25);
    if iqr > 0.0 {
        return iqr;
    }
    let mut dev: Vec<f64> = normal_sorted.iter().map(|v| (v - median).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    let mad = 1.4826 * quantile(&dev, 0.5);
    let n = normal_sorted.len() as f64;
    let mean = normal_sorted.iter().sum::<f64>() / n;
    let std = (normal_sorted
        .iter()
        .map(|v| (v - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let floor = mad.max(std).max(0.01 * median.abs());
    if floor > 0.0 {
        return floor;
    }
    all.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .filter(|d| *d > 0.0)
        .fold(1.0, f64::min)
}

/// Ranks every column of a metric table by its move after `anomaly_s`. `values[c][row]` is
/// column `c` at `times_s[row]`; NaN is a missing value (each window uses the values it has).
/// Columns constant before or after the anomaly time, or with no value on one side, are left
/// out. Availability-like metrics count their falls.
pub fn rank_metrics(
    columns: &[String],
    times_s: &[i64],
    values: &[Vec<f64>],
    anomaly_s: i64,
    cfg: &RankConfig,
) -> Vec<MetricCandidate> {
    let services: Vec<String> = columns.iter().map(|c| service_of(c).to_owned()).collect();
    rank_metrics_of(columns, &services, times_s, values, anomaly_s, cfg)
}

/// [`rank_metrics`] with each column's service given (`services[c]` for `columns[c]`), for
/// tables whose names do not start with their service.
pub fn rank_metrics_of(
    columns: &[String],
    services: &[String],
    times_s: &[i64],
    values: &[Vec<f64>],
    anomaly_s: i64,
    cfg: &RankConfig,
) -> Vec<MetricCandidate> {
    let split = times_s.partition_point(|&t| t < anomaly_s);
    let from = split.saturating_sub(cfg.max_side);
    let to = (split + cfg.max_side).min(times_s.len());
    if split == 0 || split >= times_s.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (c, name) in columns.iter().enumerate() {
        // Missing values are missing, not zero: each window is judged on what it observed (a
        // series absent from the normal window has no baseline and is left out).
        let observed = |r: std::ops::Range<usize>| -> Vec<(usize, f64)> {
            r.filter_map(|i| values[c][i].is_finite().then_some((i, values[c][i])))
                .collect()
        };
        let (normal, abnormal) = (observed(from..split), observed(split..to));
        // Flat over a long window: a dead or idle metric. Flat over a handful of rows (faults
        // injected back to back leave little normal data) says nothing yet.
        let constant = |w: &[(usize, f64)]| w.len() >= 30 && w.iter().all(|&(_, v)| v == w[0].1);
        let unchanged = normal
            .first()
            .is_none_or(|&(_, first)| normal.iter().chain(&abnormal).all(|&(_, v)| v == first));
        if normal.is_empty()
            || abnormal.is_empty()
            || constant(&normal)
            || constant(&abnormal)
            || unchanged
        {
            continue;
        }
        let mut sorted: Vec<f64> = normal.iter().map(|&(_, v)| v).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let median = quantile(&sorted, 0.5);
        let all: Vec<f64> = normal.iter().chain(&abnormal).map(|&(_, v)| v).collect();
        let spread = spread(&sorted, median, &all).max(step_noise(&all));
        // Availability and success rates are bad when they fall.
        let sign = if falls_when_bad(name) { -1.0 } else { 1.0 };
        let mut best = (f64::NEG_INFINITY, 0usize);
        for (k, &(_, v)) in abnormal.iter().enumerate() {
            let d = sign * (v - median) / spread;
            let d = if cfg.up_only { d } else { d.abs() };
            if d > best.0 {
                best = (d, k);
            }
        }
        let (peak_row, peak) = abnormal[best.1];
        let direction = if peak >= median {
            Direction::Up
        } else {
            Direction::Down
        };
        let onset_row = abnormal
            .iter()
            .find(|&&(_, v)| ((v - median) / spread).abs() >= cfg.onset_spreads)
            .map_or(peak_row, |&(i, _)| i);
        out.push(MetricCandidate {
            rank: 0,
            service: services[c].clone(),
            metric: name.clone(),
            score: best.0,
            direction,
            onset_s: times_s[onset_row],
            peak,
            peak_s: times_s[peak_row],
            baseline: median,
            spread,
        });
    }
    // Highest score first; ties by earlier onset, then name (deterministic).
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.onset_s.cmp(&b.onset_s))
            .then(a.metric.cmp(&b.metric))
    });
    for (i, m) in out.iter_mut().enumerate() {
        m.rank = i + 1;
    }
    out
}

/// One ranked service: its best metric's candidate.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceCandidate {
    /// 1 = most likely.
    pub rank: usize,
    /// The service.
    pub service: String,
    /// Share of the top five services' scores (a first, uncalibrated confidence).
    pub confidence: f64,
    /// The metric that put it here.
    pub evidence: MetricCandidate,
    /// What kind of fault its metrics look like ([`crate::kind`]).
    pub fault_kind: crate::kind::FaultKind,
    /// What a responder can check: how it moved next to the others ([`lead_explanations`]),
    /// then its evidence.
    pub explanation: String,
}

/// Services in order of their first appearance in the metric ranking; `canonical` maps a
/// service name to the entity counted (e.g. `carts-db` → `carts`).
pub fn rank_services(
    metrics: &[MetricCandidate],
    canonical: &dyn Fn(&str) -> String,
) -> Vec<ServiceCandidate> {
    let mut out: Vec<ServiceCandidate> = Vec::new();
    let canon: Vec<String> = metrics.iter().map(|m| canonical(&m.service)).collect();
    for (m, service) in metrics.iter().zip(&canon) {
        let service = service.clone();
        if out.iter().any(|s| s.service == service) {
            continue;
        }
        let fault_kind = crate::kind::fault_kind(
            metrics
                .iter()
                .zip(&canon)
                .filter(|(_, c)| **c == service)
                .map(|(o, _)| o),
        );
        out.push(ServiceCandidate {
            rank: out.len() + 1,
            fault_kind,
            explanation: m.explanation(),
            service,
            confidence: 0.0,
            evidence: m.clone(),
        });
    }
    let top: f64 = out.iter().take(5).map(|s| s.evidence.score.max(0.0)).sum();
    for s in &mut out {
        s.confidence = if top > 0.0 {
            (s.evidence.score.max(0.0) / top).min(1.0)
        } else {
            0.0
        };
    }
    out
}

/// Puts in front of each candidate's explanation how it moved next to the others, once the
/// order is final: the first says whether it changed first, most, both or neither (the call
/// graph placed it); each later one when it moved and how much against the first.
pub fn lead_explanations(ranked: &mut [ServiceCandidate]) {
    let Some(first) = ranked.first().map(|s| s.evidence.clone()) else {
        return;
    };
    let name = ranked[0].service.clone();
    let earliest = ranked
        .iter()
        .min_by_key(|s| s.evidence.onset_s)
        .map(|s| (s.service.clone(), s.evidence.onset_s));
    // Another candidate moved at the same moment: "first" would overclaim.
    let tied = ranked
        .iter()
        .skip(1)
        .any(|s| s.evidence.onset_s == first.onset_s);
    let strongest = ranked
        .iter()
        .max_by(|a, b| a.evidence.score.total_cmp(&b.evidence.score))
        .map(|s| (s.service.clone(), s.evidence.score));
    for (i, s) in ranked.iter_mut().enumerate() {
        let lead = if i == 0 {
            let first_in_time = earliest.as_ref().is_none_or(|(_, t)| first.onset_s <= *t);
            let most = strongest.as_ref().is_none_or(|(_, v)| first.score >= *v);
            match (first_in_time, most) {
                (true, true) if tied => format!("{name} changed most, and no later than any other"),
                (true, true) => format!("{name} changed first and most"),
                (false, true) => {
                    let (e, t) = earliest.clone().unwrap_or_default();
                    format!("{name} changed most ({e} moved earlier, at {})", when(t))
                }
                (true, false) => {
                    let (m, _) = strongest.clone().unwrap_or_default();
                    format!("{name} changed first ({m} changed more)")
                }
                (false, false) => {
                    format!("{name} is where the changes along the call graph lead")
                }
            }
        } else {
            let dt = s.evidence.onset_s - first.onset_s;
            let timing = match dt {
                0 => format!("at the same time as {name}"),
                d if d > 0 => format!("{d} s after {name}"),
                d => format!("{} s before {name}", -d),
            };
            let size = if s.evidence.score >= first.score {
                "at least as much"
            } else {
                "less"
            };
            format!(
                "{} changed {timing} and {size} ({:.1} against {:.1} spreads)",
                s.service, s.evidence.score, first.score
            )
        };
        s.explanation = format!("{lead}: {}", s.explanation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                        "orders_lat_90" => {
                            0.2 + 0.01 * noise(i, k) + if i >= 105 { 0.03 } else { 0.0 }
                        }
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
        };
        ServiceCandidate {
            rank: 0,
            service: service.into(),
            confidence: 0.0,
            explanation: evidence.explanation(),
            evidence,
            fault_kind: crate::kind::FaultKind::Unknown,
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
}
