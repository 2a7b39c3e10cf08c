//! The Numenta Anomaly Benchmark: corpus loading and a faithful re-implementation of its scorer
//! (`../shared/reference/nab.md` §2): probation, the scaled-sigmoid row weights, per-file scores
//! at a threshold, the exhaustive threshold sweep of the current NAB code, and normalisation
//! against the windows of the files given.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::EvalError;
use crate::csv::Table;

/// A cost profile of `config/profiles.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// Credit weight of a true positive.
    pub tp: f64,
    /// Penalty weight of a false positive.
    pub fp: f64,
    /// Penalty of a missed window.
    pub fn_: f64,
}

/// Inclusive row ranges of a file's windows.
pub type Windows = [(usize, usize)];

/// A file's scores with its windows, as the sweep takes them.
pub type Scored<'a> = (&'a [f64], &'a Windows);

/// A `timestamp,value` file: timestamps as written, as Unix ms, and values.
pub type SeriesColumns = (Vec<String>, Vec<i64>, Vec<f64>);

/// The three NAB profiles, in report order.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// One data file of the corpus.
#[derive(Debug, Clone)]
pub struct NabFile {
    /// Path relative to `data/`, e.g. `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    /// Timestamps as written (`YYYY-MM-DD HH:MM:SS`).
    pub timestamps: Vec<String>,
    /// Unix ms of each row (no zone in the file: read as UTC).
    pub times_ms: Vec<i64>,
    /// Values.
    pub values: Vec<f64>,
    /// Windows as inclusive row ranges, sorted.
    pub windows: Vec<(usize, usize)>,
}

impl NabFile {
    /// Rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Rows at the start that are not scored: `min(floor(0.15 N), 750)`.
    pub fn probation(&self) -> usize {
        probation(self.len())
    }

    /// 1 inside a window, else 0, per row.
    pub fn labels(&self) -> Vec<u8> {
        let mut l = vec![0u8; self.len()];
        for &(a, b) in &self.windows {
            l[a..=b].iter_mut().for_each(|x| *x = 1);
        }
        l
    }
}

/// `min(floor(0.15 N), 750)`.
pub fn probation(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// The corpus: data files, windows and profiles.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Files in path order.
    pub files: Vec<NabFile>,
    /// Profiles by name.
    pub profiles: BTreeMap<String, Profile>,
}

fn parse_nab_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split('.').next()?;
    let dt: jiff::civil::DateTime = s.replace(' ', "T").parse().ok()?;
    jiff::tz::TimeZone::UTC
        .to_timestamp(dt)
        .ok()
        .map(|t| t.as_millisecond())
}

/// Reads one `timestamp,value` CSV.
pub fn read_series_csv(path: &Path) -> Result<SeriesColumns, EvalError> {
    let table = Table::read(path)?;
    let (ti, vi) = (table.column("timestamp")?, table.column("value")?);
    let (mut ts, mut ms, mut vs) = (Vec::new(), Vec::new(), Vec::new());
    for row in table.rows() {
        let t = row.cell(ti)?;
        let m = parse_nab_time(t).ok_or_else(|| row.error(format!("bad timestamp {t:?}")))?;
        ts.push(t.to_owned());
        ms.push(m);
        vs.push(row.number(vi, "value")?);
    }
    Ok((ts, ms, vs))
}

