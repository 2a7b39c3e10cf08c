//! Configuration of the ingest sources. (The archive and transport keep theirs next to their
//! code: [`crate::archive::ArchiveConfig`], [`crate::bus::TransportConfig`].)

use std::collections::BTreeMap;
use std::path::PathBuf;

use aiops_models::Secret;
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Bearer token.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// File holding the basic-auth password.
    pub password_file: Option<PathBuf>,
}

impl Auth {
    /// Where the bearer token comes from, if one is configured.
    pub fn bearer(&self) -> Option<SecretSource> {
        SecretSource::of(&self.bearer_token, &self.bearer_token_file, &None)
    }

    /// Where the basic-auth password comes from, if one is configured.
    pub fn password(&self) -> Option<SecretSource> {
        SecretSource::of(&self.password, &self.password_file, &None)
    }

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

/// An Azure Application Insights resource polled through its REST API: standard metrics
/// (`GET /v1/apps/{appId}/metrics/{metricId}`) and KQL queries (`/v1/apps/{appId}/query`, or
/// `/v1/workspaces/{workspaceId}/query` for workspace-based resources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInsightsSourceConfig {
    /// Name used in logs, `/readyz` and metrics.
    pub name: String,
    /// API base URL.
    #[serde(default = "default_ai_url")]
    pub url: String,
    /// Application ID (the GUID of the resource's API Access blade). Needed for metrics.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Log Analytics workspace id: KQL goes to `/v1/workspaces/{id}/query` instead.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Value of the `app` label of every series (default: the app id, else the workspace id).
    #[serde(default)]
    pub app: Option<String>,
    /// Standard or custom metrics to pull.
    #[serde(default)]
    pub metrics: Vec<AppInsightsMetric>,
    /// KQL queries to pull.
    #[serde(default)]
    pub kql: Vec<KqlQuery>,
    /// Credentials.
    #[serde(default)]
    pub auth: AppInsightsAuth,
    /// How often to poll, seconds.
    #[serde(default = "default_ai_poll")]
    pub poll_interval_secs: u64,
    /// Each poll asks again for this many seconds before the last one ended, to pick up
    /// late-arriving telemetry; unchanged values are not sent twice.
    #[serde(default = "default_ai_overlap")]
    pub overlap_secs: u64,
    /// On start, how far back the first poll reaches, seconds.
    #[serde(default = "default_ai_lookback")]
    pub lookback_secs: u64,
    /// Per-request timeout, seconds.
    #[serde(default = "default_ai_timeout")]
    pub timeout_secs: u64,
    /// Retries of a failing request (network errors, timeouts, 429, 5xx).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

/// One metric of [`AppInsightsSourceConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInsightsMetric {
    /// Metric id, e.g. `requests/count`, `requests/duration`, `customMetrics/queueDepth`.
    pub id: String,
    /// Bucket size, ISO 8601 (`PT1M`, `PT5M`, `PT1H`, `P1D`).
    #[serde(default = "default_ai_interval")]
    pub interval: String,
    /// Aggregations (`min`, `max`, `avg`, `sum`, `count`, `unique`); empty: the metric's default.
    #[serde(default)]
    pub aggregation: Vec<String>,
    /// Dimensions to segment by, nested in this order, e.g. `cloud/roleName`.
    #[serde(default)]
    pub segment: Vec<String>,
    /// Number of segments to return.
    #[serde(default)]
    pub top: Option<u32>,
    /// OData filter on dimensions.
    #[serde(default)]
    pub filter: Option<String>,
}

/// One KQL query of [`AppInsightsSourceConfig`]. The query should bin by time, e.g.
/// `requests | summarize requests_count = sum(itemCount) by bin(timestamp, 1m), cloud_RoleName`;
/// the polled time range is passed as the API's `timespan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KqlQuery {
    /// The query.
    pub query: String,
    /// The column holding each row's time.
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// Columns holding values; empty: every numeric column.
    #[serde(default)]
    pub value_columns: Vec<String>,
    /// The bin size of the query (ISO 8601), used to align polls and cut backfill requests.
    #[serde(default = "default_ai_interval")]
    pub interval: String,
}

