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

use serde::{Deserialize, Serialize};

use super::DetectorConfig;
use super::drift::Drift;

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
    /// Learns `value` (`unit`: the series' robust scale, positive) and returns the natural
    /// log of the two-sided tail probability of how far the recent step sizes are from their
    /// baseline, when that may be below `alarm_p` (see [`Drift::update`]).
    #[inline]
    pub(crate) fn update(
        &mut self,
        value: f64,
        unit: f64,
        cfg: &DetectorConfig,
        alarm_p: f64,
    ) -> Option<f64> {
        let prev = self.last.replace(value)?;
        self.drift
            .update(((value - prev).abs() + unit).ln(), cfg, alarm_p)
    }
}
