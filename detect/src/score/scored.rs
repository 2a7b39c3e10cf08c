//! What the detector says of one sample: the alarm-facing score, the continuous score and its
//! tail probability, and the band it expected the value in.

use aiops_models::AlarmReason;
use serde::Serialize;

/// The outcome of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Scored {
    /// The alarm-facing score in [0, 1]: the fast calibrated surprise, held at 0 for the rest
    /// period after an alarm. Events open when it reaches the alert level.
    pub score: f64,
    /// The continuous score in [0, 1] that ranks samples by how unusual the series is now:
    /// `L / (L + 5)` with `L = −log10(p_value)` — 0.5 means a one-in-100,000 state of this
    /// series, 0.2 about one in 18. Never held at 0; 0 while learning.
    pub rank_score: f64,
    /// The tail probability behind `rank_score` (1 while learning).
    pub p_value: f64,
    /// True when this sample raises an alarm (`score` at the alert level).
    pub alarm: bool,
    /// Which of the detector's alarms it raised (`None` when `alarm` is false).
    pub reason: Option<AlarmReason>,
    /// True when the series counts few events per sample (see [`crate::count`]): its score is
    /// its count's tail, and its service's model leaves it out.
    pub counted: bool,
    /// True when the value was held out of learning as garbage (far beyond the range seen, see
    /// `score::glitch`): the detector's state is as it was before it.
    #[serde(skip)]
    pub held_out: bool,
    /// Uncalibrated surprise in [0, 1].
    pub raw: f64,
    /// The value expected.
    pub expected: f64,
    /// Lower edge of the expected band.
    pub lower: f64,
    /// Upper edge of the expected band.
    pub upper: f64,
}

impl Scored {
    /// How far `value` is from the expected value, in units of the band's half-width / 3 (a
    /// robust standard deviation): the series' own surprise, signed, with its level, trend and
    /// time-of-day pattern taken out. 0 when the band is empty.
    pub fn deviation(&self, value: f64) -> f64 {
        let unit = (self.upper - self.expected) / 3.0;
        if unit > 0.0 && value.is_finite() {
            (value - self.expected) / unit
        } else {
            0.0
        }
    }
}
