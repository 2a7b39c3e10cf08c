//! HTTP server options.

use std::net::SocketAddr;

use aiops_models::Secret;
use serde::{Deserialize, Serialize};

use crate::auth::{Authenticator, CredentialConfig, Scope};

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
    /// Most `match[]` selectors in one `GET /api/v1/series` (more: `422`).
    pub max_series_selectors: usize,
    /// Most catalog entries one `GET /api/v1/series` may visit: series in the catalog ×
    /// selectors (more: `422`).
    pub max_series_scanned: usize,
    /// Archive and catalog reads (series listings, sample reads) running at once; more wait
    /// for a turn (within the request deadline). They run on the blocking pool, never on the
    /// threads that answer health checks.
    pub max_concurrent_reads: usize,
    /// A bearer token with the `scaling` scope: the external metrics API and `/api/v1/scaling`
    /// (e.g. from `AIOPS__SERVER__SCALING_TOKEN`). Shorthand for a `[[server.credentials]]`.
    pub scaling_token: Option<Secret>,
    /// A bearer token with the `read` and `write` scopes (`AIOPS__SERVER__API_TOKEN`).
    /// Shorthand for a `[[server.credentials]]`.
    pub api_token: Option<Secret>,
    /// Credentials and their scopes (see [`crate::auth`]). With any credential (or token)
    /// configured, every route but `/healthz`, `/readyz`, the API document and the signed
    /// PagerDuty webhook needs one.
    pub credentials: Vec<CredentialConfig>,
    /// Scopes served without credentials even when credentials exist (e.g. `["scaling"]` while
    /// the Kubernetes aggregator, which cannot send a token, reaches the external metrics API).
    pub unauthenticated_scopes: Vec<Scope>,
    /// Listen on a non-loopback address with no credentials configured (`serve` refuses to
    /// otherwise; `--insecure-listen` does the same).
    pub allow_unauthenticated: bool,
    /// Also serve the API over HTTPS on this address (the Kubernetes aggregator reaches the
    /// external metrics API only over TLS). Needs `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for `tls_listen`.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key for `tls_listen`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// The Kubernetes request-header CA (the `requestheader-client-ca-file` of the
    /// `extension-apiserver-authentication` ConfigMap, mounted as a file): on `tls_listen`, a
    /// client certificate it signed, with a name in `front_proxy_allowed_names`, gets the
    /// `scaling` scope — that is how the aggregator reaches the external metrics API. The
    /// files are re-read when they change.
    pub front_proxy_ca_file: Option<std::path::PathBuf>,
    /// Common names allowed for front-proxy certificates (`requestheader-allowed-names`;
    /// empty: any certificate the CA signed).
    pub front_proxy_allowed_names: Vec<String>,
    /// A connection must send a request's headers within this many seconds of being ready for
    /// one — also how long a kept-alive connection may sit idle — or it is closed.
    pub header_read_timeout_secs: u64,
    /// A TLS handshake must finish within this many seconds.
    pub tls_handshake_timeout_secs: u64,
    /// Open connections (HTTP and HTTPS together); one more is closed at once, counted in
    /// `aiops_api_connections_refused_total{reason="max_connections"}`. `serve` raises its
    /// open-file limit to the hard limit and lowers this if the files would not suffice.
    pub max_connections: usize,
    /// Open connections from one IP address (a Prometheus opens one per shard: up to
    /// `max_shards`, 200 by default).
    pub max_connections_per_ip: usize,
    /// Longest request target (path and query), bytes (more: `414`).
    pub max_uri_bytes: usize,
    /// Most series in one remote_write request (more: `413` naming this key).
    pub max_series_per_request: usize,
    /// Most samples in one remote_write request (more: `413` naming this key).
    pub max_samples_per_request: usize,
    /// Most labels on one series, `__name__` included (more: `400`, the series left out).
    pub max_labels_per_series: usize,
    /// Longest label name, bytes.
    pub max_label_name_bytes: usize,
    /// Longest label value, bytes (`__name__` included).
    pub max_label_value_bytes: usize,
    /// Samples older than this many seconds are refused (`400` naming the series; counted as
    /// `reason="out_of_range"`). 0: the archive's retention.
    pub max_sample_age_secs: u64,
    /// Samples more than this many seconds ahead of the clock are refused likewise.
    pub max_sample_future_secs: u64,
    /// `GET /api/v1/series/{id}/scored` replays the series through a fresh detector from
    /// this many seconds before the range asked (the warm-up that teaches it the series), at
    /// most `max_samples_per_query` samples of it. 0: no warm-up. Three days by default: the
    /// detector's `young_days`, after which it scores a series as an established one.
    pub scored_warmup_secs: u64,
    /// Serve the web console at `/` (static pages; their data comes from the API with the
    /// API's credentials).
    pub console: bool,
    /// Serve KEDA's external scaler (gRPC, see [`crate::keda`]) on this address.
    pub keda_listen: Option<SocketAddr>,
    /// Serve the external scaler without credentials (KEDA's `external` trigger sends none;
    /// it answers only scaling values — admit only KEDA's pods with a NetworkPolicy).
    pub keda_allow_unauthenticated: bool,
    /// Most `StreamIsActive` streams open at once on the external scaler.
    pub keda_max_streams: usize,
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
            max_series_selectors: 16,
            max_series_scanned: 4_000_000,
            max_concurrent_reads: 4,
            scaling_token: None,
            api_token: None,
            credentials: Vec::new(),
            unauthenticated_scopes: Vec::new(),
            allow_unauthenticated: false,
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            front_proxy_ca_file: None,
            front_proxy_allowed_names: Vec::new(),
            header_read_timeout_secs: 10,
            tls_handshake_timeout_secs: 10,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_uri_bytes: 16 << 10,
            max_series_per_request: 20_000,
            max_samples_per_request: 200_000,
            max_labels_per_series: 64,
            scored_warmup_secs: 3 * 86_400,
            console: true,
            keda_listen: None,
            keda_allow_unauthenticated: false,
            keda_max_streams: 256,
            max_label_name_bytes: 256,
            max_label_value_bytes: 4096,
            max_sample_age_secs: 0,
            max_sample_future_secs: 3600,
        }
    }
}

