//! Labelled fault cases (`../shared/data/rca/cases/`, the RCAEval layout) and the detection
//! protocol of rca.md §5: each case's normal part and abnormal part are separate samples; an
//! alert anywhere in the normal part is a false positive, an alert in the abnormal part a true
//! positive; precision, recall and F1 over cases.
//!
//! The detectors never see the labels: the learning period is a fixed share of the rows (NAB's
//! probation rule), the same for every case, and the injection time is used only to score.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use aiops_detect::multi::{MultiConfig, ServiceModel};
use aiops_detect::{Detector, DetectorConfig};
use aiops_rca::CallGraph;

use crate::EvalError;
use crate::csv::Table;

/// One fault-injection case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Folder relative to the data directory, e.g. `sock-shop-rcd/carts_cpu/3`.
    pub name: String,
    /// Ground truth.
    pub labels: Labels,
    /// Column names of `data.csv` after `time`: `<service>_<metric>`.
    pub columns: Vec<String>,
    /// Unix seconds of each row.
    pub times_s: Vec<i64>,
    /// Values per column (NaN where the cell is empty).
    pub values: Vec<Vec<f64>>,
    /// The call graph of `graph.csv`, where known.
    pub graph: Option<CallGraph>,
}

/// `labels.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Labels {
    /// The true root-cause service.
    pub root_cause_service: String,
    /// Fault type.
    pub fault: String,
    /// The expected fine-grained indicator, when labelled.
    pub root_cause_metric: Option<String>,
    /// Dataset name.
    pub source: String,
    /// Fault time, Unix seconds.
    pub inject_time: i64,
}

/// The service of a column: the text before the first `_`.
pub fn service_of(column: &str) -> &str {
    column.split_once('_').map_or(column, |(s, _)| s)
}

impl Case {
    /// Rows.
    pub fn len(&self) -> usize {
        self.times_s.len()
    }

    /// True when the case has no rows.
    pub fn is_empty(&self) -> bool {
        self.times_s.is_empty()
    }

    /// Index of the first abnormal row (`time >= inject_time`).
    pub fn first_abnormal(&self) -> usize {
        self.times_s
            .partition_point(|&t| t < self.labels.inject_time)
    }

    /// Column indices grouped by service, in order of first appearance.
    pub fn services(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            let s = service_of(c);
            match out.iter_mut().find(|(name, _)| name == s) {
                Some((_, cols)) => cols.push(j),
                None => out.push((s.to_owned(), vec![j])),
            }
        }
        out
    }

    /// Reads one case folder.
    pub fn load(root: &Path, folder: &Path) -> Result<Self, EvalError> {
        let name = folder
            .strip_prefix(root)
            .unwrap_or(folder)
            .to_string_lossy()
            .into_owned();
        let labels_path = folder.join("labels.json");
        let text = std::fs::read_to_string(&labels_path).map_err(EvalError::io(&labels_path))?;
        let labels: Labels =
            serde_json::from_str(&text).map_err(|e| EvalError::bad(&labels_path, e))?;
        let data = Table::read(&folder.join("data.csv"))?;
        if data.header().first().map(String::as_str) != Some("time") {
            return Err(EvalError::bad(
                &folder.join("data.csv"),
                "the first column must be `time`",
            ));
        }
        let columns: Vec<String> = data.header()[1..].to_vec();
        let mut times_s = Vec::with_capacity(data.len());
        let mut values = vec![Vec::with_capacity(data.len()); columns.len()];
        for row in data.rows() {
            times_s.push(row.number(0, "time")?);
            for (j, col) in values.iter_mut().enumerate() {
                let v = match row.cell(j + 1)? {
                    "" => f64::NAN,
                    _ => row.number(j + 1, "value")?,
                };
                col.push(v);
            }
        }
        let graph_path = folder.join("graph.csv");
        let graph = match std::fs::read(&graph_path) {
            Ok(text) => Some(read_graph(&graph_path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EvalError::io(&graph_path)(e)),
        };
        Ok(Self {
            name,
            labels,
            columns,
            times_s,
            values,
            graph,
        })
    }
}

/// A `graph.csv`: a `caller,callee` header, one call edge per row.
pub fn read_graph(path: &Path, text: &[u8]) -> Result<CallGraph, EvalError> {
    let table = Table::parse(path, text)?;
    if table.header() != ["caller", "callee"] {
        return Err(EvalError::bad(
            path,
            format!("header must be `caller,callee`, found {:?}", table.header()),
        ));
    }
    let mut graph = CallGraph::default();
    for row in table.rows() {
        graph.add(row.cell(0)?, row.cell(1)?);
    }
    Ok(graph)
}

/// Every case under `dir` (any folder holding a `data.csv`), sorted by name.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, EvalError> {
    let mut folders = Vec::new();
    find_cases(dir, &mut folders)?;
    folders.sort();
    if folders.is_empty() {
        return Err(EvalError::bad(
            dir,
            "no case folder (one holding data.csv) found",
        ));
    }
    folders.iter().map(|f| Case::load(dir, f)).collect()
}

