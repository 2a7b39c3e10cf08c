//! The RCAEval accuracy measures (rca.md §5): AC@k and Avg@k over cases, and a seeded random
//! ranker as the floor.

use serde::Serialize;

/// AC@1, AC@3 and Avg@5 over a set of cases.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Accuracy {
    /// Share of cases whose answer ranks first.
    pub ac1: f64,
    /// Share of cases whose answer is in the top three.
    pub ac3: f64,
    /// Mean of AC@1 … AC@5.
    pub avg5: f64,
    /// Cases counted.
    pub cases: usize,
}

/// Accumulates the rank (1-based; None = not ranked) of the true answer per case.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    hits: [usize; 5],
    cases: usize,
}

impl Tally {
    /// One case whose true answer ranked `rank`.
    pub fn add(&mut self, rank: Option<usize>) {
        self.cases += 1;
        if let Some(r) = rank {
            for k in r.max(1)..=5 {
                self.hits[k - 1] += 1;
            }
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.cases += other.cases;
        for k in 0..5 {
            self.hits[k] += other.hits[k];
        }
    }

    /// The measures (zeros for no case).
    pub fn accuracy(&self) -> Accuracy {
        let n = self.cases.max(1) as f64;
        let ac = |k: usize| self.hits[k - 1] as f64 / n;
        Accuracy {
            ac1: ac(1),
            ac3: ac(3),
            avg5: (1..=5).map(ac).sum::<f64>() / 5.0,
            cases: self.cases,
        }
    }
}

/// How well stated confidences match outcomes: pairs of (confidence of the first candidate,
/// whether it was right).
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    points: Vec<(f64, bool)>,
}

/// Reliability of the first candidate's confidence.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Reliability {
    /// Mean stated confidence.
    pub mean_confidence: f64,
    /// Share that was right (AC@1).
    pub accuracy: f64,
    /// Brier score (mean squared error of the confidence; lower is better).
    pub brier: f64,
    /// Expected calibration error over ten equal-width bins (lower is better).
    pub ece: f64,
    /// The ECE a perfectly calibrated confidence would show on average with these confidences
    /// and this few cases (each case right with the probability it states): the part of `ece`
    /// that is sampling noise. On 68 cases it is near 0.1 by itself.
    pub ece_floor: f64,
    /// Cases.
    pub cases: usize,
}

impl Calibration {
    /// One case: the first candidate's confidence and whether it was the true cause.
    pub fn add(&mut self, confidence: f64, right: bool) {
        self.points.push((confidence, right));
    }

    /// Adds another set.
    pub fn merge(&mut self, other: &Calibration) {
        self.points.extend_from_slice(&other.points);
    }

    /// The measures.
    pub fn reliability(&self) -> Reliability {
        let n = self.points.len();
        if n == 0 {
            return Reliability::default();
        }
        let y = |r: bool| if r { 1.0 } else { 0.0 };
        let mut bins = [(0usize, 0.0f64, 0.0f64); 10];
        let mut confidences: [Vec<f64>; 10] = Default::default();
        for &(c, r) in &self.points {
            let i = ((c * 10.0) as usize).min(9);
            let b = &mut bins[i];
            b.0 += 1;
            b.1 += c;
            b.2 += y(r);
            confidences[i].push(c.clamp(0.0, 1.0));
        }
        let ece_floor = confidences.iter().map(|cs| expected_gap(cs)).sum::<f64>() / n as f64;
        Reliability {
            mean_confidence: self.points.iter().map(|p| p.0).sum::<f64>() / n as f64,
            accuracy: self.points.iter().map(|p| y(p.1)).sum::<f64>() / n as f64,
            brier: self
                .points
                .iter()
                .map(|&(c, r)| (c - y(r)).powi(2))
                .sum::<f64>()
                / n as f64,
            ece: bins
                .iter()
                .filter(|b| b.0 > 0)
                .map(|b| (b.1 - b.2).abs() / n as f64)
                .sum(),
            ece_floor,
            cases: n,
        }
    }
}

/// `E|Σ yᵢ − Σ cᵢ|` when each `yᵢ` is 1 with probability `cᵢ` (independently): the
/// distribution of the number right, exactly (a Poisson binomial, built one case at a time).
fn expected_gap(cs: &[f64]) -> f64 {
    let mut dist = vec![1.0];
    for &c in cs {
        let mut next = vec![0.0; dist.len() + 1];
        for (k, &p) in dist.iter().enumerate() {
            next[k] += p * (1.0 - c);
            next[k + 1] += p * c;
        }
        dist = next;
    }
    let total: f64 = cs.iter().sum();
    dist.iter()
        .enumerate()
        .map(|(k, &p)| p * (k as f64 - total).abs())
        .sum()
}

