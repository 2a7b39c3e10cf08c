//! A value far beyond everything the series has shown — an exporter's overflow (2⁶⁴ − 1 for
//! "unknown"), a unit slip, a corrupt sample — is reported and not learnt.
//!
//! A series that has never varied (its range 0) is left alone: its first change is news, not
//! garbage. A counter's garbage reading is judged by its rate, like any value (its count of
//! events with it), and the honest reading after it is stepped from the one before the garbage
//! (see `crate::reading`). Training from the
//! archive (`train`) drops such values from a series' history by the same rule
//! ([`aiops_models::garbage`]), the range there being that of the middle 98 % of its values.
//!
//! Learnt, one such sample would widen the range seen for good (the floor of the scale is a
//! thousandth of it) and lift the robust scales and the drift's baseline by orders of
//! magnitude, which take days to decay: on 5-minute noise around 100 (±2), one sample of 10⁹
//! left a later shift of +30 for 30 samples with a raw surprise of 0. So a value more than
//! [`RANGES`](aiops_models::garbage::RANGES) ranges beyond the range seen, that alarms as
//! beyond the range (far from the prediction, rare by the range's tail), raises its alarm and
//! leaves the state as it was; the rest that follows applies as after any alarm, and the next
//! [`RUN`] − 1 samples are held out too while they stay as far out (a burst of garbage). If the
//! series has really moved there — a new regime orders of magnitude away — the samples after
//! those are learnt as usual (during the rest), so it is reported once and then followed.

use aiops_models::AlarmReason;
use aiops_models::garbage::{RUN, far_beyond};

use super::{Detector, Scored, rank_score_of};

impl Detector {
    /// Whether `value`, which alarms as beyond the range, is held out of learning: far beyond
    /// the range seen, once the series has learnt, and not resting — or within the first
    /// [`RUN`] − 1 samples of a rest.
    pub(super) fn is_glitch(&self, value: f64) -> bool {
        let cfg = self.cfg;
        cfg.spatial_alerts
            && (self.rest_left == 0 || self.rest_left + RUN > self.rest_samples() + 1)
            && self.seen >= u64::from(cfg.learning_samples)
            && far_beyond(value, self.min, self.max)
    }

    /// The outcome of a value held out of learning (`band`: the expected band's half-width,
    /// `range`: the range seen): an alarm, or — in the rest after one — a score of 0. Only the
    /// rest and the drift's quiet count change.
    pub(super) fn glitch(&mut self, value: f64, expected: f64, band: f64, range: f64) -> Scored {
        let alarm = self.rest_left == 0;
        if alarm {
            self.rest_left = self.rest_samples();
        } else {
            self.rest_left -= 1;
        }
        // (A drift reports nothing this alarm has.)
        self.rank.drift.quiet = 0;
        let ln_p = (self.rank.extremes)
            .ln_beyond(value, range * 1e-3)
            .unwrap_or(f64::NEG_INFINITY);
        Scored {
            score: if alarm { 1.0 } else { 0.0 },
            rank_score: rank_score_of(ln_p),
            p_value: ln_p.exp(),
            alarm,
            reason: alarm.then_some(AlarmReason::Range),
            counted: false,
            held_out: true,
            raw: 1.0,
            expected,
            lower: expected - band,
            upper: expected + band,
        }
    }
}
