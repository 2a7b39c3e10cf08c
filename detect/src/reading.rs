//! One raw reading of a series through its detector — a gauge's value as it is, a counter's
//! step from its previous reading (the per-second rate, and the events counted when both
//! readings are whole, see [`aiops_models::counter_step`]) — the same way wherever readings are
//! scored: the detection stage, the warmer, the replay of `aiops eval backtest` and the
//! console's charts.
//!
//! A counter's garbage reading (an exporter's 2⁶⁴ − 1, a corrupt sample) is held out by the
//! detector like any value far beyond the range seen (see `score::glitch`), and it is not where
//! the counter's next step starts: the next reading is stepped from the one before the garbage,
//! so it scores the counter's true rate over both intervals. Stepped from the garbage, it read
//! as a reset whose rate is the counter's whole total over one interval: far beyond its rates
//! on an old counter (held out too, its sample lost), a rate that was learnt on a young one.
//!
//! Only a reading that went up is held back (a reading below the one before is the honest one
//! after garbage, read as a reset), and only once: when the step from a held-back reading is
//! held out as well, the held-back reading is the suspect one — a spurious low reading read as
//! a reset (5,000 → 0 → 5,010 → 5,020 steps from 0 twice) — and the counter moves on from the
//! new one. Garbage read twice in a row: both readings are stepped from the one before them,
//! and the honest reading after them reads as a reset (held out too when that is far out).

use aiops_models::{counter_step, garbage};

use crate::{Detector, Scored};

/// Scores the reading `(t, v)` of a series whose previous reading came at `last_ms`: a gauge
/// (`counter` is `None`) by its value, a counter by its step from `counter`'s previous reading,
/// which the reading then replaces — unless the detector held the step out as garbage, the
/// reading went up, and the previous reading was not held back already (see the module). Returns the value scored and
/// its score (`None`: a counter's first reading, nothing to step from).
pub(crate) fn score_reading(
    detector: &mut Detector,
    counter: Option<&mut Option<(i64, f64)>>,
    last_ms: i64,
    (t, v): (i64, f64),
) -> Option<(f64, Scored)> {
    let Some(prev) = counter else {
        return Some((v, detector.update_counted(t, v, None)));
    };
    let before = prev.replace((t, v));
    let (value, count) = before.and_then(|p| counter_step(p, (t, v)))?;
    let s = detector.update_counted(t, value, count);
    if let Some((at, b)) = before
        && garbage::holds_back(b, v, s.held_out, at != last_ms)
    {
        *prev = before;
    }
    Some((value, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DetectorConfig;

    const STEP: i64 = 15_000;

    /// A request counter from `start`, read every 15 s for `n` readings, counting 20 ± 3 a
    /// reading, through [`score_reading`]: its detector, previous reading, last time and total.
    fn counter(n: i64, start: f64) -> (Detector, Option<(i64, f64)>, i64, f64) {
        let mut d = Detector::new(DetectorConfig::default());
        let (mut prev, mut last, mut total) = (None, i64::MIN, start);
        for i in 0..n {
            total += 20.0 + ((i * 5) % 7 - 3) as f64;
            let t = i * STEP;
            score_reading(&mut d, Some(&mut prev), last, (t, total));
            last = t;
        }
        (d, prev, last, total)
    }

    #[test]
    fn the_reading_after_a_counters_garbage_steps_from_the_one_before_it() {
        // Young (its total, a few thousand, over one interval is within 10⁴ spans of its
        // rates: a reset from the garbage was learnt as a rate) and old (10⁷ counted).
        for (start, garbage) in [(0.0, 1e9), (0.0, 2f64.powi(64) - 1.0), (1e7, 1e9)] {
            let (mut d, mut prev, last, total) = counter(400, start);
            let t = last + STEP;
            let (_, s) = score_reading(&mut d, Some(&mut prev), last, (t, garbage)).expect("step");
            assert!(s.held_out && s.alarm, "{start} {garbage}: {s:?}");
            let honest = total + 40.0;
            let (rate, s) =
                score_reading(&mut d, Some(&mut prev), t, (t + STEP, honest)).expect("step");
            // Two intervals' 40 events over 30 s: the counter's own rate, learnt.
            assert!(
                (rate - 40.0 / 30.0).abs() < 1e-9,
                "{start} {garbage}: {rate}"
            );
            assert!(!s.held_out, "{start} {garbage}: {s:?}");
            assert_eq!(prev, Some((t + STEP, honest)));
        }
    }

    #[test]
    fn a_spurious_low_reading_is_stepped_over_and_the_counter_moves_on() {
        let (mut d, mut prev, last, total) = counter(400, 1e7);
        // 0 reads as a reset that counted nothing; the next honest reading steps from 0 (its
        // whole total, held out), then again from 0 (held out), then from that reading.
        let mut t = last;
        let mut held = Vec::new();
        for v in [0.0, total + 20.0, total + 40.0, total + 60.0, total + 80.0] {
            let last = t;
            t += STEP;
            let (rate, s) = score_reading(&mut d, Some(&mut prev), last, (t, v)).expect("step");
            held.push(s.held_out);
            if !s.held_out {
                assert!(rate < 2.0, "{v}: {rate}");
            }
        }
        assert_eq!(held, [false, true, true, false, false]);
        assert_eq!(prev, Some((t, total + 80.0)));
    }

    #[test]
    fn a_gauge_is_scored_as_it_is() {
        let mut d = Detector::new(DetectorConfig::default());
        let (v, s) = score_reading(&mut d, None, i64::MIN, (0, 5.0)).expect("scored");
        assert_eq!(v, 5.0);
        assert!(!s.held_out);
        let mut prev = None;
        assert!(score_reading(&mut d, Some(&mut prev), i64::MIN, (0, 5.0)).is_none());
        assert_eq!(prev, Some((0, 5.0)));
    }
}
