//! Incidents in the server: the incident task (anomaly events → the book → ranking →
//! PagerDuty), and the routes around it — the triage API, the Alertmanager and PagerDuty
//! webhooks, the OpenAPI document.
//!
//! ```text
//! anomaly events ─┐                           ┌→ rank (archive, topology) → candidates
//! Alertmanager ───┼→ IncidentBook (persisted) ┤
//! PagerDuty hook ─┤                           └→ outbox → PagerDuty (trigger/resolve, notes)
//! POST incidents ─┘
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aiops_ingest::archive::Archive;
use aiops_models::incident::{
    AlertRef, Incident, IncidentSource, IncidentStatus, PagerdutyRef, Symptom,
};
use aiops_models::{AnomalyEvent, Selector, SeriesCatalog};
use aiops_rca::CallGraph;
use aiops_rca::analyse::{AnalysisRequest, analyse};
use aiops_rca::incident::{AlertInput, BookError, Change, IncidentBook, IncidentConfig};
use aiops_rca::pagerduty::{self as pd, WebhookEnvelope, WebhookIncident};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::pagerduty::{Outbox, OutboxItem};
use crate::{ApiError, AppState};

/// Incident counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct IncidentMetrics {
    /// Incidents open now.
    pub open: Gauge,
    /// Incidents opened, by source.
    pub opened: Family<Vec<(String, String)>, Counter>,
    /// Responder feedback, by where the named cause stood (`top1`, `top3`, `top5`, `missed`).
    pub feedback: Family<Vec<(String, String)>, Counter>,
    /// Share of feedback whose cause we ranked first (the triage accuracy a responder sees).
    pub accuracy_top1: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// … among the first three.
    pub accuracy_top3: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl IncidentMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("aiops_incidents_open", "Incidents open now", m.open.clone());
        registry.register(
            "aiops_incidents_opened",
            "Incidents opened, by source",
            m.opened.clone(),
        );
        registry.register(
            "aiops_rca_feedback",
            "Responder feedback, by where the named root cause stood in our ranking",
            m.feedback.clone(),
        );
        registry.register(
            "aiops_rca_feedback_accuracy_top1",
            "Share of feedback whose root cause we ranked first",
            m.accuracy_top1.clone(),
        );
        registry.register(
            "aiops_rca_feedback_accuracy_top3",
            "Share of feedback whose root cause we ranked in the first three",
            m.accuracy_top3.clone(),
        );
        m
    }
}

/// Everything the incident routes and task share.
#[derive(Debug)]
pub struct IncidentService {
    /// Policy and integrations.
    pub cfg: IncidentConfig,
    book: Mutex<IncidentBook>,
    /// The book as last saved, for readers: they never wait for a save or a ranking.
    view: RwLock<Arc<IncidentBook>>,
    path: PathBuf,
    graph: RwLock<CallGraph>,
    symptoms: Vec<Selector>,
    /// Messages to PagerDuty.
    pub outbox: Arc<Outbox>,
    wake: Notify,
    metrics: IncidentMetrics,
    /// Where changed incidents are also published (the Kafka incidents topic), with the
    /// `updated_ms` last published per incident.
    publisher: Option<Publisher>,
    published: Mutex<std::collections::HashMap<String, i64>>,
    window_reader: Option<WindowReader>,
    /// On Kafka: whether this node owns the incidents (only the owner ticks, ranks and pages)
    /// and how changes that arrive here over HTTP reach the owner.
    role: Option<(std::sync::atomic::AtomicBool, Forward)>,
}

/// A change to the incidents that arrived over HTTP, as it travels to the incident owner of a
/// Kafka deployment (through the anomalies topic, in order with the anomaly events).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Alertmanager alerts, validated.
    Alerts {
        /// The alerts.
        alerts: Vec<AlertInput>,
    },
    /// A PagerDuty webhook event whose signature was verified.
    Pagerduty {
        /// Delivery id (repeated deliveries are dropped).
        delivery: String,
        /// The event.
        event: pd::WebhookEvent,
    },
    /// A responder's feedback.
    Feedback {
        /// Our incident id.
        id: String,
        /// The true cause's service.
        service: String,
        /// And metric, if known.
        metric: Option<String>,
        /// Free text.
        comment: Option<String>,
    },
}

/// Sends a [`Command`] to the incident owner; Ok once it is durable on the way there.
pub struct Forward(
    #[allow(clippy::type_complexity)]
    pub  Box<
        dyn Fn(
                Command,
            )
                -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
            + Send
            + Sync,
    >,
);

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forward")
    }
}

/// Series around an incident, from somewhere other than this node's archive (on Kafka: every
/// partition of the samples topic).
#[derive(Debug, Default)]
pub struct Window {
    /// The series seen in the window.
    pub series: Vec<Arc<aiops_models::SeriesMeta>>,
    /// Their samples, in time order.
    pub samples: std::collections::HashMap<aiops_models::SeriesId, Vec<(i64, f64)>>,
}

