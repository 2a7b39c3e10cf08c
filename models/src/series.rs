//! Series identity.
//!
//! A series is identified by a [`SeriesId`]: the 64-bit XXH3 hash (seed 0) of its source name and
//! its label set, sorted by label name, `__name__` included. The bytes hashed are
//!
//! ```text
//! source 0xFF (name 0xFE value 0xFF)*
//! ```
//!
//! `0xFE` and `0xFF` never occur in UTF-8, so two different label sets never produce the same
//! byte string. The id is stable across processes, machines and versions: it is part of the
//! archive format and the Kafka partitioning key, and changing it is a breaking change.
//!
//! **Collisions.** Two different label sets hashing to the same 64-bit id happen with probability
//! about n²/2⁶⁵ (1 in 37 million for one million series). The [`SeriesCatalog`](crate::SeriesCatalog)
//! detects them: the first series keeps the id, samples of the second are rejected and counted
//! as `collision`s by the receiver (a 400 naming both label sets), and an error is logged, so a
//! collision is loud and never silently merges two series. To tell "same series" from
//! "collision" without comparing labels on the hot path, the catalog keeps a second hash of the
//! same bytes (seeded differently) next to each id.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::{Labels, ModelError};

/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Bit pattern of Prometheus' stale marker, a specific NaN. Compare bits, not `is_nan()`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is Prometheus' stale marker (not any NaN).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Stable 64-bit identity of a series. Displayed and parsed as 16 lower-case hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for SeriesId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(SeriesId)
    }
}

impl Serialize for SeriesId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SeriesId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a series comes from. Part of its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Prometheus remote_write or the Prometheus HTTP API (both give the same id).
    Prometheus,
    /// Azure Application Insights.
    AppInsights,
}

impl Source {
    /// The name hashed into the series id and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prometheus => "prometheus",
            Source::AppInsights => "appinsights",
        }
    }
}

