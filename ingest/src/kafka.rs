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

use crate::transport::{AckError, BatchReceiver, BatchSender};

mod properties;
pub use properties::KafkaProperties;

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
    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
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
        c.create().map_err(|e| KafkaError::Client(e.to_string()))
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

    /// Creates the topics that are missing (samples and checkpoints with `partitions`; outputs
    /// likewise; checkpoints compacted).
    pub async fn ensure_topics(&self) -> Result<(), KafkaError> {
        if !self.create_topics {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client()
            .create()
            .map_err(|e| KafkaError::Client(e.to_string()))?;
        let load_retention_ms = (self.load_retention_secs.saturating_mul(1000)).to_string();
        let checkpoint_bytes = (CHECKPOINT_MAX_BYTES + (1 << 20)).to_string();
        let topics: Vec<NewTopic<'_>> = [
            &self.samples_topic,
            &self.checkpoints_topic,
            &self.anomalies_topic,
            &self.forecasts_topic,
            &self.load_topic,
            &self.incidents_topic,
        ]
        .into_iter()
        .map(|t| {
            // Anomaly events are few and must meet in one place (the incident owner): one
            // partition, in order.
            let partitions = if t == &self.anomalies_topic {
                1
            } else {
                self.partitions
            };
            let nt = NewTopic::new(
                t,
                partitions,
                TopicReplication::Fixed(self.replication_factor),
            );
            if t == &self.checkpoints_topic {
                nt.set("cleanup.policy", "compact")
                    .set("max.message.bytes", &checkpoint_bytes)
            } else if t == &self.load_topic {
                nt.set("retention.ms", &load_retention_ms)
            } else {
                nt
            }
        })
        .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(30)))
            .request_timeout(Some(Duration::from_secs(30)));
        let results = tokio::time::timeout(
            Duration::from_secs(60),
            admin.create_topics(topics.iter(), &opts),
        )
        .await
        .map_err(|_| {
            KafkaError::Client(format!(
                "creating topics: no answer from {} in 60 s (is the broker reachable?)",
                self.brokers
            ))
        })?
        .map_err(|e| KafkaError::Client(format!("creating topics: {e}")))?;
        for r in results {
            match r {
                Ok(t) => info!(topic = %t, partitions = self.partitions, "Created a Kafka topic."),
                Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %t, "Kafka topic exists.");
                }
                Err((t, code)) => {
                    return Err(KafkaError::Client(format!("creating topic {t}: {code}")));
                }
            }
        }
        Ok(())
    }

    /// The newest checkpoint of a samples partition, if any (read from the partition of the
    /// same number on `checkpoints_topic`).
    pub fn fetch_checkpoint(&self, partition: i32) -> Result<Option<Vec<u8>>, KafkaError> {
        let mut c = self.client();
        c.set("enable.auto.commit", "false")
            .set("group.id", format!("{}-checkpoint-reader", self.group_id))
            .set(
                "max.partition.fetch.bytes",
                (CHECKPOINT_MAX_BYTES + (1 << 20)).to_string(),
            );
        let consumer: BaseConsumer = c.create().map_err(|e| KafkaError::Client(e.to_string()))?;
        let timeout = Duration::from_secs(10);
        let (lo, hi) = consumer
            .fetch_watermarks(&self.checkpoints_topic, partition, timeout)
            .map_err(|e| KafkaError::Client(format!("checkpoint watermarks: {e}")))?;
        if hi <= lo {
            return Ok(None);
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.checkpoints_topic,
            partition,
            rdkafka::Offset::Offset(hi - 1),
        )
        .map_err(|e| KafkaError::Client(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| KafkaError::Client(e.to_string()))?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => return Ok(m.payload().map(<[u8]>::to_vec)),
                Some(Err(e)) => {
                    return Err(KafkaError::Client(format!("reading a checkpoint: {e}")));
                }
                None => {}
            }
        }
        Err(KafkaError::Client(format!(
            "checkpoint of partition {partition} (offset {}) did not arrive in {timeout:?}",
            hi - 1
        )))
    }
}

