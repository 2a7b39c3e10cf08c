//! Metrics of the ingest stages. Names are `aiops_ingest_<what>_<unit>`; label values come from
//! small fixed sets (never a series id).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Handles to every ingest metric; cheap to clone (each is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    samples_received: Family<Labels, Counter>,
    samples_rejected: Family<Labels, Counter>,
    /// Samples made durable by the archive.
    pub samples_archived: Counter,
    /// Batches made durable by the archive.
    pub batches_archived: Counter,
    /// Failed archive writes (each failed batch is answered with a retryable error).
    pub archive_write_errors: Counter,
    /// Seconds per group commit (write + fsync).
    pub archive_commit_seconds: Histogram,
    /// Bytes of the archive on disk (WAL + parts).
    pub archive_bytes: Gauge,
    /// Parts deleted by retention.
    pub archive_parts_expired: Counter,
    /// Merges of parts into larger ones.
    pub archive_merges: Counter,
    /// Damaged stretches found in the archive's files, by kind (`wal`, `part`).
    archive_damage: Family<Labels, Counter>,
    /// Bytes of WAL segments skipped as damaged.
    pub archive_damaged_bytes: Counter,
    /// Files in `quarantine/` waiting for an operator.
    pub archive_quarantine_files: Gauge,
    /// Parts whose whole file was checked against its checksum.
    pub archive_parts_verified: Counter,
    /// Series in the catalog.
    pub series: Gauge,
    /// Bytes of the in-memory head (samples not yet compacted to Parquet).
    pub head_bytes: Gauge,
    /// Bytes of the series catalog in memory, estimated.
    pub catalog_bytes: Gauge,
    /// Stale markers received.
    pub stale_markers: Counter,
    pull_requests: Family<Labels, Counter>,
}

impl IngestMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("aiops_ingest");
        r.register(
            "samples_received",
            "Samples accepted from sources, by source.",
            m.samples_received.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples rejected as invalid, by source and reason.",
            m.samples_rejected.clone(),
        );
        r.register(
            "archive_samples",
            "Samples made durable by the archive.",
            m.samples_archived.clone(),
        );
        r.register(
            "archive_batches",
            "Batches made durable by the archive.",
            m.batches_archived.clone(),
        );
        r.register(
            "archive_write_errors",
            "Archive writes that failed; the batch was answered with a retryable error.",
            m.archive_write_errors.clone(),
        );
        r.register(
            "archive_commit_seconds",
            "Duration of one archive group commit (write and fsync).",
            m.archive_commit_seconds.clone(),
        );
        r.register(
            "archive_size_bytes",
            "Bytes of the archive on disk.",
            m.archive_bytes.clone(),
        );
        r.register(
            "archive_parts_expired",
            "Parquet parts deleted by retention.",
            m.archive_parts_expired.clone(),
        );
        r.register(
            "archive_merges",
            "Merges of archive parts into larger ones.",
            m.archive_merges.clone(),
        );
        r.register(
            "archive_damage",
            "Damage found in the archive's files, by kind (wal: a skipped stretch of a segment; part: a quarantined part).",
            m.archive_damage.clone(),
        );
        r.register(
            "archive_damaged_bytes",
            "Bytes of WAL segments skipped as damaged.",
            m.archive_damaged_bytes.clone(),
        );
        r.register(
            "archive_quarantine_files",
            "Damaged files in the archive's quarantine directory, waiting for an operator.",
            m.archive_quarantine_files.clone(),
        );
        r.register(
            "archive_parts_verified",
            "Parts whose whole file was checked against the checksum recorded when it was written.",
            m.archive_parts_verified.clone(),
        );
        r.register("series", "Series in the catalog.", m.series.clone());
        r.register(
            "head_bytes",
            "Bytes of the in-memory head: samples not yet compacted to Parquet.",
            m.head_bytes.clone(),
        );
        r.register(
            "catalog_bytes",
            "Bytes of the series catalog in memory (estimated).",
            m.catalog_bytes.clone(),
        );
        r.register(
            "stale_markers",
            "Prometheus stale markers received.",
            m.stale_markers.clone(),
        );
        r.register(
            "pull_requests",
            "Requests of pulling sources, by source and outcome.",
            m.pull_requests.clone(),
        );
        m
    }

    /// Metrics that are counted but exported nowhere (tests, CLI tools).
    pub fn unregistered() -> Self {
        Self {
            samples_received: Family::default(),
            samples_rejected: Family::default(),
            samples_archived: Counter::default(),
            batches_archived: Counter::default(),
            archive_write_errors: Counter::default(),
            archive_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            archive_bytes: Gauge::default(),
            archive_parts_expired: Counter::default(),
            archive_merges: Counter::default(),
            archive_damage: Family::default(),
            archive_damaged_bytes: Counter::default(),
            archive_quarantine_files: Gauge::default(),
            archive_parts_verified: Counter::default(),
            series: Gauge::default(),
            head_bytes: Gauge::default(),
            catalog_bytes: Gauge::default(),
            stale_markers: Counter::default(),
            pull_requests: Family::default(),
        }
    }

    /// Counts accepted samples of `source` (`remote_write`, `prometheus_pull`, ...).
    pub fn received(&self, source: &'static str, n: u64) {
        self.samples_received
            .get_or_create(&vec![("source", source)])
            .inc_by(n);
    }

    /// Counts rejected samples of `source` for `reason` (`invalid`, `collision`, `decode`, `overload`, `unavailable`).
    pub fn rejected(&self, source: &'static str, reason: &'static str, n: u64) {
        self.samples_rejected
            .get_or_create(&vec![("source", source), ("reason", reason)])
            .inc_by(n);
    }

    /// Counts damage of `kind` (`wal`, `part`) found in the archive.
    pub fn archive_damage(&self, kind: &'static str) {
        self.archive_damage
            .get_or_create(&vec![("kind", kind)])
            .inc();
    }

    /// Counts one request of a pulling source with its outcome (`ok`, `retry`, `error`).
    pub fn pull_request(&self, source: &'static str, outcome: &'static str) {
        self.pull_requests
            .get_or_create(&vec![("source", source), ("outcome", outcome)])
            .inc();
    }
}