impl FromStr for Source {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prometheus" => Ok(Source::Prometheus),
            "appinsights" => Ok(Source::AppInsights),
            other => Err(ModelError::UnknownSource {
                name: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Computation of a [`SeriesId`] from borrowed label bytes, so that the decoder can identify a
/// series before deciding whether it needs to copy its labels. The bytes are gathered in a
/// reusable buffer and hashed in one call (many tiny streaming updates cost far more).
#[derive(Debug, Clone, Default)]
pub struct SeriesHasher {
    buf: Vec<u8>,
}

impl SeriesHasher {
    /// Starts the hash of a series of `source`.
    pub fn new(source: Source) -> Self {
        let mut h = Self {
            buf: Vec::with_capacity(256),
        };
        h.reset(source);
        h
    }

    /// Starts over for another series, keeping the buffer.
    #[inline]
    pub fn reset(&mut self, source: Source) {
        self.buf.clear();
        self.buf.extend_from_slice(source.as_str().as_bytes());
        self.buf.push(0xff);
    }

    /// Adds one label. Labels must be added sorted by name, `__name__` included.
    #[inline]
    pub fn label(&mut self, name: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(name);
        self.buf.push(0xfe);
        self.buf.extend_from_slice(value);
        self.buf.push(0xff);
    }

    /// The id.
    #[inline]
    pub fn finish(&self) -> SeriesId {
        SeriesId(xxh3_64(&self.buf))
    }

    /// A second, independent 64-bit hash of the same bytes. The catalog keeps it next to the
    /// id: a known id with the same check is the same series (a false match needs both 64-bit
    /// hashes to collide), so known series are recognised without comparing their labels.
    #[inline]
    pub fn finish_check(&self) -> u64 {
        xxh3_64_with_seed(&self.buf, CHECK_SEED)
    }
}

const CHECK_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// What a series stands for: its source, metric name and the rest of its labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesMeta {
    /// The stable id, derived from the other fields.
    pub id: SeriesId,
    /// Where the series comes from.
    pub source: Source,
    /// The metric name (`__name__`); empty for series pulled from queries that drop it.
    pub metric: String,
    /// The labels other than `__name__`, sorted by name, names unique.
    pub labels: Labels,
}

impl SeriesMeta {
    /// Bytes this meta holds behind an `Arc` (its header, the struct and every string),
    /// estimated: what one series costs the catalog.
    pub fn heap_bytes(&self) -> usize {
        // Allocations are rounded up to 16 bytes by the allocator.
        let alloc = |n: usize| if n == 0 { 0 } else { n.div_ceil(16) * 16 };
        16 + std::mem::size_of::<Self>() + alloc(self.metric.capacity()) + self.labels.heap_bytes()
    }

    /// Builds a meta from a metric name and labels in any order, computing the id.
    /// A `__name__` entry in `labels` is ignored in favour of `metric`.
    pub fn new(
        source: Source,
        metric: impl Into<String>,
        labels: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let metric = metric.into();
        let labels = Labels::new(
            labels
                .into_iter()
                .filter(|(n, _)| n != METRIC_NAME_LABEL)
                .collect(),
        );
        let id = Self::hasher_for(source, &metric, &labels).finish();
        Self {
            id,
            source,
            metric,
            labels,
        }
    }

    /// Computes the id of a metric name plus sorted labels (without `__name__`).
    pub fn compute_id(source: Source, metric: &str, sorted_labels: &Labels) -> SeriesId {
        Self::hasher_for(source, metric, sorted_labels).finish()
    }

    /// The second hash kept by the catalog (see [`SeriesHasher::finish_check`]).
    pub fn check(&self) -> u64 {
        Self::hasher_for(self.source, &self.metric, &self.labels).finish_check()
    }

    fn hasher_for(source: Source, metric: &str, sorted_labels: &Labels) -> SeriesHasher {
        let mut h = SeriesHasher::new(source);
        let mut name_done = metric.is_empty();
        for (n, v) in sorted_labels {
            if !name_done && n > METRIC_NAME_LABEL {
                h.label(METRIC_NAME_LABEL.as_bytes(), metric.as_bytes());
                name_done = true;
            }
            h.label(n.as_bytes(), v.as_bytes());
        }
        if !name_done {
            h.label(METRIC_NAME_LABEL.as_bytes(), metric.as_bytes());
        }
        h
    }

    /// The value of a label; `__name__` gives the metric name.
    pub fn label(&self, name: &str) -> Option<&str> {
        if name == METRIC_NAME_LABEL {
            return (!self.metric.is_empty()).then_some(self.metric.as_str());
        }
        self.labels.get(name)
    }

    /// Prometheus-style text: `metric{a="b",c="d"}`.
    pub fn to_selector_string(&self) -> String {
        let mut s = self.metric.clone();
        s.push('{');
        for (i, (n, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(n);
            s.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s.push('}');
        s
    }
}

/// A hasher for maps keyed by [`SeriesId`]: the id already is a good hash, so it is used as is.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u64; fold them in so the map stays correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A `HashMap` keyed by [`SeriesId`] without re-hashing the id.
pub type IdHashMap<V> = HashMap<SeriesId, V, BuildHasherDefault<IdHasher>>;

/// Prometheus naming conventions for cumulative series: counters end in `_total`, and the
/// `_count`, `_sum` and `_bucket` series of histograms and summaries are cumulative too.
pub fn is_counter(metric: &str) -> bool {
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| metric.ends_with(s))
}

/// The per-second rate between two samples of a counter, treating a decrease as a reset
/// (the counter restarted from 0), as PromQL's `rate` does.
pub fn counter_rate(prev: (i64, f64), now: (i64, f64)) -> Option<f64> {
    let dt = (now.0 - prev.0) as f64 / 1000.0;
    (dt > 0.0).then(|| counter_delta(prev.1, now.1) / dt)
}

/// What a counter counted between two readings (after a reset, the new reading).
fn counter_delta(prev: f64, now: f64) -> f64 {
    if now >= prev { now - prev } else { now }
}

/// A counter's step between two readings: its per-second rate (see [`counter_rate`]) and, when
/// both readings are whole numbers, the number of events counted in between (a count the
/// detector scores as one while few events happen per sample).
pub fn counter_step(prev: (i64, f64), now: (i64, f64)) -> Option<(f64, Option<f64>)> {
    let rate = counter_rate(prev, now)?;
    let whole = |v: f64| v.fract() == 0.0 && v.abs() < 9.0e15;
    let count = (whole(prev.1) && whole(now.1)).then(|| counter_delta(prev.1, now.1));
    Some((rate, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: &str, v: &str) -> (String, String) {
        (n.to_owned(), v.to_owned())
    }

    #[test]
    fn a_counter_of_whole_readings_counts_its_events() {
        assert_eq!(
            counter_step((0, 10.0), (15_000, 13.0)),
            Some((0.2, Some(3.0)))
        );
        // A reset: the new reading is what was counted since.
        assert_eq!(
            counter_step((0, 10.0), (10_000, 2.0)),
            Some((0.2, Some(2.0)))
        );
        // Seconds of CPU are not events.
        assert_eq!(counter_step((0, 1.5), (10_000, 2.5)), Some((0.1, None)));
        assert_eq!(counter_step((0, 1.0), (0, 2.0)), None);
    }

    #[test]
    fn id_does_not_depend_on_label_order() {
        let a = SeriesMeta::new(
            Source::Prometheus,
            "up",
            [l("job", "a"), l("instance", "x")],
        );
        let b = SeriesMeta::new(
            Source::Prometheus,
            "up",
            [l("instance", "x"), l("job", "a")],
        );
        assert_eq!(a.id, b.id);
        assert_eq!(a.labels.to_vec(), vec![l("instance", "x"), l("job", "a")]);
    }

    #[test]
    fn id_depends_on_source_names_and_values() {
        let base = SeriesMeta::new(Source::Prometheus, "up", [l("job", "a")]);
        let other_source = SeriesMeta::new(Source::AppInsights, "up", [l("job", "a")]);
        let other_value = SeriesMeta::new(Source::Prometheus, "up", [l("job", "b")]);
        let other_name = SeriesMeta::new(Source::Prometheus, "down", [l("job", "a")]);
        // Moving bytes between name and value must change the id.
        let shifted = SeriesMeta::new(Source::Prometheus, "up", [l("jo", "ba")]);
        for other in [other_source, other_value, other_name, shifted] {
            assert_ne!(base.id, other.id, "{other:?}");
        }
    }

    #[test]
    fn id_is_stable_across_versions() {
        // Part of the archive format: this value must never change.
        let m = SeriesMeta::new(
            Source::Prometheus,
            "up",
            [l("instance", "x:9100"), l("job", "node")],
        );
        assert_eq!(m.id.to_string().len(), 16);
        let mut h = SeriesHasher::new(Source::Prometheus);
        h.label(b"__name__", b"up");
        h.label(b"instance", b"x:9100");
        h.label(b"job", b"node");
        assert_eq!(h.finish(), m.id);
        assert_eq!(m.id.to_string(), "351321bea562b78b");
    }

    #[test]
    fn name_sorts_among_labels_by_byte_order() {
        // Upper-case label names sort before `__name__`; the streaming hasher, fed in wire
        // order, must agree with the meta.
        let m = SeriesMeta::new(Source::Prometheus, "up", [l("Zone", "z"), l("job", "j")]);
        let mut h = SeriesHasher::new(Source::Prometheus);
        h.label(b"Zone", b"z");
        h.label(b"__name__", b"up");
        h.label(b"job", b"j");
        assert_eq!(h.finish(), m.id);
    }

    #[test]
    fn series_id_round_trips_through_text() {
        let id = SeriesId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<SeriesId>().ok(), Some(id));
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
    }
}
