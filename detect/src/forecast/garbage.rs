//! Garbage far beyond the values seen is not learnt (as the detector's `score::glitch`): one
//! sample of 10⁹ on a load of 100 would lift the fast levels, and the time-of-day and week bins
//! it falls in, by orders of magnitude — forecasts a predictive scaling target would serve for
//! days at that time of day.

use super::Forecaster;
use crate::score::{GLITCH_RANGES, GLITCH_RUN};

impl Forecaster {
    /// Whether `value` at `ts_ms` is left out: more than `GLITCH_RANGES` spans of the values
    /// seen beyond them, with a sample learnt within the last `GLITCH_RUN` intervals (so at
    /// most that many in a row are left out, and a load that really moved there is learnt
    /// from the next one on; a series that has never varied is left alone).
    pub(super) fn is_garbage(&self, ts_ms: i64, value: f64) -> bool {
        let span = self.hi - self.lo;
        self.step_ms > 0
            && span > 0.0
            && (value - self.hi).max(self.lo - value) > GLITCH_RANGES * span
            && ((ts_ms - self.last_ms) as f64) < (f64::from(GLITCH_RUN) + 0.5) * self.step_ms as f64
    }
}
