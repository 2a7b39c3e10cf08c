//! Azure Application Insights: standard and custom metrics through
//! `GET /v1/apps/{appId}/metrics/{metricId}`, and KQL through `/v1/apps/{appId}/query` or
//! `/v1/workspaces/{workspaceId}/query`, live (polled with an overlap window) and in backfill.
//!
//! Responses become [`SampleBatch`]es of source `appinsights` with series named as
//! [`naming`] describes, so they share the archive, the API and (later) detection with
//! Prometheus series. Faults follow [`crate::http`]: 429 honours `Retry-After`, 5xx and
//! timeouts are retried with backoff and jitter, and any other 4xx ends in an error naming the
//! app, the metric or query, and the server's message.

mod auth;
pub mod naming;
pub mod parse;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aiops_models::{SampleBatch, SampleBatchBuilder, SeriesCatalog, SeriesId, SeriesMeta, Source};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use auth::{Credentials, EntraToken};
pub use parse::Point;

use crate::http::{self, Failure};
use crate::transport::BatchSender;
use crate::{
    AppInsightsAuth, AppInsightsMetric, AppInsightsSourceConfig, IngestError, IngestMetrics,
    KqlQuery, PullSummary, SecretSource, SourceStates, parse_iso_duration,
};

const KIND: &str = "appinsights";
/// Buckets per series per request; backfill cuts ranges so that no answer holds more.
pub const MAX_BUCKETS_PER_REQUEST: i64 = 1440;

/// What one source pulls: a metric or a KQL query.
#[derive(Debug, Clone)]
pub enum Item {
    /// A metric of the metrics API.
    Metric(AppInsightsMetric),
    /// A KQL query.
    Kql(KqlQuery),
}

impl Item {
    /// Bucket size in ms.
    pub fn interval_ms(&self) -> i64 {
        let iso = match self {
            Item::Metric(m) => &m.interval,
            Item::Kql(q) => &q.interval,
        };
        parse_iso_duration(iso).map_or(60_000, |d| d.as_millis() as i64)
    }

    /// For messages: `metric requests/count` or `query "requests | …"`.
    pub fn describe(&self) -> String {
        match self {
            Item::Metric(m) => format!("metric {}", m.id),
            Item::Kql(q) => {
                let short: String = q.query.chars().take(120).collect();
                format!("query {short:?}")
            }
        }
    }
}

/// The items of a source config, metrics first.
pub fn items(cfg: &AppInsightsSourceConfig) -> Vec<Item> {
    cfg.metrics
        .iter()
        .cloned()
        .map(Item::Metric)
        .chain(cfg.kql.iter().cloned().map(Item::Kql))
        .collect()
}

/// A client of one App Insights resource.
#[derive(Debug, Clone)]
pub struct AppInsightsClient {
    http: reqwest::Client,
    base: String,
    app_id: Option<String>,
    workspace_id: Option<String>,
    app_label: String,
    creds: Arc<Credentials>,
    max_retries: u32,
    metrics: IngestMetrics,
}

fn credentials(auth: &AppInsightsAuth) -> Credentials {
    if let Some(key) = auth.api_key() {
        return Credentials::ApiKey(key);
    }
    let token_url = auth.token_url.clone().unwrap_or_else(|| {
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            auth.tenant_id.as_deref().unwrap_or("common")
        )
    });
    Credentials::Entra(EntraToken::new(
        token_url,
        auth.client_id.clone().unwrap_or_default(),
        auth.client_secret()
            .unwrap_or(SecretSource::Inline(aiops_models::Secret::new(""))),
        auth.scope
            .clone()
            .unwrap_or_else(|| "https://api.applicationinsights.io/.default".into()),
    ))
}

/// The words of an App Insights error body:
/// `{"error":{"code":"BadArgumentError","message":"…","innererror":{"code":"SyntaxError","message":"…"}}}`.
fn server_words(status: reqwest::StatusCode, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    let mut s = format!("HTTP {status}");
    if let Some(code) = e["code"].as_str() {
        s.push_str(&format!(": {code}"));
    }
    if let Some(msg) = e["message"].as_str() {
        s.push_str(&format!(": {msg}"));
    }
    let inner = &e["innererror"];
    if let Some(m) = inner["message"].as_str() {
        s.push_str(&format!(
            " ({}: {m})",
            inner["code"].as_str().unwrap_or("inner")
        ));
    }
    if e.is_null() && !body.is_empty() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        s.push_str(&format!(": {}", text.trim()));
    }
    s
}

