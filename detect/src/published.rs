//! What detection publishes for readers (the API, `/metrics`), so that a reader never waits for
//! scoring: events are mirrored as they change, the highest scores are swapped in once a second,
//! counters are atomics, and scaling targets sit behind a lock of their own that scoring holds
//! only to add a batch's member samples. None of these locks is held across I/O or a warm-up.
//!
//! The detection side (the stage thread, or a Kafka worker) owns the [`DetectState`] and its
//! lock; the API holds an `Arc<Published>` and never touches that lock.
//!
//! [`DetectState`]: crate::DetectState

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use aiops_models::{AlarmReason, AnomalyEvent, SeriesId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scaling::ScalingState;

/// The scaling targets' state, shared between scoring (which adds member samples) and the API
/// (which reads served values). Serialised as the plain [`ScalingState`] in checkpoints.
#[derive(Debug, Clone, Default)]
pub struct SharedScaling(Arc<Mutex<ScalingState>>);

impl SharedScaling {
    /// Locks it; hold the guard briefly and never across I/O.
    pub fn lock(&self) -> MutexGuard<'_, ScalingState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the state (a restored checkpoint) keeping the handle readers hold.
    pub fn replace(&self, st: ScalingState) {
        *self.lock() = st;
    }
}

impl Serialize for SharedScaling {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.lock().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedScaling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(Arc::new(Mutex::new(ScalingState::deserialize(d)?))))
    }
}

/// Events by id, in the order they opened, at most `max` of them.
#[derive(Debug, Default)]
struct Mirror {
    by_id: HashMap<String, AnomalyEvent>,
    order: VecDeque<String>,
}

/// Counters of the detection side, for `/metrics`.
#[derive(Debug, Default)]
pub struct DetectCounters {
    /// Samples that reached detection since start (scored, or skipped: duplicates, a
    /// counter's first sample).
    pub received: AtomicU64,
    /// Samples scored since start.
    pub scored: AtomicU64,
    /// Series with a detector.
    pub series: AtomicU64,
    /// Bytes of detector state (series and services), estimated.
    pub state_bytes: AtomicU64,
    /// Series waiting to be warmed from their history.
    pub warm_backlog: AtomicU64,
    /// Bytes of sample batches waiting for detection (see `detect.max_queue_bytes`).
    pub queue_bytes: AtomicU64,
    /// Series warmed from history since start.
    pub warmed: AtomicU64,
    /// Series that started cold because the warm queue was full.
    pub warm_skipped: AtomicU64,
    /// Series first seen with no history at all (new to the archive): started cold at once.
    pub fresh: AtomicU64,
    /// Alarms raised since start, by reason (in [`AlarmReason::ALL`]'s order).
    pub alarms: [AtomicU64; AlarmReason::ALL.len()],
}