/// App Insights credentials: an API key, or Entra ID client credentials. Each secret may be
/// inline, in a file (`*_file`) or in an environment variable (`*_env`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInsightsAuth {
    /// API key, sent as `X-Api-Key`.
    pub api_key: Option<Secret>,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Entra tenant id (used to build the default token URL).
    pub tenant_id: Option<String>,
    /// Entra app registration (client) id.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<Secret>,
    /// File holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Token endpoint (default `https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`).
    pub token_url: Option<String>,
    /// Token scope (default `https://api.applicationinsights.io/.default`; use
    /// `https://api.loganalytics.io/.default` for workspace queries on api.loganalytics.io).
    pub scope: Option<String>,
}

impl AppInsightsAuth {
    /// Where the API key comes from, if one is configured.
    pub fn api_key(&self) -> Option<SecretSource> {
        SecretSource::of(&self.api_key, &self.api_key_file, &self.api_key_env)
    }

    /// Where the Entra client secret comes from, if one is configured.
    pub fn client_secret(&self) -> Option<SecretSource> {
        SecretSource::of(
            &self.client_secret,
            &self.client_secret_file,
            &self.client_secret_env,
        )
    }
}

/// Where a secret of a source's credentials comes from: inline (a [`Secret`], never shown), a
/// file (read and trimmed at every use, so a rotated secret is picked up) or an environment
/// variable (read at every use). The one reader of the pulling sources' secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// Given inline.
    Inline(Secret),
    /// Read from a file (trimmed) at every use.
    File(PathBuf),
    /// Read from an environment variable at every use.
    Env(String),
}

impl SecretSource {
    /// The first given of `inline`, `file` and `env`.
    pub fn of(
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Option<Self> {
        inline
            .clone()
            .map(Self::Inline)
            .or_else(|| file.clone().map(Self::File))
            .or_else(|| env.clone().map(Self::Env))
    }

    /// The secret's value now.
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::File(p) => std::fs::read_to_string(p)
                .map(|s| Secret::new(s.trim()))
                .map_err(|e| format!("reading secret file {}: {e}", p.display())),
            Self::Env(v) => std::env::var(v)
                .map(Secret::new)
                .map_err(|_| format!("environment variable {v} is not set")),
        }
    }
}

fn default_ai_url() -> String {
    "https://api.applicationinsights.io".into()
}
fn default_ai_poll() -> u64 {
    60
}
fn default_ai_overlap() -> u64 {
    300
}
fn default_ai_lookback() -> u64 {
    3600
}
fn default_ai_timeout() -> u64 {
    60
}
fn default_ai_interval() -> String {
    "PT1M".into()
}
fn default_time_column() -> String {
    "timestamp".into()
}

