//! The detection stage: one [`Detector`] per series, fed from sample batches, turning alerts
//! into [`AnomalyEvent`]s.
//!
//! Synchronous and single-threaded: the binary runs it on its own thread behind the archive
//! (batches arrive only once durable) and shares [`DetectState`] snapshots with the API.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use aiops_models::{
    AlarmReason, AnomalyEvent, IdHashMap, IdHasher, SampleBatch, SeriesCatalog, SeriesId,
    is_counter, service_of,
};
use serde::{Deserialize, Serialize};

use crate::multi::{MultiConfig, MultiScored, ServiceModel};
use std::sync::atomic::Ordering::Relaxed;

use crate::published::{Published, SharedScaling, TopScore};
use crate::reading::score_reading;
use crate::scaling::ScalingConfig;
use crate::warm::{WarmRequest, Warmed};
use crate::{Detector, DetectorConfig, Scored};

pub mod checkpoint;
mod config;
mod events;
#[cfg(test)]
mod handover_tests;
mod partition;
mod run;
mod series;
mod services;
#[cfg(test)]
mod tests;

pub use config::{DetectConfig, SERVICE_ANOMALY_METRIC, SensitivityOverride, ServicesConfig};
pub use events::{compact_events, load_events};
pub use partition::{Ownership, PartitionShare};
pub use run::{HistoryReaders, load_json_checkpoint, run};

/// Reads a series' samples in `from_ms..=to_ms` (the archive, in the pipeline).
pub type History = dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)> + Send;

/// Per-series state: the detector, the latest score and the open event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesState {
    /// The detector.
    pub detector: Detector,
    /// Latest score.
    pub score: f64,
    /// Latest continuous score (not checkpointed: the next sample sets it).
    #[serde(skip)]
    pub rank_score: f64,
    /// Time of the latest sample, Unix ms.
    pub last_ms: i64,
    /// The id of the open event.
    pub open_event: Option<String>,
    /// For counters: the previous raw sample, to score the per-second rate instead.
    #[serde(default)]
    pub counter_prev: Option<(i64, f64)>,
    /// True when the series is a Prometheus counter (scored as a rate).
    #[serde(default)]
    pub is_counter: bool,
    /// Its service, once looked up in the catalog.
    #[serde(skip)]
    pub service: Option<Option<Arc<str>>>,
    /// Scored cold while its history is being read (see [`crate::warm`]).
    #[serde(skip)]
    pub warming: bool,
    /// Whether it feeds a scaling target, once looked up (only members' samples go there).
    #[serde(skip)]
    pub scaling_member: Option<bool>,
    /// Which outputs write its derived series (bit i: output i), once decided.
    #[serde(skip)]
    pub output_mask: Option<u8>,
    /// Its place in its service's vector, once found ([`SLOT_UNKNOWN`], [`SLOT_NONE`] when the
    /// vector was full): a hint checked against the vector, never trusted blindly.
    #[serde(skip, default = "slot_unknown")]
    pub service_slot: u16,
    /// Its detector's parameters were matched to `sensitivity_overrides` (again after a
    /// restore, a hand-over, a warm-up or a change of parameters).
    #[serde(skip)]
    pub tuned: bool,
}

/// [`SeriesState::service_slot`] not looked up yet.
pub const SLOT_UNKNOWN: u16 = u16::MAX;
/// [`SeriesState::service_slot`]: the service's vector was full when the series came.
pub const SLOT_NONE: u16 = u16::MAX - 1;

fn slot_unknown() -> u16 {
    SLOT_UNKNOWN
}

/// Services by name, hashed with FxHash (one lookup per scored sample; SipHash's DoS resistance
/// buys nothing for names the operator's own series carry).
pub type ServiceMap = HashMap<String, ServiceState, rustc_hash::FxBuildHasher>;

/// Per-service state: which series make up the vector, their latest values, the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    /// The series of the vector, in order.
    pub members: Vec<SeriesId>,
    /// Their metric names (for events).
    pub metrics: Vec<String>,
    /// Latest (scored) value of each member and its time, Unix ms.
    #[serde(with = "crate::multi::nan_as_null::pairs")]
    pub latest: Vec<(i64, f64)>,
    /// The step the latest values belong to.
    pub step: i64,
    /// The model.
    pub model: ServiceModel,
    /// Latest score.
    pub score: f64,
    /// The id of the open event.
    pub open_event: Option<String>,
    /// Steps in a row at or above the event score.
    #[serde(default)]
    pub run: u32,
    /// No refit is asked for before this (see [`ServicesConfig::refit_min_secs`]).
    #[serde(skip)]
    pub next_fit: Option<std::time::Instant>,
}

