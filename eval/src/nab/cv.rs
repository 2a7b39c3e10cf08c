//! Leave-one-category-out cross-validation of the detector on a NAB-layout corpus: for each
//! category, every choice — the continuous score's parameters (from a small grid), and for each
//! profile the alarm (its candidates, e.g. sensitivities, and NAB's threshold) — is made on the
//! other categories, and the held-out category is scored with them. The numbers to improve are
//! the held-out ones.

use std::collections::BTreeMap;

use serde::Serialize;

use super::lost::ThresholdedFile;
use super::{
    Corpus, FileOutput, FileRanking, Lost, Scored, WindowOutcome, best_threshold, mean, normalize,
    score_file,
};
use aiops_detect::DetectorConfig;

/// The candidates the continuous score's parameters are chosen from: horizons, memory and the
/// power of the surprise averaged.
pub fn rank_grid(base: &DetectorConfig) -> Vec<DetectorConfig> {
    let mut out = Vec::new();
    for windows in [[32.0, 128.0], [64.0, 256.0], [128.0, 512.0]] {
        for memory in [[16.0, 4.0], [8.0, 8.0]] {
            for power in [1.0, 2.0, 4.0] {
                out.push(DetectorConfig {
                    rank_windows: windows,
                    rank_memory: memory,
                    rank_power: power,
                    ..*base
                });
            }
        }
    }
    out
}

/// One held-out category.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// The category left out while choosing.
    pub held_out: String,
    /// Its files.
    pub files: usize,
    /// Its windows.
    pub windows: usize,
    /// The continuous score's horizons chosen on the other categories.
    pub rank_windows: [f64; 2],
    /// Their memory.
    pub rank_memory: [f64; 2],
    /// The power of the surprise it averages.
    pub rank_power: f64,
    /// Each profile's sensitivity chosen on the other categories.
    pub sensitivity: BTreeMap<String, f64>,
    /// Each profile's alarm threshold chosen on the other categories.
    pub thresholds: BTreeMap<String, f64>,
    /// Each profile's NAB score of the held-out category (normalised over its windows; `null`
    /// when it has none).
    pub nab: BTreeMap<String, Option<f64>>,
    /// Each profile's false positives in the held-out category.
    pub false_positives: BTreeMap<String, usize>,
    /// Mean VUS-PR of its files with windows.
    #[serde(rename = "VUS-PR")]
    pub vus_pr: Option<f64>,
    /// Mean AUC-PR of its files with windows.
    #[serde(rename = "AUC-PR")]
    pub auc_pr: Option<f64>,
}

/// The held-out numbers.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    /// Per category.
    pub folds: Vec<Fold>,
    /// Each profile's NAB score of the whole corpus when every file is scored at the threshold
    /// chosen without its category.
    pub nab: BTreeMap<String, f64>,
    /// Each profile's mean of the held-out categories' NAB scores (categories with windows).
    pub nab_category_mean: BTreeMap<String, f64>,
    /// Where each profile's held-out points went (`100 − nab`, split four ways).
    pub lost: BTreeMap<String, Lost>,
    /// Every window's held-out outcome, per profile.
    pub windows: BTreeMap<String, Vec<WindowOutcome>>,
    /// Mean held-out VUS-PR over the files with windows.
    #[serde(rename = "VUS-PR")]
    pub vus_pr: f64,
    /// Mean held-out AUC-PR over the files with windows.
    #[serde(rename = "AUC-PR")]
    pub auc_pr: f64,
}

/// A file's category: the first part of its path.
pub fn category(name: &str) -> &str {
    name.split_once('/').map_or("", |(c, _)| c)
}

