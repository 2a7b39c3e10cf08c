//! Offline checks of an archive: `aiops archive verify` reads every WAL record and every row
//! group of every part against its checksums; `aiops archive repair` salvages what is readable.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::integrity::{self, PartCatalog, PartSums, Quarantine};
use super::{list_parts, list_seqs, part, wal, wal_path};
use crate::IngestError;

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// What `verify` read and found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// WAL segments read.
    pub wal_segments: usize,
    /// Valid WAL records.
    pub wal_records: usize,
    /// Parts read.
    pub parts: usize,
    /// Samples in the parts that passed.
    pub part_samples: u64,
    /// Damage: a non-empty list means the archive needs an operator.
    pub damage: Vec<Finding>,
    /// Worth knowing, not damage (a torn tail of the newest segment, parts without recorded
    /// checksums).
    pub notes: Vec<Finding>,
}

/// Checks the archive in `dir` without changing it (safe while `aiops serve` runs: a part that
/// a merge removes meanwhile is skipped).
pub fn verify(dir: &Path) -> Result<VerifyReport, IngestError> {
    is_archive(dir)?;
    let mut report = VerifyReport::default();
    let seqs = if dir.join("wal").is_dir() {
        list_seqs(&dir.join("wal"), "wal")?
    } else {
        Vec::new()
    };
    for (i, &seq) in seqs.iter().enumerate() {
        let path = wal_path(dir, seq);
        let Ok(bytes) = fs::read(&path) else { continue };
        let r = wal::replay(&bytes);
        report.wal_segments += 1;
        report.wal_records += r.batches.len();
        for d in &r.damage {
            report.damage.push(Finding {
                path: path.clone(),
                problem: format!("bytes {}..{}: {}", d.range.start, d.range.end, d.reason),
            });
        }
        if let Some(reason) = r.tail {
            let f = Finding {
                path: path.clone(),
                problem: format!(
                    "bytes {}..{} after the last valid record: {reason}",
                    r.valid_len,
                    bytes.len()
                ),
            };
            if i + 1 == seqs.len() {
                report.notes.push(f);
            } else {
                report.damage.push(f);
            }
        }
    }
    let sums = PartCatalog::new(dir).load()?;
    let parts = if dir.join("parts").is_dir() {
        list_parts(dir)?
    } else {
        Vec::new()
    };
    for (_, _, path) in parts {
        let known = super::damage::recorded(&sums, &path).cloned();
        if known.is_none() {
            report.notes.push(Finding {
                path: path.clone(),
                problem: "no checksums recorded (they are recorded at the next start)".into(),
            });
        }
        match check_part(&path, known.as_ref()) {
            Ok(rows) => {
                report.parts += 1;
                report.part_samples += rows;
            }
            Err(_) if !path.exists() => {}
            Err(problem) => report.damage.push(Finding {
                path,
                problem: problem.to_string(),
            }),
        }
    }
    for path in Quarantine::new(dir).pending() {
        report.damage.push(Finding {
            path,
            problem: "in quarantine, waiting for `aiops archive repair` or an operator".into(),
        });
    }
    Ok(report)
}

