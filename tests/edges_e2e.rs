//! End to end against the `aiops` process: slow or greedy clients cannot starve the probes,
//! and a shutdown takes no longer than its grace period.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A connection from `source` (another loopback address than the probes') that sends half a
/// request head and stops.
fn slow_header_conn(source: &str, to: SocketAddr) -> Option<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let from: SocketAddr = format!("{source}:0").parse().ok()?;
    sock.bind(&from.into()).ok()?;
    sock.connect(&to.into()).ok()?;
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").ok()?;
    Some(s)
}

/// On the old main 2,000 slow-header connections stayed open for good: with `ulimit -n 1024`
/// health checks timed out for 30 s. Now one address gets `max_connections_per_ip`, the rest
/// are closed at once, and the slow ones are closed after `header_read_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_cannot_starve_the_probes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve_with_config(
        dir.path(),
        "[server]\nheader_read_timeout_secs = 2\nmax_connections_per_ip = 100\n",
    )
    .await;
    let to: SocketAddr = format!("127.0.0.1:{}", served.port).parse().expect("addr");
    let attacker = tokio::task::spawn_blocking(move || {
        (0..300)
            .filter_map(|_| slow_header_conn("127.0.0.2", to))
            .collect::<Vec<_>>()
    })
    .await
    .expect("joins");
    assert_eq!(attacker.len(), 300, "the kernel accepts them all");
    // Probes from another address answer at once, each.
    for _ in 0..20 {
        let started = Instant::now();
        let r = served
            .http
            .get(format!("{}/healthz", served.base))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .expect("healthz answers within a second");
        assert!(r.status().is_success());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let metrics = wait_for(
        "the refusals to be counted",
        Duration::from_secs(10),
        || async {
            let m = get_text(&served.http, &format!("{}/metrics", served.base)).await;
            m.contains("aiops_api_connections_refused_total{reason=\"max_connections_per_ip\"} 200")
                .then_some(m)
        },
    )
    .await;
    assert!(metrics.contains("aiops_api_connections "), "{metrics}");
    // The 100 admitted slow connections are closed by the server after 2 s.
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut closed = 0;
        for mut s in attacker {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
            let mut buf = [0u8; 512];
            // EOF, a reset, or a 408 answer and then EOF: closed by the server.
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            if Instant::now() < deadline {
                closed += 1;
            }
        }
        closed
    })
    .await
    .expect("joins");
    assert_eq!(closed, 300, "every slow connection was closed within 10 s");
}

/// On the old main SIGTERM took up to 57 s against `shutdown_grace_secs = 30`: the stages'
/// waits were added one after another. Now the grace period bounds the whole shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_whatever_is_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_with_config(
        dir.path(),
        "[server]\nshutdown_grace_secs = 2\nheader_read_timeout_secs = 60\n",
    )
    .await;
    let to: SocketAddr = format!("127.0.0.1:{}", served.port).parse().expect("addr");
    // A write whose body never finishes: in flight until the grace period cuts it off.
    let mut held = TcpStream::connect(to).expect("connects");
    held.write_all(
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\nabc",
    )
    .expect("sends");
    // Let the request reach its handler.
    wait_for(
        "the write to be in flight",
        Duration::from_secs(10),
        || async {
            let m = get_text(&served.http, &format!("{}/metrics", served.base)).await;
            m.lines()
                .any(|l| {
                    l.starts_with("aiops_api_connections ")
                        && !l.ends_with(" 1")
                        && !l.ends_with(" 0")
                })
                .then_some(())
        },
    )
    .await;
    let started = Instant::now();
    assert!(
        served.server.terminate(Duration::from_secs(20)),
        "exits cleanly"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a 2 s grace period"
    );
    drop(held);
}

/// What hyper answers by itself — a request target over its 64 KiB limit, a head with too many
/// header fields, a malformed request line — carries a JSON error like every other answer (an
/// empty 414/431/400 on the old main), and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_http_server_cannot_parse_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve_with_config(dir.path(), "").await;
    let to: SocketAddr = format!("127.0.0.1:{}", served.port).parse().expect("addr");
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases = [
        (
            format!(
                "GET /api/v1/series?match[]={} HTTP/1.1\r\nhost: x\r\n\r\n",
                "a".repeat(70 << 10)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
            "header_fields_too_large",
        ),
        ("GET\x01 / HTTP/1.1\r\n\r\n".to_owned(), 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(to).expect("connects");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            // The server may answer and close before it has read everything.
            let _ = s.write_all(request.as_bytes());
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .expect("joins");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"]["code"], code, "{json}");
    }
    let r = served
        .http
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .expect("still serving");
    assert!(r.status().is_success());
}