/// Everything the stage knows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DetectState {
    /// Per series, boxed: the map's spare capacity (up to half its slots) then costs a
    /// pointer each, not a whole state (a kilobyte).
    pub series: IdHashMap<Box<SeriesState>>,
    /// Per service (multivariate).
    #[serde(default)]
    pub services: ServiceMap,
    /// Recent events, oldest first.
    pub events: Vec<AnomalyEvent>,
    /// Predictive scaling targets (shared with the API, behind a lock of their own).
    #[serde(default)]
    pub scaling: SharedScaling,
    /// Samples scored since start.
    #[serde(skip)]
    pub scored: u64,
    /// Trained detectors (`aiops train`) for series not yet seen, taken on first sight.
    #[serde(skip)]
    pub profiles: HashMap<u64, Detector>,
    /// Ids of events opened, extended or closed since the last [`DetectState::take_changed`].
    #[serde(skip)]
    changed: Vec<String>,
    /// Set by a Kafka detector worker: scaling targets' member samples are collected here
    /// (to be shared with every node through the load topic) instead of summed locally, where
    /// only this node's partitions would count.
    #[serde(skip)]
    pub load_out: Option<Vec<crate::scaling::LoadSample>>,
    /// remote_write outputs of derived series ([`crate::derived`]); at most 8.
    #[serde(skip)]
    pub outputs: Vec<crate::derived::OutputSink>,
    /// What readers see (events, top scores, counters); they never take this state's lock.
    #[serde(skip)]
    pub published: Arc<Published>,
    /// Series waiting to be warmed from history, oldest first.
    #[serde(skip)]
    warm_queue: VecDeque<WarmRequest>,
    /// Series handed to the warmer and not back yet.
    #[serde(skip)]
    warm_in_flight: usize,
    /// Service names, shared by their series.
    #[serde(skip)]
    service_names: HashSet<Arc<str>>,
    /// Refit services' models on a fitting thread ([`DetectState::take_fit_requests`]) rather
    /// than in line.
    #[serde(skip)]
    defer_fits: bool,
    /// Refits asked for and not yet handed over.
    #[serde(skip)]
    fit_queue: Vec<crate::fit::FitRequest>,
}

/// How a series first seen with history in the archive gets it.
enum Warm<'a> {
    /// Read synchronously, before its first sample is scored (tests, offline use).
    Now(&'a dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>),
    /// Queued for the background warmer (the pipeline).
    Queue,
}

impl DetectState {
    /// Scores every sample of `batch` in order, opening, extending and closing events.
    pub fn process(&mut self, cfg: &DetectConfig, batch: &SampleBatch, catalog: &SeriesCatalog) {
        let none = |_, _, _| Vec::new();
        self.process_inner(cfg, batch, catalog, Warm::Now(&none), &none);
    }

    /// As [`DetectState::process`]; a series seen for the first time with history in the
    /// archive is first warmed with `history(id, from_ms, to_ms)` (e.g. read from the archive:
    /// earlier runs, backfills), so that it does not start cold. Warming raises no events.
    pub fn process_with_history(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        self.process_inner(cfg, batch, catalog, Warm::Now(history), history);
    }

    /// As [`DetectState::process_with_history`], but a series with history is scored cold at
    /// once and queued for the background warmer ([`DetectState::take_warm_requests`],
    /// [`DetectState::apply_warmed`]): a batch never waits for history. `history` is read only
    /// when a scaling target is first seen (its members' recent load).
    pub fn process_queued(
        &mut self,
        cfg: &DetectConfig,
        batch: &SampleBatch,
        catalog: &SeriesCatalog,
        history: &dyn Fn(SeriesId, i64, i64) -> Vec<(i64, f64)>,
    ) {
        self.process_inner(cfg, batch, catalog, Warm::Queue, history);
    }

    /// Makes every detector score with `cfg` (after restoring a checkpoint, which does not
    /// carry parameters: the ones in use now apply).
    pub fn set_detector_config(&mut self, cfg: crate::DetectorConfig) {
        for st in self.series.values_mut() {
            st.detector.set_config(cfg);
            st.tuned = false;
        }
    }

