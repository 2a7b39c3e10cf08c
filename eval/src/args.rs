//! The evaluations' command-line arguments (`aiops eval …`), composed into the binary's CLI.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
    /// Days before those that only teach the detectors, as the server warm-starts each series
    /// from its archive (default: the detector's `young_days`, 3): the counted days score as
    /// an established series, not a new one.
    #[arg(long)]
    pub warmup_days: Option<f64>,
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
    /// Ignore the given time: our detector finds it — the case replayed through the product's
    /// detectors, anomaly events and incident correlation (defaults), and the detection time of
    /// the latest incident opened (the one a responder is paged for when the data ends).
    #[arg(long, conflicts_with = "offset_secs")]
    pub detect: bool,
    /// With `--detect`, when no incident opens: the first alert of the univariate ensemble
    /// (score 0.5) held this many rows in a row after its learning rows.
    #[arg(long, default_value_t = 3)]
    pub sustain_rows: usize,
    /// Seed of the random baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ignore the cases' `graph.csv` (rank without the call graph).
    #[arg(long)]
    pub no_graph: bool,
    /// Also fit a logistic calibration (in the first service's log-score margin and how many
    /// moved) over every case and print its in-sample reliability beside the unfitted
    /// confidence in use.
    #[arg(long)]
    pub fit_calibration: bool,
    /// `dataset`: also fit that logistic calibration leaving each data set out in turn and
    /// report its reliability (ECE, Brier) on the held-out set only, beside the unfitted
    /// confidence in use (held out everywhere).
    #[arg(long, value_parser = ["dataset"])]
    pub cross_validate: Option<String>,
    /// Also write every case's ranking here, one JSON object per line: the case, its label,
    /// where the labelled service ranked and the first five services with their evidence.
    #[arg(long)]
    pub cases_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// A `timestamp,value` CSV (the load of one workload), or a folder whose CSVs (any depth)
    /// are each replayed as a workload.
    #[arg(long)]
    pub data: PathBuf,
    /// Load one pod serves (default: each workload's median load over `--median-pods`).
    #[arg(long)]
    pub capacity_per_pod: Option<f64>,
    /// Without `--capacity-per-pod`: pods the median load needs, per workload.
    #[arg(long, default_value_t = 10.0)]
    pub median_pods: f64,
    /// Seconds from scheduling a pod to it serving; several (`120,300`) replay each.
    #[arg(long, value_delimiter = ',', required = true)]
    pub startup_secs: Vec<u64>,
    /// Forecast lead, seconds (default: the start-up time).
    #[arg(long)]
    pub lead_secs: Option<u64>,
    /// Served forecast quantile, in [0.5, 0.99] (the start when `--under-budget` is given).
    #[arg(long, default_value_t = 0.9)]
    pub quantile: f64,
    /// Under-provisioning budget (the target's `under_budget`): the share of steps whose
    /// value, served a lead earlier, may fall below the load; the quantile adapts to it.
    #[arg(long)]
    pub under_budget: Option<f64>,
    /// Extra-capacity budget (the target's `extra_budget`, with `--under-budget`): the share of
    /// the load the served value may exceed it by on average before misses stop raising the
    /// quantile.
    #[arg(long)]
    pub extra_budget: Option<f64>,
    /// Share of the series the forecaster learns before the replay is scored.
    #[arg(long, default_value_t = 0.2)]
    pub warmup_share: f64,
    /// Two samples further apart than this many seconds bound a gap: no load is known there,
    /// neither HPA gets a metric and nothing is scored (default: three times the workload's
    /// median interval; 0 interpolates across every gap).
    #[arg(long)]
    pub max_gap_secs: Option<u64>,
    /// Smallest replica count.
    #[arg(long, default_value_t = 1)]
    pub min_replicas: u64,
    /// Largest replica count.
    #[arg(long, default_value_t = 10_000)]
    pub max_replicas: u64,
    /// Also write the replay, one row per sample after the warm-up, to this CSV: time, load,
    /// pods needed, the forecast for time + lead (p50, p90, p99), the value served, ready pods
    /// under each policy (one CSV and one start-up time only).
    #[arg(long)]
    pub trace: Option<PathBuf>,
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
    /// Also write every origin's forecasts here, one JSON object per line: `file`, `origin`
    /// (index in the time-ordered series, repeated timestamps dropped), `point`, `p50`, `p90`,
    /// `p99` (one entry per step ahead) — what `scripts/compare_forecast.py` scores.
    #[arg(long)]
    pub forecasts_out: Option<PathBuf>,
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
    /// A published detector's results folder holding NAB's `<detector>_<profile>_scores.csv`
    /// (e.g. NAB's `results/ARTime`): prints its scores on this corpus' files, normalised over
    /// their windows, under `published`. Repeatable.
    #[arg(long)]
    pub published: Vec<PathBuf>,
}