/// Fits `p = 1 / (1 + exp(-(w0 + w1·x1 + w2·x2)))` to (features, outcome) pairs: linfa's
/// logistic regression (L-BFGS) with a small L2 penalty so separable data stays finite. With
/// one outcome only (nothing to separate) the curve is that outcome's smoothed rate.
pub fn fit_logistic(points: &[([f64; 2], bool)]) -> [f64; 3] {
    use linfa::prelude::*;
    use linfa_logistic::LogisticRegression;
    let hits = points.iter().filter(|p| p.1).count();
    if hits == 0 || hits == points.len() {
        let rate = (hits as f64 + 0.5) / (points.len() as f64 + 1.0);
        return [(rate / (1.0 - rate)).ln(), 0.0, 0.0];
    }
    let x = ndarray::Array2::from_shape_fn((points.len(), 2), |(i, j)| points[i].0[j]);
    let y = ndarray::Array1::from_iter(points.iter().map(|p| p.1));
    let fitted = LogisticRegression::default()
        .alpha(1e-3)
        .max_iterations(200)
        .fit(&Dataset::new(x, y));
    match fitted {
        // linfa models the probability of its second class: `true` when both are present.
        Ok(m) if m.labels().pos.class => {
            let w = m.params();
            [m.intercept(), w[0], w[1]]
        }
        Ok(m) => {
            let w = m.params();
            [-m.intercept(), -w[0], -w[1]]
        }
        Err(e) => {
            tracing::warn!(error = %e, "The logistic calibration did not fit; using the base rate.");
            let rate = hits as f64 / points.len() as f64;
            [(rate / (1.0 - rate)).ln(), 0.0, 0.0]
        }
    }
}

/// splitmix64: a small seeded generator for the random baseline (reproducible everywhere).
#[derive(Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Where `answer` lands in a random order of `n` candidates (1-based).
    pub fn random_rank(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_measures_and_the_logistic_fit() {
        let mut c = Calibration::default();
        c.add(0.9, true);
        c.add(0.9, false);
        let r = c.reliability();
        assert!((r.mean_confidence - 0.9).abs() < 1e-12 && (r.accuracy - 0.5).abs() < 1e-12);
        assert!((r.ece - 0.4).abs() < 1e-12 && (r.brier - 0.41).abs() < 1e-12);
        // Perfectly calibrated at 0.9, two cases: both right (probability 0.81), one (0.18)
        // or none (0.01), off by |2 − 1.8|, |1 − 1.8|, |0 − 1.8|; over the pair.
        assert!((r.ece_floor - (0.81 * 0.2 + 0.18 * 0.8 + 0.01 * 1.8) / 2.0).abs() < 1e-12);
        assert!((expected_gap(&[]) - 0.0).abs() < 1e-12);
        assert!(
            (expected_gap(&[1.0, 0.0]) - 0.0).abs() < 1e-12,
            "certain cases: no noise"
        );
        // Outcomes that follow a known logistic curve give back its parameters.
        let mut pts = Vec::new();
        for i in 0..4000 {
            let x = [(i % 100) as f64 / 20.0, ((i / 100) % 2) as f64];
            let p = 1.0 / (1.0 + (-(-1.0 + 1.5 * x[0] - 0.8 * x[1])).exp());
            // Deterministic outcomes with the right frequency per x.
            pts.push((x, ((i / 200) as f64 + 0.5) / 20.0 < p));
        }
        let w = fit_logistic(&pts);
        assert!(
            (w[0] + 1.0).abs() < 0.2 && (w[1] - 1.5).abs() < 0.2 && (w[2] + 0.8).abs() < 0.2,
            "{w:?}"
        );
    }

    #[test]
    fn accuracy_follows_the_definitions() {
        let mut t = Tally::default();
        t.add(Some(1));
        t.add(Some(3));
        t.add(None);
        t.add(Some(6));
        let a = t.accuracy();
        assert_eq!((a.ac1, a.ac3, a.cases), (0.25, 0.5, 4));
        // AC@1..5 = 1/4, 1/4, 2/4, 2/4, 2/4.
        assert!((a.avg5 - 0.4).abs() < 1e-12);
    }

    #[test]
    fn the_random_ranker_is_uniform_and_seeded() {
        let mut r = SplitMix::new(7);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[r.random_rank(4) - 1] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(SplitMix::new(1).next_u64(), SplitMix::new(1).next_u64());
    }
}
