use thiserror::Error;

/// Errors of the shared model types: bad input (something that cannot be a valid selector,
/// batch or series) and the model registry's file and commands.
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
    /// The model registry's file could not be read or written.
    #[error("model registry {path}: {source}")]
    RegistryIo {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The model registry's file is not a registry.
    #[error("model registry {path} is unreadable: {reason}")]
    RegistryCorrupt {
        path: std::path::PathBuf,
        reason: String,
    },
    /// No such model version.
    #[error("no model version {0}")]
    NoSuchVersion(u64),
    /// Nothing to roll back to.
    #[error("kind {0:?} has no earlier active version to roll back to")]
    NothingToRollBack(String),
}
