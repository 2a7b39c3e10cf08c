//! remote_write out: what aiops derives (anomaly scores, expected values and bands, forecasts,
//! incidents) written to Prometheus-compatible receivers — Prometheus with
//! `--web.enable-remote-write-receiver`, VictoriaMetrics, Mimir, Thanos Receive — so that
//! Grafana charts them and alert rules use them.
//!
//! Series arrive from the pipeline through a bounded channel (never waiting: a full channel
//! drops the series and counts them), are batched up to `batch_samples` or `flush_secs`, and
//! each batch is queued on disk ([`super::outbox`]) before the sender delivers it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aiops_models::Secret;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::outbox::Outbox;
use super::proto::{TimeSeries, WriteRequest, encode_write_request};
use crate::IngestError;
use crate::config::SecretSource;

/// One remote_write receiver (`[[outputs.remote_write]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// A name for logs, metrics (`output` label) and the queue's directory.
    pub name: String,
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// `Authorization: Bearer` for the receiver.
    pub bearer_token: Option<Secret>,
    /// The same, read from a file at start.
    pub bearer_token_file: Option<PathBuf>,
    /// `Authorization: Basic` for the receiver instead of a bearer token (Grafana Cloud,
    /// vmauth, a receiver behind a proxy): the user name ...
    pub username: Option<String>,
    /// ... and its password ...
    pub password: Option<Secret>,
    /// ... or the password read from a file at start (as the sources' `auth` takes them).
    pub password_file: Option<PathBuf>,
    /// Extra headers (e.g. `X-Scope-OrgID` for Mimir).
    pub headers: BTreeMap<String, String>,
    /// Series selectors of the scored series whose derived series are written (none: every
    /// series, up to `max_series`).
    pub select: Vec<String>,
    /// Most source series written (the first ones seen that match; the rest are counted).
    pub max_series: usize,
    /// Write each selected series' anomaly score, continuous score, expected value and band.
    pub anomaly: bool,
    /// Write each scaling target's load, forecast quantiles, served value and replicas.
    pub scaling: bool,
    /// Write the number of open incidents.
    pub incidents: bool,
    /// Samples per request.
    pub batch_samples: usize,
    /// A partial batch is queued after this many seconds.
    pub flush_secs: u64,
    /// Bytes the queue on disk may hold; past it the oldest batches are dropped (counted).
    pub max_queue_bytes: u64,
    /// A batch queued longer than this is dropped (counted): receivers refuse old samples.
    pub max_age_secs: u64,
    /// Per request.
    pub timeout_secs: u64,
    /// Longest wait between retries (`Retry-After` is honoured).
    pub max_backoff_secs: u64,
    /// The queue's directory (default: `<data_dir>/outputs/<name>`).
    pub queue_dir: Option<PathBuf>,
    /// `"1.0"` (default: every receiver takes it) or `"2.0"` (interned labels, smaller
    /// requests), which falls back to 1.0 when the receiver does not take it.
    pub protocol: Protocol,
}

/// The remote_write version an output sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    #[default]
    #[serde(rename = "1.0")]
    V1,
    /// `io.prometheus.write.v2.Request`, falling back to 1.0.
    #[serde(rename = "2.0")]
    V2,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            url: String::new(),
            bearer_token: None,
            bearer_token_file: None,
            username: None,
            password: None,
            password_file: None,
            headers: BTreeMap::new(),
            select: Vec::new(),
            max_series: 10_000,
            anomaly: true,
            scaling: true,
            incidents: true,
            batch_samples: 5_000,
            flush_secs: 5,
            max_queue_bytes: 256 << 20,
            max_age_secs: 3_600,
            timeout_secs: 30,
            max_backoff_secs: 60,
            queue_dir: None,
            protocol: Protocol::V1,
        }
    }
}

