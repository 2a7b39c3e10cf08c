//! The durable queue of one remote_write output: each batch is an encoded request body (Snappy
//! protobuf) in its own file, written with fsync before it counts as queued, sent oldest first,
//! deleted once the receiver took it (2xx).
//!
//! What it gives up, each counted in `aiops_output_batches_total{result=…}` and logged: a batch
//! queued longer than `max_age_secs` (`dropped_too_old`: the receiver would refuse samples that
//! old anyway), the oldest batches when the queue passes `max_queue_bytes` (`dropped_queue_full`),
//! and a batch the receiver refuses for good — a 4xx other than 408 and 429
//! (`dropped_rejected`: sending it again cannot help). 408, 429, 5xx and network errors are
//! retried with exponential backoff, honouring `Retry-After`, for as long as the age allows.
//!
//! Batches are queued as 1.0 bodies. An output set to `protocol = "2.0"` re-encodes each one as
//! a 2.0 request when it sends it; a receiver that does not take 2.0 — it answers 415 or 400, or
//! a 2xx without the `X-Prometheus-Remote-Write-Samples-Written` count a 2.0 receiver must send
//! (a 1.0 receiver parses a 2.0 body as an empty 1.0 request and says 204) — gets the same
//! batch again as 1.0 at once, and when that is taken the output stays on 1.0 until restarted
//! (logged; `aiops_output_remote_write_version` says which version it sends).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aiops_models::Secret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::WireVersion;
use super::output::{Credentials, OutputConfig, OutputMetrics, Protocol};
use super::proto_v2;
use crate::http::{Backoff, is_retryable, retry_after};

/// Queued batches of one output.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    seq: AtomicU64,
    max_bytes: u64,
    wake: Notify,
    metrics: OutputMetrics,
}

const EXT: &str = "rw";

impl Outbox {
    /// Opens (creates) the queue in `dir`; what is queued there is sent first.
    pub fn open(dir: &Path, max_bytes: u64, metrics: OutputMetrics) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // A batch torn by a crash before its rename was never queued.
        for p in std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&p);
            }
        }
        let next = list(dir)?
            .last()
            .and_then(|(p, _)| {
                p.file_stem()?
                    .to_str()?
                    .split('.')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |n| n + 1);
        let q = Self {
            dir: dir.to_owned(),
            seq: AtomicU64::new(next),
            max_bytes,
            wake: Notify::new(),
            metrics,
        };
        q.measure()?;
        Ok(q)
    }

    /// Queues an encoded body of `samples` samples durably (blocking: call off the async
    /// threads), drops the oldest batches past `max_queue_bytes`, and wakes the sender.
    pub fn push(&self, body: &[u8], samples: u64) -> std::io::Result<()> {
        use std::io::Write;
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        // The sample count rides in the name: the sender counts what it delivers.
        let path = self.dir.join(format!("{n:020}.{samples}.{EXT}"));
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let mut queued = list(&self.dir)?;
        let mut total: u64 = queued.iter().map(|(_, len)| len).sum();
        while total > self.max_bytes && queued.len() > 1 {
            let (oldest, len) = queued.remove(0);
            if std::fs::remove_file(&oldest).is_ok() {
                total -= len;
                self.metrics.batch("dropped_queue_full");
                self.metrics.dropped_samples(samples_of(&oldest));
                warn!(file = %oldest.display(), "The remote_write output's queue is full; dropped its oldest batch.");
            }
        }
        self.measure()?;
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    /// Batches waiting, oldest first, with their sizes.
    pub fn pending(&self) -> std::io::Result<Vec<(PathBuf, u64)>> {
        list(&self.dir)
    }

    fn measure(&self) -> std::io::Result<()> {
        let q = list(&self.dir)?;
        self.metrics
            .queue(q.len() as i64, q.iter().map(|(_, l)| *l as i64).sum());
        Ok(())
    }
}

fn samples_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split('.').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == EXT))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    v.sort();
    Ok(v)
}