impl KafkaConfig {
    /// Every series' samples with times in `start_ms..=end_ms`, read from every partition of
    /// the samples topic (from the messages written since `start_ms` minus 15 minutes, up to
    /// the end as it is now): what one node needs to rank causes across the whole deployment.
    /// At most `max_series` series are kept (by id).
    #[allow(clippy::type_complexity)]
    pub fn read_window(
        &self,
        start_ms: i64,
        end_ms: i64,
        max_series: usize,
    ) -> Result<
        (
            Vec<Arc<SeriesMeta>>,
            std::collections::HashMap<SeriesId, Vec<(i64, f64)>>,
        ),
        KafkaError,
    > {
        let err =
            |e: rdkafka::error::KafkaError| KafkaError::Client(format!("reading a window: {e}"));
        let mut c = self.client();
        c.set("enable.auto.commit", "false")
            .set("group.id", format!("{}-window-reader", self.group_id));
        let consumer: BaseConsumer = c.create().map_err(err)?;
        let timeout = Duration::from_secs(10);
        let mut query = rdkafka::TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in 0..self.partitions {
            let (lo, hi) = consumer
                .fetch_watermarks(&self.samples_topic, p, timeout)
                .map_err(err)?;
            if hi > lo {
                ends.insert(p, hi);
                query
                    .add_partition_offset(
                        &self.samples_topic,
                        p,
                        rdkafka::Offset::Offset(start_ms - 15 * 60 * 1000),
                    )
                    .map_err(err)?;
            }
        }
        let mut metas: BTreeMap<u64, Arc<SeriesMeta>> = BTreeMap::new();
        let mut samples: std::collections::HashMap<SeriesId, Vec<(i64, f64)>> = Default::default();
        if ends.is_empty() {
            return Ok((Vec::new(), samples));
        }
        let from = consumer.offsets_for_times(query, timeout).map_err(err)?;
        let mut assign = rdkafka::TopicPartitionList::new();
        for e in from.elements() {
            let offset = match e.offset() {
                rdkafka::Offset::Offset(o) => rdkafka::Offset::Offset(o),
                // No message that late: nothing to read in this partition.
                _ => {
                    ends.remove(&e.partition());
                    continue;
                }
            };
            assign
                .add_partition_offset(&self.samples_topic, e.partition(), offset)
                .map_err(err)?;
        }
        if ends.is_empty() {
            return Ok((Vec::new(), samples));
        }
        consumer.assign(&assign).map_err(err)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            if std::time::Instant::now() >= deadline {
                return Err(KafkaError::Client(
                    "reading a window: the samples topic did not arrive in 60 s".into(),
                ));
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.map_err(err)?;
            if let Some(Ok(batch)) = m.payload().map(decode_message) {
                for meta in &batch.new_series {
                    metas.entry(meta.id.0).or_insert_with(|| meta.clone());
                }
                let (ids, ts, vs) = (batch.series_ids(), batch.timestamps(), batch.values());
                for i in 0..batch.len() {
                    if (start_ms..=end_ms).contains(&ts[i]) {
                        samples
                            .entry(SeriesId(ids[i]))
                            .or_default()
                            .push((ts[i], vs[i]));
                    }
                }
            }
            if ends
                .get(&m.partition())
                .is_some_and(|&hi| m.offset() + 1 >= hi)
            {
                ends.remove(&m.partition());
            }
        }
        let series: Vec<Arc<SeriesMeta>> = metas.into_values().take(max_series).collect();
        samples.retain(|id, _| series.iter().any(|m| m.id == *id));
        for s in samples.values_mut() {
            s.sort_by_key(|&(t, _)| t);
            s.dedup_by_key(|&mut (t, _)| t);
        }
        Ok((series, samples))
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

/// A Kafka failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    /// Creating or using a client failed.
    #[error("kafka: {0}")]
    Client(String),
}

/// Splits a batch by partition; each part carries the catalog entries of its series.
pub fn split_by_partition(
    cfg: &KafkaConfig,
    batch: &SampleBatch,
    catalog: &SeriesCatalog,
) -> Vec<(i32, SampleBatch)> {
    let mut parts: BTreeMap<i32, SampleBatchBuilder> = BTreeMap::new();
    let mut seen: BTreeMap<i32, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let known: std::collections::HashMap<u64, Arc<SeriesMeta>> = batch
        .new_series
        .iter()
        .map(|m| (m.id.0, m.clone()))
        .collect();
    let (ids, ts, vs) = (batch.series_ids(), batch.timestamps(), batch.values());
    let meta_of = |id: SeriesId| known.get(&id.0).cloned().or_else(|| catalog.get(id));
    let partition_of = |id: SeriesId, meta: Option<&Arc<SeriesMeta>>| match meta {
        Some(m) => cfg.partition_of(m),
        None => cfg.partition_by(None, id),
    };
    // A batch holds a series' samples one after another: look each series up once per run.
    let mut last: Option<(SeriesId, i32, Option<Arc<SeriesMeta>>)> = None;
    for i in 0..batch.len() {
        let id = SeriesId(ids[i]);
        let (p, meta) = match &last {
            Some((l, p, m)) if *l == id => (*p, m.clone()),
            _ => {
                let meta = meta_of(id);
                let p = partition_of(id, meta.as_ref());
                last = Some((id, p, meta.clone()));
                (p, meta)
            }
        };
        let b = parts
            .entry(p)
            .or_insert_with(|| SampleBatchBuilder::with_capacity(64));
        if seen.entry(p).or_default().insert(id.0)
            && let Some(meta) = meta
        {
            b.push_series(meta);
        }
        b.push(id, ts[i], vs[i]);
    }
    for m in &batch.stale {
        let meta = meta_of(m.series_id);
        parts
            .entry(partition_of(m.series_id, meta.as_ref()))
            .or_insert_with(|| SampleBatchBuilder::with_capacity(0))
            .push_stale(*m);
    }
    parts.into_iter().map(|(p, b)| (p, b.finish())).collect()
}

/// A samples message: the archive's WAL record of the part, its samples in `format`.
pub fn encode_message(batch: &SampleBatch, format: RecordFormat) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    crate::archive::wal::encode_record_as(batch, format, &mut out)?;
    Ok(out)
}

