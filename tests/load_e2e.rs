//! Under load, against the real binary: a burst of new series does not stop the health check or
//! the HPA's external metric (readers never wait for ingest or detection), and a request over
//! a limit is answered with its 4xx. Speed itself is measured by `aiops bench cardinality`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::*;

fn series(range: std::ops::Range<usize>, t0: i64, samples: i64) -> WriteRequest {
    WriteRequest {
        timeseries: range
            .map(|i| {
                let (svc, pod) = (format!("svc-{}", i % 50), format!("pod-{i}"));
                TimeSeries::from_parts(
                    [
                        ("__name__", "requests_in_flight"),
                        ("pod", pod.as_str()),
                        ("service", svc.as_str()),
                    ],
                    (0..samples).map(|k| (t0 + k * 15_000, (i % 7) as f64 + k as f64 * 0.1)),
                )
            })
            .collect(),
        metadata: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_new_series_does_not_stop_healthz_or_the_external_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let config = dir.path().join("aiops.toml");
    std::fs::write(
        &config,
        r#"
[[detect.scaling.targets]]
name = "checkout_load"
namespace = "shop"
selector = 'checkout_load'
capacity_per_pod = 10.0
lead_secs = 60
"#,
    )
    .expect("config");
    let port = free_port();
    let _server = start_serve(port, &data, Some(&config));
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));

    // 10,000 series with history: what a new series' warm start used to rescan.
    let t0 = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    for chunk in 0..5 {
        client
            .send(&series(chunk * 2000..(chunk + 1) * 2000, t0, 30))
            .await
            .expect("history accepted");
    }

    // The HPA's metric is fed live; once it is served, health and the metric are probed
    // every 50 ms through the burst.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0.0;
            while !stop.load(Ordering::Relaxed) {
                let now = jiff::Timestamp::now().as_millisecond();
                let req = WriteRequest {
                    timeseries: vec![TimeSeries::from_parts(
                        [("__name__", "checkout_load"), ("pod", "a")],
                        [(now, 20.0 + k)],
                    )],
                    metadata: vec![],
                };
                let _ = client.send(&req).await;
                k += 1.0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // Wait for the metric to be served before the burst (it needs a fresh sample).
    let external =
        format!("{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_load");
    wait_for("the external metric", Duration::from_secs(30), || async {
        let r = http.get(&external).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    let rounds = Arc::new(AtomicUsize::new(0));
    let probe = {
        let (http, base, stop, rounds) = (http.clone(), base.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move {
            let external = format!(
                "{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_load"
            );
            let mut worst: Vec<(String, Duration, u16)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for url in [format!("{base}/healthz"), external.clone()] {
                    let started = Instant::now();
                    let status =
                        match tokio::time::timeout(Duration::from_secs(5), http.get(&url).send())
                            .await
                        {
                            Ok(Ok(r)) => r.status().as_u16(),
                            _ => 0,
                        };
                    worst.push((url, started.elapsed(), status));
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        })
    };
    // The burst: 40,000 new series, four requests at a time (503s are retried by the client).
    let mut burst = tokio::task::JoinSet::new();
    for w in 0..4usize {
        let client = client.clone();
        burst.spawn(async move {
            for chunk in (0..5).map(|c| 10_000 + (w * 5 + c) * 2000) {
                client
                    .send(&series(chunk..chunk + 2000, t0 + 450_000, 5))
                    .await
                    .expect("burst accepted");
            }
        });
    }
    while let Some(r) = burst.join_next().await {
        r.expect("burst task");
    }
    wait_for(
        "50,000 series in the catalog",
        Duration::from_secs(60),
        || async {
            let v: serde_json::Value = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["series"].as_u64()? >= 50_001).then_some(())
        },
    )
    .await;
    // A fast machine takes the burst in a few probe rounds: keep probing (while detection
    // works through the new series) until there are enough to judge.
    wait_for("ten probe rounds", Duration::from_secs(60), || async {
        (rounds.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    feeder.await.expect("feeder");
    let probes = probe.await.expect("probe");
    for (url, took, status) in &probes {
        assert_eq!(*status, 200, "{url} answered {status} after {took:?}");
        assert!(
            *took < Duration::from_secs(1),
            "{url} took {took:?} during the burst"
        );
    }
    assert!(probes.len() >= 20, "{} probes", probes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_limit_get_their_4xx_from_the_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let config = dir.path().join("aiops.toml");
    std::fs::write(
        &config,
        "[server]\nmax_series_selectors = 4\n[limits]\nmax_series = 3000\n",
    )
    .expect("config");
    let port = free_port();
    let _server = start_serve(port, &data, Some(&config));
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write")).with_max_attempts(1);
    let t0 = jiff::Timestamp::now().as_millisecond() - 600_000;
    client
        .send(&series(0..2000, t0, 1))
        .await
        .expect("under the limit");
    let body =
        aiops_ingest::remote_write::encode_write_request(&series(1000..3500, t0 + 15_000, 1));
    let r = http
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 429);
    assert_error(r, "series_limit", "limits.max_series").await;
    let many = (0..5).map(|_| "match[]=up").collect::<Vec<_>>().join("&");
    let r = http
        .get(format!("{base}/api/v1/series?{many}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 422);
    assert_error(r, "limit_exceeded", "server.max_series_selectors").await;
}

/// The answer is our JSON error with `code`, its message naming the limit `key`.
async fn assert_error(r: reqwest::Response, code: &str, key: &str) {
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(key)),
        "{v}"
    );
}
