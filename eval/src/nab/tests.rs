use std::path::PathBuf;

use super::*;

fn nab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab")
}

fn reference_rows(detector: &str, profile: &str) -> Vec<Vec<String>> {
    let p = nab_dir().join(format!(
        "reference/results/{detector}/{detector}_{profile}_scores.csv"
    ));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn reproduces_reference_file_scores_exactly() {
    let corpus = Corpus::load(&nab_dir()).expect("corpus loads");
    let mut checked = 0;
    for detector in ["null", "windowedGaussian", "ARTime"] {
        let results = nab_dir().join("reference/results").join(detector);
        for profile_name in PROFILE_NAMES {
            let profile = corpus.profiles[profile_name];
            for row in reference_rows(detector, profile_name) {
                let Some(file) = corpus.files.iter().find(|f| f.name == row[2]) else {
                    continue;
                };
                let path = results_path(&results, detector, &file.name);
                if !path.exists() {
                    continue;
                }
                let scores = read_results_csv(&path).expect("reads").anomaly_score;
                assert_eq!(scores.len(), file.len());
                let threshold: f64 = row[3].parse().expect("threshold");
                let got = score_file(&scores, &file.windows, &profile, threshold);
                let want: f64 = row[4].parse().expect("score");
                assert!(
                    (got.score - want).abs() < 1e-9,
                    "{detector} {profile_name} {}: {} vs {want}",
                    file.name,
                    got.score
                );
                let counts: Vec<usize> = row[5..9]
                    .iter()
                    .map(|c| c.parse().expect("count"))
                    .collect();
                assert_eq!(
                    vec![got.tp, got.tn, got.fp, got.fn_],
                    counts,
                    "{detector} {profile_name} {}",
                    file.name
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 27, "3 detectors × 3 profiles × 3 files");
}

#[test]
fn row_weights_match_artime_sweep_columns() {
    let corpus = Corpus::load(&nab_dir()).expect("corpus loads");
    let dir = nab_dir().join("reference/results/ARTime");
    let mut rows_checked = 0;
    for file in &corpus.files {
        let path = results_path(&dir, "ARTime", &file.name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        for name in PROFILE_NAMES {
            let col = header
                .iter()
                .position(|h| *h == format!("S(t)_{name}"))
                .expect("column");
            let (w, _) = row_weights(file.len(), &file.windows, &corpus.profiles[name]);
            for (i, r) in rows.iter().enumerate() {
                let want: f64 = r[col].parse().expect("number");
                assert!(
                    (w[i] - want).abs() < 1e-9,
                    "{} {name} row {i}: {} vs {want}",
                    file.name,
                    w[i]
                );
                rows_checked += 1;
            }
        }
    }
    assert!(rows_checked > 40_000);
}

#[test]
fn null_detector_scores_zero_and_perfect_scores_hundred() {
    let corpus = Corpus::load(&nab_dir()).expect("corpus loads");
    let null: Vec<Vec<f64>> = corpus.files.iter().map(|f| vec![0.5; f.len()]).collect();
    let perfect: Vec<Vec<f64>> = corpus
        .files
        .iter()
        .map(|f| {
            let mut s = vec![0.0; f.len()];
            for &(a, _) in &f.windows {
                s[a.max(f.probation())] = 1.0;
            }
            s
        })
        .collect();
    for name in PROFILE_NAMES {
        let p = corpus.profiles[name];
        let r = score_corpus(&corpus, &null, &p, None);
        assert_eq!(r.threshold, 1.1);
        assert!(r.score.abs() < 1e-9, "{name}: {}", r.score);
        let r = score_corpus(&corpus, &perfect, &p, None);
        assert!((r.score - 100.0).abs() < 1e-9, "{name}: {}", r.score);
    }
    assert_eq!(corpus.files.len(), 42);
    assert_eq!(corpus.window_count(), 69);
}

#[test]
fn sweep_equals_brute_force() {
    // Small synthetic corpus: every candidate threshold scored directly.
    let windows = vec![(30usize, 40usize), (70, 75)];
    let files: Vec<Vec<f64>> = (0..4)
        .map(|seed| {
            (0..100)
                .map(|i| (((i * 37 + seed * 11) % 17) as f64) / 16.0)
                .collect()
        })
        .collect();
    let p = Profile {
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    };
    let pairs: Vec<Scored<'_>> = files
        .iter()
        .map(|s| (s.as_slice(), windows.as_slice()))
        .collect();
    let (t, best) = best_threshold(&pairs, &p);
    let mut candidates: Vec<f64> = files.iter().flatten().copied().collect();
    candidates.push(1.1);
    let brute = candidates
        .iter()
        .map(|&c| {
            files
                .iter()
                .map(|s| score_file(s, &windows, &p, c).score)
                .sum::<f64>()
        })
        .fold(f64::MIN, f64::max);
    assert!((best - brute).abs() < 1e-9, "{best} vs {brute}");
    let at_t: f64 = files
        .iter()
        .map(|s| score_file(s, &windows, &p, t).score)
        .sum();
    assert!((at_t - best).abs() < 1e-9);
}

#[test]
fn probation_and_sigmoid_constants() {
    assert_eq!(probation(10_320), 750);
    assert_eq!(probation(4032), 604);
    assert_eq!(probation(1243), 186);
    assert!((scaled_sigmoid(-1.0) - 0.9866142981514305).abs() < 1e-15);
    assert_eq!(scaled_sigmoid(3.5), -1.0);
}
