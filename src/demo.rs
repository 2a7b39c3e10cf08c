//! `aiops demo`: the pipeline on one machine with a built-in workload and no external service.
//!
//! A [`Simulator`] plays a small shop of microservices and sends its metrics as real
//! remote_write requests to the server running in the same process: first a few hours of
//! history, then live samples every few seconds, with optional faults injected into one service.

use std::time::Duration;

use aiops_ingest::remote_write::RemoteWriteClient;
use aiops_ingest::simulate::{Fault, FaultKind, Simulator};
use anyhow::{Context, bail};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::DemoArgs;
use crate::config::Config;

/// History is sent at this resolution.
const HISTORY_STEP_MS: i64 = 15_000;
/// Timestamps per history request (10 minutes).
const HISTORY_CHUNK: usize = 40;

fn parse_faults(sim: &Simulator, args: &DemoArgs, start_ms: i64) -> anyhow::Result<Vec<Fault>> {
    let mut out = Vec::new();
    let default = [String::from("payment:latency")];
    let faults: &[String] = match (args.no_fault, args.fault.is_empty()) {
        (true, _) => &[],
        (false, true) => &default,
        (false, false) => &args.fault,
    };
    for f in faults {
        let Some((service, kind)) = f.split_once(':') else {
            bail!("--fault {f:?}: expected SERVICE:KIND, e.g. payment:latency");
        };
        let Some(idx) = sim.service_index(service) else {
            let names: Vec<_> = sim.services().iter().map(|s| s.name).collect();
            bail!(
                "--fault {f:?}: unknown service {service:?}; services: {}",
                names.join(", ")
            );
        };
        let kind: FaultKind = kind
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--fault {f:?}: {e}"))?;
        let begin = start_ms + args.fault_after_secs as i64 * 1000;
        out.push(Fault {
            service: idx,
            kind,
            start_ms: begin,
            end_ms: begin + args.fault_secs as i64 * 1000,
        });
    }
    Ok(out)
}

/// Runs the demo until `cancel` or `--duration-secs`.
pub async fn run(args: DemoArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut sim = Simulator::demo(args.seed);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    for f in parse_faults(&sim, &args, now_ms)? {
        sim.inject(f);
    }
    let (tmp, data_dir) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new().prefix("aiops-demo-").tempdir()?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let mut cfg = Config::default().with_overrides(Some(args.listen), Some(data_dir));
    cfg.detect.scaling = demo_scaling();
    // The shop's call graph is known: incidents use it to walk from symptoms to causes.
    let topology: Vec<aiops_rca::Edge> = sim
        .services()
        .iter()
        .flat_map(|s| {
            s.calls.iter().map(|&(callee, _)| aiops_rca::Edge {
                caller: s.name.to_owned(),
                callee: sim.services()[callee].name.to_owned(),
            })
        })
        .collect();
    cfg.incidents.topology = topology.clone();
    cfg.incidents.rerank_secs = 5;
    cfg.incidents.pagerduty.routing_key = args
        .pagerduty_routing_key
        .clone()
        .map(aiops_models::Secret::new);
    cfg.incidents.pagerduty.events_url = args.pagerduty_events_url.clone();
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let pagerduty = cfg.incidents.pagerduty.clone();
    let (bound_tx, bound_rx) = oneshot::channel();
    let server = tokio::spawn(crate::serve::serve(cfg, cancel.clone(), Some(bound_tx)));
    let addr = match bound_rx.await {
        Ok(a) => a,
        Err(_) => return server.await?.context("the demo server failed to start"),
    };
    let base = format!("http://{addr}");
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

    for f in sim_faults(&args) {
        println!(
            "  fault:    {f} from +{}s for {}s",
            args.fault_after_secs, args.fault_secs
        );
    }
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let fault = sim_faults(&args).first().map(|f| FaultWatch {
        service: f.split_once(':').map_or(f.as_str(), |(s, _)| s).to_owned(),
        affected: {
            let service = f.split_once(':').map_or(f.as_str(), |(s, _)| s);
            let graph = aiops_rca::CallGraph::new(topology.iter().cloned());
            sim.services()
                .iter()
                .map(|s| s.name.to_owned())
                .filter(|s| graph.reachable_from(s).contains(service))
                .collect()
        },
        start_ms: now_ms + args.fault_after_secs as i64 * 1000,
        detected_ms: None,
        ranked_first_ms: None,
    });
    let generator = generate(&mut sim, &client, &args, now_ms, cancel.clone());
    let summary = summarize(base.clone(), now_ms, cancel.clone());
    tokio::pin!(summary);
    let watcher = tokio::spawn(watch_incidents(
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
    print_summary(&base, now_ms).await;
    print_scaling(&base, &mut Default::default()).await;
    cancel.cancel();
    if let Ok(Some(f)) = watcher.await {
        print_fault_timing(&f);
    }
    server.await??;
    drop(tmp);
    Ok(())
}

fn sim_faults(args: &DemoArgs) -> Vec<String> {
    if args.no_fault {
        Vec::new()
    } else if args.fault.is_empty() {
        vec!["payment:latency".into()]
    } else {
        args.fault.clone()
    }
}

/// The demo's predictive scaling target: the frontend's request rate.
const DEMO_TARGET: &str = "frontend_rps";

/// The frontend scaled ahead of its load: 10 requests per second per pod, pods ready after two
/// minutes; forecasts are served after an hour of history (the demo sends three).
fn demo_scaling() -> aiops_detect::scaling::ScalingConfig {
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
        }],
        ..ScalingConfig::default()
    }
}

