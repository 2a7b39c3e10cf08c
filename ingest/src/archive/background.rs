//! Work off the write path, each on a thread of its own: compaction of sealed segments into
//! parts, merges of parts, retention.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use aiops_models::{SampleBatch, StaleMarker};
use tracing::{error, info, warn};

use super::{
    CatalogLine, Shared, batch_bytes, merge, now_ms, part, part_path, range_path, sync_dir,
    wal_path,
};
use crate::IngestError;

/// Compacts sealed segments and enforces retention until the stage stops.
pub(super) fn compactor(shared: Arc<Shared>, rx: mpsc::Receiver<u64>, merges: mpsc::Sender<()>) {
    let every = Duration::from_secs(shared.cfg.retention_check_secs);
    let mut last_retention: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(_) if shared.stopping.load(Ordering::Relaxed) => {
                info!("Stopping: sealed WAL segments are compacted at the next start.");
                break;
            }
            Ok(seq) => match compact(&shared, seq) {
                Ok(()) => {
                    let _ = merges.send(());
                }
                Err(e) => {
                    // The segment stays in the WAL and the head; the next start retries.
                    error!(seq, error = %e, "Compaction failed; the segment stays in the WAL.");
                    shared.fail(e.to_string());
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_retention.is_none_or(|t| t.elapsed() >= every) {
            last_retention = Some(Instant::now());
            enforce_retention(&shared, now_ms());
        }
    }
}

/// Merges parts on a thread of its own, at a lower CPU priority than ingest and compaction:
/// a long merge never holds up the compaction that bounds the head, and under saturation
/// merges wait for spare CPU. Woken after each compaction; gives up a merge on shutdown.
pub(super) fn merger(shared: Arc<Shared>, wake: mpsc::Receiver<()>) {
    lower_thread_priority();
    while !shared.stopping.load(Ordering::Relaxed) {
        if merge_step(&shared) {
            continue;
        }
        match wake.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Nice 10 for the calling thread (Linux keeps a nice value per thread). `aiops bench
/// cardinality` and `scripts/compare_ingest.sh` show what it pays (README, "The archive").
#[allow(unsafe_code)]
pub(super) fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            warn!("Could not lower the merge thread's priority; merges compete with ingest.");
        }
    }
}

/// Merges one run of similar parts, if there is one (see [`merge`]); true if it merged.
fn merge_step(shared: &Shared) -> bool {
    let cfg = &shared.cfg;
    if cfg.merge_fan_in < 2 {
        return false;
    }
    let inputs = {
        let parts = shared.parts.read().unwrap_or_else(|p| p.into_inner());
        match merge::plan(&parts, cfg.merge_fan_in, cfg.merge_max_rows) {
            Some(p) => p,
            None => return false,
        }
    };
    if !shared.verify_merge_inputs(&inputs) {
        // A damaged input was quarantined (or one vanished): plan again.
        return true;
    }
    let (first, last) = (inputs[0].first_seq, inputs[inputs.len() - 1].seq);
    let path = range_path(&cfg.data_dir, first, last);
    let started = Instant::now();
    let merged = match merge::merge(&inputs, &path, &shared.stopping) {
        Ok(m) => m,
        Err(reason) => {
            // The inputs stay; a part removed by retention meanwhile is the usual cause.
            if !shared.stopping.load(Ordering::Relaxed) {
                warn!(first, last, %reason, "Merging parts failed; they stay as they are.");
            }
            let _ = fs::remove_file(path.with_extension("parquet.tmp"));
            return false;
        }
    };
    shared.record_sums(&merged);
    {
        let mut parts = shared.parts.write().unwrap_or_else(|p| p.into_inner());
        parts.retain(|p| !(first..=last).contains(&p.seq));
        parts.push(merged.clone());
        parts.sort_by_key(|p| p.first_seq);
    }
    for p in &inputs {
        if let Err(e) = fs::remove_file(&p.path) {
            warn!(path = %p.path.display(), error = %e, "Could not remove a merged part's input.");
        }
    }
    if let Err(e) = sync_dir(&cfg.data_dir.join("parts")) {
        warn!(error = %e, "Could not sync the parts directory after a merge.");
    }
    shared.metrics.archive_merges.inc();
    shared.update_size_gauge();
    info!(
        first,
        last,
        parts = inputs.len(),
        samples = merged.rows,
        bytes_before = inputs.iter().map(|p| p.bytes).sum::<u64>(),
        bytes = merged.bytes,
        secs = started.elapsed().as_secs_f64(),
        "Merged archive parts."
    );
    true
}

