//! Garbage far beyond the values seen is not learnt (the rule of [`aiops_models::garbage`], as
//! in the detector's `score::glitch`): one sample of 10⁹ on a load of 100 would lift the fast
//! levels, and the time-of-day and week bins it falls in, by orders of magnitude — forecasts a
//! predictive scaling target would serve for days at that time of day.

use aiops_models::garbage::{RUN, far_beyond};

use super::Forecaster;

impl Forecaster {
    /// Whether `value` at `ts_ms` is left out: [`far_beyond`] the values seen, with a sample
    /// learnt within the last [`RUN`] intervals (so at most that many in a row are left
    /// out, and a load that really moved there is learnt from the next one on).
    pub(super) fn is_garbage(&self, ts_ms: i64, value: f64) -> bool {
        self.step_ms > 0
            && far_beyond(value, self.lo, self.hi)
            && ((ts_ms - self.last_ms) as f64) < (f64::from(RUN) + 0.5) * self.step_ms as f64
    }
}
