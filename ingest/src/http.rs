//! HTTP plumbing shared by every HTTP client of aiops: the client builder and the one retry
//! policy ([`Backoff`], [`is_retryable`], [`retry_after`]) that the pulling sources'
//! [`send_with_retry`], the remote_write client and the PagerDuty sender all use.
//!
//! A request that may succeed later — network errors, timeouts, 408, 429, 5xx — is retried with
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

/// The waits between attempts of one request (or one queue's head): the server's
/// `Retry-After` when it sends one (up to [`Backoff::honour_retry_after_up_to`]), else
/// exponential backoff with jitter — a random wait between ½ and 1 × `first` × 2^attempt,
/// capped at `max` — so that many clients retrying at once spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    honour_up_to: Duration,
    attempt: u32,
}

impl Backoff {
    /// Waits from about `first`, doubling, up to `max`; a `Retry-After` is honoured up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            honour_up_to: max,
            attempt: 0,
        }
    }

    /// Honours a server's `Retry-After` up to `limit` (it may ask for longer than our own
    /// backoff would wait).
    pub fn honour_retry_after_up_to(mut self, limit: Duration) -> Self {
        self.honour_up_to = limit;
        self
    }

    /// The wait before the next attempt, given what the server asked for.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Duration {
        let wait = match retry_after {
            Some(asked) => asked.min(self.honour_up_to),
            None => {
                let cap = self
                    .first
                    .saturating_mul(1 << self.attempt.min(20))
                    .min(self.max);
                let cap_ms = cap.as_millis() as u64;
                Duration::from_millis(rand::random_range(cap_ms / 2..=cap_ms))
            }
        };
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// Attempts waited for so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// True for answers that may pass: 408, 429 and 5xx.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The server's `Retry-After` in seconds, if it sent one (HTTP dates are not honoured: the
/// backoff applies).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
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
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
        .honour_retry_after_up_to(Duration::from_secs(300));
    loop {
        let attempt = backoff.attempts();
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
                if !is_retryable(status) {
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
        let wait = backoff.next_wait(wait);
        warn!(source, what, attempt, error = %message, wait_ms = wait.as_millis() as u64, "Request failed; retrying.");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_after_a_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        for cap_ms in [100u64, 200, 400, 800, 1_000, 1_000] {
            let w = b.next_wait(None).as_millis() as u64;
            assert!(
                (cap_ms / 2..=cap_ms).contains(&w),
                "{w} ms for cap {cap_ms}"
            );
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert!(b.next_wait(None) <= Duration::from_millis(100));
    }

    #[test]
    fn a_servers_retry_after_is_honoured_up_to_the_limit() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
            .honour_retry_after_up_to(Duration::from_secs(60));
        assert_eq!(
            b.next_wait(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.next_wait(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(
            reqwest::header::RETRY_AFTER,
            " 12 ".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(
            retry_after(&headers),
            None,
            "dates fall back to the backoff"
        );
    }

    #[test]
    fn only_answers_that_may_pass_are_retried() {
        for code in [408u16, 429, 500, 502, 503, 504] {
            assert!(
                is_retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        for code in [400u16, 401, 403, 404, 413, 415, 422] {
            assert!(
                !is_retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
    }
}
