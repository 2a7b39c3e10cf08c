//! The Kafka transport (rdkafka): how sample batches leave one process and reach the detector
//! workers of a consumer group, and how existing metric topics become a source.
//!
//! * Samples: a batch is split by partition (the XXH3 of a series' service modulo
//!   `partitions`, or its id's without a service label, so a series always lands in the same
//!   partition, with the rest of its service) and each part is one message — the archive's WAL record
//!   format (Arrow IPC, with the catalog entries of every series in it: catalog updates travel
//!   keyed the same way as their samples) — on `samples_topic`. A source's batch is
//!   acknowledged only when the broker acknowledged every part (`acks=all`, idempotent
//!   producer); a full producer queue or a failed delivery fails the acknowledgement (remote_write
//!   answers 503 and Prometheus retries). Nothing is dropped silently.
//! * Checkpoints: one message per partition on `checkpoints_topic` (same partition number),
//!   the latest of which restores the partition's detector state on its new owner.
//! * Outputs: anomaly events, forecasts and incidents as JSON on their own topics.
//! * Sources: prometheus-kafka-adapter JSON topics (protocols.md §6.1) are consumed in their own
//!   group, turned into batches and sent on like any source; their offsets are committed after
//!   the batch is durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aiops_models::{SampleBatch, SampleBatchBuilder, SeriesCatalog, SeriesId, SeriesMeta, Source};

pub use crate::archive::RecordFormat;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::IngestError;
use crate::transport::{BatchReceiver, BatchSender};

mod adapter;
mod admin;
mod properties;
mod samples;
#[cfg(test)]
mod tests;

pub use adapter::{parse_adapter_json, run_adapter_source};
pub use properties::KafkaProperties;
pub use samples::{
    decode_message, encode_message, produce_batch, produce_json, run_forwarder, split_by_partition,
};

/// The largest checkpoint message of one samples partition (about 1 KB per series: some 48,000
/// series per partition). aiops creates the checkpoints topic with a matching
/// `max.message.bytes`; a topic created by hand needs it too.
pub const CHECKPOINT_MAX_BYTES: usize = 48 << 20;

/// `[transport.kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// Sample batches (the WAL's records), partitioned by series.
    pub samples_topic: String,
    /// How samples messages hold their samples: `packed` (about 6 bytes a sample), or
    /// `arrow_ipc` (24 bytes a sample, readable by releases before packed records) while a
    /// cluster is upgraded node by node. Both are always read.
    pub record_format: RecordFormat,
    /// Detector state per samples partition (the latest message of a partition wins).
    pub checkpoints_topic: String,
    /// Anomaly events (JSON, keyed by event id), one partition: the worker that owns it in
    /// `{group_id}-incidents` runs the incidents.
    pub anomalies_topic: String,
    /// Forecasts served to the HPA (JSON, keyed by target).
    pub forecasts_topic: String,
    /// Samples of scaling targets' member series (JSON), partitioned like the samples: every
    /// node reads all of it, so each sums a target's load over every partition.
    pub load_topic: String,
    /// How long the load topic keeps samples (seconds); a node that starts replays this much
    /// to warm its forecasters (at least `detect.scaling.warm_start_secs` is useful).
    pub load_retention_secs: u64,
    /// Incidents (JSON, keyed by incident id).
    pub incidents_topic: String,
    /// Partitions of the samples and checkpoints topics (fixed once the topics exist: a series'
    /// partition is its service's hash, or its id, modulo this number).
    pub partitions: i32,
    /// Replication factor of topics aiops creates.
    pub replication_factor: i32,
    /// Create missing topics at start.
    pub create_topics: bool,
    /// Consumer group of the detector workers.
    pub group_id: String,
    /// Client id (shown in broker logs).
    pub client_id: String,
    /// Topics written by prometheus-kafka-adapter (JSON, one sample per message) to read as a
    /// source.
    pub source_topics: Vec<String>,
    /// Consumer group for `source_topics`.
    pub source_group_id: String,
    /// Workers checkpoint their partitions and commit offsets this often (seconds).
    pub checkpoint_secs: u64,
    /// Most messages waiting in the producer (`queue.buffering.max.messages`); when full, a
    /// batch is refused (remote_write answers 503).
    pub max_queued_messages: usize,
    /// A message not delivered within this long fails its batch (seconds).
    pub delivery_timeout_secs: u64,
    /// Passed to librdkafka as they are: security (`security.protocol = "SASL_SSL"`,
    /// `sasl.mechanisms`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …) and tuning.
    pub properties: KafkaProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            samples_topic: "aiops.samples".into(),
            record_format: RecordFormat::Packed,
            checkpoints_topic: "aiops.checkpoints".into(),
            anomalies_topic: "aiops.anomalies".into(),
            forecasts_topic: "aiops.forecasts".into(),
            load_topic: "aiops.load".into(),
            load_retention_secs: 15 * 86_400,
            incidents_topic: "aiops.incidents".into(),
            partitions: 12,
            replication_factor: 1,
            create_topics: true,
            group_id: "aiops-detect".into(),
            client_id: "aiops".into(),
            source_topics: Vec::new(),
            source_group_id: "aiops-sources".into(),
            checkpoint_secs: 10,
            max_queued_messages: 100_000,
            delivery_timeout_secs: 30,
            properties: KafkaProperties::default(),
        }
    }
}

