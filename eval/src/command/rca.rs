//! `aiops eval rca`: root-cause ranking over labelled fault cases, per data set and fault,
//! next to a seeded random ranker.

use std::collections::BTreeMap;
use std::time::Instant;

use aiops_detect::DetectorConfig;
use anyhow::Context;

use crate::args::RcaArgs;
use crate::cases;

#[derive(Default)]
struct RcaGroup {
    service: crate::rca::Tally,
    metric: crate::rca::Tally,
    random: crate::rca::Tally,
    by_fault: BTreeMap<String, (crate::rca::Tally, crate::rca::Tally)>,
    secs: f64,
    /// (calibration features of the first service, right?) per case.
    features: Vec<([f64; 2], bool)>,
    calibration: crate::rca::Calibration,
    /// Per fault label: (cases whose labelled service got the label's fault kind, cases).
    kinds: BTreeMap<String, (usize, usize)>,
}

impl RcaGroup {
    fn json(&self) -> serde_json::Value {
        let metric = |t: &crate::rca::Tally| {
            // Only cases that label a root-cause metric count at metric level.
            if t.accuracy().cases == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!(t.accuracy())
            }
        };
        let cases = self.service.accuracy().cases;
        serde_json::json!({
            "cases": cases,
            "service": self.service.accuracy(),
            "metric": metric(&self.metric),
            "random": {"service": self.random.accuracy()},
            "by_fault": self.by_fault.iter().map(|(f, (s, m))| {
                (f.clone(), serde_json::json!({"cases": s.accuracy().cases, "service": s.accuracy(), "metric": metric(m)}))
            }).collect::<BTreeMap<_, _>>(),
            "secs_per_case": self.secs / cases.max(1) as f64,
            "calibration": self.calibration.reliability(),
            "fault_kind": kind_json(self.kinds.values().fold((0, 0), |a, k| (a.0 + k.0, a.1 + k.1)), &self.kinds),
        })
    }

    fn merge(&mut self, o: &RcaGroup) {
        self.service.merge(&o.service);
        self.metric.merge(&o.metric);
        self.random.merge(&o.random);
        for (f, (s, m)) in &o.by_fault {
            let e = self.by_fault.entry(f.clone()).or_default();
            e.0.merge(s);
            e.1.merge(m);
        }
        self.secs += o.secs;
        self.features.extend_from_slice(&o.features);
        self.calibration.merge(&o.calibration);
        for (f, k) in &o.kinds {
            let e = self.kinds.entry(f.clone()).or_default();
            e.0 += k.0;
            e.1 += k.1;
        }
    }
}

/// Fault-kind accuracy on the labelled service: overall and per fault label.
fn kind_json(all: (usize, usize), by: &BTreeMap<String, (usize, usize)>) -> serde_json::Value {
    let one = |(right, cases): (usize, usize)| {
        serde_json::json!({"cases": cases, "right": right,
            "accuracy": if cases == 0 { serde_json::Value::Null } else { serde_json::json!(right as f64 / cases as f64) }})
    };
    serde_json::json!({
        "accuracy": one(all),
        "by_fault": by.iter().map(|(f, k)| (f.clone(), one(*k))).collect::<BTreeMap<_, _>>(),
    })
}

/// The anomaly time our detector gives a case, knowing nothing of the injection: the
/// detection time of the latest incident the product's chain opens on it (detectors, anomaly
/// events, the incident book's correlation rule, all at their defaults: [`crate::paged`]);
/// when none opens, the first row after the learning rows where the univariate ensemble's
/// alert (score ≥ 0.5) has held `sustain` rows; when no alert holds that long, the most
/// unusual stretch (the highest sustained score, the first of equals); the last row's time
/// when there is nothing to score.
fn detected_time(case: &cases::Case, sustain: usize) -> i64 {
    if let Some(t) = crate::paged::latest_incident_s(
        case,
        &DetectorConfig::default(),
        &aiops_detect::DetectConfig::default(),
        &aiops_rca::incident::IncidentConfig::default(),
    ) {
        return t;
    }
    let scores = cases::sustained(
        &cases::univariate_scores(case, &DetectorConfig::default()),
        sustain,
    );
    let from = cases::learning_rows(case.len());
    let start = |i: usize| case.times_s[i + 1 - sustain.max(1)];
    let scored = || scores.iter().copied().enumerate().skip(from);
    scored()
        .find(|&(_, s)| s >= 0.5)
        .or_else(|| {
            scored()
                .filter(|&(_, s)| s > 0.0)
                .fold(None, |best: Option<(usize, f64)>, (i, s)| match best {
                    Some((_, b)) if b >= s => best,
                    _ => Some((i, s)),
                })
        })
        .map_or(case.times_s[case.len() - 1], |(i, _)| start(i))
}

