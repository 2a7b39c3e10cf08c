//! `aiops backfill`: a time range pulled from a source into an archive that no server holds,
//! through the same transport and archive stage as live ingest (so it is as durable, and the
//! catalog learns the series as it would live).

use std::sync::Arc;

use aiops_models::SeriesCatalog;

use crate::appinsights::{self, AppInsightsClient};
use crate::archive::{Archive, ArchiveConfig};
use crate::prometheus_api::{self, PromClient, PullRange};
use crate::transport::BatchSender;
use crate::{
    AppInsightsSourceConfig, IngestError, IngestMetrics, PrometheusSourceConfig, PullSummary,
    TransportConfig,
};

/// What to pull.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// These selectors' range queries at `range.step_s`.
    Prometheus {
        /// The server, its auth and headers.
        cfg: &'a PrometheusSourceConfig,
        /// Series selectors.
        queries: &'a [String],
        /// Time range and step, seconds.
        range: PullRange,
    },
    /// The source's metrics and KQL queries between two times.
    AppInsights {
        /// The app, its auth, metrics and queries.
        cfg: &'a AppInsightsSourceConfig,
        /// Start, Unix ms.
        start_ms: i64,
        /// End, Unix ms.
        end_ms: i64,
    },
}

/// Opens the archive in `data_dir` (taking its lock), pulls `source` into it and closes it (the
/// archive flushes what it was given) before returning. `progress` is called with
/// `(requests done, requests in all)`.
pub async fn run(
    data_dir: &std::path::Path,
    source: Source<'_>,
    progress: impl FnMut(usize, usize),
) -> Result<PullSummary, IngestError> {
    let metrics = IngestMetrics::unregistered();
    let catalog = Arc::new(SeriesCatalog::new());
    let acfg = ArchiveConfig {
        data_dir: data_dir.to_owned(),
        ..ArchiveConfig::default()
    };
    let (_archive, stage) = {
        let (c, m) = (catalog.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || Archive::open(acfg, c, m))
            .await
            .map_err(|e| IngestError::Pipeline(format!("opening the archive: {e}")))??
    };
    let (sender, receiver) = TransportConfig::default().build();
    let stage = stage.spawn(receiver);
    let res = pull(source, &sender, &catalog, metrics, progress).await;
    drop(sender);
    tokio::task::spawn_blocking(move || stage.join())
        .await
        .map_err(|e| IngestError::Pipeline(format!("closing the archive: {e}")))?
        .map_err(|_| IngestError::Pipeline("the archive stage panicked".into()))?;
    res
}

async fn pull(
    source: Source<'_>,
    sender: &BatchSender,
    catalog: &SeriesCatalog,
    metrics: IngestMetrics,
    progress: impl FnMut(usize, usize),
) -> Result<PullSummary, IngestError> {
    match source {
        Source::Prometheus {
            cfg,
            queries,
            range,
        } => {
            let client = PromClient::new(cfg, metrics)?;
            prometheus_api::backfill(&client, queries, range, sender, catalog, progress).await
        }
        Source::AppInsights {
            cfg,
            start_ms,
            end_ms,
        } => {
            let client = AppInsightsClient::new(cfg, metrics)?;
            let items = appinsights::items(cfg);
            appinsights::backfill(&client, &items, start_ms, end_ms, sender, catalog, progress)
                .await
        }
    }
}
