//! Ingest: where samples enter aiops and become durable.
//!
//! ```text
//! remote_write (api) ─┐
//! Prometheus HTTP API ┼─ SampleBatch ─▶ transport (bounded) ─▶ archive stage ─▶ ack
//!   (prometheus_api)  ┘                                        (WAL → Parquet)
//! ```
//!
//! * [`remote_write`] decodes Prometheus remote_write 1.0 bodies into Arrow.
//! * [`prometheus_api`] pulls from a Prometheus HTTP API: backfill over a range and live polling.
//! * [`backfill`] pulls a time range from a source into an archive no server holds.
//! * [`transport`] is the seam that carries batches from sources to stages.
//! * [`archive`] makes batches durable before they are acknowledged, compacts them to Parquet,
//!   enforces retention and reads series back.
//!
//! Owns the archive's files (`data_dir`: WAL, parts, catalog, quarantine) and every HTTP client
//! that pulls or sends samples; failures are one [`IngestError`], I/O errors with their kind.
//! It never acknowledges a batch before it is durable, never serves damaged bytes as data, and
//! knows nothing of scoring, incidents or HTTP routes (the api crate serves what it holds).
//!
//! See `ingest/README.md` for the write path in one diagram.

pub mod appinsights;
pub mod archive;
pub mod backfill;
pub mod bus;
mod config;
mod error;
pub mod http;
pub mod kafka;
mod metrics;
pub mod prometheus_api;
pub mod remote_write;
mod sources;
pub mod transport;

pub use bus::{TransportConfig, TransportKind};
pub use config::{
    AppInsightsAuth, AppInsightsMetric, AppInsightsSourceConfig, Auth, KqlQuery,
    PrometheusSourceConfig, SecretSource, parse_iso_duration,
};
pub use error::IngestError;
pub use http::http_client;
pub use metrics::IngestMetrics;
pub use sources::{PullSummary, SourceState, SourceStates};
