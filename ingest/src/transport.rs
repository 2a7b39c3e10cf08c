//! The transport seam between sources and the stages after them.
//!
//! Sources hand [`Envelope`]s to a [`BatchSender`]; the archive stage takes them from a
//! [`BatchReceiver`], makes them durable and fires each envelope's [`Ack`]. Sources and stages
//! see only this seam: behind it a bounded in-process channel (`memory`), or that channel to
//! the Kafka forwarder (`kafka`, [`crate::kafka`]); which one is the `[transport]` section
//! ([`crate::bus::TransportConfig`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aiops_models::SampleBatch;
use tokio::sync::{mpsc, oneshot};

use crate::IngestError;

/// Opens the in-process hop of `capacity` batches: to the archive (`memory`), or to the Kafka
/// forwarder (`kafka`, see [`crate::kafka::run_forwarder`]).
pub fn channel(capacity: usize) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    let clock = Arc::new(QueueClock {
        origin: Instant::now(),
        last_delay_ms: AtomicU64::new(0),
        last_recv_ms: AtomicU64::new(0),
    });
    (
        BatchSender {
            tx,
            clock: clock.clone(),
        },
        BatchReceiver { rx, clock },
    )
}

/// Fired by the stage that made a batch durable, with the outcome.
#[derive(Debug)]
pub struct Ack(oneshot::Sender<Result<(), IngestError>>);

impl Ack {
    /// Reports the outcome to the waiting source (which may have gone away; that is fine).
    pub fn send(self, outcome: Result<(), IngestError>) {
        let _ = self.0.send(outcome);
    }
}

/// Waits for an [`Ack`].
#[derive(Debug)]
pub struct AckWaiter(oneshot::Receiver<Result<(), IngestError>>);

impl AckWaiter {
    /// The outcome; a stage that dropped the envelope without answering counts as a failure.
    pub async fn wait(self) -> Result<(), IngestError> {
        self.0.await.unwrap_or_else(|_| {
            Err(IngestError::Pipeline(
                "the archive stage stopped before the batch was durable".into(),
            ))
        })
    }
}

/// A batch on its way, with an optional acknowledgement channel.
#[derive(Debug)]
pub struct Envelope {
    /// The samples.
    pub batch: SampleBatch,
    /// Fired once the batch is durable.
    pub ack: Option<Ack>,
}

impl Envelope {
    /// An envelope whose sender wants to know when the batch is durable.
    pub fn with_ack(batch: SampleBatch) -> (Self, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                batch,
                ack: Some(Ack(tx)),
            },
            AckWaiter(rx),
        )
    }
}

/// How long envelopes wait in the queue, for load shedding: the receiver records the wait of
/// each envelope it takes and when it took it.
#[derive(Debug)]
struct QueueClock {
    origin: Instant,
    last_delay_ms: AtomicU64,
    last_recv_ms: AtomicU64,
}

impl QueueClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// The sending half; cheap to clone, one per source task.
#[derive(Debug, Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<(Envelope, Instant)>,
    clock: Arc<QueueClock>,
}

impl BatchSender {
    /// Sends without waiting: fails with [`IngestError::QueueFull`] under back-pressure.
    pub fn try_send(&self, env: Envelope) -> Result<(), IngestError> {
        self.tx
            .try_send((env, Instant::now()))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IngestError::QueueFull {
                    capacity: self.tx.max_capacity(),
                },
                mpsc::error::TrySendError::Closed(_) => IngestError::Closed,
            })
    }

    /// Sends, waiting for room.
    pub async fn send(&self, env: Envelope) -> Result<(), IngestError> {
        self.tx
            .send((env, Instant::now()))
            .await
            .map_err(|_| IngestError::Closed)
    }

    /// Sends and waits until the batch is durable.
    pub async fn send_durable(&self, batch: SampleBatch) -> Result<(), IngestError> {
        let (env, waiter) = Envelope::with_ack(batch);
        self.send(env).await?;
        waiter.wait().await
    }

    /// Batches waiting right now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// How far behind the stage after the queue is, ms: how long the last envelope it took had
    /// waited, or — while envelopes wait and it takes none — how long since it took one.
    pub fn delay_ms(&self) -> u64 {
        if self.queued() == 0 {
            return 0;
        }
        let c = &self.clock;
        let since = c
            .now_ms()
            .saturating_sub(c.last_recv_ms.load(Ordering::Relaxed));
        c.last_delay_ms.load(Ordering::Relaxed).max(since)
    }
}