/// Reads a samples message.
pub fn decode_message(bytes: &[u8]) -> Result<SampleBatch, String> {
    crate::archive::wal::decode_record(bytes)
}

/// Produces every batch from `receiver` to the samples topic and acknowledges it once the
/// broker has every part. Ends when every sender is gone.
pub async fn run_forwarder(
    cfg: KafkaConfig,
    producer: FutureProducer,
    catalog: Arc<SeriesCatalog>,
    mut receiver: BatchReceiver,
) {
    let timeout = Duration::from_secs(cfg.delivery_timeout_secs);
    while let Some(env) = receiver.recv().await {
        let outcome = produce_batch(&cfg, &producer, &catalog, &env.batch, timeout).await;
        if let Err(e) = &outcome {
            warn!(error = %e.0, samples = env.batch.len(), "A batch did not reach Kafka; its sender is told to retry.");
        }
        if let Some(ack) = env.ack {
            ack.send(outcome);
        }
    }
}

/// Produces one batch (all its parts, concurrently) and waits for every delivery.
pub async fn produce_batch(
    cfg: &KafkaConfig,
    producer: &FutureProducer,
    catalog: &SeriesCatalog,
    batch: &SampleBatch,
    timeout: Duration,
) -> Result<(), AckError> {
    let mut messages = Vec::new();
    for (p, part) in split_by_partition(cfg, batch, catalog) {
        let bytes = encode_message(&part, cfg.record_format)
            .map_err(|e| AckError(format!("encoding: {e}")))?;
        messages.push((p, format!("p{p}"), bytes));
    }
    let sends = messages.iter().map(|(p, key, bytes)| {
        let record = FutureRecord::to(&cfg.samples_topic)
            .partition(*p)
            .key(key.as_bytes())
            .payload(bytes.as_slice());
        let fut = producer.send(record, rdkafka::util::Timeout::After(timeout));
        async move { fut.await.map(|_| ()).map_err(|(e, _)| e.to_string()) }
    });
    let results = futures_util::future::join_all(sends).await;
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(e) => Err(AckError(format!("kafka delivery: {e}"))),
    }
}

