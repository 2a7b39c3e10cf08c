//! A level that has drifted: the mean of the last few hours against a slow baseline, rated by
//! how far that gap usually wanders on the same series.
//!
//! The prediction follows the recent level closely (`level_alpha`), so a slow ramp — a memory
//! leak, a latency that creeps up as a garbage collector struggles, a sensor that degrades over
//! hours — never leaves the band around it: each step is small against the noise. The gap
//! between the recent mean and a slow baseline does grow with it. The recent mean is that of the
//! last `drift_window` samples, kept as four blocks of a quarter each (the three last full
//! blocks and the one filling: between ¾ and all of the window, 16 bytes instead of one value a
//! sample); the baseline is an exponentially weighted mean over `drift_baseline` samples. Their
//! gap is compared with its own history on the series — an exponentially weighted mean and
//! variance (`long_alpha`), learnt from every gap, so a series whose level wanders by nature
//! (traffic, a random walk) sets a wide bar and one that holds still a narrow one. The gaps are
//! strongly autocorrelated: the variance rests on about one independent gap a half window over
//! its memory, so the gap is rated by a Student t with that many degrees of freedom, and its
//! two-sided tail probability is what the detector compares with its share of `sensitivity`
//! (`rank::SHARE_DRIFT`, a twentieth: 0.005 a day at the default).
//!
//! With a Gaussian tail instead, a Python replica of this rule raised 0.0055 false alarms a
//! series a day on Gaussian noise with its bar at 0.005 a day (100 series × 30 days of
//! 5-minute samples, the default 24-sample window; 0.0010 on AR(1) noise, 0.0021 on a random
//! walk plus noise), the Student t 0.0007 (none, 0.0003); the tests measure the detector
//! itself. A drift alarms only once its baseline holds no alarm of the series (`quiet`): a
//! change already reported — a level that shifted and stays, or one that came back — is not
//! reported again.

use serde::{Deserialize, Serialize};

use super::DetectorConfig;
use super::tails::{ew_step, ln_tail, upper_quantile};

/// The blocks the recent mean is kept in.
const BLOCKS: usize = 4;

/// The recent mean, the slow baseline and the history of their gap. Kept in [`RankState`]
/// (`drift`, absent from older JSON — partition checkpoints, profile tables — which then learn
/// it afresh; checkpoint files have a frame kind of their own).
///
/// [`RankState`]: super::RankState
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Drift {
    /// The means of the last full blocks (oldest first).
    full: [f32; BLOCKS - 1],
    /// How many blocks are full (at most `BLOCKS − 1`).
    filled: u8,
    /// The samples of the block filling, and their sum.
    part_n: u16,
    part_sum: f64,
    baseline: f64,
    /// Samples folded into the baseline (counting up to its horizon).
    baseline_n: u32,
    /// The gap's exponentially weighted mean and variance, and how many gaps were learnt.
    mean: f64,
    var: f64,
    learnt: u32,
    /// Samples since the series last alarmed (by any of the detector's alarms; saturating):
    /// the drift alarms only once that is `drift_baseline` or more — its baseline holds no
    /// reported change — so a level that shifted and stays, or came back, is not reported
    /// again as a drift.
    pub(crate) quiet: u32,
    /// The Gaussian deviation of the alarm's tail probability (refreshed once a block).
    bar: f32,
}

impl Drift {
    /// Learns `value` and returns the natural log of the two-sided tail probability of the
    /// current gap when that may be below `alarm_p` (`None` when it is surely above, until
    /// `learning_samples` gaps have been learnt, or when the window is 0).
    #[inline]
    pub(crate) fn update(&mut self, value: f64, cfg: &DetectorConfig, alarm_p: f64) -> Option<f64> {
        let window = cfg.drift_window;
        if window == 0 {
            return None;
        }
        let block = (window as usize / BLOCKS).clamp(1, usize::from(u16::MAX)) as u16;
        if self.part_n == 0 {
            // The Gaussian deviation of `alarm_p`, once a block: the Student t's tail is
            // heavier, so a gap within it is never rare enough (no tail to compute).
            self.bar = upper_quantile(0.5 * alarm_p) as f32;
        }
        self.part_sum += value;
        self.part_n += 1;
        if self.part_n >= block {
            let mean = (self.part_sum / f64::from(self.part_n)) as f32;
            if usize::from(self.filled) < BLOCKS - 1 {
                self.full[usize::from(self.filled)] = mean;
                self.filled += 1;
            } else {
                self.full.rotate_left(1);
                self.full[BLOCKS - 2] = mean;
            }
            self.part_sum = 0.0;
            self.part_n = 0;
        }
        let mut ln_p = None;
        if let Some(recent) = self.recent_mean(window) {
            let gap = recent - self.baseline;
            let off = gap - self.mean;
            let bar = f64::from(self.bar);
            if self.learnt >= cfg.learning_samples
                && self.var > 0.0
                && off * off >= bar * bar * self.var
            {
                let t = off.abs() / self.var.sqrt();
                // The gaps are known from few independent ones — about one a half window over
                // the variance's memory — so the gap is rated by a Student t with that many
                // degrees of freedom (its deviation mapped to the Gaussian one of the same
                // tail, Gaver and Kafadar's approximation), not by a Gaussian.
                let memory = f64::from(self.learnt).min(1.0 / cfg.long_alpha);
                let nu = (memory / (0.5 * f64::from(window))).max(1.0);
                let z = (8.0 * nu + 1.0) / (8.0 * nu + 3.0) * (nu * (t * t / nu).ln_1p()).sqrt();
                ln_p = Some(ln_tail(z) + std::f64::consts::LN_2);
            }
            let a = if self.learnt < cfg.learning_samples {
                1.0 / (f64::from(self.learnt) + 1.0)
            } else {
                cfg.long_alpha
            };
            (self.mean, self.var) = ew_step(self.mean, self.var, gap, a);
            self.learnt = self.learnt.saturating_add(1);
        }
        self.baseline_n = self.baseline_n.saturating_add(1);
        let b = 1.0 / f64::from(self.baseline_n.min(cfg.drift_baseline.max(1)));
        self.baseline += b * (value - self.baseline);
        ln_p
    }

    /// The recent mean and the slow baseline, when the recent mean is above the baseline by
    /// more than their gap usually is (`None` otherwise, or until the window's blocks are full).
    pub(crate) fn rising(&self, window: u32) -> Option<(f64, f64)> {
        self.recent_mean(window)
            .filter(|recent| recent - self.baseline > self.mean)
            .map(|recent| (recent, self.baseline))
    }

    /// The mean of the recent window (`None` until its blocks are full).
    pub(crate) fn recent_mean(&self, window: u32) -> Option<f64> {
        if usize::from(self.filled) < BLOCKS - 1 {
            return None;
        }
        let block = f64::from((window as usize / BLOCKS).clamp(1, usize::from(u16::MAX)) as u16);
        let full: f64 = self.full.iter().map(|&m| f64::from(m)).sum();
        let n = (BLOCKS - 1) as f64 * block + f64::from(self.part_n);
        Some((full * block + self.part_sum) / n)
    }
}
