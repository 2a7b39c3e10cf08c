//! How batches travel from sources to stages (the `[transport]` section): the in-process
//! channel alone, or that channel to the Kafka forwarder. The composition point of the
//! transport seam ([`crate::transport`]) and the Kafka transport ([`crate::kafka`]), which
//! know nothing of each other's configuration.

use serde::{Deserialize, Serialize};

use crate::transport::{BatchReceiver, BatchSender};

/// How batches travel from sources to stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// `memory`: a bounded in-process channel (the default; one machine).
    #[serde(default = "default_kind")]
    pub kind: TransportKind,
    /// Batches that may wait in the channel. When it is full, remote_write answers 503 (the
    /// sender retries) and pullers wait.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// With `kind = "kafka"`: brokers, topics, group, security (see [`crate::kafka`]).
    #[serde(default)]
    pub kafka: crate::kafka::KafkaConfig,
}

/// Transport implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Bounded in-process channel.
    Memory,
    /// Kafka topics: ingest on any node, detector workers in a consumer group.
    Kafka,
}

fn default_kind() -> TransportKind {
    TransportKind::Memory
}
fn default_capacity() -> usize {
    256
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            kind: default_kind(),
            capacity: default_capacity(),
            kafka: Default::default(),
        }
    }
}

impl TransportConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if !(1..=1_000_000).contains(&self.capacity) {
            problems.push(format!(
                "{prefix}.capacity = {}: must be between 1 and 1000000",
                self.capacity
            ));
        }
        if self.kind == TransportKind::Kafka {
            self.kafka.validate(&format!("{prefix}.kafka"), problems);
        }
    }

    /// Opens the in-process hop: to the archive (`memory`), or to the Kafka forwarder
    /// (`kafka`, see [`crate::kafka::run_forwarder`]).
    pub fn build(&self) -> (BatchSender, BatchReceiver) {
        crate::transport::channel(self.capacity)
    }
}
