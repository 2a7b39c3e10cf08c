//! `aiops models`: the versioned model registry from the command line.

use aiops_detect::DetectorConfig;
use aiops_detect::registered::DETECTOR;
use aiops_eval::nab::{self, Corpus};
use aiops_models::registry::{ModelVersion, Registry};
use anyhow::Context;

use crate::cli::{ModelsArgs, ModelsWhat};

/// Runs one registry command.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let path = Registry::path(&args.data_dir);
    let mut reg = Registry::load(&path)?;
    match args.what {
        ModelsWhat::List => {
            if reg.versions.is_empty() {
                println!("no models registered in {}", path.display());
            }
            for v in reg.versions.iter().rev() {
                let active = reg.active(&v.kind).is_some_and(|a| a.version == v.version);
                let scores: Vec<String> = v
                    .scores
                    .iter()
                    .map(|(k, s)| format!("{k}={s:.2}"))
                    .collect();
                println!(
                    "{}{:>4}  {:<9} {}  {}  {}",
                    if active { "*" } else { " " },
                    v.version,
                    v.kind,
                    jiff::Timestamp::from_millisecond(v.created_ms)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    scores.join(" "),
                    v.note.clone().unwrap_or_default()
                );
            }
        }
        ModelsWhat::Show { version } => {
            let v = reg
                .get(version)
                .with_context(|| format!("no model version {version} in {}", path.display()))?;
            println!("{}", serde_json::to_string_pretty(v)?);
        }
        ModelsWhat::Register {
            params,
            eval_nab,
            note,
        } => {
            let text = std::fs::read_to_string(&params)
                .with_context(|| format!("reading {}", params.display()))?;
            let cfg: DetectorConfig = toml::from_str(&text)
                .with_context(|| format!("{}: not detector parameters", params.display()))?;
            let mut scores = std::collections::BTreeMap::new();
            let mut data = None;
            if let Some(dir) = &eval_nab {
                let corpus = Corpus::load(dir)
                    .with_context(|| format!("loading the NAB corpus at {}", dir.display()))?;
                let report = nab::report(
                    &corpus,
                    "aiops",
                    &nab::run_detector(&corpus, &cfg),
                    &Default::default(),
                );
                scores.insert("nab_standard".into(), report.standard);
                scores.insert("nab_reward_low_FP_rate".into(), report.reward_low_fp_rate);
                scores.insert("nab_reward_low_FN_rate".into(), report.reward_low_fn_rate);
                scores.insert("nab_vus_pr".into(), report.vus_pr);
                scores.insert("nab_auc_pr".into(), report.auc_pr);
                data = Some(format!("nab:{}", dir.display()));
            }
            let n = reg.register(ModelVersion {
                version: 0,
                kind: DETECTOR.into(),
                params: serde_json::to_value(cfg)?,
                data,
                range_ms: None,
                scores,
                created_ms: jiff::Timestamp::now().as_millisecond(),
                note,
            });
            reg.save(&path)?;
            println!(
                "registered {DETECTOR} version {n}; `aiops models promote {n}` makes serve use it"
            );
        }
        ModelsWhat::Promote { version } => {
            let v = reg.promote(version)?.clone();
            reg.save(&path)?;
            println!("version {} is now the active {}", v.version, v.kind);
        }
        ModelsWhat::Rollback { kind } => {
            let v = reg.rollback(&kind)?.clone();
            reg.save(&path)?;
            println!(
                "rolled back: version {} is the active {} again",
                v.version, v.kind
            );
        }
    }
    Ok(())
}
