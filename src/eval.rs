//! `aiops eval`: evaluations that print JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use aiops_detect::DetectorConfig;
use aiops_detect::nab::{self, Corpus};
use anyhow::Context;

use crate::cli::{CasesArgs, EvalArgs, EvalWhat, NabArgs};

/// Runs the selected evaluation.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.what {
        EvalWhat::Nab(a) => nab_eval(a),
        EvalWhat::Cases(a) => cases_eval(a),
    }
}

/// Reads a TOML parameter file, or the defaults.
fn params<T: serde::de::DeserializeOwned + Default>(path: Option<&PathBuf>) -> anyhow::Result<T> {
    match path {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a valid parameter file", p.display())),
        None => Ok(T::default()),
    }
}

fn cases_eval(a: CasesArgs) -> anyhow::Result<()> {
    use aiops_detect::cases;
    let all = cases::load_cases(&a.data)
        .with_context(|| format!("loading cases under {}", a.data.display()))?;
    let ucfg: DetectorConfig = params(a.detector_config.as_ref())?;
    let mcfg: aiops_detect::multi::MultiConfig = params(a.multi_config.as_ref())?;

    let started = Instant::now();
    let uni: Vec<Vec<f64>> = all
        .iter()
        .map(|c| cases::univariate_scores(c, &ucfg))
        .collect();
    let uni_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let multi: Vec<Vec<f64>> = all
        .iter()
        .map(|c| cases::multivariate_scores(c, &mcfg))
        .collect();
    let multi_secs = started.elapsed().as_secs_f64();
    let sustain = |rows: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        rows.into_iter()
            .map(|r| cases::sustained(&r, a.sustain_rows))
            .collect()
    };
    let (uni, multi) = (sustain(uni), sustain(multi));
    let both: Vec<Vec<f64>> = uni
        .iter()
        .zip(&multi)
        .map(|(u, m)| u.iter().zip(m).map(|(a, b)| a.max(*b)).collect())
        .collect();

    let mut json = serde_json::json!({
        "cases": all.len(),
        "threshold": a.threshold,
        "protocol": "rca.md §5: an alert in the normal part = FP, in the abnormal part = TP; per case",
    });
    for (name, scores, secs) in [
        ("univariate", &uni, uni_secs),
        ("multivariate", &multi, multi_secs),
        ("combined", &both, uni_secs + multi_secs),
    ] {
        let outcomes: Vec<_> = all
            .iter()
            .zip(scores)
            .map(|(c, s)| cases::outcome(c, s, a.threshold))
            .collect();
        let mut r = serde_json::to_value(cases::method_report(&all, &outcomes, secs))?;
        if !a.per_case {
            r.as_object_mut().map(|o| o.remove("per_case"));
        }
        json[name] = r;
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn nab_eval(a: NabArgs) -> anyhow::Result<()> {
    let corpus = Corpus::load(&a.data)
        .with_context(|| format!("loading the NAB corpus at {}", a.data.display()))?;
    let started = Instant::now();
    let (detector, scores) = match &a.results {
        Some(dir) => {
            let detector = a.detector.clone().unwrap_or_else(|| {
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "results".into())
            });
            let mut scores = Vec::new();
            for f in &corpus.files {
                let path = nab::results_path(dir, &detector, &f.name);
                let s = nab::read_results_csv(&path)?;
                anyhow::ensure!(
                    s.len() == f.len(),
                    "{}: {} rows, but the data file has {}",
                    path.display(),
                    s.len(),
                    f.len()
                );
                scores.push(s);
            }
            (detector, scores)
        }
        None => {
            let detector = a.detector.clone().unwrap_or_else(|| "aiops".into());
            let cfg: DetectorConfig = params(a.detector_config.as_ref())?;
            let scores = nab::run_detector(&corpus, &cfg);
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("nab-results"))
                .join(&detector);
            for (f, s) in corpus.files.iter().zip(&scores) {
                nab::write_results_csv(&nab::results_path(&out, &detector, &f.name), f, s)?;
            }
            (detector, scores)
        }
    };
    let rows: usize = corpus.files.iter().map(|f| f.len()).sum();
    let secs = started.elapsed().as_secs_f64();
    let thresholds: BTreeMap<String, f64> = a
        .threshold
        .iter()
        .map(|t| {
            let (p, v) = t.split_once('=').context("--threshold PROFILE=VALUE")?;
            Ok((p.to_owned(), v.parse::<f64>().context("--threshold value")?))
        })
        .collect::<anyhow::Result<_>>()?;
    let report = nab::report(&corpus, &detector, &scores, &thresholds);
    let mut json = serde_json::to_value(&report)?;
    json["rows"] = rows.into();
    json["seconds"] = secs.into();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
