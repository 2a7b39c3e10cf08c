//! Warming detectors from history, in the background and at a bounded rate.
//!
//! A series first seen by detection either is new to the archive (it arrived in the batch that
//! announced it: there is no history, it starts cold at once — a burst of new series costs
//! nothing here) or has history (a restart without its checkpoint, a backfill). The latter is
//! scored cold at once and queued; a warmer thread reads the histories of many queued series
//! in one pass over the archive (never one rescan per series), replays them through fresh
//! detectors and hands them back. The detection thread swaps a warmed detector in when it has
//! seen at least as much as the cold one (it always has: detection runs behind the archive, so
//! whatever it scored was already readable). The samples detection had scored cold are scored
//! again by the warmed detector, and their anomaly events raised then: late, but with their
//! own times.
//!
//! Work is bounded: at most `warm_series_per_sec` series per second, `warm_batch` per pass;
//! the backlog is `aiops_detect_warm_backlog`.

use std::time::{Duration, Instant};

use aiops_models::{IdHashMap, SeriesId};

use crate::reading::score_reading;
use crate::{Detector, DetectorConfig};

/// A series to warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmRequest {
    /// The series.
    pub id: SeriesId,
    /// Read its history from here (Unix ms) on.
    pub from_ms: i64,
    /// Detection has scored it (cold) from here on: samples from this time are scored again
    /// by the warmed detector and their events raised (late, but with their own times).
    pub live_from_ms: i64,
    /// Scored as a per-second rate.
    pub is_counter: bool,
}

/// A detector warmed from history.
#[derive(Debug, Clone)]
pub struct Warmed {
    /// The series.
    pub id: SeriesId,
    /// The detector after the history.
    pub detector: Detector,
    /// Time of the last sample replayed, Unix ms (`i64::MIN` when none was found).
    pub last_ms: i64,
    /// For counters: the last raw sample.
    pub counter_prev: Option<(i64, f64)>,
    /// Scores of the samples from `live_from_ms` on (time, value scored, score), at most
    /// [`MAX_LIVE`], for the events the cold detector could not raise.
    pub live: Vec<(i64, f64, crate::Scored)>,
}

/// Most re-scored live samples kept per warmed series.
pub const MAX_LIVE: usize = 1000;

/// Reads the histories of many series in one pass: calls `visit(id, ts_ms, value)` for the
/// samples of the `(id, from_ms)` pairs from their `from_ms` on, each series' samples in time
/// order (late samples may come after newer ones; they are skipped).
pub type HistoryScan = dyn Fn(&[(SeriesId, i64)], &mut dyn FnMut(SeriesId, i64, f64)) + Send;

/// Warms `reqs` with one scan of their history.
pub fn warm_batch(
    cfg: &DetectorConfig,
    reqs: &[WarmRequest],
    scan: impl Fn(&[(SeriesId, i64)], &mut dyn FnMut(SeriesId, i64, f64)),
) -> Vec<Warmed> {
    let mut states: IdHashMap<(WarmRequest, Warmed)> = reqs
        .iter()
        .map(|r| {
            (
                r.id,
                (
                    *r,
                    Warmed {
                        id: r.id,
                        detector: Detector::new(*cfg),
                        last_ms: i64::MIN,
                        counter_prev: None,
                        live: Vec::new(),
                    },
                ),
            )
        })
        .collect();
    let wanted: Vec<(SeriesId, i64)> = reqs.iter().map(|r| (r.id, r.from_ms)).collect();
    scan(&wanted, &mut |id, t, v| {
        let Some((req, w)) = states.get_mut(&id) else {
            return;
        };
        if t <= w.last_ms || !v.is_finite() {
            return;
        }
        let last_ms = std::mem::replace(&mut w.last_ms, t);
        let counter = req.is_counter.then_some(&mut w.counter_prev);
        let Some((value, s)) = score_reading(&mut w.detector, counter, last_ms, (t, v)) else {
            return;
        };
        if t >= req.live_from_ms && w.live.len() < MAX_LIVE {
            w.live.push((t, value, s));
        }
    });
    states.into_values().map(|(_, w)| w).collect()
}

/// Feeds one historical sample to a detector: skipped when not after `last_ms`, counters as
/// per-second rates (a counter's first sample only sets `counter_prev`). Returns the value
/// scored and its score.
pub(crate) fn learn(
    detector: &mut Detector,
    last_ms: &mut i64,
    counter_prev: &mut Option<(i64, f64)>,
    is_counter: bool,
    t: i64,
    v: f64,
) -> Option<(f64, crate::Scored)> {
    if t <= *last_ms {
        return None;
    }
    let last_ms = std::mem::replace(last_ms, t);
    score_reading(
        detector,
        is_counter.then_some(counter_prev),
        last_ms,
        (t, v),
    )
}

/// A token bucket: at most `per_sec` series a second, bursts up to one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `per_sec` series a second.
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec.max(1)),
            tokens: f64::from(per_sec.max(1)),
            at: Instant::now(),
        }
    }

    /// How long to wait before `n` more may go (and takes them).
    pub fn take(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_sec)
            .min(self.per_sec);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scan_warms_every_requested_series() {
        let cfg = DetectorConfig {
            learning_samples: 50,
            ..DetectorConfig::default()
        };
        let scans = std::sync::atomic::AtomicUsize::new(0);
        let scan = |wanted: &[(SeriesId, i64)], visit: &mut dyn FnMut(SeriesId, i64, f64)| {
            scans.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for k in 0..200i64 {
                for &(id, from) in wanted {
                    let t = k * 60_000;
                    if t >= from {
                        visit(id, t, 10.0 + (k % 5) as f64 * 0.1 + id.0 as f64);
                    }
                }
                // A series nobody asked for is ignored.
                visit(SeriesId(99), k * 60_000, 1.0);
            }
        };
        let reqs: Vec<WarmRequest> = (1..=3)
            .map(|i| WarmRequest {
                id: SeriesId(i),
                from_ms: if i == 3 { 100 * 60_000 } else { 0 },
                live_from_ms: 190 * 60_000,
                is_counter: false,
            })
            .collect();
        let mut out = warm_batch(&cfg, &reqs, scan);
        out.sort_by_key(|w| w.id);
        assert_eq!(scans.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|w| w.last_ms == 199 * 60_000));
        assert!(out.iter().all(|w| w.live.len() == 10));
        let mut cold = Detector::new(cfg);
        assert!(
            cold.update(200 * 60_000, 90.0).score
                < out[0].detector.clone().update(200 * 60_000, 90.0).score
        );
    }

    #[test]
    fn the_rate_limit_spreads_work_over_time() {
        let mut r = RateLimit::new(100);
        assert_eq!(r.take(100), Duration::ZERO);
        let wait = r.take(50);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
