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

mod alertmanager;
mod pagerduty_hook;
mod task;
#[cfg(test)]
mod tests;
mod triage;

pub use alertmanager::*;
pub use pagerduty_hook::*;
pub use task::*;
pub use triage::*;

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
