//! What the demo prints while it runs, read from the server's public API like any client:
//! anomalies per service, the scaling target's forecast next to the load it forecast, each
//! incident with its ranked candidates and the PagerDuty event it queues, and the injected
//! fault's timing (injection → detection → the right service first).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::DEMO_TARGET;

/// Prints what detection found so far, and the scaling target's forecast next to the load it
/// forecast, every 30 seconds.
pub(crate) async fn summarize(
    http: &reqwest::Client,
    base: String,
    since_ms: i64,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    // Forecasts made, by the time they are for.
    let mut made: std::collections::VecDeque<(i64, f64)> = Default::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                print_summary(http, &base, since_ms).await;
                print_scaling(http, &base, &mut made).await;
            }
        }
    }
}

/// One line: the load now, the forecast served for now + lead, and how the forecast made for
/// about now turned out.
pub(crate) async fn print_scaling(
    http: &reqwest::Client,
    base: &str,
    made: &mut std::collections::VecDeque<(i64, f64)>,
) {
    let url = format!("{base}/api/v1/scaling/{DEMO_TARGET}");
    let Ok(v) = get_json(http, &url).await else {
        return;
    };
    let (Some(current), Some(value)) = (v["current"].as_f64(), v["value"].as_f64()) else {
        println!(
            "scaling {DEMO_TARGET}: {}",
            v["error"]["message"].as_str().unwrap_or("no value yet")
        );
        return;
    };
    let now = v["updated_ms"].as_i64().unwrap_or_default();
    let mut earlier = None;
    while made.front().is_some_and(|&(at, _)| at <= now) {
        earlier = made.pop_front();
    }
    let forecast = v["forecast"].as_f64();
    if let (Some(f), Some(at)) = (forecast, v["for_ms"].as_i64()) {
        made.push_back((at, f));
    }
    let mode = v["mode"].as_str().unwrap_or("?");
    let replicas = v["desired_replicas"].as_u64().unwrap_or_default();
    let mut line = format!(
        "scaling {DEMO_TARGET}: load now {current:.1} rps; serving {value:.1} ({mode}) -> {replicas} pod(s)"
    );
    if let Some(f) = forecast {
        line += &format!("; forecast p90 for +120 s {f:.1}");
    }
    if let Some((_, f)) = earlier {
        line += &format!("; forecast made for now was {f:.1}");
    }
    println!("{line}");
}

