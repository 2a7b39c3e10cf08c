use thiserror::Error;

/// Errors of the shared model types. Every variant is bad input: the caller sent something
/// that cannot be a valid selector, batch or series.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A label-matcher selector did not parse.
    #[error("invalid selector {selector:?} at byte {position}: {reason}")]
    InvalidSelector {
        selector: String,
        position: usize,
        reason: String,
    },
    /// A regular expression in a matcher did not compile.
    #[error("invalid regex {regex:?} in selector: {source}")]
    InvalidRegex { regex: String, source: regex::Error },
    /// A sample batch broke one of its invariants.
    #[error("invalid sample batch: {reason}")]
    InvalidBatch { reason: String },
    /// An unknown source name.
    #[error("unknown source {name:?}; known sources: prometheus, appinsights")]
    UnknownSource { name: String },
}
