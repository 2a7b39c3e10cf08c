//! Metrics of the HTTP API: `aiops_api_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request: the route template (never the raw path) and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/api/v1/series/{id}/samples`, or `unmatched`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// API metrics.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// Request latency by route, method and status.
    pub request_seconds: Family<RequestLabels, Histogram>,
}

impl ApiMetrics {
    /// Registers in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        };
        registry.sub_registry_with_prefix("aiops_api").register(
            "request_duration_seconds",
            "HTTP request latency by route, method and status.",
            m.request_seconds.clone(),
        );
        m
    }
}