/// Reads a [`Window`] for `start_ms..=end_ms`.
pub struct WindowReader(pub Box<dyn Fn(i64, i64) -> Result<Window, String> + Send + Sync>);

impl std::fmt::Debug for WindowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowReader")
    }
}

/// Publishes an incident that changed.
pub struct Publisher(pub Box<dyn Fn(&Incident) + Send + Sync>);

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl IncidentService {
    /// Loads the book from `dir/incidents.json` and opens the outbox in `dir/outbox`.
    pub fn open(
        cfg: IncidentConfig,
        dir: &std::path::Path,
        registry: &mut Registry,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("incidents.json");
        let book = IncidentBook::load(&path)?;
        let symptoms = cfg.symptoms.iter().filter_map(|s| s.parse().ok()).collect();
        let metrics = IncidentMetrics::register(registry);
        let svc = Self {
            graph: RwLock::new(cfg.graph()),
            cfg,
            outbox: Arc::new(Outbox::open(&dir.join("outbox"))?),
            view: RwLock::new(Arc::new(book.clone())),
            book: Mutex::new(book),
            path,
            symptoms,
            wake: Notify::new(),
            metrics,
            publisher: None,
            published: Mutex::new(Default::default()),
            window_reader: None,
            role: None,
        };
        svc.update_gauges(&svc.lock());
        Ok(svc)
    }

    /// Also publishes every incident that changes (e.g. to the Kafka incidents topic).
    pub fn with_publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// One of several nodes: it acts on the incidents (ticks, ranks, pages) only while
    /// [`IncidentService::set_owner`] says it owns them; changes arriving over HTTP go to the
    /// owner through `forward`.
    pub fn with_forward(mut self, forward: Forward) -> Self {
        self.role = Some((std::sync::atomic::AtomicBool::new(false), forward));
        self
    }

    /// Whether this node acts on the incidents (always, on its own).
    pub fn active(&self) -> bool {
        self.role
            .as_ref()
            .is_none_or(|(owner, _)| owner.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// This node became (or stopped being) the incident owner.
    pub fn set_owner(&self, owner: bool) {
        if let Some((flag, _)) = &self.role {
            let was = flag.swap(owner, std::sync::atomic::Ordering::SeqCst);
            if was != owner {
                info!(owner, "Incident ownership changed.");
                if owner {
                    self.wake.notify_one();
                }
            }
        }
    }

    /// Ranks from windows `reader` gives instead of this node's archive.
    pub fn with_window_reader(mut self, reader: WindowReader) -> Self {
        self.window_reader = Some(reader);
        self
    }

    /// The series and samples an analysis of `start..=end` reads.
    fn window(&self, catalog: &SeriesCatalog, archive: &Archive, start: i64, end: i64) -> Window {
        if let Some(WindowReader(read)) = &self.window_reader {
            match read(start, end) {
                Ok(w) => return w,
                Err(e) => {
                    warn!(error = %e, "Cannot read the analysis window from the bus; ranking from this node's archive.")
                }
            }
        }
        let mut series = catalog.snapshot();
        series.sort_by_key(|m| m.id.0);
        // Every series of the window in one pass over the archive, not one pass each.
        let ids: Vec<aiops_models::SeriesId> = series
            .iter()
            .take(self.cfg.max_series)
            .map(|m| m.id)
            .collect();
        let mut read = archive.read_many(&ids, start, end).unwrap_or_else(|e| {
            warn!(error = %e, "Cannot read the analysis window for root-cause ranking.");
            Default::default()
        });
        let samples = ids
            .iter()
            .map(|id| (*id, read.remove(id).unwrap_or_default()))
            .collect();
        Window { series, samples }
    }

    fn publish_changed(&self, book: &IncidentBook) {
        let Some(Publisher(publish)) = &self.publisher else {
            return;
        };
        // Only the owner speaks for the incidents; others publish their on-demand analyses.
        let active = self.active();
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        for inc in &book.incidents {
            if published.get(&inc.id).is_none_or(|&t| t < inc.updated_ms)
                && (active || inc.source == IncidentSource::Api)
            {
                publish(inc);
                published.insert(inc.id.clone(), inc.updated_ms);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IncidentBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The book as last saved (for reads; never waits for a save or a ranking).
    pub fn snapshot(&self) -> Arc<IncidentBook> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update_gauges(&self, book: &IncidentBook) {
        let open = book
            .incidents
            .iter()
            .filter(|i| i.status == IncidentStatus::Open)
            .count();
        self.metrics.open.set(open as i64);
        let f = book.feedback;
        if f.total > 0 {
            self.metrics
                .accuracy_top1
                .set(f.top1 as f64 / f.total as f64);
            self.metrics
                .accuracy_top3
                .set(f.top3 as f64 / f.total as f64);
        }
    }

    /// Applies `f` to the book, persists it (before anyone is told), and handles the changes:
    /// new and updated incidents are (re-)ranked, resolved ones resolve their PagerDuty alert.
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut IncidentBook, &CallGraph) -> (T, Vec<Change>),
    ) -> Result<T, ApiError> {
        let graph = self.graph.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut book = self.lock();
        let (out, changes) = f(&mut book, &graph);
        book.save(&self.path).map_err(|e| {
            error!(path = %self.path.display(), error = %e, "Cannot persist the incident book.");
            ApiError::unavailable("not_durable", format!("cannot persist incidents: {e}"))
        })?;
        for c in &changes {
            match c {
                Change::Opened(id) => {
                    if let Some(inc) = book.get(id) {
                        info!(incident = %id, source = ?inc.source, title = %inc.title, "Incident opened.");
                        self.metrics
                            .opened
                            .get_or_create(&vec![(
                                "source".into(),
                                format!("{:?}", inc.source).to_lowercase(),
                            )])
                            .inc();
                    }
                }
                Change::Resolved(id) => {
                    info!(incident = %id, "Incident resolved.");
                    if let Some(inc) = book.get(id) {
                        self.page(inc);
                    }
                }
                Change::Updated(_) => {}
            }
        }
        self.update_gauges(&book);
        self.publish_changed(&book);
        let view = Arc::new(book.clone());
        drop(book);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
        if changes.iter().any(|c| !matches!(c, Change::Resolved(_))) {
            self.wake.notify_one();
        }
        Ok(out)
    }

    /// Queues the PagerDuty event for an incident's state (ours only: detector and alert
    /// incidents; not on-demand analyses, not PagerDuty's own).
    fn page(&self, inc: &Incident) {
        if !self.active() {
            return;
        }
        if !matches!(
            inc.source,
            IncidentSource::Detector | IncidentSource::Alertmanager
        ) {
            return;
        }
        if let Some(body) = pd::event_for(&self.cfg.pagerduty, inc)
            && let Err(e) = self.outbox.push(&OutboxItem::Event { body })
        {
            error!(incident = %inc.id, error = %e, "Cannot queue a PagerDuty event.");
        }
    }

    /// Takes over incidents another node kept (read back from the incidents topic when this
    /// node becomes the incident owner): newer versions replace older ones.
    pub fn adopt(&self, incidents: Vec<Incident>) -> usize {
        let n = incidents.len();
        let res = self.apply(|b, _| {
            let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
            for inc in incidents {
                // Already on the topic: not published again from here.
                let seen = published.entry(inc.id.clone()).or_insert(inc.updated_ms);
                *seen = (*seen).max(inc.updated_ms);
                match b.incidents.iter_mut().find(|i| i.id == inc.id) {
                    Some(mine) if mine.updated_ms >= inc.updated_ms => {}
                    Some(mine) => *mine = inc,
                    None => b.incidents.push(inc),
                }
            }
            b.incidents.sort_by_key(|i| i.opened_ms);
            ((), Vec::new())
        });
        if let Err(e) = res {
            warn!(error = %e.message, "Adopted incidents could not be persisted.");
        }
        self.wake.notify_one();
        n
    }

    /// After taking the incidents over from a node that may have died with PagerDuty messages
    /// in its outbox: queues each open incident's current page again (and the resolve of those
    /// resolved in the last hour). PagerDuty de-duplicates by `dedup_key` (the incident id), so
    /// a message sent twice does no harm; one lost would.
    pub fn repage(&self) -> usize {
        let now = now_ms();
        let book = self.lock();
        let mut n = 0;
        for inc in &book.incidents {
            let due = match inc.status {
                IncidentStatus::Open => inc.ranked_ms.is_some(),
                _ => inc.resolved_ms.is_some_and(|t| now - t <= 3_600_000),
            };
            if due {
                self.page(inc);
                n += 1;
            }
        }
        n
    }

    /// Applies a change that arrived over HTTP (here, or at another node and forwarded).
    pub fn execute(&self, cmd: Command) -> Result<Value, ApiError> {
        match cmd {
            Command::Alerts { alerts } => {
                let now = now_ms();
                let changes = self.apply(|b, g| {
                    let mut all = Vec::new();
                    for input in &alerts {
                        all.extend(b.on_alert(&self.cfg, g, input, now));
                    }
                    (all.clone(), all)
                })?;
                let ids: Vec<String> = changes
                    .iter()
                    .map(|c| match c {
                        Change::Opened(i) | Change::Updated(i) | Change::Resolved(i) => i.clone(),
                    })
                    .collect();
                Ok(json!({"status": "ok", "alerts": alerts.len(), "incidents": ids}))
            }
            Command::Pagerduty { delivery, event } => {
                let handled = self.on_pagerduty(&delivery, event)?;
                Ok(json!({"status": handled}))
            }
            Command::Feedback {
                id,
                service,
                metric,
                comment,
            } => {
                let fb = self.apply(|b, _| {
                    (
                        b.feedback(&id, service, metric, comment, now_ms()),
                        Vec::new(),
                    )
                })?;
                let fb = fb.map_err(|e| match e {
                    BookError::NotFound(_) => ApiError::not_found(e.to_string()),
                    BookError::Invalid(m) => ApiError::bad_request("bad_feedback", m),
                })?;
                let outcome = match fb.rank {
                    Some(1) => "top1",
                    Some(2..=3) => "top3",
                    Some(4..=5) => "top5",
                    _ => "missed",
                };
                self.metrics
                    .feedback
                    .get_or_create(&vec![("outcome".into(), outcome.into())])
                    .inc();
                let tally = self.snapshot().feedback;
                Ok(json!({"feedback": fb, "accuracy": tally}))
            }
        }
    }

    /// An anomaly event from detection.
    pub fn on_anomaly(&self, ev: &AnomalyEvent) {
        if self.cfg.learn_topology {
            let mut g = self.graph.write().unwrap_or_else(|p| p.into_inner());
            g.learn_from_labels(ev.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let is_symptom = self.symptoms.iter().any(|s| {
            let meta = aiops_models::SeriesMeta::new(
                aiops_models::Source::Prometheus,
                ev.metric.clone(),
                ev.labels.iter().cloned(),
            );
            s.matches(&meta)
        });
        let now = now_ms();
        if let Err(e) = self.apply(|b, g| ((), b.on_anomaly(&self.cfg, g, ev, is_symptom, now))) {
            warn!(event = %ev.id, error = %e.message, "An anomaly event did not reach the incident book.");
        }
    }
}

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
async fn rank_due(
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
fn rank_incident(svc: &IncidentService, catalog: &SeriesCatalog, archive: &Archive, id: &str) {
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

// ---- routes ---------------------------------------------------------------------------------

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("request body: {e}")))
}

fn summary(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "status": i.status,
        "source": i.source,
        "opened_ms": i.opened_ms,
        "resolved_ms": i.resolved_ms,
        "symptom": i.symptom,
        "services": i.services,
        "top_candidate": i.candidates.first(),
        "pagerduty": i.pagerduty,
    })
}

/// `GET /api/v1/incidents?status=open|resolved&limit=N`: newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents",
    params(
        ("status" = Option<String>, Query, pattern = "^(?:open|resolved)$", description = "`open` or `resolved`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Most incidents listed (default 100)")
    ),
    responses((status = 200, description = "Incident summaries, newest first, and the feedback tally", body = ref("#/components/schemas/IncidentList")), crate::openapi::Refusals),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut status = None;
    let mut limit = 100usize;
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match &*k {
            "status" => {
                status = Some(match &*v {
                    "open" => IncidentStatus::Open,
                    "resolved" => IncidentStatus::Resolved,
                    other => {
                        return Err(ApiError::bad_request(
                            "bad_parameter",
                            format!("status={other:?}: expected open or resolved"),
                        ));
                    }
                })
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_parameter",
                            format!("limit={v:?}: expected 1..=10000"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("unknown parameter {other:?} (status, limit)"),
                ));
            }
        }
    }
    let book = state.incidents.snapshot();
    let items: Vec<Value> = book
        .incidents
        .iter()
        .rev()
        .filter(|i| status.is_none_or(|s| i.status == s))
        .take(limit)
        .map(summary)
        .collect();
    // `owner`: this node acts on the incidents (on Kafka, one node does; the others mirror).
    Ok(Json(
        json!({"incidents": items, "feedback": book.feedback, "owner": state.incidents.active()}),
    ))
}

