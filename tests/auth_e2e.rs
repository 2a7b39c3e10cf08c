//! Authentication against the real binary: a real Prometheus 2.42 remote_writes with a bearer
//! token from a file and with basic auth (each to its own queue), a third queue with a wrong
//! token is refused; a rotated token file takes effect without a restart; `serve` refuses a
//! non-loopback address with no credentials.

mod common;

use std::process::Stdio;
use std::time::Duration;

use axum::routing::get;
use common::*;

const EXPOSITION: &str = "auth_temperature_celsius{room=\"lab\"} 21.5\n\
auth_events_total{kind=\"x\"} 7\n\
auth_forged{kind=\"x\"} 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_writes_with_bearer_and_basic_auth_and_a_wrong_token_is_refused() {
    let prom_bin = prometheus_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target_addr = target.local_addr().expect("addr");
    tokio::spawn(async move {
        let app = axum::Router::new().route("/metrics", get(|| async { EXPOSITION }));
        axum::serve(target, app).await
    });

    // aiops: a write token from a file, basic auth from a file, a reader.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("dir");
    let (token_file, password_file) = (secrets.join("token"), secrets.join("password"));
    std::fs::write(&token_file, "tok-1\n").expect("token");
    std::fs::write(&password_file, "p@ss:word").expect("password");
    let config = dir.path().join("aiops.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[server.credentials]]
name = "prometheus-bearer"
scopes = ["write"]
token_file = {token_file:?}

[[server.credentials]]
name = "prometheus-basic"
scopes = ["write"]
username = "prom"
password_file = {password_file:?}

[[server.credentials]]
name = "test-reader"
scopes = ["read"]
token = "reader"
"#
        ),
    )
    .expect("config");
    let port = free_port();
    let _aiops = start_serve(port, &dir.path().join("data"), Some(&config));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http(), &base).await;
    let reader = http_with_token("reader");

    // Prometheus: one queue per credential, each keeping one metric.
    let prom_secrets = dir.path().join("prom-secrets");
    std::fs::create_dir_all(&prom_secrets).expect("dir");
    let prom_token = prom_secrets.join("token");
    std::fs::write(&prom_token, "tok-1").expect("token");
    let queue = |name: &str, metric: &str, auth: String| {
        format!(
            r#"  - url: "{base}/api/v1/write"
    name: {name}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: {metric}
        action: keep
{auth}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 30ms
      max_backoff: 200ms
"#
        )
    };
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: auth\n    \
             static_configs:\n      - targets: [\"{target_addr}\"]\nremote_write:\n{}{}{}",
            queue(
                "bearer",
                "auth_temperature_celsius",
                format!(
                    "    authorization:\n      type: Bearer\n      credentials_file: {}\n",
                    prom_token.display()
                )
            ),
            queue(
                "basic",
                "auth_events_total",
                "    basic_auth:\n      username: prom\n      password: \"p@ss:word\"\n".into()
            ),
            queue(
                "forged",
                "auth_forged",
                "    authorization:\n      type: Bearer\n      credentials: wrong\n".into()
            ),
        ),
    )
    .expect("prometheus.yml");
    let prom_port = free_port();
    let _prom = start_prometheus(&prom_bin, &prom_cfg, dir.path(), prom_port);
    let prom = format!("http://127.0.0.1:{prom_port}");

    let count = |metric: &'static str| {
        let (reader, base) = (reader.clone(), base.clone());
        async move {
            let v = get_json(&reader, &format!("{base}/api/v1/series?match[]={metric}")).await?;
            let id = v["series"][0]["id"].as_str()?.to_owned();
            let s = get_json(&reader, &format!("{base}/api/v1/series/{id}/samples")).await?;
            s["samples"].as_array().map(Vec::len)
        }
    };
    for metric in ["auth_temperature_celsius", "auth_events_total"] {
        wait_for(
            &format!("{metric} written with its credential"),
            Duration::from_secs(60),
            || async { count(metric).await.filter(|&n| n >= 2) },
        )
        .await;
    }
    // The wrong token's queue is refused: Prometheus counts the failure, nothing lands.
    wait_for(
        "Prometheus to report the refused queue",
        Duration::from_secs(60),
        || async {
            let m = get_text(&http(), &format!("{prom}/metrics")).await;
            m.lines()
                .filter(|l| {
                    l.starts_with("prometheus_remote_storage_samples_failed_total")
                        && l.contains("remote_name=\"forged\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .find(|&n| n > 0.0)
        },
    )
    .await;
    let forged = get_json(
        &reader,
        &format!("{base}/api/v1/series?match[]=auth_forged"),
    )
    .await
    .expect("series");
    assert_eq!(forged["total"], 0, "{forged}");
    let m = get_text(&reader, &format!("{base}/metrics")).await;
    assert!(
        m.contains("aiops_api_auth_denied_total{scope=\"write\",reason=\"invalid\"}"),
        "{m}"
    );
    // A reader cannot write.
    let r = reader
        .post(format!("{base}/api/v1/write"))
        .body("x")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status().as_u16(), 403);

    // Rotation: both sides' files change; writes go on without a restart.
    std::fs::write(&token_file, "tok-2").expect("rotate");
    std::fs::write(&prom_token, "tok-2").expect("rotate");
    let before = count("auth_temperature_celsius").await.expect("count");
    wait_for(
        "writes with the rotated token",
        Duration::from_secs(60),
        || async {
            count("auth_temperature_celsius")
                .await
                .filter(|&n| n >= before + 5)
        },
    )
    .await;
    let old = reqwest::Client::new()
        .post(format!("{base}/api/v1/write"))
        .bearer_auth("tok-1")
        .body("x")
        .send()
        .await
        .expect("answers");
    assert_eq!(old.status().as_u16(), 401, "the old token is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_non_loopback_address_without_credentials_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let out = aiops()
        .args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("a"))
        .stdout(Stdio::null())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0") && err.contains("--insecure-listen"),
        "{err}"
    );

    let log = dir.path().join("b.log");
    let mut open = Proc {
        child: aiops()
            .args(["serve", "--insecure-listen", "--listen"])
            .arg(format!("0.0.0.0:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("b"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("starts"),
        name: "aiops",
    };
    wait_ready(&http(), &format!("http://127.0.0.1:{port}")).await;
    assert!(open.terminate(Duration::from_secs(30)));
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("WARN") && logged.contains("no credentials"),
        "{logged}"
    );
}
