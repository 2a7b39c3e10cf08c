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
