//! The shared vocabulary of aiops.
//!
//! Every stage of the pipeline speaks in the types defined here:
//!
//! * [`SeriesId`] and [`SeriesMeta`] — the identity of a metric series (a stable 64-bit hash of
//!   its source and sorted label set) and what it stands for;
//! * [`SeriesCatalog`] — the concurrent map from id to meta that sources fill and queries read;
//! * [`SampleBatch`] — the Arrow record batch of samples in long format
//!   (`series_id`, `timestamp`, `value`) that flows from ingest through the transport to the
//!   archive and, later, to detection;
//! * [`registry`] — the versioned model registry;
//! * [`incident`] — incidents, their symptom, timeline and ranked root-cause candidates;
//! * [`garbage`] — what counts as garbage in a series (a value far beyond everything it has
//!   shown, in a short run): one rule for detection, forecasting, training and ranking;
//! * [`Selector`] — Prometheus-style label matchers (`up{job="api",code=~"5.."}`) for catalog
//!   queries.
//!
//! `models` depends on nothing else in the workspace: `ingest`, `detect`, `rca` and `api` share
//! types through it, never through each other.
//!
//! It owns the vocabulary and one small file, the model registry (`registry.json`); it never
//! runs tasks, opens sockets or knows how a stage uses its types.

mod anomaly;
mod batch;
mod catalog;
mod error;
pub mod garbage;
pub mod incident;
pub mod json_f64;
pub mod labels;
pub mod queue;
pub mod registry;
mod secret;
mod selector;
mod series;

pub use anomaly::{AlarmReason, AnomalyEvent, service_of};
pub use batch::{SampleBatch, SampleBatchBuilder, StaleMarker, sample_schema, series_runs};
pub use catalog::{CatalogInsert, CatalogView, SeriesCatalog};
pub use error::ModelError;
pub use labels::Labels;
pub use secret::Secret;
pub use selector::{MatchOp, Matcher, Selector};
pub use series::{
    IdHashMap, IdHasher, METRIC_NAME_LABEL, STALE_NAN_BITS, SeriesHasher, SeriesId, SeriesMeta,
    Source, counter_rate, counter_step, is_counter, is_stale_nan,
};