/// How one delivery went.
enum Outcome {
    Sent,
    Retry(Option<Duration>),
    Rejected(String),
    /// A 2.0 request the receiver did not understand (why).
    NotV2(String),
}

/// Delivers one queued (1.0) body in the version the output currently speaks, falling back to
/// 1.0 for good when the receiver does not take 2.0 and does take 1.0.
async fn deliver_negotiated(
    http: &reqwest::Client,
    cfg: &OutputConfig,
    body: Vec<u8>,
    v2: &mut bool,
    metrics: &OutputMetrics,
) -> Outcome {
    if !*v2 {
        return deliver(http, cfg, body, WireVersion::V1).await;
    }
    let v1 = body.clone();
    let encoded = tokio::task::spawn_blocking(move || proto_v2::transcode_v1_body(&body)).await;
    let why = match encoded {
        Ok(Ok(v2_body)) => match deliver(http, cfg, v2_body, WireVersion::V2).await {
            Outcome::NotV2(why) => why,
            other => return other,
        },
        Ok(Err(e)) => format!("the queued batch cannot be re-encoded: {e}"),
        Err(e) => format!("re-encoding failed: {e}"),
    };
    let outcome = deliver(http, cfg, v1, WireVersion::V1).await;
    if matches!(outcome, Outcome::Sent) {
        warn!(output = %cfg.name, reason = %why, "The receiver does not take remote_write 2.0 but took 1.0; this output sends 1.0 from now on.");
        *v2 = false;
        metrics.wire_version(1);
    }
    outcome
}

