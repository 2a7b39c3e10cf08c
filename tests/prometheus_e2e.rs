//! End to end with a real Prometheus 2.42 (Debian's package): it scrapes a target and
//! remote_writes to `aiops serve`; then `aiops backfill` pulls the same series back through
//! Prometheus' `query_range`.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::*;

const EXPOSITION: &str = "# HELP e2e_temperature_celsius Room temperature.\n\
# TYPE e2e_temperature_celsius gauge\n\
e2e_temperature_celsius{room=\"lab\"} 21.5\n\
# HELP e2e_events_total Events seen.\n\
# TYPE e2e_events_total counter\n\
e2e_events_total{kind=\"x\"} 7\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_lands_and_backfill_reads_it_back() {
    let prom_bin = prometheus_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let http = http();

    // The scrape target.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target_addr = target.local_addr().expect("addr");
    // The temperature jumps when `spike` is set, late in the test.
    let spike = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spiked = spike.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let spiked = spiked.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    if spiked {
                        EXPOSITION.replace("21.5", "95")
                    } else {
                        EXPOSITION.to_owned()
                    }
                }
            }),
        );
        axum::serve(target, app).await
    });

    // aiops.
    let aiops_port = free_port();
    // Detection learns from a handful of samples here, so that the test is short.
    let live_cfg = dir.path().join("live.toml");
    std::fs::write(&live_cfg, "[detect.detector]\nlearning_samples = 5\n").expect("config");
    let _aiops = start_serve(aiops_port, &dir.path().join("live"), Some(&live_cfg));
    let base = format!("http://127.0.0.1:{aiops_port}");
    wait_ready(&http, &base).await;

    // Prometheus.
    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels:
    replica: e2e-1
scrape_configs:
  - job_name: e2e
    static_configs:
      - targets: ["{target_addr}"]
remote_write:
  - url: "{base}/api/v1/write"
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 30ms
      max_backoff: 1s
    metadata_config:
      send: true
      send_interval: 2s
