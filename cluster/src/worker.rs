//! The detector worker of `aiops serve --bus kafka`: a member of the consumer group on the
//! samples topic that owns the series of its partitions.
//!
//! Per message: decode → archive locally (durable) → detect → anomaly events produced to the
//! anomalies topic. Every `checkpoint_secs`, and when partitions are revoked, the worker waits
//! for its outputs, writes each owned partition's detector state to the checkpoints topic and
//! only then commits the partition's offset — so the committed offset and the newest checkpoint
//! always describe the same point. A worker that gains a partition restores its newest
//! checkpoint before reading it and resumes at the committed offset: no series restarts cold,
//! and what was processed after the last checkpoint is processed again (at least once;
//! duplicates are dropped by series and timestamp, anomaly events keep their ids).

pub mod partitions;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aiops_detect::DetectState;
use aiops_detect::stage::DetectConfig;
use aiops_ingest::kafka::{KafkaConfig, decode_message};
use aiops_ingest::transport::BatchSender;
use aiops_models::{AnomalyEvent, SeriesCatalog};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::ClusterError;
use crate::worker::partitions::Shared;

/// The consumer context: hands partitions over on rebalance.
pub(crate) struct WorkerContext {
    pub(crate) shared: Arc<Shared>,
    /// The partitions of the last revocation.
    pub(crate) last_revoked: Mutex<Vec<i32>>,
    /// Set when a rebalance handed back exactly what was revoked (see [`Worker::run`]).
    pub(crate) rejoin: std::sync::atomic::AtomicBool,
}

impl ClientContext for WorkerContext {}

impl WorkerContext {
    /// The samples-topic partitions of a rebalance, sorted.
    pub(crate) fn samples_partitions(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
        let mut parts: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.shared.cfg.samples_topic)
            .map(|e| e.partition())
            .collect();
        parts.sort_unstable();
        parts
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = self.samples_partitions(tpl);
            info!(partitions = ?parts, "Partitions revoked: checkpointing them.");
            *self.last_revoked.lock().unwrap_or_else(|p| p.into_inner()) = parts.clone();
            self.shared.checkpoint(consumer, &parts, true);
            let mut owned = self.shared.owned.lock().unwrap_or_else(|p| p.into_inner());
            let mut idle = self.shared.at_end.lock().unwrap_or_else(|p| p.into_inner());
            let mut marks = self
                .shared
                .read_up_to
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for p in parts {
                owned.remove(&p);
                idle.remove(&p);
                marks.remove(&p);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = self.samples_partitions(tpl);
            info!(partitions = ?parts, "Partitions assigned: restoring their state.");
            let revoked =
                std::mem::take(&mut *self.last_revoked.lock().unwrap_or_else(|p| p.into_inner()));
            if !parts.is_empty() && parts == revoked {
                self.rejoin.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.shared.restore(&parts);
            let mut owned = self.shared.owned.lock().unwrap_or_else(|p| p.into_inner());
            for p in parts {
                owned.entry(p).or_insert(None);
            }
        }
    }
}

