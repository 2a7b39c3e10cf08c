//! NAB results files: `timestamp,value,anomaly_score,label` and our `rank_score`, `p_value`,
//! `alarm` columns, written and read back (ours or another detector's).

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
}

/// Writes one NAB results CSV (`timestamp,value,anomaly_score,label`, then `rank_score`,
/// `p_value` and `alarm` when the output has them).
pub fn write_results_csv(
    path: &Path,
    file: &NabFile,
    out: &FileOutput,
    alert: f64,
) -> Result<(), DetectError> {
    let mut text = String::with_capacity(file.len() * 64);
    let full = out.p_value.len() == file.len();
    text.push_str("timestamp,value,anomaly_score,label");
    text.push_str(if full {
        ",rank_score,p_value,alarm\n"
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
            let _ = write!(
                text,
                ",{},{:e},{}",
                out.rank_score[i],
                out.p_value[i],
                u8::from(a >= alert)
            );
        }
        text.push('\n');
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, text).map_err(io(path))
}

/// Reads a results CSV: `anomaly_score`, and `rank_score`/`p_value` when present (else the
/// ranking metrics read the anomaly score).
pub fn read_results_csv(path: &Path) -> Result<FileOutput, DetectError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad(path, "empty file"))?
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let anomaly = col("anomaly_score").ok_or_else(|| bad(path, "no anomaly_score column"))?;
    let (rank, p) = (col("rank_score"), col("p_value"));
    let mut out = FileOutput::default();
    for (n, l) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = l.split(',').collect();
        let get = |c: usize, name: &str| {
            fields
                .get(c)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| bad(path, format!("row {}: no {name}", n + 2)))
        };
        let a = get(anomaly, "anomaly_score")?;
        out.anomaly_score.push(a);
        out.rank_score
            .push(rank.map_or(Ok(a), |c| get(c, "rank_score"))?);
        if let Some(c) = p {
            out.p_value.push(get(c, "p_value")?);
        }
    }
    Ok(out)
}

/// The results file of `file` for `detector` under `dir` (`dir/<category>/<detector>_<file>`).
pub fn results_path(dir: &Path, detector: &str, file: &str) -> PathBuf {
    let (cat, base) = file.rsplit_once('/').unwrap_or(("", file));
    dir.join(cat).join(format!("{detector}_{base}"))
}
