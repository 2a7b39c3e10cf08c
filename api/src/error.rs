//! API errors: [`StartError`], why the API cannot start serving (its TLS files, its
//! credentials), and [`ApiError`], the answer to a request that failed — the one place where
//! failures become HTTP statuses and JSON bodies `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the API cannot start serving, or a reloaded file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate file is missing or holds no PEM certificate.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file is missing or holds no PEM private key.
    #[error("TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key does not fit the certificate, or another rustls refusal.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A listen address reachable from other hosts with no credentials configured.
    #[error(
        "refusing to listen on {addresses} (reachable from other hosts) with no credentials: \
         configure [[server.credentials]] (or server.api_token), listen on 127.0.0.1, or \
         accept open access with server.allow_unauthenticated = true / --insecure-listen"
    )]
    Unauthenticated {
        /// The exposed addresses, comma-separated.
        addresses: String,
    },
    /// A credential cannot be used: its secret missing, empty, too large, or its file
    /// unreadable (the message names the credential and the file).
    #[error("{0}")]
    Credential(String),
    /// The task reading the credentials off the async threads failed.
    #[error("reading the credentials: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong, for a human.
    pub message: String,
}

impl ApiError {
    /// 400: the request is wrong and retrying it will not help.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422: the request is well formed but goes over a configured limit, named by its key
    /// (e.g. `server.max_series_selectors`) so the operator knows what to raise.
    pub fn limit(key: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            format!("{} (limit {key})", message.into()),
        )
    }

    /// 422: well formed and schema-valid, but not something the API can do — a time range
    /// backwards, a window outside the data kept.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503: try again later.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500: our fault; the detail is logged, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "Internal error while serving a request.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

impl From<aiops_ingest::IngestError> for ApiError {
    fn from(e: aiops_ingest::IngestError) -> Self {
        use aiops_ingest::IngestError as E;
        match e {
            E::Pipeline(m) => Self::unavailable("unavailable", m),
            other => Self::internal(other),
        }
    }
}