fn timespan(start_ms: i64, end_ms: i64) -> String {
    let t = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    format!("{}/{}", t(start_ms), t(end_ms))
}

impl AppInsightsClient {
    /// A client for `cfg`.
    pub fn new(cfg: &AppInsightsSourceConfig, metrics: IngestMetrics) -> Result<Self, IngestError> {
        let http = http::source_client(&cfg.name, cfg.timeout_secs)?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_owned(),
            app_id: cfg.app_id.clone(),
            workspace_id: cfg.workspace_id.clone(),
            app_label: cfg.app_label(),
            creds: Arc::new(credentials(&cfg.auth)),
            max_retries: cfg.max_retries,
            metrics,
        })
    }

    fn app(&self) -> String {
        self.app_id
            .clone()
            .or_else(|| self.workspace_id.clone())
            .unwrap_or_default()
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        match &*self.creds {
            Credentials::ApiKey(secret) => {
                Ok(req.header("x-api-key", secret.read().map_err(Failure::local)?.expose()))
            }
            Credentials::Entra(t) => {
                Ok(req.bearer_auth(t.token(&self.http, self.max_retries, &self.metrics).await?))
            }
        }
    }

    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, IngestError> {
        let build = || async { self.authorize(make()).await };
        match http::send_with_retry(build, self.max_retries, &self.metrics, KIND, what).await {
            Ok(answer) => Ok(answer.body),
            Err(f) => {
                if let (Some(401 | 403), Credentials::Entra(t)) =
                    (f.status.map(|s| s.as_u16()), &*self.creds)
                {
                    // The token may have been revoked or lack access: the next attempt fetches anew.
                    t.invalidate().await;
                }
                let detail = match f.status {
                    Some(status) => server_words(status, &f.body),
                    None => f.message.clone(),
                };
                Err(IngestError::AppInsights {
                    app: self.app(),
                    what: what.to_owned(),
                    reason: f.describe(&detail),
                    retryable: f.retryable,
                })
            }
        }
    }

    /// Points of `m` over `start_ms..end_ms`; partial buckets are left out.
    pub async fn metric(
        &self,
        m: &AppInsightsMetric,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Point>, IngestError> {
        let what = format!("metric {}", m.id);
        let app_id = self
            .app_id
            .clone()
            .ok_or_else(|| IngestError::AppInsights {
                app: self.app(),
                what: what.clone(),
                reason: "the metrics API needs app_id".into(),
                retryable: false,
            })?;
        let url = format!("{}/v1/apps/{app_id}/metrics/{}", self.base, m.id);
        let mut params: Vec<(&str, String)> = vec![
            ("timespan", timespan(start_ms, end_ms)),
            ("interval", m.interval.clone()),
        ];
        if !m.aggregation.is_empty() {
            params.push(("aggregation", m.aggregation.join(",")));
        }
        if !m.segment.is_empty() {
            params.push(("segment", m.segment.join(",")));
        }
        if let Some(top) = m.top {
            params.push(("top", top.to_string()));
        }
        if let Some(f) = &m.filter {
            params.push(("filter", f.clone()));
        }
        let body = self
            .send(&what, || self.http.get(&url).query(&params))
            .await?;
        let interval = Item::Metric(m.clone()).interval_ms();
        parse::metrics_response(&body, &m.id, Some(interval), |agg| {
            naming::metric_name(&m.id, agg)
        })
        .map_err(|reason| IngestError::AppInsights {
            app: self.app(),
            what,
            reason,
            retryable: false,
        })
    }

    /// Points of the KQL query `q` over `start_ms..end_ms`.
    pub async fn kql(
        &self,
        q: &KqlQuery,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Point>, IngestError> {
        let what = Item::Kql(q.clone()).describe();
        let url = match (&self.workspace_id, &self.app_id) {
            (Some(ws), _) => format!("{}/v1/workspaces/{ws}/query", self.base),
            (None, Some(app)) => format!("{}/v1/apps/{app}/query", self.base),
            (None, None) => unreachable!("validated: app_id or workspace_id is set"),
        };
        let body = serde_json::json!({"query": q.query, "timespan": timespan(start_ms, end_ms)});
        let resp = self
            .send(&what, || self.http.post(&url).json(&body))
            .await?;
        parse::kql_response(
            &resp,
            &q.time_column,
            &q.value_columns,
            naming::kql_metric_name,
        )
        .map_err(|reason| IngestError::AppInsights {
            app: self.app(),
            what,
            reason,
            retryable: false,
        })
    }

    /// Points of any item.
    pub async fn fetch(
        &self,
        item: &Item,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Point>, IngestError> {
        match item {
            Item::Metric(m) => self.metric(m, start_ms, end_ms).await,
            Item::Kql(q) => self.kql(q, start_ms, end_ms).await,
        }
    }

    /// The series meta of a point: dimension names in snake case, plus `app`.
    pub fn meta(&self, p: &Point) -> SeriesMeta {
        let labels = p
            .labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (naming::snake(k), v.clone()))
            .chain([("app".to_owned(), self.app_label.clone())]);
        SeriesMeta::new(Source::AppInsights, p.metric.clone(), labels)
    }
}

/// Turns points into a batch, announcing series `catalog` does not know yet.
fn to_batch(points: &[(SeriesMeta, i64, f64)], catalog: &SeriesCatalog) -> SampleBatch {
    let mut b = SampleBatchBuilder::with_capacity(points.len());
    let mut announced = HashSet::new();
    // Rows of one series must be in time order within a batch.
    let mut sorted: Vec<&(SeriesMeta, i64, f64)> = points.iter().collect();
    sorted.sort_by_key(|(m, t, _)| (m.id, *t));
    for (meta, ts, v) in sorted {
        if !catalog.contains(meta.id) && announced.insert(meta.id) {
            b.push_series(Arc::new(meta.clone()));
        }
        b.push(meta.id, *ts, *v);
    }
    b.finish()
}

/// Remembers what was sent in the overlap window, so re-polled buckets are sent again only
/// when their value changed (late data).
#[derive(Debug, Default)]
pub struct Dedupe {
    sent: HashMap<(SeriesId, i64), u64>,
}

impl Dedupe {
    /// The points not sent before with the same value.
    pub fn fresh(&self, points: Vec<(SeriesMeta, i64, f64)>) -> Vec<(SeriesMeta, i64, f64)> {
        points
            .into_iter()
            .filter(|(m, t, v)| self.sent.get(&(m.id, *t)) != Some(&v.to_bits()))
            .collect()
    }

    /// Records points as sent (call once they are durable).
    pub fn record(&mut self, points: &[(SeriesMeta, i64, f64)]) {
        for (m, t, v) in points {
            self.sent.insert((m.id, *t), v.to_bits());
        }
    }

    /// Forgets points older than `before_ms`.
    pub fn prune(&mut self, before_ms: i64) {
        self.sent.retain(|(_, t), _| *t >= before_ms);
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

fn align_down(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step.max(1))
}

/// Pulls `items` over `start_ms..end_ms` in requests of at most [`MAX_BUCKETS_PER_REQUEST`]
/// buckets and sends each durably through `sink`. `on_chunk(done, total)` reports progress.
pub async fn backfill(
    client: &AppInsightsClient,
    items: &[Item],
    start_ms: i64,
    end_ms: i64,
    sink: &BatchSender,
    catalog: &SeriesCatalog,
    mut on_chunk: impl FnMut(usize, usize),
) -> Result<PullSummary, IngestError> {
    let plan: Vec<(usize, i64, i64)> = items
        .iter()
        .enumerate()
        .flat_map(|(i, item)| {
            let step = item.interval_ms();
            let span = step * MAX_BUCKETS_PER_REQUEST;
            let mut s = align_down(start_ms, step);
            let mut out = Vec::new();
            while s < end_ms {
                let e = (s + span).min(end_ms);
                out.push((i, s, e));
                s = e;
            }
            out
        })
        .collect();
    let mut summary = PullSummary::default();
    let mut seen = HashSet::new();
    for (done, &(i, s, e)) in plan.iter().enumerate() {
        let points = client.fetch(&items[i], s, e).await?;
        summary.requests += 1;
        let points: Vec<(SeriesMeta, i64, f64)> = points
            .iter()
            .filter(|p| p.ts_ms >= start_ms && p.ts_ms < end_ms)
            .map(|p| (client.meta(p), p.ts_ms, p.value))
            .collect();
        seen.extend(points.iter().map(|p| p.0.id));
        summary.samples += points.len() as u64;
        client.metrics.received(KIND, points.len() as u64);
        let batch = to_batch(&points, catalog);
        if !batch.is_empty() {
            sink.send_durable(batch)
                .await
                .map_err(|e| IngestError::Pipeline(e.to_string()))?;
        }
        on_chunk(done + 1, plan.len());
    }
    summary.series = seen.len();
    Ok(summary)
}

/// Polls every item of `cfg` each `poll_interval_secs` until `cancel`. Each poll reaches back
/// `overlap_secs` before where the last successful one ended (aligned to the item's interval)
/// so that late data is picked up; [`Dedupe`] keeps unchanged values from being sent twice.
/// Failures are reported in `states` and retried at the next tick from the same point.
pub async fn run_live(
    cfg: AppInsightsSourceConfig,
    client: AppInsightsClient,
    sink: BatchSender,
    catalog: Arc<SeriesCatalog>,
    states: SourceStates,
    cancel: CancellationToken,
) {
    let items = items(&cfg);
    let mut cursors: Vec<Option<i64>> = vec![None; items.len()];
    let mut dedupe = Dedupe::default();
    let overlap_ms = cfg.overlap_secs as i64 * 1000;
    let lookback_ms = cfg.lookback_secs as i64 * 1000;
    let max_interval = items.iter().map(Item::interval_ms).max().unwrap_or(60_000);
    states.update(KIND, &cfg.name, |s| s.healthy = true);
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.poll_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(source = %cfg.name, app = %client.app(), items = items.len(), "Polling Application Insights.");
    loop {
        tokio::select! {
            // Dropping the tick loses nothing: cursors only move after a durable poll.
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let mut failures = Vec::new();
        let mut samples = 0u64;
        for (item, cursor) in items.iter().zip(cursors.iter_mut()) {
            let step = item.interval_ms();
            let from = align_down(cursor.map_or(now - lookback_ms, |c| c - overlap_ms), step);
            let res = tokio::select! {
                // Cancelled mid-poll: the cursor stays, nothing acknowledged is lost.
                _ = cancel.cancelled() => return,
                r = client.fetch(item, from, now) => r,
            };
            let points = match res {
                Ok(p) => p,
                Err(e) => {
                    warn!(source = %cfg.name, error = %e, "Poll failed; will retry from the same point.");
                    failures.push(e.to_string());
                    continue;
                }
            };
            let fresh = dedupe.fresh(
                points
                    .iter()
                    .map(|p| (client.meta(p), p.ts_ms, p.value))
                    .collect(),
            );
            client.metrics.received(KIND, fresh.len() as u64);
            let batch = to_batch(&fresh, &catalog);
            if !batch.is_empty()
                && let Err(e) = sink.send_durable(batch).await
            {
                failures.push(format!("pipeline: {e}"));
                continue;
            }
            dedupe.record(&fresh);
            samples += fresh.len() as u64;
            *cursor = Some(now);
        }
        dedupe.prune(now - overlap_ms - lookback_ms.min(overlap_ms) - 2 * max_interval);
        if failures.is_empty() {
            states.ok(KIND, &cfg.name, samples);
        } else {
            states.failed(KIND, &cfg.name, failures.join("; "));
        }
    }
    info!(source = %cfg.name, "Stopped polling.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_drops_unchanged_and_keeps_corrected_values() {
        let m = SeriesMeta::new(Source::AppInsights, "appinsights_requests_count", []);
        let mut d = Dedupe::default();
        let first = d.fresh(vec![(m.clone(), 0, 1.0), (m.clone(), 60_000, 2.0)]);
        assert_eq!(first.len(), 2);
        d.record(&first);
        let again = d.fresh(vec![
            (m.clone(), 60_000, 2.0),
            (m.clone(), 0, 1.5),
            (m.clone(), 120_000, 3.0),
        ]);
        assert_eq!(
            again.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![0, 120_000]
        );
        d.record(&again);
        d.prune(60_000);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn server_words_include_code_and_inner_error() {
        let body = br#"{"error":{"message":"The request had some invalid properties","code":"BadArgumentError","innererror":{"code":"SyntaxError","message":"Query could not be parsed at 'summarize'"}}}"#;
        let w = server_words(reqwest::StatusCode::BAD_REQUEST, body);
        assert_eq!(
            w,
            "HTTP 400 Bad Request: BadArgumentError: The request had some invalid properties (SyntaxError: Query could not be parsed at 'summarize')"
        );
    }

    #[test]
    fn timespans_are_rfc3339_pairs() {
        assert_eq!(
            timespan(0, 60_000),
            "1970-01-01T00:00:00Z/1970-01-01T00:01:00Z"
        );
    }
}
