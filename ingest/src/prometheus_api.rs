//! Pulling from a Prometheus HTTP API: `query_range` in chunks of at most
//! [`MAX_POINTS_PER_REQUEST`] points per series, for backfill over a range and for live polling.
//!
//! Requests that may succeed later (network errors, timeouts, 429, 5xx) are retried with
//! exponential backoff and jitter, honouring `Retry-After`; bad queries (400, 422) and bad
//! credentials (401, 403) fail at once with the server's message. In `serve`, a failing upstream
//! is reported in logs, `/readyz` and metrics, and polling goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aiops_models::{SampleBatch, SampleBatchBuilder, Secret, SeriesCatalog, SeriesMeta, Source};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::http;
use crate::transport::BatchSender;
use crate::{
    Auth, IngestError, IngestMetrics, PrometheusSourceConfig, PullSummary, SecretSource,
    SourceStates,
};

/// Points per series per request; Prometheus refuses more than 11,000.
pub const MAX_POINTS_PER_REQUEST: i64 = 10_000;

const METRIC_SOURCE: &str = "prometheus_pull";

/// A client of one upstream.
#[derive(Debug, Clone)]
pub struct PromClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    headers: BTreeMap<String, String>,
    max_retries: u32,
    metrics: IngestMetrics,
}

/// One series of a range query.
#[derive(Debug, Deserialize)]
pub struct RangeSeries {
    /// Its labels, `__name__` included when the query keeps it.
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs.
    #[serde(default)]
    pub values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<MatrixData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct MatrixData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RangeSeries>,
}

impl PromClient {
    /// A client for `cfg`.
    pub fn new(cfg: &PrometheusSourceConfig, metrics: IngestMetrics) -> Result<Self, IngestError> {
        let http = http::source_client(&cfg.name, cfg.timeout_secs)?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_owned(),
            auth: cfg.auth.clone(),
            headers: cfg.headers.clone(),
            max_retries: cfg.max_retries,
            metrics,
        })
    }

    fn upstream_err(&self, query: &str, reason: String, retryable: bool) -> IngestError {
        IngestError::Upstream {
            url: self.base.clone(),
            query: query.to_owned(),
            reason,
            retryable,
        }
    }

    fn request(
        &self,
        query: &str,
        start_s: i64,
        end_s: i64,
        step_s: u64,
    ) -> Result<reqwest::RequestBuilder, IngestError> {
        let mut req = self
            .http
            .post(format!("{}/api/v1/query_range", self.base))
            .form(&[
                ("query", query.to_owned()),
                ("start", start_s.to_string()),
                ("end", end_s.to_string()),
                ("step", step_s.to_string()),
            ]);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let read = |source: SecretSource| {
            source
                .read()
                .map_err(|reason| self.upstream_err(query, reason, false))
        };
        if let Some(token) = self.auth.bearer() {
            req = req.bearer_auth(read(token)?.expose());
        } else if let Some(user) = &self.auth.username {
            let pass = self.auth.password().map(read).transpose()?;
            req = req.basic_auth(user, pass.as_ref().map(Secret::expose));
        }
        Ok(req)
    }

    /// One `query_range` call, with retries. `start_s..=end_s` must hold at most
    /// [`MAX_POINTS_PER_REQUEST`] steps.
    pub async fn query_range(
        &self,
        query: &str,
        start_s: i64,
        end_s: i64,
        step_s: u64,
    ) -> Result<Vec<RangeSeries>, IngestError> {
        let build = || {
            std::future::ready(
                self.request(query, start_s, end_s, step_s)
                    .map_err(|e| http::Failure::local(e.to_string())),
            )
        };
        match http::send_with_retry(build, self.max_retries, &self.metrics, METRIC_SOURCE, query)
            .await
        {
            Ok(answer) => self.parse(query, &answer.body),
            Err(f) => {
                let detail = match f.status {
                    Some(status) => error_message(status, &f.body),
                    None => f.message.clone(),
                };
                Err(self.upstream_err(query, f.describe(&detail), f.retryable))
            }
        }
    }

    fn parse(&self, query: &str, body: &[u8]) -> Result<Vec<RangeSeries>, IngestError> {
        let env: Envelope = serde_json::from_slice(body).map_err(|e| {
            self.upstream_err(
                query,
                format!("response is not the Prometheus API envelope: {e}"),
                false,
            )
        })?;
        if env.status != "success" {
            return Err(self.upstream_err(
                query,
                format!(
                    "{}: {}",
                    env.error_type.unwrap_or_default(),
                    env.error.unwrap_or_default()
                ),
                false,
            ));
        }
        let data = env
            .data
            .ok_or_else(|| self.upstream_err(query, "response has no data".into(), false))?;
        if data.result_type != "matrix" {
            return Err(self.upstream_err(
                query,
                format!("expected a matrix, got {}", data.result_type),
                false,
            ));
        }
        Ok(data.result)
    }
}

fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        error: Option<String>,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(E {
            error: Some(e),
            error_type,
        }) => format!("HTTP {status}: {}: {e}", error_type.unwrap_or_default()),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
            format!("HTTP {status}: {}", text.trim())
        }
    }
}

/// Turns range-query series into a batch, marking series the catalog has not seen as new.
pub fn to_batch(series: Vec<RangeSeries>, catalog: &SeriesCatalog) -> SampleBatch {
    let n = series.iter().map(|s| s.values.len()).sum();
    let mut b = SampleBatchBuilder::with_capacity(n);
    for s in series {
        let metric = s.metric.get("__name__").cloned().unwrap_or_default();
        let meta = SeriesMeta::new(Source::Prometheus, metric, s.metric);
        let id = meta.id;
        if !catalog.contains(id) {
            b.push_series(Arc::new(meta));
        }
        for (t, v) in s.values {
            let Ok(v) = v.parse::<f64>() else { continue };
            b.push(id, (t * 1000.0).round() as i64, v);
        }
    }
    b.finish()
}

/// The `(start, end)` seconds of each request that covers `start_s..=end_s` at `step_s`.
pub fn chunks(start_s: i64, end_s: i64, step_s: u64) -> Vec<(i64, i64)> {
    let step = step_s as i64;
    let span = step * (MAX_POINTS_PER_REQUEST - 1);
    let mut out = Vec::new();
    let mut s = start_s;
    while s <= end_s {
        let e = (s + span).min(end_s);
        out.push((s, e));
        s = e + step;
    }
    out
}

/// A time range to pull, Unix seconds, both ends included, at a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRange {
    /// First evaluation time.
    pub start_s: i64,
    /// Last evaluation time.
    pub end_s: i64,
    /// Resolution.
    pub step_s: u64,
}

/// Pulls `queries` over `start_s..=end_s` and sends each chunk through `sink`, waiting until it is
/// durable. `on_chunk(done, total)` reports progress.
pub async fn backfill(
    client: &PromClient,
    queries: &[String],
    range: PullRange,
    sink: &BatchSender,
    catalog: &SeriesCatalog,
    mut on_chunk: impl FnMut(usize, usize),
) -> Result<PullSummary, IngestError> {
    let PullRange {
        start_s,
        end_s,
        step_s,
    } = range;
    let windows = chunks(start_s, end_s, step_s);
    let total = windows.len() * queries.len();
    let mut summary = PullSummary::default();
    let mut seen = std::collections::HashSet::new();
    let mut done = 0;
    for q in queries {
        for &(s, e) in &windows {
            let series = client.query_range(q, s, e, step_s).await?;
            summary.requests += 1;
            let batch = to_batch(series, catalog);
            seen.extend(batch.series_ids().iter().copied());
            summary.samples += batch.len() as u64;
            client.metrics.received(METRIC_SOURCE, batch.len() as u64);
            if !batch.is_empty() {
                sink.send_durable(batch)
                    .await
                    .map_err(|e| IngestError::Pipeline(e.to_string()))?;
            }
            done += 1;
            on_chunk(done, total);
        }
    }
    summary.series = seen.len();
    Ok(summary)
}

