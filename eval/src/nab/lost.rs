//! Where a NAB score's points went. A normalised score is `100 − lost`, and what is lost splits
//! exactly four ways: windows caught late (a detection scores less the later it comes in its
//! window: one at the labelled point, the window's middle, earns about 0.85 of a window),
//! windows missed (a window's credit and its penalty), false positives (each by its row
//! weight), and windows that end inside the probation (never scored, still in the base). Each
//! window's outcome — when it was first detected and the highest score it reached — says
//! which windows to look at.

use serde::Serialize;

use super::{Corpus, NabFile, Profile, probation, row_weights};

/// A file with its scores and the threshold they are scored at.
pub type ThresholdedFile<'a> = (&'a NabFile, &'a [f64], f64);

/// The points (of the normalised score's 100) lost each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Lost {
    /// Windows with a detection.
    pub caught: usize,
    /// Windows scored without one.
    pub missed: usize,
    /// Lost because detections came after their window's start.
    pub late: f64,
    /// Lost to missed windows (each its credit and its penalty).
    pub missed_windows: f64,
    /// Lost to false positives.
    pub false_positives: f64,
    /// Lost to windows that end inside the probation (never scored).
    pub in_probation: f64,
}

/// One window's outcome at a threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowOutcome {
    /// The file, e.g. `realKnownCause/nyc_taxi.csv`.
    pub file: String,
    /// The window's place in its file, from 1.
    pub window: usize,
    /// Its first timestamp.
    pub start: String,
    /// Its last timestamp.
    pub end: String,
    /// Where in the window the first detection came (0 its first row, 1 its last; `None`:
    /// missed, or the window ends inside the probation).
    pub detected_at: Option<f64>,
    /// Its raw credit: the first detection's row weight, or minus the miss penalty.
    pub credit: f64,
    /// The highest score inside the window (after the probation).
    pub max_score: f64,
}

/// What the files `scored` (each file with its scores and threshold) lost under `profile`, and
/// every window's outcome. The base is the windows of `corpus`, as the normalised score's.
pub fn lost<'a>(
    corpus: &Corpus,
    scored: impl IntoIterator<Item = ThresholdedFile<'a>>,
    profile: &Profile,
) -> (Lost, Vec<WindowOutcome>) {
    let base = corpus.window_count() as f64 * (profile.tp + profile.fn_);
    let points = |raw: f64| if base > 0.0 { 100.0 * raw / base } else { 0.0 };
    let mut lost = Lost::default();
    let mut windows = Vec::new();
    for (file, scores, threshold) in scored {
        let n = scores.len().min(file.len());
        let prob = probation(n);
        let (weights, inside) = row_weights(n, &file.windows, profile);
        let mut first: Vec<Option<usize>> = vec![None; file.windows.len()];
        let mut max: Vec<f64> = vec![0.0; file.windows.len()];
        for i in prob..n {
            let detected = scores[i] >= threshold;
            match inside[i] {
                Some(k) => {
                    max[k] = max[k].max(scores[i]);
                    if detected && first[k].is_none() {
                        first[k] = Some(i);
                    }
                }
                None if detected => lost.false_positives -= points(weights[i]),
                None => {}
            }
        }
        for (k, &(l, r)) in file.windows.iter().enumerate() {
            let credit = if r < prob {
                lost.in_probation += points(profile.tp);
                0.0
            } else if let Some(i) = first[k] {
                lost.caught += 1;
                lost.late += points(profile.tp - weights[i]);
                weights[i]
            } else {
                lost.missed += 1;
                lost.missed_windows += points(profile.tp + profile.fn_);
                -profile.fn_
            };
            windows.push(WindowOutcome {
                file: file.name.clone(),
                window: k + 1,
                start: file.timestamps[l].clone(),
                end: file.timestamps[r].clone(),
                detected_at: first[k].map(|i| (i - l) as f64 / (r - l).max(1) as f64),
                credit,
                max_score: max[k],
            });
        }
    }
    (lost, windows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::nab::score_corpus;

    fn file(name: &str, n: usize, windows: Vec<(usize, usize)>) -> NabFile {
        NabFile {
            name: name.into(),
            timestamps: (0..n).map(|i| format!("t{i}")).collect(),
            times_ms: (0..n as i64).collect(),
            values: vec![0.0; n],
            windows,
        }
    }

    #[test]
    fn the_points_lost_add_up_to_what_the_score_misses() {
        let profile = Profile {
            tp: 1.0,
            fp: 0.11,
            fn_: 1.0,
        };
        // Probation is 150 rows of 1,000. One window inside it, one caught at its start, one
        // caught at its middle, one missed; false positives before, between and after them.
        let a = file(
            "a/one.csv",
            1000,
            vec![(100, 140), (300, 340), (500, 540), (700, 740)],
        );
        let b = file("a/two.csv", 1000, vec![]);
        let mut sa = vec![0.0; 1000];
        for (i, s) in [(200, 0.9), (300, 0.8), (360, 0.95), (520, 0.7), (900, 0.6)] {
            sa[i] = s;
        }
        sa[710] = 0.4;
        let mut sb = vec![0.0; 1000];
        sb[400] = 0.9;
        let corpus = Corpus {
            files: vec![a, b],
            profiles: BTreeMap::from([("standard".into(), profile)]),
        };
        let scores = vec![sa, sb];
        let t = 0.5;
        let r = score_corpus(&corpus, &scores, &profile, Some(t));
        let (lost, windows) = lost(
            &corpus,
            corpus
                .files
                .iter()
                .zip(&scores)
                .map(|(f, s)| (f, s.as_slice(), t)),
            &profile,
        );
        let total = lost.late + lost.missed_windows + lost.false_positives + lost.in_probation;
        assert!(
            (100.0 - r.score - total).abs() < 1e-9,
            "{lost:?} vs {}",
            r.score
        );
        assert_eq!((lost.caught, lost.missed), (2, 1));
        // A window in the probation costs its credit: 1 of the base 8.
        assert!((lost.in_probation - 12.5).abs() < 1e-9, "{lost:?}");
        assert!((lost.missed_windows - 25.0).abs() < 1e-9, "{lost:?}");
        let at: Vec<Option<f64>> = windows.iter().map(|w| w.detected_at).collect();
        assert_eq!(at, [None, Some(0.0), Some(0.5), None]);
        assert_eq!(windows[3].max_score, 0.4);
        assert_eq!((windows[2].start.as_str(), windows[2].window), ("t500", 3));
        // Caught at its start, a window earns almost all its credit; at its middle about 0.85.
        assert!(windows[1].credit > 0.98 && (0.8..0.9).contains(&windows[2].credit));
    }
}
