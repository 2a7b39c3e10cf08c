//! Prometheus remote_write 1.0 and 2.0: the wire types and the decoder that turns a request body
//! into a [`SampleBatch`](aiops_models::SampleBatch).
//!
//! Two decoders live here on purpose:
//!
//! * [`proto`] declares the protobuf messages as prost structs (no `protoc` needed). Senders —
//!   the demo workload, the load generator, tests — encode with them, and tests decode with them
//!   as the reference.
//! * [`decode`] walks the same wire format without building those structs: it hashes label
//!   bytes in place, copies labels only for series the catalog has not seen, and writes samples
//!   straight into Arrow columns. That keeps the receiver free of per-sample and per-known-series
//!   allocation; a property test checks that it agrees with prost on every input.

pub mod client;
pub mod decode;
pub mod outbox;
pub mod output;
pub mod proto;
pub mod proto_v2;
mod synthetic;

pub use client::RemoteWriteClient;
pub use decode::{
    DecodeLimits, Decoded, InvalidSeries, WireVersion, decode_version, decode_with_limits,
    decode_write_request,
};
pub use proto::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest, encode_write_request};
pub use synthetic::synthetic_request;

/// `Content-Encoding` a remote_write 1.0 body must carry.
pub const CONTENT_ENCODING: &str = "snappy";
/// `Content-Type` of a remote_write 1.0 body (optionally with `;proto=prometheus.WriteRequest`).
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `X-Prometheus-Remote-Write-Version` sent by remote_write 1.0 senders.
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
/// The version a 1.0 sender announces.
pub const VERSION_1: &str = "0.1.0";
