//! `[[outputs.remote_write]]`: starts each output, hands detection its sink for the per-series
//! derived series, and samples the rest on each output's `flush_secs` — per scaling target its
//! load, forecast quantiles, served value and desired replicas, and the open incidents:
//!
//! | series | labels |
//! |---|---|
//! | `aiops_scaling_load`, `aiops_scaling_value`, `aiops_scaling_desired_replicas` | `target` |
//! | `aiops_scaling_forecast` | `target`, `quantile` (`0.5`, `0.9`, `0.99`; the forecast at the lead) |
//! | `aiops_incidents_open` | — |

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aiops_detect::derived::{DerivedOut, DerivedSeries, OutputSink};
use aiops_ingest::remote_write::output::{self, OutputConfig, OutputFamilies, OutputSender};
use aiops_ingest::remote_write::proto::{Label, Sample, TimeSeries};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An output's channel as detection sees it.
#[derive(Debug)]
struct Sink(OutputSender);

impl DerivedOut for Sink {
    fn send(&self, series: Vec<DerivedSeries>) {
        self.0.send(series.into_iter().map(to_wire).collect());
    }

    fn series_not_selected(&self) {
        self.0.metrics().series_not_selected();
    }
}

fn to_wire(s: DerivedSeries) -> TimeSeries {
    TimeSeries {
        labels: s
            .labels
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
        samples: s
            .samples
            .into_iter()
            .map(|(timestamp, value)| Sample { value, timestamp })
            .collect(),
    }
}

/// What the pipeline's other state looks like to the outputs.
pub struct StateSources {
    /// Scaling targets and their state.
    pub scaling: Arc<aiops_detect::scaling::ScalingConfig>,
    /// Their state.
    pub scaling_state: aiops_detect::published::SharedScaling,
    /// The incidents.
    pub incidents: Arc<aiops_api::incidents::IncidentService>,
}

/// The running outputs.
pub struct Outputs {
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Outputs {
    /// Starts every output; returns them and detection's sinks (in order).
    pub fn start(
        configs: &[OutputConfig],
        data_dir: &Path,
        registry: &mut Registry,
        state: StateSources,
    ) -> anyhow::Result<(Self, Vec<OutputSink>)> {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut sinks = Vec::new();
        if configs.is_empty() {
            return Ok((Self { tasks, cancel }, sinks));
        }
        let families = OutputFamilies::register(registry);
        let state = Arc::new(state);
        for cfg in configs {
            let (sender, mut t) = output::start(cfg.clone(), data_dir, &families, cancel.clone())?;
            tasks.append(&mut t);
            if cfg.anomaly {
                sinks.push(OutputSink::new(
                    Box::new(Sink(sender.clone())),
                    &cfg.select,
                    cfg.max_series,
                ));
            }
            if cfg.scaling || cfg.incidents {
                tasks.push(tokio::spawn(sample_state(
                    sender,
                    cfg.clone(),
                    state.clone(),
                    cancel.clone(),
                )));
            }
        }
        Ok((Self { tasks, cancel }, sinks))
    }

    /// Stops them (after detection stopped): each queues what it holds on disk, which the next
    /// start sends.
    pub async fn stop(self, deadline: tokio::time::Instant) {
        self.cancel.cancel();
        for t in self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!(
                    "A remote_write output still running at the end of the grace period; cut off."
                );
            }
        }
    }
}

fn series(name: &str, labels: &[(&str, &str)], ts: i64, value: f64) -> Option<TimeSeries> {
    if !value.is_finite() {
        return None;
    }
    let mut l: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label {
            name: (*k).into(),
            value: (*v).into(),
        })
        .collect();
    l.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    l.sort_by(|a, b| a.name.cmp(&b.name));
    Some(TimeSeries {
        labels: l,
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
    })
}

async fn sample_state(
    sender: OutputSender,
    cfg: OutputConfig,
    state: Arc<StateSources>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.flush_secs.max(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let mut out = Vec::new();
        if cfg.scaling {
            for t in &state.scaling.targets {
                let v = state
                    .scaling_state
                    .lock()
                    .value(&state.scaling, &t.name, None, now);
                let Ok(v) = v else { continue };
                let target = [("target", t.name.as_str())];
                out.extend(series("aiops_scaling_load", &target, now, v.current));
                out.extend(series("aiops_scaling_value", &target, now, v.value));
                out.extend(series(
                    "aiops_scaling_desired_replicas",
                    &target,
                    now,
                    v.desired_replicas as f64,
                ));
                for (q, f) in [
                    ("0.5", v.forecast_p50),
                    ("0.9", v.forecast_p90),
                    ("0.99", v.forecast_p99),
                ] {
                    if let Some(f) = f {
                        out.extend(series(
                            "aiops_scaling_forecast",
                            &[("target", t.name.as_str()), ("quantile", q)],
                            now,
                            f,
                        ));
                    }
                }
            }
        }
        if cfg.incidents {
            let open = state
                .incidents
                .snapshot()
                .incidents
                .iter()
                .filter(|i| i.status == aiops_models::incident::IncidentStatus::Open)
                .count();
            out.extend(series("aiops_incidents_open", &[], now, open as f64));
        }
        sender.send(out);
    }
}
