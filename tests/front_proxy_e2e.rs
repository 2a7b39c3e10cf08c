//! The aggregated API done properly, end to end: the real `kubectl` plays the Kubernetes
//! aggregator, reaching the external metrics API over TLS with a front-proxy client
//! certificate, and verifies our serving certificate against its CA bundle (no
//! `insecureSkipTLSVerify`). On the old main the client certificate was never checked: the
//! shipped manifests served the scaling scope to anyone who reached the port.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::certs::{ca, signed};
use common::*;

const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth";
const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth";

/// `kubectl get --raw PATH` against `server`, trusting `ca_bundle`, with a client certificate.
fn kubectl(dir: &Path, server: &str, ca_bundle: &str, client: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    // -v=6 logs the response status (on a 401 kubectl would otherwise ask for a password).
    cmd.args([
        "get",
        "--raw",
        "/apis/external.metrics.k8s.io/v1beta1",
        "-v=6",
    ])
    .stdin(std::process::Stdio::null())
    .args(["--server", server, "--certificate-authority"])
    .arg(dir.join(format!("{ca_bundle}.pem")))
    .env("KUBECONFIG", "/dev/null");
    match client {
        Some(c) => {
            cmd.arg("--client-certificate")
                .arg(dir.join(format!("{c}.pem")))
                .arg("--client-key")
                .arg(dir.join(format!("{c}.key")));
        }
        // With no credential at all kubectl asks for a password before it sends anything.
        None => {
            cmd.args(["--token", "not-a-certificate"]);
        }
    }
    cmd.output()
        .expect("kubectl runs (scripts/test.sh installs it)")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_is_let_in_by_its_front_proxy_certificate_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ca(d, "serving-ca");
    signed(
        d,
        "tls",
        "/CN=aiops-metrics-api.aiops.svc",
        SERVER_EXT,
        "serving-ca",
    );
    ca(d, "requestheader-ca");
    signed(
        d,
        "front-proxy",
        "/CN=front-proxy-client",
        CLIENT_EXT,
        "requestheader-ca",
    );
    signed(
        d,
        "intruder",
        "/CN=intruder",
        CLIENT_EXT,
        "requestheader-ca",
    );
    ca(d, "rogue-ca");
    signed(d, "rogue", "/CN=front-proxy-client", CLIENT_EXT, "rogue-ca");

    let tls_port = free_port();
    let config = format!(
        "[server]\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n\
         front_proxy_ca_file = {:?}\nfront_proxy_allowed_names = [\"front-proxy-client\"]\n",
        d.join("tls.pem"),
        d.join("tls.key"),
        d.join("requestheader-ca.pem"),
    );
    let served = serve_with_config(d, &config).await;
    let https = format!("https://127.0.0.1:{tls_port}");

    // The aggregator: our certificate verified against the CA bundle, its own accepted.
    let ok = kubectl(d, &https, "serving-ca", Some("front-proxy"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    let list: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON");
    assert_eq!(list["kind"], "APIResourceList");
    // No certificate, a name not allowed: 401 (kubectl says Unauthorized).
    for client in [None, Some("intruder")] {
        let denied = kubectl(d, &https, "serving-ca", client);
        assert!(!denied.status.success(), "{client:?} was let in");
        assert!(
            stderr(&denied).contains("401 Unauthorized"),
            "{client:?}: {}",
            stderr(&denied)
        );
    }
    // A certificate another CA signed does not get through the handshake.
    let rogue = kubectl(d, &https, "serving-ca", Some("rogue"));
    assert!(!rogue.status.success(), "a rogue certificate was let in");
    // Plain HTTP has no client certificate: 401 too.
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
    let metrics = get_text(&served.http, &format!("{}/healthz", served.base)).await;
    assert!(metrics.contains("ok"));

    // The serving certificate is renewed by a new CA (cert-manager rotating it): new
    // connections get the new one within seconds, no restart.
    ca(d, "serving-ca-2");
    signed(
        d,
        "tls-2",
        "/CN=aiops-metrics-api.aiops.svc",
        SERVER_EXT,
        "serving-ca-2",
    );
    std::fs::copy(d.join("tls-2.key"), d.join("tls.key")).expect("key");
    std::fs::copy(d.join("tls-2.pem"), d.join("tls.pem")).expect("cert");
    wait_for(
        "the renewed certificate to be served",
        Duration::from_secs(20),
        || async {
            kubectl(d, &https, "serving-ca-2", Some("front-proxy"))
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let old = kubectl(d, &https, "serving-ca", Some("front-proxy"));
    assert!(
        !old.status.success(),
        "the old CA no longer verifies the new certificate"
    );
}