impl ApiConfig {
    /// The credentials configured (`credentials`, plus `api_token` as read and write and
    /// `scaling_token` as scaling), their files read now.
    pub fn authenticator(&self) -> Result<Authenticator, crate::StartError> {
        let mut configs = self.credentials.clone();
        let implicit = |name: &str, token: &Secret, scopes: Vec<Scope>| CredentialConfig {
            name: name.into(),
            scopes,
            token: Some(token.clone()),
            token_file: None,
            username: None,
            password: None,
            password_file: None,
        };
        if let Some(t) = &self.api_token {
            configs.push(implicit(
                "server.api_token",
                t,
                vec![Scope::Read, Scope::Write],
            ));
        }
        if let Some(t) = &self.scaling_token {
            configs.push(implicit("server.scaling_token", t, vec![Scope::Scaling]));
        }
        let front_proxy = self
            .front_proxy_ca_file
            .as_ref()
            .map(|_| self.front_proxy_allowed_names.clone());
        Authenticator::new(configs, &self.unauthenticated_scopes, front_proxy)
            .map_err(crate::StartError::Credential)
    }

    /// Whether any credential (or token) is configured.
    pub fn has_credentials(&self) -> bool {
        !self.credentials.is_empty()
            || self.api_token.is_some()
            || self.scaling_token.is_some()
            || self.front_proxy_ca_file.is_some()
    }

