//! Errors of the cluster crate.

use rdkafka::error::KafkaError;
use thiserror::Error;

/// What went wrong on the bus.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The broker refused or failed a request.
    #[error("{doing}: {source}")]
    Kafka {
        /// What was being done.
        doing: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The ingest crate's Kafka client could not be made or used.
    #[error(transparent)]
    Ingest(#[from] aiops_ingest::IngestError),
    /// A blocking read panicked or was cancelled.
    #[error("a blocking read failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Something did not arrive in time.
    #[error("{0}")]
    Timeout(String),
}

impl ClusterError {
    /// A Kafka error while `doing` something.
    pub fn kafka(doing: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let doing = doing.into();
        move |source| Self::Kafka { doing, source }
    }
}

impl From<KafkaError> for ClusterError {
    fn from(source: KafkaError) -> Self {
        Self::Kafka {
            doing: "talking to Kafka".into(),
            source,
        }
    }
}
