//! What detection writes to remote_write outputs (`aiops_ingest::remote_write::output`, behind
//! [`DerivedOut`]): for
//! each scored sample of a selected series, five derived series with the source series' labels
//! plus `source_metric` (the source's metric name):
//!
//! | series | value |
//! |---|---|
//! | `aiops_anomaly_score` | the alarm score in [0, 1] (0.5 is the alert level; 0 while resting) |
//! | `aiops_anomaly_rank_score` | the continuous score in [0, 1] (0.5: a one-in-100,000 state) |
//! | `aiops_expected` | the value expected (a counter's: its per-second rate) |
//! | `aiops_expected_lower`, `aiops_expected_upper` | the expected band |
//!
//! Each service scored as one vector adds `aiops_service_anomaly_score{service}` (its
//! multivariate score per step, in [0, 1]).
//!
//! A series is selected once, on its first scored sample: it matches one of the output's
//! selectors (or there are none) and the output has written fewer than `max_series` series.

use aiops_models::{Selector, SeriesId, SeriesMeta};

use crate::Scored;

/// The derived series' names, in the order they are buffered.
pub const NAMES: [&str; 5] = [
    "aiops_anomaly_score",
    "aiops_anomaly_rank_score",
    "aiops_expected",
    "aiops_expected_lower",
    "aiops_expected_upper",
];

/// A service's multivariate score (see `crate::multi`).
pub const SERVICE_SCORE: &str = "aiops_service_anomaly_score";

/// One derived series: labels (sorted by name, `__name__` included) and samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedSeries {
    /// The labels.
    pub labels: Vec<(String, String)>,
    /// `(unix_ms, value)`.
    pub samples: Vec<(i64, f64)>,
}

/// Where derived series go (an output's channel); never waits.
pub trait DerivedOut: Send + Sync + std::fmt::Debug {
    /// Hands series over (dropped and counted when the output is behind).
    fn send(&self, series: Vec<DerivedSeries>);
    /// Counts a source series left out because `max_series` was reached.
    fn series_not_selected(&self);
}

/// One output as detection sees it.
#[derive(Debug)]
pub struct OutputSink {
    sender: Box<dyn DerivedOut>,
    selectors: Vec<Selector>,
    max_series: usize,
    selected: usize,
    buf: Vec<DerivedSeries>,
    /// The series whose five entries end `buf` (a run of samples extends them).
    last: Option<SeriesId>,
}

impl OutputSink {
    /// An output writing the derived series of the series `select` matches (all when empty;
    /// selectors that do not parse were refused by validation and are skipped).
    pub fn new(sender: Box<dyn DerivedOut>, select: &[String], max_series: usize) -> Self {
        Self {
            sender,
            selectors: select.iter().filter_map(|s| s.parse().ok()).collect(),
            max_series,
            selected: 0,
            buf: Vec::new(),
            last: None,
        }
    }

    /// Whether `meta`'s derived series are written (ask once per series).
    pub fn admit(&mut self, meta: &SeriesMeta) -> bool {
        if !self.selectors.is_empty() && !self.selectors.iter().any(|s| s.matches(meta)) {
            return false;
        }
        if self.selected >= self.max_series {
            self.sender.series_not_selected();
            return false;
        }
        self.selected += 1;
        true
    }

    /// Buffers one scored sample of an admitted series.
    pub fn push(&mut self, meta: &SeriesMeta, ts: i64, s: &Scored) {
        let values = [s.score, s.rank_score, s.expected, s.lower, s.upper];
        if self.last != Some(meta.id) {
            self.last = Some(meta.id);
            for name in NAMES {
                self.buf.push(DerivedSeries {
                    labels: labels(meta, name),
                    samples: Vec::new(),
                });
            }
        }
        let at = self.buf.len() - NAMES.len();
        for (series, value) in self.buf[at..].iter_mut().zip(values) {
            if value.is_finite() {
                series.samples.push((ts, value));
            }
        }
    }

    /// Buffers a service's multivariate score (`aiops_service_anomaly_score{service}`: every
    /// service's, their number is bounded by the services).
    pub fn push_service(&mut self, service: &str, ts: i64, score: f64) {
        if !score.is_finite() {
            return;
        }
        self.last = None;
        self.buf.push(DerivedSeries {
            labels: vec![
                ("__name__".into(), SERVICE_SCORE.into()),
                ("service".into(), service.into()),
            ],
            samples: vec![(ts, score)],
        });
    }

    /// Hands what is buffered to the output (never waits).
    pub fn flush(&mut self) {
        self.last = None;
        let series: Vec<DerivedSeries> = std::mem::take(&mut self.buf)
            .into_iter()
            .filter(|t| !t.samples.is_empty())
            .collect();
        self.sender.send(series);
    }
}

/// The source's labels, `__name__` = `name` and `source_metric` = its metric, sorted by name.
fn labels(meta: &SeriesMeta, name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = meta
        .labels
        .iter()
        .filter(|(k, _)| *k != "source_metric")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    out.push(("__name__".into(), name.into()));
    out.push(("source_metric".into(), meta.metric.clone()));
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_the_source_name_it_and_sort() {
        let meta = SeriesMeta::new(
            aiops_models::Source::Prometheus,
            "http_requests_total",
            [("zone".into(), "a".into()), ("job".into(), "api".into())],
        );
        let l = labels(&meta, "aiops_expected");
        let names: Vec<&str> = l.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, ["__name__", "job", "source_metric", "zone"]);
        assert_eq!(l[0].1, "aiops_expected");
        assert_eq!(l[2].1, "http_requests_total");
    }
}
