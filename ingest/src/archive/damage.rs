//! What can go wrong with the archive's files and disk, and what the archive does about it:
//! damage found at open or on a read is contained (quarantined, counted, logged at ERROR with
//! file and offset, reported by `/readyz`), parts are checked in the background after open, and
//! readiness probes the disk rather than remembering the last write.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{error, info, warn};

use super::integrity::{self, PartSums, Quarantine};
use super::part::{self, PartInfo};
use super::wal::Replay;
use super::{Archive, Shared};
use crate::{IngestError, IngestMetrics};

/// Damage reports kept for `/readyz`.
pub(super) const KEPT: usize = 16;
/// How long a readiness probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// Opens the part at `path` against its recorded checksums; a part without any (written before
/// checksums, or its line lost in a crash) is checksummed now and trusted.
pub(super) fn open_part(
    first: u64,
    last: u64,
    path: &Path,
    sums: &HashMap<String, PartSums>,
) -> Result<PartInfo, IngestError> {
    let known = match recorded(sums, path) {
        Some(s) => s.clone(),
        None => {
            info!(path = %path.display(), "Part has no recorded checksums; recording them now.");
            integrity::sums_of(path)?
        }
    };
    part::open_part(first, last, path, Arc::new(known))
}

/// The checksums recorded for the part at `path`.
pub(super) fn recorded<'a>(
    sums: &'a HashMap<String, PartSums>,
    path: &Path,
) -> Option<&'a PartSums> {
    sums.get(path.file_name()?.to_str()?)
}

/// Moves a part that failed at open into quarantine.
pub(super) fn quarantine_at_open(
    quarantine: &Quarantine,
    metrics: &IngestMetrics,
    path: &Path,
    reason: &str,
    sums: Option<&PartSums>,
) -> Result<(), IngestError> {
    let to = quarantine.take(path, reason, sums)?;
    error!(path = %path.display(), quarantined = %to.display(), %reason, "Archive part is damaged; moved to quarantine, its samples are not served.");
    metrics.archive_damage("part");
    Ok(())
}

/// Contains what replaying a segment found: each damaged stretch is copied to quarantine and
/// reported; an invalid tail is cut — a torn write when `newest`, damage (kept too) otherwise.
pub(super) fn contain_wal(
    quarantine: &Quarantine,
    metrics: &IngestMetrics,
    path: &Path,
    bytes: &[u8],
    r: &Replay,
    newest: bool,
    damage: &mut Vec<String>,
) -> Result<(), IngestError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut contain = |start: u64, end: u64, reason: &str| -> Result<(), IngestError> {
        let kept = quarantine.keep(
            &format!("{name}.{start}-{end}"),
            &bytes[start as usize..end as usize],
            reason,
        )?;
        error!(path = %path.display(), offset = start, bytes = end - start, quarantined = %kept.display(), %reason,
            "Damaged stretch of a WAL segment skipped; the records after it are kept.");
        metrics.archive_damage("wal");
        metrics.archive_damaged_bytes.inc_by(end - start);
        push_damage(
            damage,
            format!("{}: bytes {start}..{end} skipped: {reason}", path.display()),
        );
        Ok(())
    };
    for d in &r.damage {
        contain(d.range.start, d.range.end, &d.reason)?;
    }
    if let Some(reason) = &r.tail {
        if newest {
            warn!(path = %path.display(), %reason, valid_bytes = r.valid_len, "Cutting the torn tail of the newest WAL segment (a write the crash interrupted, never acknowledged).");
        } else {
            contain(r.valid_len, bytes.len() as u64, reason)?;
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(IngestError::io("open", path))?;
        f.set_len(r.valid_len)
            .map_err(IngestError::io("truncate", path))?;
        f.sync_all().map_err(IngestError::io("fsync", path))?;
    }
    Ok(())
}

fn push_damage(list: &mut Vec<String>, what: String) {
    list.push(what);
    if list.len() > KEPT {
        list.remove(0);
    }
}

