//! NAB results files: `timestamp,value,anomaly_score,label` and our `rank_score`, `p_value`,
//! `alarm`, `alarm_reason` columns, written and read back (ours or another detector's).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::*;

/// One file's output of a detector: the alarm-facing score NAB thresholds, and the continuous
/// score (with its tail probability) the ranking metrics read.
#[derive(Debug, Clone, Default)]
pub struct FileOutput {
    /// `anomaly_score`: what NAB's threshold sweep reads.
    pub anomaly_score: Vec<f64>,
    /// `rank_score`: the continuous score (the anomaly score itself for other detectors).
    pub rank_score: Vec<f64>,
    /// `p_value` (empty for other detectors).
    pub p_value: Vec<f64>,
    /// Why our detector alarmed at each row (`None` where it did not; empty for other
    /// detectors and when read back).
    pub reason: Vec<Option<aiops_models::AlarmReason>>,
}

/// Writes one NAB results CSV (`timestamp,value,anomaly_score,label`, then `rank_score`,
/// `p_value`, `alarm` and `alarm_reason` — why the detector alarmed, on rows that alarm — when
/// the output has them).
pub fn write_results_csv(
    path: &Path,
    file: &NabFile,
    out: &FileOutput,
    alert: f64,
) -> Result<(), EvalError> {
    let mut text = String::with_capacity(file.len() * 64);
    let full = out.p_value.len() == file.len();
    text.push_str("timestamp,value,anomaly_score,label");
    text.push_str(if full {
        ",rank_score,p_value,alarm,alarm_reason\n"
    } else {
        "\n"
    });
    for (i, label) in file.labels().into_iter().enumerate() {
        let a = out.anomaly_score[i];
        let _ = write!(
            text,
            "{},{},{a},{label}",
            file.timestamps[i], file.values[i]
        );
        if full {
            let reason = (out.reason.get(i).copied().flatten())
                .filter(|_| a >= alert)
                .map_or("", |r| r.as_str());
            let _ = write!(
                text,
                ",{},{:e},{},{reason}",
                out.rank_score[i],
                out.p_value[i],
                u8::from(a >= alert)
            );
        }
        text.push('\n');
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(EvalError::io(parent))?;
    }
    std::fs::write(path, text).map_err(EvalError::io(path))
}

/// Reads a results CSV: `anomaly_score`, and `rank_score`/`p_value` when present (else the
/// ranking metrics read the anomaly score).
pub fn read_results_csv(path: &Path) -> Result<FileOutput, EvalError> {
    let table = Table::read(path)?;
    let anomaly = table.column("anomaly_score")?;
    let (rank, p) = (
        table.column("rank_score").ok(),
        table.column("p_value").ok(),
    );
    let mut out = FileOutput::default();
    for row in table.rows() {
        let a = row.number(anomaly, "anomaly_score")?;
        out.anomaly_score.push(a);
        out.rank_score
            .push(rank.map_or(Ok(a), |c| row.number(c, "rank_score"))?);
        if let Some(c) = p {
            out.p_value.push(row.number(c, "p_value")?);
        }
    }
    Ok(out)
}

/// The results file of `file` for `detector` under `dir` (`dir/<category>/<detector>_<file>`).
pub fn results_path(dir: &Path, detector: &str, file: &str) -> PathBuf {
    let (cat, base) = file.rsplit_once('/').unwrap_or(("", file));
    dir.join(cat).join(format!("{detector}_{base}"))
}