/// Sends the queue until `cancel`, oldest batch first, one at a time.
pub async fn run_sender(
    outbox: std::sync::Arc<Outbox>,
    cfg: OutputConfig,
    http: reqwest::Client,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(cfg.max_backoff_secs.max(1)),
    );
    let max_age = Duration::from_secs(cfg.max_age_secs);
    let mut v2 = cfg.protocol == Protocol::V2;
    outbox.metrics.wire_version(if v2 { 2 } else { 1 });
    loop {
        let next = {
            let q = outbox.clone();
            match tokio::task::spawn_blocking(move || q.pending()).await {
                Ok(Ok(p)) => p.into_iter().next(),
                Ok(Err(e)) => {
                    error!(output = %cfg.name, error = %e, "Cannot list the remote_write output's queue.");
                    None
                }
                Err(_) => None,
            }
        };
        let Some((path, _)) = next else {
            tokio::select! {
                _ = outbox.wake.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                _ = cancel.cancelled() => return,
            }
        };
        let read = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || {
                let age = std::fs::metadata(&p)?
                    .modified()?
                    .elapsed()
                    .unwrap_or(Duration::ZERO);
                Ok::<_, std::io::Error>((std::fs::read(&p)?, age))
            })
            .await
        };
        let (body, age) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                error!(file = %path.display(), error = %e, "Cannot read a queued remote_write batch; dropping it.");
                drop_batch(&outbox, &path, "dropped_unreadable").await;
                continue;
            }
            Err(_) => continue,
        };
        if age > max_age {
            warn!(output = %cfg.name, file = %path.display(), age_secs = age.as_secs(), "A remote_write batch waited longer than max_age_secs; dropped.");
            drop_batch(&outbox, &path, "dropped_too_old").await;
            continue;
        }
        match deliver_negotiated(&http, &cfg, body, &mut v2, &outbox.metrics).await {
            Outcome::Sent => {
                backoff.reset();
                outbox.metrics.sent(samples_of(&path));
                drop_batch(&outbox, &path, "sent").await;
            }
            Outcome::Rejected(reason) | Outcome::NotV2(reason) => {
                error!(output = %cfg.name, file = %path.display(), reason = %reason, "The receiver refused a remote_write batch for good; dropped.");
                drop_batch(&outbox, &path, "dropped_rejected").await;
            }
            Outcome::Retry(after) => {
                outbox.metrics.retry();
                let wait = backoff.next_wait(after);
                warn!(output = %cfg.name, wait_secs = wait.as_secs_f64(), "The remote_write receiver did not take a batch; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // The batch stays on disk: the next start sends it.
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

/// Removes a batch from the queue and counts how it left.
async fn drop_batch(outbox: &std::sync::Arc<Outbox>, path: &Path, result: &'static str) {
    let (q, p) = (outbox.clone(), path.to_owned());
    let removed = tokio::task::spawn_blocking(move || {
        let r = std::fs::remove_file(&p);
        let _ = q.measure();
        r
    })
    .await;
    if !matches!(removed, Ok(Ok(()))) {
        error!(file = %path.display(), "Cannot remove a remote_write batch from the queue; it will be sent again.");
    }
    if result != "sent" {
        outbox.metrics.dropped_samples(samples_of(path));
    }
    outbox.metrics.batch(result);
    if result == "sent" {
        outbox.metrics.delivered_at(SystemTime::now());
    }
}

async fn deliver(
    http: &reqwest::Client,
    cfg: &OutputConfig,
    body: Vec<u8>,
    version: WireVersion,
) -> Outcome {
    let (ctype, announced) = match version {
        WireVersion::V1 => (super::CONTENT_TYPE, super::VERSION_1),
        WireVersion::V2 => (proto_v2::CONTENT_TYPE_V2, proto_v2::VERSION_2),
    };
    let mut req = http
        .post(&cfg.url)
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header(reqwest::header::CONTENT_TYPE, ctype)
        .header(super::VERSION_HEADER, announced)
        .header(
            reqwest::header::USER_AGENT,
            concat!("aiops/", env!("CARGO_PKG_VERSION")),
        )
        .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
        .body(body);
    for (k, v) in &cfg.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    // Files are read at every request (rotated credentials), off the runtime.
    let creds = if cfg.bearer_token_file.is_some() || cfg.password_file.is_some() {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || cfg.credentials())
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    } else {
        cfg.credentials()
    };
    match creds {
        Ok(Some(Credentials::Bearer(token))) => req = req.bearer_auth(token.expose()),
        Ok(Some(Credentials::Basic(user, password))) => {
            req = req.basic_auth(user, password.as_ref().map(Secret::expose));
        }
        Ok(None) => {}
        Err(reason) => {
            error!(output = %cfg.name, %reason, "Cannot read the receiver's credentials; the batch waits.");
            return Outcome::Retry(None);
        }
    }
    let v2 = version == WireVersion::V2;
    match req.send().await {
        Ok(r)
            if v2
                && r.status().is_success()
                && !r.headers().contains_key(proto_v2::SAMPLES_WRITTEN_HEADER) =>
        {
            Outcome::NotV2(format!(
                "HTTP {} without {}",
                r.status(),
                proto_v2::SAMPLES_WRITTEN_HEADER
            ))
        }
        Ok(r) if r.status().is_success() => Outcome::Sent,
        Ok(r)
            if v2
                && matches!(
                    r.status(),
                    reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE | reqwest::StatusCode::BAD_REQUEST
                ) =>
        {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            Outcome::NotV2(format!("HTTP {status}: {}", text.trim()))
        }
        Ok(r) if is_retryable(r.status()) => Outcome::Retry(retry_after(r.headers())),
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            Outcome::Rejected(format!("HTTP {status}: {}", text.trim()))
        }
        Err(_) => Outcome::Retry(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_queue_in_order_survive_a_reopen_and_the_oldest_go_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = OutputMetrics::unregistered("t");
        let q = Outbox::open(dir.path(), 250, m.clone()).expect("opens");
        q.push(&[1; 100], 10).expect("queued");
        q.push(&[2; 100], 20).expect("queued");
        let p = q.pending().expect("lists");
        assert_eq!(p.len(), 2);
        assert_eq!(samples_of(&p[0].0), 10);
        // A torn write (no rename) is not a batch; numbering continues after a reopen.
        std::fs::write(dir.path().join("00000000000000000009.5.tmp"), b"x").expect("write");
        drop(q);
        let q = Outbox::open(dir.path(), 250, m.clone()).expect("reopens");
        assert_eq!(q.pending().expect("lists").len(), 2);
        q.push(&[3; 100], 30).expect("queued");
        // 300 bytes > 250: the oldest (10 samples) went.
        let p = q.pending().expect("lists");
        assert_eq!(
            p.iter().map(|(p, _)| samples_of(p)).collect::<Vec<_>>(),
            [20, 30]
        );
        assert_eq!(m.dropped_total(), 10);
        assert!(!dir.path().join("00000000000000000009.5.tmp").exists());
    }

    /// A receiver answering from a script: each request gets the next status (and
    /// `Retry-After: 1` on a 429); it records when each arrived.
    async fn scripted(
        statuses: Vec<u16>,
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    ) {
        use axum::http::StatusCode;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = std::sync::Arc::new(std::sync::Mutex::new(statuses.into_iter()));
        let (s2, seen2) = (script.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/write",
            axum::routing::post(move || {
                let (script, seen) = (s2.clone(), seen2.clone());
                async move {
                    seen.lock().expect("lock").push(std::time::Instant::now());
                    let code = script.lock().expect("lock").next().unwrap_or(204);
                    let mut r = axum::response::IntoResponse::into_response(
                        StatusCode::from_u16(code).expect("status"),
                    );
                    if code == 429 {
                        r.headers_mut()
                            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                    }
                    r
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/write", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn retry_after_is_honoured_and_a_refused_batch_is_dropped_not_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = OutputMetrics::unregistered("t");
        let q = std::sync::Arc::new(Outbox::open(dir.path(), 1 << 20, m.clone()).expect("opens"));
        // First batch: 429 (Retry-After: 1), then taken; second: refused with a 400.
        let (url, seen) = scripted(vec![429, 204, 400]).await;
        q.push(b"one", 3).expect("queued");
        q.push(b"two", 4).expect("queued");
        let cfg = OutputConfig {
            url,
            ..OutputConfig::default()
        };
        let cancel = CancellationToken::new();
        let sender = tokio::spawn(run_sender(
            q.clone(),
            cfg,
            crate::http_client().build().expect("client"),
            cancel.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !q.pending().expect("lists").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the queue did not empty"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        let _ = sender.await;
        let at = seen.lock().expect("lock").clone();
        assert_eq!(at.len(), 3, "one retry, then one request per batch");
        assert!(
            at[1] - at[0] >= Duration::from_secs(1),
            "Retry-After waited"
        );
        assert_eq!(m.dropped_total(), 4, "the refused batch's samples");
        assert_eq!(m.sent_total(), 3);
    }

    /// The headers of the requests a receiver took, each as `what` reads them.
    type Seen<T> = std::sync::Arc<std::sync::Mutex<Vec<T>>>;

    /// A receiver that records `what` of each request's headers and answers as a 1.0-only
    /// receiver (204, no counts) or as a 2.0 one (204 with the counts).
    async fn receiver<T: Send + 'static>(
        speaks_v2: bool,
        what: fn(&axum::http::HeaderMap) -> T,
    ) -> (String, Seen<T>) {
        let seen: Seen<T> = Default::default();
        let seen2 = seen.clone();
        let app = axum::Router::new().route(
            "/write",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = seen2.clone();
                async move {
                    let is_v2 = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.contains("v2"));
                    seen.lock().expect("lock").push(what(&headers));
                    let mut r = axum::response::IntoResponse::into_response(
                        axum::http::StatusCode::NO_CONTENT,
                    );
                    if speaks_v2 && is_v2 {
                        r.headers_mut().insert(
                            proto_v2::SAMPLES_WRITTEN_HEADER,
                            axum::http::HeaderValue::from_static("1"),
                        );
                    }
                    r
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/write", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// A receiver that records each request's Content-Type (see [`receiver`]).
    async fn versioned(speaks_v2: bool) -> (String, Seen<String>) {
        receiver(speaks_v2, |h| {
            h.get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .await
    }

    #[tokio::test]
    async fn a_2_0_output_stays_on_2_0_with_a_2_0_receiver_and_falls_back_once_otherwise() {
        use crate::remote_write::{TimeSeries, WriteRequest, encode_write_request};
        let body = encode_write_request(&WriteRequest {
            timeseries: vec![TimeSeries::from_parts([("__name__", "x")], [(1, 1.0)])],
            metadata: vec![],
        });
        for speaks_v2 in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let m = OutputMetrics::unregistered("t");
            let q =
                std::sync::Arc::new(Outbox::open(dir.path(), 1 << 20, m.clone()).expect("opens"));
            let (url, seen) = versioned(speaks_v2).await;
            for _ in 0..3 {
                q.push(&body, 1).expect("queued");
            }
            let cfg = OutputConfig {
                url,
                protocol: Protocol::V2,
                ..OutputConfig::default()
            };
            let cancel = CancellationToken::new();
            let sender = tokio::spawn(run_sender(
                q.clone(),
                cfg,
                crate::http_client().build().expect("client"),
                cancel.clone(),
            ));
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !q.pending().expect("lists").is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the queue did not empty"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
            let _ = sender.await;
            let kinds: Vec<bool> = seen
                .lock()
                .expect("lock")
                .iter()
                .map(|c| c.contains("v2"))
                .collect();
            if speaks_v2 {
                assert_eq!(kinds, [true, true, true], "every batch as 2.0");
                assert_eq!(m.wire_version_now(), 2);
            } else {
                // 2.0 once, the same batch again as 1.0, then 1.0 only.
                assert_eq!(kinds, [true, false, false, false]);
                assert_eq!(m.wire_version_now(), 1);
            }
            assert_eq!(m.sent_total(), 3);
            assert_eq!(m.dropped_total(), 0);
        }
    }

    #[tokio::test]
    async fn basic_auth_goes_to_the_receiver_and_a_rotated_password_is_sent_next() {
        use crate::remote_write::TimeSeries;
        let (url, seen) = receiver(false, |h| {
            h.get("authorization").map(|v| v.as_bytes().to_vec())
        })
        .await;

        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret:x\n").expect("write");
        let cfg = OutputConfig {
            url,
            username: Some("aiops".into()),
            password_file: Some(password.clone()),
            flush_secs: 1,
            max_backoff_secs: 1,
            ..OutputConfig::default()
        };
        let mut problems = Vec::new();
        cfg.validate("o", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // Started as `serve` starts it; the file is read at every request (its newline left
        // out), so a rotated password is sent from the next batch on.
        let families = super::super::output::OutputFamilies::default();
        let cancel = CancellationToken::new();
        let (tx, tasks) = super::super::output::start(cfg, dir.path(), &families, cancel.clone())
            .expect("starts");
        let batch = || vec![TimeSeries::from_parts([("__name__", "x")], [(1, 1.0)])];
        let arrived = |n: usize| {
            let seen = seen.clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while seen.lock().expect("lock").len() < n {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "batch {n} did not arrive"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        tx.send(batch());
        arrived(1).await;
        std::fs::write(&password, "n3w\n").expect("rotate");
        tx.send(batch());
        arrived(2).await;
        // A file gone (mid-rotation): the batch waits in the queue, retried, and goes with the
        // next password.
        std::fs::remove_file(&password).expect("remove");
        tx.send(batch());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tx.metrics().retries_total() == 0 {
            assert!(std::time::Instant::now() < deadline, "no retry");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::write(&password, "b4ck").expect("restore");
        arrived(3).await;
        cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let got = seen.lock().expect("lock").clone();
        // base64("aiops:s3cret:x"): a colon is allowed in the password, not in the user name.
        assert_eq!(got[0].as_deref(), Some(&b"Basic YWlvcHM6czNjcmV0Ong="[..]));
        assert_eq!(got[1].as_deref(), Some(&b"Basic YWlvcHM6bjN3"[..]));
        assert_eq!(got[2].as_deref(), Some(&b"Basic YWlvcHM6YjRjaw=="[..]));
        assert_eq!(got.len(), 3, "nothing was sent without its credentials");
    }
}
