//! TSB-AD's threshold-free metrics (Liu & Paparrizos, NeurIPS 2024; PyPI `tsb-ad` 1.5), written
//! from their definitions so that `aiops eval nab` prints the numbers the benchmark prints:
//!
//! * **AUC-PR**: average precision over every distinct score (scikit-learn's
//!   `average_precision_score`).
//! * **VUS-PR**: the volume under the range-aware precision–recall surface — for each buffer
//!   width `w = 0..=sw` the labels are extended by `sqrt(1 − d/w)` ramps `w/2` either side of each
//!   anomaly range, precision and an existence-weighted range recall are taken at 250 thresholds
//!   (scores at evenly spaced ranks), and the average precisions are averaged over `w`
//!   (TSB-AD's `opt` variant).
//! * [`sliding_window`]: the buffer `sw`, the strongest autocorrelation period between lags 6
//!   and 303 (125 when there is none), TSB-AD's `find_length_rank(data, rank=1)`.
//!
//! `scripts/check_tsbad_metrics.py` checks these against the package on the shared files.

/// Thresholds of the VUS surface (TSB-AD's `thre`).
pub const VUS_THRESHOLDS: usize = 250;

/// The autocorrelation period TSB-AD uses as the sliding window and VUS buffer.
pub fn sliding_window(values: &[f64]) -> usize {
    const BASE: usize = 3;
    const NLAGS: usize = 400;
    let x = &values[..values.len().min(20_000)];
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n.max(1) as f64;
    let d: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let denom: f64 = d.iter().map(|v| v * v).sum();
    // acf(lag) for lag = BASE..=NLAGS; NaN for a constant series (as statsmodels gives).
    let acf: Vec<f64> = (BASE..=NLAGS)
        .map(|lag| {
            if lag >= n {
                return 0.0;
            }
            let num: f64 = d[..n - lag].iter().zip(&d[lag..]).map(|(a, b)| a * b).sum();
            num / denom
        })
        .collect();
    // Strict local maxima (scipy's argrelextrema, np.greater, ends excluded).
    let best = (1..acf.len().saturating_sub(1))
        .filter(|&i| acf[i] > acf[i - 1] && acf[i] > acf[i + 1])
        .fold(None::<usize>, |best, i| match best {
            Some(b) if acf[b] > acf[i] => Some(b),
            _ => Some(i),
        });
    match best {
        Some(i) if (3..=300).contains(&i) => i + BASE,
        _ => 125,
    }
}

/// scikit-learn's average precision of `scores` against 0/1 `labels` (NaN without positives).
pub fn auc_pr(labels: &[u8], scores: &[f64]) -> f64 {
    let positives = labels.iter().filter(|&&l| l > 0).count();
    if positives == 0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] > 0 {
            tp += 1;
        } else {
            fp += 1;
        }
        let tie_continues = order
            .get(k + 1)
            .is_some_and(|&j| scores[j].total_cmp(&scores[i]).is_eq());
        if !tie_continues {
            let recall = tp as f64 / positives as f64;
            ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
            last_recall = recall;
        }
    }
    ap
}

/// Inclusive index ranges where `labels` is 1.
fn ranges(labels: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate() {
        match (l > 0, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, labels.len() - 1));
    }
    out
}

/// The ranges widened by `window / 2` either side, overlapping ones merged (TSB-AD's
/// `new_sequence`).
fn widened(seq: &[(usize, usize)], window: usize, len: usize) -> Vec<(usize, usize)> {
    let h = window / 2;
    let mut out = Vec::new();
    let Some(first) = seq.first() else {
        return out;
    };
    let mut a = first.0.saturating_sub(h);
    for pair in seq.windows(2) {
        if pair[0].1 + h < pair[1].0.saturating_sub(h) {
            out.push((a, pair[0].1 + h));
            a = pair[1].0.saturating_sub(h);
        }
    }
    out.push((a, (seq[seq.len() - 1].1 + h).min(len - 1)));
    out
}

