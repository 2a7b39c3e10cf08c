//! Evaluation and benchmarks of aiops — what the README's numbers come from.
//!
//! * [`nab`] — the Numenta Anomaly Benchmark corpus, a faithful re-implementation of its scorer,
//!   TSB-AD's VUS-PR and AUC-PR, and leave-one-category-out cross-validation (`aiops eval nab`).
//! * [`cases`] — labelled fault cases (RCAEval layout) and the detection protocol of rca.md §5
//!   (`aiops eval cases`).
//! * [`rca`] — AC@k / Avg@k over cases, a seeded random ranker, the confidence calibration's fit
//!   (`aiops eval rca`).
//! * [`forecast`] — rolling-origin evaluation of the forecaster against seasonal naive
//!   (`aiops eval forecast`).
//! * [`autoscale`] — real traffic replayed through a model of the HPA, reactive vs predictive
//!   (`aiops eval autoscale`).
//! * [`bench`] — `aiops bench …`: throughput and memory against a baseline measured in the same
//!   run (remote_write, detection, Kafka, cardinality, request bodies, disk).
//! * [`csv`] — the one CSV reader of all of the above.
//! * [`run`] and [`args`] — the `aiops eval …` commands, which print JSON reports.
//!
//! Owns the measuring, never the measured: every score comes from the production crates
//! (`aiops-detect`, `aiops-rca`) called as the server calls them, and nothing in production
//! depends on this crate. Detectors never see labels: labels are read here, after scoring.

pub mod args;
pub mod autoscale;
pub mod bench;
pub mod cases;
mod command;
pub mod csv;
mod error;
pub mod forecast;
pub mod nab;
pub mod paged;
pub mod rca;

pub use args::{BacktestArgs, EvalArgs};
pub use command::{ReplaySettings, run};
pub use error::EvalError;
