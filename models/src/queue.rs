//! A queue of sample batches between two threads, bounded in batches *and* in bytes.
//!
//! A bound in batches alone lets memory follow the senders' batch size: 256 queued
//! remote_write bodies of 20,000 samples hold 120 MB, of 500 samples 3 MB. The archive stage
//! hands batches to detection through this queue; when detection falls behind by more than
//! the byte bound, the archive stage waits (and behind it the writers: back-pressure, then
//! `503`s), instead of the process growing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::SampleBatch;

/// Bytes a batch holds in its columns (id, timestamp and value: 24 bytes a sample).
pub fn batch_bytes(batch: &SampleBatch) -> usize {
    batch.len() * 24
}

struct State {
    queue: VecDeque<SampleBatch>,
    bytes: usize,
    senders: usize,
    receiver: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a batch was taken (room for senders) or the receiver went away.
    taken: Condvar,
    /// Signalled when a batch was put (work for the receiver) or the last sender went away.
    put: Condvar,
    max_batches: usize,
    max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; clones share the queue.
pub struct BatchSender(Arc<Shared>);

/// The receiving side.
pub struct BatchReceiver(Arc<Shared>);

/// Why [`BatchReceiver::recv_timeout`] returned no batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing came within the time given.
    Timeout,
    /// Nothing queued and every sender is gone.
    Disconnected,
}

/// A queue holding at most `max_batches` batches and, beyond its first batch, at most
/// `max_bytes` bytes of them (a single batch larger than that still passes, alone).
pub fn batch_queue(max_batches: usize, max_bytes: usize) -> (BatchSender, BatchReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            senders: 1,
            receiver: true,
        }),
        taken: Condvar::new(),
        put: Condvar::new(),
        max_batches: max_batches.max(1),
        max_bytes,
    });
    (BatchSender(shared.clone()), BatchReceiver(shared))
}

impl BatchSender {
    /// Queues `batch`, waiting while the queue is full. Gives the batch back when the receiver
    /// is gone.
    pub fn send(&self, batch: SampleBatch) -> Result<(), SampleBatch> {
        let n = batch_bytes(&batch);
        let s = &self.0;
        let mut st = s.lock();
        while st.receiver
            && !st.queue.is_empty()
            && (st.queue.len() >= s.max_batches || st.bytes + n > s.max_bytes)
        {
            st = s.taken.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if !st.receiver {
            return Err(batch);
        }
        st.bytes += n;
        st.queue.push_back(batch);
        s.put.notify_one();
        Ok(())
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().bytes
    }
}

impl Clone for BatchSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for BatchSender {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.senders -= 1;
        if st.senders == 0 {
            self.0.put.notify_all();
        }
    }
}

impl std::fmt::Debug for BatchSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSender")
            .field("queued_bytes", &self.queued_bytes())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReceiver").finish_non_exhaustive()
    }
}

impl BatchReceiver {
    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().bytes
    }

    /// The next batch, waiting at most `wait` for one.
    pub fn recv_timeout(&self, wait: Duration) -> Result<SampleBatch, RecvError> {
        let s = &self.0;
        let deadline = Instant::now() + wait;
        let mut st = s.lock();
        loop {
            if let Some(batch) = st.queue.pop_front() {
                st.bytes -= batch_bytes(&batch);
                s.taken.notify_all();
                return Ok(batch);
            }
            if st.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            st = s
                .put
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for BatchReceiver {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.receiver = false;
        st.queue.clear();
        st.bytes = 0;
        self.0.taken.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SampleBatchBuilder, SeriesId};

    fn batch(samples: usize) -> SampleBatch {
        let mut b = SampleBatchBuilder::with_capacity(samples);
        for i in 0..samples {
            b.push(SeriesId(i as u64), i as i64, 1.0);
        }
        b.finish()
    }

    #[test]
    fn a_sender_waits_for_room_in_bytes_and_batches_then_goes_on() {
        // Room for 100 samples (2,400 bytes) or 3 batches.
        let (tx, rx) = batch_queue(3, 2400);
        tx.send(batch(60)).expect("queued");
        let sender = std::thread::spawn(move || {
            // 60 + 60 samples is over the bytes: waits until the first is taken.
            tx.send(batch(60)).expect("queued");
            // One batch over the bound on its own passes when the queue is empty.
            tx.send(batch(500)).expect("queued");
            tx
        });
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("first");
        assert_eq!(first.len(), 60);
        assert!(rx.queued_bytes() <= 2400, "{}", rx.queued_bytes());
        let second = rx.recv_timeout(Duration::from_secs(10)).expect("second");
        assert_eq!(second.len(), 60);
        let big = rx.recv_timeout(Duration::from_secs(10)).expect("big");
        assert_eq!(big.len(), 500);
        let tx = sender.join().expect("sender");
        assert_eq!(tx.queued_bytes(), 0);
        // Nothing more: a timeout, then, with every sender gone, disconnected.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)).map(|b| b.len()),
            Err(RecvError::Timeout)
        );
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).map(|b| b.len()),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn batches_queued_before_the_senders_left_are_still_received() {
        let (tx, rx) = batch_queue(8, 1 << 20);
        let tx2 = tx.clone();
        tx.send(batch(3)).expect("queued");
        tx2.send(batch(4)).expect("queued");
        drop((tx, tx2));
        assert_eq!(rx.recv_timeout(Duration::ZERO).map(|b| b.len()), Ok(3));
        assert_eq!(rx.recv_timeout(Duration::ZERO).map(|b| b.len()), Ok(4));
        assert_eq!(
            rx.recv_timeout(Duration::ZERO).map(|b| b.len()),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn a_waiting_sender_gets_its_batch_back_when_the_receiver_goes() {
        let (tx, rx) = batch_queue(1, 1 << 20);
        tx.send(batch(1)).expect("queued");
        let sender = std::thread::spawn(move || tx.send(batch(2)));
        // The sender waits (the queue holds its one batch) until the receiver is dropped.
        drop(rx);
        let back = sender.join().expect("sender").expect_err("given back");
        assert_eq!(back.len(), 2);
    }
}