impl KafkaConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if self.brokers.trim().is_empty() {
            problems.push(format!(
                "{prefix}.brokers: must name at least one HOST:PORT"
            ));
        }
        if !(1..=10_000).contains(&self.partitions) {
            problems.push(format!(
                "{prefix}.partitions = {}: must be between 1 and 10000",
                self.partitions
            ));
        }
        if self.replication_factor < 1 {
            problems.push(format!("{prefix}.replication_factor: must be at least 1"));
        }
        for (k, v) in [
            ("samples_topic", &self.samples_topic),
            ("checkpoints_topic", &self.checkpoints_topic),
            ("anomalies_topic", &self.anomalies_topic),
            ("forecasts_topic", &self.forecasts_topic),
            ("load_topic", &self.load_topic),
            ("incidents_topic", &self.incidents_topic),
            ("group_id", &self.group_id),
        ] {
            if v.is_empty() {
                problems.push(format!("{prefix}.{k}: must not be empty"));
            }
        }
        if !(1..=3600).contains(&self.checkpoint_secs) {
            problems.push(format!(
                "{prefix}.checkpoint_secs = {}: must be between 1 and 3600",
                self.checkpoint_secs
            ));
        }
        if self.max_queued_messages == 0 {
            problems.push(format!("{prefix}.max_queued_messages: must be at least 1"));
        }
        for reserved in ["bootstrap.servers", "group.id", "enable.auto.commit"] {
            if self.properties.contains_key(reserved) {
                problems.push(format!(
                    "{prefix}.properties.{reserved:?}: set by aiops (use brokers / group_id)"
                ));
            }
        }
    }

    /// The librdkafka settings every client shares: brokers, client id, the pass-through
    /// properties.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (k, v) in self.properties.iter() {
            c.set(k, v);
        }
        c
    }

    /// A producer: every in-sync replica acknowledges, idempotent (no duplicates or reordering
    /// from its own retries), bounded queue.
    pub fn producer(&self) -> Result<FutureProducer, IngestError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // A partition's checkpoint is one message (about 1 KB per series).
            .set(
                "message.max.bytes",
                (CHECKPOINT_MAX_BYTES + (1 << 20)).to_string(),
            );
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "zstd")
            .set(
                "queue.buffering.max.messages",
                self.max_queued_messages.to_string(),
            )
            .set(
                "message.timeout.ms",
                (self.delivery_timeout_secs * 1000).to_string(),
            )
            .set("linger.ms", "5");
        // The pass-through properties, but for those only consumers understand (librdkafka
        // would warn about each on every producer).
        for (k, v) in self.properties.iter().filter(|(k, _)| !consumer_only(k)) {
            c.set(k, v);
        }
        c.create().map_err(|e| IngestError::Kafka(e.to_string()))
    }

    /// The partition of a series: its service's (all series of a service share a partition,
    /// so the service's multivariate model lives with them), or — without a service label —
    /// its own id's.
    pub fn partition_of(&self, meta: &SeriesMeta) -> i32 {
        self.partition_by(aiops_models::service_of(meta).as_deref(), meta.id)
    }

    /// The partition of series `id` of `service` (see [`KafkaConfig::partition_of`]).
    pub fn partition_by(&self, service: Option<&str>, id: SeriesId) -> i32 {
        let key = match service {
            Some(s) => xxhash_rust::xxh3::xxh3_64(s.as_bytes()),
            None => id.0,
        };
        (key % self.partitions as u64) as i32
    }
}

/// librdkafka properties only consumers take.
fn consumer_only(key: &str) -> bool {
    [
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "partition.assignment.strategy",
        "group.instance.id",
        "isolation.level",
        "fetch.",
        "queued.",
        "enable.partition.eof",
        "check.crcs",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}
