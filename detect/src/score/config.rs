//! The detector's parameters: one set for every series (interned, see `Detector`).

use serde::{Deserialize, Serialize};

/// Parameters, one set for every series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Samples used only to learn before the first score.
    pub learning_samples: u32,
    /// After an alert, samples during which scores are held at 0 (0: learning_samples / 5, at
    /// most 150).
    pub rest_samples: u32,
    /// Score that counts as an alert for the rest period.
    pub alert_score: f64,
    /// Smoothing of the predicted level.
    pub level_alpha: f64,
    /// Smoothing of the residual scale.
    pub scale_alpha: f64,
    /// Samples in the short moving average of raw surprise.
    pub short_window: u32,
    /// Smoothing of the long-run distribution of that average.
    pub long_alpha: f64,
    /// A value this share of the seen range outside it is fully surprising.
    pub range_margin: f64,
    /// Such a value scores 1 at once, without waiting for the calibrated average ...
    pub spatial_alerts: bool,
    /// ... when it is also at least this many robust deviations from the prediction.
    pub spatial_min_z: f64,
    /// ... and either that far off at `sensitivity`'s bar, or rarer than `sensitivity` allows
    /// by the range's own tail: how far beyond its largest (smallest) values a value is, in
    /// units of how spread out they are (see `extremes`; false: the bar alone).
    pub tail_alerts: bool,
    /// For this many days after a series' first sample (0: never), only the range's tail can
    /// make such a value alarm, not its deviation alone: a young series sets records often
    /// (the n-th sample of noise is a new high with chance 1/n), and the deviation's bar is
    /// drawn for Gaussian tails, which a latency's or a request rate's are not. Age counts from
    /// the first sample the detector saw: a detector trained on the archive (`aiops train`,
    /// the warm start) is as old as its history.
    pub young_days: f64,
    /// A level that has drifted alarms too: the mean of the last `drift_window` samples (0:
    /// off) against a baseline over `drift_baseline` samples, their gap rarer by its own
    /// history on the series than its share of `sensitivity` allows (see `drift`). A slow
    /// ramp — a memory leak — never leaves the prediction's band, but it leaves its baseline.
    pub drift_window: u32,
    pub drift_baseline: u32,
    /// A series that moves much more or less than it did alarms too (its share of
    /// `sensitivity`, see `volatility`): the log of each step's size watched like the level,
    /// with the same window and baseline. A gauge that freezes at a normal value (a hung
    /// exporter, a stuck sensor) or starts to flap around its usual level never leaves its
    /// band or its range.
    pub volatility_alerts: bool,
    /// A burst alarms too (with `volatility_alerts`; half the step sizes' share, see
    /// `volatility`): the share of large steps (over 1.5 robust scales) watched like the level,
    /// upward only. A travel time or a latency that starts to jump about, in jumps no larger
    /// than it made before, now and then.
    pub burst_alerts: bool,
    /// A never-negative series that has left the day's shape for hours alarms too (its share of
    /// `sensitivity`, see `profile_drift`): the log residual from the time-of-day profile watched
    /// like the level, with the same window and baseline, once the series is two weeks old —
    /// when the recent samples are also at least `profile_drift_min_ratio` times the profile or
    /// at most its inverse (1: any departure rare
    /// enough). Traffic at a
    /// third of its usual since the morning, or two and a half times it for two hours, follows
    /// the recent level sample by sample.
    pub profile_drift_alerts: bool,
    pub profile_drift_min_ratio: f64,
    /// How much a surprise that recurs at the same time of day (within a bin either side) is
    /// discounted: 0 never, 1 fully. A nightly backup spike is routine, not an anomaly.
    pub recurrence_discount: f64,
    /// Each day, the remembered surprise of a time-of-day bin fades by this factor.
    pub recurrence_decay: f64,
    /// Only surprises at least this large are remembered.
    pub recurrence_min: f64,
    /// While the recent level is the better predictor, the time-of-day profile is still asked:
    /// its surprise, weighted by this (0: never), counts too. For series that are never
    /// negative it is measured in log space (a night that falls to a tenth of its usual level
    /// is as surprising as a day that does), which is what makes a holiday or a storm visible
    /// in traffic whose recent level follows the fall smoothly.
    pub seasonal_weight: f64,
    /// Deviations from the profile (in its robust scale, log space for non-negative series)
    /// this large give about 40 % surprise: the profile is a coarse predictor, so only large
    /// deviations count.
    pub seasonal_z: f64,
    /// How far the weekly adjustment of a two-hour bin moves toward a new week's value (the
    /// step is shared among the samples that fall in the bin).
    pub week_alpha: f64,
    /// Like `seasonal_z`, for the deviation from the profile adjusted for the day of the week
    /// (used once that predicts better than the plain profile): a sharper predictor, so a
    /// smaller deviation counts.
    pub weekly_z: f64,
    /// A weekly adjustment learns from residuals clipped to this many of its robust scales: one
    /// holiday does not rewrite the week.
    pub week_clip: f64,
    /// The time-of-day profile learns from residuals clipped to this many of its robust scales
    /// (0: unclipped): a spike at a jittering time of night does not teach the profile to
    /// expect a spike there, and the next night's ordinary value is not read as a drop.
    pub profile_clip: f64,
    /// The two horizons (samples) of the continuous score: the mean surprise over each is
    /// compared with its own history (exponentially weighted averages of this length).
    pub rank_windows: [f64; 2],
    /// How long that history is, in multiples of each horizon.
    pub rank_memory: [f64; 2],
    /// The history learns from values clipped to this many of its standard deviations: an
    /// anomaly does not make the next one look normal.
    pub rank_clip: f64,
    /// The horizons average the raw surprise raised to this power: a few large surprises
    /// outweigh many small ones (1: the plain mean). Raw surprise is below 1, so a higher
    /// power leaves the everyday floor of small surprises near 0.
    pub rank_power: f64,
    /// Sensitivity: the false alarms a series may raise per day on noise alone, shared among
    /// the ways it alarms (see `rank::SHARE_AVERAGE`). With the series' own sampling interval
    /// (learnt from its timestamps) each share sets a per-sample tail probability — the alert
    /// level of the calibrated score (against the skewed tail the short average has on noise),
    /// the bar of the one-sample alarm (a value far outside the range seen, `spatial_min_z` its
    /// lowest bar), the drift's: a series sampled every 15 s needs a rarer state to alarm than
    /// one sampled every 5 minutes.
    pub sensitivity: f64,
}

