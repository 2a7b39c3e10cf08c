//! The incident feed: anomaly events and commands on the anomalies topic into the one incident
//! book (its owner), mirrored to every other node from the incidents topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiops_api::incidents::{Forward, IncidentService, Publisher, Window, WindowReader};
use aiops_ingest::kafka::{KafkaConfig, produce_json};
use aiops_models::AnomalyEvent;
use aiops_models::incident::Incident;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::ClusterError;
use crate::load_feed::FeedContext;

/// Keys of [`aiops_api::incidents::Command`] messages on the anomalies topic (anomaly events
/// are keyed by their ids, which never start so).
pub const COMMAND_KEY_PREFIX: &str = "cmd:";

/// Keys of the incident feed's liveness messages on the anomalies topic.
pub const HEARTBEAT_KEY_PREFIX: &str = "hb:";

/// An incident service wired to the bus: every update is also published to the incidents
/// topic (keyed by id: the newest message is the state); changes arriving over HTTP (alerts,
/// PagerDuty webhooks, feedback) go to the incident owner through the anomalies topic, in
/// order with the anomaly events; and rankings read their window from every partition, not
/// only this node's archive.
pub fn on_bus(
    service: IncidentService,
    producer: FutureProducer,
    kcfg: &KafkaConfig,
    max_series: usize,
) -> IncidentService {
    let timeout = Duration::from_secs(kcfg.delivery_timeout_secs);
    let pending = Arc::new(Pending::<Incident>::default());
    let (updates, topic, waiting) = (
        producer.clone(),
        kcfg.incidents_topic.clone(),
        pending.clone(),
    );
    // One task sends the updates, in order: the topic's newest message of an incident is its
    // state, so a later update must never overtake an earlier one.
    tokio::spawn(async move {
        loop {
            waiting.ready.notified().await;
            for (_, inc) in waiting.take() {
                if let Err(e) = produce_json(&updates, &topic, &inc.id, &inc, timeout).await {
                    error!(incident = %inc.id, error = %e, "An incident update did not reach Kafka.");
                }
            }
        }
    });
    let publisher = Publisher(Box::new(move |inc| pending.push(&inc.id, inc.clone())));
    let topic = kcfg.anomalies_topic.clone();
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let forward = Forward(Box::new(move |cmd| {
        let (producer, topic) = (producer.clone(), topic.clone());
        let key = format!(
            "{COMMAND_KEY_PREFIX}{}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond(),
            seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        Box::pin(async move {
            produce_json(&producer, &topic, &key, &cmd, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }));
    let kcfg = kcfg.clone();
    let windows = WindowReader(Box::new(move |start, end| {
        kcfg.read_window(start, end, max_series)
            .map(|(series, samples)| Window { series, samples })
            .map_err(|e| e.to_string())
    }));
    service
        .with_publisher(publisher)
        .with_forward(forward)
        .with_window_reader(windows)
}

/// Incident updates waiting to be published, the newest of each incident (at most one entry an
/// incident: bounded by the book). Before, each update was sent by a task of its own, and a
/// later state could reach the incidents topic before an earlier one: a mirror then kept an
/// incident without the last service added to it (`tests/kafka_e2e.rs` caught it, one run in
/// two).
struct Pending<T> {
    updates: std::sync::Mutex<Vec<(String, T)>>,
    ready: tokio::sync::Notify,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            updates: Default::default(),
            ready: Default::default(),
        }
    }
}

impl<T> Pending<T> {
    /// Queues the update of incident `id`, replacing an older one still waiting.
    fn push(&self, id: &str, update: T) {
        let mut updates = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        match updates.iter_mut().find(|(k, _)| k == id) {
            Some((_, u)) => *u = update,
            None => updates.push((id.to_owned(), update)),
        }
        drop(updates);
        // (A permit is kept when the sender is busy: nothing queued is left waiting.)
        self.ready.notify_one();
    }

    /// The updates waiting, in the order their incidents were first queued.
    fn take(&self) -> Vec<(String, T)> {
        std::mem::take(&mut *self.updates.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

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
) -> Result<(), ClusterError> {
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
        .map_err(ClusterError::kafka("creating the incident feed consumer"))?;
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
) -> Result<(), ClusterError> {
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
pub(crate) fn owner_stalled(
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
pub(crate) fn read_incidents(
    cfg: &KafkaConfig,
) -> Result<Vec<aiops_models::incident::Incident>, ClusterError> {
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
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout(
                "the incidents topic did not arrive in 60 s".into(),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::Pending;

    /// The newest update of each incident waits, once, in the order the incidents came; a
    /// push while the sender is busy leaves a permit, so it is not left waiting.
    #[tokio::test]
    async fn pending_updates_keep_the_newest_of_each_incident_in_order() {
        let p = Pending::<u32>::default();
        p.push("a", 1);
        p.push("b", 1);
        p.push("a", 2);
        tokio::time::timeout(std::time::Duration::from_secs(5), p.ready.notified())
            .await
            .expect("a permit");
        assert_eq!(p.take(), vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);
        assert!(p.take().is_empty());
        p.push("a", 3);
        tokio::time::timeout(std::time::Duration::from_secs(5), p.ready.notified())
            .await
            .expect("a permit");
        assert_eq!(p.take(), vec![("a".to_owned(), 3)]);
    }
}