fn find_cases(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EvalError> {
    for e in std::fs::read_dir(dir).map_err(EvalError::io(dir))? {
        let p = e.map_err(EvalError::io(dir))?.path();
        if p.is_dir() {
            find_cases(&p, out)?;
        } else if p.file_name().is_some_and(|n| n == "data.csv") {
            out.push(dir.to_owned());
        }
    }
    Ok(())
}

/// Rows a detector learns from before it may alert: NAB's probation (15 %, at most 750).
pub fn learning_rows(rows: usize) -> usize {
    crate::nab::probation(rows)
}

/// Alert scores per row of one case (the largest over the detector's units).
pub type RowScores = Vec<f64>;

/// The univariate ensemble: one [`Detector`] per column; a row's score is the largest.
pub fn univariate_scores(case: &Case, cfg: &DetectorConfig) -> RowScores {
    let learning_samples = learning_rows(case.len()) as u32;
    let mut out = vec![0.0f64; case.len()];
    for col in &case.values {
        let mut d = Detector::new(DetectorConfig {
            learning_samples,
            ..*cfg
        });
        for ((o, &t), &v) in out.iter_mut().zip(&case.times_s).zip(col) {
            *o = o.max(d.update(t * 1000, v).score);
        }
    }
    out
}

/// The multivariate scorer: one [`ServiceModel`] per service over its columns; a row's score
/// is the largest over services.
pub fn multivariate_scores(case: &Case, cfg: &MultiConfig) -> RowScores {
    let cfg = MultiConfig {
        min_fit_rows: learning_rows(case.len()).max(cfg.min_fit_rows.min(case.len())),
        ..*cfg
    };
    let mut out = vec![0.0f64; case.len()];
    for (_, cols) in case.services() {
        let mut m = ServiceModel::new(cfg, cols.len());
        let mut row = vec![0.0; cols.len()];
        for (i, o) in out.iter_mut().enumerate() {
            for (r, &j) in row.iter_mut().zip(&cols) {
                *r = case.values[j][i];
            }
            *o = o.max(m.update(&row).score);
        }
    }
    out
}

/// Each row's score replaced by the smallest of the last `rows` rows (it included): a row then
/// passes a threshold only when the whole run before it did.
pub fn sustained(scores: &[f64], rows: usize) -> Vec<f64> {
    let rows = rows.max(1);
    (0..scores.len())
        .map(|i| {
            if i + 1 < rows {
                0.0
            } else {
                scores[i + 1 - rows..=i]
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min)
            }
        })
        .collect()
}

/// How one detector did on one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaseOutcome {
    /// An alert in the normal part.
    pub normal_flagged: bool,
    /// An alert in the abnormal part.
    pub abnormal_flagged: bool,
    /// Seconds from the injection to the first alert at or after it.
    pub delay_s: Option<i64>,
}

/// Applies the protocol to one case's row scores.
pub fn outcome(case: &Case, scores: &[f64], threshold: f64) -> CaseOutcome {
    let split = case.first_abnormal();
    let normal_flagged = scores[..split].iter().any(|&s| s >= threshold);
    let first = scores[split..].iter().position(|&s| s >= threshold);
    CaseOutcome {
        normal_flagged,
        abnormal_flagged: first.is_some(),
        delay_s: first.map(|i| case.times_s[split + i] - case.labels.inject_time),
    }
}

/// Precision, recall and F1 over a set of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Cases.
    pub cases: usize,
    /// Abnormal parts flagged.
    pub tp: usize,
    /// Normal parts flagged.
    pub fp: usize,
    /// Abnormal parts missed.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / cases.
    pub recall: f64,
    /// Harmonic mean of the two.
    pub f1: f64,
    /// Median seconds from injection to the first alert, over the detected cases.
    pub median_delay_s: Option<i64>,
}