/// Everything the worker needs.
pub struct Worker {
    /// Kafka settings.
    pub cfg: KafkaConfig,
    /// Detection settings.
    pub detect: DetectConfig,
    /// The catalog (filled from the messages).
    pub catalog: Arc<SeriesCatalog>,
    /// Detection state (shared with the API).
    pub state: Arc<RwLock<DetectState>>,
    /// The local archive's input.
    pub archive: BatchSender,
    /// Anomaly events also go here (the incident task).
    pub publish: Box<dyn Fn(&AnomalyEvent) + Send>,
    /// The runtime (the worker is a thread of its own).
    pub rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("samples_topic", &self.cfg.samples_topic)
            .field("group_id", &self.cfg.group_id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Runs until `cancel`, then checkpoints and commits what it owns.
    pub fn run(self, cancel: CancellationToken) -> Result<(), ClusterError> {
        let producer = self.cfg.producer()?;
        if !self.detect.scaling.targets.is_empty() {
            // Scaling targets sum members from every partition: shared through the load topic.
            self.state
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .load_out = Some(Vec::new());
        }
        let shared = Arc::new(Shared {
            cfg: self.cfg.clone(),
            detector: self.detect.detector,
            catalog: self.catalog.clone(),
            state: self.state.clone(),
            producer: producer.clone(),
            rt: self.rt.clone(),
            owned: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
            failed: Default::default(),
            read_up_to: Mutex::new(BTreeMap::new()),
            at_end: Mutex::new(Default::default()),
        });
        let mut c = self.cfg.client();
        c.set("group.id", &self.cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("partition.assignment.strategy", "range");
        let consumer: BaseConsumer<WorkerContext> = c
            .create_with_context(WorkerContext {
                shared: shared.clone(),
                last_revoked: Mutex::new(Vec::new()),
                rejoin: Default::default(),
            })
            .map_err(ClusterError::kafka("creating the Kafka consumer"))?;
        let subscribe = |consumer: &BaseConsumer<WorkerContext>| {
            consumer
                .subscribe(&[self.cfg.samples_topic.as_str()])
                .map_err(ClusterError::kafka(format!(
                    "subscribing to {}",
                    self.cfg.samples_topic
                )))
        };
        subscribe(&consumer)?;
        info!(topic = %self.cfg.samples_topic, group = %self.cfg.group_id, "Detector worker joined its consumer group.");
        let every = Duration::from_secs(self.cfg.checkpoint_secs);
        let mut last_checkpoint = Instant::now();
        let mut last_rejoin: Option<Instant> = None;
        while !cancel.is_cancelled() {
            if let Some(res) = consumer.poll(Duration::from_millis(100)) {
                match res {
                    Ok(msg) => {
                        let (p, off) = (msg.partition(), msg.offset());
                        shared
                            .at_end
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&p);
                        match msg.payload().map(decode_message) {
                            Some(Ok(batch)) => self.handle(&shared, p, &batch, &producer),
                            Some(Err(e)) => {
                                error!(partition = p, offset = off, error = %e, "Skipped an undecodable samples message.");
                            }
                            None => {}
                        }
                        if let Some(slot) = shared
                            .owned
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_mut(&p)
                        {
                            *slot = Some(off + 1);
                        }
                    }
                    Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                        shared
                            .at_end
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(p);
                    }
                    Err(e) => warn!(error = %e, "Kafka consumer error; continuing."),
                }
            }
            // A rebalance that hands back exactly the partitions it took is what a coordinator
            // that keeps a departed member's share looks like (tansu 0.6 answers SyncGroup with
            // the previous generation's assignment): rejoin as a new member, which starts a new
            // generation, so the partitions of a dead worker are not stranded. At most every 30 s.
            if consumer
                .context()
                .rejoin
                .swap(false, std::sync::atomic::Ordering::SeqCst)
                && last_rejoin.is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
            {
                warn!(
                    "A rebalance handed back exactly the partitions it revoked; rejoining the group as a new member."
                );
                consumer.unsubscribe();
                shared
                    .owned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                subscribe(&consumer)?;
                last_rejoin = Some(Instant::now());
            }
            if last_checkpoint.elapsed() >= every {
                self.load_heartbeats(&shared, &producer);
                shared.checkpoint(&consumer, &shared.owned_partitions(), false);
                self.publish_forecasts(&producer);
                last_checkpoint = Instant::now();
            }
        }
        shared.checkpoint(&consumer, &shared.owned_partitions(), false);
        consumer.unsubscribe();
        info!("Detector worker left its group after a final checkpoint.");
        Ok(())
    }

