//! Each owned partition's share of the detection state: what a worker writes to the checkpoints
//! topic, restores when it gains a partition, and commits only after its outputs are confirmed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aiops_detect::DetectState;
use aiops_detect::stage::{Ownership, SeriesState, ServiceState};
use aiops_ingest::kafka::KafkaConfig;
use aiops_models::{AnomalyEvent, SeriesCatalog, SeriesId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::worker::WorkerContext;

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
pub(crate) struct Shared {
    pub(crate) cfg: KafkaConfig,
    /// Detector parameters in use (restored detectors take them).
    pub(crate) detector: aiops_detect::DetectorConfig,
    pub(crate) catalog: Arc<SeriesCatalog>,
    pub(crate) state: Arc<RwLock<DetectState>>,
    pub(crate) producer: FutureProducer,
    pub(crate) rt: tokio::runtime::Handle,
    /// Owned partitions and the next offset of each (None: nothing read yet).
    pub(crate) owned: Mutex<BTreeMap<i32, Option<i64>>>,
    /// Anomaly deliveries not yet confirmed.
    pub(crate) pending: Mutex<Vec<rdkafka::producer::DeliveryFuture>>,
    /// An output could not even be queued: nothing is committed any more (a restart or the
    /// next owner produces it again from the last commit).
    pub(crate) failed: std::sync::atomic::AtomicBool,
    /// Newest sample time read per partition (the load topic's watermarks).
    pub(crate) read_up_to: Mutex<BTreeMap<i32, i64>>,
    /// Owned partitions read to their end (nothing waiting in them).
    pub(crate) at_end: Mutex<std::collections::BTreeSet<i32>>,
}

impl Shared {
    /// The partitions this worker owns now.
    pub(crate) fn owned_partitions(&self) -> Vec<i32> {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The partition of every series in the detection state (by its service, as the
    /// forwarder split it), looked up once per checkpoint rather than once per partition.
    pub(crate) fn series_partitions(&self) -> std::collections::HashMap<SeriesId, i32> {
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

    /// Drops partition `partition`'s share of the detection state (it was handed over).
    fn release(&self, partition: i32, of: &std::collections::HashMap<SeriesId, i32>) {
        self.with_owned(partition, of, |o| {
            self.state
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_partition(o)
        });
    }

    /// Runs `f` with what belongs to `partition` (`of`: [`Shared::series_partitions`]).
    pub(crate) fn with_owned<T>(
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
    pub(crate) fn drain_outputs(&self) -> Result<(), String> {
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
    pub(crate) fn checkpoint(
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
                    self.release(p, &of);
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
                self.release(p, &of);
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
    pub(crate) fn restore(&self, partitions: &[i32]) {
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
