//! Multivariate scoring of one service: the vector of its metrics at one time is scored as a
//! whole, so that a change no single series shows (requests steady, latency a little up, CPU a
//! little down) still stands out.
//!
//! * **Model.** Each metric is standardised with the mean and standard deviation of recent normal
//!   rows; a PCA of those rows (the covariance's
//!   eigenvectors, `linfa-linalg`) keeps the components that explain
//!   [`MultiConfig::variance_kept`] of the variance. A row is scored by its squared prediction
//!   error (SPE, the distance from the principal subspace: a broken correlation) and its
//!   Hotelling T² inside the subspace (an unusual combination along normal directions).
//! * **Calibration.** The model is fitted on the older part of the recent rows and calibrated on
//!   the newer part (out of sample): the logarithms of both statistics there give a mean and a
//!   spread, and a row's tail probability is log-scaled to [0, 1] exactly like the univariate
//!   [`Detector`](crate::Detector), so one threshold means the same for both.
//! * **Refits.** Rows that score below the alert level join the recent rows (a ring); the model
//!   is refitted every [`MultiConfig::refit_rows`] rows. [`ServiceModel::fit_data`] and
//!   [`Fitted::fit`] let the pipeline fit away from the scoring thread and swap the result in.
//!
//! Missing values (NaN) count as "as expected" (standardised 0); a metric that never varied in
//! the recent rows gets a small floor scale, so its first change is visible but bounded.

use std::collections::VecDeque;

use linfa_linalg::eigh::Eigh;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

/// Parameters, one set for every service.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiConfig {
    /// Recent normal rows kept for fitting.
    pub window_rows: usize,
    /// Rows needed before the first fit (and so before the first score).
    pub min_fit_rows: usize,
    /// Rows between refits.
    pub refit_rows: usize,
    /// Share of the standardised variance the kept components explain.
    pub variance_kept: f64,
    /// At most this many components.
    pub max_components: usize,
    /// Score at or above which a row is an alert (and is kept out of the training rows).
    pub alert_score: f64,
    /// A standardised value is clamped to ± this, so one broken metric cannot dominate.
    pub max_z: f64,
    /// The calibration's spread of ln(statistic) is at least this: a few calibration rows
    /// that happen to agree must not make every later row look extreme.
    pub min_log_spread: f64,
    /// Also alert on T² (an extreme along normal directions, e.g. load beyond anything seen).
    /// Off by default: the univariate detectors see those, and with little history T² flags
    /// every new part of a daily cycle.
    pub score_t2: bool,
}

impl Default for MultiConfig {
    fn default() -> Self {
        Self {
            window_rows: 240,
            min_fit_rows: 40,
            refit_rows: 30,
            variance_kept: 0.9,
            max_components: 8,
            alert_score: 0.5,
            max_z: 10.0,
            min_log_spread: 0.5,
            score_t2: false,
        }
    }
}

/// The outcome of one row.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MultiScored {
    /// Calibrated score in [0, 1] (the larger of the SPE and T² scores); 0 before the first fit.
    pub score: f64,
    /// Squared prediction error, per metric.
    pub spe: f64,
    /// Hotelling T², per component.
    pub t2: f64,
    /// The metric that contributes most to the SPE (its index), when the row is scored.
    pub top_metric: Option<usize>,
}

/// A fitted model: standardisation, principal subspace and calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Kept components, one row each, over the standardised metrics.
    components: Vec<Vec<f64>>,
    /// Variance of the training rows along each kept component.
    variances: Vec<f64>,
    /// Mean and standard deviation of ln(SPE) and ln(T²) on the calibration rows.
    spe_log: (f64, f64),
    t2_log: (f64, f64),
}

fn tail_score(log_stat: f64, (mean, std): (f64, f64), min_spread: f64) -> f64 {
    let z = ((log_stat - mean) / std.max(min_spread)).max(0.0);
    // Same log scaling as the univariate detector: tail probability 1e-5 scores 0.5.
    crate::score::log_score(crate::score::tail_probability(z))
}

