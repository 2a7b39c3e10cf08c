//! Sample batches on the samples topic (split by partition, encoded as WAL records) and JSON
//! outputs on theirs.

use super::*;

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
pub fn encode_message(batch: &SampleBatch, format: RecordFormat) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    crate::archive::wal::encode_record_as(batch, format, &mut out)?;
    Ok(out)
}

/// Reads a samples message.
pub fn decode_message(bytes: &[u8]) -> Result<SampleBatch, IngestError> {
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
            warn!(error = %e, samples = env.batch.len(), "A batch did not reach Kafka; its sender is told to retry.");
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
) -> Result<(), IngestError> {
    let mut messages = Vec::new();
    for (p, part) in split_by_partition(cfg, batch, catalog) {
        let bytes = encode_message(&part, cfg.record_format)
            .map_err(|e| IngestError::Pipeline(format!("encoding: {e}")))?;
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
        Some(e) => Err(IngestError::Pipeline(format!("kafka delivery: {e}"))),
    }
}

/// Produces one JSON output (anomaly, forecast, incident) and waits for its delivery.
pub async fn produce_json(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &impl Serialize,
    timeout: Duration,
) -> Result<(), IngestError> {
    let payload = serde_json::to_vec(value).map_err(|e| IngestError::Kafka(e.to_string()))?;
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&payload),
            rdkafka::util::Timeout::After(timeout),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| IngestError::Kafka(format!("producing to {topic}: {e}")))
}