"#
        ),
    )
    .expect("write prometheus.yml");
    let _prom = start_prometheus(&prom_bin, &prom_cfg, dir.path(), prom_port);
    let prom = format!("http://127.0.0.1:{prom_port}");

    // The scraped series arrive with their labels (target labels and external labels added).
    let url = format!("{base}/api/v1/series?match[]=e2e_temperature_celsius");
    let series = wait_for(
        "the scraped series in aiops",
        Duration::from_secs(60),
        || async {
            let v = get_json(&http, &url).await?;
            (v["total"] == 1).then(|| v["series"][0].clone())
        },
    )
    .await;
    assert_eq!(series["labels"]["room"], "lab");
    assert_eq!(series["labels"]["job"], "e2e");
    assert_eq!(series["labels"]["instance"], target_addr.to_string());
    assert_eq!(series["labels"]["replica"], "e2e-1");
    let id = series["id"].as_str().expect("id").to_owned();

    // With the right values, several scrapes of them.
    let samples_url = format!("{base}/api/v1/series/{id}/samples");
    let samples = wait_for(
        "three samples of the series",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &samples_url).await?;
            let s = v["samples"].as_array()?.clone();
            (s.len() >= 3).then_some(s)
        },
    )
    .await;
    assert!(samples.iter().all(|p| p[1] == 21.5), "{samples:?}");
    let counter = get_json(
        &http,
        &format!("{base}/api/v1/series?match[]=e2e_events_total"),
    )
    .await
    .expect("series");
    assert_eq!(counter["series"][0]["labels"]["kind"], "x");

    // Prometheus saw no failed sends (metadata-only requests included).
    let prom_metrics = get_text(&http, &format!("{prom}/metrics")).await;
    let failed: f64 = prom_metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        failed, 0.0,
        "Prometheus reported failed remote_write samples"
    );

    // Live polling: a second aiops pulls from the same Prometheus; a second source that points
    // nowhere is reported, and the rest keeps running.
    let closed = free_port();
    let poll_cfg = dir.path().join("poll.toml");
    std::fs::write(
        &poll_cfg,
        format!(
            r#"[[sources.prometheus]]
name = "e2e"
url = "{prom}"
selectors = ["e2e_events_total"]
step_secs = 1
poll_interval_secs = 1
lookback_secs = 30

[[sources.prometheus]]
name = "down"
url = "http://127.0.0.1:{closed}"
selectors = ["up"]
poll_interval_secs = 1
max_retries = 0
"#
        ),
    )
    .expect("write poll.toml");
    let poll_port = free_port();
    let _poller = start_serve(poll_port, &dir.path().join("polled"), Some(&poll_cfg));
    let poll_base = format!("http://127.0.0.1:{poll_port}");
    wait_ready(&http, &poll_base).await;
    let polled = wait_for("the polled series", Duration::from_secs(30), || async {
        let v = get_json(
            &http,
            &format!("{poll_base}/api/v1/series?match[]=e2e_events_total"),
        )
        .await?;
        (v["total"] == 1).then(|| v["series"][0].clone())
    })
    .await;
    assert_eq!(polled["labels"]["kind"], "x");
    assert!(
        polled["labels"].get("replica").is_none(),
        "the query API has no external labels"
    );
    let ready = wait_for(
        "the failing source in /readyz",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &format!("{poll_base}/readyz")).await?;
            (v["sources"]["down"]["healthy"] == false).then_some(v)
        },
    )
    .await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["sources"]["e2e"]["healthy"], true);
    assert!(
        ready["sources"]["down"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&closed.to_string())),
        "{ready}"
    );

    // Backfill the same series from Prometheus' query_range into a second archive.
    let end = jiff::Timestamp::now();
    let start = end - jiff::SignedDuration::from_secs(120);
    let backfill_dir = dir.path().join("backfill");
    let out = common::aiops()
        .args([
            "backfill",
            "--source",
            "prometheus",
            "--url",
            &prom,
            "--query",
            "e2e_temperature_celsius",
        ])
        .args([
            "--start",
            &start.to_string(),
            "--end",
            &end.to_string(),
            "--step",
            "1",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(&backfill_dir)
        .output()
        .expect("aiops backfill runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "backfill failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("backfilled 1 series"), "{stdout}");

    let port2 = free_port();
    let _aiops2 = start_serve(port2, &backfill_dir, None);
    let base2 = format!("http://127.0.0.1:{port2}");
    wait_ready(&http, &base2).await;
    let v = get_json(
        &http,
        &format!("{base2}/api/v1/series?match[]=e2e_temperature_celsius"),
    )
    .await
    .expect("series");
    assert_eq!(v["total"], 1, "{v}");
    let s = &v["series"][0];
    assert_eq!(s["labels"]["room"], "lab");
    assert_eq!(s["labels"]["job"], "e2e");
    let id2 = s["id"].as_str().expect("id");
    let pts = get_json(
        &http,
        &format!(
            "{base2}/api/v1/series/{id2}/samples?start={}&end={}",
            start.as_second(),
            end.as_second()
        ),
    )
    .await
    .expect("samples");
    let pts = pts["samples"].as_array().expect("array");
    // Exactly the points Prometheus itself returns for the same range and step.
    let direct = get_json(
        &http,
        &format!(
            "{prom}/api/v1/query_range?query=e2e_temperature_celsius&start={}&end={}&step=1",
            start.as_second(),
            end.as_second()
        ),
    )
    .await
    .expect("prometheus answers");
    let direct = direct["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .len();
    assert!(direct >= 1);
    assert_eq!(pts.len(), direct, "{pts:?}");
    assert!(pts.iter().all(|p| p[1] == 21.5));

    // Anomalies flow from Prometheus through the pipeline into the API: once the detector has
    // learned from a few scrapes, the temperature jumps.
    let samples_url = format!("{base}/api/v1/series/{id}/samples?start=0");
    wait_for("ten scrapes", Duration::from_secs(30), || async {
        let v = get_json(&http, &samples_url).await?;
        (v["samples"].as_array()?.len() >= 10).then_some(())
    })
    .await;
    spike.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = format!("{base}/api/v1/anomalies?since=0");
    let events = wait_for(
        "the temperature anomaly",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &url).await?;
            let a: Vec<serde_json::Value> = v["anomalies"]
                .as_array()?
                .iter()
                .filter(|e| e["metric"] == "e2e_temperature_celsius")
                .cloned()
                .collect();
            (!a.is_empty()).then_some(a)
        },
    )
    .await;
    assert_eq!(events[0]["observed"], 95.0);
    assert_eq!(events[0]["service"], "e2e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reports_a_bad_query_clearly() {
    let prom_bin = prometheus_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").expect("write");
    let _prom = start_prometheus(&prom_bin, &cfg, dir.path(), prom_port);
    let http = http();
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_for("prometheus ready", Duration::from_secs(30), || async {
        http.get(format!("{prom}/-/ready"))
            .send()
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let out = common::aiops()
        .args([
            "backfill",
            "--url",
            &prom,
            "--query",
            "sum(",
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-01T01:00:00Z",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_data") && err.contains("sum("), "{err}");
}
