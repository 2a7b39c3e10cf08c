//! Anomaly scoring and load forecasting for aiops.
//!
//! * [`Detector`] — per-series online anomaly scoring.
//! * [`autoscale`] — replay of real traffic through a model of the HPA, reactive vs predictive.
//! * [`backtest`] — rolling-origin evaluation of the forecaster against seasonal naive.
//! * [`forecast`] — per-series online load forecasting with quantiles (predictive scaling).
//! * [`count`] — counters of few events per sample scored by their counts' Poisson tails.
//! * [`multi`] — multivariate scoring of a service's metrics as one vector (PCA).
//! * [`cases`] — labelled fault cases (RCAEval layout) and the detection protocol of rca.md §5.
//! * [`scaling`] — predictive scaling targets: a workload's load, forecast and served to the HPA.
//! * [`train`] — seasonal profiles and calibration fitted from the archive (polars).
//! * [`published`] — what detection publishes for readers (events, top scores, counters,
//!   scaling), so that the API never waits for scoring.
//! * [`checkpoint`] — compact, checksummed checkpoints of the detection state, written a slice
//!   at a time.
//! * [`replay`] — what a sensitivity would have raised: archived samples replayed through fresh
//!   detectors (`aiops eval backtest`).
//! * [`fit`] — refits of services' multivariate models on a thread of their own.
//! * [`warm`] — warming detectors of series with history, in the background, bounded.
//! * [`nab`] — the Numenta Anomaly Benchmark corpus and a faithful re-implementation of its
//!   scorer, used by `aiops eval nab`.
//!
//! Pure compute, synchronous, no runtime: the pipeline calls it from its stages.

pub mod autoscale;
pub mod backtest;
pub mod cases;
pub mod checkpoint;
pub mod count;
mod error;
pub mod fit;
pub mod forecast;
pub mod multi;
pub mod nab;
mod prefetch;
pub mod published;
pub mod replay;
pub mod scaling;
mod score;
pub mod stage;
pub mod train;
pub mod warm;

pub use error::DetectError;
pub use score::{Detector, DetectorConfig, RankState, Scored, rank_score_of};
pub use stage::{DetectConfig, DetectState};