impl Fitted {
    /// Fits a model on `rows` (oldest first): the older two thirds fit, the newest third
    /// calibrates. `None` when there are too few rows.
    pub fn fit(rows: &Array2<f64>, cfg: &MultiConfig) -> Option<Self> {
        let (n, d) = rows.dim();
        if n < 6 || d == 0 {
            return None;
        }
        let n_fit = (n * 2 / 3).max(3);
        let train = rows.slice(ndarray::s![..n_fit, ..]);
        let mut mean = vec![0.0; d];
        let mut scale = vec![0.0; d];
        for j in 0..d {
            let col: Vec<f64> = train
                .column(j)
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if col.is_empty() {
                mean[j] = 0.0;
                scale[j] = 1.0;
                continue;
            }
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / col.len() as f64;
            mean[j] = m;
            scale[j] = var.sqrt().max(1e-3 * m.abs()).max(1e-9);
        }
        let mut fitted = Self {
            mean,
            scale,
            components: Vec::new(),
            variances: Vec::new(),
            spe_log: (0.0, 1.0),
            t2_log: (0.0, 1.0),
        };
        let z = Array2::from_shape_fn((n_fit, d), |(i, j)| {
            fitted.standardise(j, train[[i, j]], cfg)
        });
        let total: f64 = z.var_axis(Axis(0), 0.0).sum();
        let k_max = cfg
            .max_components
            .min(d.saturating_sub(1))
            .min(n_fit.saturating_sub(2));
        if k_max >= 1 && total > 0.0 {
            // Principal axes: eigenvectors of the covariance of the standardised rows (exact,
            // deterministic, and cheap at the tens of metrics a service has).
            let centred = &z - &z.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
            let cov = centred.t().dot(&centred) / n_fit as f64;
            if let Ok((values, vectors)) = cov.eigh() {
                let mut order: Vec<usize> = (0..d).collect();
                order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
                let mut kept = 0.0;
                for &i in order.iter().take(k_max) {
                    let v = values[i];
                    if kept >= cfg.variance_kept * total || v.is_nan() || v <= 1e-9 {
                        break;
                    }
                    fitted.components.push(vectors.column(i).to_vec());
                    fitted.variances.push(v);
                    kept += v;
                }
            }
        }
        // Calibrate on the newer rows, which the fit has not seen.
        let calib = rows.slice(ndarray::s![n_fit.., ..]);
        let (mut spe, mut t2) = (Vec::new(), Vec::new());
        for row in calib.axis_iter(Axis(0)) {
            let (s, t, _) = fitted.statistics(row.as_slice().unwrap_or(&row.to_vec()), cfg);
            spe.push((s + 1e-9).ln());
            t2.push((t + 1e-9).ln());
        }
        fitted.spe_log = mean_std(&spe);
        fitted.t2_log = mean_std(&t2);
        Some(fitted)
    }

    fn standardise(&self, j: usize, v: f64, cfg: &MultiConfig) -> f64 {
        if v.is_finite() {
            ((v - self.mean[j]) / self.scale[j]).clamp(-cfg.max_z, cfg.max_z)
        } else {
            0.0
        }
    }

