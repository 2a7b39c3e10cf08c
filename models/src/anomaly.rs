//! Anomaly events: what detection hands to people and to root-cause analysis.

use serde::{Deserialize, Serialize};

use crate::{SeriesId, SeriesMeta};

/// An interval during which one series behaved anomalously. Alerts close together form one
/// event; it ends once the series has been quiet for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    /// Stable id: the series and the start.
    pub id: String,
    /// The series.
    pub series_id: SeriesId,
    /// Its metric name.
    pub metric: String,
    /// The service it belongs to (its `service`, `app`, `job` or `cloud_role_name` label), if any.
    pub service: Option<String>,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// First anomalous sample, Unix ms.
    pub start_ms: i64,
    /// Sample with the highest score, Unix ms.
    pub peak_ms: i64,
    /// Last anomalous sample, Unix ms.
    pub last_ms: i64,
    /// When the event closed (quiet long enough), Unix ms; `None` while open.
    pub end_ms: Option<i64>,
    /// Highest score.
    #[serde(with = "crate::json_f64")]
    pub score: f64,
    /// Value observed at the peak.
    #[serde(with = "crate::json_f64")]
    pub observed: f64,
    /// Value expected at the peak.
    #[serde(with = "crate::json_f64")]
    pub expected: f64,
    /// Band around the expectation at the peak.
    #[serde(with = "crate::json_f64")]
    pub lower: f64,
    /// Band around the expectation at the peak.
    #[serde(with = "crate::json_f64")]
    pub upper: f64,
    /// How rare the series' state was: the smallest tail probability of its continuous score
    /// while the event was open (see the README, Anomaly detection). 1 when unknown (service
    /// events, events recorded before it existed).
    #[serde(with = "crate::json_f64", default = "unknown_p")]
    pub p_value: f64,
}

fn unknown_p() -> f64 {
    1.0
}

/// The service a series belongs to, from the labels that usually name it.
pub fn service_of(meta: &SeriesMeta) -> Option<String> {
    ["service", "app", "cloud_role_name", "job"]
        .iter()
        .find_map(|l| meta.label(l))
        .map(str::to_owned)
}
