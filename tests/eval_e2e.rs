//! `aiops eval nab` as a user runs it: on a corpus of the NAB layout, scoring existing results
//! and running our detector.

mod common;

use std::path::{Path, PathBuf};

fn nab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab")
}

/// A corpus of the three files that have reference results, in the NAB layout.
fn small_corpus(dir: &Path) {
    for f in [
        "realKnownCause/nyc_taxi.csv",
        "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
        "artificialWithAnomaly/art_daily_jumpsup.csv",
    ] {
        let to = dir.join("data").join(f);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(nab().join("data").join(f), &to).expect("copy");
    }
    for f in ["labels/combined_windows.json", "config/profiles.json"] {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(nab().join(f), &to).expect("copy");
    }
}

fn run(args: &[&str]) -> serde_json::Value {
    let out = common::succeeded(common::aiops().args(args));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs `aiops` expecting failure; asserts stderr names `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = common::aiops().args(args).output().expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{err}");
}

#[test]
fn scores_reference_results_at_official_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    small_corpus(dir.path());
    let results = nab().join("reference/results/ARTime");
    let v = run(&[
        "eval",
        "nab",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--results",
        results.to_str().expect("utf8"),
        "--threshold",
        "standard=0.317486",
        "--threshold",
        "reward_low_FP_rate=0.317585",
        "--threshold",
        "reward_low_FN_rate=0.317486",
    ]);
    assert_eq!(v["detector"], "ARTime");
    assert_eq!(v["windows"], 5 + 2 + 1);
    let files = &v["profiles"]["standard"]["files"];
    assert!(
        (files["realKnownCause/nyc_taxi.csv"]
            .as_f64()
            .expect("score")
            - 3.775210013719179)
            .abs()
            < 1e-9
    );
    assert!(
        (files["realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"]
            .as_f64()
            .expect("score")
            + 2.33)
            .abs()
            < 1e-9
    );
    assert!(
        (files["artificialWithAnomaly/art_daily_jumpsup.csv"]
            .as_f64()
            .expect("score")
            - 0.8589086704377245)
            .abs()
            < 1e-9
    );
    let low_fp = &v["profiles"]["reward_low_FP_rate"]["files"];
    assert!(
        (low_fp["realKnownCause/nyc_taxi.csv"]
            .as_f64()
            .expect("score")
            - 3.445210013719179)
            .abs()
            < 1e-9
    );
    for key in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        assert!(v[key].is_number(), "{key}");
    }
}

#[test]
fn runs_our_detector_and_writes_nab_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    small_corpus(dir.path());
    let out = dir.path().join("out");
    let v = run(&[
        "eval",
        "nab",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(v["detector"], "aiops");
    let s = v["standard"].as_f64().expect("score");
    assert!((-100.0..=100.0).contains(&s), "{s}");
    let written = out.join("aiops/realKnownCause/aiops_nyc_taxi.csv");
    let text = std::fs::read_to_string(&written).expect("results file");
    assert_eq!(
        text.lines().count(),
        10_321,
        "header + one row per data row"
    );
    // Each alarm names why it fired.
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).expect(name);
    let (alarm, reason) = (col("alarm"), col("alarm_reason"));
    let names: Vec<&str> = (aiops_models::AlarmReason::ALL.iter())
        .map(|r| r.as_str())
        .collect();
    let alarms: Vec<Vec<&str>> = (text.lines().skip(1))
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[alarm] == "1")
        .collect();
    assert!(!alarms.is_empty(), "nyc_taxi raised no alarm");
    for r in &alarms {
        assert!(names.contains(&r[reason]), "{r:?}");
    }
    // The written results score the same when read back.
    let again = run(&[
        "eval",
        "nab",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--results",
        out.join("aiops").to_str().expect("utf8"),
    ]);
    assert_eq!(again["standard"], v["standard"]);
}

/// Floors under our held-out numbers on the shared corpus (leave-one-category-out: every choice
/// made on the other categories), so that a change that loses accuracy fails here rather than in
/// a later evaluation. The ranking metrics assert the targets (VUS-PR 0.40, AUC-PR 0.36;
/// held out today: 0.45 and 0.41, above POLY's 0.436 and 0.397 offline); NAB standard over the
/// whole corpus pins what the detector reaches today (74.3; 73.9 before a routine was no
/// drift, 72.6 before bursts were watched,
/// 71.4 before a series' step sizes were, 70.7 before the calibrated average alarmed only when
/// the continuous score agrees), below the target of 75, which the note tracks. The mean of
/// the held-out categories meets the targets (75 / 68 / 80; 78.2 / 72.9 / 82.3 today). ARTime's published results on
/// the same 42 files come out beside them (`--published`, its thresholds chosen on all 58 files,
/// these included): our held-out scores are above its in-sample ones by category mean.
#[test]
fn our_detector_keeps_its_held_out_scores_on_the_shared_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = run(&[
        "eval",
        "nab",
        "--data",
        nab().to_str().expect("utf8"),
        "--out",
        dir.path().to_str().expect("utf8"),
        "--cross-validate",
        "category",
        "--published",
        nab()
            .join("reference/results/ARTime")
            .to_str()
            .expect("utf8"),
    ]);
    assert!(v["windows"].as_u64().expect("windows") > 0);
    let cv = &v["cross_validated"];
    let get = |k: &str| cv.pointer(k).and_then(|x| x.as_f64()).expect(k);
    let folds = cv["folds"].as_array().expect("folds");
    assert_eq!(folds.len(), 5, "one fold per category");
    let (std, vus, auc) = (get("/nab/standard"), get("/VUS-PR"), get("/AUC-PR"));
    assert!(std >= 74.1, "held-out NAB standard fell to {std}");
    let targets = [
        ("standard", 75.0),
        ("reward_low_FP_rate", 68.0),
        ("reward_low_FN_rate", 80.0),
    ];
    for (profile, target) in targets {
        let m = get(&format!("/nab_category_mean/{profile}"));
        assert!(m >= target, "held-out {profile}, mean of categories: {m}");
    }
    // Where the held-out points went: the four parts add up to what the score misses, and
    // every window has its outcome.
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        let lost = &cv["lost"][profile];
        let part = |k: &str| lost[k].as_f64().expect(k);
        let total = part("late") + part("missed_windows") + part("false_positives");
        let score = get(&format!("/nab/{profile}"));
        assert!(
            (100.0 - score - total - part("in_probation")).abs() < 1e-6,
            "{profile}: {lost}"
        );
        let windows = cv["windows"][profile].as_array().expect("windows");
        assert_eq!(
            windows.len() as u64,
            v["windows"].as_u64().expect("windows")
        );
        // (A window inside the probation has no detection either, and no credit.)
        let missed = windows
            .iter()
            .filter(|w| w["detected_at"].is_null() && w["credit"].as_f64() < Some(0.0))
            .count();
        assert_eq!(missed as u64, lost["missed"].as_u64().expect("missed"));
    }
    // ARTime's published rows of the same files, normalised over the same windows: every
    // file found, and a score of a detector that works (NAB's null detector scores 0).
    let art = &v["published"]["ARTime"];
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        assert_eq!(art[profile]["files"], v["files"], "{profile}");
        let s = art[profile]["score"].as_f64().expect("score");
        assert!((50.0..90.0).contains(&s), "ARTime {profile}: {s}");
        let m = art[profile]["category_mean"]
            .as_f64()
            .expect("category mean");
        let ours = get(&format!("/nab_category_mean/{profile}"));
        assert!(ours > m, "{profile}: ours {ours}, ARTime {m}");
    }
    assert!(vus >= 0.40, "held-out VUS-PR fell to {vus}");
    assert!(auc >= 0.36, "held-out AUC-PR fell to {auc}");
    // Random scores get VUS-PR ≈ 0.12 on these files: the score ranks.
    assert!(v["VUS-PR"].as_f64().expect("vus") > 0.3);
}

#[test]
fn a_corpus_that_is_not_there_is_a_clear_error() {
    fails_with(
        &["eval", "nab", "--data", "/nonexistent/nab"],
        "/nonexistent/nab",
    );
}

#[test]
fn models_register_promote_rollback_and_serve_uses_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    small_corpus(dir.path());
    let data = dir.path().join("archive");
    let params = dir.path().join("p.toml");
    std::fs::write(&params, "short_window = 8\n").expect("write");
    let d = data.to_str().expect("utf8");
    let register = || {
        let mut c = common::aiops();
        c.args([
            "models",
            "--data-dir",
            d,
            "register",
            "--params",
            params.to_str().expect("utf8"),
        ]);
        c
    };
    common::succeeded(register().args([
        "--eval-nab",
        dir.path().to_str().expect("utf8"),
        "--note",
        "first",
    ]));
    std::fs::write(&params, "short_window = 12\n").expect("write");
    let out = register().output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 2"));
    for v in ["1", "2"] {
        assert!(
            common::aiops()
                .args(["models", "--data-dir", d, "promote", v])
                .status()
                .expect("runs")
                .success()
        );
    }
    let list = common::aiops()
        .args(["models", "--data-dir", d, "list"])
        .output()
        .expect("runs");
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.lines().next().is_some_and(|l| l.starts_with("*   2")),
        "{list}"
    );
    assert!(list.contains("nab_standard="), "{list}");
    let rb = common::aiops()
        .args(["models", "--data-dir", d, "rollback"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&rb.stdout).contains("version 1 is the active detector again"));
    let show = common::aiops()
        .args(["models", "--data-dir", d, "show", "1"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(v["params"]["short_window"], 8);
    let missing = common::aiops()
        .args(["models", "--data-dir", d, "show", "9"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());

    // serve starts with the active version's parameters.
    let port = common::free_port();
    let _server = common::start_serve(port, &data, None);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(common::wait_ready(
        &common::http(),
        &format!("http://127.0.0.1:{port}"),
    ));
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(
        log.contains("active registered model") && log.contains("version=1"),
        "{log}"
    );
}

/// `aiops eval cases` on a copy of some labelled fault cases (both datasets' layouts): every
/// method reports counts that add up, per dataset and per fault, and the multivariate scorer
/// finds the Sock Shop CPU hogs.
#[test]
fn evaluates_detection_on_fault_cases() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/rca/cases");
    let dir = tempfile::tempdir().expect("tempdir");
    for c in [
        "sock-shop-rcd/carts_cpu/1",
        "sock-shop-rcd/user_mem/2",
        "petshop/high_traffic_test_issue0",
    ] {
        let to = dir.path().join(c);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(cases.join(c)).expect("case folder") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let v = run(&[
        "eval",
        "cases",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--per-case",
    ]);
    assert_eq!(v["cases"], 3);
    for method in ["univariate", "multivariate", "combined"] {
        let all = &v[method]["all"];
        assert_eq!(all["cases"], 3, "{method}");
        let (tp, fn_) = (
            all["tp"].as_u64().expect("tp"),
            all["fn"].as_u64().expect("fn"),
        );
        assert_eq!(tp + fn_, 3, "{method}");
        assert!(
            v[method]["faults"]["sock-shop-rcd/cpu"]["cases"] == 1,
            "{method}"
        );
        assert!(v[method]["datasets"]["petshop"]["cases"] == 1, "{method}");
    }
    let carts = &v["multivariate"]["per_case"]["sock-shop-rcd/carts_cpu/1"];
    assert_eq!(carts["abnormal_flagged"], true, "{carts}");
    assert!(carts["delay_s"].as_i64().expect("delay") >= 0);
}

#[test]
fn a_folder_without_cases_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    fails_with(
        &[
            "eval",
            "cases",
            "--data",
            dir.path().to_str().expect("utf8"),
        ],
        "no case folder",
    );
}

#[test]
fn eval_forecast_beats_seasonal_naive_on_nyc_taxi_and_covers_its_p90() {
    let csv = nab().join("data/realKnownCause/nyc_taxi.csv");
    let v = run(&[
        "eval",
        "forecast",
        "--data",
        csv.to_str().expect("utf8"),
        "--stride",
        "4",
    ]);
    let ours = v["ours"]["mase"].as_f64().expect("mase");
    let naive = v["seasonal_naive"]["mase"].as_f64().expect("mase");
    assert!(ours < naive, "{v}");
    let cov = v["ours"]["coverage_p90"].as_f64().expect("coverage");
    assert!((0.8..=0.97).contains(&cov), "{v}");
    assert!(v["ours"]["smape"].as_f64().is_some() && v["origins"].as_u64() > Some(1000));
    assert_eq!(v["horizon"], 2);
}

/// Issue 21's forecasting floor on the shared traffic files (nyc_taxi and the seven realTraffic
/// files, every origin): the geometric-mean MASE relative to seasonal naive (0.642 when
/// written; statsforecast's best, AutoTheta, scores 0.578 on 20 origins per file, ours 0.549
/// there) and at most 8 KB of state per series.
#[test]
fn eval_forecast_on_the_traffic_files_stays_within_its_floor_and_8_kb() {
    let dir = traffic_files();
    let v = run(&[
        "eval",
        "forecast",
        "--data",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(v["files"].as_object().map(|f| f.len()), Some(8), "{v}");
    let rel = v["ours"]["mase_relative_to_seasonal_naive_geomean"]
        .as_f64()
        .expect("geomean");
    assert!(rel <= 0.66, "geomean MASE / seasonal naive {rel} > 0.66");
    let bytes = v["ours"]["max_state_bytes"].as_u64().expect("state");
    assert!(bytes <= 8 * 1024, "{bytes} bytes of state");
}

/// The shared traffic files (nyc_taxi and the seven realTraffic files) in a folder of their own.
fn traffic_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = vec![nab().join("data/realKnownCause/nyc_taxi.csv")];
    for e in std::fs::read_dir(nab().join("data/realTraffic")).expect("realTraffic") {
        files.push(e.expect("entry").path());
    }
    for f in &files {
        std::fs::copy(f, dir.path().join(f.file_name().expect("name"))).expect("copy");
    }
    dir
}

/// Issue 21's HPA target on the shared traffic files at 120 s and 300 s pod start-up: predictive
/// scaling (under-provisioning budget 0.15, extra-capacity budget 0.1) cuts the reactive HPA's
/// under-provisioned pod-minutes by at least half at no more than +10 % pod-minutes — on
/// nyc_taxi and on the mean over the eight workloads (when written: nyc_taxi −74.2 % / −76.2 %
/// at +6.3 % / +6.6 %; the mean −53.1 % / −52.5 % at +8.7 %).
#[test]
fn eval_autoscale_on_the_traffic_files_meets_the_hpa_target() {
    let dir = traffic_files();
    let v = run(&[
        "eval",
        "autoscale",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--startup-secs",
        "120,300",
        "--under-budget",
        "0.15",
        "--extra-budget",
        "0.1",
    ]);
    let summary = v["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 2, "{v}");
    for s in summary {
        assert_eq!(s["workloads"], 8, "{s}");
        let cut = s["mean_under_reduction"].as_f64().expect("cut");
        let extra = s["mean_extra_pod_minutes"].as_f64().expect("extra");
        assert!(cut >= 0.5 && extra <= 0.1, "mean: {cut} at +{extra}: {s}");
    }
    let taxi: Vec<_> = v["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter(|w| w["file"] == "nyc_taxi.csv")
        .collect();
    assert_eq!(taxi.len(), 2, "{v}");
    for w in taxi {
        let cut = w["under_reduction"].as_f64().expect("cut");
        let extra = w["extra_pod_minutes"].as_f64().expect("extra");
        assert!(cut >= 0.5 && extra <= 0.1, "nyc_taxi: {cut} at +{extra}");
    }
}

#[test]
fn eval_autoscale_prints_both_policies() {
    let csv = nab().join("data/realTraffic/speed_t4013.csv");
    let v = run(&[
        "eval",
        "autoscale",
        "--data",
        csv.to_str().expect("utf8"),
        "--capacity-per-pod",
        "5",
        "--startup-secs",
        "300",
    ]);
    for policy in ["reactive", "predictive"] {
        let p = &v[policy];
        assert!(
            p["under_pod_minutes"].as_f64().expect("under") >= 0.0,
            "{v}"
        );
        assert!(p["pod_minutes"].as_f64().expect("pods") > 0.0, "{v}");
    }
    assert!(v["under_reduction"].as_f64().is_some() && v["minutes"].as_f64() > Some(0.0));
    // Bad options are clear errors.
    fails_with(
        &[
            "eval",
            "autoscale",
            "--data",
            csv.to_str().expect("utf8"),
            "--capacity-per-pod",
            "0",
            "--startup-secs",
            "60",
        ],
        "--capacity-per-pod",
    );
}

#[test]
fn eval_autoscale_replays_a_folder_of_workloads_at_two_start_up_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two workloads, about four days each (a debug build replays them in seconds).
    for f in ["speed_7578.csv", "TravelTime_451.csv"] {
        let text = std::fs::read_to_string(nab().join("data/realTraffic").join(f)).expect("read");
        let head: Vec<&str> = text.lines().take(1100).collect();
        std::fs::write(dir.path().join(f), head.join("\n")).expect("write");
    }
    let data = dir.path().to_str().expect("utf8");
    let autoscale = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "autoscale",
            "--data",
            data,
            "--startup-secs",
            "120,300",
            "--under-budget",
            "0.2",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let v = autoscale(&[]);
    let capped = autoscale(&["--extra-budget", "0.05"]);
    // A cap on the extra capacity never makes the quantile climb higher, nor cost more pods.
    for (w, c) in v["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .zip(capped["workloads"].as_array().expect("workloads"))
    {
        assert_eq!(c["extra_budget"], 0.05, "{c}");
        assert!(
            c["final_quantile"].as_f64() <= w["final_quantile"].as_f64(),
            "{c} {w}"
        );
    }
    let workloads = v["workloads"].as_array().expect("workloads");
    assert_eq!(workloads.len(), 4, "{v}");
    for w in workloads {
        // Capacity from each workload's median (10 pods by default).
        assert!(w["capacity_per_pod"].as_f64() > Some(0.0), "{w}");
        // Gaps: over three median intervals (5 and 10 minutes here); these files have some.
        assert!(
            [900, 1800].contains(&w["max_gap_secs"].as_u64().expect("gap")),
            "{w}"
        );
        assert!(w["gap_minutes"].as_f64() > Some(0.0), "{w}");
        // Shadow mode gives the HPA the load (reactive) and previews predictive exactly.
        assert_eq!(w["shadow"]["served"], w["reactive"], "{w}");
        assert_eq!(w["shadow"]["would_have"], w["predictive"], "{w}");
        let q = w["final_quantile"].as_f64().expect("quantile");
        assert!((0.5..=0.99).contains(&q), "{w}");
        let share = w["under_share"].as_f64().expect("share");
        assert!((0.0..0.5).contains(&share), "{w}");
    }
    let summary = v["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0]["startup_secs"], 120);
    assert_eq!(summary[1]["workloads"], 2);
    for s in summary {
        assert!(s["mean_under_reduction"].as_f64().is_some(), "{s}");
        assert!(s["predictive"]["pod_minutes"].as_f64() > Some(0.0), "{s}");
    }
    fails_with(
        &[
            "eval",
            "autoscale",
            "--data",
            dir.path().to_str().expect("utf8"),
            "--startup-secs",
            "120",
            "--under-budget",
            "0.9",
        ],
        "--under-budget",
    );
    fails_with(
        &[
            "eval",
            "autoscale",
            "--data",
            dir.path().to_str().expect("utf8"),
            "--startup-secs",
            "120",
            "--under-budget",
            "0.2",
            "--extra-budget",
            "11",
        ],
        "--extra-budget",
    );
}

#[test]
fn eval_rca_ranks_sock_shop_causes_on_time_and_a_minute_late() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/rca/cases");
    let cases = cases.to_str().expect("utf8");
    let on_time = run(&["eval", "rca", "--cases", cases]);
    let late = run(&["eval", "rca", "--cases", cases, "--offset-secs", "60"]);
    for (v, floor) in [(&on_time, 0.97), (&late, 0.95)] {
        let sock = &v["datasets"]["sock-shop-rcd"];
        assert_eq!(sock["cases"], 50);
        let avg5 = sock["service"]["avg5"].as_f64().expect("avg5");
        assert!(avg5 >= floor, "sock-shop service Avg@5 {avg5} < {floor}");
        // Far above the random floor, which is itself sane (13 services, Avg@5 about 3/13).
        let random = sock["random"]["service"]["avg5"].as_f64().expect("random");
        assert!(
            (0.1..0.5).contains(&random) && avg5 > random + 0.4,
            "{sock}"
        );
        assert!(sock["metric"]["ac3"].as_f64().is_some());
        assert!(sock["by_fault"]["cpu"]["service"]["ac1"].as_f64().is_some());
        assert!(sock["secs_per_case"].as_f64().expect("secs") >= 0.0);
        // PetShop labels no metric: metric level is null there, not zero.
        assert!(v["datasets"]["petshop"]["metric"].is_null(), "{v}");
        assert_eq!(v["overall"]["cases"], 118);
    }
    // PetShop, time given, with its call graph: issue 20's targets, AC@1 ≥ 0.35 and Avg@5 ≥
    // 0.55 (above RCAEval's N-Sigma, the best peer there, 0.46 in scripts/compare_rcaeval.py's
    // run, by more than 0.05); 0.47 / 0.671 today.
    let pet = &on_time["datasets"]["petshop"]["service"];
    let (ac1, pet_given) = (
        pet["ac1"].as_f64().expect("ac1"),
        pet["avg5"].as_f64().expect("avg5"),
    );
    assert!(ac1 >= 0.40 && pet_given >= 0.62, "petshop {pet}");
    // Every case's ranking, one line each.
    let out = tempfile::tempdir().expect("tempdir");
    let lines = out.path().join("cases.jsonl");
    let sock_dir = format!("{cases}/sock-shop-rcd");
    run(&[
        "eval",
        "rca",
        "--cases",
        &sock_dir,
        "--cases-out",
        lines.to_str().expect("utf8"),
    ]);
    let text = std::fs::read_to_string(&lines).expect("cases-out");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 50);
    for r in &rows {
        let top = r["top"].as_array().expect("top");
        assert!(!top.is_empty() && top.len() <= 5, "{r}");
        if r["rank"] == 1 {
            assert_eq!(top[0]["service"], r["root_cause_service"], "{r}");
        }
    }
    // No time given: our detector finds it.
    let detected = run(&["eval", "rca", "--cases", cases, "--detect"]);
    let avg5 = detected["datasets"]["sock-shop-rcd"]["service"]["avg5"]
        .as_f64()
        .expect("avg5");
    assert!(
        avg5 >= 0.90,
        "sock-shop service Avg@5 with --detect {avg5} < 0.90"
    );
    assert_eq!(detected["detect"], true);
    // PetShop: the time of the latest incident the product's chain opens — issue 20 asks
    // within 0.05 Avg@5 of the time given (0.638 vs 0.671 today; the first alert after
    // learning, the rule before, fell in the stitched-in normal rows: 0.347).
    let pet_detected = detected["datasets"]["petshop"]["service"]["avg5"]
        .as_f64()
        .expect("avg5");
    assert!(
        pet_detected >= 0.60 && pet_given - pet_detected <= 0.05,
        "petshop service Avg@5 with --detect {pet_detected}, given {pet_given}"
    );
    // PetShop has its call graph; without it the ranking is reported too, and both beat random.
    let pet = &on_time["datasets"]["petshop"];
    assert_eq!(pet["graph"], true);
    let no_graph = run(&["eval", "rca", "--cases", cases, "--no-graph"]);
    assert_eq!(no_graph["datasets"]["petshop"]["graph"], false);
    for p in [pet, &no_graph["datasets"]["petshop"]] {
        let ac3 = p["service"]["ac3"].as_f64().expect("ac3");
        let random = p["random"]["service"]["ac3"].as_f64().expect("random");
        assert!(ac3 > random, "{p}");
    }
    // Confidences are calibrated: the first candidate's mean confidence is near its accuracy.
    let fit = run(&["eval", "rca", "--cases", cases, "--fit-calibration"]);
    let overall = &on_time["overall"]["calibration"];
    let gap = overall["mean_confidence"].as_f64().expect("confidence")
        - overall["accuracy"].as_f64().expect("accuracy");
    assert!(gap.abs() < 0.1, "{overall}");
    assert!(overall["ece"].as_f64().expect("ece") < 0.2, "{overall}");
    assert_eq!(
        fit["fitted_calibration"]["weights"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // The fault kind shown on the labelled service, against the labels (cpu/mem on Sock Shop).
    let kind = &on_time["datasets"]["sock-shop-rcd"]["fault_kind"];
    let k = kind["accuracy"]["accuracy"]
        .as_f64()
        .expect("kind accuracy");
    assert!(k >= 0.85, "sock-shop fault kind accuracy {k}: {kind}");
    assert_eq!(kind["by_fault"]["cpu"]["cases"], 25, "{kind}");
    assert_eq!(
        on_time["datasets"]["petshop"]["fault_kind"]["accuracy"]["cases"],
        68
    );
    // Leave-one-data-set-out calibration: fitted on one, reported on the other only.
    let cv = run(&[
        "eval",
        "rca",
        "--cases",
        cases,
        "--cross-validate",
        "dataset",
    ]);
    let held = &cv["cross_validated"];
    assert_eq!(held["by"], "dataset");
    assert_eq!(held["overall"]["cases"], 118, "{held}");
    for d in ["petshop", "sock-shop-rcd"] {
        let ece = held["datasets"][d]["reliability"]["ece"]
            .as_f64()
            .expect("ece");
        assert!((0.0..=1.0).contains(&ece), "{d}: {held}");
        // The confidence in use is fitted to nothing, so every data set is held out. Issue
        // 20's target is ECE ≤ 0.10 on each: Sock Shop meets it; PetShop is at 0.13 since the
        // walk moves blame to callees with fewer spreads (underconfident there), so its floor
        // is 0.15 until it is met.
        let in_use = held["datasets"][d]["in_use"]["ece"]
            .as_f64()
            .expect("in-use ece");
        let floor = if d == "petshop" { 0.15 } else { 0.10 };
        assert!(in_use <= floor, "{d}: in-use ECE {in_use}: {held}");
        // And how much of it sampling noise alone would give a perfect confidence with these
        // confidences over this few cases (PetShop 0.121, Sock Shop 0.070): ours stays within
        // 0.05 of that.
        let noise = held["datasets"][d]["in_use"]["ece_floor"]
            .as_f64()
            .expect("ece floor");
        assert!(
            noise > 0.0 && in_use - noise <= 0.05,
            "{d}: {in_use} vs {noise}: {held}"
        );
    }
    assert!(on_time["cross_validated"].is_null());
    fails_with(
        &["eval", "rca", "--cases", "/nonexistent/cases"],
        "/nonexistent/cases",
    );
}