    /// SPE per metric, T² per component and the metric with the largest residual.
    fn statistics(&self, row: &[f64], cfg: &MultiConfig) -> (f64, f64, Option<usize>) {
        let d = self.mean.len();
        let z: Vec<f64> = (0..d)
            .map(|j| self.standardise(j, row.get(j).copied().unwrap_or(f64::NAN), cfg))
            .collect();
        let mut resid = z.clone();
        let mut t2 = 0.0;
        for (c, &var) in self.components.iter().zip(&self.variances) {
            let t: f64 = c.iter().zip(&z).map(|(a, b)| a * b).sum();
            t2 += t * t / var.max(1e-9);
            for (r, a) in resid.iter_mut().zip(c) {
                *r -= t * a;
            }
        }
        let spe = resid.iter().map(|r| r * r).sum::<f64>() / d as f64;
        let top = resid
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(j, _)| j);
        let t2 = if self.components.is_empty() {
            0.0
        } else {
            t2 / self.components.len() as f64
        };
        (spe, t2, top)
    }

    /// Scores one row (values in the model's metric order; NaN = missing).
    pub fn score(&self, row: &[f64], cfg: &MultiConfig) -> MultiScored {
        let (spe, t2, top) = self.statistics(row, cfg);
        let mut score = tail_score((spe + 1e-9).ln(), self.spe_log, cfg.min_log_spread);
        if cfg.score_t2 && !self.components.is_empty() {
            score = score.max(tail_score(
                (t2 + 1e-9).ln(),
                self.t2_log,
                cfg.min_log_spread,
            ));
        }
        MultiScored {
            score,
            spe,
            t2,
            top_metric: top,
        }
    }

    /// Kept components.
    pub fn components(&self) -> usize {
        self.components.len()
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 1.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// The online model of one service: recent normal rows and the current fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceModel {
    cfg: MultiConfig,
    dims: usize,
    /// Kept as `f32` (seven significant digits are plenty for a standardisation and a PCA):
    /// at 64 metrics and 240 rows a service's window is 61 KB instead of 123 KB. Checkpoints
    /// hold them as before (`f64`, NaN as null), so older ones still load.
    #[serde(with = "nan_as_null::rows32")]
    recent: VecDeque<Box<[f32]>>,
    since_fit: usize,
    fitted: Option<Fitted>,
    /// A refit was handed to a fitting thread and has not come back (see
    /// [`ServiceModel::take_fit`]).
    #[serde(skip)]
    pending: bool,
}

impl ServiceModel {
    /// A model over `dims` metrics.
    pub fn new(cfg: MultiConfig, dims: usize) -> Self {
        Self {
            cfg,
            dims,
            recent: VecDeque::with_capacity(cfg.window_rows),
            since_fit: 0,
            fitted: None,
            pending: false,
        }
    }

    /// Metrics per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The current fit, if any.
    pub fn fitted(&self) -> Option<&Fitted> {
        self.fitted.as_ref()
    }

    /// True when enough rows have arrived since the last fit that a refit is due.
    pub fn refit_due(&self) -> bool {
        let due = if self.fitted.is_some() {
            self.cfg.refit_rows
        } else {
            self.cfg.min_fit_rows
        };
        self.recent.len() >= self.cfg.min_fit_rows && self.since_fit >= due.max(1)
    }

    /// The recent normal rows as a matrix, for a fit elsewhere.
    /// Heap bytes held (recent rows and the fit), estimated.
    pub fn heap_bytes(&self) -> usize {
        let rows = self.recent.len() * (16 + self.dims * 4);
        let fit = self.fitted.as_ref().map_or(0, |f| {
            (f.mean.len() + f.scale.len() + f.variances.len()) * 8
                + f.components.iter().map(|c| 24 + c.len() * 8).sum::<usize>()
        });
        rows + fit
    }

    pub fn fit_data(&self) -> Array2<f64> {
        let mut m = Array2::from_elem((self.recent.len(), self.dims), f64::NAN);
        for (i, r) in self.recent.iter().enumerate() {
            for (j, v) in r.iter().enumerate() {
                m[[i, j]] = f64::from(*v);
            }
        }
        m
    }

    /// Installs a fit made from [`fit_data`](Self::fit_data).
    pub fn install(&mut self, fitted: Option<Fitted>) {
        if fitted.is_some() {
            self.fitted = fitted;
        }
        self.since_fit = 0;
    }

