//! A synthetic Kubernetes-like workload at production cardinality, encoded straight into
//! remote_write 1.0 bodies: what `aiops bench cardinality` sends and what
//! `aiops bench bodies` writes to files for `scripts/compare_ingest.sh` (the same bytes for
//! every receiver).
//!
//! Every pod exposes [`METRICS_PER_POD`] series: a third counters (integer increments), a third
//! integer gauges (byte counts, multiples of 4 KiB), a third float gauges (full-precision
//! values); 500 services, 20 namespaces, scrape timestamps 15 s apart with a per-target offset.
//! Each series' labels are protobuf-encoded once, so a request costs only its samples.

use std::ops::Range;

/// Series per simulated pod.
pub const METRICS_PER_POD: usize = 48;
/// Scrape interval of the simulated targets, ms.
pub const STEP_MS: i64 = 15_000;

/// The label bytes of every series, protobuf-encoded (`TimeSeries.labels` fields).
#[derive(Debug)]
pub struct Workload {
    labels: Vec<u8>,
    ends: Vec<usize>,
    /// First timestamp, Unix ms: sample `k` of a series is at `t0 + k * STEP_MS + offset`.
    pub t0: i64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 2
        + varint_len(name.len() as u64)
        + name.len()
        + varint_len(value.len() as u64)
        + value.len();
    out.push(0x0a);
    put_varint(out, inner as u64);
    out.push(0x0a);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(0x12);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// The metric name of series `i` (its kind is `i % 3`: counter, integer gauge, float gauge).
pub fn metric_name(i: usize) -> String {
    let m = i % METRICS_PER_POD;
    match m % 3 {
        0 => format!("bench_requests_{m}_total"),
        1 => format!("bench_memory_{m}_bytes"),
        _ => format!("bench_latency_{m}_seconds"),
    }
}

impl Workload {
    /// `series` series whose first samples are at `t0`.
    pub fn new(series: usize, t0: i64) -> Self {
        let mut labels = Vec::with_capacity(series * 180);
        let mut ends = Vec::with_capacity(series);
        for i in 0..series {
            let pod = i / METRICS_PER_POD;
            let service = pod % 500;
            // Sorted by name, as remote_write requires.
            put_label(&mut labels, "__name__", &metric_name(i));
            put_label(&mut labels, "container", &format!("app-{}", i % 3));
            put_label(
                &mut labels,
                "instance",
                &format!(
                    "10.{}.{}.{}:9100",
                    (pod >> 16) & 255,
                    (pod >> 8) & 255,
                    pod & 255
                ),
            );
            put_label(&mut labels, "job", "kubernetes-pods");
            put_label(&mut labels, "namespace", &format!("ns-{}", service % 20));
            put_label(
                &mut labels,
                "pod",
                &format!(
                    "svc-{service}-{:08x}",
                    (pod as u64).wrapping_mul(0x9e37_79b9)
                ),
            );
            put_label(&mut labels, "service", &format!("svc-{service}"));
            ends.push(labels.len());
        }
        Self { labels, ends, t0 }
    }

    /// Timestamp of sample `k` of series `i`.
    pub fn timestamp(&self, i: usize, k: u64) -> i64 {
        self.t0 + k as i64 * STEP_MS + ((i as i64 * 7919) % STEP_MS)
    }

    /// Value of sample `k` of series `i`: counters grow by whole numbers, integer gauges move
    /// in 4 KiB pages, float gauges wander with full precision.
    pub fn value(i: usize, k: u64) -> f64 {
        match (i % METRICS_PER_POD) % 3 {
            0 => (i % 1000) as f64 * 1000.0 + k as f64 * ((i % 97) as f64 + 1.0),
            1 => {
                1e8 + (i % 1000) as f64 * 1e5
                    + ((k.wrapping_mul(31) + i as u64) % 17) as f64 * 4096.0
            }
            _ => 0.05 + (i % 100) as f64 * 0.01 + 0.02 * ((k as f64 * 0.1 + i as f64).sin() + 1.0),
        }
    }

    /// The uncompressed `WriteRequest` of series `range`, samples `first..first + count` each.
    pub fn encode(&self, range: Range<usize>, first: u64, count: u64, out: &mut Vec<u8>) {
        out.clear();
        for i in range {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let labels = &self.labels[start..self.ends[i]];
            let mut len = labels.len();
            for k in first..first + count {
                let ts = self.timestamp(i, k) as u64;
                let sample = 1 + 8 + 1 + varint_len(ts);
                len += 1 + varint_len(sample as u64) + sample;
            }
            out.push(0x0a);
            put_varint(out, len as u64);
            out.extend_from_slice(labels);
            for k in first..first + count {
                let ts = self.timestamp(i, k) as u64;
                let sample = 1 + 8 + 1 + varint_len(ts);
                out.push(0x12);
                put_varint(out, sample as u64);
                out.push(0x09);
                out.extend_from_slice(&Self::value(i, k).to_le_bytes());
                out.push(0x10);
                put_varint(out, ts);
            }
        }
    }

    /// As [`Workload::encode`], Snappy-compressed: a remote_write body.
    pub fn body(
        &self,
        range: Range<usize>,
        first: u64,
        count: u64,
        scratch: &mut Vec<u8>,
    ) -> Vec<u8> {
        self.encode(range, first, count, scratch);
        snap::raw::Encoder::new()
            .compress_vec(scratch)
            .expect("compressing a buffer in memory cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_ingest::remote_write::decode_write_request;
    use aiops_models::SeriesCatalog;

    #[test]
    fn bodies_decode_to_the_series_and_samples_they_describe() {
        let w = Workload::new(200, 1_700_000_000_000);
        let mut scratch = Vec::new();
        let body = w.body(10..110, 4, 3, &mut scratch);
        let catalog = SeriesCatalog::new();
        let d = decode_write_request(&body, &catalog, 1 << 30).expect("decodes");
        assert!(d.invalid.is_none(), "{:?}", d.invalid);
        assert_eq!(d.series, 100);
        assert_eq!(d.batch.len(), 300);
        assert_eq!(d.batch.new_series.len(), 100);
        let first = &d.batch.new_series[0];
        assert_eq!(first.metric, metric_name(10));
        assert_eq!(first.labels.len(), 6);
        assert_eq!(d.batch.timestamps()[0], w.timestamp(10, 4));
        assert_eq!(d.batch.values()[1], Workload::value(10, 5));
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 42, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }
}
