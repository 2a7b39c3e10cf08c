//! The durable archive: every accepted batch is appended to a write-ahead log before it is
//! acknowledged, sealed segments are compacted into Parquet parts, and retention removes old
//! parts by age and total size.
//!
//! ```text
//! data_dir/
//!   LOCK                 held (flock) by the one process that owns the directory
//!   catalog.jsonl        series of compacted segments, one JSON object per line
//!   parts.jsonl          checksums of the parts (integrity.rs)
//!   wal/<seq>.wal        log segments (wal.rs), the newest one is being appended to
//!   parts/<seq>.parquet  compacted segments (part.rs), sorted by (series_id, timestamp)
//!   quarantine/          damaged parts and stretches of segments, with the reason
//! ```
//!
//! The [`ArchiveStage`] runs on its own thread. It takes envelopes from the transport, writes a
//! group of them with one `write` and one `fdatasync` (group commit), then updates the catalog
//! and the in-memory head and fires the acks. A crash between write and ack makes the sender
//! retry: a duplicate, never a loss. On open, segments are replayed record by record: a
//! damaged record is skipped and quarantined, the records after it are kept, and the torn tail
//! of the newest one is cut off (see `wal` and `integrity`).
//!
//! Compaction (on a second thread) appends a segment's series to `catalog.jsonl`, writes its
//! part, and only then deletes the segment; a crash at any point leaves either the segment or the
//! part (or both, and then the segment is dropped on open).
//!
//! Rooms: `stage` (the writing thread), `background` (compaction, merges, retention), `wal`,
//! `part`, `order` and `merge` (the formats and how they are written), `read` (many series in
//! one pass), `integrity` and `damage` (checksums, quarantine, readiness probe), `check`
//! (`aiops archive verify|repair`).

mod background;
mod catalog;
pub mod check;
mod config;
mod damage;
mod files;
pub(crate) mod integrity;
mod merge;
mod order;
mod page_crc;
mod part;
mod read;
mod stage;
pub(crate) mod wal;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aiops_models::{IdHashMap, SampleBatch, SeriesCatalog, SeriesId};
use serde::Serialize;
use tracing::info;

use integrity::{PartCatalog, Quarantine};
use stage::open_segment;

use crate::{IngestError, IngestMetrics};

use catalog::{CatalogLine, apply_to_catalog, load_catalog};
pub use config::ArchiveConfig;
pub use damage::Probe;
pub use files::{VerifiedParts, part_files, part_stats, read_catalog, verified_part_files};
use files::{
    list_parts, list_seqs, part_path, range_path, remove_interrupted, sync_dir, take_lock, wal_path,
};
pub use part::{FRESH_ZSTD_LEVEL, PartInfo, write_part, writer_properties as part_properties};
use read::{IdBloom, Wanted};
pub use wal::RecordFormat;

/// A WAL segment's contents kept in memory until it is compacted, so reads need no disk. Each
/// batch has a Bloom filter of its series, so a read of one series skips most batches.
#[derive(Debug, Default)]
struct HeadSegment {
    batches: Vec<(SampleBatch, Arc<IdBloom>)>,
}

impl HeadSegment {
    fn push(&mut self, batch: SampleBatch) {
        let bloom = Arc::new(IdBloom::of(&batch));
        self.batches.push((batch, bloom));
    }
}

/// Bytes one head batch holds in memory: its columns and its filter.
fn batch_bytes(b: &SampleBatch, bloom: &IdBloom) -> u64 {
    (b.samples.get_array_memory_size() + bloom.bytes()) as u64
}

#[derive(Debug)]
struct Shared {
    cfg: ArchiveConfig,
    catalog: Arc<SeriesCatalog>,
    metrics: IngestMetrics,
    head: RwLock<BTreeMap<u64, HeadSegment>>,
    parts: RwLock<Vec<PartInfo>>,
    stale: RwLock<IdHashMap<i64>>,
    wal_bytes: AtomicU64,
    /// Bytes of the in-memory head.
    head_bytes: AtomicU64,
    /// Set at shutdown: sealed segments not compacted yet stay in the WAL (durable; the next
    /// start compacts them) instead of delaying the exit.
    stopping: AtomicBool,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    part_catalog: PartCatalog,
    quarantine: Quarantine,
    /// Damage found since start, newest last (at most [`damage::KEPT`]).
    damage: Mutex<Vec<String>>,
    /// The last readiness probe (see [`Archive::probe`]).
    probe: Mutex<Option<(Instant, damage::Probe)>>,
    _lock: File,
}