    /// Scores a row, learns from it, and refits in line when due.
    pub fn update(&mut self, row: &[f64]) -> MultiScored {
        let scored = self.observe(row);
        if self.refit_due() {
            let fitted = Fitted::fit(&self.fit_data(), &self.cfg);
            self.install(fitted);
        }
        scored
    }

    /// A refit for a fitting thread, when one is due and none is out: the rows to fit and the
    /// parameters ([`Fitted::fit`]); the result comes back through
    /// [`install_background`](Self::install_background). Scoring goes on with the current fit
    /// meanwhile.
    pub fn take_fit(&mut self) -> Option<(Array2<f64>, MultiConfig)> {
        if self.pending || !self.refit_due() {
            return None;
        }
        self.pending = true;
        Some((self.fit_data(), self.cfg))
    }

    /// Installs a fit made elsewhere from [`take_fit`](Self::take_fit)'s rows, unless the model
    /// started over meanwhile (a new member changes the rows' width) or none was asked for.
    /// `None` (the fitting thread was busy) lets the next row ask again.
    pub fn install_background(&mut self, fitted: Option<Option<Fitted>>, dims: usize) {
        if !self.pending || dims != self.dims {
            return;
        }
        self.pending = false;
        if let Some(fitted) = fitted {
            self.install(fitted);
        }
    }

    /// Scores a row and learns from it; refits are left to the caller ([`Self::take_fit`]).
    pub fn observe(&mut self, row: &[f64]) -> MultiScored {
        let scored = self.score_only(row);
        self.learn(row, &scored);
        scored
    }

    /// Scores a row without learning from it.
    pub fn score_only(&self, row: &[f64]) -> MultiScored {
        self.fitted
            .as_ref()
            .map(|f| f.score(row, &self.cfg))
            .unwrap_or_default()
    }

    /// Adds a scored row to the training rows unless it was an alert.
    pub fn learn(&mut self, row: &[f64], scored: &MultiScored) {
        self.since_fit += 1;
        if scored.score >= self.cfg.alert_score {
            return;
        }
        if self.recent.len() == self.cfg.window_rows.max(1) {
            self.recent.pop_front();
        }
        // (A value beyond f32's range becomes infinite: missing, like NaN.)
        let r: Box<[f32]> = (0..self.dims)
            .map(|j| row.get(j).map_or(f32::NAN, |&v| v as f32))
            .collect();
        self.recent.push_back(r);
    }
}