/// `GET /api/v1/incidents/{id}`: the whole incident (candidates, timeline).
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc-…`)")),
    responses(
        (status = 200, description = "The incident with its ranked candidates and timeline", body = ref("#/components/schemas/Incident")),
        (status = 404, description = "No such incident", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["read"]), ("basic" = ["read"])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    state
        .incidents
        .snapshot()
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyseRequest {
    /// The symptom's service.
    service: Option<String>,
    /// The symptom's series (a selector).
    series: Option<String>,
    /// Detection time (RFC 3339 or Unix seconds).
    detected_at: Value,
    /// Start of the normal window (default: detected_at − lookback).
    start: Option<Value>,
    /// End of the window (default: now).
    end: Option<Value>,
    /// Title.
    title: Option<String>,
}

fn time_field(name: &str, v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => crate::query::parse_time(name, &n.to_string()),
        Value::String(s) => crate::query::parse_time(name, s),
        _ => Err(ApiError::bad_request(
            "bad_parameter",
            format!("{name}: expected RFC 3339 text or Unix seconds"),
        )),
    }
}

/// `POST /api/v1/incidents`: analyse a given symptom and window now. 201 with the incident.
///
/// Bounded: the window at most `incidents.max_window_secs` and within the data kept, at most
/// `incidents.max_analyses_per_minute` per caller (429 + `Retry-After`), one read permit among
/// `server.max_concurrent_reads`. The incident is recorded only once the analysis is done: a
/// request that fails or is cut off by its deadline leaves nothing behind.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents",
    request_body(content = ref("#/components/schemas/AnalyseRequest"), content_type = "application/json"),
    responses(
        (status = 201, description = "The analysis, recorded as a resolved incident", body = ref("#/components/schemas/Incident")),
        (status = 400, description = "Malformed body, a time or selector that does not parse", body = ref("#/components/schemas/Error")),
        (status = 422, description = "A window out of order (`start < detected_at < end`), a detection time outside the data kept, or a window over `incidents.max_window_secs`", body = ref("#/components/schemas/Error")),
        (status = 429, description = "Over `incidents.max_analyses_per_minute` for this caller (see `Retry-After`)", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AnalyseRequest = parse_json(&body)?;
    let detected = time_field("detected_at", &req.detected_at)?;
    let svc = state.incidents.clone();
    let start = match &req.start {
        Some(v) => time_field("start", v)?,
        None => detected - svc.cfg.lookback_secs as i64 * 1000,
    };
    let now = now_ms();
    let end = match &req.end {
        Some(v) => time_field("end", v)?,
        None => now.max(detected + 1000),
    };
    if !(start < detected && detected < end) {
        return Err(ApiError::unprocessable(
            "bad_window",
            "need start < detected_at < end (a normal window before the detection time and an abnormal one after)",
        ));
    }
    let oldest = match state.config.max_sample_age_secs {
        0 => i64::MIN,
        age => now.saturating_sub(age as i64 * 1000),
    };
    if detected < oldest || detected > now + 3_600_000 {
        return Err(ApiError::unprocessable(
            "bad_window",
            format!(
                "detected_at {} is outside the data this node keeps ({} to an hour from now)",
                show_ms(detected),
                show_ms(oldest)
            ),
        ));
    }
    let max_window = svc.cfg.max_window_secs as i64 * 1000;
    if end - start > max_window {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            format!(
                "the window from start to end spans {} s, over the limit of {} s (incidents.max_window_secs)",
                (end - start) / 1000,
                svc.cfg.max_window_secs
            ),
        ));
    }
    if let Some(s) = &req.series {
        s.parse::<Selector>()
            .map_err(|e| ApiError::bad_request("bad_selector", format!("series={s:?}: {e}")))?;
    }
    let who = caller
        .and_then(|axum::Extension(c)| c.0)
        .unwrap_or_else(|| "anonymous".into());
    if let Err(wait) = state.analyses.take(&who) {
        let secs = wait.as_secs().max(1);
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "{who} asked for more than {} analyses a minute (incidents.max_analyses_per_minute); retry in {secs} s",
                svc.cfg.max_analyses_per_minute
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return Ok(resp);
    }
    let permit = state
        .heavy_reads
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    let title = req.title.clone().unwrap_or_else(|| {
        format!(
            "Analysis of {} at {}",
            req.service
                .as_deref()
                .or(req.series.as_deref())
                .unwrap_or("the system"),
            jiff::Timestamp::from_millisecond(detected)
                .map(|t| t.to_string())
                .unwrap_or_default()
        )
    });
    let symptom = Symptom {
        service: req.service.clone(),
        metric: None,
        series: req.series.clone(),
        detected_ms: detected,
    };
    let (svc2, catalog, archive) = (svc.clone(), state.catalog.clone(), state.archive.clone());
    let (symptom, analysis) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        analyse_window(&svc2, &catalog, &archive, symptom, start, end)
    })
    .await
    .map_err(ApiError::internal)?;
    let id = svc.apply(|b, _| {
        let id = b.open_external(&svc.cfg, IncidentSource::Api, title, symptom, now_ms());
        let now = now_ms();
        if let Some(i) = b.get_mut(&id) {
            i.candidates = analysis.candidates;
            i.data_quality = analysis.data_quality;
            i.window_start_ms = start;
            i.window_end_ms = end;
            i.ranked_ms = Some(now);
            let text = match i.candidates.first() {
                Some(c) => format!("Ranked: {} first ({}).", c.service, c.metric),
                None => "Ranked: no metric moved around the detection time.".to_owned(),
            };
            i.note(now, "ranked", text);
            // An on-demand analysis resolves at once (nothing keeps it open): a record, not a
            // page.
            i.status = IncidentStatus::Resolved;
            i.resolved_ms = Some(now);
        }
        (id, Vec::new())
    })?;
    let inc = svc
        .snapshot()
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::internal("incident vanished"))?;
    let mut resp = (StatusCode::CREATED, Json(inc)).into_response();
    if let Ok(v) = format!("/api/v1/incidents/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn show_ms(t: i64) -> String {
    jiff::Timestamp::from_millisecond(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{t} ms"))
}

/// An on-demand analysis of `symptom` over an explicit window. Returns the symptom (its
/// service filled in from its series when not given) and the ranking.
fn analyse_window(
    svc: &IncidentService,
    catalog: &SeriesCatalog,
    archive: &Archive,
    mut symptom: Symptom,
    start: i64,
    end: i64,
) -> (Symptom, aiops_rca::analyse::Analysis) {
    let graph = svc.graph.read().unwrap_or_else(|p| p.into_inner()).clone();
    let window = svc.window(catalog, archive, start, end);
    let series = &window.series;
    if symptom.service.is_none()
        && let Some(sel) = symptom
            .series
            .as_deref()
            .and_then(|s| s.parse::<Selector>().ok())
        && let Some(m) = series.iter().find(|m| sel.matches(m))
    {
        // The symptom series' service is the symptom service, when not given.
        symptom.service = aiops_models::service_of(m);
    }
    let read = |sid, _from, _to| window.samples.get(&sid).cloned().unwrap_or_default();
    let analysis = analyse(
        &AnalysisRequest {
            series,
            detected_ms: symptom.detected_ms,
            start_ms: start,
            end_ms: end,
            symptom_service: symptom.service.as_deref(),
            max_series: svc.cfg.max_series,
            top: svc.cfg.max_candidates,
        },
        &read,
        &graph,
    );
    (symptom, analysis)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    service: String,
    metric: Option<String>,
    comment: Option<String>,
}

/// `POST /api/v1/incidents/{id}/feedback`: the responder names the true root cause.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/feedback", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc-…`)")),
    request_body(content = ref("#/components/schemas/FeedbackRequest"), content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded; the accuracy tally so far", body = ref("#/components/schemas/FeedbackResult")),
        (status = 202, description = "Forwarded to the node that owns the incidents", body = ref("#/components/schemas/Accepted")),
        (status = 404, description = "No such incident", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn feedback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: FeedbackRequest = parse_json(&body)?;
    if state.incidents.snapshot().get(&id).is_none() {
        return Err(ApiError::not_found(format!("no incident {id}")));
    }
    let cmd = Command::Feedback {
        id,
        service: req.service,
        metric: req.metric,
        comment: req.comment,
    };
    submit(&state.incidents, cmd, StatusCode::OK).await
}

/// Applies `cmd` here, or — on a Kafka deployment — sends it to the incident owner and
/// answers 202 once it is durable on its way (the change shows in the incidents shortly).
async fn submit(svc: &IncidentService, cmd: Command, ok: StatusCode) -> Result<Response, ApiError> {
    if let Some((_, Forward(forward))) = &svc.role {
        forward(cmd).await.map_err(|e| {
            ApiError::unavailable(
                "not_durable",
                format!("cannot pass the change to the incident owner: {e}"),
            )
        })?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "applied_by": "incident owner"})),
        )
            .into_response());
    }
    let out = svc.execute(cmd)?;
    Ok((ok, Json(out)).into_response())
}

