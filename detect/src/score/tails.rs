//! Gaussian tail probabilities and the scores made of them: accurate far into the tail, no
//! `exp`/`ln` where a constant does.

/// One step of an exponentially weighted mean and variance toward `x` with weight `a`; the
/// new mean and variance (West's update).
#[inline]
pub(crate) fn ew_step(mean: f64, var: f64, x: f64, a: f64) -> (f64, f64) {
    let d = x - mean;
    (mean + a * d, (1.0 - a) * (var + a * d * d))
}

/// The gamma shape of the calibration's reference: on noise, the short average of the
/// surprise (a mean of a dozen squared deviations, correlated) is skewed like a gamma of this
/// shape — measured 5–9 on Gaussian and AR(1) noise at 5-minute and 15 s samples
/// (`tests::the_short_average_of_noise_is_skewed_like_the_reference`).
pub(crate) const NOISE_SHAPE: f64 = 7.0;

/// The natural log of the upper tail at `z` standard deviations above the mean of a gamma of
/// shape [`NOISE_SHAPE`] (Wilson–Hilferty's cube root): the tail the short average of the
/// surprise has on noise. A Gaussian tail there is far too thin — at 4 deviations it is 1 in
/// 31,600, the reference's 1 in 700 — and the alarms on noise were 9 (5-minute samples) to 50
/// (15 s) times what `sensitivity` promised.
#[inline]
pub(crate) fn ln_noise_tail(z: f64) -> f64 {
    let v = 1.0 / (9.0 * NOISE_SHAPE);
    let c = (1.0 + z / NOISE_SHAPE.sqrt()).max(0.0).cbrt();
    ln_tail((c - (1.0 - v)) / v.sqrt())
}

/// The natural log of the upper Gaussian tail probability at `z`, accurate far into the tail.
#[inline]
pub(crate) fn ln_tail(z: f64) -> f64 {
    if z <= 0.0 {
        return tail_probability(z).ln();
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    (0.5 * as_poly(t)).ln() - x * x
}

/// The z whose upper Gaussian tail probability is `p` (0 < p ≤ 0.5), Acklam's rational
/// approximation (relative error below 1.2e-9).
#[inline]
pub(crate) fn upper_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = 0.5 - p;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// A tail probability's score in [0, 1): `L / (L + 5)`, `L = −log10 p`.
#[inline]
pub fn rank_score_of(ln_p: f64) -> f64 {
    let l = (-ln_p / std::f64::consts::LN_10).max(0.0);
    if l.is_finite() { l / (l + 5.0) } else { 1.0 }
}

/// The tail probability behind a continuous score (the inverse of [`rank_score_of`]).
pub fn p_value_of_rank(rank_score: f64) -> f64 {
    if rank_score >= 1.0 {
        return 0.0;
    }
    let l = 5.0 * rank_score.max(0.0) / (1.0 - rank_score);
    10f64.powf(-l)
}

/// A tail probability as a score in [0, 1], log-scaled: 1e-5 scores 0.5, 1e-10 scores 1.
#[inline]
pub(crate) fn log_score(tail: f64) -> f64 {
    (tail.max(1e-300).ln() / -23.025_850_929_940_46).clamp(0.0, 1.0)
}

/// The polynomial of Abramowitz–Stegun 7.1.26 at `t`.
pub(super) const fn as_poly(t: f64) -> f64 {
    t * (0.254829592
        + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
}

/// The calibration's log tail when the short average is at or below its long-run mean (most
/// samples): a constant, not a cube root and a `ln` per sample.
pub(super) static LN_CALM_TAIL: std::sync::LazyLock<f64> =
    std::sync::LazyLock::new(|| ln_noise_tail(0.0));

#[inline]
pub(crate) fn tail_probability(z: f64) -> f64 {
    // Q(z) = erfc(z / sqrt 2) / 2, Abramowitz–Stegun 7.1.26 for erfc.
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = as_poly(t);
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}
