//! The command line: configuration layering and validation as an operator meets them.

mod common;

#[test]
fn check_config_accepts_the_example_and_env_overrides_it() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/aiops.example.toml");
    let out = common::aiops()
        .args(["check-config", example])
        .env("AIOPS__SERVER__LISTEN", "127.0.0.1:5555")
        .env("AIOPS__ARCHIVE__DATA_DIR", "/var/lib/aiops")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen 127.0.0.1:5555"), "{stdout}");
    assert!(stdout.contains("data_dir /var/lib/aiops"), "{stdout}");
    assert!(stdout.contains("1 prometheus source"), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nmax_body_bytes = 1\n[transport]\ncapacity = 0\n",
    )
    .expect("write");
    let out = common::aiops()
        .arg("check-config")
        .arg(&path)
        .env("AIOPS__ARCHIVE__RETENTION_SECS", "5")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.max_body_bytes",
        "transport.capacity",
        "archive.retention_secs",
    ] {
        assert!(stderr.contains(key), "{key} missing: {stderr}");
    }
}

#[test]
fn serve_refuses_a_data_dir_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = common::free_port();
    let _first = common::start_serve(port, &data, None);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(common::wait_ready(
        &common::http(),
        &format!("http://127.0.0.1:{port}"),
    ));
    let out = common::aiops()
        .args(["backfill", "--url", "http://127.0.0.1:1", "--query", "up"])
        .args([
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-01T00:01:00Z",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another aiops process"),
        "{stderr}"
    );
}
