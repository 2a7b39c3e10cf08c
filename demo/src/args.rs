//! `aiops demo`'s command-line arguments, composed into the binary's CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// `aiops demo`.
#[derive(Debug, Clone, Args)]
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
