//! remote_write out, against the real receivers: a Prometheus 2.42 with
//! `--web.enable-remote-write-receiver` and a VictoriaMetrics (Debian's), queried back with
//! PromQL — the derived series of a scored series (score, expected value and band, with the
//! source's labels), the scaling target's load and forecast, the open incidents; and a third
//! output whose receiver is down at first, whose batches wait on disk and arrive once it is up.
//! The Prometheus and VictoriaMetrics outputs are set to remote_write 2.0, which neither takes:
//! they fall back to 1.0 and lose nothing; a fourth output writes 2.0 to a second aiops, which
//! takes it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aiops_ingest::remote_write::client::RemoteWriteClient;
use aiops_ingest::remote_write::proto::{TimeSeries, WriteRequest};
use common::*;

/// A Prometheus with its remote-write receiver on; `config` its prometheus.yml.
fn start_receiver_prometheus(dir: &Path, port: u16, config_yaml: &str) -> Proc {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_yaml).expect("config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    Proc {
        child: Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
        name: "prometheus",
    }
}

/// VictoriaMetrics' basic-auth password.
const VM_PASSWORD: &str = "vm-s3cret";

/// A receiver-only Prometheus configuration.
const IDLE: &str = "global:\n  scrape_interval: 1m\n";

/// VictoriaMetrics on `port`, every route behind basic auth (user `aiops`, password
/// [`VM_PASSWORD`]), as a receiver behind vmauth or a hosted one is.
fn start_victoriametrics(dir: &Path, port: u16) -> Proc {
    let bin = std::env::var("AIOPS_VICTORIAMETRICS_BIN")
        .unwrap_or_else(|_| "/usr/bin/victoria-metrics".into());
    assert!(
        Path::new(&bin).exists(),
        "VictoriaMetrics is needed for this test: run scripts/test.sh (installs Debian's victoria-metrics) or set AIOPS_VICTORIAMETRICS_BIN"
    );
    Proc {
        child: Command::new(bin)
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-loggerLevel=ERROR")
            .arg("-search.latencyOffset=0s")
            .arg("-httpAuth.username=aiops")
            .arg(format!("-httpAuth.password={VM_PASSWORD}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts"),
        name: "victoria-metrics",
    }
}

/// The value of an instant PromQL query's first result.
async fn query(http: &reqwest::Client, base: &str, promql: &str) -> Option<f64> {
    let url = format!("{base}/api/v1/query?query={}", url_escape(promql));
    let v = get_json(http, &url).await?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_series_reach_prometheus_and_victoriametrics_and_wait_on_disk_for_a_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (prom_port, vm_port, later_port) = (free_port(), free_port(), free_port());
    let _prom = start_receiver_prometheus(&dir.path().join("prom"), prom_port, IDLE);
    let _vm = start_victoriametrics(&dir.path().join("vm"), vm_port);
    let vm_password = dir.path().join("vm-password");
    std::fs::write(&vm_password, format!("{VM_PASSWORD}\n")).expect("password file");
    let vm_password = vm_password.display();
    std::fs::create_dir_all(dir.path().join("receiver")).expect("mkdir");
    let receiver = serve_with_config(&dir.path().join("receiver"), "").await;
    let receiver_port = receiver.port;
    let config = format!(
        r#"
[detect.detector]
learning_samples = 50

[[detect.scaling.targets]]
name = "checkout_rps"
selector = "checkout_rps"
capacity_per_pod = 10.0
lead_secs = 60

[[outputs.remote_write]]
name = "prometheus"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
select = ['checkout_latency_seconds']
flush_secs = 1
protocol = "2.0"

[[outputs.remote_write]]
name = "aiops"
url = "http://127.0.0.1:{receiver_port}/api/v1/write"
select = ['checkout_latency_seconds']
flush_secs = 1
scaling = false
incidents = false
protocol = "2.0"

[[outputs.remote_write]]
name = "victoriametrics"
url = "http://127.0.0.1:{vm_port}/api/v1/write"
username = "aiops"
password_file = "{vm_password}"
flush_secs = 1
protocol = "2.0"
anomaly = true
scaling = false
incidents = false

[[outputs.remote_write]]
name = "later"
url = "http://127.0.0.1:{later_port}/api/v1/write"
select = ['checkout_latency_seconds']
flush_secs = 1
max_backoff_secs = 1
"#
    );
    let Served {
        server: _server,
        base,
        http,
        ..
    } = serve_with_config(dir.path(), &config).await;
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    // 100 ordinary samples every 10 s up to about now, then a spike.
    let t0 = jiff::Timestamp::now().as_millisecond() - 101 * 10_000;
    for k in 0..=100i64 {
        let v = if k == 100 {
            3.0
        } else {
            0.2 + 0.01 * ((k * 7) % 5) as f64
        };
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries::from_parts(
                    [
                        ("__name__", "checkout_latency_seconds"),
                        ("service", "payment"),
                    ],
                    [(t0 + k * 10_000, v)],
                ),
                TimeSeries::from_parts(
                    [("__name__", "checkout_rps"), ("service", "payment")],
                    [(t0 + k * 10_000, 40.0 + (k % 4) as f64)],
                ),
            ],
            metadata: vec![],
        };
        client.send(&req).await.expect("accepted");
    }
    let prom = format!("http://127.0.0.1:{prom_port}");
    // (VictoriaMetrics is queried with its credentials in the URL; without them, it refuses.)
    let vm = format!("http://aiops:{VM_PASSWORD}@127.0.0.1:{vm_port}");
    let bare = wait_for(
        "VictoriaMetrics to answer",
        Duration::from_secs(30),
        || async {
            let url = format!("http://127.0.0.1:{vm_port}/api/v1/query?query=1");
            http.get(url).send().await.ok().map(|r| r.status())
        },
    )
    .await;
    assert_eq!(bare, reqwest::StatusCode::UNAUTHORIZED);
    // Every sample's expected value and band, with the source's labels; the spike alarmed.
    for (name, receiver) in [("Prometheus", &prom), ("VictoriaMetrics", &vm)] {
        let n = wait_for(
            &format!("the derived series in {name}"),
            Duration::from_secs(60),
            || async {
                query(
                    &http,
                    receiver,
                    r#"count_over_time(aiops_expected{source_metric="checkout_latency_seconds",service="payment"}[1h])"#,
                )
                .await
                .filter(|n| *n >= 101.0)
            },
        )
        .await;
        assert_eq!(n, 101.0, "{name}: one expected value per scored sample");
        let peak = query(
            &http,
            receiver,
            r#"max_over_time(aiops_anomaly_score{source_metric="checkout_latency_seconds"}[1h])"#,
        )
        .await
        .expect("scores");
        assert!(peak >= 0.5, "{name}: the spike's alarm score {peak}");
        let inside = query(
            &http,
            receiver,
            r#"min_over_time((aiops_expected_upper{service="payment"} - aiops_expected_lower{service="payment"})[1h:10s])"#,
        )
        .await
        .expect("band");
        assert!(inside >= 0.0, "{name}: upper below lower ({inside})");
        assert!(
            query(&http, receiver, "count(aiops_anomaly_rank_score)")
                .await
                .is_some(),
            "{name}: the continuous score"
        );
    }
    // Prometheus' output selects the latency series only; VictoriaMetrics' writes every series.
    assert_eq!(
        query(
            &http,
            &prom,
            r#"count(count_over_time(aiops_expected{source_metric="checkout_rps"}[1h]))"#
        )
        .await,
        None
    );
    assert!(
        query(
            &http,
            &vm,
            r#"count(count_over_time(aiops_expected{source_metric="checkout_rps"}[1h]))"#
        )
        .await
        .is_some()
    );
    // The scaling target's load and the incidents, to Prometheus (not to VictoriaMetrics: off).
    wait_for(
        "the scaling load in Prometheus",
        Duration::from_secs(30),
        || async {
            query(
                &http,
                &prom,
                r#"last_over_time(aiops_scaling_load{target="checkout_rps"}[5m])"#,
            )
            .await
            .filter(|v| *v > 0.0)
        },
    )
    .await;
    wait_for(
        "the open incidents in Prometheus",
        Duration::from_secs(30),
        || async { query(&http, &prom, "last_over_time(aiops_incidents_open[5m])").await },
    )
    .await;
    assert_eq!(query(&http, &vm, "count(aiops_incidents_open)").await, None);

    // Neither Prometheus 2.42 nor VictoriaMetrics 1.79 takes 2.0: those outputs fell back to
    // 1.0 (and every sample arrived, above); the second aiops takes 2.0, and holds every
    // expected value, once.
    let m = get_text(&http, &format!("{base}/metrics")).await;
    for (output, version) in [("prometheus", 1), ("victoriametrics", 1), ("aiops", 2)] {
        assert!(
            m.contains(&format!(
                "aiops_output_remote_write_version{{output=\"{output}\"}} {version}"
            )),
            "{output} sends {version}: {m}"
        );
    }
    let found = wait_for(
        "the derived series in the second aiops",
        Duration::from_secs(30),
        || async {
            let list = get_json(
                &http,
                &format!(
                    "{}/api/v1/series?match[]={}",
                    receiver.base,
                    url_escape(r#"aiops_expected{source_metric="checkout_latency_seconds"}"#)
                ),
            )
            .await?;
            let id = list["series"][0]["id"].as_str()?.to_owned();
            let samples = get_json(
                &http,
                &format!(
                    "{}/api/v1/series/{id}/samples?start={}&end={}",
                    receiver.base,
                    t0 / 1000 - 60,
                    t0 / 1000 + 3_600
                ),
            )
            .await?;
            let n = samples["samples"].as_array()?.len();
            (n >= 101).then_some((list, n))
        },
    )
    .await;
    assert_eq!(found.1, 101, "one expected value per scored sample, once");
    assert_eq!(found.0["series"][0]["labels"]["service"], "payment");

    // The third receiver was down all along: its batches wait on disk, counted.
    let metrics_url = format!("{base}/metrics");
    let queued = wait_for(
        "batches queued for the down receiver",
        Duration::from_secs(30),
        || async {
            let m = get_text(&http, &metrics_url).await;
            m.lines()
                .find(|l| l.starts_with(r#"aiops_output_queue_batches{output="later"}"#))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|n| *n > 0.0)
        },
    )
    .await;
    let m = get_text(&http, &metrics_url).await;
    assert!(
        m.contains(r#"aiops_output_retries_total{output="later"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"aiops_output_batches_total{output="prometheus",result="sent"}"#),
        "{m}"
    );
    // It comes up: everything queued arrives, and the queue empties.
    let _later = start_receiver_prometheus(&dir.path().join("later"), later_port, IDLE);
    let later = format!("http://127.0.0.1:{later_port}");
    let n = wait_for(
        "the queued batches delivered",
        Duration::from_secs(60),
        || async {
            query(
                &http,
                &later,
                r#"count_over_time(aiops_expected{source_metric="checkout_latency_seconds"}[1h])"#,
            )
            .await
            .filter(|n| *n >= 101.0)
        },
    )
    .await;
    assert_eq!(
        n, 101.0,
        "every queued sample arrived once ({queued} batches waited)"
    );
    wait_for("the queue to empty", Duration::from_secs(30), || async {
        let m = get_text(&http, &metrics_url).await;
        m.contains(r#"aiops_output_queue_batches{output="later"} 0"#)
            .then_some(())
    })
    .await;
}

/// Every dashboard's shape: what Grafana needs to import it with the datasource as a variable.
fn check_dashboard(name: &str, d: &serde_json::Value) -> Vec<(String, String)> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    assert!(
        s(&d["uid"]).is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "{name}: uid"
    );
    assert!(s(&d["title"]).is_some(), "{name}: title");
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{name}: schemaVersion"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{name}: the datasource is a variable"
    );
    let mut exprs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = s(&p["title"]).expect("panel title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{name}: ids unique"
        );
        assert!(
            ["timeseries", "stat", "table", "gauge", "bargauge"]
                .contains(&p["type"].as_str().unwrap_or("")),
            "{name}/{title}: panel type"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(
                p["gridPos"][k].as_u64().is_some(),
                "{name}/{title}: gridPos.{k}"
            );
        }
        assert!(
            p["gridPos"]["x"].as_u64().unwrap_or(99) + p["gridPos"]["w"].as_u64().unwrap_or(99)
                <= 24
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
            exprs.push((format!("{name}/{title}"), s(&t["expr"]).expect("expr")));
        }
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        exprs.push((
            format!("{name}/${}", s(&v["name"]).unwrap_or_default()),
            s(&v["definition"]).expect("definition"),
        ));
    }
    exprs
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grafana_panel_returns_data_from_a_prometheus_holding_what_aiops_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let config = format!(
        r#"
[detect.detector]
learning_samples = 50

[[detect.scaling.targets]]
name = "checkout_rps"
selector = "checkout_rps"
capacity_per_pod = 10.0
lead_secs = 60

[[outputs.remote_write]]
name = "prometheus"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
flush_secs = 1
max_backoff_secs = 1
"#
    );
    let Served {
        server: _server,
        base,
        http,
        port,
        ..
    } = serve_with_config(dir.path(), &config).await;
    // The Prometheus scrapes aiops (self-monitoring) and receives what it writes; the source
    // series reach it too, as they would from the user's own Prometheus.
    let _prom = start_receiver_prometheus(
        &dir.path().join("prom"),
        prom_port,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: aiops\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_for("Prometheus ready", Duration::from_secs(30), || async {
        http.get(format!("{prom}/-/ready"))
            .send()
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let to_aiops = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    let to_prom = RemoteWriteClient::new(format!("{prom}/api/v1/write"));
    let t0 = jiff::Timestamp::now().as_millisecond() - 101 * 10_000;
    for k in 0..=100i64 {
        let v = if k == 100 {
            3.0
        } else {
            0.2 + 0.01 * ((k * 7) % 5) as f64
        };
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries::from_parts(
                    [
                        ("__name__", "checkout_latency_seconds"),
                        ("service", "payment"),
                    ],
                    [(t0 + k * 10_000, v)],
                ),
                TimeSeries::from_parts(
                    [("__name__", "checkout_rps"), ("service", "payment")],
                    [(t0 + k * 10_000, 40.0 + (k % 4) as f64)],
                ),
            ],
            metadata: vec![],
        };
        to_aiops.send(&req).await.expect("aiops accepted");
        to_prom.send(&req).await.expect("prometheus accepted");
    }
    wait_for_seen(
        "the derived series, a few scrapes and the scaling load",
        // A deadline, not a wait: met in seconds when idle; 60 s once ran out on a loaded CI.
        Duration::from_secs(120),
        || async {
            let derived = query(&http, &prom, "count_over_time(aiops_expected[1h])").await;
            let scrapes = query(&http, &prom, r#"count_over_time(up{job="aiops"}[1h])"#).await;
            let load = query(&http, &prom, "last_over_time(aiops_scaling_load[5m])").await;
            let done = derived.is_some_and(|n| n >= 101.0)
                && scrapes.is_some_and(|n| n >= 5.0)
                && load.is_some_and(|l| l > 0.0);
            match done {
                true => Ok(()),
                false => Err(format!(
                    "aiops_expected samples {derived:?} (want >= 101), scrapes {scrapes:?} \
                     (want >= 5), aiops_scaling_load {load:?} (want > 0)"
                )),
            }
        },
    )
    .await;

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana");
    let mut names: Vec<_> = std::fs::read_dir(root)
        .expect("deploy/grafana")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    let end = jiff::Timestamp::now().as_second();
    let mut checked = 0;
    for path in names {
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (panel, expr) in check_dashboard(&name, &d) {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$service", "payment")
                .replace("$metric", "checkout_latency_seconds")
                .replace("$target", "checkout_rps");
            let url = if let Some(rest) = expr.strip_prefix("label_values(") {
                // A variable: label_values(SELECTOR, LABEL).
                let (sel, label) = rest
                    .trim_end_matches(')')
                    .rsplit_once(',')
                    .expect("label_values(selector, label)");
                format!(
                    "{prom}/api/v1/label/{}/values?match[]={}",
                    label.trim(),
                    url_escape(sel.trim())
                )
            } else {
                format!(
                    "{prom}/api/v1/query_range?query={}&start={}&end={end}&step=5",
                    url_escape(&expr),
                    end - 1800
                )
            };
            let v = get_json(&http, &url)
                .await
                .unwrap_or_else(|| panic!("{panel}: {expr} failed"));
            let data = &v["data"];
            let has = data.as_array().is_some_and(|a| !a.is_empty())
                || data["result"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|s| s["values"].as_array().is_some_and(|x| !x.is_empty()))
                });
            assert!(has, "{panel}: {expr} returned no data: {v}");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} queries checked");
}
