//! Anomaly scoring and load forecasting for aiops.
//!
//! * [`Detector`] — per-series online anomaly scoring.
//! * [`forecast`] — per-series online load forecasting with quantiles (predictive scaling).
//! * [`multi`] — multivariate scoring of a service's metrics as one vector (PCA).
//! * [`scaling`] — predictive scaling targets: a workload's load, forecast and served to the HPA.
//! * [`train`] — seasonal profiles and calibration fitted from the archive.
//! * [`registered`] — the active registered detector parameters and trained profiles.
//! * [`published`] — what detection publishes for readers (events, top scores, counters,
//!   scaling), so that the API never waits for scoring.
//! * [`replay`] — what a sensitivity would have raised: archived samples replayed through fresh
//!   detectors (`aiops eval backtest`).
//! * [`fit`] — refits of services' multivariate models on a thread of their own.
//! * [`warm`] — warming detectors of series with history, in the background, bounded.
//!
//! Owns the detection state (per-series detectors, service models, scaling targets, events)
//! and its checkpoints and event log under `data_dir/detect/`. Synchronous: scoring runs on a
//! thread of its own (the stage) or a Kafka worker's, never on the async runtime, and readers
//! see only what [`published`] publishes. It never opens sockets, never reads the archive
//! except through the history readers it is handed, and never knows the labels an evaluation
//! scores it with (`aiops-eval` does).

pub mod derived;
mod error;
pub mod fit;
pub mod forecast;
pub mod multi;
mod prefetch;
pub mod published;
mod reading;
pub mod registered;
pub mod replay;
pub mod scaling;
mod score;
pub mod stage;
pub mod train;
pub mod warm;

pub use error::DetectError;
pub use score::{Detector, DetectorConfig, RankState, Scored, p_value_of_rank, rank_score_of};
pub use stage::{DetectConfig, DetectState};
