//! Errors of the ingest crate.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong in ingest, with the context an operator needs.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Another process holds the data directory.
    #[error(
        "data directory {dir} is in use by another aiops process (lock file {lock}); stop it or use another --data-dir"
    )]
    DataDirLocked { dir: PathBuf, lock: PathBuf },
    /// A file or directory operation of the archive failed.
    #[error("archive: {op} {path}: {source}")]
    ArchiveIo {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The archive holds data it cannot read.
    #[error("archive: {path}: {reason}")]
    ArchiveCorrupt { path: PathBuf, reason: String },
    /// A query of the upstream Prometheus failed for good (after retries, or not retryable).
    #[error("prometheus {url}: query {query:?}: {reason}")]
    Upstream {
        url: String,
        query: String,
        reason: String,
        /// True when the failure may pass (network, 5xx); false for bad queries and auth.
        retryable: bool,
    },
    /// A request to Application Insights failed for good (after retries, or not retryable).
    #[error("appinsights app {app}: {what}: {reason}")]
    AppInsights {
        app: String,
        what: String,
        reason: String,
        /// True when the failure may pass (network, 429, 5xx); false for bad requests and auth.
        retryable: bool,
    },
    /// The pipeline could not take the batch (shutting down, or the archive failed).
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// A source was configured wrongly.
    #[error("source {name}: {reason}")]
    SourceConfig { name: String, reason: String },
}

impl IngestError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::ArchiveIo { op, path, source }
    }
}
