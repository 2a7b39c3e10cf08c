use std::fs::OpenOptions;
use std::path::Path;

use aiops_models::{SampleBatchBuilder, SeriesMeta, Source};

use std::io::Write;
use std::time::Duration;

use super::background::enforce_retention;
use super::*;
use crate::bus::{TransportConfig, TransportKind};
use std::sync::atomic::AtomicBool;

pub(super) fn cfg(dir: &Path) -> ArchiveConfig {
    ArchiveConfig {
        data_dir: dir.to_owned(),
        segment_max_bytes: 1 << 20,
        // Test data is from 1970: keep it until a test applies retention itself.
        retention_secs: 100 * 365 * 86_400,
        ..ArchiveConfig::default()
    }
}

pub(super) fn batch(metric: &str, from: i64, n: i64) -> (SeriesId, SampleBatch) {
    let meta = Arc::new(SeriesMeta::new(Source::Prometheus, metric, []));
    let mut b = SampleBatchBuilder::with_capacity(n as usize);
    b.push_series(meta.clone());
    for t in from..from + n {
        b.push(meta.id, t * 1000, t as f64);
    }
    (meta.id, b.finish())
}

/// Runs a stage over `batches`, waiting for every ack, then stops it.
pub(super) async fn write_all(archive_cfg: ArchiveConfig, batches: Vec<SampleBatch>) -> Archive {
    let (archive, stage) = Archive::open(
        archive_cfg,
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens");
    let (tx, rx) = TransportConfig {
        kind: TransportKind::Memory,
        capacity: 8,
        ..TransportConfig::default()
    }
    .build();
    let handle = stage.spawn(rx);
    for b in batches {
        tx.send_durable(b).await.expect("durable");
    }
    // Sealed segments are compacted while the stage runs (at shutdown they would stay in the
    // WAL for the next start): wait until only the open segment is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while archive.status().wal_segments > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "sealed segments were not compacted in 30 s: {:?}",
            archive.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    tokio::task::spawn_blocking(move || handle.join().expect("stage thread"))
        .await
        .expect("join");
    archive
}

#[tokio::test(flavor = "multi_thread")]
async fn acked_batches_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, b) = batch("up", 0, 10);
    let archive = write_all(cfg(dir.path()), vec![b.clone(), b]).await;
    // Duplicates from a retried write are removed on read.
    assert_eq!(
        archive.read_series(id, 0, i64::MAX).expect("reads").len(),
        10
    );
    drop(archive);
    let catalog = Arc::new(SeriesCatalog::new());
    let (archive, _stage) = Archive::open(
        cfg(dir.path()),
        catalog.clone(),
        IngestMetrics::unregistered(),
    )
    .expect("reopens");
    assert!(catalog.contains(id));
    let got = archive.read_series(id, 2000, 4000).expect("reads");
    assert_eq!(got, vec![(2000, 2.0), (3000, 3.0), (4000, 4.0)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_tail_is_cut_and_earlier_records_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, b) = batch("up", 0, 5);
    drop(write_all(cfg(dir.path()), vec![b]).await);
    let seg = list_seqs(&dir.path().join("wal"), "wal").expect("lists")[0];
    let path = wal_path(dir.path(), seg);
    let mut f = OpenOptions::new().append(true).open(&path).expect("opens");
    f.write_all(&[200, 0, 0, 0, 1, 2, 3])
        .expect("writes garbage");
    drop(f);
    let (archive, _stage) = Archive::open(
        cfg(dir.path()),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("reopens");
    assert_eq!(
        archive.read_series(id, 0, i64::MAX).expect("reads").len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Archive::open(
        cfg(dir.path()),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens");
    let second = Archive::open(
        cfg(dir.path()),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    );
    assert!(matches!(second, Err(IngestError::DataDirLocked { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_segments_compact_to_parquet_and_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_max_bytes = 1 << 20;
    // 100k samples take ~0.4 MiB packed in the WAL but 2.4 MB in the head: the segment is
    // sealed on its head size, every batch (on WAL bytes alone, only after the third).
    let batches: Vec<_> = (0..3)
        .map(|i| batch("load", i * 100_000, 100_000))
        .collect();
    let id = batches[0].0;
    let archive = write_all(c.clone(), batches.into_iter().map(|b| b.1).collect()).await;
    assert!(archive.status().parts >= 3, "{:?}", archive.status());
    assert_eq!(
        archive.read_series(id, 0, i64::MAX).expect("reads").len(),
        300_000
    );
    drop(archive);
    // Series of compacted segments come back from catalog.jsonl.
    let catalog = Arc::new(SeriesCatalog::new());
    let (archive, stage) =
        Archive::open(c, catalog.clone(), IngestMetrics::unregistered()).expect("reopens");
    assert!(catalog.contains(id));
    let got = archive
        .read_series(id, 150_000_000, 150_002_000)
        .expect("reads");
    assert_eq!(
        got,
        vec![
            (150_000_000, 150_000.0),
            (150_001_000, 150_001.0),
            (150_002_000, 150_002.0)
        ]
    );
    drop(stage);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_old_and_excess_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path());
    let batches: Vec<_> = (0..4)
        .map(|i| batch("load", i * 100_000, 100_000).1)
        .collect();
    let archive = write_all(c.clone(), batches).await;
    let parts_before = archive.status().parts;
    assert!(parts_before >= 3);
    let shared = &archive.shared;
    // "Now" is one retention period after t = 200,000 s: parts that end before it go.
    enforce_retention(
        shared,
        200_000_000 + shared.cfg.retention_secs as i64 * 1000,
    );
    let parts = shared.parts.read().expect("lock").clone();
    assert_eq!(parts.len(), parts_before - 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.max_ts >= 200_000_000));
    drop(archive);
    // Size: with a limit of one byte every part goes; the WAL (uncompacted data) stays.
    let mut tiny = c;
    tiny.retention_max_bytes = 1;
    let (archive, _stage) = Archive::open(
        tiny,
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("reopens");
    enforce_retention(&archive.shared, 0);
    assert_eq!(archive.status().parts, 0);
    assert!(archive.status().wal_segments >= 1);
    assert!(
        std::fs::read_dir(dir.path().join("parts"))
            .expect("lists")
            .next()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn newest_write_of_a_timestamp_wins_in_head_and_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(SeriesMeta::new(Source::AppInsights, "late", []));
    let write = |v: f64| {
        let mut b = SampleBatchBuilder::with_capacity(1);
        b.push_series(meta.clone());
        b.push(meta.id, 60_000, v);
        b.finish()
    };
    let archive = write_all(cfg(dir.path()), vec![write(1.0), write(2.0), write(3.0)]).await;
    assert_eq!(
        archive.read_series(meta.id, 0, i64::MAX).expect("reads"),
        vec![(60_000, 3.0)]
    );
    // The same after the segment became a Parquet part.
    let head: Vec<SampleBatch> = archive
        .shared
        .head
        .read()
        .expect("lock")
        .values()
        .flat_map(|s| s.batches.iter().map(|(b, _)| b.clone()))
        .collect();
    let info = part::write_part(99, &dir.path().join("x.parquet"), &head).expect("writes");
    let mut out = Vec::new();
    part::read_series(&info, meta.id.0, 0, i64::MAX, &mut out).expect("reads");
    assert_eq!(out.last(), Some(&(60_000, 3.0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn parts_merge_in_the_background_and_reads_see_every_sample_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.merge_fan_in = 2;
    let batches: Vec<_> = (0..4)
        .map(|i| batch("load", i * 100_000, 100_000))
        .collect();
    let id = batches[0].0;
    let (archive, stage) = Archive::open(
        c.clone(),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens");
    let (tx, rx) = TransportConfig::default().build();
    let handle = stage.spawn(rx);
    for (_, b) in batches {
        tx.send_durable(b).await.expect("durable");
    }
    // Single-segment parts become fewer, larger ones (1+2, then with 3) while it runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let parts = archive.shared.parts.read().expect("lock").clone();
        if parts.iter().any(|p| p.seq - p.first_seq >= 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no merge of three segments in 30 s: {parts:?}"
        );
        // Reads during merges see every sample exactly once.
        assert_eq!(
            archive.read_series(id, 0, i64::MAX).expect("reads").len(),
            400_000
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    tokio::task::spawn_blocking(move || handle.join().expect("stage thread"))
        .await
        .expect("join");
    drop(archive);
    let (archive, _stage) = Archive::open(
        c,
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("reopens");
    assert_eq!(
        archive.read_series(id, 0, i64::MAX).expect("reads").len(),
        400_000
    );
}

#[test]
fn a_crash_between_a_merge_and_the_removal_of_its_inputs_leaves_each_sample_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("parts")).expect("mkdir");
    let (id, a) = batch("load", 0, 1000);
    let (_, b) = batch("load", 1000, 1000);
    let pa = part::write_part(1, &part_path(dir.path(), 1), &[a]).expect("writes");
    let pb = part::write_part(2, &part_path(dir.path(), 2), &[b]).expect("writes");
    merge::merge(
        &[pa, pb],
        &range_path(dir.path(), 1, 2),
        &AtomicBool::new(false),
    )
    .expect("merges");
    // The crash: both inputs are still there beside the merged part.
    assert_eq!(part_files(dir.path()).expect("lists").len(), 3);
    let (archive, _stage) = Archive::open(
        cfg(dir.path()),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens");
    assert_eq!(part_files(dir.path()).expect("lists").len(), 1);
    assert_eq!(archive.status().parts, 1);
    let samples = archive.read_series(id, 0, i64::MAX).expect("reads");
    assert_eq!(samples.len(), 2000);
}

/// On the old main any reader listing the parts (`aiops train` beside `serve`, for one)
/// deleted the `.tmp` file of a compaction in progress, and the compaction failed.
#[test]
fn readers_beside_the_owner_leave_its_work_in_progress_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["parts", "wal"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let tmp = dir.path().join("parts/0000000000000005.parquet.tmp");
    std::fs::write(&tmp, b"half a part").expect("writes");
    part_files(dir.path()).expect("lists");
    check::verify(dir.path()).expect("verifies");
    read_catalog(dir.path()).expect("reads");
    assert!(tmp.exists(), "a reader removed the owner's temporary part");
    // The owner, at open, clears what a crash left.
    let _archive = Archive::open(
        cfg(dir.path()),
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens");
    assert!(!tmp.exists());
}
