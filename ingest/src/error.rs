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
    /// Reading bytes of a file already open failed (the file is named by the caller: a part
    /// being checked); `at` says which bytes. The I/O error and its kind are kept. A failure on
    /// a named file is `ArchiveIo`.
    #[error("{at}: {source}")]
    Io { at: String, source: std::io::Error },
    /// Bytes could not be encoded or decoded as `what` (a WAL record's parts, a Parquet part,
    /// Arrow IPC, a Kafka message); the underlying error is kept.
    #[error("{what}: {source}")]
    Codec {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Bytes that are not what was written: a checksum mismatch, a truncated or garbled
    /// record, a missing footer. Damage is contained (quarantined), never served as data.
    #[error("{0}")]
    Damaged(String),
    /// The ingest queue is at capacity (only from `BatchSender::try_send`): retry later.
    #[error("the ingest queue is full ({capacity} batches); retry later")]
    QueueFull { capacity: usize },
    /// The receiving stage has stopped (shutdown).
    #[error("the pipeline is shutting down")]
    Closed,
    /// A long operation (a merge) was stopped for shutdown; nothing it wrote is kept.
    #[error("stopped for shutdown")]
    Stopped,
    /// A remote_write receiver rejected the data for good (4xx other than 408 and 429).
    #[error("receiver rejected the request with {status}: {body}")]
    Rejected {
        status: reqwest::StatusCode,
        body: String,
    },
    /// A remote_write receiver stayed unavailable (network errors, 408, 429, 5xx).
    #[error("receiver unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The pipeline could not take the batch (shutting down, or the archive failed): the
    /// outcome of a batch that was not made durable. Retrying later may succeed.
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// Creating or using a Kafka client failed (topics, producing, a checkpoint, a window).
    #[error("kafka: {0}")]
    Kafka(String),
    /// A remote_write body that is not a valid Snappy block (the framed format is not accepted).
    /// Like every body error below, the sender's fault (HTTP 400) and nothing of it is kept.
    #[error(
        "snappy: {reason} (remote_write bodies use the Snappy block format, not the framed format)"
    )]
    BadSnappy { reason: String },
    /// A remote_write body whose decompressed size exceeds the configured limit.
    #[error("decompressed body of {decoded} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { decoded: usize, limit: usize },
    /// A remote_write body that is not a valid `prometheus.WriteRequest`.
    #[error("protobuf: {reason} at byte {offset} of the decompressed body")]
    BadProtobuf { offset: usize, reason: &'static str },
    /// A remote_write body with more series or samples than one request may carry.
    #[error("the request carries more than {limit} {what} (limit {key})")]
    TooManyInRequest {
        what: &'static str,
        limit: usize,
        key: &'static str,
    },
    /// A source was configured wrongly.
    #[error("source {name}: {reason}")]
    SourceConfig { name: String, reason: String },
}

impl IngestError {
    /// An I/O failure on an open file, `at` (which bytes), for `map_err`; with a path, use
    /// [`IngestError::io`].
    pub(crate) fn io_at(at: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let at = at.into();
        move |source| Self::Io { at, source }
    }

    /// A failure to encode or decode `what`, for `map_err`.
    pub(crate) fn codec<E>(what: impl Into<String>) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let what = what.into();
        move |e| Self::Codec {
            what,
            source: Box::new(e),
        }
    }

    /// Damage: bytes that are not what was written.
    pub(crate) fn damaged(reason: impl Into<String>) -> Self {
        Self::Damaged(reason.into())
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::ArchiveIo { op, path, source }
    }
}
