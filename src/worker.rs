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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aiops_detect::DetectState;
use aiops_detect::stage::{DetectConfig, Ownership, SeriesState, ServiceState};
use aiops_ingest::kafka::{KafkaConfig, decode_message};
use aiops_ingest::transport::BatchSender;
use aiops_models::{AnomalyEvent, SeriesCatalog, SeriesId};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// A partition's share of the detection state, as written to the checkpoints topic.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    /// The samples partition.
    pub partition: i32,
    /// The next offset to read: everything before it is in this state.
    pub next_offset: i64,
    /// Per-series detector state.
    pub series: Vec<(SeriesId, SeriesState)>,
    /// Per-service multivariate state (a service's series share its partition).
    #[serde(default)]
    pub services: Vec<(String, ServiceState)>,
    /// Events still open on these series and services.
    pub open_events: Vec<AnomalyEvent>,
    /// The catalog entries of these series (the new owner knows them before their next sample).
    #[serde(default)]
    pub metas: Vec<aiops_models::SeriesMeta>,
    /// The continuous score's state of these series (absent from older checkpoints: it then
    /// learns afresh).
    #[serde(default)]
    pub ranks: Vec<(SeriesId, aiops_detect::RankState)>,
}

/// What the worker shares with its rebalance callbacks.
struct Shared {
    cfg: KafkaConfig,
    /// Detector parameters in use (restored detectors take them).
    detector: aiops_detect::DetectorConfig,
    catalog: Arc<SeriesCatalog>,
    state: Arc<RwLock<DetectState>>,
    producer: FutureProducer,
    rt: tokio::runtime::Handle,
    /// Owned partitions and the next offset of each (None: nothing read yet).
    owned: Mutex<BTreeMap<i32, Option<i64>>>,
    /// Anomaly deliveries not yet confirmed.
    pending: Mutex<Vec<rdkafka::producer::DeliveryFuture>>,
    /// An output could not even be queued: nothing is committed any more (a restart or the
    /// next owner produces it again from the last commit).
    failed: std::sync::atomic::AtomicBool,
    /// Newest sample time read per partition (the load topic's watermarks).
    read_up_to: Mutex<BTreeMap<i32, i64>>,
    /// Owned partitions read to their end (nothing waiting in them).
    at_end: Mutex<std::collections::BTreeSet<i32>>,
}

