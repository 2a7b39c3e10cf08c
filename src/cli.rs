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
    Demo(aiops_demo::DemoArgs),
    /// Pull a time range from a source into the archive.
    Backfill(Box<BackfillArgs>),
    /// Load and validate a configuration file, reporting every problem.
    CheckConfig(CheckConfigArgs),
    /// Measure throughput (prints JSON).
    Bench(aiops_eval::bench::BenchArgs),
    /// Evaluate against labelled data (prints JSON).
    Eval(aiops_eval::EvalArgs),
    /// The model registry: list, show, register, promote, roll back.
    Models(ModelsArgs),
    /// Fit per-series seasonal profiles and score calibration from the archive and
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