impl Counts {
    fn of(outcomes: &[&CaseOutcome]) -> Self {
        let cases = outcomes.len();
        let tp = outcomes.iter().filter(|o| o.abnormal_flagged).count();
        let fp = outcomes.iter().filter(|o| o.normal_flagged).count();
        let precision = if tp + fp > 0 {
            tp as f64 / (tp + fp) as f64
        } else {
            0.0
        };
        let recall = if cases > 0 {
            tp as f64 / cases as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let mut delays: Vec<i64> = outcomes.iter().filter_map(|o| o.delay_s).collect();
        delays.sort_unstable();
        Self {
            cases,
            tp,
            fp,
            fn_: cases - tp,
            precision,
            recall,
            f1,
            median_delay_s: delays.get(delays.len() / 2).copied(),
        }
    }
}

/// One method's results: over all cases, per dataset and per dataset × fault.
#[derive(Debug, Clone, Serialize)]
pub struct MethodReport {
    /// Over every case.
    pub all: Counts,
    /// Per dataset (`labels.source`).
    pub datasets: BTreeMap<String, Counts>,
    /// Per `dataset/fault`.
    pub faults: BTreeMap<String, Counts>,
    /// Wall seconds spent scoring.
    pub seconds: f64,
    /// Per case, for inspection.
    pub per_case: BTreeMap<String, CaseOutcome>,
}

/// Groups outcomes into a report.
pub fn method_report(cases: &[Case], outcomes: &[CaseOutcome], seconds: f64) -> MethodReport {
    let all: Vec<&CaseOutcome> = outcomes.iter().collect();
    let mut datasets: BTreeMap<String, Vec<&CaseOutcome>> = BTreeMap::new();
    let mut faults: BTreeMap<String, Vec<&CaseOutcome>> = BTreeMap::new();
    for (c, o) in cases.iter().zip(outcomes) {
        datasets.entry(c.labels.source.clone()).or_default().push(o);
        faults
            .entry(format!("{}/{}", c.labels.source, c.labels.fault))
            .or_default()
            .push(o);
    }
    MethodReport {
        all: Counts::of(&all),
        datasets: datasets
            .into_iter()
            .map(|(k, v)| (k, Counts::of(&v)))
            .collect(),
        faults: faults
            .into_iter()
            .map(|(k, v)| (k, Counts::of(&v)))
            .collect(),
        seconds,
        per_case: cases
            .iter()
            .zip(outcomes)
            .map(|(c, o)| (c.name.clone(), *o))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_case(dir: &Path, rows: &[(i64, [&str; 2])], inject: i64) {
        std::fs::create_dir_all(dir).expect("mkdir");
        let mut csv = String::from("time,a_cpu,b-db_lat_90\n");
        for (t, [x, y]) in rows {
            csv.push_str(&format!("{t},{x},{y}\n"));
        }
        std::fs::write(dir.join("data.csv"), csv).expect("write");
        std::fs::write(dir.join("inject_time.txt"), format!("{inject}\n")).expect("write");
        std::fs::write(
            dir.join("labels.json"),
            format!(
                r#"{{"root_cause_service":"a","fault":"cpu","root_cause_metric":"a_cpu","source":"toy","inject_time":{inject}}}"#
            ),
        )
        .expect("write");
    }

    #[test]
    fn loads_cases_at_any_depth_with_empty_cells_as_nan() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_case(
            &tmp.path().join("x/a_cpu/1"),
            &[(10, ["1", ""]), (11, ["2", "0.5"])],
            11,
        );
        write_case(
            &tmp.path().join("y"),
            &[(10, ["1", "2"]), (12, ["3", "4"])],
            11,
        );
        let cases = load_cases(tmp.path()).expect("load");
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].name, "x/a_cpu/1");
        assert!(cases[0].values[1][0].is_nan());
        assert_eq!(cases[0].first_abnormal(), 1);
        assert_eq!(cases[1].first_abnormal(), 1, "inject time between rows");
        let services: Vec<String> = cases[0].services().into_iter().map(|(s, _)| s).collect();
        assert_eq!(services, ["a", "b-db"]);
    }

    #[test]
    fn a_malformed_case_names_file_and_row() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_case(tmp.path(), &[(10, ["1", "x"])], 10);
        let e = load_cases(tmp.path()).expect_err("bad value").to_string();
        assert!(e.contains("data.csv") && e.contains("row 2"), "{e}");
    }

    #[test]
    fn a_graph_reads_its_edges_and_a_wrong_header_is_refused() {
        let p = Path::new("graph.csv");
        let g = read_graph(
            p,
            b"caller,callee\r\nfrontend,carts\n\nfrontend,\"orders\"\n",
        )
        .expect("graph");
        assert_eq!(g.edges(), 2);
        assert_eq!(
            g.callees("frontend").collect::<Vec<_>>(),
            ["carts", "orders"]
        );
        assert!(read_graph(p, b"a,b\nx,y\n").is_err());
        let e = read_graph(p, b"caller,callee\nxy\n")
            .expect_err("an error")
            .to_string();
        assert!(e.contains("row 2"), "{e}");
    }

    #[test]
    fn outcome_splits_at_the_injection() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_case(
            tmp.path(),
            &[
                (10, ["1", "1"]),
                (20, ["1", "1"]),
                (30, ["1", "1"]),
                (40, ["1", "1"]),
            ],
            25,
        );
        let case = &load_cases(tmp.path()).expect("load")[0];
        let o = outcome(case, &[0.0, 0.9, 0.0, 0.7], 0.5);
        assert!(o.normal_flagged && o.abnormal_flagged);
        assert_eq!(o.delay_s, Some(15));
        let counts = Counts::of(&[&o]);
        assert_eq!((counts.tp, counts.fp, counts.fn_), (1, 1, 0));
        assert_eq!(counts.precision, 0.5);
    }
}