// ---- Alertmanager ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmPayload {
    version: String,
    alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    fingerprint: String,
}

/// An Alertmanager time in ms: `Err` when it is not RFC 3339, `None` before 1970 (Alertmanager's
/// zero time, 0001-01-01, means "not ended").
fn am_time(s: &str) -> Result<Option<i64>, jiff::Error> {
    let t: jiff::Timestamp = s.parse()?;
    Ok((t.as_second() >= 0).then(|| t.as_millisecond()))
}

/// `POST /api/v1/alertmanager`: Alertmanager's webhook (payload version 4). Firing alerts open
/// or enrich incidents; resolved ones resolve them. 200 once the book is durable.
#[utoipa::path(post, path = "/api/v1/alertmanager", tag = "incidents",
    request_body(content = ref("#/components/schemas/AlertmanagerPayload"), content_type = "application/json",
        description = "Alertmanager's webhook payload, version 4"),
    responses(
        (status = 200, description = "Applied: firing alerts opened or enriched incidents, resolved ones resolved them", body = ref("#/components/schemas/AlertsApplied")),
        (status = 202, description = "Forwarded to the node that owns the incidents", body = ref("#/components/schemas/Accepted")),
        (status = 413, description = "Over `incidents.max_alerts_per_request`", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn alertmanager(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p: AmPayload = parse_json(&body)?;
    if p.version != "4" {
        return Err(ApiError::bad_request(
            "unsupported_version",
            format!(
                "webhook payload version {:?}: only \"4\" is understood",
                p.version
            ),
        ));
    }
    let max = state.incidents.cfg.max_alerts_per_request;
    if p.alerts.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{} alerts in one notification, over the limit of {max} (incidents.max_alerts_per_request); set max_alerts in Alertmanager's webhook_config",
                p.alerts.len()
            ),
        ));
    }
    let mut inputs = Vec::new();
    for (i, a) in p.alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            return Err(ApiError::bad_request(
                "bad_alert",
                format!(
                    "alerts[{i}].status = {:?}: expected firing or resolved",
                    a.status
                ),
            ));
        }
        let starts_ms = am_time(&a.starts_at).ok().flatten().ok_or_else(|| {
            ApiError::bad_request(
                "bad_alert",
                format!(
                    "alerts[{i}].startsAt = {:?}: not an RFC 3339 time after 1970",
                    a.starts_at
                ),
            )
        })?;
        // Absent, or the zero time while firing: not ended.
        let ends_ms = match a.ends_at.as_deref().map(am_time).transpose() {
            Ok(t) => t.flatten(),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "bad_alert",
                    format!("alerts[{i}].endsAt = {:?}: not an RFC 3339 time", a.ends_at),
                ));
            }
        };
        inputs.push(AlertInput {
            alert: AlertRef {
                fingerprint: a.fingerprint.clone(),
                name: a
                    .labels
                    .get("alertname")
                    .cloned()
                    .unwrap_or_else(|| "alert".into()),
                status: a.status.clone(),
                labels: a
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                starts_ms,
                ends_ms: ends_ms.filter(|_| a.status == "resolved"),
            },
            summary: a.annotations.get("summary").cloned(),
        });
    }
    submit(
        &state.incidents,
        Command::Alerts { alerts: inputs },
        StatusCode::OK,
    )
    .await
}

