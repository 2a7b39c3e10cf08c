//! remote_write 1.0 messages (package `prometheus`) as prost structs. Field numbers follow
//! `prompb/remote.proto` and `prompb/types.proto`; exemplars (3) and native histograms (4) are
//! left out on purpose: decoders skip unknown fields.

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata; Prometheus sends it in separate requests without series.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// The full label set, `__name__` included, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in ascending timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix epoch milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// `MetricType` enum value (0 unknown, 1 counter, 2 gauge, 3 histogram, ...).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// HELP text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Encodes a request as a remote_write body: protobuf, then Snappy block format.
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy block encoding cannot fail for in-memory input under 4 GiB")
}

impl TimeSeries {
    /// A series from `(name, value)` labels, sorted here, and `(timestamp_ms, value)` samples.
    pub fn from_parts<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> Self {
        let mut labels: Vec<Label> = labels
            .into_iter()
            .map(|(n, v)| Label {
                name: n.to_owned(),
                value: v.to_owned(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            labels,
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }
    }
}