/// Leave-one-data-set-out: a logistic calibration fitted on the other data sets, its
/// reliability on the held-out one (and over all held-out cases), beside the reliability of the
/// confidence in use (fitted to nothing, so held out everywhere). Needs two data sets or more.
fn held_out_calibration(groups: &BTreeMap<String, RcaGroup>) -> serde_json::Value {
    if groups.len() < 2 {
        return serde_json::json!({"by": "dataset", "error": "needs two data sets or more (point --cases at their parent folder)"});
    }
    let mut all = crate::rca::Calibration::default();
    let mut per = BTreeMap::new();
    for (held, g) in groups {
        let train: Vec<([f64; 2], bool)> = groups
            .iter()
            .filter(|(name, _)| *name != held)
            .flat_map(|(_, o)| o.features.iter().copied())
            .collect();
        let w = crate::rca::fit_logistic(&train);
        let mut c = crate::rca::Calibration::default();
        for &(x, right) in &g.features {
            c.add(
                1.0 / (1.0 + (-(w[0] + w[1] * x[0] + w[2] * x[1])).exp()),
                right,
            );
        }
        all.merge(&c);
        per.insert(
            held.clone(),
            serde_json::json!({"weights": w, "reliability": c.reliability(),
                // The confidence in use is fitted to nothing: every data set is held out.
                "in_use": g.calibration.reliability()}),
        );
    }
    let mut in_use = crate::rca::Calibration::default();
    for g in groups.values() {
        in_use.merge(&g.calibration);
    }
    serde_json::json!({"by": "dataset", "datasets": per, "overall": all.reliability(),
        "in_use_overall": in_use.reliability()})
}

