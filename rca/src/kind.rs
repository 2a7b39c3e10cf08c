//! What kind of fault a candidate's changes look like — CPU, memory, latency, errors or
//! overload — from the names and moves of its metrics, so a responder sees "payment: latency"
//! and not only a series name.
//!
//! The rules are fixed by what metrics are called and how faults show, not fitted to cases:
//! each metric gets a kind from its name (without a `<service>_` prefix or `{labels}`): `cpu` → CPU; `mem`, `rss`,
//! `heap`, `working_set` → memory; `error`, `fail`, `5xx`, `exception`, `availability`,
//! `success` → errors; `lat`, `duration`, `response_time`, `seconds` → latency; `request`,
//! `rps`, `qps`, `throughput`, `traffic`, `load`, `lod`, `calls`, `count` → traffic. A service's
//! fault kind is the kind of its strongest move; a traffic rise is overload, and so is latency or
//! errors rising together with the service's own traffic (at least [`MOVED`] spreads): load
//! drove them.

use serde::Serialize;

use crate::rank::{Direction, MetricCandidate};

/// A move this many spreads or more counts as the metric having moved.
pub const MOVED: f64 = 3.0;

/// What a metric measures, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// CPU use or throttling.
    Cpu,
    /// Memory use.
    Memory,
    /// Errors, failures, availability.
    Errors,
    /// Latency, durations.
    Latency,
    /// Requests, load, throughput.
    Traffic,
    /// Anything else.
    Other,
}

/// The kind of fault a candidate looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// CPU saturation.
    Cpu,
    /// Memory pressure.
    Memory,
    /// Slower responses.
    Latency,
    /// Failing requests.
    Errors,
    /// More load than it can take.
    Overload,
    /// None of the above.
    Unknown,
}

impl FaultKind {
    /// The name the API shows (`cpu`, `memory`, `latency`, `errors`, `overload`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Latency => "latency",
            Self::Errors => "errors",
            Self::Overload => "overload",
            Self::Unknown => "unknown",
        }
    }

    /// A fault label of a data set (`cpu`, `mem`, `delay`, `error`, `overload`, …) as a kind;
    /// `None` when the label names none of them.
    pub fn from_label(label: &str) -> Option<Self> {
        let l = label.to_ascii_lowercase();
        Some(match l.as_str() {
            "cpu" => Self::Cpu,
            "mem" | "memory" => Self::Memory,
            "delay" | "latency" => Self::Latency,
            "error" | "errors" => Self::Errors,
            "overload" => Self::Overload,
            _ => return None,
        })
    }
}

/// The kind of `service`'s metric from its name: a `<service>_` prefix (case tables) and a
/// `{labels}` part (series selectors) are not looked at.
pub fn metric_kind(service: &str, metric: &str) -> MetricKind {
    let bare = metric.split('{').next().unwrap_or(metric);
    let name = bare
        .strip_prefix(service)
        .and_then(|m| m.strip_prefix('_'))
        .unwrap_or(bare)
        .to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| name.contains(k));
    if has(&["cpu"]) {
        MetricKind::Cpu
    } else if has(&["mem", "rss", "heap", "working_set"]) {
        MetricKind::Memory
    } else if has(&[
        "error",
        "fail",
        "5xx",
        "exception",
        "availability",
        "success",
    ]) {
        MetricKind::Errors
    } else if has(&["lat", "duration", "response_time", "seconds"]) {
        MetricKind::Latency
    } else if has(&[
        "request",
        "rps",
        "qps",
        "throughput",
        "traffic",
        "load",
        "lod",
        "calls",
        "count",
    ]) {
        MetricKind::Traffic
    } else {
        MetricKind::Other
    }
}