/// Prints what detection found so far, and the scaling target's forecast next to the load it
/// forecast, every 30 seconds.
async fn summarize(base: String, since_ms: i64, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    // Forecasts made, by the time they are for.
    let mut made: std::collections::VecDeque<(i64, f64)> = Default::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                print_summary(&base, since_ms).await;
                print_scaling(&base, &mut made).await;
            }
        }
    }
}

/// One line: the load now, the forecast served for now + lead, and how the forecast made for
/// about now turned out.
async fn print_scaling(base: &str, made: &mut std::collections::VecDeque<(i64, f64)>) {
    let Ok(http) = aiops_ingest::http_client()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let url = format!("{base}/api/v1/scaling/{DEMO_TARGET}");
    let Ok(v) = get_json(&http, &url).await else {
        return;
    };
    let (Some(current), Some(value)) = (v["current"].as_f64(), v["value"].as_f64()) else {
        println!(
            "scaling {DEMO_TARGET}: {}",
            v["error"]["message"].as_str().unwrap_or("no value yet")
        );
        return;
    };
    let now = v["updated_ms"].as_i64().unwrap_or_default();
    let mut earlier = None;
    while made.front().is_some_and(|&(at, _)| at <= now) {
        earlier = made.pop_front();
    }
    let forecast = v["forecast"].as_f64();
    if let (Some(f), Some(at)) = (forecast, v["for_ms"].as_i64()) {
        made.push_back((at, f));
    }
    let mode = v["mode"].as_str().unwrap_or("?");
    let replicas = v["desired_replicas"].as_u64().unwrap_or_default();
    let mut line = format!(
        "scaling {DEMO_TARGET}: load now {current:.1} rps; serving {value:.1} ({mode}) -> {replicas} pod(s)"
    );
    if let Some(f) = forecast {
        line += &format!("; forecast p90 for +120 s {f:.1}");
    }
    if let Some((_, f)) = earlier {
        line += &format!("; forecast made for now was {f:.1}");
    }
    println!("{line}");
}

/// One line per service with anomalies since `since_ms` (the live part of the demo).
async fn print_summary(base: &str, since_ms: i64) {
    let Ok(http) = aiops_ingest::http_client()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let url = format!("{base}/api/v1/anomalies?since={}", since_ms / 1000);
    let Ok(v) = get_json(&http, &url).await else {
        return;
    };
    let events = v["anomalies"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        println!("anomalies since start: none");
        return;
    }
    let mut by_service: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for e in &events {
        let svc = e["service"].as_str().unwrap_or("-").to_owned();
        by_service
            .entry(svc)
            .or_default()
            .insert(e["metric"].as_str().unwrap_or("?").to_owned());
    }
    println!("anomalies since start: {} event(s)", events.len());
    for (svc, metrics) in by_service {
        println!(
            "  {svc:<10} {}",
            metrics.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

async fn generate(
    sim: &mut Simulator,
    client: &RemoteWriteClient,
    args: &DemoArgs,
    now_ms: i64,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let end = now_ms - now_ms.rem_euclid(HISTORY_STEP_MS);
    let start = end - args.history_hours as i64 * 3_600_000;
    let times: Vec<i64> = (0..)
        .map(|i| start + i * HISTORY_STEP_MS)
        .take_while(|&t| t < end)
        .collect();
    let mut sent = 0usize;
    for chunk in times.chunks(HISTORY_CHUNK) {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let req = sim.request(chunk);
        sent += req
            .timeseries
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>();
        client.send(&req).await?;
    }
    info!(
        samples = sent,
        hours = args.history_hours,
        "Sent workload history."
    );
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval_secs.max(1)));
    let mut last = end;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let t = jiff::Timestamp::now().as_millisecond().max(last + 1);
        last = t;
        client.send(&sim.request(&[t])).await?;
    }
}