impl Shared {
    /// The partitions this worker owns now.
    fn owned_partitions(&self) -> Vec<i32> {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The partition of every series in the detection state (by its service, as the
    /// forwarder split it), looked up once per checkpoint rather than once per partition.
    fn series_partitions(&self) -> std::collections::HashMap<SeriesId, i32> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.series
            .keys()
            .map(|&id| {
                let p = match self.catalog.get(id) {
                    Some(meta) => self.cfg.partition_of(&meta),
                    None => self.cfg.partition_by(None, id),
                };
                (id, p)
            })
            .collect()
    }

    /// Runs `f` with what belongs to `partition` (`of`: [`Shared::series_partitions`]).
    fn with_owned<T>(
        &self,
        partition: i32,
        of: &std::collections::HashMap<SeriesId, i32>,
        f: impl FnOnce(&Ownership<'_>) -> T,
    ) -> T {
        let series = |id| of.get(&id) == Some(&partition);
        let service = |s: &str| self.cfg.partition_by(Some(s), SeriesId(0)) == partition;
        f(&Ownership {
            series: &series,
            service: &service,
        })
    }

    /// Waits for every anomaly delivery. Err: some output is not in Kafka; nothing may be
    /// committed past it.
    fn drain_outputs(&self) -> Result<(), String> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = None;
        for f in pending {
            match self.rt.block_on(f) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed = Some(e.to_string()),
                Err(_) => failed = Some("delivery cancelled".into()),
            }
        }
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            failed.get_or_insert_with(|| "an anomaly event could not be queued".into());
        }
        failed.map_or(Ok(()), Err)
    }

    /// Writes the checkpoints of `partitions`, then commits their offsets. `release`: also
    /// forget their series (they are being handed over).
    fn checkpoint(
        &self,
        consumer: &BaseConsumer<WorkerContext>,
        partitions: &[i32],
        release: bool,
    ) {
        if let Err(e) = self.drain_outputs() {
            error!(error = %e, "Anomaly events did not reach Kafka; offsets stay where they were (they will be produced again).");
            return;
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let of = self.series_partitions();
        for &p in partitions {
            let Some(Some(next)) = owned.get(&p).copied() else {
                // Nothing read since we got it: the last checkpoint still holds.
                if release {
                    self.with_owned(p, &of, |o| {
                        self.state
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove_partition(o)
                    });
                }
                continue;
            };
            let (series, services, open_events) = self.with_owned(p, &of, |o| {
                self.state
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .export_partition(o)
            });
            let n = series.len();
            let metas = series
                .iter()
                .filter_map(|(id, _)| self.catalog.get(*id).map(|m| (*m).clone()))
                .collect();
            let ranks = series
                .iter()
                .map(|(id, s)| (*id, s.detector.rank_state()))
                .collect();
            let cp = PartitionCheckpoint {
                partition: p,
                next_offset: next,
                series,
                services,
                open_events,
                metas,
                ranks,
            };
            let bytes = match serde_json::to_vec(&cp) {
                Ok(b) => b,
                Err(e) => {
                    error!(partition = p, error = %e, "Cannot encode a checkpoint.");
                    continue;
                }
            };
            if bytes.len() > aiops_ingest::kafka::CHECKPOINT_MAX_BYTES {
                error!(
                    partition = p,
                    series = n,
                    bytes = bytes.len(),
                    limit = aiops_ingest::kafka::CHECKPOINT_MAX_BYTES,
                    "A partition's checkpoint is too large for one message; its offset is not committed. Use more partitions (transport.kafka.partitions) for this many series."
                );
                continue;
            }
            let key = format!("p{p}");
            let sent = self.rt.block_on(
                self.producer.send(
                    FutureRecord::to(&self.cfg.checkpoints_topic)
                        .partition(p)
                        .key(key.as_bytes())
                        .payload(&bytes),
                    Duration::from_secs(self.cfg.delivery_timeout_secs),
                ),
            );
            if let Err((e, _)) = sent {
                error!(partition = p, error = %e, "A checkpoint did not reach Kafka; its offset is not committed.");
                continue;
            }
            let _ = offsets.add_partition_offset(
                &self.cfg.samples_topic,
                p,
                rdkafka::Offset::Offset(next),
            );
            if release {
                self.with_owned(p, &of, |o| {
                    self.state
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove_partition(o)
                });
            }
            info!(
                partition = p,
                series = n,
                next_offset = next,
                bytes = bytes.len(),
                released = release,
                "Checkpointed a partition."
            );
        }
        if offsets.count() > 0
            && let Err(e) = consumer.commit(&offsets, CommitMode::Sync)
        {
            error!(error = %e, "Committing offsets failed; the next owner reads again from the previous commit.");
        }
    }

    /// Restores the newest checkpoint of each partition gained.
    fn restore(&self, partitions: &[i32]) {
        for &p in partitions {
            match self.cfg.fetch_checkpoint(p) {
                Ok(Some(bytes)) => match serde_json::from_slice::<PartitionCheckpoint>(&bytes) {
                    Ok(mut cp) => {
                        let (n, s) = (cp.series.len(), cp.services.len());
                        let ranks: std::collections::HashMap<_, _> = cp.ranks.drain(..).collect();
                        for (id, st) in &mut cp.series {
                            if let Some(r) = ranks.get(id) {
                                st.detector.set_rank_state(*r);
                            }
                        }
                        for m in cp.metas {
                            self.catalog.insert(Arc::new(m));
                        }
                        {
                            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
                            st.import_partition(cp.series, cp.services, cp.open_events);
                            st.set_detector_config(self.detector);
                        }
                        info!(
                            partition = p,
                            series = n,
                            services = s,
                            next_offset = cp.next_offset,
                            "Restored a partition's detector state."
                        );
                    }
                    Err(e) => {
                        error!(partition = p, error = %e, "A checkpoint is unreadable; its series start from history.")
                    }
                },
                Ok(None) => info!(
                    partition = p,
                    "No checkpoint for a partition yet; its series start fresh."
                ),
                Err(e) => {
                    error!(partition = p, error = %e, "Cannot read a partition's checkpoint; its series start from history.")
                }
            }
        }
    }
}

/// The consumer context: hands partitions over on rebalance.
struct WorkerContext {
    shared: Arc<Shared>,
    /// The partitions of the last revocation.
    last_revoked: Mutex<Vec<i32>>,
    /// Set when a rebalance handed back exactly what was revoked (see [`Worker::run`]).
    rejoin: std::sync::atomic::AtomicBool,
}

impl ClientContext for WorkerContext {}

