//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// aiops: online anomaly detection, load forecasting and root-cause ranking for Prometheus and
/// App Insights metrics.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline: remote_write receiver, pulling sources, archive, API.
    Serve(ServeArgs),
    /// Run the pipeline on one machine with a built-in microservice workload, no external service.
    Demo(DemoArgs),
    /// Pull a time range from a source into the archive.
    Backfill(Box<BackfillArgs>),
    /// Load and validate a configuration file, reporting every problem.
    CheckConfig(CheckConfigArgs),
    /// Measure throughput (prints JSON).
    Bench(BenchArgs),
    /// Evaluate against labelled data (prints JSON).
    Eval(EvalArgs),
    /// The model registry: list, show, register, promote, roll back.
    Models(ModelsArgs),
    /// Fit per-series seasonal profiles and score calibration from the archive (polars) and
    /// register them as a new `profiles` version.
    Train(TrainArgs),
    /// Check or repair an archive's files offline (`verify` exits 1 on damage).
    Archive(ArchiveArgs),
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive directory.
    #[arg(long, default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub what: ArchiveWhat,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveWhat {
    /// Read every WAL record and every part against its checksums; print a JSON report and
    /// exit 1 if anything is damaged or waits in quarantine. Safe while `serve` runs.
    Verify,
    /// Salvage what is readable: rewrite damaged WAL segments with their valid records,
    /// quarantine parts that fail, write the sound row groups of quarantined parts into new
    /// parts. Needs the directory's lock (stop `serve` first).
    Repair,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Archive directory (reads DIR/parts/*.parquet and DIR/catalog.jsonl; safe while serve runs).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Days of data before the newest sample to train on.
    #[arg(long, default_value_t = 14.0)]
    pub days: f64,
    /// Make the new version the active one at once (serve loads it at start).
    #[arg(long)]
    pub promote: bool,
    /// A note kept with the version.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Archive directory (the registry is DIR/models/registry.json).
    #[arg(long, default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub what: ModelsWhat,
}

#[derive(Debug, Subcommand)]
pub enum ModelsWhat {
    /// Every version, newest first, with its scores; active ones marked.
    List,
    /// One version in full (JSON).
    Show { version: u64 },
    /// Register detector parameters (TOML, the keys of DetectorConfig) as a new version,
    /// evaluated on a NAB-layout corpus when --eval-nab is given.
    Register {
        /// The parameters.
        #[arg(long)]
        params: PathBuf,
        /// Evaluate on this corpus and record the scores.
        #[arg(long)]
        eval_nab: Option<PathBuf>,
        /// A note.
        #[arg(long)]
        note: Option<String>,
    },
    /// Make a version the active one of its kind (used by `serve` from its next start).
    Promote { version: u64 },
    /// Make the previously active version of a kind active again.
    Rollback {
        #[arg(long, default_value = "detector")]
        kind: String,
    },
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub what: EvalWhat,
}

#[derive(Debug, Subcommand)]
pub enum EvalWhat {
    /// The Numenta Anomaly Benchmark: run our detector over DIR/data (or score existing results)
    /// and score it with NAB's method for the three profiles.
    Nab(NabArgs),
    /// Detection on labelled fault cases (rca.md §5): the univariate ensemble, the multivariate
    /// per-service scorer and both together; precision, recall and F1 over cases.
    Cases(CasesArgs),
    /// Rolling-origin forecast evaluation on `timestamp,value` CSVs: MASE, sMAPE and quantile
    /// coverage for our forecaster next to seasonal naive.
    Forecast(ForecastArgs),
    /// Replays real traffic through a model of the Kubernetes HPA, driven by the current load
    /// (reactive) and by our served forecast (predictive): under-provisioned and paid
    /// pod-minutes.
    Autoscale(AutoscaleArgs),
    /// Root-cause ranking on labelled fault cases (rca.md §5): AC@1, AC@3, Avg@5 at service and
    /// metric level, per data set and fault, next to a seeded random ranker.
    Rca(RcaArgs),
    /// Replays the archive through fresh detectors at each sensitivity: how many anomaly events
    /// each setting would have raised, per series and per service.
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The archive (`serve`'s or `backfill`'s data directory).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Only the series this selector matches, e.g. `http_requests_total{service="cart"}`.
    #[arg(long)]
    pub selector: Option<String>,
    /// Sensitivities (false alarms per series per day) to compare. Repeatable; default: 0.001,
    /// 0.01, 0.1 and 1.
    #[arg(long)]
    pub sensitivity: Vec<f64>,
    /// Days of the archive replayed, back from its newest sample.
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Series and services listed per setting (those with the most events).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// The server's configuration (its `[detect]` section: detector parameters, event score
    /// and quiet period); the active `detector` model version, if any, wins as in `serve`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RcaArgs {
    /// Case folders (any depth) with data.csv, inject_time.txt and labels.json; each top-level
    /// folder is a data set (DIR itself when it holds cases directly).
    #[arg(long)]
    pub cases: PathBuf,
    /// Shift the given anomaly time by this many seconds (e.g. 60: detected a minute late).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub offset_secs: i64,
    /// Rank moves either way, not only upward ones.
    #[arg(long)]
    pub both_directions: bool,
    /// Ignore the given time: our detector finds it (the first alert sustained for
    /// `--sustain-rows` rows after its learning rows, the univariate ensemble at score 0.5).
    #[arg(long, conflicts_with = "offset_secs")]
    pub detect: bool,
    /// With `--detect`: rows in a row an alert must hold.
    #[arg(long, default_value_t = 3)]
    pub sustain_rows: usize,
    /// Seed of the random baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ignore the cases' `graph.csv` (rank without the call graph).
    #[arg(long)]
    pub no_graph: bool,
    /// Also fit the confidence calibration (logistic in the first service's log-score margin)
    /// over every case and print it beside the one in use.
    #[arg(long)]
    pub fit_calibration: bool,
}

#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// A `timestamp,value` CSV: the load.
    #[arg(long)]
    pub data: PathBuf,
    /// Load one pod serves.
    #[arg(long)]
    pub capacity_per_pod: f64,
    /// Seconds from scheduling a pod to it serving.
    #[arg(long)]
    pub startup_secs: u64,
    /// Forecast lead, seconds (default: the start-up time).
    #[arg(long)]
    pub lead_secs: Option<u64>,
    /// Served forecast quantile: 0.5, 0.9 or 0.99.
    #[arg(long, default_value_t = 0.9)]
    pub quantile: f64,
    /// Share of the series the forecaster learns before the replay is scored.
    #[arg(long, default_value_t = 0.2)]
    pub warmup_share: f64,
    /// Smallest replica count.
    #[arg(long, default_value_t = 1)]
    pub min_replicas: u64,
    /// Largest replica count.
    #[arg(long, default_value_t = 10_000)]
    pub max_replicas: u64,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// A `timestamp,value` CSV, or a folder whose CSVs (any depth) are each evaluated.
    #[arg(long)]
    pub data: PathBuf,
    /// Samples ahead forecast from every origin (default: one hour at the series' resolution).
    #[arg(long)]
    pub horizon: Option<u32>,
    /// Share of each series learnt before the first origin.
    #[arg(long, default_value_t = 0.2)]
    pub warmup_share: f64,
    /// Samples between origins.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Forecaster parameters (TOML, the keys of ForecastConfig).
    #[arg(long)]
    pub forecast_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CasesArgs {
    /// Case folders (any depth) holding data.csv, inject_time.txt and labels.json.
    #[arg(long)]
    pub data: PathBuf,
    /// A row is flagged when its score is at least this (default: the alert score, 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Univariate detector parameters (TOML, the keys of DetectorConfig).
    #[arg(long)]
    pub detector_config: Option<PathBuf>,
    /// Multivariate parameters (TOML, the keys of MultiConfig).
    #[arg(long)]
    pub multi_config: Option<PathBuf>,
    /// A row counts only when this many rows in a row (it included) score at or above the
    /// threshold: a change that holds, not a blip.
    #[arg(long, default_value_t = 1)]
    pub sustain_rows: usize,
    /// Include every case's outcome.
    #[arg(long)]
    pub per_case: bool,
}

#[derive(Debug, Args)]
pub struct NabArgs {
    /// The corpus: DIR/data/**.csv, DIR/labels/combined_windows.json, DIR/config/profiles.json.
    #[arg(long)]
    pub data: PathBuf,
    /// Score existing results in this detector folder (DIR/<category>/<detector>_<file>.csv)
    /// instead of running ours.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Detector name (default: aiops, or the results folder's name).
    #[arg(long)]
    pub detector: Option<String>,
    /// Where our results files go (default ./nab-results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Score a profile at a fixed threshold, PROFILE=VALUE (default: the best threshold). Repeatable.
    #[arg(long)]
    pub threshold: Vec<String>,
    /// Detector parameters (TOML, the keys of DetectorConfig) instead of the defaults; one set
    /// for every file.
    #[arg(long)]
    pub detector_config: Option<PathBuf>,
    /// Leave-one-category-out: every choice (the continuous score's parameters from a small
    /// grid, each profile's alarm threshold) made on the other categories; prints the held-out
    /// numbers. The only value is `category`.
    #[arg(long, value_parser = ["category"])]
    pub cross_validate: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); see aiops.example.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address, overriding server.listen.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Archive directory, overriding archive.data_dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How batches travel: `memory` (one process) or `kafka` (overriding transport.kind).
    #[arg(long, value_parser = ["memory", "kafka"])]
    pub bus: Option<String>,
    /// Kafka bootstrap brokers, HOST:PORT[,…] (overriding transport.kafka.brokers).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Listen on a non-loopback address with no credentials configured (as
    /// server.allow_unauthenticated = true): anyone who reaches the port can write.
    #[arg(long)]
    pub insecure_listen: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Listen address of the demo server.
    #[arg(long, default_value = "127.0.0.1:9201")]
    pub listen: SocketAddr,
    /// Archive directory (default: a fresh temporary directory, removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds between samples of the live workload (as a Prometheus scrape interval).
    #[arg(long, default_value_t = 15)]
    pub interval_secs: u64,
    /// Hours of history sent first (at 15 s resolution), so there is something to look at.
    #[arg(long, default_value_t = 3)]
    pub history_hours: u64,
    /// Inject a fault, SERVICE:KIND (kinds: cpu_hog, memory_leak, latency, errors). Repeatable.
    /// Default: payment:latency.
    #[arg(long)]
    pub fault: Vec<String>,
    /// Inject no fault.
    #[arg(long, conflicts_with = "fault")]
    pub no_fault: bool,
    /// Seconds after start when faults begin.
    #[arg(long, default_value_t = 120)]
    pub fault_after_secs: u64,
    /// How long faults last, seconds.
    #[arg(long, default_value_t = 600)]
    pub fault_secs: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seed of the workload's noise.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// PagerDuty Events API v2 routing key: incidents page (and resolve) through it.
    #[arg(long, env = "AIOPS_DEMO_PAGERDUTY_ROUTING_KEY")]
    pub pagerduty_routing_key: Option<String>,
    /// Events API endpoint (e.g. a test double).
    #[arg(long, default_value = "https://events.pagerduty.com/v2/enqueue")]
    pub pagerduty_events_url: String,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Source kind: `prometheus` or `appinsights`.
    #[arg(long, default_value = "prometheus")]
    pub source: String,
    /// Base URL of the API (Prometheus-compatible, or App Insights, e.g. https://api.applicationinsights.io).
    #[arg(long)]
    pub url: String,
    /// Prometheus: PromQL selector or expression. Repeatable.
    #[arg(long = "query")]
    pub queries: Vec<String>,
    /// Start of the range, RFC 3339.
    #[arg(long)]
    pub start: String,
    /// End of the range, RFC 3339.
    #[arg(long)]
    pub end: String,
    /// Prometheus: resolution, seconds.
    #[arg(long, default_value_t = 60)]
    pub step: u64,
    /// Archive directory.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Prometheus: extra header NAME=VALUE (e.g. X-Scope-OrgID=tenant). Repeatable.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Prometheus: file holding a bearer token.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
    /// Prometheus: basic-auth user (password from AIOPS_BASIC_AUTH_PASSWORD or --password-file).
    #[arg(long)]
    pub username: Option<String>,
    /// Prometheus: file holding the basic-auth password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub appinsights: AppInsightsBackfillArgs,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags of `aiops backfill --source appinsights`.
#[derive(Debug, Args)]
pub struct AppInsightsBackfillArgs {
    /// App Insights application id.
    #[arg(long)]
    pub app_id: Option<String>,
    /// Log Analytics workspace id (KQL only).
    #[arg(long)]
    pub workspace_id: Option<String>,
    /// Value of the `app` label (default: the app or workspace id).
    #[arg(long)]
    pub app: Option<String>,
    /// API key (prefer AIOPS_APPINSIGHTS_API_KEY or --api-key-file: flags show in `ps`).
    #[arg(long, env = "AIOPS_APPINSIGHTS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the API key.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Entra ID tenant.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Entra ID client (app registration) id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Entra ID client secret (prefer AIOPS_APPINSIGHTS_CLIENT_SECRET or --client-secret-file).
    #[arg(long, env = "AIOPS_APPINSIGHTS_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// File holding the client secret.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Token endpoint (default: login.microsoftonline.com for the tenant).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Token scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Metric id, e.g. requests/count. Repeatable.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    /// Bucket size, ISO 8601.
    #[arg(long, default_value = "PT1M")]
    pub interval: String,
    /// Dimension to segment by. Repeatable (nested in order).
    #[arg(long = "segment")]
    pub segments: Vec<String>,
    /// Aggregation (min, max, avg, sum, count, unique). Repeatable.
    #[arg(long = "aggregation")]
    pub aggregations: Vec<String>,
    /// KQL query, instead of --metric. Repeatable.
    #[arg(long = "kql")]
    pub kql: Vec<String>,
    /// KQL: the time column.
    #[arg(long, default_value = "timestamp")]
    pub time_column: String,
    /// KQL: a value column (default: every numeric column). Repeatable.
    #[arg(long = "value-column")]
    pub value_columns: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check.
    pub file: PathBuf,
}

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
