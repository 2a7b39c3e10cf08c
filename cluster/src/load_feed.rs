//! The load feed: every node replays the load topic (scaling targets' member samples from all
//! workers), merges the partitions back in time order and serves the whole load.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aiops_detect::DetectState;
use aiops_ingest::kafka::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ClusterError;

/// Every node's view of the scaling targets: the member samples of every partition, read from
/// the load topic (all partitions, no group), summed into this node's scaling state. A node
/// that starts replays the topic from `warm_start_secs` ago, which warms its forecasters.
pub async fn run_scaling_feed(
    cfg: KafkaConfig,
    scaling: aiops_detect::scaling::ScalingConfig,
    state: Arc<RwLock<DetectState>>,
    cancel: CancellationToken,
) -> Result<(), ClusterError> {
    let mut c = cfg.client();
    c.set("group.id", format!("{}-load-reader", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c
        .create()
        .map_err(ClusterError::kafka("creating the load feed consumer"))?;
    let from = jiff::Timestamp::now().as_millisecond()
        - (scaling.warm_start_secs.min(cfg.load_retention_secs) as i64) * 1000;
    let mut query = rdkafka::TopicPartitionList::new();
    for p in 0..cfg.partitions {
        query.add_partition_offset(&cfg.load_topic, p, rdkafka::Offset::Offset(from))?;
    }
    let start =
        tokio::task::block_in_place(|| consumer.offsets_for_times(query, Duration::from_secs(30)))
            .map_err(ClusterError::kafka(format!(
                "finding where to replay {} from",
                cfg.load_topic
            )))?;
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
pub(crate) struct FeedContext {
    pub(crate) owner: std::sync::atomic::AtomicBool,
    pub(crate) rebuild: std::sync::atomic::AtomicBool,
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
