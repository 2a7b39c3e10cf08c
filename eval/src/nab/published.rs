//! A published detector's NAB scores on the files of this corpus: NAB writes, per detector and
//! profile, `<detector>_<profile>_scores.csv` (one row per file: its threshold, raw score and
//! TP / FP / FN counts, then `Totals`). Keeping the rows of the corpus' files and normalising
//! over their windows gives that detector's score on the same files as ours — the published
//! totals cover NAB's 58 files, a corpus here may hold fewer. The published threshold was chosen
//! on all of NAB's files, which include these: in-sample for that detector.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::cv::category;
use super::{Corpus, normalize};
use crate::EvalError;

/// One profile of a published detector over the corpus' files.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedProfile {
    /// Its normalised NAB score over the corpus' windows.
    pub score: f64,
    /// The mean of its scores per category (each normalised over its own windows; categories
    /// without windows left out): the same aggregate as our cross-validated
    /// `nab_category_mean`.
    pub category_mean: f64,
    /// The threshold it was published with.
    pub threshold: f64,
    /// Files of the corpus found in the scores file.
    pub files: usize,
    /// True positives over those files (NAB counts rows: every detection inside a window).
    pub tp: u64,
    /// False positives over those files.
    pub fp: u64,
    /// False negatives over those files (rows of windows not detected).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// Reads `DIR/<detector>_<profile>_scores.csv` for each profile of `corpus` (`detector`: the
/// folder's name) and scores the corpus' files. Every file of the corpus must be there.
pub fn published_scores(
    corpus: &Corpus,
    dir: &Path,
) -> Result<BTreeMap<String, PublishedProfile>, EvalError> {
    let detector = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| EvalError::bad(dir, "no detector folder name"))?;
    let mut out = BTreeMap::new();
    for (name, profile) in &corpus.profiles {
        let path = dir.join(format!("{detector}_{name}_scores.csv"));
        let text = std::fs::read_to_string(&path).map_err(EvalError::io(&path))?;
        let rows = parse(&text).map_err(|r| EvalError::bad(&path, r))?;
        let (mut raw, mut windows, mut threshold) = (0.0, 0, f64::NAN);
        let (mut tp, mut fp, mut fn_) = (0, 0, 0);
        let mut categories: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for f in &corpus.files {
            let r = rows
                .get(f.name.as_str())
                .ok_or_else(|| EvalError::bad(&path, format!("no row for {}", f.name)))?;
            raw += r.score;
            windows += f.windows.len();
            let c = categories.entry(category(&f.name)).or_default();
            (c.0, c.1) = (c.0 + r.score, c.1 + f.windows.len());
            threshold = r.threshold;
            (tp, fp, fn_) = (tp + r.tp, fp + r.fp, fn_ + r.fn_);
        }
        let per_category: Vec<f64> = (categories.values())
            .filter(|(_, w)| *w > 0)
            .map(|&(raw, w)| normalize(raw, w, profile))
            .collect();
        out.insert(
            name.clone(),
            PublishedProfile {
                score: normalize(raw, windows, profile),
                category_mean: per_category.iter().sum::<f64>() / per_category.len() as f64,
                threshold,
                files: corpus.files.len(),
                tp,
                fp,
                fn_,
            },
        );
    }
    Ok(out)
}

/// One file's row.
struct Row {
    threshold: f64,
    score: f64,
    tp: u64,
    fp: u64,
    fn_: u64,
}

/// `Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count` rows by file (`Totals`
/// left out).
fn parse(text: &str) -> Result<BTreeMap<&str, Row>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| format!("no {name} column"))
    };
    let (file, th, score, tp, fp, fn_) = (
        col("File")?,
        col("Threshold")?,
        col("Score")?,
        col("TP")?,
        col("FP")?,
        col("FN")?,
    );
    let mut rows = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        if f.first().is_some_and(|d| d.trim() == "Totals") || line.trim().is_empty() {
            continue;
        }
        let get = |c: usize| f.get(c).map(|s| s.trim()).unwrap_or_default();
        let num = |c: usize| {
            get(c)
                .parse::<f64>()
                .map_err(|_| format!("row {}: {:?} is not a number", i + 2, get(c)))
        };
        let count = |c: usize| {
            get(c)
                .parse::<u64>()
                .map_err(|_| format!("row {}: {:?} is not a count", i + 2, get(c)))
        };
        rows.insert(
            get(file),
            Row {
                threshold: num(th)?,
                score: num(score)?,
                tp: count(tp)?,
                fp: count(fp)?,
                fn_: count(fn_)?,
            },
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_by_file_without_the_totals() {
        let text = "Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count\n\
                    X,standard,a/b.csv,0.5,1.25,2,10,3,1,16\n\
                    Totals,,,,1.25,2,10,3,1,16\n";
        let rows = parse(text).expect("parses");
        assert_eq!(rows.len(), 1);
        let r = &rows["a/b.csv"];
        assert_eq!(
            (r.threshold, r.score, r.tp, r.fp, r.fn_),
            (0.5, 1.25, 2, 3, 1)
        );
        let bad = parse("File,Threshold,Score,TP,FP,FN\na.csv,x,1,1,1,1\n");
        assert!(bad.is_err_and(|e| e.contains("row 2")));
        assert!(parse("File,Score\n").is_err_and(|e| e.contains("Threshold")));
    }
}