/// The receiving half, owned by one stage.
#[derive(Debug)]
pub struct BatchReceiver {
    rx: mpsc::Receiver<(Envelope, Instant)>,
    clock: Arc<QueueClock>,
}

impl BatchReceiver {
    /// The next envelope; `None` once every sender is gone and the queue is drained.
    pub async fn recv(&mut self) -> Option<Envelope> {
        let got = self.rx.recv().await;
        got.map(|e| self.took(e))
    }

    /// An envelope if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok().map(|e| self.took(e))
    }

    fn took(&self, (env, queued_at): (Envelope, Instant)) -> Envelope {
        let c = &self.clock;
        c.last_delay_ms
            .store(queued_at.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.last_recv_ms.store(c.now_ms(), Ordering::Relaxed);
        env
    }
}

/// Anomaly events on their way to the stages after detection (the incident task; on Kafka the
/// anomalies topic carries them between nodes).
/// A broadcast: every subscriber sees every event published after it subscribed; one that
/// falls more than `capacity` behind is told how many it missed.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: tokio::sync::broadcast::Sender<aiops_models::AnomalyEvent>,
}

impl EventBus {
    /// A bus keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publishes an event (new, extended or closed); without subscribers it goes nowhere.
    pub fn publish(&self, ev: &aiops_models::AnomalyEvent) {
        let _ = self.tx.send(ev.clone());
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<aiops_models::AnomalyEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn try_send_reports_full_and_ack_reaches_sender() {
        let (tx, mut rx) = channel(1);
        let (env, waiter) = Envelope::with_ack(SampleBatch::empty());
        tx.try_send(env).expect("room for one");
        let err = tx.try_send(Envelope {
            batch: SampleBatch::empty(),
            ack: None,
        });
        assert!(matches!(err, Err(IngestError::QueueFull { capacity: 1 })));
        let got = rx.recv().await.expect("one envelope");
        got.ack.expect("has ack").send(Ok(()));
        assert!(waiter.wait().await.is_ok());
    }

    #[tokio::test]
    async fn queue_delay_grows_while_nothing_is_taken_and_resets_when_drained() {
        let (tx, mut rx) = channel(256);
        assert_eq!(tx.delay_ms(), 0, "an empty queue is never late");
        tx.try_send(Envelope {
            batch: SampleBatch::empty(),
            ack: None,
        })
        .expect("room");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while tx.delay_ms() < 20 {
            assert!(Instant::now() < deadline, "delay stays {}", tx.delay_ms());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        rx.recv().await.expect("envelope");
        assert_eq!(tx.delay_ms(), 0);
    }

    #[tokio::test]
    async fn dropped_ack_is_a_failure() {
        let (env, waiter) = Envelope::with_ack(SampleBatch::empty());
        drop(env);
        assert!(waiter.wait().await.is_err());
    }

    #[tokio::test]
    async fn subscribers_receive_published_events() {
        let bus = EventBus::new(8);
        let mut rx = bus.subscribe();
        let ev = aiops_models::AnomalyEvent {
            id: "a-1".into(),
            series_id: aiops_models::SeriesId(1),
            metric: "m".into(),
            service: None,
            labels: vec![],
            start_ms: 1,
            peak_ms: 1,
            last_ms: 1,
            end_ms: None,
            score: 0.9,
            observed: 2.0,
            expected: 1.0,
            lower: 0.5,
            upper: 1.5,
            p_value: 1.0,
            reason: Some(aiops_models::AlarmReason::Surprise),
        };
        bus.publish(&ev);
        assert_eq!(rx.recv().await.expect("event"), ev);
    }
}