/// Ranks every case and prints the report.
pub(super) fn run(a: RcaArgs) -> anyhow::Result<()> {
    use crate::rca::SplitMix;
    use aiops_rca::{RankConfig, rank_metrics, rank_services};
    let all = cases::load_cases(&a.cases)
        .with_context(|| format!("loading cases under {}", a.cases.display()))?;
    let cfg = RankConfig {
        up_only: !a.both_directions,
        ..RankConfig::default()
    };
    // RCAEval counts a service's database as the service (`carts-db` is `carts`).
    let canonical = |s: &str| s.strip_suffix("-db").unwrap_or(s).to_owned();
    let dir_name = a.cases.file_name().map_or_else(
        || a.cases.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut groups: BTreeMap<String, RcaGroup> = BTreeMap::new();
    let mut rng = SplitMix::new(a.seed);
    let mut g_with_graph = std::collections::BTreeSet::new();
    let mut cases_out = a
        .cases_out
        .as_ref()
        .map(|p| {
            std::fs::File::create(p)
                .map(std::io::BufWriter::new)
                .with_context(|| format!("creating {}", p.display()))
        })
        .transpose()?;
    for case in &all {
        let dataset = match case.name.split_once('/') {
            Some((top, _)) => top.to_owned(),
            None => dir_name.clone(),
        };
        let started = Instant::now();
        let anomaly_s = if a.detect {
            detected_time(case, a.sustain_rows)
        } else {
            case.labels.inject_time + a.offset_secs
        };
        let metrics = rank_metrics(&case.columns, &case.times_s, &case.values, anomaly_s, &cfg);
        let mut services = rank_services(&metrics, &canonical);
        if let Some(graph) = case.graph.as_ref().filter(|_| !a.no_graph) {
            let symptom = graph.main_entry();
            services = graph.rerank(&services, symptom.as_deref());
            g_with_graph.insert(dataset.clone());
        }
        let secs = started.elapsed().as_secs_f64();
        let truth = canonical(&case.labels.root_cause_service);
        let service_rank = services
            .iter()
            .position(|s| s.service == truth)
            .map(|i| i + 1);
        if let Some(w) = cases_out.as_mut() {
            use std::io::Write;
            let top: Vec<serde_json::Value> = services
                .iter()
                .take(5)
                .map(|s| serde_json::json!({"service": s.service, "score": s.evidence.score, "metric": s.evidence.metric, "fault_kind": s.fault_kind}))
                .collect();
            // Where the labelled service stood: its own evidence, for reading a miss.
            let truth_evidence = services.iter().find(|s| s.service == truth).map(|s| {
                serde_json::json!({"score": s.evidence.score, "metric": s.evidence.metric, "fault_kind": s.fault_kind})
            });
            let line = serde_json::json!({"case": case.name, "dataset": dataset, "fault": case.labels.fault,
                "root_cause_service": truth, "rank": service_rank, "anomaly_s": anomaly_s, "top": top,
                "truth": truth_evidence,
                "confidence": aiops_rca::analyse::confidences(&services).first()});
            writeln!(w, "{line}").context("writing --cases-out")?;
        }
        let g = groups.entry(dataset).or_default();
        g.secs += secs;
        // The fault kind we would show on the labelled service, against the label (faults that
        // name no kind, e.g. packet loss, are not counted).
        if let Some(want) = aiops_rca::FaultKind::from_label(&case.labels.fault) {
            let got = services
                .iter()
                .find(|s| s.service == truth)
                .map_or(aiops_rca::FaultKind::Unknown, |s| s.fault_kind);
            let k = g.kinds.entry(case.labels.fault.clone()).or_default();
            k.0 += usize::from(got == want);
            k.1 += 1;
        }
        g.service.add(service_rank);
        // The confidence of the first service, as the incident API states it.
        if let Some(&conf) = aiops_rca::analyse::confidences(&services).first() {
            let right = service_rank == Some(1);
            g.features
                .push((aiops_rca::analyse::confidence_features(&services), right));
            g.calibration.add(conf, right);
        }
        let candidates: std::collections::BTreeSet<String> = case
            .columns
            .iter()
            .map(|c| canonical(cases::service_of(c)))
            .collect();
        g.random.add(Some(rng.random_rank(candidates.len())));
        let fault = g.by_fault.entry(case.labels.fault.clone()).or_default();
        fault.0.add(service_rank);
        if let Some(want) = &case.labels.root_cause_metric {
            let metric_rank = metrics
                .iter()
                .position(|m| &m.metric == want)
                .map(|i| i + 1);
            g.metric.add(metric_rank);
            fault.1.add(metric_rank);
        }
    }
    if let Some(mut w) = cases_out {
        use std::io::Write;
        w.flush().context("writing --cases-out")?;
    }
    let mut overall = RcaGroup::default();
    for g in groups.values() {
        overall.merge(g);
    }
    let fitted = a.fit_calibration.then(|| {
        let w = crate::rca::fit_logistic(&overall.features);
        let mut all = crate::rca::Calibration::default();
        let mut per: BTreeMap<String, crate::rca::Calibration> = BTreeMap::new();
        for (name, g) in &groups {
            for &(x, right) in &g.features {
                let p = 1.0 / (1.0 + (-(w[0] + w[1] * x[0] + w[2] * x[1])).exp());
                all.add(p, right);
                per.entry(name.clone()).or_default().add(p, right);
            }
        }
        serde_json::json!({"weights": w, "overall": all.reliability(),
            "datasets": per.iter().map(|(k, c)| (k.clone(), c.reliability())).collect::<BTreeMap<_, _>>(),
            "in_use": "unfitted: share of 1 + score among the first five (the calibration block of each data set)"})
    });
    let cross_validated = a
        .cross_validate
        .is_some()
        .then(|| held_out_calibration(&groups));
    let out = serde_json::json!({
        "fitted_calibration": fitted,
        "cross_validated": cross_validated,
        "offset_secs": a.offset_secs,
        "detect": a.detect,
        "up_only": cfg.up_only,
        "seed": a.seed,
        "datasets": groups.iter().map(|(k, g)| {
            let mut j = g.json();
            j["graph"] = serde_json::json!(g_with_graph.contains(k));
            (k.clone(), j)
        }).collect::<BTreeMap<_, _>>(),
        "overall": overall.json(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
