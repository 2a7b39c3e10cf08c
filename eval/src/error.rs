//! Errors of the eval crate: one enum for the files an evaluation reads and writes.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong, naming the file.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A file could not be read or written (the I/O error kind is kept).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file does not have the expected layout.
    #[error("{path}: {reason}")]
    BadInput { path: PathBuf, reason: String },
}

impl EvalError {
    /// An I/O failure on `path`, for `map_err`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
        move |source| EvalError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// `path` is not laid out as expected.
    pub(crate) fn bad(path: &std::path::Path, reason: impl ToString) -> EvalError {
        EvalError::BadInput {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}