/// JSON has no NaN: missing values are written as `null` and read back as NaN.
pub(crate) mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    fn out(v: &f64) -> Option<f64> {
        v.is_finite().then_some(*v)
    }

    /// Rows kept as `f32`, written and read as rows of optional `f64` (null for NaN): the
    /// bytes checkpoints held when rows were `f64`, so older ones still load.
    pub mod rows32 {
        use super::*;
        use std::collections::VecDeque;

        pub fn serialize<S: Serializer>(
            rows: &VecDeque<Box<[f32]>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(
                rows.iter()
                    .map(|r| r.iter().map(|&v| out(&f64::from(v))).collect::<Vec<_>>()),
            )
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<VecDeque<Box<[f32]>>, D::Error> {
            let rows = Vec::<Vec<Option<f64>>>::deserialize(d)?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| v.map_or(f32::NAN, |v| v as f32))
                        .collect()
                })
                .collect())
        }
    }

    /// The same for `(time, value)` pairs.
    pub mod pairs {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[(i64, f64)], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|(t, x)| (*t, out(x))))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(i64, f64)>, D::Error> {
            let v = Vec::<(i64, Option<f64>)>::deserialize(d)?;
            Ok(v.into_iter()
                .map(|(t, x)| (t, x.unwrap_or(f64::NAN)))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize, k: usize) -> f64 {
        ((((i * 7919 + k * 104_729) % 1009) as f64) / 1009.0 - 0.5) * 0.2
    }

    /// Two metrics that move together (load and CPU), and one independent.
    fn normal_row(i: usize) -> Vec<f64> {
        let load = 100.0 + 20.0 * ((i as f64) / 15.0).sin() + noise(i, 0) * 10.0;
        vec![load, 0.5 * load + noise(i, 1) * 5.0, 3.0 + noise(i, 2)]
    }

    #[test]
    fn rows_kept_as_f32_read_checkpoints_written_when_they_were_f64() {
        /// A service model as checkpoints held it before (rows of f64, NaN as null).
        #[derive(Serialize)]
        struct Before {
            cfg: MultiConfig,
            dims: usize,
            recent: Vec<Vec<Option<f64>>>,
            since_fit: usize,
            fitted: Option<Fitted>,
        }
        let rows: Vec<Vec<f64>> = (0..50).map(normal_row).collect();
        let before = Before {
            cfg: MultiConfig::default(),
            dims: 3,
            // Every fifth row misses its last metric (null).
            recent: rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.iter()
                        .enumerate()
                        .map(|(j, &v)| (j < 2 || i % 5 != 0).then_some(v))
                        .collect()
                })
                .collect(),
            since_fit: 7,
            fitted: None,
        };
        let bytes = postcard::to_stdvec(&before).expect("serialises");
        let m: ServiceModel = postcard::from_bytes(&bytes).expect("an older checkpoint loads");
        assert_eq!(m.dims(), 3);
        let data = m.fit_data();
        assert_eq!(data.nrows(), 50);
        assert!((data[[10, 0]] - rows[10][0]).abs() < 1e-4 * rows[10][0].abs());
        assert!(data[[10, 2]].is_nan() && data[[11, 2]].is_finite());
        // What it writes reads back the same, in the same layout.
        let again = postcard::to_stdvec(&m).expect("serialises");
        let back: ServiceModel = postcard::from_bytes(&again).expect("loads");
        assert_eq!(back.fit_data().shape(), data.shape());
        assert!(
            back.fit_data()
                .iter()
                .zip(data.iter())
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
        );
        let json: ServiceModel =
            serde_json::from_str(&serde_json::to_string(&m).expect("json")).expect("json loads");
        assert_eq!(json.fit_data().nrows(), 50);
    }

    #[test]
    fn a_broken_correlation_scores_high_though_each_value_is_in_range() {
        let cfg = MultiConfig::default();
        let mut m = ServiceModel::new(cfg, 3);
        let mut max_quiet: f64 = 0.0;
        for i in 0..400 {
            let s = m.update(&normal_row(i));
            if i > 100 {
                max_quiet = max_quiet.max(s.score);
            }
        }
        // Load at its low, CPU at its high: both values seen before, the pair never.
        let broken = m.update(&[82.0, 60.0, 3.0]);
        assert!(broken.score > 0.5, "{broken:?}");
        assert!(max_quiet < 0.5, "{max_quiet}");
        assert!(m.fitted().is_some_and(|f| f.components() >= 1));
    }

    #[test]
    fn missing_values_and_constant_metrics_are_handled() {
        let mut m = ServiceModel::new(MultiConfig::default(), 3);
        for i in 0..200 {
            let mut r = normal_row(i);
            r[2] = 7.0; // constant
            if i % 5 == 0 {
                r[0] = f64::NAN;
            }
            let s = m.update(&r);
            assert!(
                s.score.is_finite() && (0.0..=1.0).contains(&s.score),
                "{s:?}"
            );
        }
        let s = m.update(&[f64::NAN, f64::NAN, f64::NAN]);
        assert!(s.score < 0.5, "{s:?}");
    }

    #[test]
    fn nothing_scores_before_the_first_fit() {
        let mut m = ServiceModel::new(MultiConfig::default(), 2);
        for i in 0..39 {
            assert_eq!(m.update(&[i as f64 * 1e6, 1.0]).score, 0.0);
        }
    }
}
