//! Errors of the detect crate.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong, naming the file.
#[derive(Debug, Error)]
pub enum DetectError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file does not have the expected layout.
    #[error("{path}: {reason}")]
    BadInput { path: PathBuf, reason: String },
}
