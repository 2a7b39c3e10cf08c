//! `aiops eval autoscale`: one workload, or every CSV of a folder, replayed through the HPA model
//! at one or more pod start-up times — reactive, predictive and shadow side by side.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::{csv_files, file_name, median_interval_ms, read_ordered};
use crate::args::AutoscaleArgs;
use crate::autoscale::{Replay, ReplayOptions, replay_traced};

pub(super) fn run(a: AutoscaleArgs) -> anyhow::Result<()> {
    if let Some(c) = a.capacity_per_pod {
        anyhow::ensure!(
            c > 0.0 && c.is_finite(),
            "--capacity-per-pod must be positive"
        );
    }
    anyhow::ensure!(
        a.median_pods > 0.0 && a.median_pods.is_finite(),
        "--median-pods must be positive"
    );
    anyhow::ensure!(
        (0.5..=0.99).contains(&a.quantile),
        "--quantile must be in [0.5, 0.99]"
    );
    if let Some(b) = a.under_budget {
        anyhow::ensure!(
            (0.01..=0.5).contains(&b),
            "--under-budget must be in [0.01, 0.5]"
        );
    }
    if let Some(b) = a.extra_budget {
        anyhow::ensure!(
            (0.0..=10.0).contains(&b),
            "--extra-budget must be in [0, 10]"
        );
    }
    anyhow::ensure!(
        (0.0..1.0).contains(&a.warmup_share),
        "--warmup-share must be in [0, 1)"
    );
    anyhow::ensure!(
        a.min_replicas <= a.max_replicas,
        "--min-replicas exceeds --max-replicas"
    );
    anyhow::ensure!(!a.startup_secs.is_empty(), "--startup-secs is empty");
    let files = csv_files(&a.data)?;
    let single = files.len() == 1 && a.startup_secs.len() == 1 && a.data.is_file();
    anyhow::ensure!(
        a.trace.is_none() || single,
        "--trace needs one CSV and one --startup-secs"
    );
    let started = Instant::now();
    let mut workloads = Vec::new();
    for path in &files {
        let (times, values, repeated_rows) = read_ordered(path)?;
        anyhow::ensure!(times.len() >= 3, "{}: too few rows", path.display());
        let capacity = match a.capacity_per_pod {
            Some(c) => c,
            None => capacity_for(&values, a.median_pods)
                .with_context(|| format!("{}: no positive load", path.display()))?,
        };
        for &startup in &a.startup_secs {
            let opts = ReplayOptions {
                capacity_per_pod: capacity,
                startup_secs: startup,
                lead_secs: a.lead_secs.unwrap_or(startup),
                quantile: a.quantile,
                under_budget: a.under_budget,
                extra_budget: a.extra_budget,
                sync_secs: 15,
                tolerance: 0.1,
                stabilisation_secs: 300,
                min_replicas: a.min_replicas,
                max_replicas: a.max_replicas,
                warmup: (times.len() as f64 * a.warmup_share) as usize,
                max_gap_secs: a.max_gap_secs.unwrap_or_else(|| default_gap_secs(&times)),
            };
            let mut trace = a.trace.as_ref().map(|_| Vec::new());
            let r = replay_traced(&times, &values, Default::default(), opts, trace.as_mut());
            if let (Some(path), Some(steps)) = (&a.trace, &trace) {
                write_trace(path, opts.lead_secs, steps)?;
            }
            let mut out = serde_json::to_value(&r)?;
            out["file"] = file_name(path, &a.data).into();
            out["rows"] = times.len().into();
            out["repeated_rows"] = repeated_rows.into();
            out["capacity_per_pod"] = capacity.into();
            out["startup_secs"] = startup.into();
            out["lead_secs"] = opts.lead_secs.into();
            out["max_gap_secs"] = opts.max_gap_secs.into();
            out["quantile"] = a.quantile.into();
            out["under_budget"] = a.under_budget.into();
            out["extra_budget"] = a.extra_budget.into();
            workloads.push((startup, r, out));
        }
    }
    let hpa = serde_json::json!({"sync_secs": 15, "tolerance": 0.1, "scale_down_stabilisation_secs": 300});
    let out = if single {
        let (_, _, mut out) = workloads.pop().expect("one replay");
        out["hpa"] = hpa;
        out["seconds"] = started.elapsed().as_secs_f64().into();
        out
    } else {
        let summary: Vec<serde_json::Value> = a
            .startup_secs
            .iter()
            .map(|&s| summarise(s, workloads.iter().filter(|w| w.0 == s).map(|w| &w.1)))
            .collect();
        serde_json::json!({
            "workloads": workloads.into_iter().map(|w| w.2).collect::<Vec<_>>(),
            "summary": summary,
            "hpa": hpa,
            "seconds": started.elapsed().as_secs_f64(),
        })
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Three times the median interval between samples (seconds): longer is a gap.
fn default_gap_secs(times: &[i64]) -> u64 {
    median_interval_ms(times).map_or(0, |m| (3 * m / 1000).max(1) as u64)
}

/// The capacity per pod at which the median load needs `pods` pods.
fn capacity_for(values: &[f64], pods: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f64::total_cmp);
    let median = *v.get(v.len() / 2)?;
    (median > 0.0).then_some(median / pods)
}

/// The mean over workloads of each policy's change against reactive, and the totals.
fn summarise<'a>(startup: u64, runs: impl Iterator<Item = &'a Replay>) -> serde_json::Value {
    let runs: Vec<&Replay> = runs.collect();
    let n = runs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Replay) -> f64| runs.iter().map(|r| f(r)).sum::<f64>() / n;
    let change = |p: &crate::autoscale::PolicyOutcome, r: &crate::autoscale::PolicyOutcome| {
        let under = if r.under_pod_minutes > 0.0 {
            1.0 - p.under_pod_minutes / r.under_pod_minutes
        } else {
            0.0
        };
        let extra = if r.pod_minutes > 0.0 {
            p.pod_minutes / r.pod_minutes - 1.0
        } else {
            0.0
        };
        (under, extra)
    };
    let total = |f: &dyn Fn(&Replay) -> f64| runs.iter().map(|r| f(r)).sum::<f64>();
    serde_json::json!({
        "startup_secs": startup,
        "workloads": runs.len(),
        "mean_under_reduction": mean(&|r| r.under_reduction),
        "mean_extra_pod_minutes": mean(&|r| r.extra_pod_minutes),
        "shadow_served_mean_under_reduction": mean(&|r| change(&r.shadow.served, &r.reactive).0),
        "shadow_would_have_mean_under_reduction": mean(&|r| change(&r.shadow.would_have, &r.reactive).0),
        "shadow_would_have_mean_extra_pod_minutes": mean(&|r| change(&r.shadow.would_have, &r.reactive).1),
        "mean_final_quantile": mean(&|r| r.final_quantile),
        "mean_under_share": mean(&|r| r.under_share.unwrap_or(0.0)),
        "reactive": {
            "under_pod_minutes": total(&|r| r.reactive.under_pod_minutes),
            "pod_minutes": total(&|r| r.reactive.pod_minutes),
        },
        "predictive": {
            "under_pod_minutes": total(&|r| r.predictive.under_pod_minutes),
            "pod_minutes": total(&|r| r.predictive.pod_minutes),
        },
    })
}

/// Writes an autoscale replay's trace as CSV (`forecast_for` = the time the forecast is for).
fn write_trace(
    path: &Path,
    lead_secs: u64,
    steps: &[crate::autoscale::TraceStep],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let iso = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
    };
    writeln!(
        w,
        "timestamp,load,needed,forecast_for,p50,p90,p99,served,reactive_ready,predictive_ready"
    )?;
    for s in steps {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{}",
            iso(s.t_ms),
            s.load,
            s.needed,
            iso(s.t_ms + lead_secs as i64 * 1000),
            s.p50,
            s.p90,
            s.p99,
            s.served,
            s.reactive_ready,
            s.predictive_ready
        )?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}
