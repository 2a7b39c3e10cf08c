//! Predictive scaling end to end: load arrives by remote_write, `aiops serve` serves it through
//! the external metrics API, and the real `kubectl` reads it (`kubectl get --raw`).

mod common;

use std::time::Duration;

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::*;

const CONFIG: &str = r#"
[detect.scaling]
step_secs = 1
stale_secs = 5
hold_secs = 3600

[[detect.scaling.targets]]
name = "checkout_rps"
selector = 'rps{service="checkout"}'
labels = { service = "checkout" }
capacity_per_pod = 10
lead_secs = 60
"#;

fn kubectl() -> Option<String> {
    let found = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| "kubectl".to_owned())
}

fn kubectl_raw(bin: &str, base: &str, path: &str) -> (bool, String) {
    let out = std::process::Command::new(bin)
        .args(["get", "--raw", path, "--server", base])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl runs");
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_forecast_metric_served_from_remote_written_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve_with_config(dir.path(), CONFIG).await;
    let base = served.base.clone();

    // Two pods, 6.5 requests per second each, for the last two minutes.
    let now = jiff::Timestamp::now().as_millisecond();
    let series = |pod: &str| {
        TimeSeries::from_parts(
            [("__name__", "rps"), ("service", "checkout"), ("pod", pod)],
            (0..120).map(|k| (now - (119 - k) * 1000, 6.5)),
        )
    };
    let client = RemoteWriteClient::new(format!("{base}/api/v1/write"));
    client
        .send(&WriteRequest {
            timeseries: vec![series("a"), series("b")],
            metadata: vec![],
        })
        .await
        .expect("accepted");

    let url = format!("{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_rps");
    let v = wait_for("the scaling value", Duration::from_secs(30), || {
        let http = served.http.clone();
        let url = url.clone();
        async move { get_json(&http, &url).await }
    })
    .await;
    assert_eq!(v["kind"], "ExternalMetricValueList");
    // Still learning: the current load of both pods, 13 requests per second.
    assert_eq!(v["items"][0]["value"], "13");

    let Some(bin) = kubectl() else {
        panic!("kubectl is not installed (scripts/test.sh installs it)");
    };
    let (ok, text) = kubectl_raw(&bin, &base, "/apis/external.metrics.k8s.io/v1beta1");
    assert!(ok, "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(list["resources"][0]["name"], "checkout_rps");
    let (ok, text) = kubectl_raw(
        &bin,
        &base,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_rps?labelSelector=service%3Dcheckout",
    );
    assert!(ok, "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["items"][0]["metricLabels"]["service"], "checkout");
    // An unknown metric is a Kubernetes NotFound, which kubectl reports as such.
    let (ok, text) = kubectl_raw(
        &bin,
        &base,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/nope",
    );
    assert!(!ok && text.contains("NotFound"), "{text}");
}

/// A self-signed certificate for 127.0.0.1 made by the real `openssl`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    common::certs::self_signed(
        dir,
        "tls",
        "aiops-metrics-api.aiops.svc",
        &["-addext", "subjectAltName=IP:127.0.0.1"],
    );
    (dir.join("tls.pem"), dir.join("tls.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_metric_over_tls_with_a_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let tls_port = free_port();
    let config = format!(
        "[server]\nscaling_token = \"s3cret\"\ntls_listen = \"127.0.0.1:{tls_port}\"\n\
         tls_cert_file = {cert:?}\ntls_key_file = {key:?}\n{CONFIG}"
    );
    let served = serve_with_config(dir.path(), &config).await;
    let https = format!("https://127.0.0.1:{tls_port}");
    let Some(bin) = kubectl() else {
        panic!("kubectl is not installed (scripts/test.sh installs it)");
    };
    let raw = |token: &str| {
        std::process::Command::new(&bin)
            .args(["get", "--raw", "/apis/external.metrics.k8s.io/v1beta1"])
            .args([
                "--server",
                &https,
                "--insecure-skip-tls-verify",
                "--token",
                token,
            ])
            .env("KUBECONFIG", "/dev/null")
            .output()
            .expect("kubectl runs")
    };
    let ok = raw("s3cret");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON");
    assert_eq!(list["kind"], "APIResourceList");
    let denied = raw("wrong");
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("the credentials match none configured"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // Plain HTTP still serves, with the same token rule on these routes.
    let plain = served
        .http
        .get(format!(
            "{}/apis/external.metrics.k8s.io/v1beta1",
            served.base
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(plain.status().as_u16(), 401);
    // A client that does not speak TLS does not stop the HTTPS server.
    let _ = std::net::TcpStream::connect(("127.0.0.1", tls_port))
        .and_then(|mut s| std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n"));
    assert!(raw("s3cret").status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_without_checkpoint_the_target_warms_from_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No checkpoint before the kill; forecasts served after 60 steps of history.
    let config = format!(
        "[detect]\ncheckpoint_secs = 3600\n{}",
        CONFIG.replace(
            "hold_secs = 3600",
            "hold_secs = 3600\nmin_history_steps = 60"
        )
    );
    let mut served = serve_with_config(dir.path(), &config).await;
    let now = jiff::Timestamp::now().as_millisecond();
    let write = |from: i64, to: i64| WriteRequest {
        timeseries: ["a", "b"]
            .iter()
            .map(|pod| {
                TimeSeries::from_parts(
                    [("__name__", "rps"), ("service", "checkout"), ("pod", pod)],
                    (from..=to).map(|k| (now + k * 1000, 6.5)),
                )
            })
            .collect(),
        metadata: vec![],
    };
    let client = RemoteWriteClient::new(format!("{}/api/v1/write", served.base));
    // Acknowledged means durable in the archive.
    client.send(&write(-180, -1)).await.expect("accepted");
    served.server.kill9();

    let server = start_serve(served.port, &served.data, Some(&served.config));
    served.server = server;
    wait_ready(&served.http, &served.base).await;
    client.send(&write(0, 1)).await.expect("accepted");
    let url = format!("{}/api/v1/scaling/checkout_rps", served.base);
    let v = wait_for(
        "a scaling value after the restart",
        Duration::from_secs(30),
        || {
            let http = served.http.clone();
            let url = url.clone();
            async move { get_json(&http, &url).await }
        },
    )
    .await;
    // Cold, it would be reactive for 60 steps; warmed from the archive it forecasts at once.
    assert_eq!(v["mode"], "predictive", "{v}");
    assert!(
        (v["current"].as_f64().expect("current") - 13.0).abs() < 1e-9,
        "{v}"
    );
}
