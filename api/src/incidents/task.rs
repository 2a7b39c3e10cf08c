//! The incident task: anomaly events into the book, re-ranking open incidents (archive,
//! topology), paging.

use super::*;

/// The incident task: feeds anomaly events to the book, resolves what cleared, re-ranks open
/// incidents every `rerank_secs` (and new ones at once), pages. Also learns the topology from
/// the catalog's mesh series. Ends on `cancel`.
pub async fn run(
    svc: Arc<IncidentService>,
    mut anomalies: tokio::sync::broadcast::Receiver<AnomalyEvent>,
    catalog: Arc<SeriesCatalog>,
    archive: Archive,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = anomalies.recv() => match ev {
                Ok(ev) => svc.on_anomaly(&ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "The incident task fell behind the anomaly events; some were not considered.");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => if svc.active() {
                let now = now_ms();
                // The book is saved (and copied for readers) only when the tick resolves
                // something: an idle second costs a look, not a rewrite of every incident.
                if svc.lock().tick_due(&svc.cfg, now) {
                    let _ = svc.apply(|b, _| ((), b.tick(&svc.cfg, now, now)));
                }
                rank_due(&svc, &catalog, &archive, false).await;
            },
            _ = svc.wake.notified() => if svc.active() {
                rank_due(&svc, &catalog, &archive, true).await;
            },
            _ = cancel.cancelled() => return,
        }
    }
}

/// Re-ranks open incidents that were never ranked or whose ranking is older than
/// `rerank_secs` (`fresh_only`: only never-ranked ones).
pub(super) async fn rank_due(
    svc: &Arc<IncidentService>,
    catalog: &Arc<SeriesCatalog>,
    archive: &Archive,
    fresh_only: bool,
) {
    let now = now_ms();
    let every = svc.cfg.rerank_secs as i64 * 1000;
    let due: Vec<String> = svc
        .lock()
        .incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Open)
        .filter(|i| match i.ranked_ms {
            None => true,
            Some(t) => !fresh_only && now - t >= every,
        })
        .map(|i| i.id.clone())
        .collect();
    for id in due {
        let (svc2, catalog, archive) = (svc.clone(), catalog.clone(), archive.clone());
        let res =
            tokio::task::spawn_blocking(move || rank_incident(&svc2, &catalog, &archive, &id))
                .await;
        if let Err(e) = res {
            error!(error = %e, "Ranking an incident failed.");
        }
    }
}

/// Ranks one incident from the archive and stores the candidates; pages when the first
/// ranking is done or the top candidate changed; posts the note PagerDuty incidents wait for.
pub(super) fn rank_incident(
    svc: &IncidentService,
    catalog: &SeriesCatalog,
    archive: &Archive,
    id: &str,
) {
    let Some(inc) = svc.snapshot().get(id).cloned() else {
        return;
    };
    if svc.cfg.learn_topology {
        let mut g = svc.graph.write().unwrap_or_else(|p| p.into_inner());
        for m in catalog.snapshot() {
            g.learn_from_labels(m.labels.iter());
        }
    }
    let graph = svc.graph.read().unwrap_or_else(|p| p.into_inner()).clone();
    let now = now_ms();
    let detected = inc.symptom.detected_ms;
    let start = detected - svc.cfg.lookback_secs as i64 * 1000;
    // However long the incident stays open, one ranking reads at most max_window_secs.
    let end = now
        .max(inc.last_activity_ms)
        .max(detected + 1000)
        .min(start + svc.cfg.max_window_secs as i64 * 1000);
    let window = svc.window(catalog, archive, start, end);
    let read = |sid, _from, _to| window.samples.get(&sid).cloned().unwrap_or_default();
    let analysis = analyse(
        &AnalysisRequest {
            series: &window.series,
            detected_ms: detected,
            start_ms: start,
            end_ms: end,
            symptom_service: inc.symptom.service.as_deref(),
            max_series: svc.cfg.max_series,
            top: svc.cfg.max_candidates,
        },
        &read,
        &graph,
    );
    let _ = svc.apply(|b, _| {
        let Some(inc) = b.get_mut(id) else {
            return ((), Vec::new());
        };
        let first = inc.ranked_ms.is_none();
        let old_top = inc.candidates.first().map(|c| c.service.clone());
        inc.candidates = analysis.candidates;
        inc.data_quality = analysis.data_quality;
        inc.window_start_ms = start;
        inc.window_end_ms = end;
        inc.ranked_ms = Some(now);
        let new_top = inc.candidates.first().map(|c| c.service.clone());
        if first || old_top != new_top {
            let text = match inc.candidates.first() {
                Some(c) => format!(
                    "Ranked: {} first ({}, confidence {:.0} %).",
                    c.service,
                    c.metric,
                    c.confidence * 100.0
                ),
                None => "Ranked: no metric moved around the detection time.".to_owned(),
            };
            inc.note(now, "ranked", text);
            if inc.status == IncidentStatus::Open {
                svc.page(inc);
            }
        }
        // A PagerDuty incident waits for our candidates as a note, once.
        if let Some(pref) = &inc.pagerduty
            && svc.cfg.pagerduty.api_token.is_some()
            && !inc.timeline.iter().any(|t| t.kind == "pagerduty_note")
            && (inc.source == IncidentSource::Pagerduty || !inc.candidates.is_empty())
        {
            let item = OutboxItem::Note {
                incident_id: pref.incident_id.clone(),
                content: pd::note_text(&svc.cfg.pagerduty, inc),
            };
            match svc.outbox.push(&item) {
                Ok(()) => inc.note(
                    now,
                    "pagerduty_note",
                    format!(
                        "Candidates queued as a note on PagerDuty incident {}.",
                        pref.incident_id
                    ),
                ),
                Err(e) => error!(incident = %id, error = %e, "Cannot queue a PagerDuty note."),
            }
        }
        ((), Vec::new())
    });
}