impl OutputConfig {
    /// Every problem, prefixed with where it is.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            problems.push(format!(
                "{prefix}.url = {:?}: an http:// or https:// URL",
                self.url
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(format!(
                "{prefix}.name = {:?}: letters, digits, _ and - only (it names a directory)",
                self.name
            ));
        }
        // The same combinations as a source's credentials allow.
        crate::config::Auth {
            bearer_token: self.bearer_token.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: self.password_file.clone(),
        }
        .validate(prefix, problems);
        if let Some(user) = &self.username
            && (user.is_empty() || user.contains(':'))
        {
            problems.push(format!(
                "{prefix}.username = {user:?}: not empty, no ':' (basic auth)"
            ));
        }
        for s in &self.select {
            if let Err(e) = s.parse::<aiops_models::Selector>() {
                problems.push(format!("{prefix}.select: {s:?}: {e}"));
            }
        }
        for (key, v, lo, hi) in [
            ("batch_samples", self.batch_samples as u64, 1, 1_000_000),
            ("flush_secs", self.flush_secs, 1, 3_600),
            ("max_age_secs", self.max_age_secs, 10, 30 * 86_400),
            ("timeout_secs", self.timeout_secs, 1, 600),
            ("max_backoff_secs", self.max_backoff_secs, 1, 3_600),
            ("max_series", self.max_series as u64, 1, 10_000_000),
            ("max_queue_bytes", self.max_queue_bytes, 1 << 20, 1 << 40),
        ] {
            if !(lo..=hi).contains(&v) {
                problems.push(format!(
                    "{prefix}.{key} = {v}: must be between {lo} and {hi}"
                ));
            }
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                problems.push(format!("{prefix}.headers: {k:?} is not a valid header"));
            }
        }
    }

    /// The receiver's credentials (`Authorization`), read now: a bearer token, or a user name
    /// with its password. Files are read at every call (as a source's are), so a rotated
    /// token or password is used from the next request on.
    pub(crate) fn credentials(&self) -> Result<Option<Credentials>, String> {
        if let Some(token) = SecretSource::of(&self.bearer_token, &self.bearer_token_file, &None) {
            return token.read().map(|t| Some(Credentials::Bearer(t)));
        }
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = SecretSource::of(&self.password, &self.password_file, &None)
            .map(|p| p.read())
            .transpose()?;
        Ok(Some(Credentials::Basic(user.clone(), password)))
    }
}

/// What an output sends as `Authorization`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Credentials {
    /// `Bearer <token>`.
    Bearer(Secret),
    /// `Basic base64(user:password)`.
    Basic(String, Option<Secret>),
}

/// The `aiops_output_*` metric families, shared by every output.
#[derive(Debug, Clone, Default)]
pub struct OutputFamilies {
    batches: Family<Vec<(String, String)>, Counter>,
    samples_sent: Family<Vec<(String, String)>, Counter>,
    samples_dropped: Family<Vec<(String, String)>, Counter>,
    retries: Family<Vec<(String, String)>, Counter>,
    queue_batches: Family<Vec<(String, String)>, Gauge>,
    queue_bytes: Family<Vec<(String, String)>, Gauge>,
    last_sent: Family<Vec<(String, String)>, Gauge>,
    series_refused: Family<Vec<(String, String)>, Counter>,
    wire_version: Family<Vec<(String, String)>, Gauge>,
}

impl OutputFamilies {
    /// Registers the families in `registry` (as `aiops_output_…`).
    pub fn register(registry: &mut Registry) -> Self {
        let f = Self::default();
        let r = registry.sub_registry_with_prefix("aiops_output");
        r.register("batches", "Batches that left the queue, by output and result (sent, dropped_too_old, dropped_rejected, dropped_queue_full, dropped_channel_full).", f.batches.clone());
        r.register(
            "samples_sent",
            "Samples the receiver accepted.",
            f.samples_sent.clone(),
        );
        r.register(
            "samples_dropped",
            "Samples given up (see batches_total's result).",
            f.samples_dropped.clone(),
        );
        r.register(
            "retries",
            "Deliveries retried (408, 429, 5xx, network).",
            f.retries.clone(),
        );
        r.register(
            "queue_batches",
            "Batches queued on disk.",
            f.queue_batches.clone(),
        );
        r.register(
            "queue_bytes",
            "Bytes queued on disk.",
            f.queue_bytes.clone(),
        );
        r.register(
            "last_sent_timestamp_seconds",
            "When the receiver last accepted a batch (Unix seconds).",
            f.last_sent.clone(),
        );
        r.register(
            "remote_write_version",
            "The remote_write version the output sends: 2, or 1 (configured, or fallen back to because the receiver does not take 2.0).",
            f.wire_version.clone(),
        );
        r.register(
            "series_not_selected",
            "Source series left out because max_series was reached.",
            f.series_refused.clone(),
        );
        f
    }