/// Cross-validates over the categories of `corpus`: the continuous score's candidates `grid`
/// and the alarm's candidates `alarms`, each run once.
pub fn cross_validate(
    corpus: &Corpus,
    grid: &[DetectorConfig],
    alarms: &[DetectorConfig],
) -> CvReport {
    let runs: Vec<Vec<FileOutput>> = grid
        .iter()
        .map(|c| super::run_detector(corpus, c))
        .collect();
    let alarm_runs: Vec<Vec<FileOutput>> = alarms
        .iter()
        .map(|c| super::run_detector(corpus, c))
        .collect();
    let rankings: Vec<BTreeMap<String, FileRanking>> = runs
        .iter()
        .map(|r| {
            let ranks: Vec<Vec<f64>> = r.iter().map(|o| o.rank_score.clone()).collect();
            super::ranking(corpus, &ranks)
        })
        .collect();
    let mut categories: Vec<&str> = corpus.files.iter().map(|f| category(&f.name)).collect();
    categories.dedup();
    let mut folds = Vec::new();
    let mut pooled: BTreeMap<String, f64> = BTreeMap::new();
    let mut held_rank: Vec<FileRanking> = Vec::new();
    // Each profile's held-out files, with their scores and the threshold chosen without them.
    let mut held_out: BTreeMap<&str, Vec<ThresholdedFile<'_>>> = BTreeMap::new();
    for cat in categories {
        let inside = |name: &str| category(name) == cat;
        // The continuous score: the candidate with the best mean VUS-PR elsewhere.
        let chosen = (0..grid.len())
            .max_by(|&a, &b| {
                let m = |g: usize| {
                    mean(
                        rankings[g]
                            .iter()
                            .filter(|(n, _)| !inside(n))
                            .map(|(_, r)| r.vus_pr),
                    )
                    .unwrap_or(0.0)
                };
                m(a).total_cmp(&m(b)).then(b.cmp(&a))
            })
            .unwrap_or(0);
        let held: Vec<FileRanking> = rankings[chosen]
            .iter()
            .filter(|(n, _)| inside(n))
            .map(|(_, r)| *r)
            .collect();
        held_rank.extend(&held);
        let windows: usize = corpus
            .files
            .iter()
            .filter(|f| inside(&f.name))
            .map(|f| f.windows.len())
            .sum();
        let mut fold = Fold {
            held_out: cat.to_owned(),
            files: corpus.files.iter().filter(|f| inside(&f.name)).count(),
            windows,
            rank_windows: grid[chosen].rank_windows,
            rank_memory: grid[chosen].rank_memory,
            rank_power: grid[chosen].rank_power,
            sensitivity: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            nab: BTreeMap::new(),
            false_positives: BTreeMap::new(),
            vus_pr: mean(held.iter().map(|r| r.vus_pr)),
            auc_pr: mean(held.iter().map(|r| r.auc_pr)),
        };
        for (name, p) in &corpus.profiles {
            // The alarm: the sensitivity and threshold that score best on the other categories.
            let (mut best, mut t, mut a) = (f64::NEG_INFINITY, 1.1, 0);
            for (k, outputs) in alarm_runs.iter().enumerate() {
                let pairs: Vec<Scored<'_>> = corpus
                    .files
                    .iter()
                    .zip(outputs)
                    .filter(|(f, _)| !inside(&f.name))
                    .map(|(f, o)| (o.anomaly_score.as_slice(), f.windows.as_slice()))
                    .collect();
                let (threshold, score) = best_threshold(&pairs, p);
                if score > best {
                    (best, t, a) = (score, threshold, k);
                }
            }
            let test: Vec<_> = corpus
                .files
                .iter()
                .zip(&alarm_runs[a])
                .filter(|(f, _)| inside(&f.name))
                .collect();
            fold.sensitivity.insert(name.clone(), alarms[a].sensitivity);
            let (mut raw, mut fp) = (0.0, 0);
            for (f, o) in &test {
                let s = score_file(&o.anomaly_score, &f.windows, p, t);
                raw += s.score;
                fp += s.fp;
            }
            let held = held_out.entry(name.as_str()).or_default();
            held.extend(
                test.iter()
                    .map(|(f, o)| (*f, o.anomaly_score.as_slice(), t)),
            );
            *pooled.entry(name.clone()).or_default() += raw;
            fold.thresholds.insert(name.clone(), t);
            fold.nab.insert(
                name.clone(),
                (windows > 0).then(|| normalize(raw, windows, p)),
            );
            fold.false_positives.insert(name.clone(), fp);
        }
        folds.push(fold);
    }
    let nab = corpus
        .profiles
        .iter()
        .map(|(name, p)| {
            let raw = pooled.get(name).copied().unwrap_or(0.0);
            (name.clone(), normalize(raw, corpus.window_count(), p))
        })
        .collect();
    let nab_category_mean = corpus
        .profiles
        .keys()
        .map(|name| {
            let m = mean(
                folds
                    .iter()
                    .filter_map(|f| f.nab.get(name).copied().flatten()),
            );
            (name.clone(), m.unwrap_or(f64::NAN))
        })
        .collect();
    let (mut lost, mut windows) = (BTreeMap::new(), BTreeMap::new());
    for (name, p) in &corpus.profiles {
        let held = held_out.remove(name.as_str()).unwrap_or_default();
        let (l, w) = super::lost::lost(corpus, held, p);
        lost.insert(name.clone(), l);
        windows.insert(name.clone(), w);
    }
    CvReport {
        nab,
        nab_category_mean,
        lost,
        windows,
        vus_pr: mean(held_rank.iter().map(|r| r.vus_pr)).unwrap_or(f64::NAN),
        auc_pr: mean(held_rank.iter().map(|r| r.auc_pr)).unwrap_or(f64::NAN),
        folds,
    }
}
