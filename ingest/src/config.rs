//! Configuration of the ingest sources. (The archive and transport keep theirs next to their
//! code: [`crate::archive::ArchiveConfig`], [`crate::transport::TransportConfig`].)

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, Cortex, VictoriaMetrics) that
/// aiops polls with `query_range`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSourceConfig {
    /// Name used in logs, `/readyz` and metrics.
    pub name: String,
    /// Base URL; `/api/v1/query_range` is appended (a path prefix such as `/prometheus` is kept).
    pub url: String,
    /// PromQL selectors or expressions to pull, e.g. `{job="api"}` or `rate(http_requests_total[5m])`.
    pub selectors: Vec<String>,
    /// Resolution of the pulled series, seconds.
    #[serde(default = "default_step")]
    pub step_secs: u64,
    /// How often to poll, seconds.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// On start, how far back the first poll reaches, seconds.
    #[serde(default = "default_lookback")]
    pub lookback_secs: u64,
    /// Per-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of a failing request (network errors, 429, 5xx) before the poll is reported failed.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Credentials.
    #[serde(default)]
    pub auth: Auth,
    /// Extra headers sent with every request, e.g. `X-Scope-OrgID` for Mimir, Cortex or Thanos.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_step() -> u64 {
    15
}
fn default_poll() -> u64 {
    30
}
fn default_lookback() -> u64 {
    300
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}

impl PrometheusSourceConfig {
    /// A source with defaults for everything but the URL and selectors.
    pub fn new(name: impl Into<String>, url: impl Into<String>, selectors: Vec<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            selectors,
            step_secs: default_step(),
            poll_interval_secs: default_poll(),
            lookback_secs: default_lookback(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            auth: Auth::default(),
            headers: BTreeMap::new(),
        }
    }

    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if self.name.trim().is_empty() {
            problems.push(format!("{prefix}.name: must not be empty"));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!(
                "{prefix}.url = {:?}: must start with http:// or https://",
                self.url
            ));
        }
        if self.selectors.is_empty() {
            problems.push(format!("{prefix}.selectors: list at least one selector"));
        }
        if self.selectors.iter().any(|s| s.trim().is_empty()) {
            problems.push(format!(
                "{prefix}.selectors: selectors must not be empty strings"
            ));
        }
        if !(1..=86_400).contains(&self.step_secs) {
            problems.push(format!(
                "{prefix}.step_secs = {}: must be between 1 and 86400",
                self.step_secs
            ));
        }
        if !(1..=86_400).contains(&self.poll_interval_secs) {
            problems.push(format!(
                "{prefix}.poll_interval_secs = {}: must be between 1 and 86400",
                self.poll_interval_secs
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            problems.push(format!(
                "{prefix}.timeout_secs = {}: must be between 1 and 600",
                self.timeout_secs
            ));
        }
        if self.max_retries > 100 {
            problems.push(format!(
                "{prefix}.max_retries = {}: must be at most 100",
                self.max_retries
            ));
        }
        self.auth.validate(&format!("{prefix}.auth"), problems);
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!(
                    "{prefix}.headers: {name:?} is not a valid header name"
                ));
            }
        }
    }
}

/// Credentials for an upstream. Secrets may be given inline or, better, as files (re-read on
/// every request, so rotated tokens are picked up). Secrets are never logged.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// File holding the basic-auth password.
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<hidden>");
        f.debug_struct("Auth")
            .field("bearer_token", &hidden(&self.bearer_token))
            .field("bearer_token_file", &self.bearer_token_file)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl Auth {
    /// Problems with the combination of fields.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        let bearer = self.bearer_token.is_some() || self.bearer_token_file.is_some();
        let basic =
            self.username.is_some() || self.password.is_some() || self.password_file.is_some();
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            problems.push(format!(
                "{prefix}: set bearer_token or bearer_token_file, not both"
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push(format!("{prefix}: set password or password_file, not both"));
        }
        if bearer && basic {
            problems.push(format!(
                "{prefix}: use either bearer token or basic auth, not both"
            ));
        }
        if basic && self.username.is_none() {
            problems.push(format!("{prefix}.username: required with a password"));
        }
    }
}
