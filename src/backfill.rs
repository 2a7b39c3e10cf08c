//! `aiops backfill`: pull a time range from a source into the archive, with a progress bar.

use std::time::Instant;

use aiops_ingest::backfill::{self, Source};
use aiops_ingest::prometheus_api::PullRange;
use aiops_ingest::{
    AppInsightsAuth, AppInsightsMetric, AppInsightsSourceConfig, Auth, KqlQuery,
    PrometheusSourceConfig,
};
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
    let (start, end) = (
        parse_time("--start", &args.start)?,
        parse_time("--end", &args.end)?,
    );
    if start > end {
        bail!("--start is after --end");
    }
    match args.source.as_str() {
        "prometheus" => prometheus(args, start, end).await,
        "appinsights" => appinsights(args, start, end).await,
        other => bail!("--source {other:?} is not supported; use prometheus or appinsights"),
    }
}

fn progress(quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests, eta {eta}",
        )
        .expect("static template is valid"),
    );
    bar
}

/// The progress callback of a pull: `(requests done, requests in all)`.
fn advance(bar: &ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Pulls `source` into the archive with a progress bar, then prints the summary.
async fn pull(args: &BackfillArgs, source: Source<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = progress(args.quiet);
    let res = backfill::run(&args.data_dir, source, advance(&bar)).await;
    bar.finish_and_clear();
    let summary = res?;
    println!(
        "backfilled {} series, {} samples in {:.1} s ({} requests) into {}",
        summary.series,
        summary.samples,
        started.elapsed().as_secs_f64(),
        summary.requests,
        args.data_dir.display()
    );
    Ok(())
}

async fn appinsights(args: BackfillArgs, start_s: i64, end_s: i64) -> anyhow::Result<()> {
    let a = &args.appinsights;
    if a.metrics.is_empty() && a.kql.is_empty() {
        bail!("--source appinsights needs --metric METRIC_ID or --kql QUERY");
    }
    let cfg = AppInsightsSourceConfig {
        name: "backfill".into(),
        url: args.url.clone(),
        app_id: a.app_id.clone(),
        workspace_id: a.workspace_id.clone(),
        app: a.app.clone(),
        metrics: a
            .metrics
            .iter()
            .map(|id| AppInsightsMetric {
                id: id.clone(),
                interval: a.interval.clone(),
                aggregation: a.aggregations.clone(),
                segment: a.segments.clone(),
                top: None,
                filter: None,
            })
            .collect(),
        kql: a
            .kql
            .iter()
            .map(|q| KqlQuery {
                query: q.clone(),
                time_column: a.time_column.clone(),
                value_columns: a.value_columns.clone(),
                interval: a.interval.clone(),
            })
            .collect(),
        auth: AppInsightsAuth {
            api_key: a.api_key.clone().map(aiops_models::Secret::new),
            api_key_file: a.api_key_file.clone(),
            tenant_id: a.tenant_id.clone(),
            client_id: a.client_id.clone(),
            client_secret: a.client_secret.clone().map(aiops_models::Secret::new),
            client_secret_file: a.client_secret_file.clone(),
            token_url: a.token_url.clone(),
            scope: a.scope.clone(),
            ..AppInsightsAuth::default()
        },
        poll_interval_secs: 60,
        overlap_secs: 0,
        lookback_secs: 0,
        timeout_secs: 60,
        max_retries: 5,
    };
    let mut problems = Vec::new();
    cfg.validate("backfill", &mut problems);
    if !problems.is_empty() {
        bail!("invalid arguments:\n  - {}", problems.join("\n  - "));
    }
    let source = Source::AppInsights {
        cfg: &cfg,
        start_ms: start_s * 1000,
        end_ms: end_s * 1000,
    };
    pull(&args, source).await
}

async fn prometheus(args: BackfillArgs, start: i64, end: i64) -> anyhow::Result<()> {
    if args.queries.is_empty() {
        bail!("--source prometheus needs at least one --query SELECTOR");
    }
    let mut src = PrometheusSourceConfig::new("backfill", args.url.clone(), args.queries.clone());
    src.step_secs = args.step;
    src.auth = Auth {
        bearer_token_file: args.bearer_token_file.clone(),
        username: args.username.clone(),
        password: std::env::var("AIOPS_BASIC_AUTH_PASSWORD")
            .ok()
            .map(aiops_models::Secret::new)
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

    let range = PullRange {
        start_s: start,
        end_s: end,
        step_s: args.step,
    };
    let source = Source::Prometheus {
        cfg: &src,
        queries: &args.queries,
        range,
    };
    pull(&args, source).await
}