/// TSB-AD's VUS-PR (`generate_curve(labels, scores, sw, 'opt', 250)`); NaN without positives.
pub fn vus_pr(labels: &[u8], scores: &[f64], sw: usize) -> f64 {
    let n = scores.len();
    let seq = ranges(labels);
    if seq.is_empty() || n == 0 {
        return f64::NAN;
    }
    let positives = labels.iter().filter(|&&l| l > 0).count() as f64;
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // The thresholds (numpy's linspace over ranks, truncated) and what does not depend on w.
    let step = (n - 1) as f64 / (VUS_THRESHOLDS - 1) as f64;
    let thresholds: Vec<f64> = (0..VUS_THRESHOLDS)
        .map(|j| {
            let rank = if j == VUS_THRESHOLDS - 1 {
                n - 1
            } else {
                (j as f64 * step) as usize
            };
            sorted[rank]
        })
        .collect();
    let n_pred: Vec<f64> = thresholds
        .iter()
        .map(|&t| scores.iter().filter(|&&s| s >= t).count() as f64)
        .collect();
    let tp_inside: Vec<f64> = thresholds
        .iter()
        .map(|&t| {
            seq.iter()
                .map(|&(a, b)| scores[a..=b].iter().filter(|&&s| s >= t).count())
                .sum::<usize>() as f64
        })
        .collect();
    let mut ext = vec![0.0f64; n];
    let mut total = 0.0;
    for w in 0..=sw {
        // Labels extended by ramps of w / 2 either side (summed where ramps meet, at most 1).
        ext.iter_mut()
            .zip(labels)
            .for_each(|(e, &l)| *e = f64::from(l));
        let h = w / 2;
        for &(s, e) in &seq {
            let after = (e + h + 1).min(n);
            for (x, v) in ext.iter_mut().enumerate().take(after).skip(e + 1) {
                *v += (1.0 - (x - e) as f64 / w as f64).sqrt();
            }
            let before = s.saturating_sub(h);
            for (x, v) in ext.iter_mut().enumerate().take(s).skip(before) {
                *v += (1.0 - (s - x) as f64 / w as f64).sqrt();
            }
        }
        let segments = widened(&seq, w, n);
        let ramp: Vec<(usize, f64)> = segments
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|&i| labels[i] == 0)
            .map(|i| (i, ext[i].min(1.0)))
            .filter(|&(_, e)| e > 0.0)
            .collect();
        let seg_max: Vec<f64> = segments
            .iter()
            .map(|&(a, b)| {
                scores[a..=b]
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        let (mut ap, mut last_tpr) = (0.0, 0.0);
        for (j, &t) in thresholds.iter().enumerate() {
            let r: f64 = ramp
                .iter()
                .filter(|&&(i, _)| scores[i] >= t)
                .map(|&(_, e)| e)
                .sum();
            let existence = seg_max.iter().filter(|&&m| m >= t).count() as f64;
            let tp = tp_inside[j] + r;
            let p_new = positives + r / 2.0;
            let recall = (tp / p_new).min(1.0);
            let tpr = recall * existence / segments.len() as f64;
            let precision = tp / n_pred[j];
            ap += (tpr - last_tpr) * precision;
            last_tpr = tpr;
        }
        total += ap;
    }
    total / (sw + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_score_has_full_average_precision_and_a_random_one_its_base_rate() {
        let labels: Vec<u8> = (0..1000)
            .map(|i| u8::from((400..450).contains(&i)))
            .collect();
        let perfect: Vec<f64> = labels.iter().map(|&l| f64::from(l)).collect();
        assert!((auc_pr(&labels, &perfect) - 1.0).abs() < 1e-12);
        let v = vus_pr(&labels, &perfect, 20);
        assert!(v > 0.8 && v <= 1.0, "{v}");
        let mut x = 12345u64;
        let random: Vec<f64> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let ap = auc_pr(&labels, &random);
        assert!((ap - 0.05).abs() < 0.04, "{ap}");
        assert!(vus_pr(&labels, &random, 20) < 0.2);
        // Constant scores: every point predicted at every threshold.
        let flat = vec![0.3; 1000];
        assert!((auc_pr(&labels, &flat) - 0.05).abs() < 1e-12);
        assert!(auc_pr(&[0; 10], &[0.0; 10]).is_nan());
    }

    #[test]
    fn the_sliding_window_is_the_autocorrelation_period() {
        let daily: Vec<f64> = (0..5000)
            .map(|i| (i as f64 * std::f64::consts::TAU / 48.0).sin())
            .collect();
        assert_eq!(sliding_window(&daily), 48);
        assert_eq!(sliding_window(&[1.0; 500]), 125, "constant: no period");
    }

    #[test]
    fn ranges_are_widened_and_merged_like_tsb_ad() {
        let seq = [(10, 20), (30, 40), (100, 110)];
        assert_eq!(widened(&seq, 20, 200), vec![(0, 50), (90, 120)]);
        assert_eq!(widened(&seq, 0, 200), seq.to_vec());
        assert_eq!(ranges(&[1, 1, 0, 1]), vec![(0, 1), (3, 3)]);
    }
}