/// Polls `cfg`'s selectors every `poll_interval_secs` until `cancel`, pulling from where the last
/// successful poll ended. A failed poll is reported and retried at the next tick from the same
/// point, so a short outage leaves no gap.
pub async fn run_live(
    cfg: PrometheusSourceConfig,
    client: PromClient,
    sink: BatchSender,
    catalog: Arc<SeriesCatalog>,
    states: SourceStates,
    cancel: CancellationToken,
) {
    let step = cfg.step_secs as i64;
    let now_s = || jiff::Timestamp::now().as_second();
    let align = |t: i64| t - t.rem_euclid(step);
    let mut cursors: Vec<i64> =
        vec![align(now_s() - cfg.lookback_secs as i64); cfg.selectors.len()];
    states.update("prometheus", &cfg.name, |s| s.healthy = true);
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.poll_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(source = %cfg.name, url = %cfg.url, selectors = cfg.selectors.len(), "Polling Prometheus.");
    loop {
        tokio::select! {
            // Dropping the tick loses nothing: the cursor only moves after a durable poll.
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let end = align(now_s());
        for (q, cursor) in cfg.selectors.iter().zip(cursors.iter_mut()) {
            if *cursor > end {
                continue;
            }
            let range = PullRange {
                start_s: *cursor,
                end_s: end,
                step_s: cfg.step_secs,
            };
            let pull = backfill(
                &client,
                std::slice::from_ref(q),
                range,
                &sink,
                &catalog,
                |_, _| {},
            );
            let res = tokio::select! {
                // Cancelled mid-poll: the cursor stays, nothing acknowledged is lost.
                _ = cancel.cancelled() => return,
                r = pull => r,
            };
            match res {
                Ok(sum) => {
                    *cursor = end + step;
                    states.ok("prometheus", &cfg.name, sum.samples);
                }
                Err(e) => {
                    warn!(source = %cfg.name, error = %e, "Poll failed; will retry from the same point.");
                    states.failed("prometheus", &cfg.name, e.to_string());
                }
            }
        }
    }
    info!(source = %cfg.name, "Stopped polling.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_point_limit_and_cover_the_range() {
        let c = chunks(0, 7 * 86_400, 15);
        assert!(c.len() > 1);
        assert_eq!(c[0].0, 0);
        assert_eq!(c.last().map(|x| x.1), Some(7 * 86_400));
        for w in c.windows(2) {
            assert_eq!(w[1].0, w[0].1 + 15);
        }
        for (s, e) in c {
            let points = (e - s) / 15 + 1;
            assert!(points <= MAX_POINTS_PER_REQUEST, "{points} points");
        }
        assert_eq!(chunks(10, 10, 15), vec![(10, 10)]);
        assert!(chunks(20, 10, 15).is_empty());
    }

    #[test]
    fn to_batch_builds_ids_like_remote_write() {
        let series = vec![RangeSeries {
            metric: [("__name__", "up"), ("job", "node")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            values: vec![(1.5, "1".into()), (3.0, "NaN".into()), (4.0, "junk".into())],
        }];
        let b = to_batch(series, &SeriesCatalog::new());
        assert_eq!(b.timestamps(), &[1500, 3000]);
        let meta = &b.new_series[0];
        assert_eq!(meta.metric, "up");
        assert_eq!(
            meta.id,
            SeriesMeta::new(Source::Prometheus, "up", [("job".into(), "node".into())]).id
        );
    }

    /// A local stand-in for an upstream behind a proxy: fails twice with 503, then checks the
    /// credentials and headers and answers a matrix.
    #[tokio::test]
    async fn retries_5xx_then_sends_auth_and_headers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/prefix/api/v1/query_range",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], String::new());
                    }
                    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cret")
                        && headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()) == Some("tenant-1")
                        && body.contains("query=up")
                        && body.contains("step=15");
                    if !ok {
                        return (StatusCode::UNAUTHORIZED, [("retry-after", "0")], "unauthorized".into());
                    }
                    let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"1"],[16,"0"]]}]}}"#;
                    (StatusCode::OK, [("retry-after", "0")], matrix.to_owned())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("write token");
        let mut cfg =
            PrometheusSourceConfig::new("t", format!("http://{addr}/prefix/"), vec!["up".into()]);
        cfg.auth.bearer_token_file = Some(token);
        cfg.headers
            .insert("X-Scope-OrgID".into(), "tenant-1".into());
        let client = PromClient::new(&cfg, IngestMetrics::unregistered()).expect("client");
        let got = client
            .query_range("up", 1, 16, 15)
            .await
            .expect("succeeds after retries");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(got[0].values.len(), 2);

        // A non-retryable answer fails at once, with the server's words.
        cfg.auth.bearer_token_file = None;
        cfg.auth.bearer_token = Some("wrong".into());
        let client = PromClient::new(&cfg, IngestMetrics::unregistered()).expect("client");
        let err = client
            .query_range("up", 1, 16, 15)
            .await
            .expect_err("unauthorized");
        assert!(
            matches!(
                &err,
                IngestError::Upstream {
                    retryable: false,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("401") && err.to_string().contains("unauthorized"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn unreachable_upstream_fails_after_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut cfg =
            PrometheusSourceConfig::new("t", format!("http://127.0.0.1:{port}"), vec!["up".into()]);
        cfg.max_retries = 1;
        let client = PromClient::new(&cfg, IngestMetrics::unregistered()).expect("client");
        let err = client
            .query_range("up", 1, 16, 15)
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(
                &err,
                IngestError::Upstream {
                    retryable: true,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("after 2 attempts"), "{err}");
    }

    #[test]
    fn error_message_uses_the_api_envelope() {
        let m = error_message(
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        );
        assert!(m.contains("bad_data: parse error"), "{m}");
        let m = error_message(StatusCode::BAD_GATEWAY, b"upstream down");
        assert!(m.contains("upstream down"), "{m}");
    }
}
