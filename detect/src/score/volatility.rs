//! How much a series moves: a gauge that stops moving, or one that starts to flap.
//!
//! The other alarms look at where the value is. A series can go wrong without leaving its
//! level or its range: an exporter that hangs and repeats its last value, a sensor that sticks,
//! a control loop that starts to oscillate around the same mean, a flat line that turns into a
//! comb. Each step's size, `|value − previous|`, says how much the series moves; its log (plus
//! one robust scale of the series, so that steps of 0 — a frozen value, an integer gauge that
//! holds — do not make a tail of their own) is watched like the level is by [`Drift`]: the
//! mean over the last `drift_window` samples against a baseline over `drift_baseline`, their
//! gap rated by its own history on the series with a Student t, both ways. A step is a
//! difference, so the level and the time of day drop out; a level shift is one large step,
//! already reported by the other alarms (and a drift alarms only once its baseline holds no
//! alarm of the series).
//!
//! A burst — a spell of large moves among calm ones, as a travel time or a latency that starts
//! to jump about — moves the mean log step less than it looks: a few large steps in a window
//! of small ones, on a series whose history holds such spells, stay within how far the mean
//! usually wanders. So the share of large steps (larger than [`BURST_STEP`] robust scales) is
//! watched too, the same way, upward only: it counts each large step once however large, so
//! one spike (two large steps) moves it little and a spell of many moves it much. Each of the
//! two has half the step sizes' share of `sensitivity`.

use aiops_models::AlarmReason;
use serde::{Deserialize, Serialize};

use super::drift::Drift;
use super::{DetectorConfig, count};

/// A large step, in robust scales of the series (about the mean absolute step of noise): on
/// Gaussian noise about one step in four or five is larger.
pub(crate) const BURST_STEP: f64 = 1.5;

/// The previous value and the drift of the log step size. Kept in [`RankState`]
/// (`volatility`, absent from older JSON, which then learns it afresh; checkpoint files have a
/// frame kind of their own).
///
/// [`RankState`]: super::RankState
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Volatility {
    /// The previous value (`None` before the first).
    last: Option<f64>,
    /// The log step size's recent mean against its slow baseline.
    pub(crate) drift: Drift,
}

impl Volatility {
    /// Learns `value` (`unit`: the series' robust scale, positive) and says whether the recent
    /// step sizes are further from their baseline than `alarm_p` allows (either way; see
    /// [`Drift::update`]: [`AlarmReason::Steps`]), or else the share of large steps (learnt in
    /// `bursts`, kept beside this for older checkpoints' sake) further above its baseline than
    /// `bursts_p` allows (0: never; it learns all the same: [`AlarmReason::Burst`]).
    #[inline]
    pub(crate) fn update(
        &mut self,
        bursts: &mut Drift,
        value: f64,
        unit: f64,
        cfg: &DetectorConfig,
        [alarm_p, bursts_p]: [f64; 2],
    ) -> Option<AlarmReason> {
        let prev = self.last.replace(value)?;
        let step = (value - prev).abs();
        let moved = (self.drift.update((step + unit).ln(), cfg, alarm_p))
            .is_some_and(|ln_p| ln_p <= alarm_p.ln());
        let large = f64::from(u8::from(step > BURST_STEP * unit));
        let burst = (bursts.update(large, cfg, bursts_p)).is_some_and(|ln_p| {
            bursts_p > 0.0
                && ln_p <= bursts_p.ln()
                && (bursts.rising(cfg.drift_window)).is_some_and(|(recent, baseline)| {
                    // A count of large steps: as rare by the Poisson tail of the baseline's
                    // rate too (the gap's Student t understates how often rare steps cluster).
                    let window = f64::from(cfg.drift_window);
                    count::ln_tail(recent * window, baseline * window) <= bursts_p.ln()
                })
        });
        match (moved, burst) {
            (true, _) => Some(AlarmReason::Steps),
            (false, true) => Some(AlarmReason::Burst),
            (false, false) => None,
        }
    }
}
