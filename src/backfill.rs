//! `aiops backfill`: pull a time range from a source into the archive, with a progress bar.

use std::sync::Arc;
use std::time::Instant;

use aiops_ingest::appinsights::{self, AppInsightsClient};
use aiops_ingest::archive::{Archive, ArchiveConfig};
use aiops_ingest::prometheus_api::{self, PromClient, PullRange};
use aiops_ingest::transport::{BatchSender, TransportConfig};
use aiops_ingest::{
    AppInsightsAuth, AppInsightsMetric, AppInsightsSourceConfig, Auth, IngestMetrics, KqlQuery,
    PrometheusSourceConfig, PullSummary,
};
use aiops_models::SeriesCatalog;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::BackfillArgs;

fn parse_time(flag: &str, v: &str) -> anyhow::Result<i64> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .with_context(|| format!("{flag} {v:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00Z"))
}

/// Runs the backfill.
pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    if args.source != "prometheus" {
        bail!(
            "--source {:?} is not supported yet; use prometheus",
            args.source
        );
    }
    let (start, end) = (
        parse_time("--start", &args.start)?,
        parse_time("--end", &args.end)?,
    );
    if start > end {
        bail!("--start is after --end");
    }
    let mut src = PrometheusSourceConfig::new("backfill", args.url.clone(), args.queries.clone());
    src.step_secs = args.step;
    src.auth = Auth {
        bearer_token_file: args.bearer_token_file.clone(),
        username: args.username.clone(),
        password: std::env::var("AIOPS_BASIC_AUTH_PASSWORD")
            .ok()
            .filter(|_| args.password_file.is_none() && args.username.is_some()),
        password_file: args.password_file.clone(),
        ..Auth::default()
    };
    for h in &args.headers {
        let (k, v) = h
            .split_once('=')
            .with_context(|| format!("--header {h:?}: expected NAME=VALUE"))?;
        src.headers.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let mut problems = Vec::new();
    src.validate("backfill", &mut problems);
    if !problems.is_empty() {
        bail!("invalid arguments:\n  - {}", problems.join("\n  - "));
    }

    let sink = open_sink(&args.data_dir).await?;
    let client = PromClient::new(&src, sink.metrics.clone())?;
    let started = Instant::now();
    let bar = progress(args.quiet);
    let range = PullRange {
        start_s: start,
        end_s: end,
        step_s: args.step,
    };
    let res = prometheus_api::backfill(
        &client,
        &args.queries,
        range,
        &sink.sender,
        &sink.catalog,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .await;
    bar.finish_and_clear();
    finish(sink, res, started, &args.data_dir).await
}