/// One line per service with anomalies since `since_ms` (the live part of the demo).
pub(crate) async fn print_summary(http: &reqwest::Client, base: &str, since_ms: i64) {
    let url = format!("{base}/api/v1/anomalies?since={}", since_ms / 1000);
    let Ok(v) = get_json(http, &url).await else {
        return;
    };
    let events = v["anomalies"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        println!("anomalies since start: none");
        return;
    }
    let mut by_service: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for e in &events {
        let svc = e["service"].as_str().unwrap_or("-").to_owned();
        by_service
            .entry(svc)
            .or_default()
            .insert(e["metric"].as_str().unwrap_or("?").to_owned());
    }
    println!("anomalies since start: {} event(s)", events.len());
    for (svc, metrics) in by_service {
        println!(
            "  {svc:<10} {}",
            metrics.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

/// The injected fault, and when we saw it.
#[derive(Debug, Clone)]
pub(crate) struct FaultWatch {
    pub(crate) service: String,
    /// The service and everything that calls it (the fault shows there).
    pub(crate) affected: std::collections::BTreeSet<String>,
    /// When the fault begins (Unix ms).
    pub(crate) start_ms: i64,
    /// Start of the first anomaly event at or after the injection (data time = wall time for
    /// the live workload).
    pub(crate) detected_ms: Option<i64>,
    /// When the faulty service was first seen ranked first in an open incident (wall time).
    pub(crate) ranked_first_ms: Option<i64>,
}

pub(crate) fn print_fault_timing(f: &FaultWatch) {
    let secs = |t: Option<i64>| {
        t.map_or_else(
            || "not yet".to_owned(),
            |t| format!("{:.0} s", (t - f.start_ms).max(0) as f64 / 1000.0),
        )
    };
    println!(
        "fault in {}: injection -> detection {}; injection -> {} ranked first {}",
        f.service,
        secs(f.detected_ms),
        f.service,
        secs(f.ranked_first_ms)
    );
}

/// Prints each incident as it opens, its ranked candidates whenever the first one changes,
/// the PagerDuty event it queues, and the fault's timing (injection → detection → the right
/// service first). Returns the timing at the end.
pub(crate) async fn watch_incidents(
    http: reqwest::Client,
    base: String,
    mut fault: Option<FaultWatch>,
    pagerduty: aiops_rca::pagerduty::PagerdutyConfig,
    cancel: CancellationToken,
) -> Option<FaultWatch> {
    let mut shown: std::collections::HashMap<String, (String, String)> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return fault,
            _ = tick.tick() => {}
        }
        // (Before the fault starts there is nothing to ask: `since` would be after `until`.)
        if let Some(f) = fault.as_mut()
            && f.detected_ms.is_none()
            && jiff::Timestamp::now().as_millisecond() >= f.start_ms
            && let Ok(v) = get_json(
                &http,
                &format!("{base}/api/v1/anomalies?since={}", f.start_ms / 1000),
            )
            .await
        {
            f.detected_ms = v["anomalies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    e["service"]
                        .as_str()
                        .is_some_and(|s| f.affected.contains(s))
                })
                .filter_map(|e| e["start_ms"].as_i64())
                .filter(|&t| t >= f.start_ms)
                .min();
        }
        let url = format!("{base}/api/v1/incidents?limit=20");
        let Ok(list) = get_json(&http, &url).await else {
            continue;
        };
        for summary in list["incidents"].as_array().into_iter().flatten() {
            let Some(id) = summary["id"].as_str() else {
                continue;
            };
            let Ok(inc) = async {
                http.get(format!("{base}/api/v1/incidents/{id}"))
                    .send()
                    .await?
                    .json::<aiops_models::incident::Incident>()
                    .await
            }
            .await
            else {
                continue;
            };
            let top = inc
                .candidates
                .first()
                .map(|c| c.service.clone())
                .unwrap_or_default();
            let status = format!("{:?}", inc.status).to_lowercase();
            let seen = shown.get(id).cloned();
            if seen.is_none() {
                println!("incident {id} opened: {}", inc.title);
                println!(
                    "  symptom: {} ({})",
                    inc.symptom.service.as_deref().unwrap_or("-"),
                    inc.symptom.series.as_deref().unwrap_or("-")
                );
                println!("  details: curl -s {base}/api/v1/incidents/{id}");
            }
            if !top.is_empty() && seen.as_ref().is_none_or(|(t, _)| *t != top) {
                println!("  root-cause candidates of {id}:");
                for c in inc.candidates.iter().take(5) {
                    println!(
                        "    {}. {:<9} {:>5.1} % {}",
                        c.rank,
                        c.service,
                        c.confidence * 100.0,
                        c.explanation
                    );
                }
                if let Some(body) = aiops_rca::pagerduty::event_for(&pagerduty, &inc) {
                    println!(
                        "  PagerDuty: {} queued for {} (dedup_key {}): {}",
                        body["event_action"].as_str().unwrap_or("?"),
                        pagerduty.events_url,
                        id,
                        body["payload"]["summary"].as_str().unwrap_or_default()
                    );
                }
                let now = jiff::Timestamp::now().as_millisecond();
                if let Some(f) = fault.as_mut()
                    && f.ranked_first_ms.is_none()
                    && top == f.service
                    && now >= f.start_ms
                    && inc.status == aiops_models::incident::IncidentStatus::Open
                {
                    f.ranked_first_ms = Some(now);
                    print_fault_timing(f);
                }
            }
            if seen.as_ref().is_some_and(|(_, s)| *s != status) && status == "resolved" {
                println!("incident {id} resolved.");
            }
            shown.insert(id.to_owned(), (top, status));
        }
    }
}

/// GET a JSON document from the demo server.
async fn get_json(http: &reqwest::Client, url: &str) -> reqwest::Result<serde_json::Value> {
    http.get(url).send().await?.json().await
}
