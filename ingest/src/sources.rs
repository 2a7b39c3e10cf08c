//! Health of the pulling sources, shared with the API's `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// What `/readyz` shows of a source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    /// Source kind (`prometheus`).
    pub kind: &'static str,
    /// False while the most recent poll failed.
    pub healthy: bool,
    /// The most recent failure.
    pub last_error: Option<String>,
    /// Unix ms of the most recent successful poll.
    pub last_success_ms: Option<i64>,
    /// Samples pulled since start.
    pub samples: u64,
}

/// The states of all pulling sources, by name; shared with the API.
#[derive(Debug, Clone, Default)]
pub struct SourceStates(Arc<RwLock<BTreeMap<String, SourceState>>>);

impl SourceStates {
    /// A copy of every state.
    pub fn snapshot(&self) -> BTreeMap<String, SourceState> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the state of source `name` of `kind`.
    pub fn update(&self, kind: &'static str, name: &str, f: impl FnOnce(&mut SourceState)) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        f(map.entry(name.to_owned()).or_insert_with(|| SourceState {
            kind,
            ..SourceState::default()
        }));
    }

    /// Records a successful poll that brought `samples`.
    pub fn ok(&self, kind: &'static str, name: &str, samples: u64) {
        self.update(kind, name, |s| {
            s.healthy = true;
            s.last_error = None;
            s.last_success_ms = Some(jiff::Timestamp::now().as_millisecond());
            s.samples += samples;
        });
    }

    /// Records a failed poll.
    pub fn failed(&self, kind: &'static str, name: &str, error: String) {
        self.update(kind, name, |s| {
            s.healthy = false;
            s.last_error = Some(error);
        });
    }
}

/// Totals of a pull.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PullSummary {
    /// Distinct series seen.
    pub series: usize,
    /// Samples made durable.
    pub samples: u64,
    /// Requests made.
    pub requests: usize,
}
