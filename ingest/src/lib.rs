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
//! * [`transport`] is the seam that carries batches from sources to stages.
//! * [`archive`] makes batches durable before they are acknowledged, compacts them to Parquet,
//!   enforces retention and reads series back.
//! * [`simulate`] plays a small microservice system for `aiops demo`.
//!
//! See `ingest/README.md` for the write path in one diagram.

pub mod archive;
mod config;
mod error;
mod metrics;
pub mod prometheus_api;
pub mod remote_write;
pub mod simulate;
pub mod transport;

pub use config::{Auth, PrometheusSourceConfig};
pub use error::IngestError;
pub use metrics::IngestMetrics;

/// A `reqwest` client builder with the process' TLS crypto provider (ring) installed.
/// Every HTTP client of aiops starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Fails only when another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
