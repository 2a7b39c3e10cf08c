//! `aiops eval backtest`: how many anomaly events each sensitivity would have raised on the
//! archive, per series and per service — before paging is turned on.

use std::collections::{BTreeMap, HashSet};

use aiops_detect::replay::{ReplayWindow, replay_events};
use aiops_models::Selector;
use anyhow::Context;

use aiops_detect::DetectorConfig;

use crate::args::BacktestArgs;

/// The server's detection settings a backtest replays with.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Detector parameters (the active model version's, else the configuration's).
    pub detector: DetectorConfig,
    /// The score at which a series alarms.
    pub event_score: f64,
    /// An alarm within this many seconds of the previous one extends its event.
    pub event_quiet_secs: u64,
}

const DAY_MS: f64 = 86_400_000.0;

const DEFAULT_SENSITIVITIES: [f64; 4] = [0.001, 0.01, 0.1, 1.0];

/// Replays, counts and prints JSON.
pub(super) fn run(a: BacktestArgs, detect: ReplaySettings) -> anyhow::Result<()> {
    let selector: Option<Selector> = a
        .selector
        .as_deref()
        .map(|s| {
            s.parse()
                .map_err(|e| anyhow::anyhow!("--selector {s:?}: {e}"))
        })
        .transpose()?;
    let sensitivities = if a.sensitivity.is_empty() {
        DEFAULT_SENSITIVITIES.to_vec()
    } else {
        a.sensitivity.clone()
    };
    for &s in &sensitivities {
        anyhow::ensure!(
            s > 0.0 && s <= 1000.0,
            "--sensitivity {s}: false alarms per series per day, above 0 and at most 1000"
        );
    }
    anyhow::ensure!(a.days > 0.0, "--days must be positive");
    let warmup_days = a.warmup_days.unwrap_or(detect.detector.young_days);
    anyhow::ensure!(
        warmup_days >= 0.0 && warmup_days.is_finite(),
        "--warmup-days must be 0 or more"
    );
    let verified = aiops_ingest::archive::verified_part_files(&a.data_dir)
        .with_context(|| format!("{} holds no archive", a.data_dir.display()))?;
    for (path, reason) in &verified.damaged {
        tracing::warn!(path = %path.display(), %reason, "Damaged part left out of the backtest.");
    }
    anyhow::ensure!(
        !verified.sound.is_empty(),
        "{}: no compacted data yet (parts/ is empty)",
        a.data_dir.display()
    );
    let catalog = aiops_ingest::archive::read_catalog(&a.data_dir)?;
    let metas: BTreeMap<u64, _> = catalog
        .snapshot()
        .into_iter()
        .map(|m| (m.id.0, m))
        .collect();
    let counters: HashSet<u64> = metas
        .values()
        .filter(|m| aiops_models::is_counter(&m.metric))
        .map(|m| m.id.0)
        .collect();
    let keep = |id: u64| match (&selector, metas.get(&id)) {
        (Some(sel), Some(m)) => sel.matches(m),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let (_, last) = aiops_detect::train::time_range(&verified.sound)?
        .context("the archive's parts hold no samples")?;
    let from = last - (a.days * DAY_MS) as i64;
    let teach_from = from - (warmup_days * DAY_MS) as i64;
    let cfg = detect.detector;
    let replays = replay_events(
        &verified.sound,
        &counters,
        ReplayWindow {
            teach_from_ms: teach_from,
            from_ms: from,
            to_ms: last,
        },
        &keep,
        &cfg,
        &sensitivities,
        detect.event_score,
        detect.event_quiet_secs as i64 * 1000,
    )?;
    let series_days: f64 = replays
        .iter()
        .map(|r| ((r.last_ms - r.first_ms) as f64 / DAY_MS).max(1.0 / 24.0))
        .sum();
    // Series whose history began too late to be established when counting started.
    let young = replays
        .iter()
        .filter(|r| detect.detector.is_young(r.first_ms - r.history_from_ms))
        .count();
    let mut settings = Vec::new();
    for (k, &sensitivity) in sensitivities.iter().enumerate() {
        let total: u64 = replays.iter().map(|r| r.events[k]).sum();
        let mut by_service: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for r in &replays {
            let service = metas
                .get(&r.series_id)
                .and_then(|m| aiops_models::service_of(m))
                .unwrap_or_else(|| "(none)".into());
            let e = by_service.entry(service).or_default();
            e.0 += 1;
            e.1 += r.events[k];
        }
        let mut services: Vec<_> = by_service.into_iter().collect();
        services.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
        let mut top: Vec<_> = replays.iter().filter(|r| r.events[k] > 0).collect();
        top.sort_by(|a, b| {
            b.events[k]
                .cmp(&a.events[k])
                .then(a.series_id.cmp(&b.series_id))
        });
        settings.push(serde_json::json!({
            "sensitivity": sensitivity,
            "events": total,
            "events_per_series_per_day": total as f64 / series_days.max(f64::MIN_POSITIVE),
            "series_with_events": top.len(),
            "by_service": services.iter().take(a.top).map(|(s, (n, e))| serde_json::json!({
                "service": s, "series": n, "events": e,
            })).collect::<Vec<_>>(),
            "top_series": top.iter().take(a.top).map(|r| {
                let m = metas.get(&r.series_id);
                serde_json::json!({
                    "series_id": format!("{:016x}", r.series_id),
                    "metric": m.map(|m| m.metric.clone()),
                    "labels": m.map(|m| m.labels.clone()),
                    "events": r.events[k],
                })
            }).collect::<Vec<_>>(),
        }));
    }
    let out = serde_json::json!({
        "from_ms": from,
        "to_ms": last,
        "warmup_from_ms": teach_from,
        "warmup_days": warmup_days,
        "young_series": young,
        "series": replays.len(),
        "samples": replays.iter().map(|r| r.samples).sum::<u64>(),
        "series_days": series_days,
        "event_score": detect.event_score,
        "event_quiet_secs": detect.event_quiet_secs,
        "settings": settings,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
