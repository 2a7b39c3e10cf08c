//! Topic administration and reads: creating missing topics, the newest checkpoint of a
//! partition, every series' samples of a time window across partitions.

use super::*;

impl KafkaConfig {
    /// Creates the topics that are missing (samples and checkpoints with `partitions`; outputs
    /// likewise; checkpoints compacted).
    pub async fn ensure_topics(&self) -> Result<(), IngestError> {
        if !self.create_topics {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client()
            .create()
            .map_err(|e| IngestError::Kafka(e.to_string()))?;
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
            IngestError::Kafka(format!(
                "creating topics: no answer from {} in 60 s (is the broker reachable?)",
                self.brokers
            ))
        })?
        .map_err(|e| IngestError::Kafka(format!("creating topics: {e}")))?;
        for r in results {
            match r {
                Ok(t) => info!(topic = %t, partitions = self.partitions, "Created a Kafka topic."),
                Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %t, "Kafka topic exists.");
                }
                Err((t, code)) => {
                    return Err(IngestError::Kafka(format!("creating topic {t}: {code}")));
                }
            }
        }
        Ok(())
    }

    /// The newest checkpoint of a samples partition, if any (read from the partition of the
    /// same number on `checkpoints_topic`).
    pub fn fetch_checkpoint(&self, partition: i32) -> Result<Option<Vec<u8>>, IngestError> {
        let mut c = self.client();
        c.set("enable.auto.commit", "false")
            .set("group.id", format!("{}-checkpoint-reader", self.group_id))
            .set(
                "max.partition.fetch.bytes",
                (CHECKPOINT_MAX_BYTES + (1 << 20)).to_string(),
            );
        let consumer: BaseConsumer = c.create().map_err(|e| IngestError::Kafka(e.to_string()))?;
        let timeout = Duration::from_secs(10);
        let (lo, hi) = consumer
            .fetch_watermarks(&self.checkpoints_topic, partition, timeout)
            .map_err(|e| IngestError::Kafka(format!("checkpoint watermarks: {e}")))?;
        if hi <= lo {
            return Ok(None);
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.checkpoints_topic,
            partition,
            rdkafka::Offset::Offset(hi - 1),
        )
        .map_err(|e| IngestError::Kafka(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| IngestError::Kafka(e.to_string()))?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => return Ok(m.payload().map(<[u8]>::to_vec)),
                Some(Err(e)) => {
                    return Err(IngestError::Kafka(format!("reading a checkpoint: {e}")));
                }
                None => {}
            }
        }
        Err(IngestError::Kafka(format!(
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
        IngestError,
    > {
        let err =
            |e: rdkafka::error::KafkaError| IngestError::Kafka(format!("reading a window: {e}"));
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
                return Err(IngestError::Kafka(
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
