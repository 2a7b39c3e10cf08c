//! remote_write 2.0 messages (package `io.prometheus.write.v2`) as prost structs, and the
//! transcoding of a 1.0 request into one. Field numbers follow `prompb/io/prometheus/write/v2/
//! types.proto`; native histograms (3) and exemplars (4) are left out: aiops writes plain samples.
//!
//! A 2.0 request interns every string once in `symbols` (`symbols[0]` is always `""`) and each
//! series names its labels by index pairs, so the many derived series that share label names
//! and values (`service`, `source_metric`, …) cost less on the wire.

use std::collections::HashMap;

use prost::Message;

use super::proto::WriteRequest;

/// `io.prometheus.write.v2.Request`.
#[derive(Clone, PartialEq, Message)]
pub struct RequestV2 {
    /// The string table; `symbols[0]` is `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// Series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeriesV2>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeriesV2 {
    /// Pairs of symbol indices: name, value, name, value, … sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Samples in ascending timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<SampleV2>,
    /// The series' metadata (type, help and unit as symbol indices).
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<MetadataV2>,
}

/// `io.prometheus.write.v2.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct SampleV2 {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix epoch milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// When a counter started (0: unset).
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetadataV2 {
    /// `MetricType` (0 unspecified, 1 counter, 2 gauge, …).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// HELP text as a symbol index (0: none).
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// Unit as a symbol index (0: none).
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// `Content-Type` of a remote_write 2.0 body.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// The `proto=` parameter naming the 2.0 message.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// What a 2.0 sender announces in `X-Prometheus-Remote-Write-Version`.
pub const VERSION_2: &str = "2.0.0";
/// Response header: samples the receiver stored (a 2.0 receiver sends it on every answer).
pub const SAMPLES_WRITTEN_HEADER: &str = "x-prometheus-remote-write-samples-written";
/// Response header: native histograms stored.
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "x-prometheus-remote-write-histograms-written";
/// Response header: exemplars stored.
pub const EXEMPLARS_WRITTEN_HEADER: &str = "x-prometheus-remote-write-exemplars-written";

/// The same series and samples as a 2.0 request (labels interned; 1.0 metadata, which travels
/// apart from series, is not carried).
pub fn to_v2(req: &WriteRequest) -> RequestV2 {
    let mut symbols = Interner::default();
    let mut timeseries = Vec::with_capacity(req.timeseries.len());
    for ts in &req.timeseries {
        let mut labels_refs = Vec::with_capacity(ts.labels.len() * 2);
        for l in &ts.labels {
            labels_refs.extend([symbols.get(&l.name), symbols.get(&l.value)]);
        }
        timeseries.push(TimeSeriesV2 {
            labels_refs,
            samples: ts
                .samples
                .iter()
                .map(|s| SampleV2 {
                    value: s.value,
                    timestamp: s.timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            metadata: None,
        });
    }
    RequestV2 {
        symbols: symbols.table,
        timeseries,
    }
}

/// The string table being built: each distinct string once, `""` at 0.
struct Interner<'a> {
    index: HashMap<&'a str, u32>,
    table: Vec<String>,
}

impl Default for Interner<'_> {
    fn default() -> Self {
        Self {
            index: HashMap::from([("", 0)]),
            table: vec![String::new()],
        }
    }
}

impl<'a> Interner<'a> {
    fn get(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.table.len()).expect("fewer than 4 G symbols in one request");
        self.table.push(s.to_owned());
        self.index.insert(s, i);
        i
    }
}

/// Encodes a 2.0 request as a body: protobuf, then Snappy block format.
pub fn encode_v2(req: &RequestV2) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy block encoding cannot fail for in-memory input under 4 GiB")
}

/// A 1.0 body (as queued by the writer) re-encoded as a 2.0 body.
pub fn transcode_v1_body(body: &[u8]) -> Result<Vec<u8>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let req = WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
    Ok(encode_v2(&to_v2(&req)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::TimeSeries;

    #[test]
    fn labels_are_interned_once_and_the_empty_string_is_first() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries::from_parts([("__name__", "a"), ("service", "x")], [(1, 1.0)]),
                TimeSeries::from_parts([("__name__", "b"), ("service", "x")], [(2, 2.0)]),
            ],
            metadata: vec![],
        };
        let v2 = to_v2(&req);
        assert_eq!(v2.symbols, ["", "__name__", "a", "service", "x", "b"]);
        assert_eq!(v2.timeseries[0].labels_refs, [1, 2, 3, 4]);
        assert_eq!(v2.timeseries[1].labels_refs, [1, 5, 3, 4]);
        assert_eq!(v2.timeseries[1].samples[0].timestamp, 2);
        let body = transcode_v1_body(&super::super::encode_write_request(&req)).expect("1.0 body");
        let back = RequestV2::decode(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy")
                .as_slice(),
        )
        .expect("protobuf");
        assert_eq!(back, v2);
    }
}