fn compact(shared: &Shared, seq: u64) -> Result<(), IngestError> {
    let started = Instant::now();
    let dir = &shared.cfg.data_dir;
    // Batches are immutable once in the head; clone the Arc'd columns, not the data.
    let batches: Vec<SampleBatch> = match shared
        .head
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&seq)
    {
        Some(seg) => seg.batches.iter().map(|(b, _)| b.clone()).collect(),
        None => return Ok(()),
    };
    let wal = wal_path(dir, seq);
    let wal_len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // 1. Series and stale markers into the catalog file, synced.
    let mut lines = Vec::new();
    for b in &batches {
        for meta in &b.new_series {
            serde_json::to_writer(&mut lines, &CatalogLine::Series((**meta).clone()))
                .expect("serialising a SeriesMeta cannot fail");
            lines.push(b'\n');
        }
        for StaleMarker {
            series_id,
            timestamp_ms,
        } in &b.stale
        {
            serde_json::to_writer(
                &mut lines,
                &CatalogLine::Stale {
                    stale: *series_id,
                    timestamp_ms: *timestamp_ms,
                },
            )
            .expect("serialising a stale marker cannot fail");
            lines.push(b'\n');
        }
    }
    if !lines.is_empty() {
        let path = dir.join("catalog.jsonl");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(IngestError::io("open", &path))?;
        f.write_all(&lines)
            .map_err(IngestError::io("append", &path))?;
        f.sync_data().map_err(IngestError::io("fsync", &path))?;
    }
    // 2. The part, through a synced temporary file.
    let part = if batches.iter().any(|b| !b.is_empty()) {
        let path = part_path(dir, seq);
        let info = part::write_part(seq, &path, &batches).map_err(|reason| {
            IngestError::ArchiveCorrupt {
                path: path.clone(),
                reason: reason.to_string(),
            }
        })?;
        sync_dir(&dir.join("parts"))?;
        shared.record_sums(&info);
        Some(info)
    } else {
        None
    };
    // 3. Swap head for part, then drop the segment.
    let freed = {
        let mut parts = shared.parts.write().unwrap_or_else(|p| p.into_inner());
        let mut head = shared.head.write().unwrap_or_else(|p| p.into_inner());
        if let Some(info) = &part {
            parts.push(info.clone());
        }
        head.remove(&seq)
    };
    if let Some(seg) = freed {
        let bytes: u64 = seg
            .batches
            .iter()
            .map(|(b, bloom)| batch_bytes(b, bloom))
            .sum();
        shared.add_head_bytes(-(bytes as i64));
    }
    fs::remove_file(&wal).map_err(IngestError::io("remove", &wal))?;
    sync_dir(&dir.join("wal"))?;
    shared.wal_bytes.fetch_sub(
        wal_len.min(shared.wal_bytes.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    shared.update_size_gauge();
    info!(
        seq,
        samples = part.as_ref().map_or(0, |p| p.rows),
        bytes = part.as_ref().map_or(0, |p| p.bytes),
        secs = started.elapsed().as_secs_f64(),
        "Compacted WAL segment to Parquet."
    );
    Ok(())
}

/// Deletes parts older than the retention age, then the oldest parts while the archive is
/// over its size limit. The WAL (not yet compacted data) is never deleted.
pub(super) fn enforce_retention(shared: &Shared, now_ms: i64) {
    let cutoff = now_ms - (shared.cfg.retention_secs as i64) * 1000;
    let mut doomed = Vec::new();
    {
        let mut parts = shared.parts.write().unwrap_or_else(|p| p.into_inner());
        parts.sort_by_key(|p| p.seq);
        let mut total: u64 =
            parts.iter().map(|p| p.bytes).sum::<u64>() + shared.wal_bytes.load(Ordering::Relaxed);
        parts.retain(|p| {
            let expired = p.max_ts < cutoff || total > shared.cfg.retention_max_bytes;
            if expired {
                total = total.saturating_sub(p.bytes);
                doomed.push(p.clone());
            }
            !expired
        });
    }
    for p in doomed {
        match fs::remove_file(&p.path) {
            Ok(()) => {
                shared.metrics.archive_parts_expired.inc();
                info!(path = %p.path.display(), max_ts = p.max_ts, bytes = p.bytes, "Retention removed a part.");
            }
            Err(e) => {
                warn!(path = %p.path.display(), error = %e, "Retention could not remove a part.")
            }
        }
    }
    shared.update_size_gauge();
}
