//! The demo's workload: the simulated shop's faults from the command line, its history sent
//! first, then live samples, as real remote_write requests.

use std::time::Duration;

use aiops_ingest::remote_write::RemoteWriteClient;
use anyhow::bail;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::DemoArgs;
use crate::simulate::{Fault, FaultKind, Simulator};

/// History is sent at this resolution.
const HISTORY_STEP_MS: i64 = 15_000;
/// Timestamps per history request (10 minutes).
const HISTORY_CHUNK: usize = 40;

/// The faults `args` asks for (`payment:latency` unless told otherwise), starting
/// `--fault-after-secs` after `start_ms`.
pub(crate) fn parse_faults(
    sim: &Simulator,
    args: &DemoArgs,
    start_ms: i64,
) -> anyhow::Result<Vec<Fault>> {
    let mut out = Vec::new();
    for f in &sim_faults(args) {
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

/// The `SERVICE:KIND` faults in effect.
pub(crate) fn sim_faults(args: &DemoArgs) -> Vec<String> {
    if args.no_fault {
        Vec::new()
    } else if args.fault.is_empty() {
        vec!["payment:latency".into()]
    } else {
        args.fault.clone()
    }
}

/// Sends `args.history_hours` of history, then a live sample every `args.interval_secs`
/// until `cancel`.
pub(crate) async fn generate(
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
