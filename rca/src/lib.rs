//! Root-cause analysis: given a symptom's anomaly time and the metric table around it, ranks
//! candidate causes at metric and at service level, each with the evidence a responder can
//! check (baseline, peak, direction, onset, a one-sentence explanation).
//!
//! * [`rank`] — robust change ranking (BARO's RobustScorer with a unit-free rule for a zero
//!   spread), pure and synchronous.
//! * [`eval`] — AC@k / Avg@k over labelled cases and a seeded random ranker.
//!
//! Sits after detection in the pipeline: `aiops eval rca` runs it over labelled fault cases.
//! Incidents, the triage API and PagerDuty/Alertmanager are still to come (issue 6).

pub mod eval;
pub mod graph;
pub mod rank;

pub use graph::{CallGraph, Edge};
pub use rank::{
    Direction, MetricCandidate, RankConfig, ServiceCandidate, rank_metrics, rank_services,
};