impl DetectCounters {
    /// Counts an alarm raised for `reason`.
    pub fn alarm(&self, reason: AlarmReason) {
        self.alarms[reason as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A series among the most unusual right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopScore {
    /// The series.
    pub series_id: SeriesId,
    /// Its latest alarm-facing score (held at 0 while it rests after an alarm).
    pub score: f64,
    /// Its latest continuous score: how unusual its state is now (never held at 0).
    pub rank_score: f64,
    /// Whether its latest sample raised an alarm (`score` at its alert level).
    pub alarm: bool,
}

impl TopScore {
    /// The tail probability behind `rank_score`.
    pub fn p_value(&self) -> f64 {
        crate::p_value_of_rank(self.rank_score)
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Published {
    events: RwLock<Mirror>,
    top: RwLock<Arc<Vec<TopScore>>>,
    top_refreshed: Mutex<Option<Instant>>,
    top_pending: std::sync::atomic::AtomicBool,
    max_events: AtomicUsize,
    max_scores: AtomicUsize,
    /// Counters.
    pub counters: DetectCounters,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            events: RwLock::default(),
            top: RwLock::default(),
            top_refreshed: Mutex::new(None),
            top_pending: Default::default(),
            max_events: AtomicUsize::new(10_000),
            max_scores: AtomicUsize::new(1_000),
            counters: DetectCounters::default(),
        }
    }
}

impl Published {
    /// Bounds: events kept for readers, series in the top-scores list.
    pub fn set_limits(&self, max_events: usize, max_scores: usize) {
        self.max_events.store(max_events.max(1), Ordering::Relaxed);
        self.max_scores.store(max_scores, Ordering::Relaxed);
    }

    /// How many series the top-scores list holds.
    pub fn max_scores(&self) -> usize {
        self.max_scores.load(Ordering::Relaxed)
    }

    /// Replaces every event (at start, from the event log or a checkpoint).
    pub fn reset_events(&self, events: &[AnomalyEvent]) {
        let mut m = Mirror::default();
        for e in events {
            m.order.push_back(e.id.clone());
            m.by_id.insert(e.id.clone(), e.clone());
        }
        self.trim(&mut m);
        *self.events.write().unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// Inserts or updates events that changed.
    pub fn upsert_events(&self, changed: &[AnomalyEvent]) {
        if changed.is_empty() {
            return;
        }
        let mut m = self.events.write().unwrap_or_else(|p| p.into_inner());
        for e in changed {
            if m.by_id.insert(e.id.clone(), e.clone()).is_none() {
                m.order.push_back(e.id.clone());
            }
        }
        self.trim(&mut m);
    }

    fn trim(&self, m: &mut Mirror) {
        let max = self.max_events.load(Ordering::Relaxed);
        while m.order.len() > max {
            if let Some(id) = m.order.pop_front() {
                m.by_id.remove(&id);
            }
        }
    }

    /// Events overlapping `since..=until` with at least `min_score`, for `service` if given
    /// (the service's `service`, `app`, `cloud_role_name` or `job` label).
    pub fn query(
        &self,
        since: i64,
        until: i64,
        service: Option<&str>,
        min_score: f64,
    ) -> Vec<AnomalyEvent> {
        let m = self.events.read().unwrap_or_else(|p| p.into_inner());
        m.order
            .iter()
            .filter_map(|id| m.by_id.get(id))
            .filter(|e| e.start_ms <= until && e.end_ms.unwrap_or(i64::MAX) >= since)
            .filter(|e| e.score >= min_score)
            .filter(|e| service.is_none_or(|s| e.service.as_deref() == Some(s)))
            .cloned()
            .collect()
    }

    /// The series most unusual right now, by continuous score, then alarm score (refreshed
    /// about once a second).
    pub fn top_scores(&self) -> Arc<Vec<TopScore>> {
        self.top.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when the top scores are due for a refresh: once a second, or with `force` (events
    /// changed) at most every 200 ms, so an anomaly storm does not rescan every series per batch.
    pub(crate) fn top_due(&self, force: bool) -> bool {
        let mut last = self.top_refreshed.lock().unwrap_or_else(|p| p.into_inner());
        let pending = self.top_pending.swap(false, Ordering::Relaxed) || force;
        let wait_ms = if pending { 200 } else { 1000 };
        if last.is_some_and(|t| t.elapsed().as_millis() < wait_ms) {
            self.top_pending.store(pending, Ordering::Relaxed);
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// True when events changed since the top scores were last refreshed (the detection loop
    /// then comes back within 200 ms to refresh them, even without new samples).
    pub fn top_pending(&self) -> bool {
        self.top_pending.load(Ordering::Relaxed)
    }

    /// Swaps in a new top-scores list.
    pub(crate) fn set_top(&self, top: Vec<TopScore>) {
        *self.top.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(top);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, start: i64, end: Option<i64>) -> AnomalyEvent {
        AnomalyEvent {
            id: id.into(),
            series_id: SeriesId(1),
            metric: "m".into(),
            service: Some("a".into()),
            labels: vec![],
            start_ms: start,
            peak_ms: start,
            last_ms: start,
            end_ms: end,
            score: 0.9,
            observed: 1.0,
            expected: 0.0,
            lower: 0.0,
            upper: 0.5,
            p_value: 1.0,
            reason: None,
        }
    }

    #[test]
    fn mirrors_changes_and_keeps_the_newest() {
        let p = Published::default();
        p.set_limits(2, 10);
        p.reset_events(&[event("a", 1, None)]);
        p.upsert_events(&[event("a", 1, Some(5)), event("b", 10, None)]);
        assert_eq!(p.query(0, 100, None, 0.0).len(), 2);
        let open = p.query(0, 100, None, 0.0);
        assert_eq!(open.iter().filter(|e| e.end_ms.is_none()).count(), 1);
        p.upsert_events(&[event("c", 20, None)]);
        let ids: Vec<String> = p
            .query(0, 100, None, 0.0)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(p.query(0, 100, Some("other"), 0.0).is_empty());
    }
}
