//! The directory's layout (segment, part and range names, listing, the lock, interrupted
//! writes) and what offline jobs read from it without opening the archive.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use aiops_models::{IdHashMap, SeriesCatalog};

use super::*;
use crate::IngestError;

pub(super) fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join("wal").join(format!("{seq:016}.wal"))
}

pub(super) fn part_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join("parts").join(format!("{seq:016}.parquet"))
}

/// The path of a part holding segments `first..=last` (merged when they differ).
pub(super) fn range_path(dir: &Path, first: u64, last: u64) -> PathBuf {
    if first == last {
        part_path(dir, last)
    } else {
        dir.join("parts")
            .join(format!("{first:016}-{last:016}.parquet"))
    }
}

/// Parts in `dir/parts` as (first segment, last segment, path), by first segment. Read-only:
/// offline readers (`aiops train`, `aiops archive verify`) call it beside a serving process.
pub(super) fn list_parts(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, IngestError> {
    let parts = dir.join("parts");
    let mut out = Vec::new();
    for entry in fs::read_dir(&parts).map_err(IngestError::io("list", &parts))? {
        let path = entry.map_err(IngestError::io("list", &parts))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let range = match stem.split_once('-') {
            Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
            None => stem.parse().ok().map(|s| (s, s)),
        };
        if let Some((first, last)) = range {
            out.push((first, last, path));
        }
    }
    out.sort_by_key(|p| (p.0, std::cmp::Reverse(p.1)));
    Ok(out)
}

/// Sequence numbers of files named `<seq>.<ext>` in `dir`.
pub(super) fn list_seqs(dir: &Path, ext: &str) -> Result<Vec<u64>, IngestError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(IngestError::io("list", dir))? {
        let path = entry.map_err(IngestError::io("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext)
            && let Some(seq) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Removes the temporary files of compactions and merges a crash interrupted (their inputs
/// are still there). Only the process that holds the directory's lock may: for anyone else
/// they are the work in progress of the owner.
pub(super) fn remove_interrupted(dir: &Path) -> Result<(), IngestError> {
    for sub in ["parts", "wal"] {
        let d = dir.join(sub);
        for entry in fs::read_dir(&d).map_err(IngestError::io("list", &d))? {
            let path = entry.map_err(IngestError::io("list", &d))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                fs::remove_file(&path).map_err(IngestError::io("remove", &path))?;
            }
        }
    }
    Ok(())
}

/// Takes the directory's lock (flock on `LOCK`): one process owns an archive at a time.
/// Held until the returned file is dropped.
pub(super) fn take_lock(dir: &Path) -> Result<File, IngestError> {
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(IngestError::io("open", &lock_path))?;
    if lock.try_lock().is_err() {
        return Err(IngestError::DataDirLocked {
            dir: dir.to_owned(),
            lock: lock_path,
        });
    }
    Ok(lock)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IngestError::io("fsync directory", dir))
}

/// The series the archive in `dir` has compacted, read without opening (or locking) it: for
/// offline jobs such as `aiops train` that may run beside a serving process.
pub fn read_catalog(dir: &Path) -> Result<SeriesCatalog, IngestError> {
    let catalog = SeriesCatalog::new();
    load_catalog(
        &dir.join("catalog.jsonl"),
        &catalog,
        &mut IdHashMap::default(),
    )?;
    Ok(catalog)
}

/// Parts, samples in them and their bytes on disk, read from the footers of the archive in
/// `dir` (for benchmarks and sizing).
pub fn part_stats(dir: &Path) -> Result<(usize, u64, u64), IngestError> {
    let (mut parts, mut rows, mut bytes) = (0, 0, 0);
    let sums = PartCatalog::new(dir).load()?;
    for (first, last, path) in list_parts(dir)? {
        let info = damage::open_part(first, last, &path, &sums).map_err(|e| {
            IngestError::ArchiveCorrupt {
                path,
                reason: e.to_string(),
            }
        })?;
        parts += 1;
        rows += info.rows;
        bytes += info.bytes;
    }
    Ok((parts, rows, bytes))
}

/// The Parquet parts of the archive in `dir`, oldest first.
pub fn part_files(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    Ok(list_parts(dir)?.into_iter().map(|p| p.2).collect())
}

/// The parts of the archive in `dir` that pass their whole-file checksum (or have none
/// recorded yet), oldest first, and those that fail with why: for offline readers that decode
/// parts with a plain Parquet reader (`aiops train`, `aiops eval backtest`), which would not
/// know our checksums. Reads every part once; safe beside a serving process.
pub fn verified_part_files(dir: &Path) -> Result<VerifiedParts, IngestError> {
    let sums = PartCatalog::new(dir).load()?;
    let mut out = VerifiedParts::default();
    for (_, _, path) in list_parts(dir)? {
        match damage::recorded(&sums, &path).map(|s| integrity::verify_file(&path, s)) {
            Some(Err(reason)) if path.exists() => out.damaged.push((path, reason.to_string())),
            // Merged or expired meanwhile.
            Some(Err(_)) => {}
            Some(Ok(())) | None => out.sound.push(path),
        }
    }
    Ok(out)
}

/// What [`verified_part_files`] found.
#[derive(Debug, Default)]
pub struct VerifiedParts {
    /// Parts to read.
    pub sound: Vec<PathBuf>,
    /// Parts whose bytes no longer match their checksum, with why.
    pub damaged: Vec<(PathBuf, String)>,
}
