//! How the time-of-day profile and the weekly adjustment learn from a sample.

use super::{
    BIN_MS, Detector, PROFILE_RATE, PROFILE_VISIT_SAMPLES, WEEK_BINS, WEEK_MS, WEEK_UNIT,
    WEEK_UNSEEN,
};

impl Detector {
    /// The share of the way the time-of-day bin `bin` moves toward this sample: the profile
    /// learns by the day, not by the sample (see `PROFILE_VISIT_SAMPLES`).
    pub(super) fn profile_rate(&self, ts_ms: i64, bin: usize, entered: bool) -> f64 {
        let mut rate = PROFILE_RATE;
        let interval = f64::from(self.rank.interval_ms);
        if interval > 0.0 {
            let per_visit = BIN_MS as f64 / interval;
            if per_visit > PROFILE_VISIT_SAMPLES {
                rate = 1.0 - (1.0 - PROFILE_RATE).powf(PROFILE_VISIT_SAMPLES / per_visit);
            }
            if self.day_n[bin] == 1 && !entered {
                // The bin's first visit: its value is the mean of the visit's samples so far,
                // each step clipped as always (the first alone may be far off, and later
                // visits move it only so far).
                let start = (ts_ms - ts_ms.rem_euclid(BIN_MS)).max(self.first_ms);
                rate = rate.max(1.0 / (((ts_ms - start) as f64 / interval).round() + 1.0));
            }
        }
        rate
    }

    /// Learns the weekly adjustment of the week's bin `wbin` (now `week_adj`) from the log
    /// residual from the time-of-day profile (`sa`: the scales' learning rate).
    pub(super) fn learn_week(
        &mut self,
        ts_ms: i64,
        wbin: usize,
        log_resid: f64,
        week_adj: f64,
        sa: f64,
    ) {
        let cfg = self.cfg;
        let w = &mut self.week[wbin];
        if *w == WEEK_UNSEEN {
            *w = (log_resid * WEEK_UNIT).round().clamp(-127.0, 127.0) as i8;
            return;
        }
        let resid = log_resid - week_adj;
        self.week_log_scale += sa * (resid.abs() - self.week_log_scale);
        // Huber-clipped: one holiday does not rewrite the week.
        let lim = cfg.week_clip * self.week_log_scale.max(1e-3);
        let per_bin = (self.seen as f64 * (WEEK_MS / WEEK_BINS as i64) as f64
            / (ts_ms - self.first_ms).max(1) as f64)
            .max(1.0);
        let next = week_adj + cfg.week_alpha / per_bin * resid.clamp(-lim, lim);
        // Dithered rounding (deterministic, from the timestamp): small steps add up on average
        // instead of vanishing in the 1/64 grid.
        let dither =
            ((ts_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
        self.week[wbin] = (next * WEEK_UNIT + dither).floor().clamp(-127.0, 127.0) as i8;
    }
}