/// Produces one JSON output (anomaly, forecast, incident) and waits for its delivery.
pub async fn produce_json(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &impl Serialize,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let payload = serde_json::to_vec(value).map_err(|e| KafkaError::Client(e.to_string()))?;
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&payload),
            rdkafka::util::Timeout::After(timeout),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| KafkaError::Client(format!("producing to {topic}: {e}")))
}

/// One prometheus-kafka-adapter message (protocols.md §6.1).
#[derive(Debug, Deserialize)]
struct AdapterSample {
    timestamp: String,
    value: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses a prometheus-kafka-adapter JSON message: the series and its sample.
pub fn parse_adapter_json(bytes: &[u8]) -> Result<(SeriesMeta, i64, f64), String> {
    let s: AdapterSample = serde_json::from_slice(bytes).map_err(|e| format!("json: {e}"))?;
    let ts = s
        .timestamp
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("timestamp {:?}: {e}", s.timestamp))?
        .as_millisecond();
    let value = match s.value.as_str() {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .map_err(|_| format!("value {v:?} is not a number"))?,
    };
    let name = s
        .labels
        .get("__name__")
        .cloned()
        .or(s.name)
        .ok_or("no __name__ label and no name")?;
    let labels = s.labels.into_iter().filter(|(k, _)| k != "__name__");
    Ok((SeriesMeta::new(Source::Prometheus, name, labels), ts, value))
}