    /// Handles for the output `name`.
    pub fn output(&self, name: &str) -> OutputMetrics {
        OutputMetrics {
            families: self.clone(),
            name: name.to_owned(),
        }
    }
}

/// One output's metrics.
#[derive(Debug, Clone)]
pub struct OutputMetrics {
    families: OutputFamilies,
    name: String,
}

impl OutputMetrics {
    /// Metrics not in any registry (tests).
    pub fn unregistered(name: &str) -> Self {
        OutputFamilies::default().output(name)
    }

    fn l(&self) -> Vec<(String, String)> {
        vec![("output".into(), self.name.clone())]
    }

    pub(crate) fn batch(&self, result: &str) {
        let mut l = self.l();
        l.push(("result".into(), result.into()));
        self.families.batches.get_or_create(&l).inc();
    }

    pub(crate) fn sent(&self, samples: u64) {
        self.families
            .samples_sent
            .get_or_create(&self.l())
            .inc_by(samples);
    }

    /// Counts samples given up.
    pub fn dropped_samples(&self, samples: u64) {
        self.families
            .samples_dropped
            .get_or_create(&self.l())
            .inc_by(samples);
    }

    /// Counts a source series left out (max_series).
    pub fn series_not_selected(&self) {
        self.families.series_refused.get_or_create(&self.l()).inc();
    }

    pub(crate) fn wire_version(&self, v: i64) {
        self.families.wire_version.get_or_create(&self.l()).set(v);
    }

    /// The remote_write version sent now (tests).
    pub fn wire_version_now(&self) -> i64 {
        self.families.wire_version.get_or_create(&self.l()).get()
    }

    pub(crate) fn retry(&self) {
        self.families.retries.get_or_create(&self.l()).inc();
    }

    pub(crate) fn queue(&self, batches: i64, bytes: i64) {
        self.families
            .queue_batches
            .get_or_create(&self.l())
            .set(batches);
        self.families
            .queue_bytes
            .get_or_create(&self.l())
            .set(bytes);
    }

    pub(crate) fn delivered_at(&self, t: SystemTime) {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.families.last_sent.get_or_create(&self.l()).set(secs);
    }

    /// Samples delivered so far (tests).
    pub fn sent_total(&self) -> u64 {
        self.families.samples_sent.get_or_create(&self.l()).get()
    }

    /// Samples dropped so far (tests).
    pub fn dropped_total(&self) -> u64 {
        self.families.samples_dropped.get_or_create(&self.l()).get()
    }

    /// Retries so far (tests).
    pub fn retries_total(&self) -> u64 {
        self.families.retries.get_or_create(&self.l()).get()
    }
}

/// Where the pipeline hands series to one output. Cheap to clone; never waits.
#[derive(Debug, Clone)]
pub struct OutputSender {
    tx: mpsc::Sender<Vec<TimeSeries>>,
    metrics: OutputMetrics,
}

impl OutputSender {
    /// Hands `series` over, or drops and counts them when the output is behind.
    pub fn send(&self, series: Vec<TimeSeries>) {
        if series.is_empty() {
            return;
        }
        if let Err(e) = self.tx.try_send(series) {
            let lost = match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
            };
            self.metrics
                .dropped_samples(lost.iter().map(|t| t.samples.len() as u64).sum());
            self.metrics.batch("dropped_channel_full");
        }
    }

    /// The output's metrics (to count series left out).
    pub fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
}

