//! Metrics of the HTTP API: `aiops_api_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Labels of a turned-away request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// The scope the route needs.
    pub scope: String,
    /// `missing`, `invalid` or `forbidden`.
    pub reason: String,
}

/// API metrics.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// Request latency by route, method and status.
    pub request_seconds: Family<RequestLabels, Histogram>,
    /// Requests turned away by authentication.
    pub auth_denied: Family<DeniedLabels, Counter>,
    /// Open connections.
    pub connections: Gauge,
    /// Connections closed at once, by reason.
    pub connections_refused: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl ApiMetrics {
    /// Registers in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            auth_denied: Family::default(),
            connections: Gauge::default(),
            connections_refused: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("aiops_api");
        sub.register(
            "request_duration_seconds",
            "HTTP request latency by route, method and status.",
            m.request_seconds.clone(),
        );
        sub.register(
            "auth_denied",
            "Requests turned away by authentication, by the scope needed and why (missing, invalid, forbidden).",
            m.auth_denied.clone(),
        );
        sub.register(
            "connections",
            "Open HTTP and HTTPS connections.",
            m.connections.clone(),
        );
        sub.register(
            "connections_refused",
            "Connections closed at once: max_connections, max_connections_per_ip, tls_handshake_timeout.",
            m.connections_refused.clone(),
        );
        m
    }

    /// Counts a connection refused for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// Counts a request turned away.
    pub fn auth_denied(&self, scope: &str, why: &crate::auth::Denied) {
        let reason = match why {
            crate::auth::Denied::Missing => "missing",
            crate::auth::Denied::Invalid => "invalid",
            crate::auth::Denied::Forbidden { .. } => "forbidden",
        };
        self.auth_denied
            .get_or_create(&DeniedLabels {
                scope: scope.into(),
                reason: reason.into(),
            })
            .inc();
    }
}