    /// Up to `max` queued series for the warmer (none while a pass is in flight).
    pub fn take_warm_requests(&mut self, max: usize) -> Vec<WarmRequest> {
        if self.warm_in_flight > 0 {
            return Vec::new();
        }
        let n = max.min(self.warm_queue.len());
        let out: Vec<WarmRequest> = self.warm_queue.drain(..n).collect();
        self.warm_in_flight = out.len();
        out
    }

    /// Series waiting for, or being, warmed.
    pub fn warm_backlog(&self) -> usize {
        self.warm_queue.len() + self.warm_in_flight
    }

    /// Swaps warmed detectors in (each has seen at least what the cold one scored, because
    /// detection runs behind the archive; otherwise the cold one stays), then raises the events
    /// of the samples the cold detector had scored, as the warmed one scored them.
    pub fn apply_warmed(
        &mut self,
        cfg: &DetectConfig,
        catalog: &SeriesCatalog,
        warmed: Vec<Warmed>,
    ) {
        self.warm_in_flight = self.warm_in_flight.saturating_sub(warmed.len());
        let n = warmed.len() as u64;
        for w in warmed {
            let Some(mut st) = self.series.remove(&w.id) else {
                continue;
            };
            if !st.warming {
                self.series.insert(w.id, st);
                continue;
            }
            st.warming = false;
            if w.last_ms < st.last_ms {
                self.series.insert(w.id, st);
                continue;
            }
            st.detector = w.detector;
            st.tuned = false;
            st.last_ms = w.last_ms;
            st.counter_prev = w.counter_prev.or(st.counter_prev);
            if let Some(&(_, _, s)) = w.live.last() {
                st.score = s.score;
                st.rank_score = s.rank_score;
            }
            for (t, value, s) in w.live {
                self.after_score(cfg, catalog, &mut st, w.id, t, value, &s, false);
            }
            self.series.insert(w.id, st);
        }
        self.published.counters.warmed.fetch_add(n, Relaxed);
        self.published
            .counters
            .warm_backlog
            .store(self.warm_backlog() as u64, Relaxed);
    }

    /// Counters and, once a second (or now, with `refresh`), the top scores and the state
    /// size, for readers.
    pub(super) fn publish_stats(&self, refresh: bool) {
        let c = &self.published.counters;
        c.scored.store(self.scored, Relaxed);
        c.series.store(self.series.len() as u64, Relaxed);
        c.warm_backlog.store(self.warm_backlog() as u64, Relaxed);
        if self.published.top_due(refresh) {
            self.published
                .set_top(self.top_scores(self.published.max_scores()));
            c.state_bytes.store(self.state_bytes(), Relaxed);
        }
    }

    /// Bytes held by the per-series and per-service state, estimated from the maps' capacity.
    pub fn state_bytes(&self) -> u64 {
        let series = self.series.capacity()
            * (std::mem::size_of::<(SeriesId, Box<SeriesState>)>() + 1)
            + self.series.len() * std::mem::size_of::<SeriesState>()
            + self
                .service_names
                .iter()
                .map(|s| s.len() + 16)
                .sum::<usize>();
        let services: usize = self
            .services
            .values()
            .map(|s| {
                std::mem::size_of::<ServiceState>()
                    + s.members.capacity() * (8 + 16 + 24)
                    + s.model.heap_bytes()
            })
            .sum();
        (series + services) as u64
    }

    /// The `limit` series most unusual now: highest continuous score, then alarm score;
    /// series scoring 0 on both are left out.
    pub fn top_scores(&self, limit: usize) -> Vec<TopScore> {
        let mut v: Vec<TopScore> = self
            .series
            .iter()
            .filter(|(_, s)| s.rank_score > 0.0 || s.score > 0.0)
            .map(|(id, s)| TopScore {
                series_id: *id,
                score: s.score,
                rank_score: s.rank_score,
                alarm: s.score >= s.detector.config().alert_score,
            })
            .collect();
        let order = |a: &TopScore, b: &TopScore| {
            (b.rank_score.total_cmp(&a.rank_score)).then(b.score.total_cmp(&a.score))
        };
        if v.len() > limit && limit > 0 {
            v.select_nth_unstable_by(limit - 1, order);
        }
        v.truncate(limit);
        v.sort_by(order);
        v
    }
}