impl WorkerContext {
    /// The samples-topic partitions of a rebalance, sorted.
    fn samples_partitions(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
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

impl Worker {
    /// Runs until `cancel`, then checkpoints and commits what it owns.
    pub fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
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
            .map_err(|e| anyhow::anyhow!("creating the Kafka consumer: {e}"))?;
        consumer
            .subscribe(&[self.cfg.samples_topic.as_str()])
            .map_err(|e| anyhow::anyhow!("subscribing to {}: {e}", self.cfg.samples_topic))?;
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
                consumer
                    .subscribe(&[self.cfg.samples_topic.as_str()])
                    .map_err(|e| {
                        anyhow::anyhow!("subscribing to {}: {e}", self.cfg.samples_topic)
                    })?;
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
    fn load_heartbeats(&self, shared: &Shared, producer: &FutureProducer) {
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

    fn send_load(
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
    fn publish_forecasts(&self, producer: &FutureProducer) {
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

    fn handle(
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
                    warn!(error = %e.0, "The local archive did not take a batch; retrying.");
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
fn queue(
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

/// Every node's view of the scaling targets: the member samples of every partition, read from
/// the load topic (all partitions, no group), summed into this node's scaling state. A node
/// that starts replays the topic from `warm_start_secs` ago, which warms its forecasters.
pub async fn run_scaling_feed(
    cfg: KafkaConfig,
    scaling: aiops_detect::scaling::ScalingConfig,
    state: Arc<RwLock<DetectState>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut c = cfg.client();
    c.set("group.id", format!("{}-load-reader", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c
        .create()
        .map_err(|e| anyhow::anyhow!("creating the load feed consumer: {e}"))?;
    let from = jiff::Timestamp::now().as_millisecond()
        - (scaling.warm_start_secs.min(cfg.load_retention_secs) as i64) * 1000;
    let mut query = rdkafka::TopicPartitionList::new();
    for p in 0..cfg.partitions {
        query.add_partition_offset(&cfg.load_topic, p, rdkafka::Offset::Offset(from))?;
    }
    let start =
        tokio::task::block_in_place(|| consumer.offsets_for_times(query, Duration::from_secs(30)))
            .map_err(|e| anyhow::anyhow!("finding where to replay {} from: {e}", cfg.load_topic))?;
    let mut assign = rdkafka::TopicPartitionList::new();
    for e in start.elements() {
        let offset = match e.offset() {
            rdkafka::Offset::Offset(o) => rdkafka::Offset::Offset(o),
            // Nothing that recent yet: read what comes.
            _ => rdkafka::Offset::End,
        };
        assign.add_partition_offset(&cfg.load_topic, e.partition(), offset)?;
    }
    consumer.assign(&assign)?;
    info!(topic = %cfg.load_topic, "Scaling targets sum the load of every partition (load topic).");
    let mut applied = 0u64;
    // Partitions are read in chunks, one after another: samples wait for the slower ones.
    // A dead worker's partitions are waited for (a hand-over) up to `stale_secs`.
    let wall = || jiff::Timestamp::now().as_millisecond();
    let mut merger = aiops_detect::scaling::LoadMerger::new(
        0..cfg.partitions,
        scaling.stale_secs as i64 * 1000,
        wall(),
    );
    // The scaling targets have a lock of their own: the feed never waits for scoring.
    let targets = state
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .scaling
        .clone();
    let apply = |ready: Vec<aiops_detect::scaling::LoadSample>| {
        if ready.is_empty() {
            return 0;
        }
        let mut st = targets.lock();
        for s in &ready {
            st.observe_member(&scaling, s);
        }
        ready.len() as u64
    };
    while !cancel.is_cancelled() {
        let msg = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        let Some(msg) = msg else {
            // A quiet partition's hold may have run out.
            if merger.waiting() > 0 {
                applied += apply(merger.release(wall()));
            }
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                applied += apply(merger.at_end(p, wall()));
                continue;
            }
            Err(e) => {
                warn!(error = %e, "Load feed read failed; continuing.");
                continue;
            }
        };
        match msg
            .payload()
            .map(serde_json::from_slice::<aiops_detect::scaling::LoadMessage>)
        {
            Some(Ok(m)) => applied += apply(merger.push(msg.partition(), m, wall())),
            Some(Err(e)) => {
                warn!(partition = msg.partition(), offset = msg.offset(), error = %e, "Skipped an unreadable load message.")
            }
            None => {}
        }
    }
    info!(samples = applied, "Load feed stopped.");
    Ok(())
}

/// Knows whether this node owns the anomalies partition (and so the incidents).
struct FeedContext {
    owner: std::sync::atomic::AtomicBool,
    rebuild: std::sync::atomic::AtomicBool,
}

impl ClientContext for FeedContext {}

impl ConsumerContext for FeedContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        use std::sync::atomic::Ordering;
        match rebalance {
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.owner.store(true, Ordering::SeqCst);
                self.rebuild.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(_) => self.owner.store(false, Ordering::SeqCst),
            _ => {}
        }
    }
}

/// Keys of [`aiops_api::incidents::Command`] messages on the anomalies topic (anomaly events
/// are keyed by their ids, which never start so).
pub const COMMAND_KEY_PREFIX: &str = "cmd:";

/// Keys of the incident feed's liveness messages on the anomalies topic.
pub const HEARTBEAT_KEY_PREFIX: &str = "hb:";

/// The incidents of a Kafka deployment meet at one node: the member of `{group_id}-incidents`
/// that owns the anomalies topic's only partition. It reads every anomaly event in order,
/// feeds its incident book, and commits the offset after the book is saved. When it becomes
/// the owner (at start, or after the previous owner died) it first adopts the incidents the
/// incidents topic holds.
pub async fn run_incident_feed(
    cfg: KafkaConfig,
    producer: FutureProducer,
    incidents: Arc<aiops_api::incidents::IncidentService>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let mut c = cfg.client();
    c.set("group.id", format!("{}-incidents", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<FeedContext> = c
        .create_with_context(FeedContext {
            owner: Default::default(),
            rebuild: Default::default(),
        })
        .map_err(|e| anyhow::anyhow!("creating the incident feed consumer: {e}"))?;
    consumer.subscribe(&[cfg.anomalies_topic.as_str()])?;
    // Every node says it is alive on the anomalies topic now and then: with nobody owning the
    // partition, these wait unconsumed and the others notice (below) even when no anomaly
    // comes.
    let mut last_heartbeat: Option<Instant> = None;
    let mut last_rejoin: Option<Instant> = None;
    let mut last_check = Instant::now();
    // (committed offset, since when it has not moved)
    let mut progress: Option<(i64, Instant)> = None;
    while !cancel.is_cancelled() {
        let msg = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        incidents.set_owner(consumer.context().owner.load(Ordering::SeqCst));
        if last_heartbeat.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            last_heartbeat = Some(Instant::now());
            let (producer, topic) = (producer.clone(), cfg.anomalies_topic.clone());
            let key = format!("{HEARTBEAT_KEY_PREFIX}{}", std::process::id());
            let timeout = Duration::from_secs(cfg.delivery_timeout_secs);
            tokio::spawn(async move {
                let at = jiff::Timestamp::now().as_millisecond();
                if let Err(e) = aiops_ingest::kafka::produce_json(
                    &producer,
                    &topic,
                    &key,
                    &serde_json::json!({ "at_ms": at }),
                    timeout,
                )
                .await
                {
                    warn!(error = %e, "An incident-feed heartbeat did not reach Kafka.");
                }
            });
        }
        if consumer.context().rebuild.swap(false, Ordering::SeqCst) {
            let cfg2 = cfg.clone();
            match tokio::task::spawn_blocking(move || read_incidents(&cfg2)).await? {
                Ok(list) => {
                    let n = incidents.adopt(list);
                    // The previous owner may have died with pages in its outbox.
                    let paged = incidents.repage();
                    info!(
                        incidents = n,
                        paged,
                        "This node owns the incidents now; adopted those the incidents topic holds and queued their pages again."
                    );
                }
                Err(e) => {
                    error!(error = %e, "Cannot read the incidents topic; starting from this node's own book.")
                }
            }
        }
        // Liveness of the owner, checked by the others: when events wait and the group's
        // committed offset has not moved for 30 s, the owner is gone without the coordinator
        // noticing (tansu 0.6 keeps a departed member's share): rejoin as a new member.
        if !consumer.context().owner.load(Ordering::SeqCst)
            && last_check.elapsed() >= Duration::from_secs(5)
        {
            last_check = Instant::now();
            let stuck =
                tokio::task::block_in_place(|| owner_stalled(&consumer, &cfg, &mut progress));
            if stuck && last_rejoin.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                warn!(
                    "Anomaly events wait and nobody consumes them; rejoining the incident group."
                );
                consumer.unsubscribe();
                consumer.subscribe(&[cfg.anomalies_topic.as_str()])?;
                last_rejoin = Some(Instant::now());
                progress = None;
            }
        }
        let Some(msg) = msg else { continue };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Incident feed read failed; continuing.");
                continue;
            }
        };
        let key = msg.key().unwrap_or_default();
        if key.starts_with(HEARTBEAT_KEY_PREFIX.as_bytes()) {
            // Only there to show the partition is consumed.
        } else if key.starts_with(COMMAND_KEY_PREFIX.as_bytes()) {
            match msg
                .payload()
                .map(serde_json::from_slice::<aiops_api::incidents::Command>)
            {
                Some(Ok(cmd)) => {
                    if let Err(e) = incidents.execute(cmd) {
                        warn!(offset = msg.offset(), error = %e.message, "A forwarded incident change was refused.");
                    }
                }
                Some(Err(e)) => {
                    warn!(offset = msg.offset(), error = %e, "Skipped an unreadable incident change.")
                }
                None => {}
            }
        } else {
            match msg.payload().map(serde_json::from_slice::<AnomalyEvent>) {
                Some(Ok(ev)) => incidents.on_anomaly(&ev),
                Some(Err(e)) => {
                    warn!(offset = msg.offset(), error = %e, "Skipped an unreadable anomaly event.")
                }
                None => {}
            }
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        let _ = tpl.add_partition_offset(
            msg.topic(),
            msg.partition(),
            rdkafka::Offset::Offset(msg.offset() + 1),
        );
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            warn!(error = %e, "Committing the incident feed offset failed; events may be applied twice (harmless).");
        }
    }
    Ok(())
}

/// Every node shows every incident: it follows the incidents topic (all partitions, from the
/// start, no group) and keeps the newest version of each incident in its book. Only the owner
/// acts on them.
pub async fn run_incident_mirror(
    cfg: KafkaConfig,
    incidents: Arc<aiops_api::incidents::IncidentService>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut c = cfg.client();
    c.set("group.id", format!("{}-incident-mirror", cfg.group_id))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..cfg.partitions {
        tpl.add_partition_offset(&cfg.incidents_topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    while !cancel.is_cancelled() {
        let msg = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        match msg {
            Some(Ok(m)) => {
                if let Some(Ok(inc)) = m
                    .payload()
                    .map(serde_json::from_slice::<aiops_models::incident::Incident>)
                {
                    incidents.adopt(vec![inc]);
                }
            }
            Some(Err(e)) => warn!(error = %e, "Incident mirror read failed; continuing."),
            None => {}
        }
    }
    Ok(())
}

/// True when anomaly events have waited unconsumed for 30 s (the group's committed offset
/// behind the end and not moving).
fn owner_stalled(
    consumer: &BaseConsumer<FeedContext>,
    cfg: &KafkaConfig,
    progress: &mut Option<(i64, Instant)>,
) -> bool {
    let timeout = Duration::from_secs(5);
    let Ok((_, hi)) = consumer.fetch_watermarks(&cfg.anomalies_topic, 0, timeout) else {
        return false;
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    let _ = tpl.add_partition(&cfg.anomalies_topic, 0);
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .ok()
        .and_then(|t| t.elements().first().map(|e| e.offset()))
        .and_then(|o| o.to_raw())
        .filter(|&o| o >= 0)
        .unwrap_or(0);
    if committed >= hi {
        *progress = None;
        return false;
    }
    match progress {
        Some((at, since)) if *at == committed => since.elapsed() >= Duration::from_secs(30),
        _ => {
            *progress = Some((committed, Instant::now()));
            false
        }
    }
}

/// Every incident on the incidents topic, newest version of each.
fn read_incidents(cfg: &KafkaConfig) -> anyhow::Result<Vec<aiops_models::incident::Incident>> {
    let mut c = cfg.client();
    c.set("group.id", format!("{}-incident-reader", cfg.group_id))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create()?;
    let timeout = Duration::from_secs(10);
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for p in 0..cfg.partitions {
        let (lo, hi) = consumer.fetch_watermarks(&cfg.incidents_topic, p, timeout)?;
        if hi > lo {
            tpl.add_partition_offset(&cfg.incidents_topic, p, rdkafka::Offset::Offset(lo))?;
            remaining.insert(p, hi);
        }
    }
    let mut latest: BTreeMap<String, aiops_models::incident::Incident> = BTreeMap::new();
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the incidents topic did not arrive in 60 s"
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if let Some(Ok(inc)) = m
            .payload()
            .map(serde_json::from_slice::<aiops_models::incident::Incident>)
        {
            match latest.get(&inc.id) {
                Some(old) if old.updated_ms >= inc.updated_ms => {}
                _ => {
                    latest.insert(inc.id.clone(), inc);
                }
            }
        }
        if remaining
            .get(&m.partition())
            .is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            remaining.remove(&m.partition());
        }
    }
    Ok(latest.into_values().collect())
}
