//! Root-cause analysis: given a symptom's anomaly time and the metric table around it, ranks
//! candidate causes at metric and at service level, each with the evidence a responder can
//! check (baseline, peak, direction, onset, a one-sentence explanation).
//!
//! * [`rank`] — change ranking (moves in the larger of the IQR's and the plain standard
//!   deviation, a unit-free rule for a zero spread), pure and synchronous.
//! * [`graph`] — the call topology (config, `graph.csv`, mesh labels) and the walk that moves
//!   blame from callers to the callees that changed.
//! * [`analyse`] — series around a detection time → aligned table → ranked [`Candidate`]s with
//!   confidences (each one's share of `1 + score`, fitted to nothing).
//! * [`kind`] — the fault kind a candidate looks like (cpu, memory, latency, errors, overload)
//!   from its metrics' names and moves.
//! * [`incident`] — the incident book: policy (symptom series, correlated services), merging,
//!   resolving, feedback, persistence.
//! * [`pagerduty`] — Events API v2 messages, webhook v3 signatures and payloads.
//!
//! Sits after detection in the pipeline: anomaly events and alerts open incidents, which the
//! server's incident task ranks with [`analyse`]; `aiops eval rca` (the `aiops-eval` crate) runs
//! the ranking over labelled fault cases.
//!
//! Owns the incident book's file and the PagerDuty message formats; ranks from the series it
//! is given (it never reads the archive itself, never sends HTTP: the api crate does both).
//!
//! [`Candidate`]: aiops_models::incident::Candidate

pub mod analyse;
pub mod graph;
pub mod incident;
pub mod kind;
pub mod pagerduty;
pub mod rank;

pub use graph::{CallGraph, Edge};
pub use kind::{FaultKind, fault_kind};
pub use rank::{
    Direction, MetricCandidate, RankConfig, ServiceCandidate, lead_explanations, rank_metrics,
    rank_metrics_of, rank_services,
};
