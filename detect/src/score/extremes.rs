//! The tails of the range seen: the largest and smallest values of a series, kept to tell how
//! rare a value beyond its range is.
//!
//! A value outside everything seen alarms at once when it is also far from the prediction
//! (`spatial_min_z`) and rare enough for `sensitivity`. On a noisy series the prediction's
//! deviation says little — a CPU that swings ±10 % every sample puts a new high only a few
//! deviations off — while the range has a tail of its own: the values near its edge. Above the
//! [`KEPT`]-th largest value `u`, the excesses are modelled as exponential (peaks over a
//! threshold). `u` was passed [`KEPT`] times since the oldest of the kept values came, `span`
//! values ago, and the scale of the excesses is known only from the seven kept ones (their sum
//! `S`), so the tail they predict (the exponential averaged over its scale, a prior uniform in
//! the scale's log) is a Lomax:
//!
//! `P(X ≥ v) ≈ KEPT / span · (1 + (v − u) / S)^−(KEPT − 1)`,
//!
//! and the same below the smallest. A new high as far beyond a spread-out edge as the edge's own
//! values are apart is ordinary; one far beyond a tight edge — a CPU that never passed 56 %
//! reading 62 % — is not. On a series that trends toward the edge the kept values are all
//! recent, `span` is short and a new extreme is routine. Plugging the seven excesses' mean in
//! as the scale instead would trust it too far: in a simulation of this rule alone (Gaussian
//! noise at 5-minute samples, a new extreme at least 3 σ out) that raised 0.036 false alarms a
//! series a day at the default sensitivity of 0.01, the Lomax 0.002. On the NAB corpus 8 or 16
//! kept values give the same result; 4 (three excesses: a tail too wide to call anything rare)
//! catches nothing more than the deviation alone.

use serde::{Deserialize, Serialize};

/// How many of the largest and of the smallest values are kept.
pub(crate) const KEPT: usize = 8;

/// The largest and smallest values seen (each sorted from the edge inwards), when each came
/// (its position among the values seen) and how many values were seen since they started
/// being kept.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Extremes {
    // (The two edges side by side: each sample compares with the last of both.)
    top: [f32; KEPT],
    bottom: [f32; KEPT],
    top_at: [u32; KEPT],
    bottom_at: [u32; KEPT],
    seen: u32,
}

impl Extremes {
    /// Keeps `v` if it is among the largest or smallest values seen.
    #[inline]
    pub(crate) fn observe(&mut self, v: f64) {
        let v = v as f32;
        if !v.is_finite() {
            return;
        }
        let kept = (self.seen as usize).min(KEPT);
        let at = self.seen;
        insert(&mut self.top, &mut self.top_at, kept, (v, at), |a, b| a > b);
        insert(
            &mut self.bottom,
            &mut self.bottom_at,
            kept,
            (v, at),
            |a, b| a < b,
        );
        self.seen = self.seen.saturating_add(1);
    }

    /// The natural log of the probability of a value at least as far beyond the range as `v`
    /// (above the largest kept values when `v` is above them, else below the smallest), the
    /// kept excesses averaging at least `floor` and the series' resolution — the smallest
    /// nonzero gap between kept values: a rate of whole requests over 15 s moves in 1/15ths,
    /// and its highs, tied, cannot be known to lie closer than a step. `None` until twice
    /// [`KEPT`] values have been seen.
    pub(crate) fn ln_beyond(&self, v: f64, floor: f64) -> Option<f64> {
        if (self.seen as usize) < 2 * KEPT {
            return None;
        }
        let (kept, at, sign) = if v > f64::from(self.top[0]) {
            (&self.top, &self.top_at, 1.0)
        } else {
            (&self.bottom, &self.bottom_at, -1.0)
        };
        // How often `u` is passed: KEPT times since the oldest of them. On a stationary series
        // that is about all the values seen; on one that trends toward this edge the kept
        // values are all recent, and a new extreme is no surprise.
        let oldest = at.iter().min().copied().unwrap_or(0);
        let span = f64::from(self.seen - oldest).max(KEPT as f64);
        let u = f64::from(kept[KEPT - 1]);
        let sum = kept[..KEPT - 1]
            .iter()
            .map(|&x| sign * (f64::from(x) - u))
            .sum::<f64>()
            .max((KEPT - 1) as f64 * floor.max(step(kept)));
        let excess = sign * (v - u);
        // The exponential's scale is estimated from seven excesses: rather than trust it, take
        // the tail the excesses predict (a prior uniform in the log of the scale): Lomax,
        // `(1 + excess / sum)^-(KEPT - 1)`.
        Some((KEPT as f64 / span).ln() - (KEPT - 1) as f64 * (excess / sum).ln_1p())
    }
}