    /// The listen addresses that are reachable from other hosts.
    pub fn exposed_addresses(&self) -> Vec<SocketAddr> {
        std::iter::once(self.listen)
            .chain(self.tls_listen)
            .chain(
                self.keda_listen
                    .filter(|_| !self.keda_allow_unauthenticated),
            )
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }

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
        if !(1..=100_000).contains(&self.keda_max_streams) {
            problems.push(format!(
                "{prefix}.keda_max_streams = {}: must be between 1 and 100000",
                self.keda_max_streams
            ));
        }
        if self.max_series_per_query == 0 {
            problems.push(format!("{prefix}.max_series_per_query: must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.credentials.iter().enumerate() {
            c.validate(&format!("{prefix}.credentials[{i}]"), problems);
            if !names.insert(c.name.as_str()) {
                problems.push(format!(
                    "{prefix}.credentials[{i}].name = {:?}: used twice",
                    c.name
                ));
            }
        }
        if self.tls_listen.is_some()
            && (self.tls_cert_file.is_none() || self.tls_key_file.is_none())
        {
            problems.push(format!(
                "{prefix}.tls_listen: needs {prefix}.tls_cert_file and {prefix}.tls_key_file"
            ));
        }
        if self.front_proxy_ca_file.is_some() && self.tls_listen.is_none() {
            problems.push(format!(
                "{prefix}.front_proxy_ca_file: needs {prefix}.tls_listen (client certificates come over TLS)"
            ));
        }
        if !(1..=1000).contains(&self.max_series_selectors) {
            problems.push(format!(
                "{prefix}.max_series_selectors = {}: must be between 1 and 1000",
                self.max_series_selectors
            ));
        }
        if self.max_series_scanned == 0 {
            problems.push(format!("{prefix}.max_series_scanned: must be at least 1"));
        }
        if !(1..=1024).contains(&self.max_concurrent_reads) {
            problems.push(format!(
                "{prefix}.max_concurrent_reads = {}: must be between 1 and 1024",
                self.max_concurrent_reads
            ));
        }
        if self.scored_warmup_secs > 30 * 86_400 {
            problems.push(format!(
                "{prefix}.scored_warmup_secs = {}: must be at most 2592000 (30 days)",
                self.scored_warmup_secs
            ));
        }
        if self.max_samples_per_query == 0 {
            problems.push(format!(
                "{prefix}.max_samples_per_query: must be at least 1"
            ));
        }
        for (key, v, lo, hi) in [
            (
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
                1,
                3600,
            ),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
                1,
                600,
            ),
            ("max_connections", self.max_connections as u64, 16, 1 << 20),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip as u64,
                1,
                1 << 20,
            ),
            ("max_uri_bytes", self.max_uri_bytes as u64, 256, 60_000),
            (
                "max_series_per_request",
                self.max_series_per_request as u64,
                1,
                1 << 30,
            ),
            (
                "max_samples_per_request",
                self.max_samples_per_request as u64,
                1,
                1 << 34,
            ),
            (
                "max_labels_per_series",
                self.max_labels_per_series as u64,
                1,
                1 << 16,
            ),
            (
                "max_label_name_bytes",
                self.max_label_name_bytes as u64,
                1,
                1 << 20,
            ),
            (
                "max_label_value_bytes",
                self.max_label_value_bytes as u64,
                1,
                1 << 24,
            ),
            (
                "max_sample_future_secs",
                self.max_sample_future_secs,
                0,
                366 * 86_400,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                problems.push(format!(
                    "{prefix}.{key} = {v}: must be between {lo} and {hi}"
                ));
            }
        }
    }
}

/// Limits that keep one node responsive under load (`[limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most active series (series in the catalog). A write bringing series beyond it stores
    /// the samples of series already known and answers `429 series_limit` naming this key for
    /// the rest (Prometheus drops them; it does not retry 429 by default). 0: no limit.
    pub max_series: usize,
    /// Writes are answered `503` + `Retry-After` (Prometheus retries) while the ingest queue
    /// is this many ms behind: archive, detection or compaction cannot keep up.
    pub max_queue_delay_ms: u64,
    /// Writes are answered `503` + `Retry-After` while the in-memory head (samples not yet
    /// compacted to Parquet) holds more than this many bytes: compaction is behind. The head
    /// always holds the open WAL segment: keep this at least twice `archive.segment_max_bytes`.
    pub max_head_bytes: u64,
    /// While the node is behind, a write waits up to this many ms for room before it is shed:
    /// a short overload costs latency, not retries.
    pub shed_wait_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_series: 2_000_000,
            max_queue_delay_ms: 2_000,
            max_head_bytes: 64 << 20,
            shed_wait_ms: 1_000,
        }
    }
}

impl LimitsConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if !(10..=600_000).contains(&self.max_queue_delay_ms) {
            problems.push(format!(
                "{prefix}.max_queue_delay_ms = {}: must be between 10 and 600000",
                self.max_queue_delay_ms
            ));
        }
        if self.shed_wait_ms > 60_000 {
            problems.push(format!(
                "{prefix}.shed_wait_ms = {}: must be at most 60000",
                self.shed_wait_ms
            ));
        }
        if self.max_head_bytes < 16 << 20 {
            problems.push(format!(
                "{prefix}.max_head_bytes = {}: must be at least 16777216",
                self.max_head_bytes
            ));
        }
    }
}
