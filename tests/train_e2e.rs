//! `aiops train` as an operator runs it: beside a serving process, on what it archived; the
//! trained version is registered, and a restarted server scores from it without relearning.

mod common;

use std::time::Duration;

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::*;

const STEP_MS: i64 = 300_000;
const DAYS: i64 = 3;

fn latency(i: i64) -> f64 {
    let day = (i * STEP_MS % 86_400_000) as f64 / 86_400_000.0;
    let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
    0.2 + 0.1 * (day * std::f64::consts::TAU).sin() + 0.01 * noise
}

async fn send_history(base: &str, t0: i64) {
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let n = DAYS * 288;
    for chunk in (0..n).collect::<Vec<_>>().chunks(288) {
        let mut total = 0.0;
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries::from_parts(
                    [("__name__", "latency_seconds"), ("service", "shop")],
                    chunk.iter().map(|&i| (t0 + i * STEP_MS, latency(i))),
                ),
                TimeSeries::from_parts(
                    [("__name__", "requests_total"), ("service", "shop")],
                    chunk.iter().map(|&i| {
                        total = (i as f64) * 30.0;
                        (t0 + i * STEP_MS, total)
                    }),
                ),
            ],
            metadata: vec![],
        };
        client.send(&req).await.expect("history accepted");
    }
}

fn train(data: &std::path::Path) -> std::process::Output {
    aiops()
        .args(["train", "--promote", "--data-dir"])
        .arg(data)
        .output()
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_from_the_archive_and_a_restart_scores_from_the_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[archive]\nsegment_max_secs = 1\n[detect]\nwarm_start_secs = 0\n";
    let mut served = serve_with_config(dir.path(), config).await;

    // Before anything is archived, train says why it cannot run.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = train(empty.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no archive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let t0 = (jiff::Timestamp::now().as_millisecond() / 86_400_000 - DAYS - 1) * 86_400_000;
    send_history(&served.base, t0).await;
    // Train beside the running server once the history is compacted into parts.
    let stdout = wait_for("a successful training run", Duration::from_secs(60), || {
        let data = served.data.clone();
        async move {
            let out = train(&data);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("2 series")).then_some(text)
        }
    })
    .await;
    assert!(
        stdout.contains("version 1") && stdout.contains("active"),
        "{stdout}"
    );
    assert!(served.data.join("models/profiles-v1.parquet").exists());
    let list = aiops()
        .args(["models", "list", "--data-dir"])
        .arg(&served.data)
        .output()
        .expect("runs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("profiles") && list.contains("series=2"),
        "{list}"
    );

    // Before paging is turned on: what each sensitivity would have raised on the archive.
    let out = succeeded(
        aiops()
            .args([
                "eval",
                "backtest",
                "--sensitivity",
                "0.01",
                "--sensitivity",
                "1000",
            ])
            .args(["--days", "10", "--data-dir"])
            .arg(&served.data),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["series"], 2, "{v}");
    // Minutes of archive: nothing before the counted days to warm up on, so both series were
    // counted as new ones.
    assert_eq!(v["warmup_days"], 3.0, "{v}");
    assert_eq!(v["young_series"], 2, "{v}");
    let settings = v["settings"].as_array().expect("settings");
    assert_eq!(settings.len(), 2);
    let events = |k: usize| settings[k]["events"].as_u64().expect("count");
    assert!(events(0) <= events(1), "{v}");
    assert_eq!(settings[0]["by_service"][0]["service"], "shop", "{v}");
    let only = aiops()
        .args([
            "eval",
            "backtest",
            "--selector",
            "latency_seconds",
            "--data-dir",
        ])
        .arg(&served.data)
        .output()
        .expect("runs");
    let only: serde_json::Value = serde_json::from_slice(&only.stdout).expect("JSON");
    assert_eq!(only["series"], 1, "{only}");
    assert_eq!(only["settings"].as_array().map(Vec::len), Some(4), "{only}");

    // Restart without the checkpoint and without warming from history: only the trained
    // profiles can make the first new sample scorable.
    assert!(served.server.terminate(Duration::from_secs(30)));
    std::fs::remove_file(served.data.join("detect/checkpoint.bin"))
        .expect("a checkpoint was written at shutdown");
    let port = free_port();
    let mut server = start_serve(port, &served.data, Some(&served.config));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&served.http, &base).await;
    let next = DAYS * 288;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    client
        .send(&WriteRequest {
            timeseries: vec![TimeSeries::from_parts(
                [("__name__", "latency_seconds"), ("service", "shop")],
                [(t0 + next * STEP_MS, 5.0)],
            )],
            metadata: vec![],
        })
        .await
        .expect("accepted");
    let events = wait_for(
        "an event from the trained detector",
        Duration::from_secs(30),
        || {
            let (http, url) = (
                served.http.clone(),
                format!("{base}/api/v1/anomalies?since=0"),
            );
            async move {
                let v = get_json(&http, &url).await?;
                let events = v["anomalies"].as_array()?.clone();
                (!events.is_empty()).then_some(events)
            }
        },
    )
    .await;
    assert_eq!(events[0]["metric"], "latency_seconds", "{events:?}");
    assert!(server.terminate(Duration::from_secs(30)));
}
