//! Helpers for end-to-end tests: processes that die with the test, free ports, waiting on a
//! condition with a deadline.

#![allow(dead_code)]

pub mod appinsights;
pub mod certs;
pub mod pagerduty;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on loopback")
}

/// The aiops binary under test.
pub fn aiops() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aiops"));
    c.env("AIOPS_LOG", "info");
    c
}

/// Runs `cmd` to the end and asserts it succeeded (its stderr in the failure message).
pub fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `aiops serve` on `port` with `data_dir` (and `config` if given); log goes to
/// `data_dir/../<name>.log`.
pub fn start_serve(port: u16, data_dir: &Path, config: Option<&Path>) -> Proc {
    let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
    let mut cmd = aiops();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    Proc {
        child: cmd.spawn().expect("aiops binary starts"),
        name: "aiops",
    }
}

/// Polls `f` every 100 ms until it returns `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`wait_for`], for a condition of several parts: `f` returns what it saw while not yet
/// done, and the failure after `timeout` says what that was last (which part was missing).
pub async fn wait_for_seen<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match f().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `GET base/readyz` answers 200.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    wait_for("aiops to become ready", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// An HTTP client (with the TLS provider aiops uses).
pub fn http() -> reqwest::Client {
    aiops_ingest::http_client().build().expect("client builds")
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub fn http_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    aiops_ingest::http_client()
        .default_headers(headers)
        .build()
        .expect("client builds")
}

/// GET a text document (e.g. `/metrics`).
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A running `aiops serve` with its own data directory and configuration.
pub struct Served {
    pub server: Proc,
    pub port: u16,
    pub base: String,
    pub data: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub http: reqwest::Client,
}

/// Writes `config_toml` next to a fresh data directory under `dir`, starts `aiops serve` on
/// them and waits until it is ready.
pub async fn serve_with_config(dir: &Path, config_toml: &str) -> Served {
    let data = dir.join("data");
    let config = dir.join("aiops.toml");
    std::fs::write(&config, config_toml).expect("write config");
    let port = free_port();
    let server = start_serve(port, &data, Some(&config));
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    wait_ready(&http, &base).await;
    Served {
        server,
        port,
        base,
        data,
        config,
        http,
    }
}

/// GET a JSON document.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Starts Prometheus with `config` on `port`, its TSDB and log in `dir`.
pub fn start_prometheus(bin: &str, config: &Path, dir: &Path, port: u16) -> Proc {
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    Proc {
        child: Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
        name: "prometheus",
    }
}

/// The `prometheus` binary, or a failure telling how to get it.
pub fn prometheus_binary() -> String {
    let path =
        std::env::var("AIOPS_PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        Path::new(&path).exists(),
        "Prometheus is needed for this test: run scripts/test.sh (installs Debian's prometheus) or set AIOPS_PROMETHEUS_BIN"
    );
    path
}
