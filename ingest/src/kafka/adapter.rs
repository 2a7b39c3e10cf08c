//! prometheus-kafka-adapter JSON topics as a source (protocols.md §6.1), offsets committed
//! after the batch is durable.

use super::*;

/// One prometheus-kafka-adapter message (protocols.md §6.1).
#[derive(Debug, Deserialize)]
pub(super) struct AdapterSample {
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
) -> Result<(), IngestError> {
    let mut c = cfg.client();
    c.set("group.id", &cfg.source_group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = c.create().map_err(|e| IngestError::Kafka(e.to_string()))?;
    let topics: Vec<&str> = cfg.source_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| IngestError::Kafka(format!("subscribing to {topics:?}: {e}")))?;
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
                        warn!(error = %e, "Kafka source batch not durable; retrying.");
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