impl Corpus {
    /// Loads `dir/data/**/*.csv`, `dir/labels/combined_windows.json` and
    /// `dir/config/profiles.json` (the NAB layout).
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let data = dir.join("data");
        let paths = crate::csv::files(&data)?;
        if paths.is_empty() {
            return Err(EvalError::bad(&data, "no CSV files under data/"));
        }
        let wpath = dir.join("labels/combined_windows.json");
        let windows: BTreeMap<String, Vec<Vec<String>>> =
            serde_json::from_str(&std::fs::read_to_string(&wpath).map_err(EvalError::io(&wpath))?)
                .map_err(|e| EvalError::bad(&wpath, e.to_string()))?;
        let ppath = dir.join("config/profiles.json");
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&ppath).map_err(EvalError::io(&ppath))?)
                .map_err(|e| EvalError::bad(&ppath, e.to_string()))?;
        let mut profiles = BTreeMap::new();
        for (name, v) in raw {
            let cm = &v["CostMatrix"];
            let w = |k: &str| {
                cm[k]
                    .as_f64()
                    .ok_or_else(|| EvalError::bad(&ppath, format!("{name}.CostMatrix.{k} missing")))
            };
            profiles.insert(
                name.clone(),
                Profile {
                    tp: w("tpWeight")?,
                    fp: w("fpWeight")?,
                    fn_: w("fnWeight")?,
                },
            );
        }
        let mut files = Vec::new();
        for p in paths {
            let name = p
                .strip_prefix(&data)
                .expect("found under data/")
                .to_string_lossy()
                .replace('\\', "/");
            let (timestamps, times_ms, values) = read_series_csv(&p)?;
            let mut wins = Vec::new();
            for pair in windows.get(&name).cloned().unwrap_or_default() {
                let find = |s: &str| -> Result<usize, EvalError> {
                    let t = parse_nab_time(s).ok_or_else(|| {
                        EvalError::bad(&wpath, format!("{name}: bad window time {s:?}"))
                    })?;
                    times_ms.iter().position(|&m| m == t).ok_or_else(|| {
                        EvalError::bad(
                            &wpath,
                            format!("{name}: window time {s:?} is not a row of the file"),
                        )
                    })
                };
                let (a, b) = (find(&pair[0])?, find(&pair[1])?);
                wins.push((a, b));
            }
            wins.sort_unstable();
            files.push(NabFile {
                name,
                timestamps,
                times_ms,
                values,
                windows: wins,
            });
        }
        Ok(Self { files, profiles })
    }

    /// Windows over all files.
    pub fn window_count(&self) -> usize {
        self.files.iter().map(|f| f.windows.len()).sum()
    }
}

/// `A(y)` of §2.3.
fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Per-row weights (§2.4) of a file of `n` rows with `windows`, and the window each row is in.
pub fn row_weights(
    n: usize,
    windows: &[(usize, usize)],
    p: &Profile,
) -> (Vec<f64>, Vec<Option<usize>>) {
    let a_max = scaled_sigmoid(-1.0);
    let mut w = vec![0.0; n];
    let mut inside = vec![None; n];
    let mut last_ended: Option<usize> = None;
    let mut k = 0;
    for i in 0..n {
        while k < windows.len() && windows[k].1 < i {
            last_ended = Some(k);
            k += 1;
        }
        match windows.get(k) {
            Some(&(l, r)) if l <= i && i <= r => {
                let width = (r - l + 1) as f64;
                let y = -((r - i + 1) as f64) / width;
                w[i] = p.tp * scaled_sigmoid(y) / a_max;
                inside[i] = Some(k);
            }
            _ => {
                w[i] = match last_ended {
                    None => -p.fp,
                    Some(j) => {
                        let (l, r) = windows[j];
                        let width = (r - l + 1) as f64;
                        let y = (i - r) as f64 / (width - 1.0);
                        p.fp * scaled_sigmoid(y)
                    }
                };
            }
        }
    }
    (w, inside)
}

/// The score and row counts of one file at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FileScore {
    /// Raw score.
    pub score: f64,
    /// Detected rows inside windows.
    pub tp: usize,
    /// Undetected rows outside windows.
    pub tn: usize,
    /// Detected rows outside windows.
    pub fp: usize,
    /// Undetected rows inside windows.
    pub fn_: usize,
}

/// §2.5: the score of a file's `scores` at `threshold`.
pub fn score_file(
    scores: &[f64],
    windows: &[(usize, usize)],
    p: &Profile,
    threshold: f64,
) -> FileScore {
    let n = scores.len();
    let prob = probation(n);
    let (w, inside) = row_weights(n, windows, p);
    let mut best: Vec<Option<f64>> = vec![None; windows.len()];
    let mut out = FileScore::default();
    for i in prob..n {
        let detected = scores[i] >= threshold;
        match (inside[i], detected) {
            (Some(k), true) => {
                out.tp += 1;
                best[k] = Some(best[k].map_or(w[i], |b: f64| b.max(w[i])));
            }
            (Some(_), false) => out.fn_ += 1,
            (None, true) => {
                out.fp += 1;
                out.score += w[i];
            }
            (None, false) => out.tn += 1,
        }
    }
    for (k, &(_, r)) in windows.iter().enumerate() {
        if r >= prob {
            out.score += best[k].unwrap_or(-p.fn_);
        }
    }
    out
}

