//! A remote_write 1.0 sender: what the demo workload, the load generator and the tests use to
//! talk to a receiver exactly as Prometheus does.

use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};

use super::{VERSION_1, VERSION_HEADER, WriteRequest, encode_write_request};
use crate::IngestError;
use crate::http::{Backoff, is_retryable, retry_after};

/// Sends remote_write requests to one URL, retrying 5xx and network errors with backoff like
/// Prometheus does (30 ms doubling to 5 s).
#[derive(Debug, Clone)]
pub struct RemoteWriteClient {
    http: reqwest::Client,
    url: String,
    max_attempts: u32,
}

impl RemoteWriteClient {
    /// A client for `url` (e.g. `http://127.0.0.1:9201/api/v1/write`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            http: crate::http_client()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client always builds"),
            url: url.into(),
            max_attempts: 20,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request (a server with credentials).
    pub fn with_bearer(mut self, token: &str) -> Result<Self, crate::IngestError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| {
                crate::IngestError::Pipeline("the bearer token is not a valid header value".into())
            })?;
        value.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
        self.http = crate::http_client()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .map_err(|e| crate::IngestError::Pipeline(format!("HTTP client: {e}")))?;
        Ok(self)
    }

    /// Sets how often a send is tried before giving up.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Encodes and sends `req`.
    pub async fn send(&self, req: &WriteRequest) -> Result<(), IngestError> {
        self.send_encoded(encode_write_request(req).into()).await
    }

    /// Sends an already encoded body.
    pub async fn send_encoded(&self, body: bytes::Bytes) -> Result<(), IngestError> {
        let mut backoff = Backoff::new(Duration::from_millis(30), Duration::from_secs(5));
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let res = self
                .http
                .post(&self.url)
                .header(CONTENT_ENCODING, "snappy")
                .header(CONTENT_TYPE, "application/x-protobuf")
                .header(VERSION_HEADER, VERSION_1)
                .header(USER_AGENT, concat!("aiops/", env!("CARGO_PKG_VERSION")))
                .body(body.clone())
                .send()
                .await;
            let asked = match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if is_retryable(r.status()) => {
                    last = format!("HTTP {}", r.status());
                    retry_after(r.headers())
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(IngestError::Rejected { status, body });
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            };
            if attempt < self.max_attempts {
                tokio::time::sleep(backoff.next_wait(asked)).await;
            }
        }
        Err(IngestError::Unavailable {
            attempts: self.max_attempts,
            last,
        })
    }
}
