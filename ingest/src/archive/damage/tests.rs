//! Damage is contained: one flipped byte loses at most its own record or part, is reported, and
//! is never served as data.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_models::{SampleBatchBuilder, SeriesCatalog, SeriesId};

use super::super::integrity::PartCatalog;
use super::super::tests::{batch, cfg, write_all};
use super::super::{Archive, ArchiveConfig, list_seqs, part, part_path, wal_path};
use crate::IngestMetrics;

fn open(cfg: ArchiveConfig) -> Archive {
    Archive::open(
        cfg,
        Arc::new(SeriesCatalog::new()),
        IngestMetrics::unregistered(),
    )
    .expect("opens")
    .0
}

fn no_verifier(dir: &Path) -> ArchiveConfig {
    ArchiveConfig {
        verify_on_open: false,
        ..cfg(dir)
    }
}

/// On the old main a bad record cut the segment: the records after it were lost, silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_mid_segment_costs_one_record_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series: Vec<(SeriesId, _)> = (0..3).map(|k| batch(&format!("m{k}"), 0, 50)).collect();
    let batches = series.iter().map(|(_, b)| b.clone()).collect();
    drop(write_all(cfg(dir.path()), batches).await);
    let seq = list_seqs(&dir.path().join("wal"), "wal").expect("lists")[0];
    let path = wal_path(dir.path(), seq);
    let mut bytes = fs::read(&path).expect("reads");
    let r = super::super::wal::replay(&bytes);
    assert_eq!(r.batches.len(), 3);
    // A byte in the middle of the second record's payload.
    let second = bytes.len() / 2;
    bytes[second] ^= 0x10;
    fs::write(&path, &bytes).expect("writes");

    let archive = open(cfg(dir.path()));
    let got: Vec<usize> = series
        .iter()
        .map(|(id, _)| archive.read_series(*id, 0, i64::MAX).expect("reads").len())
        .collect();
    assert_eq!(got, [50, 0, 50], "only the damaged record is lost");
    let status = archive.status();
    assert_eq!(status.damage.len(), 1, "{status:?}");
    assert!(status.damage[0].contains("bytes "), "{status:?}");
    assert_eq!(status.quarantined.len(), 1, "{status:?}");
}

/// A part of two series; returns their ids and samples.
fn template(dir: &Path) -> Vec<(SeriesId, Vec<(i64, f64)>)> {
    fs::create_dir_all(dir.join("parts")).expect("mkdir");
    let mut b = SampleBatchBuilder::with_capacity(400);
    let ids = [SeriesId(11), SeriesId(22)];
    let mut want = vec![Vec::new(), Vec::new()];
    for t in 0..200i64 {
        for (k, id) in ids.iter().enumerate() {
            let v = (t * (k as i64 + 3)) as f64 * 0.37;
            b.push(*id, t * 15_000, v);
            want[k].push((t * 15_000, v));
        }
    }
    let path = part_path(dir, 1);
    let info = part::write_part(1, &path, &[b.finish()]).expect("writes");
    PartCatalog::new(dir)
        .record(&path, &info.sums)
        .expect("records");
    ids.into_iter().zip(want).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for sub in ["", "parts"] {
        fs::create_dir_all(to.join(sub)).expect("mkdir");
        for e in fs::read_dir(from.join(sub)).expect("lists") {
            let p = e.expect("entry").path();
            if p.is_file() {
                fs::copy(&p, to.join(sub).join(p.file_name().expect("name"))).expect("copies");
            }
        }
    }
}

/// On the old main some single-byte flips returned wrong values with no error.
#[test]
fn no_flipped_byte_of_a_part_is_ever_served_as_data() {
    let tpl = tempfile::tempdir().expect("tempdir");
    let want = template(tpl.path());
    let part = part_path(tpl.path(), 1);
    let len = fs::metadata(&part).expect("stat").len() as usize;
    let (mut whole, mut quarantined) = (0, 0);
    for at in (0..len).step_by(3) {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(tpl.path(), dir.path());
        let p = part_path(dir.path(), 1);
        let mut bytes = fs::read(&p).expect("reads");
        bytes[at] ^= 0x04;
        fs::write(&p, &bytes).expect("writes");
        let archive = open(no_verifier(dir.path()));
        for (id, samples) in &want {
            let got = archive.read_series(*id, 0, i64::MAX).expect("reads");
            if got.is_empty() {
                assert!(
                    !archive.status().quarantined.is_empty(),
                    "byte {at}: data gone but nothing quarantined"
                );
            } else {
                assert_eq!(&got, samples, "byte {at}: wrong values served");
            }
        }
        if archive.status().quarantined.is_empty() {
            // Bytes no read decodes (e.g. the page indexes): the whole-file check after open
            // catches them.
            let sums = PartCatalog::new(dir.path()).load().expect("loads");
            let sums = sums.get("0000000000000001.parquet").expect("recorded");
            assert!(
                super::super::integrity::verify_file(&p, sums).is_err(),
                "byte {at}: the flip escapes every check"
            );
            whole += 1;
        } else {
            quarantined += 1;
            assert!(!archive.status().damage.is_empty() || archive.status().parts == 0);
        }
    }
    assert!(
        quarantined > 10 * whole,
        "{quarantined} flips caught on read, {whole} left to the whole-file check"
    );
}

