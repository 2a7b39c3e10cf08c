//! PagerDuty over HTTP: the durable outbox and its sender (Events API v2 alerts, REST notes),
//! and the webhook v3 receiver.
//!
//! Outbox: every message is a file written with fsync before it counts as queued; the sender
//! sends them in order and deletes a file only after PagerDuty accepted it (2xx). 429, 408, 5xx
//! and network errors are retried with exponential backoff (honouring `Retry-After`), without
//! limit; other 4xx are parked in `dead/` with an ERROR (the message itself is wrong). A crash
//! between sending and deleting re-sends once: PagerDuty de-duplicates by `dedup_key`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiops_ingest::http::{Backoff, is_retryable, retry_after};
use aiops_rca::pagerduty::PagerdutyConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// One queued message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxItem {
    /// An Events API v2 message (trigger / resolve).
    Event {
        /// The JSON body.
        body: serde_json::Value,
    },
    /// A note on a PagerDuty incident (REST API).
    Note {
        /// PagerDuty's incident id.
        incident_id: String,
        /// The note.
        content: String,
    },
}

/// The durable queue of messages to PagerDuty.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    seq: AtomicU64,
    wake: Notify,
}

impl Outbox {
    /// Opens (creates) the outbox in `dir`; numbering continues after what is queued.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("dead"))?;
        let next = list(dir)?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        Ok(Self {
            dir: dir.to_owned(),
            seq: AtomicU64::new(next),
            wake: Notify::new(),
        })
    }

    /// Queues a message durably, then wakes the sender.
    pub fn push(&self, item: &OutboxItem) -> std::io::Result<()> {
        use std::io::Write;
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("{n:020}.json"));
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(item).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.wake.notify_one();
        Ok(())
    }

    /// Messages waiting, oldest first.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        list(&self.dir)
    }
}

fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    Ok(v)
}

/// How one delivery went.
enum Outcome {
    Done,
    Retry(Option<Duration>),
    Reject(String),
}

/// Sends the outbox until `cancel`: in order, one at a time.
pub async fn run_sender(
    outbox: std::sync::Arc<Outbox>,
    cfg: PagerdutyConfig,
    http: reqwest::Client,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(cfg.max_backoff_secs),
    );
    loop {
        let next = match outbox.pending() {
            Ok(p) => p.into_iter().next(),
            Err(e) => {
                error!(dir = %outbox.dir.display(), error = %e, "Cannot list the PagerDuty outbox.");
                None
            }
        };
        let Some(path) = next else {
            tokio::select! {
                _ = outbox.wake.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                _ = cancel.cancelled() => return,
            }
        };
        let item: OutboxItem = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(item) => item,
            Err(e) => {
                park(&outbox, &path, &format!("unreadable: {e}"));
                continue;
            }
        };
        match deliver(&http, &cfg, &item).await {
            Outcome::Done => {
                backoff.reset();
                if let Err(e) = std::fs::remove_file(&path) {
                    error!(file = %path.display(), error = %e, "Cannot remove a delivered PagerDuty message; it will be sent again.");
                }
            }
            Outcome::Reject(reason) => park(&outbox, &path, &reason),
            Outcome::Retry(after) => {
                let wait = backoff.next_wait(after);
                warn!(file = %path.display(), wait_secs = wait.as_secs_f64(), "PagerDuty did not take the message; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // The message stays on disk: the next start sends it.
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

fn park(outbox: &Outbox, path: &Path, reason: &str) {
    let dead = outbox
        .dir
        .join("dead")
        .join(path.file_name().unwrap_or_default());
    error!(file = %path.display(), moved_to = %dead.display(), reason, "PagerDuty refused a message; it is parked and will not be retried.");
    if let Err(e) = std::fs::rename(path, &dead) {
        error!(file = %path.display(), error = %e, "Cannot park a refused PagerDuty message.");
    }
}

async fn deliver(http: &reqwest::Client, cfg: &PagerdutyConfig, item: &OutboxItem) -> Outcome {
    let req = match item {
        OutboxItem::Event { body } => http.post(&cfg.events_url).json(body),
        OutboxItem::Note {
            incident_id,
            content,
        } => {
            let Some(token) = cfg.api_token.as_ref().map(aiops_models::Secret::expose) else {
                return Outcome::Reject("no api_token configured for notes".into());
            };
            http.post(format!(
                "{}/incidents/{incident_id}/notes",
                cfg.api_url.trim_end_matches('/')
            ))
            .header("Authorization", format!("Token token={token}"))
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .header("From", cfg.from_email.clone().unwrap_or_default())
            .json(&serde_json::json!({"note": {"content": content}}))
        }
    };
    let resp = match req.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "PagerDuty is unreachable.");
            return Outcome::Retry(None);
        }
    };
    let status = resp.status();
    if status.is_success() {
        info!(
            status = status.as_u16(),
            kind = kind(item),
            "PagerDuty accepted a message."
        );
        return Outcome::Done;
    }
    let asked = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    if is_retryable(status) {
        return Outcome::Retry(asked);
    }
    Outcome::Reject(format!(
        "{} {}",
        status.as_u16(),
        body.chars().take(500).collect::<String>()
    ))
}

fn kind(item: &OutboxItem) -> &'static str {
    match item {
        OutboxItem::Event { .. } => "event",
        OutboxItem::Note { .. } => "note",
    }
}