/// The read side of the archive; cheap to clone.
#[derive(Debug, Clone)]
pub struct Archive {
    shared: Arc<Shared>,
}

/// Health and size of the archive, for `/readyz` and the API.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveStatus {
    /// False after a failed write until the next successful one.
    pub healthy: bool,
    /// The most recent write error.
    pub last_error: Option<String>,
    /// Damaged files in `quarantine/` waiting for an operator.
    pub quarantined: Vec<String>,
    /// Damage found since start, newest last.
    pub damage: Vec<String>,
    /// WAL segments not yet compacted.
    pub wal_segments: usize,
    /// Parquet parts.
    pub parts: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The writing stage of the archive; see [`ArchiveStage::spawn`].
#[derive(Debug)]
pub struct ArchiveStage {
    shared: Arc<Shared>,
    downstream: Option<aiops_models::queue::BatchSender>,
    file: File,
    seq: u64,
    seg_bytes: u64,
    /// What the open segment's samples take in the head (packed in the WAL they take about a
    /// quarter of it).
    seg_head_bytes: u64,
    seg_opened: Instant,
    sealed: Vec<u64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Archive {
    /// Opens (or creates) the archive in `cfg.data_dir`: takes the lock, loads the catalog and
    /// parts, replays the WAL into `catalog` and the head. Returns the read side and the stage
    /// that writes.
    pub fn open(
        cfg: ArchiveConfig,
        catalog: Arc<SeriesCatalog>,
        metrics: IngestMetrics,
    ) -> Result<(Archive, ArchiveStage), IngestError> {
        let dir = cfg.data_dir.clone();
        for sub in [dir.clone(), dir.join("wal"), dir.join("parts")] {
            fs::create_dir_all(&sub).map_err(IngestError::io("create directory", &sub))?;
        }
        let lock = take_lock(&dir)?;

        remove_interrupted(&dir)?;
        let mut stale: IdHashMap<i64> = IdHashMap::default();
        load_catalog(&dir.join("catalog.jsonl"), &catalog, &mut stale)?;
        let part_catalog = PartCatalog::new(&dir);
        let sums = part_catalog.load()?;
        let quarantine = Quarantine::new(&dir);
        let mut damage = Vec::new();

        let mut parts: Vec<PartInfo> = Vec::new();
        let listed = list_parts(&dir)?;
        // Segments that some part holds (WAL segments among them were compacted already).
        let covered = |seq: u64| listed.iter().any(|(a, b, _)| (*a..=*b).contains(&seq));
        let mut reach = 0u64;
        for (first, last, path) in &listed {
            if *last <= reach && parts.last().is_some_and(|p| p.first_seq <= *first) {
                // The input of a merge whose output is in place: the crash came before the
                // inputs were deleted.
                info!(path = %path.display(), "Removing a part a merged part holds.");
                fs::remove_file(path).map_err(IngestError::io("remove", path))?;
                continue;
            }
            match damage::open_part(*first, *last, path, &sums) {
                Ok(p) => {
                    reach = reach.max(*last);
                    parts.push(p);
                }
                Err(reason) => {
                    let known = damage::recorded(&sums, path);
                    damage::quarantine_at_open(
                        &quarantine,
                        &metrics,
                        path,
                        &reason.to_string(),
                        known,
                    )?;
                    damage.push(format!("{}: {reason}", path.display()));
                }
            }
        }
        part_catalog.rewrite(parts.iter().map(|p| (p.path.as_path(), &*p.sums)))?;

        let mut head = BTreeMap::new();
        let wal_seqs = list_seqs(&dir.join("wal"), "wal")?;
        let mut wal_bytes = 0;
        let mut replayed = 0usize;
        for (i, &seq) in wal_seqs.iter().enumerate() {
            let path = wal_path(&dir, seq);
            if covered(seq) {
                // Compacted already; the crash came before the segment was deleted.
                fs::remove_file(&path).map_err(IngestError::io("remove", &path))?;
                continue;
            }
            let bytes = fs::read(&path).map_err(IngestError::io("read", &path))?;
            let r = wal::replay(&bytes);
            let newest = i + 1 == wal_seqs.len();
            damage::contain_wal(
                &quarantine,
                &metrics,
                &path,
                &bytes,
                &r,
                newest,
                &mut damage,
            )?;
            wal_bytes += r.valid_len;
            for b in &r.batches {
                apply_to_catalog(&catalog, &mut stale, b);
                replayed += b.len();
            }
            let mut seg = HeadSegment::default();
            for b in r.batches {
                seg.push(b);
            }
            head.insert(seq, seg);
        }
        let next_seq = wal_seqs
            .iter()
            .copied()
            .chain(listed.iter().map(|p| p.1))
            .max()
            .map_or(1, |s| s + 1);
        info!(
            dir = %dir.display(),
            series = catalog.len(),
            parts = parts.len(),
            wal_segments = head.len(),
            replayed_samples = replayed,
            "Opened archive."
        );
        metrics.series.set(catalog.len() as i64);
        metrics.catalog_bytes.set(catalog.bytes() as i64);

        metrics
            .archive_quarantine_files
            .set(quarantine.pending().len() as i64);
        let sealed: Vec<u64> = head.keys().copied().collect();
        let shared = Arc::new(Shared {
            cfg,
            catalog,
            metrics,
            head: RwLock::new(head),
            parts: RwLock::new(parts),
            stale: RwLock::new(stale),
            wal_bytes: AtomicU64::new(wal_bytes),
            head_bytes: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            part_catalog,
            quarantine,
            damage: Mutex::new(damage),
            probe: Mutex::new(None),
            _lock: lock,
        });
        if shared.cfg.verify_on_open {
            damage::spawn_verifier(&shared);
        }
        let (file, seq) = open_segment(&shared, next_seq)?;
        let replayed_bytes: u64 = shared
            .head
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|s| s.batches.iter())
            .map(|(b, bloom)| batch_bytes(b, bloom))
            .sum();
        shared.add_head_bytes(replayed_bytes as i64);
        shared.update_size_gauge();
        Ok((
            Archive {
                shared: shared.clone(),
            },
            ArchiveStage {
                shared,
                downstream: None,
                file,
                seq,
                seg_bytes: wal::SEGMENT_HEADER.len() as u64,
                seg_head_bytes: 0,
                seg_opened: Instant::now(),
                sealed,
            },
        ))
    }