    /// Tells the load topic how far each owned partition is read, members or not, so the
    /// nodes summing the load need not wait for partitions without members.
    pub(crate) fn load_heartbeats(&self, shared: &Shared, producer: &FutureProducer) {
        if self.detect.scaling.targets.is_empty() {
            return;
        }
        let marks = shared
            .read_up_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let idle = shared
            .at_end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A partition read to its end that brought nothing is as far as the others (idle);
        // one with a backlog (just taken over) says nothing until it has read it.
        let Some(&newest) = marks.values().max() else {
            return;
        };
        for p in shared.owned_partitions() {
            let watermark_ms = match marks.get(&p) {
                Some(&m) => m,
                None if idle.contains(&p) => newest,
                None => continue,
            };
            self.send_load(shared, producer, p, watermark_ms, Vec::new());
        }
    }

    pub(crate) fn send_load(
        &self,
        shared: &Shared,
        producer: &FutureProducer,
        partition: i32,
        watermark_ms: i64,
        samples: Vec<aiops_detect::scaling::LoadSample>,
    ) {
        let msg = aiops_detect::scaling::LoadMessage {
            watermark_ms,
            samples,
        };
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        let key = partition.to_string();
        let record = FutureRecord::to(&self.cfg.load_topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(&payload);
        queue(shared, producer, record, "load samples");
    }

    /// The served value of every scaling target this worker can compute, to the forecasts
    /// topic (keyed by target).
    pub(crate) fn publish_forecasts(&self, producer: &FutureProducer) {
        let now = jiff::Timestamp::now().as_millisecond();
        for t in &self.detect.scaling.targets {
            let shared_scaling = self
                .state
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .scaling
                .clone();
            let v = shared_scaling
                .lock()
                .value(&self.detect.scaling, &t.name, None, now);
            let Ok(v) = v else { continue };
            let Ok(payload) = serde_json::to_vec(&v) else {
                continue;
            };
            let res = self.rt.block_on(
                producer.send(
                    FutureRecord::to(&self.cfg.forecasts_topic)
                        .key(t.name.as_bytes())
                        .payload(&payload),
                    Duration::from_secs(self.cfg.delivery_timeout_secs),
                ),
            );
            if let Err((e, _)) = res {
                warn!(target = %t.name, error = %e, "A forecast did not reach Kafka; the next one follows.");
            }
        }
    }

    pub(crate) fn handle(
        &self,
        shared: &Shared,
        partition: i32,
        batch: &aiops_models::SampleBatch,
        producer: &FutureProducer,
    ) {
        for m in &batch.new_series {
            self.catalog.insert(m.clone());
        }
        // Durable locally first (the API reads it); a failing archive is retried, never skipped.
        loop {
            match self.rt.block_on(self.archive.send_durable(batch.clone())) {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, "The local archive did not take a batch; retrying.");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        let (changed, load) = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.process(&self.detect, batch, &self.catalog);
            (st.take_changed(), st.load_out.as_mut().map(std::mem::take))
        };
        for ev in changed {
            (self.publish)(&ev);
            let Ok(payload) = serde_json::to_vec(&ev) else {
                continue;
            };
            let record = FutureRecord::to(&self.cfg.anomalies_topic)
                .partition(0)
                .key(ev.id.as_bytes())
                .payload(&payload);
            queue(shared, producer, record, &ev.id);
        }
        // Scaling targets' member samples, for every node to sum (its own partition's share).
        if let Some(load) = load {
            let newest = batch.timestamps().iter().copied().max();
            let mark = {
                let mut marks = shared.read_up_to.lock().unwrap_or_else(|e| e.into_inner());
                let m = marks.entry(partition).or_insert(i64::MIN);
                *m = (*m).max(newest.unwrap_or(i64::MIN));
                *m
            };
            if !load.is_empty() {
                self.send_load(shared, producer, partition, mark, load);
            }
        }
    }
}

/// Queues an output whose delivery the next commit waits for. A full producer queue is
/// back-pressure: wait for room, never drop.
pub(crate) fn queue(
    shared: &Shared,
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], Vec<u8>>,
    what: &str,
) {
    loop {
        match producer.send_result(record) {
            Ok(f) => {
                shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(f);
                return;
            }
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((e, _)) => {
                error!(output = what, error = %e, "Cannot queue an output for Kafka; offsets stop moving until it is produced again.");
                shared
                    .failed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        }
    }
}
