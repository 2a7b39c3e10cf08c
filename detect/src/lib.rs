//! Anomaly scoring (and, later, forecasting) for aiops.
//!
//! * [`Detector`] — per-series online anomaly scoring.
//! * [`nab`] — the Numenta Anomaly Benchmark corpus and a faithful re-implementation of its
//!   scorer, used by `aiops eval nab`.
//!
//! Pure compute, synchronous, no runtime: the pipeline calls it from its stages.

mod error;
pub mod nab;
mod score;
pub mod stage;

pub use error::DetectError;
pub use score::{Detector, DetectorConfig, Scored};
pub use stage::{DetectConfig, DetectState};