// ---- PagerDuty webhooks v3 ------------------------------------------------------------------

/// `POST /api/v1/pagerduty/webhook`: verifies `X-PagerDuty-Signature` over the raw body (401
/// when missing or wrong), drops repeated deliveries (by `X-Webhook-Id`, else the event id),
/// and on `incident.triggered` ranks causes for the incident's service and time and posts them
/// back as a note. Answers 202 at once; the work happens in the incident task.
#[utoipa::path(post, path = "/api/v1/pagerduty/webhook", tag = "incidents",
    request_body(content = ref("#/components/schemas/PagerdutyWebhook"), content_type = "application/json",
        description = "A PagerDuty webhook v3 delivery, signed (`X-PagerDuty-Signature`)"),
    params(("X-PagerDuty-Signature" = Option<String>, Header, description = "`v1=<hex HMAC-SHA256 of the body>`, one per secret")),
    responses(
        (status = 202, description = "Accepted (or a repeated delivery, ignored)", body = ref("#/components/schemas/WebhookAccepted")),
        (status = 401, description = "Missing or wrong signature", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(()))]
pub async fn pagerduty_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let svc = &state.incidents;
    let secrets = &svc.cfg.pagerduty.webhook_secrets;
    if secrets.is_empty() {
        return Err(ApiError::not_found(
            "the PagerDuty webhook is off: set incidents.pagerduty.webhook_secrets",
        ));
    }
    let sig = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing X-PagerDuty-Signature",
            )
        })?;
    if !pd::signature_ok(secrets, &body, sig) {
        warn!("A PagerDuty webhook carried no valid signature; refused.");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-PagerDuty-Signature does not match the body under any configured secret",
        ));
    }
    let env: WebhookEnvelope = parse_json(&body)?;
    let delivery = headers
        .get("x-webhook-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| env.event.id.clone(), str::to_owned);
    let ev = env.event;
    if ev.event_type.starts_with("incident.") && ev.event_type != "incident.annotated" {
        serde_json::from_value::<WebhookIncident>(ev.data.clone()).map_err(|e| {
            ApiError::bad_request("bad_event", format!("event.data is not an incident: {e}"))
        })?;
    }
    submit(
        svc,
        Command::Pagerduty {
            delivery,
            event: ev,
        },
        StatusCode::ACCEPTED,
    )
    .await
}

