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
    /// Why it alarmed: which of the detector's alarms opened the event (`None` for events
    /// recorded before it was kept, and while an event opened below the alert level has not
    /// alarmed yet).
    #[serde(default)]
    pub reason: Option<AlarmReason>,
}

/// Which of the detector's alarms fired: what a responder checks first. Each has its share
/// of the series' `sensitivity` (see the README, Anomaly detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmReason {
    /// The series is more surprised than it usually is: the short average of its surprise
    /// against the prediction (level, time of day, day of week) is in its rare tail.
    Surprise,
    /// A value far beyond the range seen so far, and rare by the range's own tail.
    Range,
    /// A count of few events per sample (errors, restarts) rare by its Poisson tail.
    Count,
    /// The level has drifted from its slow baseline further than it wanders (a slow ramp).
    Drift,
    /// The series moves much more or much less than it did (a frozen or a flapping gauge).
    Steps,
    /// A spell of large steps far above their usual share (a latency that starts to jump).
    Burst,
    /// The series has left the day's shape for hours (traffic at a third of its usual).
    DayShape,
    /// The service's metrics together are unusual (its multivariate model), not one series.
    Service,
}

impl AlarmReason {
    /// Every reason, in the order above (`reason as usize` is its place).
    pub const ALL: [AlarmReason; 8] = [
        Self::Surprise,
        Self::Range,
        Self::Count,
        Self::Drift,
        Self::Steps,
        Self::Burst,
        Self::DayShape,
        Self::Service,
    ];

    /// The name in JSON and in results files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Surprise => "surprise",
            Self::Range => "range",
            Self::Count => "count",
            Self::Drift => "drift",
            Self::Steps => "steps",
            Self::Burst => "burst",
            Self::DayShape => "day_shape",
            Self::Service => "service",
        }
    }

    /// A few words for people: incident notes, pages, the console.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Surprise => "far from its expected value",
            Self::Range => "beyond the range seen",
            Self::Count => "a rare count of events",
            Self::Drift => "its level drifted",
            Self::Steps => "moves much more or less than it did",
            Self::Burst => "a burst of large steps",
            Self::DayShape => "left the day's usual shape",
            Self::Service => "its service's metrics together",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_named_alike_in_json_and_text() {
        for r in AlarmReason::ALL {
            let json = serde_json::to_string(&r).expect("serialises");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(
                serde_json::from_str::<AlarmReason>(&json).expect("reads"),
                r
            );
            assert!(!r.describe().is_empty());
            assert_eq!(AlarmReason::ALL[r as usize], r);
        }
    }

    #[test]
    fn an_event_recorded_before_reasons_reads_without_one() {
        let line = r#"{"id":"1-5","series_id":"0000000000000001","metric":"m","service":null,"labels":[],
            "start_ms":5,"peak_ms":5,"last_ms":5,"end_ms":null,"score":0.9,"observed":2.0,
            "expected":1.0,"lower":0.5,"upper":1.5,"p_value":0.001}"#;
        let ev: AnomalyEvent = serde_json::from_str(line).expect("reads");
        assert_eq!((ev.reason, ev.p_value), (None, 0.001));
        let mut ev = ev;
        ev.reason = Some(AlarmReason::Drift);
        let json = serde_json::to_string(&ev).expect("writes");
        assert!(json.contains(r#""reason":"drift""#), "{json}");
        assert_eq!(
            serde_json::from_str::<AnomalyEvent>(&json).expect("reads"),
            ev
        );
    }
}
