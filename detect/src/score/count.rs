//! Event counts scored as counts: a counter whose readings are whole numbers counts events
//! (requests, errors, restarts), and when few happen per scrape its per-second rate is a poor
//! thing to calibrate empirically. One error per scrape, then a scrape with none, is a rate
//! falling to zero — below everything seen and many "deviations" off — yet nothing happened; a
//! counter that is almost always 0 learns that any error is surprising. So while a series counts
//! few events per sample (fewer than [`SPARSE_LAMBDA`] on average), its tail probability is a
//! Poisson tail of the count:
//!
//! * `λ` is the expected count per sample: the long-run rate (exponentially weighted over
//!   [`RATE_MEMORY`] samples, learning from counts clipped a few deviations above it, so a burst
//!   does not teach that bursts are normal) times the series' sampling interval;
//! * the tail of one sample, `P(X ≥ k | λ)` (or `P(X ≤ k | λ)` below it), and the tail of the
//!   recent counts, their exponentially weighted sum over [`WINDOW`] samples against
//!   `Poisson(λ · WINDOW)` (conservative: a weighted sum varies less than the Poisson it is
//!   compared with) — whichever is smaller.
//!
//! Counts vary at least as much as a Poisson process would (errors come in bursts), so such a
//! tail is trusted only to say "unusual"; `sensitivity` maps it to the score as it maps the
//! calibrated tail. A scrape with no error when one is usual has tail 0.37: never an alarm.

use serde::{Deserialize, Serialize};

/// Below this many events per sample on average, a counter's counts are scored as counts.
pub const SPARSE_LAMBDA: f64 = 30.0;
/// The long-run rate's memory, in samples.
const RATE_MEMORY: f64 = 256.0;
/// The recent counts' window, in samples (exponentially weighted).
const WINDOW: f64 = 16.0;
/// Above this expected count, tails come from the Wilson–Hilferty approximation, not sums.
const EXACT_BELOW: f64 = 30.0;

/// A series' counts: the long-run rate and the recent counts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CountState {
    /// Events per second, long-run.
    rate: f32,
    /// The recent counts, exponentially weighted (per sample).
    recent: f32,
    /// Samples counted so far.
    seen: u32,
}

impl CountState {
    /// True once the series has counted, and counts few events per `dt_s` seconds.
    pub fn sparse(&self, dt_s: f64) -> bool {
        self.seen > 0 && f64::from(self.rate) * dt_s < SPARSE_LAMBDA
    }

    /// Learns `count` events in the last `dt_s` seconds (the sampling interval `interval_s`)
    /// and returns the natural log of the smaller tail probability — `None` while learning
    /// (fewer than `learning` counts seen) or when the series counts too many events per sample
    /// to be scored this way.
    pub fn update(&mut self, count: f64, dt_s: f64, interval_s: f64, learning: u32) -> Option<f64> {
        if !(count >= 0.0 && dt_s > 0.0 && count.is_finite()) {
            return None;
        }
        let rate = f64::from(self.rate);
        let lambda = rate * dt_s;
        let a_w = 1.0 / WINDOW;
        let recent = f64::from(self.recent) + a_w * (count - f64::from(self.recent));
        let scored = (self.seen >= learning && lambda < SPARSE_LAMBDA).then(|| {
            let one = ln_tail(count, lambda);
            // The window's expected sum: the rate over the usual interval, per sample.
            let per = rate * if interval_s > 0.0 { interval_s } else { dt_s };
            let window = ln_tail(recent / a_w, per / a_w);
            one.min(window)
        });
        // Learn, clipped above: a burst is not the new normal (a lasting rise still is, slowly).
        let a = if self.seen < learning {
            1.0 / (f64::from(self.seen) + 1.0)
        } else {
            1.0 / RATE_MEMORY
        };
        let learnt = if self.seen < learning {
            count
        } else {
            count.min(lambda + 3.0 * lambda.sqrt() + 3.0)
        };
        self.rate = (rate + a * (learnt / dt_s - rate)) as f32;
        self.recent = recent as f32;
        self.seen = self.seen.saturating_add(1);
        scored
    }
}

/// The natural log of the Poisson tail on `k`'s side of `lambda`: `P(X ≥ k)` above,
/// `P(X ≤ k)` below (`k` may be fractional: the regularised gamma function's continuation);
/// 0 at `lambda`.
pub fn ln_tail(k: f64, lambda: f64) -> f64 {
    let lambda = lambda.max(0.0);
    if k > lambda {
        if lambda < EXACT_BELOW {
            ln_upper_exact(k, lambda)
        } else {
            // P(X ≥ k) = P(Gamma(k) ≤ λ).
            super::ln_tail(-wilson_hilferty(k, lambda))
        }
    } else if k < lambda {
        if lambda < EXACT_BELOW {
            ln_lower_exact(k.floor(), lambda)
        } else {
            // P(X ≤ k) = P(Gamma(k + 1) > λ).
            super::ln_tail(wilson_hilferty(k + 1.0, lambda))
        }
    } else {
        0.0
    }
}