/// §2.6: the threshold with the best corpus score (ties: the highest), over "no detections"
/// (reported as 1.1) and every distinct score value. `files` pairs scores with windows.
pub fn best_threshold(files: &[Scored<'_>], p: &Profile) -> (f64, f64) {
    struct Row {
        s: f64,
        file: usize,
        w: f64,
        win: Option<usize>,
    }
    let mut rows = Vec::new();
    let mut window_base = Vec::new();
    let mut total = 0.0;
    let mut nwin = 0;
    for (f, (scores, windows)) in files.iter().enumerate() {
        let n = scores.len();
        let prob = probation(n);
        let (w, inside) = row_weights(n, windows, p);
        window_base.push(nwin);
        total -= p.fn_ * windows.iter().filter(|&&(_, r)| r >= prob).count() as f64;
        nwin += windows.len();
        for i in prob..n {
            rows.push(Row {
                s: scores[i],
                file: f,
                w: w[i],
                win: inside[i],
            });
        }
    }
    rows.sort_by(|a, b| b.s.total_cmp(&a.s));
    let mut credit: Vec<Option<f64>> = vec![None; nwin];
    let (mut best_score, mut best_t) = (total, 1.1);
    let mut i = 0;
    while i < rows.len() {
        let v = rows[i].s;
        while i < rows.len() && rows[i].s == v {
            let r = &rows[i];
            match r.win {
                Some(k) => {
                    let slot = &mut credit[window_base[r.file] + k];
                    match *slot {
                        None => {
                            total += r.w + p.fn_;
                            *slot = Some(r.w);
                        }
                        Some(c) if r.w > c => {
                            total += r.w - c;
                            *slot = Some(r.w);
                        }
                        Some(_) => {}
                    }
                }
                None => total += r.w,
            }
            i += 1;
        }
        if total > best_score {
            best_score = total;
            best_t = v;
        }
    }
    (best_t, best_score)
}

/// `100 × (raw − raw_null) / (raw_perfect − raw_null)` over `windows` windows.
pub fn normalize(raw: f64, windows: usize, p: &Profile) -> f64 {
    let perfect = windows as f64 * p.tp;
    let null = -(windows as f64) * p.fn_;
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

/// The result of one profile over the corpus.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileResult {
    /// The threshold used.
    pub threshold: f64,
    /// Corpus raw score.
    pub raw: f64,
    /// Normalised score.
    pub score: f64,
    /// Row counts.
    pub tp: usize,
    /// Row counts.
    pub tn: usize,
    /// Row counts.
    pub fp: usize,
    /// Row counts.
    pub fn_: usize,
    /// Raw score per file.
    pub files: BTreeMap<String, f64>,
    /// Where the points went (`100 − score`, split four ways).
    pub lost: Lost,
    /// Every window's outcome.
    pub windows: Vec<WindowOutcome>,
}

/// Scores `scores` (one vector per corpus file, same order) under `profile`, at `threshold` or
/// at the best one.
pub fn score_corpus(
    corpus: &Corpus,
    scores: &[Vec<f64>],
    profile: &Profile,
    threshold: Option<f64>,
) -> ProfileResult {
    let pairs: Vec<Scored<'_>> = corpus
        .files
        .iter()
        .zip(scores)
        .map(|(f, s)| (s.as_slice(), f.windows.as_slice()))
        .collect();
    let threshold = threshold.unwrap_or_else(|| best_threshold(&pairs, profile).0);
    let mut r = ProfileResult {
        threshold,
        raw: 0.0,
        score: 0.0,
        tp: 0,
        tn: 0,
        fp: 0,
        fn_: 0,
        files: BTreeMap::new(),
        lost: Lost::default(),
        windows: Vec::new(),
    };
    for (f, (s, w)) in corpus.files.iter().zip(pairs) {
        let fs = score_file(s, w, profile, threshold);
        r.raw += fs.score;
        r.tp += fs.tp;
        r.tn += fs.tn;
        r.fp += fs.fp;
        r.fn_ += fs.fn_;
        r.files.insert(f.name.clone(), fs.score);
    }
    r.score = normalize(r.raw, corpus.window_count(), profile);
    let scored = (corpus.files.iter().zip(scores)).map(|(f, s)| (f, s.as_slice(), threshold));
    (r.lost, r.windows) = lost::lost(corpus, scored, profile);
    r
}

pub mod cv;
pub mod lost;
pub mod published;
mod results;
#[cfg(test)]
mod tests;
pub mod vus;

pub use lost::{Lost, WindowOutcome};
pub use results::{FileOutput, read_results_csv, results_path, write_results_csv};

/// Runs the production [`Detector`](aiops_detect::Detector) over every file, a fresh one per file,
/// with NAB's allowance: the probation length is the detector's learning period.
pub fn run_detector(corpus: &Corpus, cfg: &aiops_detect::DetectorConfig) -> Vec<FileOutput> {
    corpus
        .files
        .iter()
        .map(|f| {
            let mut d = aiops_detect::Detector::new(aiops_detect::DetectorConfig {
                learning_samples: f.probation() as u32,
                ..*cfg
            });
            let mut out = FileOutput::default();
            for (&t, &v) in f.times_ms.iter().zip(&f.values) {
                let s = d.update(t, v);
                out.anomaly_score.push(s.score);
                out.rank_score.push(s.rank_score);
                out.p_value.push(s.p_value);
                out.reason.push(s.reason);
            }
            out
        })
        .collect()
}

/// Scores of one detector under every profile.
#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    /// Detector name.
    pub detector: String,
    /// Files scored.
    pub files: usize,
    /// Windows over those files (the normalisation base).
    pub windows: usize,
    /// Normalised standard score.
    pub standard: f64,
    /// Normalised low-FP score.
    #[serde(rename = "reward_low_FP_rate")]
    pub reward_low_fp_rate: f64,
    /// Normalised low-FN score.
    #[serde(rename = "reward_low_FN_rate")]
    pub reward_low_fn_rate: f64,
    /// Details per profile: threshold, raw score, counts, per-file raw scores.
    pub profiles: BTreeMap<String, ProfileResult>,
    /// TSB-AD's VUS-PR, mean over the files with windows.
    #[serde(rename = "VUS-PR")]
    pub vus_pr: f64,
    /// TSB-AD's AUC-PR, mean over the files with windows.
    #[serde(rename = "AUC-PR")]
    pub auc_pr: f64,
    /// The ranking metrics of each file with windows.
    pub ranking: BTreeMap<String, FileRanking>,
}