/// Starts output `cfg` (token file read, queue opened under `data_dir` unless `queue_dir`):
/// the batcher and the sender run until `cancel`; the batcher queues what it holds first.
pub fn start(
    cfg: OutputConfig,
    data_dir: &Path,
    families: &OutputFamilies,
    cancel: CancellationToken,
) -> Result<(OutputSender, Vec<tokio::task::JoinHandle<()>>), IngestError> {
    // The credentials' files are read at every request; a missing one is named now.
    cfg.credentials().map_err(|reason| {
        IngestError::Pipeline(format!("outputs.remote_write {}: {reason}", cfg.name))
    })?;
    let dir = cfg
        .queue_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("outputs").join(&cfg.name));
    let metrics = families.output(&cfg.name);
    let outbox = std::sync::Arc::new(
        Outbox::open(&dir, cfg.max_queue_bytes, metrics.clone()).map_err(|e| IngestError::Io {
            at: format!("outputs.remote_write {}: queue {}", cfg.name, dir.display()),
            source: e,
        })?,
    );
    let http = crate::http_client()
        .build()
        .map_err(|e| IngestError::Pipeline(format!("HTTP client: {e}")))?;
    let (tx, rx) = mpsc::channel(1024);
    info!(output = %cfg.name, url = %cfg.url, queue = %dir.display(), "Writing derived series with remote_write.");
    let batcher = tokio::spawn(run_batcher(rx, outbox.clone(), cfg.clone(), cancel.clone()));
    let sender = tokio::spawn(super::outbox::run_sender(outbox, cfg, http, cancel));
    Ok((OutputSender { tx, metrics }, vec![batcher, sender]))
}

async fn run_batcher(
    mut rx: mpsc::Receiver<Vec<TimeSeries>>,
    outbox: std::sync::Arc<Outbox>,
    cfg: OutputConfig,
    cancel: CancellationToken,
) {
    let mut pending: Vec<TimeSeries> = Vec::new();
    let mut samples = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.flush_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            got = rx.recv() => match got {
                Some(series) => {
                    samples += series.iter().map(|t| t.samples.len()).sum::<usize>();
                    pending.extend(series);
                    samples >= cfg.batch_samples
                }
                None => true,
            },
            _ = tick.tick() => !pending.is_empty(),
            // What is held is queued before stopping: the next start sends it.
            _ = cancel.cancelled() => {
                while let Ok(series) = rx.try_recv() {
                    samples += series.iter().map(|t| t.samples.len()).sum::<usize>();
                    pending.extend(series);
                }
                queue(&outbox, &cfg, std::mem::take(&mut pending), samples).await;
                return;
            }
        };
        if flush && !pending.is_empty() {
            queue(&outbox, &cfg, std::mem::take(&mut pending), samples).await;
            samples = 0;
        }
        if rx.is_closed() && rx.is_empty() && pending.is_empty() {
            return;
        }
    }
}

/// Encodes and queues one batch off the async threads.
async fn queue(
    outbox: &std::sync::Arc<Outbox>,
    cfg: &OutputConfig,
    series: Vec<TimeSeries>,
    samples: usize,
) {
    if series.is_empty() {
        return;
    }
    let q = outbox.clone();
    let done = tokio::task::spawn_blocking(move || {
        let body = encode_write_request(&WriteRequest {
            timeseries: series,
            metadata: Vec::new(),
        });
        q.push(&body, samples as u64)
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        error!(output = %cfg.name, "Cannot queue a remote_write batch on disk; dropped.");
        outbox.metrics_dropped(samples as u64);
    }
}

impl Outbox {
    fn metrics_dropped(&self, samples: u64) {
        self.metrics().dropped_samples(samples);
        self.metrics().batch("dropped_queue_error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of an output to `http://x/write` changed by `f`.
    fn problems(f: impl FnOnce(&mut OutputConfig)) -> Vec<String> {
        let mut cfg = OutputConfig {
            url: "http://x/write".into(),
            ..OutputConfig::default()
        };
        f(&mut cfg);
        let mut problems = Vec::new();
        cfg.validate("o", &mut problems);
        problems
    }

    #[test]
    fn credentials_are_refused_in_the_combinations_a_sources_are() {
        let basic = |c: &mut OutputConfig| {
            c.username = Some("aiops".into());
            c.password = Some("p".into());
        };
        assert_eq!(problems(basic), Vec::<String>::new());
        let bad = [
            (
                problems(|c| {
                    basic(c);
                    c.bearer_token = Some("t".into());
                }),
                "not both",
            ),
            (
                problems(|c| {
                    basic(c);
                    c.password_file = Some("/p".into());
                }),
                "not both",
            ),
            (
                problems(|c| c.password = Some("p".into())),
                "username: required",
            ),
            (
                problems(|c| {
                    basic(c);
                    c.username = Some("a:b".into());
                }),
                "no ':'",
            ),
        ];
        for (problems, expected) in bad {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:?}"
            );
        }
    }
}
