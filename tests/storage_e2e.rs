//! End to end against the `aiops` process: a damaged WAL record is contained, reported and
//! repaired; readiness follows the disk, so it recovers by itself when space returns.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::*;

/// Round `round`: 10 series `storage_test{s}` with one sample each, value = round.
fn request(round: usize, t0: i64) -> WriteRequest {
    wide_request(round, t0, 10)
}

/// As [`request`], over `series` series.
fn wide_request(round: usize, t0: i64, series: usize) -> WriteRequest {
    WriteRequest {
        timeseries: (0..series)
            .map(|s| {
                let s = s.to_string();
                TimeSeries::from_parts(
                    [("__name__", "storage_test"), ("s", s.as_str())],
                    [(t0 + round as i64 * 1000, round as f64)],
                )
            })
            .collect(),
        metadata: vec![],
    }
}

fn archive_cmd(what: &str, data: &Path) -> std::process::Output {
    aiops()
        .args(["archive", what, "--data-dir"])
        .arg(data)
        .output()
        .expect("aiops archive runs")
}

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    let code = r.status().as_u16();
    (code, r.json().await.expect("readyz is JSON"))
}

/// The values of series s=0 that the server returns.
async fn values(http: &reqwest::Client, base: &str, t0: i64) -> Vec<f64> {
    let v = get_json(
        http,
        &format!("{base}/api/v1/series?match[]=storage_test{{s=\"0\"}}"),
    )
    .await
    .expect("series");
    let id = v["series"][0]["id"].as_str().expect("id").to_owned();
    let s = get_json(
        http,
        &format!("{base}/api/v1/series/{id}/samples?start={}", t0 / 1000 - 1),
    )
    .await
    .expect("samples");
    s["samples"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p[1].as_f64().expect("value"))
        .collect()
}

/// On the old main the segment was cut at the bad record: every record after it (here
/// rounds 3 and 4) was lost, with a WARN, and `/readyz` said ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_record_costs_only_itself_is_reported_and_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    let mut server = start_serve(port, &data, None);
    wait_ready(&http, &base).await;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let t0 = jiff::Timestamp::now().as_millisecond() - 60_000;
    for round in 0..5 {
        client.send(&request(round, t0)).await.expect("accepted");
    }
    assert!(server.terminate(Duration::from_secs(30)), "clean exit");

    // One byte in the middle of the third record (the segment holds one record per request).
    let wal = std::fs::read_dir(data.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a segment");
    let mut bytes = std::fs::read(&wal).expect("reads");
    let magic = 0x5741_1A0Cu32.to_le_bytes();
    let starts: Vec<usize> = (0..bytes.len() - 4)
        .filter(|&i| bytes[i..i + 4] == magic)
        .collect();
    assert_eq!(starts.len(), 5, "one record per request");
    let at = (starts[2] + starts[3]) / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&wal, &bytes).expect("writes");

    let mut server = start_serve(port, &data, None);
    wait_ready(&http, &base).await;
    assert_eq!(values(&http, &base, t0).await, [0.0, 1.0, 3.0, 4.0]);
    let (code, body) = readyz(&http, &base).await;
    assert_eq!(code, 200, "writes still work: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("quarantine")),
        "{body}"
    );
    let metrics = get_text(&http, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("aiops_ingest_archive_damage_total{kind=\"wal\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("aiops_ingest_archive_quarantine_files 1"));
    // Verify reports the damage while serve runs; repair needs the lock.
    let verify = archive_cmd("verify", &data);
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    // The damaged segment was compacted at start; its bad stretch waits in quarantine.
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("in quarantine"),
        "{verify:?}"
    );
    let busy = archive_cmd("repair", &data);
    assert!(!busy.status.success(), "repair must not run beside serve");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    assert!(server.terminate(Duration::from_secs(30)), "clean exit");

    let repair = archive_cmd("repair", &data);
    assert!(repair.status.success(), "{repair:?}");
    let verify = archive_cmd("verify", &data);
    assert!(verify.status.success(), "{verify:?}");
    let _server = start_serve(port, &data, None);
    wait_ready(&http, &base).await;
    let (_, body) = readyz(&http, &base).await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(values(&http, &base, t0).await, [0.0, 1.0, 3.0, 4.0]);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Unmounts when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// On the old main `/readyz` stayed 503 after space returned until a write succeeded — and
/// with the readiness probe on `/readyz` no write arrives through the Service: it never
/// recovered. Needs root (a small tmpfs plays the full disk); CI runs as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_recovers_by_itself_when_disk_space_returns() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&data)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "mounting a tmpfs as root");
    let _mount = Mount(data.clone());
    let config = dir.path().join("aiops.toml");
    std::fs::write(&config, "[archive]\nmin_free_bytes = 1048576\n").expect("config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    let _server = start_serve(port, &data, Some(&config));
    wait_ready(&http, &base).await;

    // Fill the disk.
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![7u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write")).with_max_attempts(1);
    let t0 = jiff::Timestamp::now().as_millisecond() - 60_000;
    // Big enough to need new pages (a small record fits in the segment's last page).
    let refused = client.send(&wide_request(0, t0, 20_000)).await;
    assert!(refused.is_err(), "a write to a full disk is refused");
    let body = wait_for("readyz to say 503", Duration::from_secs(10), || async {
        let (code, body) = readyz(&http, &base).await;
        (code == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "unavailable", "{body}");

    // Space returns; no write is sent. Readiness must come back by itself.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_for("readyz to recover", Duration::from_secs(10), || async {
        let (code, _) = readyz(&http, &base).await;
        (code == 200).then_some(())
    })
    .await;
    RemoteWriteClient::new(format!("{base}/api/v1/write"))
        .send(&request(1, t0))
        .await
        .expect("accepted again");
}