/// The smallest nonzero gap between neighbouring kept values (0: all equal).
fn step(kept: &[f32; KEPT]) -> f64 {
    kept.windows(2)
        .map(|w| (f64::from(w[0]) - f64::from(w[1])).abs())
        .filter(|&d| d > 0.0)
        .fold(0.0, |m: f64, d| if m == 0.0 { d } else { m.min(d) })
}

/// Inserts `v` (seen at position `at`) into the first `kept` (sorted so that `before(a, b)`
/// holds for neighbours) of `values`, dropping the last when all are kept.
#[inline]
fn insert(
    values: &mut [f32; KEPT],
    ats: &mut [u32; KEPT],
    kept: usize,
    (v, at): (f32, u32),
    before: impl Fn(f32, f32) -> bool,
) {
    let mut i = if kept < KEPT {
        kept
    } else if before(v, values[KEPT - 1]) {
        KEPT - 1
    } else {
        return;
    };
    (values[i], ats[i]) = (v, at);
    while i > 0 && before(v, values[i - 1]) {
        values.swap(i, i - 1);
        ats.swap(i, i - 1);
        i -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_edges_of_the_range_and_rates_a_value_beyond_them() {
        let mut e = Extremes::default();
        assert_eq!(e.ln_beyond(100.0, 0.0), None, "nothing seen yet");
        // 1,000 values spread 0..=999 in scrambled order.
        for i in 0..1000u64 {
            e.observe(((i * 617) % 1000) as f64);
        }
        assert_eq!(
            e.top,
            [999.0, 998.0, 997.0, 996.0, 995.0, 994.0, 993.0, 992.0]
        );
        assert_eq!(e.bottom, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        // Above 992, passed 8 times since the first of them came (the 48th value: 953 values
        // ago), excesses summing to 28: P(X ≥ 1,000) = 8 / 953 · (1 + 8 / 28)^-7.
        let lomax =
            |span: f64, excess: f64, sum: f64| (8.0 / span).ln() - 7.0 * (excess / sum).ln_1p();
        let ln = e.ln_beyond(1000.0, 0.0).expect("enough seen");
        assert!((ln - lomax(953.0, 8.0, 28.0)).abs() < 1e-9, "{ln}");
        // Far beyond is far rarer; below the smallest is measured from the bottom (the first
        // value is 0: passed 8 times in 1,000).
        assert!(e.ln_beyond(1100.0, 0.0).expect("seen") < (1e-6f64).ln());
        let below = e.ln_beyond(-1.0, 0.0).expect("seen");
        assert!((below - lomax(1000.0, 8.0, 28.0)).abs() < 1e-9, "{below}");
        // The same values in rising order: the highs are all recent, a new one is routine.
        let mut rising = Extremes::default();
        for i in 0..1000 {
            rising.observe(f64::from(i));
        }
        let ln = rising.ln_beyond(1000.0, 0.0).expect("seen");
        assert!((ln - lomax(8.0, 8.0, 28.0)).abs() < 1e-9, "{ln}");
        // A flat edge (equal values) takes the floor as its scale.
        let mut flat = Extremes::default();
        for _ in 0..100 {
            flat.observe(5.0);
        }
        let ln = flat.ln_beyond(6.0, 0.5).expect("seen");
        assert!((ln - lomax(100.0, 1.0, 3.5)).abs() < 1e-9, "{ln}");
        // Values in steps of 1/15 (a rate of whole requests over 15 s), the highs tied below
        // the one largest: the edge is known only to a step, so each excess counts at least
        // one (not one step among seven).
        let mut steps = Extremes::default();
        for i in 0..500 {
            steps.observe(f64::from(if i < 499 { 70 + (i * 37) % 11 } else { 81 }) / 15.0);
        }
        assert!((step(&steps.top) - 1.0 / 15.0).abs() < 1e-6);
        let ln = steps.ln_beyond(87.0 / 15.0, 0.0).expect("seen");
        let span = f64::from(500 - steps.top_at.iter().min().expect("kept"));
        let sum = 7.0 / 15.0;
        let excess = 87.0 / 15.0 - f64::from(steps.top[KEPT - 1]);
        assert!((ln - lomax(span, excess, sum)).abs() < 1e-4, "{ln}");
        assert!(ln > (1e-4f64).ln(), "{ln}");
    }
}