/// Parses an ISO 8601 duration of weeks, days, hours, minutes and seconds (`PT1M`, `PT1H30M`,
/// `P1D`) with jiff's parser; days are 24 hours; years and months (no fixed length) and zero
/// are refused.
pub fn parse_iso_duration(s: &str) -> Option<std::time::Duration> {
    static PARSER: jiff::fmt::temporal::SpanParser = jiff::fmt::temporal::SpanParser::new();
    let span = PARSER.parse_span(s).ok()?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return None;
    }
    let secs = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .ok()?;
    (secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

impl AppInsightsSourceConfig {
    /// The `app` label.
    pub fn app_label(&self) -> String {
        self.app
            .clone()
            .or_else(|| self.app_id.clone())
            .or_else(|| self.workspace_id.clone())
            .unwrap_or_default()
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
        if self.app_id.is_none() && self.workspace_id.is_none() {
            problems.push(format!(
                "{prefix}: set app_id (metrics and KQL) or workspace_id (KQL only)"
            ));
        }
        if !self.metrics.is_empty() && self.app_id.is_none() {
            problems.push(format!("{prefix}.metrics: the metrics API needs app_id"));
        }
        if self.metrics.is_empty() && self.kql.is_empty() {
            problems.push(format!(
                "{prefix}: list at least one [[…metrics]] or [[…kql]] entry"
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let p = format!("{prefix}.metrics[{i}]");
            if !m.id.contains('/') {
                problems.push(format!(
                    "{p}.id = {:?}: metric ids look like requests/count",
                    m.id
                ));
            }
            if parse_iso_duration(&m.interval).is_none() {
                problems.push(format!(
                    "{p}.interval = {:?}: expected an ISO 8601 duration such as PT1M",
                    m.interval
                ));
            }
            for a in &m.aggregation {
                if !["min", "max", "avg", "sum", "count", "unique"].contains(&a.as_str()) {
                    problems.push(format!(
                        "{p}.aggregation: {a:?} is not one of min, max, avg, sum, count, unique"
                    ));
                }
            }
        }
        for (i, q) in self.kql.iter().enumerate() {
            let p = format!("{prefix}.kql[{i}]");
            if q.query.trim().is_empty() {
                problems.push(format!("{p}.query: must not be empty"));
            }
            if parse_iso_duration(&q.interval).is_none() {
                problems.push(format!(
                    "{p}.interval = {:?}: expected an ISO 8601 duration such as PT1M",
                    q.interval
                ));
            }
        }
        if !(1..=86_400).contains(&self.poll_interval_secs) {
            problems.push(format!(
                "{prefix}.poll_interval_secs = {}: must be between 1 and 86400",
                self.poll_interval_secs
            ));
        }
        if self.overlap_secs > 86_400 {
            problems.push(format!(
                "{prefix}.overlap_secs = {}: must be at most 86400",
                self.overlap_secs
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
    }
}

impl AppInsightsAuth {
    /// Problems with the combination of fields.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        let keys = [
            self.api_key.is_some(),
            self.api_key_file.is_some(),
            self.api_key_env.is_some(),
        ];
        let secrets = [
            self.client_secret.is_some(),
            self.client_secret_file.is_some(),
            self.client_secret_env.is_some(),
        ];
        let n_keys = keys.iter().filter(|b| **b).count();
        let n_secrets = secrets.iter().filter(|b| **b).count();
        let entra = self.client_id.is_some()
            || n_secrets > 0
            || self.tenant_id.is_some()
            || self.token_url.is_some();
        if n_keys > 1 {
            problems.push(format!(
                "{prefix}: set one of api_key, api_key_file, api_key_env"
            ));
        }
        if n_keys == 1 && entra {
            problems.push(format!(
                "{prefix}: use either an API key or Entra ID client credentials, not both"
            ));
        }
        if n_keys == 0 && !entra {
            problems.push(format!(
                "{prefix}: no credentials; set api_key/api_key_file/api_key_env, or tenant_id + client_id + client_secret(_file/_env)"
            ));
        }
        if entra {
            if self.client_id.is_none() {
                problems.push(format!("{prefix}.client_id: required for Entra ID"));
            }
            if n_secrets != 1 {
                problems.push(format!("{prefix}: set exactly one of client_secret, client_secret_file, client_secret_env"));
            }
            if self.tenant_id.is_none() && self.token_url.is_none() {
                problems.push(format!(
                    "{prefix}: set tenant_id (or token_url) for Entra ID"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        let secs = |s: &str| parse_iso_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("PT1M"), Some(60));
        assert_eq!(secs("PT1H30M"), Some(5400));
        assert_eq!(secs("P1D"), Some(86_400));
        assert_eq!(secs("P1DT2H"), Some(93_600));
        assert_eq!(secs("PT30S"), Some(30));
        assert_eq!(secs("P1W"), Some(604_800));
        assert_eq!(
            parse_iso_duration("PT1.5S"),
            Some(std::time::Duration::from_millis(1_500))
        );
        for bad in [
            "1M", "1m", "PT", "P", "PTM", "PT1X", "PT1S1M", "", "P1M", "P1Y", "PT0S",
        ] {
            assert_eq!(secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn appinsights_credentials_must_be_one_kind() {
        let mut p = Vec::new();
        AppInsightsAuth::default().validate("a", &mut p);
        assert!(p[0].contains("no credentials"), "{p:?}");
        p.clear();
        AppInsightsAuth {
            api_key: Some("k".into()),
            client_id: Some("c".into()),
            ..Default::default()
        }
        .validate("a", &mut p);
        assert!(p.iter().any(|m| m.contains("not both")), "{p:?}");
        p.clear();
        AppInsightsAuth {
            client_id: Some("c".into()),
            client_secret_env: Some("S".into()),
            tenant_id: Some("t".into()),
            ..Default::default()
        }
        .validate("a", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }
}
