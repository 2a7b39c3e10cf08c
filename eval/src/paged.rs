//! The incident a responder is paged for: a case replayed through the product's own chain —
//! one detector per column, anomaly events opened and closed as the detection stage does
//! (`event_score`, `event_quiet_secs`), and the incident book's correlation rule (anomalies on
//! `min_services` services within `window_secs` open an incident; quiet ones resolve) — and the
//! detection time of the latest incident opened: what `aiops eval rca --detect` ranks from.
//!
//! The case's last row is "now": when the data ends, the incident on the responder's screen
//! is the one opened last; incidents that opened and resolved earlier (a blip in the normal
//! rows, the seam where a data set joined two recordings) are history.

use aiops_detect::{DetectConfig, Detector, DetectorConfig};
use aiops_models::{AnomalyEvent, SeriesId};
use aiops_rca::CallGraph;
use aiops_rca::incident::{IncidentBook, IncidentConfig};

use crate::cases::{Case, learning_rows, service_of};

/// The detection time (Unix s) of the latest incident the replay of `case` opens, or None
/// when none opens. Detectors learn the case's first [`learning_rows`] rows (NAB's
/// probation) and raise nothing there.
pub fn latest_incident_s(
    case: &Case,
    detector: &DetectorConfig,
    stage: &DetectConfig,
    incidents: &IncidentConfig,
) -> Option<i64> {
    let learning = learning_rows(case.len());
    let mut detectors: Vec<Detector> = case
        .columns
        .iter()
        .map(|_| {
            Detector::new(DetectorConfig {
                learning_samples: learning as u32,
                ..*detector
            })
        })
        .collect();
    // Each column's open event.
    let mut open: Vec<Option<AnomalyEvent>> = case.columns.iter().map(|_| None).collect();
    let no_graph = CallGraph::default();
    let graph = case.graph.as_ref().unwrap_or(&no_graph);
    let mut book = IncidentBook::default();
    let quiet_ms = stage.event_quiet_secs as i64 * 1000;
    for (row, &t_s) in case.times_s.iter().enumerate() {
        let now = t_s * 1000;
        for (j, d) in detectors.iter_mut().enumerate() {
            let v = case.values[j][row];
            let s = d.update(now, v);
            if row < learning || !v.is_finite() {
                continue;
            }
            let alert = s.score >= stage.event_score;
            // Close a quiet event first (as the stage does), then open or extend.
            if !alert && let Some(mut ev) = open[j].take_if(|e| now - e.last_ms > quiet_ms) {
                ev.end_ms = Some(ev.last_ms);
                book.on_anomaly(incidents, graph, &ev, false, now);
            }
            if !alert {
                continue;
            }
            let ev = match &mut open[j] {
                Some(ev) => {
                    ev.last_ms = now;
                    if s.score > ev.score {
                        ev.score = s.score;
                        ev.peak_ms = now;
                    }
                    ev.p_value = ev.p_value.min(s.p_value);
                    ev.reason = ev.reason.or(s.reason);
                    ev.clone()
                }
                None => {
                    let column = &case.columns[j];
                    let event = AnomalyEvent {
                        id: format!("{j}-{now}"),
                        series_id: SeriesId(j as u64),
                        metric: column.clone(),
                        service: Some(service_of(column).to_owned()),
                        labels: Vec::new(),
                        start_ms: now,
                        peak_ms: now,
                        last_ms: now,
                        end_ms: None,
                        score: s.score,
                        observed: v,
                        expected: s.expected,
                        lower: s.lower,
                        upper: s.upper,
                        p_value: s.p_value,
                        reason: s.reason,
                    };
                    open[j] = Some(event.clone());
                    event
                }
            };
            book.on_anomaly(incidents, graph, &ev, false, now);
        }
        book.tick(incidents, now, now);
    }
    book.incidents
        .iter()
        .max_by_key(|i| i.opened_ms)
        .map(|i| i.symptom.detected_ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::Labels;
    use crate::rca::SplitMix;

    /// Six columns on three services, a minute apart, with noise; `bumps`: (first row, rows,
    /// columns) where the columns jump far above their normal range.
    fn case(rows: usize, bumps: &[(usize, usize, &[usize])]) -> Case {
        let mut rng = SplitMix::new(11);
        let columns: Vec<String> = ["a_x", "a_y", "b_x", "b_y", "c_x", "c_y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut values: Vec<Vec<f64>> = columns
            .iter()
            .map(|_| {
                (0..rows)
                    .map(|_| 100.0 + (rng.next_u64() % 1000) as f64 / 100.0)
                    .collect()
            })
            .collect();
        for &(from, len, cols) in bumps {
            for &c in cols {
                for v in &mut values[c][from..from + len] {
                    *v += 500.0;
                }
            }
        }
        Case {
            name: "synthetic".into(),
            labels: Labels {
                root_cause_service: "a".into(),
                fault: "cpu".into(),
                root_cause_metric: None,
                source: "synthetic".into(),
                inject_time: 0,
            },
            columns,
            times_s: (0..rows as i64).map(|i| 1_700_000_000 + 60 * i).collect(),
            values,
            graph: None,
        }
    }

    fn latest(c: &Case) -> Option<i64> {
        latest_incident_s(
            c,
            &DetectorConfig::default(),
            &DetectConfig::default(),
            &IncidentConfig::default(),
        )
    }

    /// An earlier burst on two services opens an incident that resolves; the fault at the end
    /// opens another: the time is the fault's, not the burst's.
    #[test]
    fn the_latest_incident_is_the_one_paged_for() {
        let c = case(600, &[(300, 3, &[0, 2]), (560, 20, &[1, 4])]);
        assert_eq!(latest(&c), Some(c.times_s[560]));
        // Without the fault, the burst's incident is the latest.
        let c = case(600, &[(300, 3, &[0, 2])]);
        assert_eq!(latest(&c), Some(c.times_s[300]));
    }

    /// One service alone opens nothing (the book's rule is two services), nor does noise.
    #[test]
    fn one_service_or_none_opens_nothing() {
        assert_eq!(latest(&case(600, &[(560, 20, &[0, 1])])), None);
        assert_eq!(latest(&case(600, &[])), None);
    }
}