/// Reads prometheus-kafka-adapter topics in their own consumer group and sends their samples
/// on (in batches of up to 5,000 or 200 ms); offsets are committed only after the batch is
/// durable. Malformed messages are counted, logged once per kind and skipped.
pub async fn run_adapter_source(
    cfg: KafkaConfig,
    sender: BatchSender,
    catalog: Arc<SeriesCatalog>,
    metrics: crate::IngestMetrics,
    cancel: CancellationToken,
) -> Result<(), KafkaError> {
    let mut c = cfg.client();
    c.set("group.id", &cfg.source_group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = c.create().map_err(|e| KafkaError::Client(e.to_string()))?;
    let topics: Vec<&str> = cfg.source_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| KafkaError::Client(format!("subscribing to {topics:?}: {e}")))?;
    info!(topics = ?topics, group = %cfg.source_group_id, "Reading prometheus-kafka-adapter topics.");
    loop {
        let mut builder = SampleBatchBuilder::with_capacity(5000);
        let mut offsets = rdkafka::TopicPartitionList::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let mut n = 0usize;
        while n < 5000 {
            let msg = tokio::select! {
                m = consumer.recv() => m,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = cancel.cancelled() => return Ok(()),
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "Kafka source read failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            };
            let _ = offsets.add_partition_offset(
                msg.topic(),
                msg.partition(),
                rdkafka::Offset::Offset(msg.offset() + 1),
            );
            match msg.payload().map(parse_adapter_json) {
                Some(Ok((meta, ts, v))) => {
                    let meta = Arc::new(meta);
                    match catalog.insert(meta.clone()) {
                        aiops_models::CatalogInsert::New => builder.push_series(meta.clone()),
                        aiops_models::CatalogInsert::Known => {}
                        aiops_models::CatalogInsert::Collision(other) => {
                            metrics.rejected("kafka", "collision", 1);
                            error!(series = %meta.to_selector_string(), other = %other.to_selector_string(), "Series id collision: sample rejected.");
                            continue;
                        }
                    }
                    builder.push(meta.id, ts, v);
                    n += 1;
                }
                Some(Err(e)) => {
                    metrics.rejected("kafka", "decode", 1);
                    warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), error = %e, "Skipped a malformed prometheus-kafka-adapter message.");
                }
                None => metrics.rejected("kafka", "empty", 1),
            }
        }
        if offsets.count() == 0 {
            continue;
        }
        let batch = builder.finish();
        let samples = batch.len() as u64;
        if !batch.is_empty() {
            // Durable before the offsets move: a crash re-reads, never skips.
            loop {
                match sender.send_durable(batch.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(error = %e.0, "Kafka source batch not durable; retrying.");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = cancel.cancelled() => return Ok(()),
                        }
                    }
                }
            }
            metrics.received("kafka", samples);
        }
        if let Err(e) = consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync) {
            error!(error = %e, "Committing Kafka source offsets failed; those messages will be read again.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_by_service_partition_and_round_trip() {
        let cfg = KafkaConfig {
            partitions: 4,
            ..KafkaConfig::default()
        };
        let catalog = SeriesCatalog::new();
        let mut b = SampleBatchBuilder::with_capacity(100);
        // Eight series of three services, two without a service.
        let metas: Vec<Arc<SeriesMeta>> = (0..10)
            .map(|i| {
                let mut labels = vec![("i".to_owned(), i.to_string())];
                if i < 8 {
                    labels.push(("service".to_owned(), format!("svc{}", i % 3)));
                }
                Arc::new(SeriesMeta::new(Source::Prometheus, "m", labels))
            })
            .collect();
        for m in &metas {
            catalog.insert(m.clone());
            for t in 0..5 {
                b.push(m.id, t * 1000, t as f64);
            }
        }
        let batch = b.finish();
        let parts = split_by_partition(&cfg, &batch, &catalog);
        let total: usize = parts.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 50);
        let mut service_partition: BTreeMap<String, i32> = BTreeMap::new();
        for (p, part) in &parts {
            for &id in part.series_ids() {
                let meta = catalog.get(SeriesId(id)).expect("known");
                assert_eq!(cfg.partition_of(&meta), *p);
                // A service's series share one partition.
                if let Some(s) = aiops_models::service_of(&meta) {
                    assert_eq!(*service_partition.entry(s).or_insert(*p), *p);
                }
            }
            // Every series of a part travels with its catalog entry.
            let ids: std::collections::BTreeSet<u64> = part.series_ids().iter().copied().collect();
            assert_eq!(part.new_series.len(), ids.len());
            // Both record formats come back whole (`arrow_ipc` for clusters mid-upgrade).
            for format in [RecordFormat::Packed, RecordFormat::ArrowIpc] {
                let bytes = encode_message(part, format).expect("encodes");
                let back = decode_message(&bytes).expect("decodes");
                assert_eq!(back.series_ids(), part.series_ids());
                assert_eq!(back.timestamps(), part.timestamps());
                assert_eq!(back.values(), part.values());
                assert_eq!(back.new_series.len(), part.new_series.len());
                assert_eq!(back.stale, part.stale);
            }
        }
        assert!(decode_message(b"garbage").is_err());
    }

    #[tokio::test]
    async fn batches_reach_the_broker_and_come_back_whole() {
        // librdkafka's in-process mock cluster: real sockets, real protocol.
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let cfg = KafkaConfig {
            brokers: mock.bootstrap_servers(),
            partitions: 3,
            ..KafkaConfig::default()
        };
        mock.create_topic(&cfg.samples_topic, cfg.partitions, 1)
            .expect("topic");
        let catalog = SeriesCatalog::new();
        let mut b = SampleBatchBuilder::with_capacity(30);
        for i in 0..10 {
            let m = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                "m",
                [("i".to_owned(), i.to_string())],
            ));
            catalog.insert(m.clone());
            b.push_series(m.clone());
            for t in 0..3 {
                b.push(m.id, t * 1000, (i * 10 + t) as f64);
            }
        }
        let batch = b.finish();
        let producer = cfg.producer().expect("producer");
        produce_batch(&cfg, &producer, &catalog, &batch, Duration::from_secs(10))
            .await
            .expect("delivered");
        let mut c = cfg.client();
        c.set("group.id", "t").set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = c.create().expect("consumer");
        consumer
            .subscribe(&[&cfg.samples_topic])
            .expect("subscribe");
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got < 30 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let part = decode_message(m.payload().expect("payload")).expect("decodes");
                assert!(
                    part.series_ids()
                        .iter()
                        .all(|&id| cfg.partition_by(None, SeriesId(id)) == m.partition())
                );
                got += part.len();
            }
        }
        assert_eq!(got, 30);
    }

    #[tokio::test]
    async fn a_checkpoint_larger_than_kafkas_default_message_size_goes_and_comes_back() {
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let cfg = KafkaConfig {
            brokers: mock.bootstrap_servers(),
            partitions: 2,
            ..KafkaConfig::default()
        };
        mock.create_topic(&cfg.checkpoints_topic, cfg.partitions, 1)
            .expect("topic");
        // 4 MB: four times Kafka's default 1 MB message limit (some 4,000 series' state).
        let payload: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        let producer = cfg.producer().expect("producer");
        producer
            .send(
                FutureRecord::to(&cfg.checkpoints_topic)
                    .partition(1)
                    .key("p1")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
        let back = tokio::task::spawn_blocking(move || cfg.fetch_checkpoint(1))
            .await
            .expect("join")
            .expect("read")
            .expect("a checkpoint");
        assert!(
            back == payload,
            "{} bytes back of {}",
            back.len(),
            payload.len()
        );
    }

    #[test]
    fn adapter_json_parses_and_bad_messages_say_why() {
        let (meta, ts, v) = parse_adapter_json(
            br#"{"timestamp":"2024-05-01T12:00:00Z","value":"0.93","name":"aiops_anomaly_score",
                "labels":{"__name__":"aiops_anomaly_score","service":"api","env":"prod"}}"#,
        )
        .expect("parses");
        assert_eq!(meta.metric, "aiops_anomaly_score");
        assert_eq!(meta.label("service"), Some("api"));
        assert_eq!((ts, v), (1_714_564_800_000, 0.93));
        let (_, _, nan) = parse_adapter_json(
            br#"{"timestamp":"2024-05-01T12:00:00Z","value":"NaN","labels":{"__name__":"x"}}"#,
        )
        .expect("NaN is a value");
        assert!(nan.is_nan());
        for bad in [
            &br#"{"timestamp":"yesterday","value":"1","labels":{"__name__":"x"}}"#[..],
            br#"{"timestamp":"2024-05-01T12:00:00Z","value":"one","labels":{"__name__":"x"}}"#,
            br#"{"timestamp":"2024-05-01T12:00:00Z","value":"1","labels":{}}"#,
            b"not json",
        ] {
            assert!(parse_adapter_json(bad).is_err());
        }
    }

    #[test]
    fn config_validation_names_the_key() {
        let mut p = Vec::new();
        KafkaConfig {
            brokers: " ".into(),
            partitions: 0,
            properties: [("group.id".to_owned(), "x".to_owned())].into(),
            ..KafkaConfig::default()
        }
        .validate("transport.kafka", &mut p);
        let text = p.join("\n");
        for k in ["brokers", "partitions", "properties"] {
            assert!(text.contains(&format!("transport.kafka.{k}")), "{text}");
        }
    }
}
