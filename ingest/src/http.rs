//! HTTP plumbing shared by the pulling sources: the client builder and one retry loop.
//!
//! A request that may succeed later — network errors, timeouts, 429, 5xx — is retried with
//! exponential backoff and full jitter, or after the server's `Retry-After` (seconds) when it
//! sends one. Any other non-2xx answer fails at once and carries the server's body.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tracing::warn;

use crate::IngestMetrics;

/// A `reqwest` client builder with the process' TLS crypto provider (ring) installed.
/// Every HTTP client of aiops starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Fails only when another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// The HTTP client of a pulling source: our user agent and a per-request timeout.
pub fn source_client(
    source: &str,
    timeout_secs: u64,
) -> Result<reqwest::Client, crate::IngestError> {
    http_client()
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .user_agent(concat!("aiops/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::IngestError::SourceConfig {
            name: source.to_owned(),
            reason: format!("HTTP client: {e}"),
        })
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// 2xx status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A request that failed for good.
#[derive(Debug)]
pub struct Failure {
    /// The last status, if the server answered at all.
    pub status: Option<StatusCode>,
    /// The last body (empty without an answer).
    pub body: Bytes,
    /// The transport error, or `HTTP <status>`.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// True when retries ran out on a failure that may pass; false for a definite 4xx.
    pub retryable: bool,
}

impl Failure {
    /// A failure before anything was sent (e.g. a secret file that cannot be read).
    pub fn local(message: impl Into<String>) -> Self {
        Self {
            status: None,
            body: Bytes::new(),
            message: message.into(),
            attempts: 0,
            retryable: false,
        }
    }

    /// `detail` (the server's words, or the transport error) with the attempt count when
    /// retries ran out.
    pub fn describe(&self, detail: &str) -> String {
        if self.retryable {
            format!("{detail} (after {} attempts)", self.attempts)
        } else {
            detail.to_owned()
        }
    }
}

/// Exponential backoff with full jitter: up to 250 ms × 2^attempt, capped at 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (250u64 << attempt.min(7)).min(30_000);
    Duration::from_millis(rand::random_range(cap_ms / 2..=cap_ms))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

/// The chain of an error's sources in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Sends the request `build` makes (called again for every attempt, so that credentials can be
/// refreshed), retrying up to `max_retries` times. `source` labels the metrics
/// (`aiops_ingest_pull_requests_total{source, outcome}`), `what` names the request in logs.
pub async fn send_with_retry<F, Fut>(
    mut build: F,
    max_retries: u32,
    metrics: &IngestMetrics,
    source: &'static str,
    what: &str,
) -> Result<Answer, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder, Failure>>,
{
    let mut attempt = 0u32;
    loop {
        let req = build().await?;
        let (message, wait, status, body) = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                // A body cut off mid-read counts as an empty body of that status.
                let body = resp.bytes().await.unwrap_or_default();
                if status.is_success() {
                    metrics.pull_request(source, "ok");
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                    });
                }
                if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                    metrics.pull_request(source, "error");
                    return Err(Failure {
                        status: Some(status),
                        body,
                        message: format!("HTTP {status}"),
                        attempts: attempt + 1,
                        retryable: false,
                    });
                }
                (
                    format!("HTTP {status}"),
                    retry_after(&headers),
                    Some(status),
                    body,
                )
            }
            Err(e) => (
                format!("request failed: {}", error_chain(&e)),
                None,
                None,
                Bytes::new(),
            ),
        };
        if attempt >= max_retries {
            metrics.pull_request(source, "error");
            return Err(Failure {
                status,
                body,
                message,
                attempts: attempt + 1,
                retryable: true,
            });
        }
        metrics.pull_request(source, "retry");
        let wait = wait.unwrap_or_else(|| backoff(attempt));
        warn!(source, what, attempt, error = %message, wait_ms = wait.as_millis() as u64, "Request failed; retrying.");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}
