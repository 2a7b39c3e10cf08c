//! Anomaly scoring (and, later, forecasting) for aiops.
//!
//! * [`nab`] — the Numenta Anomaly Benchmark corpus and a faithful re-implementation of its
//!   scorer, used by `aiops eval nab`.
//!
//! Pure compute, synchronous, no runtime: the pipeline calls it from its stages.

mod error;
pub mod nab;

pub use error::DetectError;
