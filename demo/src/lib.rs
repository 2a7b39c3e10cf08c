//! `aiops demo`: the pipeline on one machine with a built-in workload and no external service.
//!
//! * [`simulate`] — a small shop of microservices whose metrics follow a daily pattern, with
//!   faults (CPU hog, memory leak, latency, errors) that show in the service and its callers.
//! * [`Demo`] — the shop, its faults, what the server needs to know about it (the call graph,
//!   the scaling target) and the run: history first, then live samples, sent as real
//!   remote_write requests to the server, whose findings it prints as they appear.
//!
//! Owns the simulated world and the console report; talks to the server only through its
//! public HTTP API (the binary starts the server), so what it prints is what any client sees.
//! Never used by the server itself.

mod args;
mod report;
pub mod simulate;
mod workload;

use std::net::SocketAddr;
use std::time::Duration;

use aiops_ingest::remote_write::RemoteWriteClient;
use aiops_rca::pagerduty::PagerdutyConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use args::DemoArgs;
use report::FaultWatch;
use simulate::Simulator;

/// The demo's shop with its faults injected, ready to run against a server.
#[derive(Debug)]
pub struct Demo {
    args: DemoArgs,
    sim: Simulator,
    /// When the demo started (Unix ms): faults are timed from it.
    start_ms: i64,
}

impl Demo {
    /// The shop of `args.seed` with the faults `args` asks for.
    pub fn new(args: DemoArgs) -> anyhow::Result<Self> {
        let mut sim = Simulator::demo(args.seed);
        let start_ms = jiff::Timestamp::now().as_millisecond();
        for f in workload::parse_faults(&sim, &args, start_ms)? {
            sim.inject(f);
        }
        Ok(Self {
            args,
            sim,
            start_ms,
        })
    }

    /// The arguments it was made with.
    pub fn args(&self) -> &DemoArgs {
        &self.args
    }

    /// The shop's call graph: incidents use it to walk from symptoms to causes.
    pub fn topology(&self) -> Vec<aiops_rca::Edge> {
        let services = self.sim.services();
        services
            .iter()
            .flat_map(|s| {
                s.calls.iter().map(|&(callee, _)| aiops_rca::Edge {
                    caller: s.name.to_owned(),
                    callee: services[callee].name.to_owned(),
                })
            })
            .collect()
    }

    /// The frontend scaled ahead of its load: 10 requests per second per pod, pods ready after two
    /// minutes; forecasts are served after an hour of history (the demo sends three).
    pub fn scaling(&self) -> aiops_detect::scaling::ScalingConfig {
        use aiops_detect::scaling::{ScalingConfig, ScalingTarget};
        ScalingConfig {
            step_secs: 15,
            min_history_steps: 240,
            targets: vec![ScalingTarget {
                name: DEMO_TARGET.into(),
                namespace: None,
                selector: r#"http_requests_total{service="frontend"}"#.into(),
                labels: [("service".to_owned(), "frontend".to_owned())].into(),
                capacity_per_pod: 10.0,
                lead_secs: 120,
                quantile: 0.9,
                under_budget: None,
                extra_budget: None,
                mode: Default::default(),
            }],
            ..ScalingConfig::default()
        }
    }

    /// Runs against the server at `addr` until `cancel` or `--duration-secs`: prints how to
    /// look at it, sends the workload, prints findings as they appear and a summary at the
    /// end, then cancels `cancel` (which stops the server too). `pagerduty` is the server's, so
    /// the demo can show the page each incident queues.
    pub async fn run(
        mut self,
        addr: SocketAddr,
        pagerduty: PagerdutyConfig,
        token: Option<&str>,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let args = self.args.clone();
        let base = format!("http://{addr}");
        print_banner(&base, &args);
        let mut client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
        // The server's own token (`AIOPS__SERVER__API_TOKEN`), for the shop's writes and the
        // demo's reads.
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            client = client.with_bearer(t)?;
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = aiops_ingest::http_client()
            .timeout(Duration::from_secs(5))
            .default_headers(headers)
            .build()?;
        let fault = self.fault_watch();
        let now_ms = self.start_ms;
        let generator = workload::generate(&mut self.sim, &client, &args, now_ms, cancel.clone());
        let summary = report::summarize(&http, base.clone(), now_ms, cancel.clone());
        tokio::pin!(summary);
        let watcher = tokio::spawn(report::watch_incidents(
            http.clone(),
            base.clone(),
            fault,
            pagerduty,
            cancel.clone(),
        ));
        let deadline = async {
            match args.duration_secs {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = generator => {
                if let Err(e) = res {
                    warn!(error = %e, "The workload generator stopped.");
                }
            }
            _ = deadline => info!("Demo duration reached."),
            _ = cancel.cancelled() => {}
            _ = &mut summary => {}
        }
        report::print_summary(&http, &base, now_ms).await;
        report::print_scaling(&http, &base, &mut Default::default()).await;
        cancel.cancel();
        if let Ok(Some(f)) = watcher.await {
            report::print_fault_timing(&f);
        }
        Ok(())
    }

    /// The first injected fault, to time: its service and everything that calls it.
    fn fault_watch(&self) -> Option<FaultWatch> {
        let f = workload::sim_faults(&self.args).into_iter().next()?;
        let service = f.split_once(':').map_or(f.as_str(), |(s, _)| s).to_owned();
        let graph = aiops_rca::CallGraph::new(self.topology());
        let affected = self
            .sim
            .services()
            .iter()
            .map(|s| s.name.to_owned())
            .filter(|s| graph.reachable_from(s).contains(&service))
            .collect();
        Some(FaultWatch {
            service,
            affected,
            start_ms: self.start_ms + self.args.fault_after_secs as i64 * 1000,
            detected_ms: None,
            ranked_first_ms: None,
        })
    }
}

/// The demo's predictive scaling target: the frontend's request rate.
const DEMO_TARGET: &str = "frontend_rps";

/// How to look at the running demo.
fn print_banner(base: &str, args: &DemoArgs) {
    println!("aiops demo is running at {base}");
    println!(
        "  series:   curl -s '{base}/api/v1/series?match[]=http_requests_total' | head -c 600"
    );
    println!("  samples:  curl -s '{base}/api/v1/series/<id>/samples'");
    println!("  anomalies: curl -s {base}/api/v1/anomalies");
    println!("  health:   curl -s {base}/readyz ; metrics: curl -s {base}/metrics");
    println!("  point a Prometheus at it: remote_write: [{{url: {base}/api/v1/write}}]");
    println!(
        "  scaling:  kubectl get --raw '/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/{DEMO_TARGET}' --server {base}"
    );
    println!("            curl -s {base}/api/v1/scaling/{DEMO_TARGET}");
    println!("Press Ctrl-C to stop.");
    for f in workload::sim_faults(args) {
        println!(
            "  fault:    {f} from +{}s for {}s",
            args.fault_after_secs, args.fault_secs
        );
    }
}