impl Shared {
    /// Takes a damaged part out of service: out of the part list (reads no longer see it),
    /// into quarantine. Does nothing if it already left the list (another reader, a merge or
    /// retention got there first).
    pub(super) fn quarantine_part(&self, path: &Path, reason: &str) {
        let removed = {
            let mut parts = self.parts.write().unwrap_or_else(|p| p.into_inner());
            let at = parts.iter().position(|p| p.path == path);
            at.map(|i| parts.remove(i))
        };
        let Some(removed) = removed else {
            return;
        };
        match self.quarantine.take(path, reason, Some(&removed.sums)) {
            Ok(to) => {
                error!(path = %path.display(), quarantined = %to.display(), %reason, "Archive part is damaged; moved to quarantine, its samples are no longer served.")
            }
            Err(e) => {
                error!(path = %path.display(), %reason, error = %e, "Archive part is damaged and could not be moved to quarantine; it is no longer served.")
            }
        }
        self.metrics.archive_damage("part");
        push_damage(
            &mut self.damage.lock().unwrap_or_else(|p| p.into_inner()),
            format!("{}: {reason}", path.display()),
        );
        self.metrics
            .archive_quarantine_files
            .set(self.quarantine.pending().len() as i64);
        self.update_size_gauge();
    }

    /// Names of the files waiting in quarantine (reads the directory).
    pub(super) fn quarantined_names(&self) -> Vec<String> {
        self.quarantine
            .pending()
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }

    /// Checks the whole files of a merge's inputs; false (and a damaged one quarantined) if
    /// any fails or vanished.
    pub(super) fn verify_merge_inputs(&self, inputs: &[PartInfo]) -> bool {
        for p in inputs {
            if let Err(reason) = integrity::verify_file(&p.path, &p.sums) {
                if p.path.exists() {
                    self.quarantine_part(&p.path, &reason.to_string());
                }
                return false;
            }
            self.metrics.archive_parts_verified.inc();
        }
        true
    }

    /// Records a new part's checksums in the part catalog. If that fails the part is
    /// checksummed again at the next open.
    pub(super) fn record_sums(&self, part: &PartInfo) {
        if let Err(e) = self.part_catalog.record(&part.path, &part.sums) {
            warn!(path = %part.path.display(), error = %e, "Could not record a part's checksums; they are computed again at the next start.");
        }
    }
}

/// Checks every part in place at open against its whole-file checksum, on a thread of its own
/// at low priority; quarantines the damaged. Holds the archive only weakly: it stops when the
/// archive is dropped.
pub(super) fn spawn_verifier(shared: &Arc<Shared>) {
    let parts: Vec<PartInfo> = shared
        .parts
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if parts.is_empty() {
        return;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("aiops-verify".into())
        .spawn(move || {
            super::background::lower_thread_priority();
            let started = Instant::now();
            let mut damaged = 0;
            for p in &parts {
                let Some(shared) = weak.upgrade() else { return };
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                drop(shared);
                let outcome = integrity::verify_file(&p.path, &p.sums);
                let Some(shared) = weak.upgrade() else { return };
                match outcome {
                    Ok(()) => {
                        shared.metrics.archive_parts_verified.inc();
                    }
                    Err(reason) if p.path.exists() => {
                        damaged += 1;
                        shared.quarantine_part(&p.path, &reason.to_string());
                    }
                    // Merged or expired meanwhile.
                    Err(_) => {}
                }
            }
            info!(
                parts = parts.len(),
                damaged,
                secs = started.elapsed().as_secs_f64(),
                "Checked the archive's parts against their checksums."
            );
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start checking the parts; reads still check what they decode.");
    }
}

/// The answer of a readiness probe.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// A write would succeed now: enough free space, and a test write was synced.
    pub ready: bool,
    /// Free bytes on the file system of the data directory (for the unprivileged).
    pub free_bytes: Option<u64>,
    /// Why not ready.
    pub reason: Option<String>,
}

impl Archive {
    /// Whether a write would succeed now: the data directory's file system has
    /// `min_free_bytes` free and a small test file can be written and synced there. The
    /// answer is reused for a second, so probes cost at most one test write per second.
    /// Blocking: call from `spawn_blocking`.
    pub fn probe(&self) -> Probe {
        let mut last = self.shared.probe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, p)) = last.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return p.clone();
        }
        let p = probe_dir(&self.shared.cfg.data_dir, self.shared.cfg.min_free_bytes);
        *last = Some((Instant::now(), p.clone()));
        p
    }
}

fn probe_dir(dir: &Path, min_free: u64) -> Probe {
    let free = rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let not = |reason: String| Probe {
        ready: false,
        free_bytes: free,
        reason: Some(reason),
    };
    if let Some(f) = free
        && f < min_free
    {
        return not(format!(
            "{f} bytes free under {}, below archive.min_free_bytes = {min_free}",
            dir.display()
        ));
    }
    let path = dir.join(".probe");
    let wrote = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_data()
        });
    let _ = fs::remove_file(&path);
    match wrote {
        Ok(()) => Probe {
            ready: true,
            free_bytes: free,
            reason: None,
        },
        Err(e) => not(format!("test write to {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests;