impl DetectorConfig {
    /// Whether a series `age_ms` after its first sample is still young (`young_days`): beyond
    /// its range it alarms only by the range's tail.
    pub fn is_young(&self, age_ms: i64) -> bool {
        (age_ms as f64) < self.young_days * super::DAY_MS as f64
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            learning_samples: 300,
            rest_samples: 0,
            alert_score: 0.5,
            level_alpha: 0.8,
            scale_alpha: 0.005,
            short_window: 12,
            long_alpha: 0.002,
            range_margin: 0.05,
            spatial_alerts: true,
            spatial_min_z: 3.0,
            tail_alerts: true,
            young_days: 3.0,
            drift_window: 24,
            drift_baseline: 256,
            volatility_alerts: true,
            burst_alerts: true,
            profile_drift_alerts: true,
            profile_drift_min_ratio: 1.35,
            recurrence_discount: 0.5,
            recurrence_decay: 0.5,
            recurrence_min: 0.8,
            seasonal_weight: 0.5,
            seasonal_z: 6.0,
            week_alpha: 0.5,
            weekly_z: 4.0,
            week_clip: 2.0,
            profile_clip: 2.0,
            rank_windows: [64.0, 256.0],
            rank_memory: [16.0, 4.0],
            rank_clip: 3.0,
            rank_power: 4.0,
            sensitivity: 0.1,
        }
    }
}