impl IncidentService {
    /// A verified PagerDuty webhook event: links or opens an incident, or resolves one.
    fn on_pagerduty(&self, delivery: &str, ev: pd::WebhookEvent) -> Result<&'static str, ApiError> {
        let incident: Option<WebhookIncident> =
            if ev.event_type.starts_with("incident.") && ev.event_type != "incident.annotated" {
                serde_json::from_value(ev.data.clone()).ok()
            } else {
                None
            };
        let now = now_ms();
        let cfg = self.cfg.clone();
        self.apply(|b, _| {
            if !b.first_delivery(delivery) {
                return ("duplicate", Vec::new());
            }
            let Some(pdi) = incident else {
                return ("ignored", Vec::new());
            };
            let pref = PagerdutyRef {
                incident_id: pdi.id.clone(),
                html_url: pdi.html_url.clone(),
            };
            let ours = pdi
                .incident_key
                .as_deref()
                .and_then(|k| b.get(k).map(|i| i.id.clone()));
            let linked = ours.or_else(|| {
                b.incidents
                    .iter()
                    .rev()
                    .find(|i| {
                        i.pagerduty
                            .as_ref()
                            .is_some_and(|p| p.incident_id == pdi.id)
                    })
                    .map(|i| i.id.clone())
            });
            match ev.event_type.as_str() {
                "incident.triggered" => {
                    if let Some(id) = linked {
                        let inc = b.get_mut(&id).expect("found above");
                        inc.pagerduty = Some(pref);
                        inc.note(
                            now,
                            "pagerduty",
                            format!("PagerDuty incident {} triggered.", pdi.id),
                        );
                        // Our own incident: its candidates go back as a note at the next ranking.
                        inc.ranked_ms = None;
                        ("linked", vec![Change::Updated(id)])
                    } else {
                        let detected = pdi
                            .created_at
                            .as_deref()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .map_or(now, |t| t.as_millisecond());
                        let service = pdi
                            .service
                            .as_ref()
                            .and_then(|s| cfg.pagerduty.our_service(s));
                        let title = pdi
                            .title
                            .clone()
                            .unwrap_or_else(|| format!("PagerDuty incident {}", pdi.id));
                        let id = b.open_external(
                            &cfg,
                            IncidentSource::Pagerduty,
                            title,
                            Symptom {
                                service,
                                metric: None,
                                series: None,
                                detected_ms: detected,
                            },
                            now,
                        );
                        let inc = b.get_mut(&id).expect("just opened");
                        inc.pagerduty = Some(pref);
                        ("opened", vec![Change::Opened(id)])
                    }
                }
                "incident.resolved" => match linked {
                    Some(id) => {
                        let inc = b.get_mut(&id).expect("found above");
                        inc.note(
                            now,
                            "pagerduty",
                            format!("PagerDuty incident {} resolved.", pdi.id),
                        );
                        if inc.source == IncidentSource::Pagerduty
                            && inc.status == IncidentStatus::Open
                        {
                            inc.status = IncidentStatus::Resolved;
                            inc.resolved_ms = Some(now);
                        }
                        ("resolved", Vec::new())
                    }
                    None => ("ignored", Vec::new()),
                },
                _ => ("ignored", Vec::new()),
            }
        })
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = ref("#/components/schemas/Object"))),
    security(()))]
