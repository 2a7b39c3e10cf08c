//! The real Alertmanager path: a Prometheus alerting rule over a scraped metric fires, the real
//! Alertmanager (Debian's `prometheus-alertmanager`) sends its webhook (payload version 4, with
//! a bearer token) to aiops, which opens an incident; when the metric falls back the alert
//! resolves and so does the incident.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;

fn alertmanager_binary() -> String {
    let path = std::env::var("AIOPS_ALERTMANAGER_BIN")
        .unwrap_or_else(|_| "/usr/bin/prometheus-alertmanager".into());
    assert!(
        Path::new(&path).exists(),
        "Alertmanager is needed for this test: run scripts/test.sh (installs Debian's prometheus-alertmanager) or set AIOPS_ALERTMANAGER_BIN"
    );
    path
}

/// A scrape target whose `checkout_errors` gauge the test sets.
async fn exporter(errors: Arc<AtomicU64>) -> u16 {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let v = errors.load(Ordering::SeqCst);
            async move {
                format!(
                    "# TYPE checkout_errors gauge\ncheckout_errors{{service=\"checkout\"}} {v}\n"
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(l, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_opens_and_resolves_an_incident() {
    let prometheus = prometheus_binary();
    let alertmanager = alertmanager_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        server: _server,
        base,
        port: aiops_port,
        ..
    } = serve_with_config(
        dir.path(),
        "[server]\napi_token = \"am-token\"\n[incidents]\nrerank_secs = 1\n",
    )
    .await;
    // Reads need the token too once one is configured.
    let http = http_with_token("am-token");

    let errors = Arc::new(AtomicU64::new(0));
    let target = exporter(errors.clone()).await;
    let am_port = free_port();
    let am_dir = dir.path().join("alertmanager");
    std::fs::create_dir_all(&am_dir).expect("dir");
    std::fs::write(
        am_dir.join("alertmanager.yml"),
        format!(
            r#"route:
  receiver: aiops
  group_by: ["alertname", "service"]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: aiops
    webhook_configs:
      - url: "http://127.0.0.1:{aiops_port}/api/v1/alertmanager"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: am-token
"#
        ),
    )
    .expect("write alertmanager.yml");
    let am_log = std::fs::File::create(am_dir.join("alertmanager.log")).expect("log");
    let _am = Proc {
        child: Command::new(&alertmanager)
            .arg(format!(
                "--config.file={}",
                am_dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", am_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(am_log)
            .spawn()
            .expect("alertmanager starts"),
        name: "alertmanager",
    };

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("dir");
    std::fs::write(
        prom_dir.join("rules.yml"),
        r#"groups:
  - name: checkout
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: checkout_errors > 1
        labels:
          severity: page
        annotations:
          summary: "checkout is failing requests"
"#,
    )
    .expect("write rules");
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["127.0.0.1:{target}"]
"#,
            rules = prom_dir.join("rules.yml").display()
        ),
    )
    .expect("write prometheus.yml");
    let _prom = start_prometheus(
        &prometheus,
        &prom_dir.join("prometheus.yml"),
        &prom_dir,
        free_port(),
    );

    // Errors start: the rule fires, Alertmanager calls aiops, an incident opens.
    errors.store(7, Ordering::SeqCst);
    let inc = wait_for(
        "an incident from Alertmanager",
        Duration::from_secs(60),
        || async {
            let v = get_json(&http, &format!("{base}/api/v1/incidents")).await?;
            let i = v["incidents"].as_array()?.first()?.clone();
            (i["source"] == "alertmanager").then_some(i)
        },
    )
    .await;
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["title"], "checkout is failing requests");
    assert_eq!(inc["symptom"]["service"], "checkout");
    let id = inc["id"].as_str().expect("id").to_owned();
    let full = get_json(&http, &format!("{base}/api/v1/incidents/{id}"))
        .await
        .expect("incident");
    let alert = &full["alerts"][0];
    assert_eq!(alert["name"], "CheckoutErrors");
    assert_eq!(alert["status"], "firing");
    assert!(alert["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
    assert!(
        alert["labels"]
            .to_string()
            .contains("\"severity\",\"page\""),
        "{alert}"
    );

    // Errors stop: the alert resolves, Alertmanager says so, the incident resolves.
    errors.store(0, Ordering::SeqCst);
    let done = wait_for(
        "the incident to resolve",
        Duration::from_secs(60),
        || async {
            let i = get_json(&http, &format!("{base}/api/v1/incidents/{id}")).await?;
            (i["status"] == "resolved").then_some(i)
        },
    )
    .await;
    assert_eq!(done["alerts"][0]["status"], "resolved");
    assert!(done["alerts"][0]["ends_ms"].is_i64(), "{done}");
    let v = get_json(&http, &format!("{base}/api/v1/incidents"))
        .await
        .expect("list");
    assert_eq!(
        v["incidents"].as_array().map(Vec::len),
        Some(1),
        "one alert group, one incident: {v}"
    );
}
