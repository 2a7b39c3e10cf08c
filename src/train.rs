//! `aiops train`: per-series seasonal profiles and calibration fitted from the archive,
//! registered as a `profiles` model version that `serve` loads at start.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use aiops_detect::registered::PROFILES;
use aiops_detect::train;
use aiops_models::registry::{ModelVersion, Registry};
use anyhow::Context;

use crate::cli::TrainArgs;

/// Fits, writes, registers (and, with `--promote`, activates) a profiles table.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Training reads the parts offline, outside the archive (which keeps their checksums): they
    // are checked first and a damaged part is left out (and named) rather than learned from.
    let verified = aiops_ingest::archive::verified_part_files(&a.data_dir).with_context(|| {
        format!(
            "{} holds no archive (expected parts/*.parquet from `aiops serve` or `aiops backfill`)",
            a.data_dir.display()
        )
    })?;
    for (path, reason) in &verified.damaged {
        tracing::warn!(path = %path.display(), %reason, "Damaged part left out of training (`aiops archive verify` reports it).");
    }
    let parts = verified.sound;
    anyhow::ensure!(
        !parts.is_empty(),
        "{}: no compacted data yet (parts/ is empty; the archive compacts WAL segments as they seal)",
        a.data_dir.display()
    );
    let catalog = aiops_ingest::archive::read_catalog(&a.data_dir)?;
    let counters: HashSet<u64> = catalog
        .snapshot()
        .iter()
        .filter(|m| aiops_models::is_counter(&m.metric))
        .map(|m| m.id.0)
        .collect();
    let (_, last) = train::time_range(&parts)?.context("the archive's parts hold no samples")?;
    let from = last - (a.days * 86_400_000.0) as i64;
    let cfg = aiops_detect::registered::active_detector(&a.data_dir)?
        .map(|(_, c)| c)
        .unwrap_or_default();
    let profiles = train::fit_profiles(&parts, &counters, from, last, &cfg)?;
    anyhow::ensure!(
        !profiles.is_empty(),
        "no series has samples in the last {} days of the archive",
        a.days
    );

    let path = Registry::path(&a.data_dir);
    let mut reg = Registry::load(&path)?;
    let next = reg.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    let file = format!("profiles-v{next}.parquet");
    train::write_profiles(&path.with_file_name(&file), &profiles)?;
    let seasonal = profiles
        .iter()
        .filter(|p| p.day.iter().filter(|b| b.is_finite()).count() >= 48)
        .count();
    let samples: u64 = profiles.iter().map(|p| p.samples).sum();
    let scores = BTreeMap::from([
        ("series".to_owned(), profiles.len() as f64),
        ("series_with_daily_profile".to_owned(), seasonal as f64),
        ("samples".to_owned(), samples as f64),
    ]);
    let n = reg.register(ModelVersion {
        version: 0,
        kind: PROFILES.into(),
        params: serde_json::json!({ "file": file, "detector": cfg }),
        data: Some(format!("archive:{}", a.data_dir.display())),
        range_ms: Some((from, last)),
        scores,
        created_ms: jiff::Timestamp::now().as_millisecond(),
        note: a.note,
    });
    if a.promote {
        reg.promote(n)?;
    }
    reg.save(&path)?;
    println!(
        "trained {PROFILES} version {n}: {} series ({seasonal} with a daily profile), {samples} samples, {:.1} s{}",
        profiles.len(),
        started.elapsed().as_secs_f64(),
        if a.promote {
            "; active"
        } else {
            "; `aiops models promote N` makes serve use it"
        }
    );
    Ok(())
}
