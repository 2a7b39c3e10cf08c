//! The benchmarks' command-line arguments (`aiops bench …`), composed into the binary's CLI.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// End-to-end remote_write throughput over loopback into `serve` with the durable archive,
    /// next to a receiver that only reads bodies (the HTTP ceiling), in the same run.
    RemoteWrite(RemoteWriteBenchArgs),
    /// Online scoring throughput with many series interleaved, and state bytes per series, next
    /// to a one-line EWMA over the same stream.
    Detect(DetectBenchArgs),
    /// Samples per second end to end through a Kafka broker (encode, produce with acks=all,
    /// consume, decode), next to the in-memory transport in the same run.
    Kafka(KafkaBenchArgs),
    /// Production cardinality against `aiops serve` in a child process: distinct series ramp
    /// to `--series` while old series keep reporting; samples/s, write p99, `/healthz` and
    /// external-metrics p99 per phase, RSS per active series, bytes per sample on disk.
    Cardinality(CardinalityBenchArgs),
    /// Writes the cardinality workload's remote_write bodies to files (for
    /// `scripts/compare_ingest.sh`, which replays them to several receivers with wrk).
    Bodies(BodiesBenchArgs),
    /// Bytes on disk of an archive directory (not in use): parts, samples in them, catalog,
    /// WAL, and bytes per compacted sample.
    Disk(DiskBenchArgs),
}

#[derive(Debug, Args)]
pub struct DiskBenchArgs {
    /// The archive directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CardinalityBenchArgs {
    /// Distinct series at the end of the ramp.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Samples per series in each round (consecutive 15 s scrapes).
    #[arg(long, default_value_t = 10)]
    pub samples_per_series: usize,
    /// Series per remote_write request.
    #[arg(long, default_value_t = 2000)]
    pub series_per_request: usize,
    /// Ramp phases; each adds series / ramp-phases new series and sends one round.
    #[arg(long, default_value_t = 10)]
    pub ramp_phases: usize,
    /// Rounds over every series after the ramp (the steady rate).
    #[arg(long, default_value_t = 3)]
    pub steady_rounds: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// fsync every group commit (as in production).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fsync: bool,
    /// Seconds to wait at the end for detection to score everything archived.
    #[arg(long, default_value_t = 120)]
    pub catch_up_secs: u64,
    /// The aiops binary to run as the server (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where the temporary data directory goes (default: the system's temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the data directory and server log.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct BodiesBenchArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Distinct series.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Samples per series per request.
    #[arg(long, default_value_t = 10)]
    pub samples_per_series: usize,
    /// Series per request.
    #[arg(long, default_value_t = 2000)]
    pub series_per_request: usize,
    /// Rounds over every series (each round's samples follow the previous round's).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

#[derive(Debug, Args)]
pub struct KafkaBenchArgs {
    /// Bootstrap brokers, HOST:PORT[,…].
    #[arg(long)]
    pub brokers: String,
    /// Series per batch.
    #[arg(long, default_value_t = 2000)]
    pub series: usize,
    /// Samples per series per batch.
    #[arg(long, default_value_t = 10)]
    pub samples_per_series: usize,
    /// Batches sent.
    #[arg(long, default_value_t = 100)]
    pub batches: usize,
    /// Partitions of the (fresh) samples topic.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
}

#[derive(Debug, Args)]
pub struct DetectBenchArgs {
    /// Series, updated round-robin.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Samples per series.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Seconds between a series' samples (1 to 86400). Longer runs reach what a series does
    /// only after days or weeks (the departure from the day's shape, from two weeks on).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub step_secs: u32,
}

#[derive(Debug, Args)]
pub struct RemoteWriteBenchArgs {
    /// Series per request.
    #[arg(long, default_value_t = 2000)]
    pub series: usize,
    /// Samples per series per request.
    #[arg(long, default_value_t = 10)]
    pub samples_per_series: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// fsync every group commit (as in production).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fsync: bool,
}
