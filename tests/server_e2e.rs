//! End to end against the `aiops` process: crash safety under load, bad bodies, graceful
//! shutdown, and the demo.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiops_ingest::remote_write::{
    RemoteWriteClient, TimeSeries, WriteRequest, encode_write_request,
};
use common::*;

const SERIES_PER_WRITER: usize = 20;
const SAMPLES_PER_REQUEST: usize = 10;

fn request(writer: usize, round: usize, t0: i64) -> WriteRequest {
    let w = writer.to_string();
    WriteRequest {
        timeseries: (0..SERIES_PER_WRITER)
            .map(|s| {
                let s = s.to_string();
                TimeSeries::from_parts(
                    [
                        ("__name__", "crash_test"),
                        ("writer", w.as_str()),
                        ("s", s.as_str()),
                    ],
                    (0..SAMPLES_PER_REQUEST).map(|k| {
                        let ts = t0 + ((round * SAMPLES_PER_REQUEST + k) as i64) * 1000;
                        (ts, (round * SAMPLES_PER_REQUEST + k) as f64)
                    }),
                )
            })
            .collect(),
        metadata: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Small, short segments so that rotation and compaction run during the load.
    let cfg = dir.path().join("aiops.toml");
    std::fs::write(
        &cfg,
        "[archive]\nsegment_max_bytes = 1048576\nsegment_max_secs = 1\n",
    )
    .expect("config");
    let port = free_port();
    let mut server = start_serve(port, &data, Some(&cfg));
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;

    let t0 = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    // Acknowledged rounds per writer.
    let acked: Arc<Mutex<BTreeMap<usize, Vec<usize>>>> = Arc::default();
    let writers = 4;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (acked, url) = (acked.clone(), format!("{base}/api/v1/write"));
        tasks.push(tokio::spawn(async move {
            let client = RemoteWriteClient::new(url).with_max_attempts(1);
            for round in 0.. {
                match client.send(&request(w, round, t0)).await {
                    Ok(()) => acked
                        .lock()
                        .expect("lock")
                        .entry(w)
                        .or_default()
                        .push(round),
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for(
        "150 acknowledged requests",
        Duration::from_secs(60),
        || async {
            let n: usize = acked.lock().expect("lock").values().map(Vec::len).sum();
            (n >= 150).then_some(())
        },
    )
    .await;
    // While the writers are still sending.
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total >= 150);

    let _server = start_serve(port, &data, Some(&cfg));
    wait_ready(&http, &base).await;
    let listed = get_json(&http, &format!("{base}/api/v1/series?match[]=crash_test"))
        .await
        .expect("series");
    let mut ids = BTreeMap::new();
    for s in listed["series"].as_array().expect("array") {
        let w: usize = s["labels"]["writer"]
            .as_str()
            .expect("w")
            .parse()
            .expect("num");
        let k: usize = s["labels"]["s"].as_str().expect("s").parse().expect("num");
        ids.insert((w, k), s["id"].as_str().expect("id").to_owned());
    }
    let mut checked = 0;
    for (w, rounds) in &acked {
        for k in 0..SERIES_PER_WRITER {
            let id = ids
                .get(&(*w, k))
                .unwrap_or_else(|| panic!("series writer={w} s={k} lost"));
            let v = get_json(
                &http,
                &format!(
                    "{base}/api/v1/series/{id}/samples?start={}&end={}",
                    t0 / 1000,
                    t0 / 1000 + 86_400
                ),
            )
            .await
            .expect("samples");
            let have: std::collections::HashSet<i64> = v["samples"]
                .as_array()
                .expect("array")
                .iter()
                .map(|p| p[0].as_i64().expect("ts"))
                .collect();
            for &round in rounds {
                for j in 0..SAMPLES_PER_REQUEST {
                    let ts = t0 + ((round * SAMPLES_PER_REQUEST + j) as i64) * 1000;
                    assert!(
                        have.contains(&ts),
                        "acknowledged sample writer={w} s={k} ts={ts} lost"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, total * SERIES_PER_WRITER * SAMPLES_PER_REQUEST);
    eprintln!("checked {checked} acknowledged samples after kill -9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = start_serve(port, &dir.path().join("data"), None);
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;
    let url = format!("{base}/api/v1/write");
    let now = jiff::Timestamp::now().as_millisecond();
    let good = encode_write_request(&request(0, 0, now - 60_000));
    let one = |labels: Vec<(String, String)>, ts: i64| {
        encode_write_request(&WriteRequest {
            timeseries: vec![TimeSeries::from_parts(
                labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                [(ts, 1.0)],
            )],
            metadata: vec![],
        })
    };
    let name = |extra: Vec<(String, String)>| {
        let mut l = vec![("__name__".to_owned(), "limit_test".to_owned())];
        l.extend(extra);
        l.sort();
        l
    };
    let huge_value = one(name(vec![("big".into(), "x".repeat(1 << 20))]), now);
    let many_labels = one(
        name(
            (0..10_000)
                .map(|i| (format!("l{i:05}"), "v".into()))
                .collect(),
        ),
        now,
    );
    let many_series = encode_write_request(&WriteRequest {
        timeseries: (0..50_000)
            .map(|i| {
                let i = i.to_string();
                TimeSeries::from_parts(
                    [("__name__", "limit_test"), ("i", i.as_str())],
                    [(now, 1.0)],
                )
            })
            .collect(),
        metadata: vec![],
    });
    let post = |body: Vec<u8>, encoding: &'static str| {
        http.post(&url)
            .header("content-encoding", encoding)
            .header("content-type", "application/x-protobuf")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body)
            .send()
    };
    let mut gzip = Vec::new();
    {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(&mut gzip);
        w.write_all(b"not really gzip").expect("in memory");
    }
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "malformed",
            b"\x00\x01garbage".to_vec(),
            "snappy",
            400,
            "bad_payload",
        ),
        (
            "truncated",
            good[..good.len() - 7].to_vec(),
            "snappy",
            400,
            "bad_payload",
        ),
        (
            "wrongly compressed (framed snappy)",
            gzip.clone(),
            "snappy",
            400,
            "bad_payload",
        ),
        (
            "wrong content-encoding",
            good.clone(),
            "gzip",
            415,
            "unsupported_media_type",
        ),
        (
            "oversized",
            vec![7u8; 17 << 20],
            "snappy",
            413,
            "payload_too_large",
        ),
        // The limits below were all answered 204 on the old main.
        (
            "a 1 MiB label value",
            huge_value,
            "snappy",
            400,
            "invalid_series",
        ),
        (
            "10,000 labels on a series",
            many_labels,
            "snappy",
            400,
            "invalid_series",
        ),
        (
            "50,000 series in one request",
            many_series,
            "snappy",
            413,
            "payload_too_large",
        ),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .chain(
            [
                -1_000_000_000_000,
                0,
                // Year 5138.
                100_000_000_000_000,
                i64::MIN,
                i64::MAX,
            ]
            .map(|ts| {
                (
                    "a timestamp outside now - retention .. now + 1 h",
                    one(name(vec![]), ts),
                    "snappy",
                    400,
                    "invalid_series",
                )
            }),
        )
        .collect();
    for (name, body, enc, status, code) in cases {
        let resp = post(body, enc).await.expect("server answers");
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let text = resp.text().await.expect("a body");
        // An offending value is echoed at most 256 bytes of it (the old main echoed 1 MiB).
        assert!(text.len() < 4096, "{name}: {} bytes of error", text.len());
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON error body");
        assert_eq!(json["error"]["code"], code, "{name}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        // Still serving after each.
        assert!(
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .expect("alive")
                .status()
                .is_success()
        );
    }
    let resp = post(good, "snappy").await.expect("answers");
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start_serve(port, &data, None);
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let t0 = jiff::Timestamp::now().as_millisecond() - 60_000;
    for round in 0..5 {
        client.send(&request(9, round, t0)).await.expect("accepted");
    }
    assert!(
        server.terminate(Duration::from_secs(20)),
        "aiops did not exit cleanly on SIGTERM"
    );
    let _server = start_serve(port, &data, None);
    wait_ready(&http, &base).await;
    let v = get_json(
        &http,
        &format!("{base}/api/v1/series?match[]=crash_test{{writer=\"9\"}}"),
    )
    .await
    .expect("series");
    assert_eq!(v["total"], SERIES_PER_WRITER);
    let id = v["series"][0]["id"].as_str().expect("id");
    let s = get_json(
        &http,
        &format!("{base}/api/v1/series/{id}/samples?start={}", t0 / 1000),
    )
    .await
    .expect("samples");
    assert_eq!(
        s["samples"].as_array().expect("array").len(),
        5 * SAMPLES_PER_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_series_within_seconds_and_stops_by_itself() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let console = dir.path().join("console.txt");
    let console_file = std::fs::File::create(&console).expect("console file");
    let mut demo = Proc {
        child: common::aiops()
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--duration-secs",
                "20",
                "--history-hours",
                "2",
                "--interval-secs",
                "1",
            ])
            .args(["--fault", "payment:latency", "--fault-after-secs", "0"])
            .stdout(console_file.try_clone().expect("console file"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("demo starts"),
        name: "demo",
    };
    let http = http();
    let base = format!("http://127.0.0.1:{port}");
    let v = wait_for("demo series in the API", Duration::from_secs(30), || async {
        let v = get_json(&http, &format!("{base}/api/v1/series?match[]=http_request_duration_seconds{{service=\"frontend\"}}")).await?;
        (v["total"] == 3).then_some(v)
    })
    .await;
    let id = v["series"][0]["id"].as_str().expect("id");
    let since = jiff::Timestamp::now().as_second() - 3 * 3600;
    // Two hours of history at 15 s arrive within seconds.
    let url = format!("{base}/api/v1/series/{id}/samples?start={since}");
    wait_for("two hours of history", Duration::from_secs(30), || async {
        let s = get_json(&http, &url).await?;
        (s["samples"].as_array()?.len() >= 470).then_some(())
    })
    .await;
    // The frontend's load is forecast and served to the HPA (two hours of history: predictive).
    let served = wait_for(
        "a predictive scaling value",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &format!("{base}/api/v1/scaling/frontend_rps")).await?;
            (v["mode"] == "predictive").then_some(v)
        },
    )
    .await;
    assert!(
        served["value"].as_f64() >= served["current"].as_f64(),
        "{served}"
    );
    assert!(
        served["forecast"].as_f64().is_some_and(|f| f > 0.0),
        "{served}"
    );
    let v = get_json(
        &http,
        &format!("{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/frontend_rps"),
    )
    .await
    .expect("external metric");
    assert_eq!(v["items"][0]["metricName"], "frontend_rps");
    // The latency fault in payment is found.
    let found = wait_for("an anomaly in payment", Duration::from_secs(20), || async {
        let v = get_json(&http, &format!("{base}/api/v1/anomalies?service=payment")).await?;
        let a = v["anomalies"].as_array()?.clone();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert!(
        found
            .iter()
            .any(|e| e["metric"] == "http_request_duration_seconds"),
        "{found:?}"
    );
    // An incident opens and ranks payment first, with evidence.
    let inc = wait_for(
        "payment ranked first in an incident",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &format!("{base}/api/v1/incidents?status=open")).await?;
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["top_candidate"]["service"] == "payment")
                .cloned()
        },
    )
    .await;
    assert!(
        inc["top_candidate"]["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("payment")),
        "{inc}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = demo.child.try_wait().expect("wait") {
            assert!(status.success());
            let text = std::fs::read_to_string(&console).expect("console");
            assert!(text.contains("root-cause candidates of inc-"), "{text}");
            assert!(text.contains("1. payment"), "{text}");
            assert!(text.contains("injection -> detection"), "{text}");
            assert!(text.contains("payment ranked first"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not stop after --duration-secs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_reach_the_api_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        server,
        port,
        base,
        data,
        config: cfg,
        http,
    } = serve_with_config(
        dir.path(),
        "[detect]\ncheckpoint_secs = 1\n[detect.detector]\nlearning_samples = 50\n",
    )
    .await;
    let mut server = server;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let t0 = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    let send = |k: i64, v: f64| {
        let req = WriteRequest {
            timeseries: vec![TimeSeries::from_parts(
                [
                    ("__name__", "checkout_latency_seconds"),
                    ("service", "payment"),
                ],
                [(t0 + k * 10_000, v)],
            )],
            metadata: vec![],
        };
        let client = client.clone();
        async move { client.send(&req).await.expect("accepted") }
    };
    for k in 0..100 {
        send(k, 0.2 + 0.01 * ((k * 7) % 5) as f64).await;
    }
    send(100, 3.0).await;
    let url = format!(
        "{base}/api/v1/anomalies?since={}&service=payment",
        t0 / 1000
    );
    let events = wait_for("the anomaly event", Duration::from_secs(20), || async {
        let v = get_json(&http, &url).await?;
        let a = v["anomalies"].as_array()?.clone();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(events[0]["metric"], "checkout_latency_seconds");
    assert_eq!(events[0]["start_ms"], t0 + 100 * 10_000);
    assert_eq!(events[0]["observed"], 3.0);
    // Why it alarmed: a value far beyond everything the series held.
    assert_eq!(events[0]["reason"], "range", "{}", events[0]);
    let log = std::fs::read_to_string(data.join("detect/events.jsonl")).expect("event log");
    assert!(log.contains(events[0]["id"].as_str().expect("id")), "{log}");
    // The top scores are published with the event (within 200 ms of an earlier refresh).
    let metrics_url = format!("{base}/metrics");
    wait_for(
        "the anomaly score gauge",
        Duration::from_secs(5),
        || async {
            let m = get_text(&http, &metrics_url).await;
            m.contains("aiops_anomaly_score{series=\"").then_some(())
        },
    )
    .await;
    // The batches waiting for detection are in view (none now: everything was scored).
    let m = get_text(&http, &metrics_url).await;
    assert!(m.contains("aiops_detect_queue_bytes 0"), "{m}");
    // The alarm is counted by its reason.
    assert!(
        m.contains("aiops_detect_alarms_total{reason=\"range\"} 1\n"),
        "{m}"
    );
    for family in [
        "aiops_anomaly_rank_score{series=\"",
        "aiops_anomaly_p_value{series=\"",
    ] {
        assert!(m.contains(family), "{family} in {m}");
    }
    // The same list over HTTP: the spiking series, alarmed, its continuous score and p-value.
    let scores = get_json(
        &http,
        &format!("{base}/api/v1/scores?service=payment&limit=5"),
    )
    .await
    .expect("scores");
    let top = &scores["scores"][0];
    assert_eq!(top["metric"], "checkout_latency_seconds", "{scores}");
    assert_eq!(top["alarm"], true, "{scores}");
    assert!(top["score"].as_f64().is_some_and(|s| s >= 0.5), "{scores}");
    let (rank, p) = (
        top["rank_score"].as_f64().expect("rank_score"),
        top["p_value"].as_f64().expect("p_value"),
    );
    let expected_p = 10f64.powf(-5.0 * rank / (1.0 - rank));
    assert!(
        (0.0..1.0).contains(&rank) && (p - expected_p).abs() <= 1e-12 + 1e-9 * p,
        "{scores}"
    );
    let other = get_json(&http, &format!("{base}/api/v1/scores?service=nobody"))
        .await
        .expect("scores");
    assert_eq!(other["scores"].as_array().map(Vec::len), Some(0), "{other}");
    // The series page's view: the series replayed from the archive (the warm-up covers all of
    // it, so it scores as the live detector did) with its expected band and its event.
    let id = top["series_id"].as_str().expect("series_id");
    let range = format!(
        "start={}&end={}",
        (t0 + 50 * 10_000) as f64 / 1000.0,
        (t0 + 100 * 10_000) as f64 / 1000.0
    );
    let scored = get_json(&http, &format!("{base}/api/v1/series/{id}/scored?{range}"))
        .await
        .expect("scored");
    let samples = get_json(&http, &format!("{base}/api/v1/series/{id}/samples?{range}"))
        .await
        .expect("samples");
    let points = scored["points"].as_array().expect("points");
    assert_eq!(points.len(), 51, "{scored}");
    assert_eq!(
        Some(points.len()),
        samples["samples"].as_array().map(Vec::len)
    );
    let col = |p: &serde_json::Value, i: usize| p[i].as_f64().expect("a number");
    for p in &points[..50] {
        assert!(col(p, 3) <= col(p, 2) && col(p, 2) <= col(p, 4), "{p}");
        assert!(col(p, 5) < 0.5, "no alarm before the spike: {p}");
    }
    let spike = &points[50];
    assert_eq!(spike[0], t0 + 100 * 10_000);
    assert!(
        col(spike, 1) > col(spike, 4) && col(spike, 5) >= 0.5,
        "{spike}"
    );
    assert_eq!(scored["events"][0]["id"], events[0]["id"], "{scored}");
    for bad in ["start=x", "bogus=1", "start=20&end=10"] {
        let r = http
            .get(format!("{base}/api/v1/series/{id}/scored?{bad}"))
            .send()
            .await
            .expect("answer");
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
    }

    assert!(server.terminate(Duration::from_secs(20)));
    let _server = start_serve(port, &data, Some(&cfg));
    wait_ready(&http, &base).await;
    let v = get_json(&http, &url).await.expect("anomalies");
    assert_eq!(
        v["anomalies"].as_array().map(Vec::len),
        Some(1),
        "events survive the restart"
    );
    assert_eq!(v["anomalies"][0]["reason"], "range", "{v}");
    // The detector state survived too: the next ordinary sample is not an anomaly of a cold start.
    send(101, 0.21).await;
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(log.contains("Restored detector state"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checkpoint_detectors_warm_from_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No checkpoint will be written before the kill.
    let Served {
        server,
        port,
        base,
        data,
        config: cfg,
        http,
    } = serve_with_config(
        dir.path(),
        "[detect]\ncheckpoint_secs = 3600\n[detect.detector]\nlearning_samples = 50\n",
    )
    .await;
    let mut server = server;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let t0 = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    let req = |from: i64, n: i64, spike: bool| WriteRequest {
        timeseries: vec![TimeSeries::from_parts(
            [("__name__", "queue_depth"), ("service", "orders")],
            (from..from + n).map(|k| {
                (
                    t0 + k * 10_000,
                    if spike {
                        400.0
                    } else {
                        20.0 + ((k * 7) % 5) as f64
                    },
                )
            }),
        )],
        metadata: vec![],
    };
    client.send(&req(0, 100, false)).await.expect("accepted");
    server.kill9();
    assert!(!data.join("detect/checkpoint.bin").exists());

    let _server = start_serve(port, &data, Some(&cfg));
    wait_ready(&http, &base).await;
    client.send(&req(100, 1, true)).await.expect("accepted");
    let url = format!("{base}/api/v1/anomalies?since={}&service=orders", t0 / 1000);
    let events = wait_for(
        "an anomaly from the warmed detector",
        Duration::from_secs(20),
        || async {
            let v = get_json(&http, &url).await?;
            let a = v["anomalies"].as_array()?.clone();
            (!a.is_empty()).then_some(a)
        },
    )
    .await;
    assert_eq!(events[0]["start_ms"], t0 + 100 * 10_000);
    // Killed again before any checkpoint: the event comes back from the event log.
    drop(_server);
    let _server = start_serve(port, &data, Some(&cfg));
    wait_ready(&http, &base).await;
    let v = get_json(&http, &url).await.expect("anomalies");
    assert_eq!(v["anomalies"].as_array().map(Vec::len), Some(1), "{v}");
}