    /// The catalog this archive fills.
    pub fn catalog(&self) -> &Arc<SeriesCatalog> {
        &self.shared.catalog
    }

    /// Samples of `id` with `start_ms <= t <= end_ms`, ascending by time, one per timestamp
    /// (the newest write wins). Blocking: call from `spawn_blocking` in async code.
    pub fn read_series(
        &self,
        id: SeriesId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(i64, f64)>, IngestError> {
        let mut out = Vec::new();
        self.with_view(
            start_ms,
            end_ms,
            |bloom| bloom.may_hold(id.0),
            |parts, head| {
                out.clear();
                for p in parts {
                    part::read_series(p, id.0, start_ms, end_ms, &mut out)?;
                }
                for b in head {
                    part::collect(&b.samples, id.0, start_ms, end_ms, &mut out);
                }
                Ok(())
            },
        )?;
        newest_write_wins(&mut out);
        Ok(out)
    }

    /// Runs `read` over a view (see [`Archive::view`]). A part that vanished meanwhile was
    /// merged into another (or removed by retention): the read starts over on a fresh view, so
    /// it never misses what the merged part holds. A part found damaged is quarantined and the
    /// read starts over without it: what it held is never served. `read` may thus run more
    /// than once.
    fn with_view(
        &self,
        start_ms: i64,
        end_ms: i64,
        keep: impl Fn(&IdBloom) -> bool,
        mut read: impl FnMut(&[PartInfo], &[SampleBatch]) -> Result<(), IngestError>,
    ) -> Result<(), IngestError> {
        let mut attempts = 0;
        loop {
            let (parts, head) = self.view(start_ms, end_ms, &keep);
            match read(&parts, &head) {
                Ok(()) => return Ok(()),
                Err(IngestError::ArchiveIo { path, .. }) if !path.exists() && attempts < 8 => {
                    attempts += 1
                }
                Err(IngestError::ArchiveCorrupt { path, reason }) if attempts < 8 => {
                    self.shared.quarantine_part(&path, &reason);
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One consistent view of the parts overlapping `start_ms..=end_ms` and the head batches
    /// `keep` admits: compaction moves a segment from the head to the parts under both write
    /// locks, so holding both read locks sees it exactly once. The locks are held only to
    /// clone the lists (the batches' columns are shared, not copied).
    fn view(
        &self,
        start_ms: i64,
        end_ms: i64,
        keep: &impl Fn(&IdBloom) -> bool,
    ) -> (Vec<PartInfo>, Vec<SampleBatch>) {
        let parts = self.shared.parts.read().unwrap_or_else(|p| p.into_inner());
        let head = self.shared.head.read().unwrap_or_else(|p| p.into_inner());
        (
            parts
                .iter()
                .filter(|p| p.max_ts >= start_ms && p.min_ts <= end_ms)
                .cloned()
                .collect(),
            head.values()
                .flat_map(|seg| seg.batches.iter())
                .filter(|(_, bloom)| keep(bloom))
                .map(|(b, _)| b.clone())
                .collect(),
        )
    }

    /// Visits the samples of many series in one pass over the parts and the head: each
    /// `(id, from_ms)` from its `from_ms` up to `to_ms`. A series' samples come in write order
    /// (parts by sequence, then the head), which is time order except for late or rewritten
    /// samples; when a merge replaced a part mid-read, the pass starts over and samples may be
    /// visited twice. Blocking: call from a thread of its own or `spawn_blocking`.
    pub fn scan_many(
        &self,
        series: &[(SeriesId, i64)],
        to_ms: i64,
        visit: &mut dyn FnMut(SeriesId, i64, f64),
    ) -> Result<(), IngestError> {
        let wanted = Wanted::new(series, to_ms);
        if wanted.is_empty() {
            return Ok(());
        }
        self.with_view(
            wanted.min_from,
            to_ms,
            |bloom| wanted.may_be_in(bloom),
            |parts, head| {
                for p in parts {
                    part::scan(p, &wanted, visit)?;
                }
                for b in head {
                    wanted.visit(&b.samples, visit);
                }
                Ok(())
            },
        )
    }

    /// The samples of each of `ids` in `start_ms..=end_ms`, as [`Archive::read_series`] gives
    /// them, read in one pass.
    pub fn read_many(
        &self,
        ids: &[SeriesId],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<IdHashMap<Vec<(i64, f64)>>, IngestError> {
        let series: Vec<(SeriesId, i64)> = ids.iter().map(|&id| (id, start_ms)).collect();
        let mut out: IdHashMap<Vec<(i64, f64)>> = IdHashMap::default();
        self.scan_many(&series, end_ms, &mut |id, t, v| {
            out.entry(id).or_default().push((t, v));
        })?;
        for samples in out.values_mut() {
            newest_write_wins(samples);
        }
        Ok(out)
    }

    /// When `id` was marked stale, if its newest news is a stale marker.
    pub fn stale_at(&self, id: SeriesId) -> Option<i64> {
        self.shared
            .stale
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    /// Bytes of the in-memory head (samples not yet compacted).
    pub fn head_bytes(&self) -> u64 {
        self.shared.head_bytes.load(Ordering::Relaxed)
    }

    /// Health and size.
    pub fn status(&self) -> ArchiveStatus {
        ArchiveStatus {
            healthy: self.shared.healthy.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            quarantined: self.shared.quarantined_names(),
            damage: self
                .shared
                .damage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            wal_segments: self
                .shared
                .head
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            parts: self
                .shared
                .parts
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            bytes: self.shared.disk_bytes(),
        }
    }
}

/// Sorts samples in write order by time, keeping the newest write of each timestamp (a retried
/// request repeats a value; a re-polled bucket may carry a late-corrected one). The sort is
/// stable, so among equal timestamps the write order holds.
fn newest_write_wins(samples: &mut Vec<(i64, f64)>) {
    samples.sort_by_key(|s| s.0);
    samples.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
}

impl Shared {
    fn disk_bytes(&self) -> u64 {
        let parts: u64 = self
            .parts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.bytes)
            .sum();
        parts + self.wal_bytes.load(Ordering::Relaxed)
    }

    fn add_head_bytes(&self, delta: i64) {
        let now = if delta >= 0 {
            self.head_bytes.fetch_add(delta as u64, Ordering::Relaxed) + delta as u64
        } else {
            let d = delta.unsigned_abs();
            self.head_bytes
                .fetch_sub(d, Ordering::Relaxed)
                .saturating_sub(d)
        };
        self.metrics.head_bytes.set(now as i64);
    }

    fn update_size_gauge(&self) {
        self.metrics.archive_bytes.set(self.disk_bytes() as i64);
    }

    fn fail(&self, msg: String) {
        self.healthy.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }
}

#[cfg(test)]
mod tests;
