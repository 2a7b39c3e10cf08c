//! Anomaly events: opened, extended and closed from scores; the event log beside the
//! checkpoint (appended by the stage's thread, read back and compacted at start).

use super::*;

impl DetectState {
    /// Opens, extends or closes the event of one series or service after a score; returns the
    /// id of the event left open.
    pub(super) fn track_event(
        &mut self,
        cfg: &DetectConfig,
        open: Option<String>,
        ts: i64,
        s: &Scored,
        value: f64,
        new_event: impl FnOnce() -> AnomalyEvent,
    ) -> Option<String> {
        let quiet_ms = cfg.event_quiet_secs as i64 * 1000;
        let mut open = open;
        // Close an event that has been quiet long enough.
        if let Some(eid) = open.clone() {
            match self.events.iter_mut().rev().find(|e| e.id == eid) {
                Some(ev) if ts - ev.last_ms > quiet_ms && s.score < cfg.event_score => {
                    ev.end_ms = Some(ev.last_ms);
                    self.changed.push(eid);
                    open = None;
                }
                // While open, the series' state may grow rarer after the alarm (the continuous
                // score's horizons fill): recorded a decade at a time, not every sample.
                Some(ev) if s.p_value < 0.1 * ev.p_value => {
                    ev.p_value = s.p_value;
                    self.changed.push(eid);
                }
                Some(_) => {}
                None => open = None,
            }
        }
        if s.score < cfg.event_score {
            return open;
        }
        match open {
            Some(eid) => {
                if let Some(ev) = self.events.iter_mut().rev().find(|e| e.id == eid) {
                    ev.last_ms = ts;
                    ev.p_value = ev.p_value.min(s.p_value);
                    // Why it alarmed: the first alarm's reason (an event may open below it).
                    ev.reason = ev.reason.or(s.reason);
                    if s.score > ev.score {
                        ev.score = s.score;
                        ev.peak_ms = ts;
                        ev.observed = value;
                        ev.expected = s.expected;
                        ev.lower = s.lower;
                        ev.upper = s.upper;
                    }
                }
                self.changed.push(eid.clone());
                Some(eid)
            }
            None => {
                let ev = new_event();
                let eid = ev.id.clone();
                self.changed.push(eid.clone());
                self.events.push(ev);
                if self.events.len() > cfg.max_events {
                    let drop = self.events.len() - cfg.max_events;
                    self.events.drain(..drop);
                }
                Some(eid)
            }
        }
    }

    /// After the event log replaced the checkpoint's events: a series whose checkpoint knew
    /// no open event takes the open event the log has for it (a crash between the log and
    /// the checkpoint), so it closes when the series is quiet again.
    pub fn reattach_open_events(&mut self) {
        for ev in self.events.iter().filter(|e| e.end_ms.is_none()) {
            if let Some(st) = self.series.get_mut(&ev.series_id)
                && st.open_event.is_none()
            {
                st.open_event = Some(ev.id.clone());
            }
        }
    }

    /// The current state of every event that changed since the last call, once each; also
    /// publishes them, the counters and (once a second) the top scores for readers.
    pub fn take_changed(&mut self) -> Vec<AnomalyEvent> {
        let mut ids = std::mem::take(&mut self.changed);
        ids.sort();
        ids.dedup();
        let changed: Vec<AnomalyEvent> = self
            .events
            .iter()
            .filter(|e| ids.binary_search(&e.id).is_ok())
            .cloned()
            .collect();
        // An event is when the top scores matter most: they are refreshed with it, before it
        // is visible.
        self.publish_stats(!changed.is_empty());
        self.published.upsert_events(&changed);
        changed
    }
}

/// Rebuilds the event list from the event log written by [`run`] (the last line of an id wins),
/// keeping the newest `max_events`. A torn last line after a crash is skipped.
pub fn load_events(path: &std::path::Path, max_events: usize) -> Vec<AnomalyEvent> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut by_id: std::collections::HashMap<String, AnomalyEvent> =
        std::collections::HashMap::new();
    for line in text.lines() {
        if let Ok(ev) = serde_json::from_str::<AnomalyEvent>(line) {
            by_id.insert(ev.id.clone(), ev);
        }
    }
    let mut events: Vec<AnomalyEvent> = by_id.into_values().collect();
    events.sort_by_key(|e| (e.start_ms, e.id.clone()));
    let drop = events.len().saturating_sub(max_events);
    events.drain(..drop);
    events
}

/// Rewrites the event log with just `events` (one line each), through a synced temporary
/// file: called at start so the log does not grow without bound.
pub fn compact_events(path: &std::path::Path, events: &[AnomalyEvent]) {
    let res = (|| -> std::io::Result<()> {
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = Vec::new();
        for e in events {
            serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        std::fs::write(&tmp, out)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "Cannot compact the anomaly event log.");
    }
}