/// The fault kind of a service from its ranked metrics (any order; other services' metrics
/// are ignored by the caller).
pub fn fault_kind<'a>(metrics: impl IntoIterator<Item = &'a MetricCandidate>) -> FaultKind {
    let mut strongest: Option<&MetricCandidate> = None;
    let mut traffic_up = false;
    for m in metrics {
        if strongest.is_none_or(|s| m.score > s.score) {
            strongest = Some(m);
        }
        traffic_up |= metric_kind(&m.service, &m.metric) == MetricKind::Traffic
            && m.direction == Direction::Up
            && m.score >= MOVED;
    }
    let Some(top) = strongest else {
        return FaultKind::Unknown;
    };
    match metric_kind(&top.service, &top.metric) {
        MetricKind::Cpu => FaultKind::Cpu,
        MetricKind::Memory => FaultKind::Memory,
        MetricKind::Latency | MetricKind::Errors if traffic_up => FaultKind::Overload,
        MetricKind::Latency => FaultKind::Latency,
        MetricKind::Errors => FaultKind::Errors,
        MetricKind::Traffic if top.direction == Direction::Up => FaultKind::Overload,
        MetricKind::Traffic | MetricKind::Other => FaultKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(metric: &str, score: f64, direction: Direction) -> MetricCandidate {
        MetricCandidate {
            rank: 0,
            service: "svc".into(),
            metric: metric.into(),
            score,
            direction,
            onset_s: 0,
            peak: 0.0,
            peak_s: 0,
            baseline: 0.0,
            spread: 1.0,
            garbage: 0,
        }
    }

    #[test]
    fn names_map_to_kinds_and_the_strongest_move_decides() {
        use Direction::{Down, Up};
        assert_eq!(metric_kind("carts", "carts_cpu"), MetricKind::Cpu);
        assert_eq!(metric_kind("carts", "carts_mem"), MetricKind::Memory);
        assert_eq!(
            metric_kind("front-end", "front-end_lat_90"),
            MetricKind::Latency
        );
        assert_eq!(
            metric_kind("api", "api_availability-Average"),
            MetricKind::Errors
        );
        assert_eq!(metric_kind("api", "api_requests-Sum"), MetricKind::Traffic);
        // A series selector: the labels' values do not count.
        assert_eq!(
            metric_kind(
                "cart",
                r#"http_request_duration_seconds{service="cart",job="error-tracker"}"#
            ),
            MetricKind::Latency
        );
        assert_eq!(
            metric_kind("cart", "container_cpu_usage_seconds_total"),
            MetricKind::Cpu
        );
        // The service's name is not the metric's (a service called "loadgen").
        assert_eq!(metric_kind("loadgen", "loadgen_mem"), MetricKind::Memory);
        let kind = |ms: &[MetricCandidate]| fault_kind(ms);
        assert_eq!(
            kind(&[m("s_cpu", 9.0, Up), m("s_lat_90", 4.0, Up)]),
            FaultKind::Cpu
        );
        assert_eq!(kind(&[m("s_mem", 9.0, Up)]), FaultKind::Memory);
        assert_eq!(kind(&[m("s_latency-p99", 9.0, Up)]), FaultKind::Latency);
        assert_eq!(
            kind(&[m("s_availability-Average", 9.0, Down)]),
            FaultKind::Errors
        );
        // Latency rising with the service's own traffic: load drove it.
        assert_eq!(
            kind(&[m("s_latency-p99", 9.0, Up), m("s_requests-Sum", 5.0, Up)]),
            FaultKind::Overload
        );
        // Traffic falling (callers gave up) is no overload.
        assert_eq!(
            kind(&[m("s_latency-p99", 9.0, Up), m("s_requests-Sum", 5.0, Down)]),
            FaultKind::Latency
        );
        assert_eq!(kind(&[m("s_requests-Sum", 9.0, Up)]), FaultKind::Overload);
        assert_eq!(kind(&[m("s_queue_depth", 9.0, Up)]), FaultKind::Unknown);
        assert_eq!(kind(&[]), FaultKind::Unknown);
        assert_eq!(FaultKind::from_label("mem"), Some(FaultKind::Memory));
        assert_eq!(FaultKind::from_label("delay"), Some(FaultKind::Latency));
        assert_eq!(FaultKind::from_label("loss"), None);
    }
}
