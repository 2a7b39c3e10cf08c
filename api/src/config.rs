//! HTTP server options.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body (compressed), bytes. Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest accepted remote_write body after Snappy decompression, bytes. Larger get 413.
    pub max_decoded_bytes: usize,
    /// A request running longer than this is answered 503 (senders retry).
    pub request_timeout_secs: u64,
    /// On shutdown, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Most series one `GET /api/v1/series` answer lists.
    pub max_series_per_query: usize,
    /// Most samples one `GET /api/v1/series/{id}/samples` answer holds.
    pub max_samples_per_query: usize,
    /// When set, the external metrics API and `/api/v1/scaling` require
    /// `Authorization: Bearer <token>` (e.g. from `AIOPS__SERVER__SCALING_TOKEN`).
    pub scaling_token: Option<String>,
    /// When set, the write routes of the triage API (`POST /api/v1/incidents`, feedback) and the
    /// Alertmanager webhook require `Authorization: Bearer <token>` (`AIOPS__SERVER__API_TOKEN`).
    pub api_token: Option<String>,
    /// Also serve the API over HTTPS on this address (the Kubernetes aggregator reaches the
    /// external metrics API only over TLS). Needs `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for `tls_listen`.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key for `tls_listen`.
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9201)),
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            max_series_per_query: 10_000,
            max_samples_per_query: 1_000_000,
            scaling_token: None,
            api_token: None,
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ApiConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if !(1024..=1 << 30).contains(&self.max_body_bytes) {
            problems.push(format!(
                "{prefix}.max_body_bytes = {}: must be between 1024 and 1073741824",
                self.max_body_bytes
            ));
        }
        if self.max_decoded_bytes < self.max_body_bytes || self.max_decoded_bytes > 4 << 30 {
            problems.push(format!(
                "{prefix}.max_decoded_bytes = {}: must be at least max_body_bytes ({}) and at most 4294967296",
                self.max_decoded_bytes, self.max_body_bytes
            ));
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            problems.push(format!(
                "{prefix}.request_timeout_secs = {}: must be between 1 and 3600",
                self.request_timeout_secs
            ));
        }
        if self.shutdown_grace_secs > 3600 {
            problems.push(format!(
                "{prefix}.shutdown_grace_secs = {}: must be at most 3600",
                self.shutdown_grace_secs
            ));
        }
        if self.max_series_per_query == 0 {
            problems.push(format!("{prefix}.max_series_per_query: must be at least 1"));
        }
        if self.tls_listen.is_some()
            && (self.tls_cert_file.is_none() || self.tls_key_file.is_none())
        {
            problems.push(format!(
                "{prefix}.tls_listen: needs {prefix}.tls_cert_file and {prefix}.tls_key_file"
            ));
        }
        if self.max_samples_per_query == 0 {
            problems.push(format!(
                "{prefix}.max_samples_per_query: must be at least 1"
            ));
        }
    }
}