/// Reads a whole part: the file against its checksum (when known) and every row group decoded
/// after its own check. Returns its samples.
fn check_part(path: &Path, sums: Option<&PartSums>) -> Result<u64, IngestError> {
    if let Some(s) = sums {
        integrity::verify_file(path, s)?;
    }
    let file = File::open(path).map_err(IngestError::io("open", path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(IngestError::codec("parquet"))?;
    let mut rows = 0u64;
    for batch in reader {
        rows += batch.map_err(IngestError::codec("parquet"))?.num_rows() as u64;
    }
    Ok(rows)
}

/// What `repair` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// WAL segments rewritten without their damaged stretches.
    pub wal_rewritten: Vec<PathBuf>,
    /// Parts that failed and were moved to quarantine.
    pub quarantined: Vec<PathBuf>,
    /// Parts written from the sound row groups of quarantined parts, with their samples.
    pub salvaged: Vec<(PathBuf, u64)>,
    /// Quarantined files handled (moved to `quarantine/repaired/`), with what was kept.
    pub handled: Vec<Finding>,
}

/// Repairs the archive in `dir`, which no process may have open (its lock is taken): damaged
/// WAL segments are rewritten with their valid records (the damaged bytes go to quarantine),
/// parts that fail their checks go to quarantine, and every quarantined part's row groups that
/// pass their recorded checksums are written into a new part. Handled files move to
/// `quarantine/repaired/`, which the operator may delete.
pub fn repair(dir: &Path) -> Result<RepairReport, IngestError> {
    is_archive(dir)?;
    for sub in ["wal", "parts"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(IngestError::io("create directory", &d))?;
    }
    let _lock = super::take_lock(dir)?;
    super::remove_interrupted(dir)?;
    let mut report = RepairReport::default();
    let quarantine = Quarantine::new(dir);
    let metrics = crate::IngestMetrics::unregistered();
    // 1. WAL segments: only valid records stay.
    let seqs = list_seqs(&dir.join("wal"), "wal")?;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = wal_path(dir, seq);
        let bytes = fs::read(&path).map_err(IngestError::io("read", &path))?;
        let r = wal::replay(&bytes);
        if r.damage.is_empty() && r.tail.is_none() {
            continue;
        }
        let newest = i + 1 == seqs.len();
        super::damage::contain_wal(
            &quarantine,
            &metrics,
            &path,
            &bytes,
            &r,
            newest,
            &mut Vec::new(),
        )?;
        let mut out = wal::SEGMENT_HEADER.to_vec();
        for b in &r.batches {
            wal::encode_record(b, &mut out).map_err(|reason| IngestError::ArchiveCorrupt {
                path: path.clone(),
                reason: reason.to_string(),
            })?;
        }
        write_synced(&path, &out)?;
        report.wal_rewritten.push(path);
    }
    // 2. Parts that fail go to quarantine.
    let catalog = PartCatalog::new(dir);
    let sums = catalog.load()?;
    let mut next_seq = 0;
    for (_, last, path) in list_parts(dir)? {
        next_seq = next_seq.max(last);
        let known = super::damage::recorded(&sums, &path);
        if let Err(reason) = check_part(&path, known) {
            quarantine.take(&path, &reason.to_string(), known)?;
            report.quarantined.push(path);
        }
    }
    if let Some(&s) = list_seqs(&dir.join("wal"), "wal")?.last() {
        next_seq = next_seq.max(s);
    }
    // 3. Salvage the sound row groups of quarantined parts into new parts.
    let done = quarantine.dir().join("repaired");
    for path in quarantine.pending() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kept = if name.ends_with(".parquet") {
            next_seq += 1;
            match salvage(&path, &dir.join("parts"), next_seq)? {
                Some((to, sums, rows)) => {
                    catalog.record(&to, &sums)?;
                    report.salvaged.push((to.clone(), rows));
                    format!("{rows} samples salvaged into {}", to.display())
                }
                None => "nothing salvageable (no checksums to tell sound row groups)".into(),
            }
        } else {
            "a damaged WAL stretch: its valid records were kept when it was found".into()
        };
        fs::create_dir_all(&done).map_err(IngestError::io("create directory", &done))?;
        for suffix in ["", ".reason", ".sums"] {
            let from = quarantine.dir().join(format!("{name}{suffix}"));
            if from.exists() {
                let to = done.join(format!("{name}{suffix}"));
                fs::rename(&from, &to).map_err(IngestError::io("move", &from))?;
            }
        }
        report.handled.push(Finding {
            path,
            problem: kept,
        });
    }
    Ok(report)
}

/// Refuses a directory that holds no archive.
fn is_archive(dir: &Path) -> Result<(), IngestError> {
    if !dir.join("wal").is_dir() && !dir.join("parts").is_dir() {
        return Err(IngestError::ArchiveCorrupt {
            path: dir.to_owned(),
            reason: "no archive here (neither wal/ nor parts/)".into(),
        });
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    let tmp = path.with_extension("repair.tmp");
    fs::write(&tmp, bytes).map_err(IngestError::io("write", &tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(IngestError::io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(IngestError::io("rename", path))
}

/// Writes the row groups of the quarantined part at `path` that pass their recorded
/// checksums into a new part `seq` in `parts_dir`.
fn salvage(
    path: &Path,
    parts_dir: &Path,
    seq: u64,
) -> Result<Option<(PathBuf, PartSums, u64)>, IngestError> {
    let damaged = |reason: String| IngestError::ArchiveCorrupt {
        path: path.to_owned(),
        reason,
    };
    let sums_path = path.with_extension("parquet.sums");
    let Some(sums) = fs::read(&sums_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<PartSums>(&b).ok())
    else {
        return Ok(None);
    };
    let file = File::open(path).map_err(IngestError::io("open", path))?;
    let check = file.try_clone().map_err(IngestError::io("open", path))?;
    // An unreadable footer leaves nothing to find the row groups by.
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return Ok(None);
    };
    let meta = builder.metadata().clone();
    let sound: Vec<usize> = (0..meta.num_row_groups())
        .filter(|&i| integrity::verify_group(&check, &meta, &sums, i).is_ok())
        .collect();
    if sound.is_empty() {
        return Ok(None);
    }
    let reader = builder
        .with_row_groups(sound)
        .build()
        .map_err(|e| damaged(format!("parquet: {e}")))?;
    let mut batches = Vec::new();
    for b in reader {
        let b = b.map_err(|e| damaged(format!("parquet: {e}")))?;
        batches.push(
            aiops_models::SampleBatch::try_new(b, Vec::new(), Vec::new())
                .map_err(|e| damaged(e.to_string()))?,
        );
    }
    let to = parts_dir.join(format!("{seq:016}.parquet"));
    let info = part::write_part(seq, &to, &batches).map_err(|e| damaged(e.to_string()))?;
    Ok(Some((to, Arc::unwrap_or_clone(info.sums), info.rows)))
}
