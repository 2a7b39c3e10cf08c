//! `aiops demo`: the server, configured for the simulated shop of `aiops_demo`, with the shop
//! driving it.

use anyhow::Context;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs the demo until `cancel` or `--duration-secs`.
pub async fn run(args: aiops_demo::DemoArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let demo = aiops_demo::Demo::new(args)?;
    let args = demo.args();
    let (tmp, data_dir) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new().prefix("aiops-demo-").tempdir()?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    // The defaults, with `AIOPS__…` variables as `serve` reads them (e.g.
    // `AIOPS__ARCHIVE__SEGMENT_MAX_SECS=10` for Parquet parts within seconds).
    let mut cfg = Config::load(None)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_overrides(Some(args.listen), Some(data_dir));
    cfg.detect.scaling = demo.scaling();
    cfg.incidents.topology = demo.topology();
    cfg.incidents.rerank_secs = 5;
    cfg.incidents.pagerduty.routing_key = args
        .pagerduty_routing_key
        .clone()
        .map(aiops_models::Secret::new);
    cfg.incidents.pagerduty.events_url = args.pagerduty_events_url.clone();
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let pagerduty = cfg.incidents.pagerduty.clone();
    let token = cfg.server.api_token.clone();
    let (bound_tx, bound_rx) = oneshot::channel();
    let server = tokio::spawn(crate::serve::serve(cfg, cancel.clone(), Some(bound_tx)));
    let addr = match bound_rx.await {
        Ok(a) => a,
        Err(_) => return server.await?.context("the demo server failed to start"),
    };
    demo.run(addr, pagerduty, token.as_ref().map(|t| t.expose()), cancel)
        .await?;
    server.await??;
    drop(tmp);
    Ok(())
}