/// The standard normal deviate of `Gamma(a)` at `x`: `(x/a)^⅓` against `1 − 1/(9a)`.
fn wilson_hilferty(a: f64, x: f64) -> f64 {
    let v = 1.0 / (9.0 * a);
    ((x / a).cbrt() - (1.0 - v)) / v.sqrt()
}

/// `ln P(X ≥ k | λ)` for `k > λ`: the regularised lower incomplete gamma function `P(k, λ)` by
/// its series, `λ^k e^−λ / Γ(k+1) · Σ λ^n / ((k+1)…(k+n))`.
fn ln_upper_exact(k: f64, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return if k > 0.0 { f64::NEG_INFINITY } else { 0.0 };
    }
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 1..400 {
        term *= lambda / (k + f64::from(n));
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    (k * lambda.ln() - lambda - ln_gamma(k + 1.0) + sum.ln()).min(0.0)
}

/// `ln P(X ≤ k | λ)` for whole `k < λ`: `e^−λ Σ_{i ≤ k} λ^i / i!`.
fn ln_lower_exact(k: f64, lambda: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    let mut i = 1.0;
    while i <= k {
        term *= lambda / i;
        sum += term;
        i += 1.0;
    }
    (sum.ln() - lambda).min(0.0)
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        s += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poisson_upper(k: u32, lambda: f64) -> f64 {
        // 1 − Σ_{i<k} e^−λ λ^i / i!, by hand.
        let (mut term, mut below) = ((-lambda).exp(), 0.0);
        for i in 0..k {
            below += term;
            term *= lambda / f64::from(i + 1);
        }
        1.0 - below
    }

    #[test]
    fn tails_are_poisson_tails() {
        for &(k, lambda) in &[
            (2u32, 0.1),
            (3, 1.0),
            (9, 1.0),
            (5, 0.5),
            (20, 8.0),
            (1, 0.01),
        ] {
            let want = poisson_upper(k, lambda).ln();
            let got = ln_tail(f64::from(k), lambda);
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{k} {lambda}: {got} {want}"
            );
        }
        // Below: P(X ≤ 0 | 5) = e^−5; P(X ≤ 2 | 6) by hand.
        assert!((ln_tail(0.0, 5.0) + 5.0).abs() < 1e-12);
        let want = ((-6.0f64).exp() * (1.0 + 6.0 + 18.0)).ln();
        assert!((ln_tail(2.0, 6.0) - want).abs() < 1e-12);
        // At λ: no evidence either way; none when 0.9 are expected: e^−0.9.
        assert_eq!(ln_tail(1.0, 1.0), 0.0);
        assert!((ln_tail(0.0, 0.9) + 0.9).abs() < 1e-12);
        // Far from λ, large counts: Wilson–Hilferty is close to the exact sum (in z).
        for &(k, lambda) in &[(80.0, 50.0), (30.0, 60.0)] {
            let wh = ln_tail(k, lambda);
            let exact = if k > lambda {
                ln_upper_exact(k, lambda)
            } else {
                ln_lower_exact(k, lambda)
            };
            assert!(
                (wh - exact).abs() < 0.05 * exact.abs(),
                "{k} {lambda}: {wh} {exact}"
            );
        }
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn one_event_a_scrape_and_then_none_is_no_surprise_but_a_burst_is() {
        let mut c = CountState::default();
        let mut worst = 0.0f64;
        for i in 0..2000 {
            // One error per 15 s scrape, now and then two or none.
            let k = match i % 37 {
                5 => 0.0,
                17 => 2.0,
                _ => 1.0,
            };
            if let Some(ln_p) = c.update(k, 15.0, 15.0, 300) {
                worst = worst.min(ln_p);
            }
        }
        // At 0.01 false alarms a day, a 15 s series alarms below 0.01 / 5760 ≈ 1.7e-6.
        assert!(worst > (1.7e-6f64).ln(), "{worst}");
        let burst = c.update(12.0, 15.0, 15.0, 300).expect("scored");
        assert!(burst < (1.7e-6f64).ln(), "{burst}");
        // A quiet counter (an error every few minutes) is not alarmed by one error, nor two.
        let mut quiet = CountState::default();
        for i in 0..2000 {
            let k = if i % 13 == 0 { 1.0 } else { 0.0 };
            let ln_p = quiet.update(k, 15.0, 15.0, 300).unwrap_or(0.0);
            assert!(ln_p > (1.7e-6f64).ln(), "{i}: {ln_p}");
        }
        assert!(quiet.update(2.0, 15.0, 15.0, 300).expect("scored") > (1.7e-6f64).ln());
        // Many events per scrape: not scored as counts.
        let mut busy = CountState::default();
        let last = (0..400).map(|_| busy.update(500.0, 15.0, 15.0, 300)).last();
        assert_eq!(last, Some(None));
    }
}