pub async fn openapi(axum::Extension(doc): axum::Extension<Arc<Value>>) -> Json<Value> {
    Json((*doc).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::incident::AlertRef;

    fn alert(status: &str) -> Command {
        Command::Alerts {
            alerts: vec![AlertInput {
                alert: AlertRef {
                    fingerprint: "f1".into(),
                    name: "QueueDepthHigh".into(),
                    status: status.into(),
                    labels: vec![("service".into(), "carts".into())],
                    starts_ms: now_ms() - 60_000,
                    ends_ms: None,
                },
                summary: Some("queue depth high".into()),
            }],
        }
    }

    #[tokio::test]
    async fn a_node_that_does_not_own_the_incidents_forwards_changes_and_stays_quiet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let to_owner = sent.clone();
        let mut cfg = IncidentConfig::default();
        cfg.pagerduty.routing_key = Some(aiops_models::Secret::new("r".repeat(32)));
        let svc = IncidentService::open(cfg, dir.path(), &mut Registry::default())
            .expect("opens")
            .with_forward(Forward(Box::new(move |cmd| {
                to_owner.lock().expect("lock").push(cmd);
                Box::pin(async { Ok(()) })
            })));
        assert!(!svc.active());
        // Over HTTP: forwarded (202), not applied here.
        let resp = submit(&svc, alert("firing"), StatusCode::OK)
            .await
            .expect("accepted");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert!(svc.snapshot().incidents.is_empty());
        let cmd = sent.lock().expect("lock").pop().expect("forwarded");
        // The command survives the trip through the topic.
        let cmd: Command =
            serde_json::from_slice(&serde_json::to_vec(&cmd).expect("encode")).expect("decode");
        // The owner applies it: an incident opens.
        svc.set_owner(true);
        let out = svc.execute(cmd).expect("applied");
        assert_eq!(out["incidents"].as_array().map(Vec::len), Some(1), "{out}");
        // A node that is not the owner pages nothing, even for an open ranked incident...
        svc.set_owner(false);
        {
            let mut book = svc.lock();
            book.incidents[0].ranked_ms = Some(now_ms());
        }
        svc.repage();
        assert!(svc.outbox.pending().expect("outbox").is_empty());
        // ... the owner that took it over queues its page again (PagerDuty de-duplicates).
        svc.set_owner(true);
        assert_eq!(svc.repage(), 1);
        assert_eq!(svc.outbox.pending().expect("outbox").len(), 1);
    }
}