#[test]
fn the_check_after_open_quarantines_a_damaged_part_nobody_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    template(dir.path());
    let p = part_path(dir.path(), 1);
    let mut bytes = fs::read(&p).expect("reads");
    bytes[20] ^= 0x01;
    fs::write(&p, &bytes).expect("writes");
    let archive = open(cfg(dir.path()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while archive.status().quarantined.is_empty() {
        assert!(Instant::now() < deadline, "not quarantined in 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(archive.status().parts, 0);
    assert!(
        dir.path()
            .join("quarantine/0000000000000001.parquet")
            .exists()
    );
    assert!(
        dir.path()
            .join("quarantine/0000000000000001.parquet.reason")
            .exists()
    );
}

/// On the old main a truncated part was skipped at start with one log line: its samples were
/// silently absent and nothing else said so.
#[test]
fn a_truncated_part_is_quarantined_at_open_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    template(dir.path());
    let p = part_path(dir.path(), 1);
    let len = fs::metadata(&p).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncates");
    let archive = open(no_verifier(dir.path()));
    let status = archive.status();
    assert_eq!(status.parts, 0);
    assert_eq!(status.quarantined, ["0000000000000001.parquet"]);
    assert_eq!(status.damage.len(), 1, "{status:?}");
}

#[test]
fn verify_finds_damage_and_repair_salvages_the_sound_row_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("parts")).expect("mkdir");
    // Two row groups: ids 0..n in the first, the rest in the second.
    let n = part::ROW_GROUP_ROWS as u64 + 1000;
    let mut b = SampleBatchBuilder::with_capacity(n as usize);
    for i in 0..n {
        b.push(SeriesId(i), 1000, i as f64);
    }
    let path = part_path(dir.path(), 1);
    let info = part::write_part(1, &path, &[b.finish()]).expect("writes");
    PartCatalog::new(dir.path())
        .record(&path, &info.sums)
        .expect("records");
    let clean = super::super::check::verify(dir.path()).expect("verifies");
    assert!(clean.damage.is_empty(), "{:?}", clean.damage);
    assert_eq!(clean.part_samples, n);

    let mut bytes = fs::read(&path).expect("reads");
    bytes[100] ^= 0x20; // in the first row group
    fs::write(&path, &bytes).expect("writes");
    let found = super::super::check::verify(dir.path()).expect("verifies");
    assert_eq!(found.damage.len(), 1, "{:?}", found.damage);

    let report = super::super::check::repair(dir.path()).expect("repairs");
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.salvaged.len(), 1);
    let salvaged = report.salvaged[0].1;
    assert_eq!(salvaged, n - part::ROW_GROUP_ROWS as u64);
    let after = super::super::check::verify(dir.path()).expect("verifies");
    assert!(after.damage.is_empty(), "{:?}", after.damage);
    assert_eq!(after.part_samples, salvaged);
    assert!(
        dir.path()
            .join("quarantine/repaired/0000000000000001.parquet")
            .exists()
    );

    let archive = open(cfg(dir.path()));
    assert!(archive.status().quarantined.is_empty());
    let last = SeriesId(n - 1);
    assert_eq!(
        archive.read_series(last, 0, i64::MAX).expect("reads"),
        vec![(1000, (n - 1) as f64)]
    );
    assert!(
        archive
            .read_series(SeriesId(5), 0, i64::MAX)
            .expect("reads")
            .is_empty()
    );
}

/// Readers with their own Parquet decoder (`aiops train`) get only the parts
/// whose bytes still match their checksums.
#[test]
fn offline_readers_are_handed_only_sound_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    template(dir.path());
    let sound = super::super::verified_part_files(dir.path()).expect("verifies");
    assert_eq!((sound.sound.len(), sound.damaged.len()), (1, 0));
    let p = part_path(dir.path(), 1);
    let mut bytes = fs::read(&p).expect("reads");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x08;
    fs::write(&p, &bytes).expect("writes");
    let v = super::super::verified_part_files(dir.path()).expect("verifies");
    assert!(v.sound.is_empty());
    assert_eq!(v.damaged.len(), 1);
    assert!(v.damaged[0].1.contains("checksum"), "{:?}", v.damaged);
}
