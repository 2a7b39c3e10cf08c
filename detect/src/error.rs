//! Errors of the detect crate: one enum for files, inputs, the model registry and scaling
//! targets without a value.

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
    /// A Parquet file (an archive part, a profiles table) could not be read or written; the
    /// Parquet error is kept.
    #[error("{path}: {doing}: {source}")]
    Parquet {
        path: PathBuf,
        doing: &'static str,
        source: parquet::errors::ParquetError,
    },
    /// The model registry could not be read.
    #[error(transparent)]
    Registry(#[from] aiops_models::ModelError),
    /// No such scaling target (in that namespace).
    #[error("no scaling target {0}")]
    UnknownTarget(String),
    /// No load has arrived yet for a scaling target.
    #[error("no load has arrived for {0} yet")]
    NoLoad(String),
    /// A scaling target's load stopped arriving longer than `hold_secs` ago: not guessing.
    #[error(
        "the load of {name} stopped arriving {age_secs}s ago (longer than the hold time); not guessing"
    )]
    LoadExpired {
        /// The target.
        name: String,
        /// Seconds since the last load sample.
        age_secs: i64,
    },
}
