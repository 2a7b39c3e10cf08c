//! The load feed of a Kafka deployment: scaling targets' member samples shared through the load
//! topic, put back in time order across partitions before they are summed.

use std::collections::HashMap;

use aiops_models::SeriesId;
use serde::{Deserialize, Serialize};

/// One sample of a scaling target's member series (a rate for counters), as the detector
/// workers of a Kafka deployment share them: every node sums the members of every partition,
/// so each serves the whole load, not its partitions' share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    /// The target's name.
    pub target: String,
    /// The member series.
    pub series: SeriesId,
    /// Sample time, Unix ms.
    pub ts_ms: i64,
    /// The value (per-second rate for counters).
    pub value: f64,
}

/// What a detector worker writes to the load topic for one samples partition: the member
/// samples it just scored, and how far (in sample time) it has read the partition. Workers
/// also send it without samples now and then, so a partition without members does not hold
/// the others up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadMessage {
    /// The newest sample time the worker has read from the partition.
    pub watermark_ms: i64,
    /// Member samples.
    pub samples: Vec<LoadSample>,
}

/// Puts the member samples of several partitions back in time order before they are summed.
///
/// Partitions arrive at their own pace (a consumer reads a chunk of one partition's backlog,
/// then of the next; a dead worker's partitions pause until another worker takes them over),
/// and a step closes when a later sample arrives: summed as they come, a step would count only
/// the partitions that happened to be ahead. So samples wait until every partition has passed
/// their time (its watermark). A partition holds the others up while it has messages left to
/// deliver, and — read to its end but behind, or with nothing yet — for `hold_ms` after it fell
/// behind (or the merger started): long enough for a hand-over or a slow start; after that it is
/// taken as gone quiet (or as carrying no members).
#[derive(Debug)]
pub struct LoadMerger {
    partitions: HashMap<i32, Lane>,
    hold_ms: i64,
    /// Samples waiting, by time.
    waiting: std::collections::BTreeMap<i64, Vec<LoadSample>>,
}

/// What the merger knows of one partition.
#[derive(Debug, Clone, Copy)]
struct Lane {
    /// Newest sample time seen (None: nothing yet).
    watermark: Option<i64>,
    /// Read to its end.
    at_end: bool,
    /// Since when (wall clock, ms) others are ahead of it; None while it is not behind.
    behind_since: Option<i64>,
}

impl LoadMerger {
    /// A merger over `partitions` (each holds the others up until its first samples or its
    /// end) that waits at most `hold_ms` for a partition that went quiet behind the others.
    pub fn new(partitions: impl IntoIterator<Item = i32>, hold_ms: i64, now_ms: i64) -> Self {
        let lane = Lane {
            watermark: None,
            at_end: false,
            behind_since: Some(now_ms),
        };
        Self {
            partitions: partitions.into_iter().map(|p| (p, lane)).collect(),
            hold_ms,
            waiting: Default::default(),
        }
    }

    fn lane(&mut self, partition: i32, now_ms: i64) -> &mut Lane {
        self.partitions.entry(partition).or_insert(Lane {
            watermark: None,
            at_end: false,
            behind_since: Some(now_ms),
        })
    }

    /// Takes one partition's message; returns the samples now safe to sum, oldest first.
    pub fn push(&mut self, partition: i32, msg: LoadMessage, now_ms: i64) -> Vec<LoadSample> {
        let samples = msg.samples;
        let newest = samples
            .iter()
            .map(|s| s.ts_ms)
            .chain([msg.watermark_ms])
            .max();
        let lane = self.lane(partition, now_ms);
        lane.at_end = false;
        if let Some(n) = newest {
            lane.watermark = Some(lane.watermark.map_or(n, |w| w.max(n)));
        }
        for s in samples {
            self.waiting.entry(s.ts_ms).or_default().push(s);
        }
        self.release(now_ms)
    }

    /// `partition` is read to its end.
    pub fn at_end(&mut self, partition: i32, now_ms: i64) -> Vec<LoadSample> {
        self.lane(partition, now_ms).at_end = true;
        self.release(now_ms)
    }

    /// What may be summed now (a quiet partition's hold may have run out).
    pub fn release(&mut self, now_ms: i64) -> Vec<LoadSample> {
        let newest = self
            .partitions
            .values()
            .filter_map(|l| l.watermark)
            .max()
            .unwrap_or(i64::MIN);
        let mut until = i64::MAX;
        for l in self.partitions.values_mut() {
            if l.watermark.is_none_or(|w| w < newest) {
                l.behind_since.get_or_insert(now_ms);
            } else {
                l.behind_since = None;
            }
            // Read to its end but behind (or nothing yet: at start, a partition's first
            // samples may still be on their way): waited for, for a while.
            let holds = !l.at_end
                || l.behind_since
                    .is_some_and(|since| now_ms - since < self.hold_ms);
            if holds {
                until = until.min(l.watermark.unwrap_or(i64::MIN));
            }
        }
        if until == i64::MIN {
            return Vec::new();
        }
        let later = match until.checked_add(1) {
            Some(after) => self.waiting.split_off(&after),
            None => Default::default(),
        };
        std::mem::replace(&mut self.waiting, later)
            .into_values()
            .flatten()
            .collect()
    }

    /// Samples waiting for slower partitions.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }
}
