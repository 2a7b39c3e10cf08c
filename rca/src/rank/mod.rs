//! Change ranking: every metric is scored by how far it moved after the anomaly time, in units
//! of its own spread before it; services are ranked by their best metric.
//!
//! The spread is the larger of two estimates of the normal window's standard deviation — the
//! IQR's (BARO's RobustScorer, rca.md §4.1) and the plain one (N-Sigma's) — so a metric whose
//! normal behaviour has rare spikes is not news when it spikes again, while one outlier does not
//! make a quiet metric look noisy. The plain one is taken before the metric's own onset: the
//! trailing rows already 3 robust spreads away (an anomaly time given late) are left out of it.
//! Mostly flat normal windows fall back to a unit-free rule; idle metrics (flat at 0) that
//! wake up are left out unless they count errors.
//!
//! Not done, on purpose: discounting a metric that had already moved in the last rows before
//! the anomaly time. It lifts PetShop (whose normal rows come from another recording) but in
//! production the cause moves *before* the symptom is detected, and an alert's time is late.

use aiops_models::garbage;
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
    /// Values left out of its windows as garbage (see `leave_out_garbage`), said in the
    /// explanation: a responder who sees them on a chart knows why they do not count.
    #[serde(skip_serializing_if = "is_zero")]
    pub garbage: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl MetricCandidate {
    /// One sentence a responder can check.
    pub fn explanation(&self) -> String {
        let garbage = match self.garbage {
            0 => String::new(),
            1 => "; one value far beyond its range left out as garbage".to_owned(),
            n => format!("; {n} values far beyond its range left out as garbage"),
        };
        format!(
            "{} went {} from a baseline of {} to {} at {} ({:.1} spreads; first past the threshold at {}{garbage}).",
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

/// Trailing normal rows this many robust spreads from the median belong to the move (the
/// metric's own onset), not to its normal behaviour.
const ONSET_SPREADS: f64 = 3.0;

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

/// The spread a move is measured in: the larger of the IQR's and the plain standard deviation
/// (of the normal rows before the metric's own onset), at least the step noise; `robust` (the
/// unit-free rule of [`spread`]) where the IQR is 0.
fn sigma(
    normal_sorted: &[f64],
    normal: &[(usize, f64)],
    median: f64,
    robust: f64,
    noise: f64,
) -> f64 {
    let mut end = normal.len();
    while end > 1 && (normal[end - 1].1 - median).abs() / robust >= ONSET_SPREADS {
        end -= 1;
    }
    let before = &normal[..end];
    let n = before.len() as f64;
    let mean = before.iter().map(|&(_, v)| v).sum::<f64>() / n;
    let std = (before.iter().map(|&(_, v)| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let iqr = quantile(normal_sorted, 0.75) - quantile(normal_sorted, 0.25);
    if iqr > 0.0 {
        (iqr / 1.349).max(std).max(noise)
    } else {
        // Mostly flat: the unit-free rule (which has the standard deviation in it).
        robust
    }
}

/// The spread of the normal window, never 0 and never in the metric's units alone: the IQR;
/// when that is 0 (a mostly flat series), the largest of 1.4826 × MAD, the standard deviation
/// and 1 % of |median| — so a few kilobytes on a flat gigabyte are not a change — or, for a
/// series flat at 0, its smallest step (its resolution), at most 1. A success `share`
/// (availability in %) sitting at its bound skips the 1 % term: a point of failures where
/// there were none is news, not a rounding of 100; one that never left its bound gets the
/// spread of its normal rows plus one that showed the smallest move seen (`d √n / (n + 1)`).
fn spread(normal_sorted: &[f64], median: f64, all: &[f64], share: bool) -> f64 {
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
    let floor = if share {
        mad.max(std)
    } else {
        mad.max(std).max(0.01 * median.abs())
    };
    if floor > 0.0 {
        return floor;
    }
    if share {
        // A share that never left its bound in n normal rows: its spread as if one of them had
        // shown the smallest move seen (no failures in n rows bounds their rate near 1 / n; it
        // does not make it 0) — whichever side of the detection time the first dip fell on.
        let smallest = all
            .iter()
            .map(|v| (v - median).abs())
            .filter(|d| *d > 0.0)
            .fold(f64::INFINITY, f64::min);
        if smallest.is_finite() {
            return smallest * n.sqrt() / (n + 1.0);
        }
    }
    all.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .filter(|d| *d > 0.0)
        .fold(1.0, f64::min)
}

/// Leaves out of both windows (rows in time order, `normal` before `abnormal`) the garbage by
/// the normal window's middle 98 % ([`aiops_models::garbage`]: up to three values in a row far
/// beyond it — an exporter's overflow, a unit slip). Kept, one such value after the anomaly time
/// would put its metric first by orders of magnitude, and one before it would widen the plain
/// standard deviation its moves are measured in and hide the metric. Returns the normal
/// window's values, sorted, and how many values were left out.
fn leave_out_garbage(
    normal: &mut Vec<(usize, f64)>,
    abnormal: &mut Vec<(usize, f64)>,
) -> (Vec<f64>, usize) {
    let sorted_normal = |normal: &[(usize, f64)]| {
        let mut sorted: Vec<f64> = normal.iter().map(|&(_, v)| v).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        sorted
    };
    let sorted = sorted_normal(normal);
    let Some((lo, hi)) = garbage::middle(&sorted) else {
        return (sorted, 0);
    };
    let rows = normal.iter().chain(&*abnormal);
    if !rows.clone().any(|&(_, v)| garbage::far_beyond(v, lo, hi)) {
        return (sorted, 0);
    }
    let values: Vec<f64> = rows.map(|&(_, v)| v).collect();
    let bad = garbage::garbage_runs(&values, (lo, hi));
    let (before, after) = bad.split_at(normal.len());
    for (window, bad) in [(&mut *normal, before), (&mut *abnormal, after)] {
        let mut flags = bad.iter();
        window.retain(|_| !flags.next().is_some_and(|&b| b));
    }
    (sorted_normal(normal), bad.iter().filter(|&&b| b).count())
}

/// Ranks every column of a metric table by its move after `anomaly_s`. `values[c][row]` is
/// column `c` at `times_s[row]`; NaN is a missing value (each window uses the values it has).
/// Columns flat throughout, flat over 30 rows or more after the anomaly time, idle (flat at 0)
/// before it unless they count errors, or with no value on one side, are left out.
/// Availability-like metrics count their falls.
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
        let (mut normal, mut abnormal) = (observed(from..split), observed(split..to));
        let (sorted, garbage) = leave_out_garbage(&mut normal, &mut abnormal);
        // Flat over a long window after the anomaly time: a dead metric. Flat at 0 over a long
        // normal window: an idle one — traffic or latency that starts has nothing to be
        // compared with, but errors that appear where there were none are news. (Flat at
        // another value, e.g. availability at 100 %, is a healthy metric at its bound.) Flat
        // over a handful of rows (faults injected back to back leave little normal data) says
        // nothing yet.
        let constant = |w: &[(usize, f64)]| w.len() >= 30 && w.iter().all(|&(_, v)| v == w[0].1);
        let idle = constant(&normal)
            && normal[0].1 == 0.0
            && crate::kind::metric_kind(&services[c], name) != crate::kind::MetricKind::Errors;
        let unchanged = normal
            .first()
            .is_none_or(|&(_, first)| normal.iter().chain(&abnormal).all(|&(_, v)| v == first));
        if normal.is_empty() || abnormal.is_empty() || constant(&abnormal) || idle || unchanged {
            continue;
        }
        let median = quantile(&sorted, 0.5);
        let all: Vec<f64> = normal.iter().chain(&abnormal).map(|&(_, v)| v).collect();
        let noise = step_noise(&all);
        let robust = spread(&sorted, median, &all, falls_when_bad(name)).max(noise);
        let spread = sigma(&sorted, &normal, median, robust, noise);
        // Availability and success rates are bad when they fall.
        let sign = if falls_when_bad(name) { -1.0 } else { 1.0 };
        let moved = |from: f64, v: f64| {
            let d = sign * (v - from) / spread;
            if cfg.up_only { d } else { d.abs() }
        };
        let mut best = (f64::NEG_INFINITY, 0usize);
        for (k, &(_, v)) in abnormal.iter().enumerate() {
            let d = moved(median, v);
            if d > best.0 {
                best = (d, k);
            }
        }
        let score = best.0;
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
            score,
            direction,
            onset_s: times_s[onset_row],
            peak,
            peak_s: times_s[peak_row],
            baseline: median,
            spread,
            garbage,
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
    /// Its latency rise is explained by a callee ranked above it (set by the call-graph walk):
    /// not separate evidence against that callee.
    #[serde(skip)]
    pub explained: bool,
    /// The largest score among the callers ranked below it whose latency rise it explains.
    #[serde(skip)]
    pub absorbed: f64,
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
            explained: false,
            absorbed: 0.0,
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
mod tests;