/// How well one file's scores rank its labelled rows (TSB-AD's metrics, [`vus`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FileRanking {
    /// The VUS buffer: the series' autocorrelation period.
    pub sliding_window: usize,
    /// Volume under the range-aware PR surface.
    #[serde(rename = "VUS-PR")]
    pub vus_pr: f64,
    /// Average precision.
    #[serde(rename = "AUC-PR")]
    pub auc_pr: f64,
}

/// The ranking metrics of every file with windows (rows inside a window are the positives).
pub fn ranking(corpus: &Corpus, scores: &[Vec<f64>]) -> BTreeMap<String, FileRanking> {
    corpus
        .files
        .iter()
        .zip(scores)
        .filter(|(f, _)| !f.windows.is_empty())
        .map(|(f, s)| {
            let labels = f.labels();
            let sw = vus::sliding_window(&f.values);
            let r = FileRanking {
                sliding_window: sw,
                vus_pr: vus::vus_pr(&labels, s, sw),
                auc_pr: vus::auc_pr(&labels, s),
            };
            (f.name.clone(), r)
        })
        .collect()
}

/// The mean of `get` over `ranking` (NaN when empty).
pub fn mean_ranking(
    ranking: &BTreeMap<String, FileRanking>,
    get: impl Fn(&FileRanking) -> f64,
) -> f64 {
    mean(ranking.values().map(get)).unwrap_or(f64::NAN)
}

/// The mean of `xs` (`None` when empty).
pub(crate) fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// Scores `outputs` under every profile of the corpus, at the best threshold of each (or at
/// `thresholds[profile]` when given), and their ranking.
pub fn report(
    corpus: &Corpus,
    detector: &str,
    outputs: &[FileOutput],
    thresholds: &BTreeMap<String, f64>,
) -> NabReport {
    let scores: Vec<Vec<f64>> = outputs.iter().map(|o| o.anomaly_score.clone()).collect();
    let ranks: Vec<Vec<f64>> = outputs.iter().map(|o| o.rank_score.clone()).collect();
    let scores = scores.as_slice();
    let mut profiles = BTreeMap::new();
    for (name, p) in &corpus.profiles {
        profiles.insert(
            name.clone(),
            score_corpus(corpus, scores, p, thresholds.get(name).copied()),
        );
    }
    let get = |n: &str| {
        profiles
            .get(n)
            .map_or(f64::NAN, |r: &ProfileResult| r.score)
    };
    let ranking = ranking(corpus, &ranks);
    NabReport {
        vus_pr: mean_ranking(&ranking, |r| r.vus_pr),
        auc_pr: mean_ranking(&ranking, |r| r.auc_pr),
        ranking,
        detector: detector.to_owned(),
        files: corpus.files.len(),
        windows: corpus.window_count(),
        standard: get("standard"),
        reward_low_fp_rate: get("reward_low_FP_rate"),
        reward_low_fn_rate: get("reward_low_FN_rate"),
        profiles,
    }
}