/// The injected fault, and when we saw it.
#[derive(Debug, Clone)]
struct FaultWatch {
    service: String,
    /// The service and everything that calls it (the fault shows there).
    affected: std::collections::BTreeSet<String>,
    start_ms: i64,
    /// Start of the first anomaly event at or after the injection (data time = wall time for
    /// the live workload).
    detected_ms: Option<i64>,
    /// When the faulty service was first seen ranked first in an open incident (wall time).
    ranked_first_ms: Option<i64>,
}

fn print_fault_timing(f: &FaultWatch) {
    let secs = |t: Option<i64>| {
        t.map_or_else(
            || "not yet".to_owned(),
            |t| format!("{:.0} s", (t - f.start_ms).max(0) as f64 / 1000.0),
        )
    };
    println!(
        "fault in {}: injection -> detection {}; injection -> {} ranked first {}",
        f.service,
        secs(f.detected_ms),
        f.service,
        secs(f.ranked_first_ms)
    );
}

/// Prints each incident as it opens, its ranked candidates whenever the first one changes,
/// the PagerDuty event it queues, and the fault's timing (injection → detection → the right
/// service first). Returns the timing at the end.
async fn watch_incidents(
    base: String,
    mut fault: Option<FaultWatch>,
    pagerduty: aiops_rca::pagerduty::PagerdutyConfig,
    cancel: CancellationToken,
) -> Option<FaultWatch> {
    let Ok(http) = aiops_ingest::http_client()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return fault;
    };
    let mut shown: std::collections::HashMap<String, (String, String)> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return fault,
            _ = tick.tick() => {}
        }
        if let Some(f) = fault.as_mut()
            && f.detected_ms.is_none()
            && let Ok(v) = get_json(
                &http,
                &format!("{base}/api/v1/anomalies?since={}", f.start_ms / 1000),
            )
            .await
        {
            f.detected_ms = v["anomalies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    e["service"]
                        .as_str()
                        .is_some_and(|s| f.affected.contains(s))
                })
                .filter_map(|e| e["start_ms"].as_i64())
                .filter(|&t| t >= f.start_ms)
                .min();
        }
        let url = format!("{base}/api/v1/incidents?limit=20");
        let Ok(list) = get_json(&http, &url).await else {
            continue;
        };
        for summary in list["incidents"].as_array().into_iter().flatten() {
            let Some(id) = summary["id"].as_str() else {
                continue;
            };
            let Ok(inc) = async {
                http.get(format!("{base}/api/v1/incidents/{id}"))
                    .send()
                    .await?
                    .json::<aiops_models::incident::Incident>()
                    .await
            }
            .await
            else {
                continue;
            };
            let top = inc
                .candidates
                .first()
                .map(|c| c.service.clone())
                .unwrap_or_default();
            let status = format!("{:?}", inc.status).to_lowercase();
            let seen = shown.get(id).cloned();
            if seen.is_none() {
                println!("incident {id} opened: {}", inc.title);
                println!(
                    "  symptom: {} ({})",
                    inc.symptom.service.as_deref().unwrap_or("-"),
                    inc.symptom.series.as_deref().unwrap_or("-")
                );
                println!("  details: curl -s {base}/api/v1/incidents/{id}");
            }
            if !top.is_empty() && seen.as_ref().is_none_or(|(t, _)| *t != top) {
                println!("  root-cause candidates of {id}:");
                for c in inc.candidates.iter().take(5) {
                    println!(
                        "    {}. {:<9} {:>5.1} % {}",
                        c.rank,
                        c.service,
                        c.confidence * 100.0,
                        c.explanation
                    );
                }
                if let Some(body) = aiops_rca::pagerduty::event_for(&pagerduty, &inc) {
                    println!(
                        "  PagerDuty: {} queued for {} (dedup_key {}): {}",
                        body["event_action"].as_str().unwrap_or("?"),
                        pagerduty.events_url,
                        id,
                        body["payload"]["summary"].as_str().unwrap_or_default()
                    );
                }
                let now = jiff::Timestamp::now().as_millisecond();
                if let Some(f) = fault.as_mut()
                    && f.ranked_first_ms.is_none()
                    && top == f.service
                    && now >= f.start_ms
                    && inc.status == aiops_models::incident::IncidentStatus::Open
                {
                    f.ranked_first_ms = Some(now);
                    print_fault_timing(f);
                }
            }
            if seen.as_ref().is_some_and(|(_, s)| *s != status) && status == "resolved" {
                println!("incident {id} resolved.");
            }
            shown.insert(id.to_owned(), (top, status));
        }
    }
}

/// GET a JSON document from the demo server.
async fn get_json(http: &reqwest::Client, url: &str) -> reqwest::Result<serde_json::Value> {
    http.get(url).send().await?.json().await
}
