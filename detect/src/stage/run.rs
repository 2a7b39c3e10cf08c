//! The stage's thread: batches in order, the warmer, checkpoints a slice at a time, the event
//! log; and checkpoints of older versions (JSON).

use super::*;

/// Series written per slice of a checkpoint (between two batches).
const CHECKPOINT_SLICE: usize = 20_000;

/// Where the detection stage reads history: one series over a range (scaling targets first
/// seen), and many series in one pass (warming detectors, [`crate::warm`]).
pub struct HistoryReaders {
    /// One series, `from..=to`.
    pub series: Box<History>,
    /// Many series in one pass.
    pub scan: Box<crate::warm::HistoryScan>,
}

impl std::fmt::Debug for HistoryReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryReaders")
    }
}

/// The detection stage's thread: scores every batch from `input` in order, appends changed
/// events to the event log beside `checkpoint` and hands them to `publish`, checkpoints every
/// `checkpoint_secs`, and runs the warmer (a thread of its own) for series with history.
pub fn run(
    cfg: DetectConfig,
    input: aiops_models::queue::BatchReceiver,
    catalog: std::sync::Arc<SeriesCatalog>,
    state: std::sync::Arc<std::sync::RwLock<DetectState>>,
    checkpoint: Option<std::path::PathBuf>,
    history: HistoryReaders,
    publish: Box<dyn Fn(&AnomalyEvent) + Send>,
) {
    use aiops_models::queue::RecvError;
    use std::io::Write as _;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let HistoryReaders {
        series: history,
        scan,
    } = history;
    let mut log = checkpoint.as_ref().and_then(|p| {
        let path = p.with_file_name("events.jsonl");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "Cannot open the anomaly event log."))
            .ok()
    });
    // The warmer: one pass of history per chunk of queued series, at a bounded rate.
    let (warm_tx, warm_rx) = mpsc::sync_channel::<Vec<WarmRequest>>(1);
    let (warmed_tx, warmed_rx) = mpsc::channel::<Vec<Warmed>>();
    let warmer = {
        let (dcfg, per_sec) = (cfg.detector, cfg.warm_series_per_sec);
        std::thread::Builder::new()
            .name("aiops-warm".into())
            .spawn(move || {
                let mut limit = crate::warm::RateLimit::new(per_sec);
                for reqs in warm_rx {
                    std::thread::sleep(limit.take(reqs.len()));
                    let out = crate::warm::warm_batch(&dcfg, &reqs, &*scan);
                    if warmed_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources")
    };
    let fitter = crate::fit::Fitter::spawn();
    state
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .defer_fits();
    let every = Duration::from_secs(cfg.checkpoint_secs);
    let mut last = Instant::now();
    // A checkpoint in progress: a slice of series is written after each batch, so scoring
    // pauses for milliseconds, not for the whole state.
    let mut writing: Option<crate::stage::checkpoint::CheckpointWriter> = None;
    loop {
        // Poll often while series are being warmed, so warmed detectors go in promptly.
        let busy = state
            .read()
            .map(|s| s.warm_backlog() > 0 || s.published.top_pending())
            .unwrap_or(false);
        let wait = if busy {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        let received = input.recv_timeout(wait);
        let changed = {
            let mut st = state.write().unwrap_or_else(|p| p.into_inner());
            st.published.counters.queue_bytes.store(
                input.queued_bytes() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            while let Ok(w) = warmed_rx.try_recv() {
                st.apply_warmed(&cfg, &catalog, w);
            }
            st.apply_fits(fitter.finished());
            match &received {
                Ok(batch) => st.process_queued(&cfg, batch, &catalog, &*history),
                Err(RecvError::Timeout) => {}
                Err(RecvError::Disconnected) => break,
            }
            let refused = fitter.submit(st.take_fit_requests());
            st.apply_fits(refused);
            let reqs = st.take_warm_requests(cfg.warm_batch);
            if !reqs.is_empty() && warm_tx.send(reqs).is_err() {
                tracing::warn!("The warmer stopped; series with history start cold.");
            }
            let changed = st.take_changed();
            if let Some(f) = log.as_mut() {
                for ev in &changed {
                    let mut line = serde_json::to_vec(ev).expect("an event always serialises");
                    line.push(b'\n');
                    if let Err(e) = f.write_all(&line) {
                        tracing::warn!(error = %e, "Cannot append to the anomaly event log.");
                    }
                }
            }
            changed
        };
        for ev in &changed {
            publish(ev);
        }
        if let Some(path) = &checkpoint {
            let st = state.read().unwrap_or_else(|p| p.into_inner());
            if writing.is_none() && last.elapsed() >= every {
                last = Instant::now();
                match crate::stage::checkpoint::CheckpointWriter::start(&st, path) {
                    Ok(w) => writing = Some(w),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "Could not start a detector checkpoint.")
                    }
                }
            }
            if let Some(w) = writing.as_mut() {
                match w.step(&st, CHECKPOINT_SLICE) {
                    Ok(false) => {}
                    Ok(true) => {
                        let started = last;
                        match writing.take().map(|w| w.finish()) {
                            Some(Ok(n)) => tracing::debug!(
                                series = n,
                                secs = started.elapsed().as_secs_f64(),
                                "Checkpointed detector state."
                            ),
                            Some(Err(e)) => {
                                tracing::warn!(path = %path.display(), error = %e, "Could not checkpoint detector state.")
                            }
                            None => {}
                        }
                    }
                    Err(e) => {
                        writing = None;
                        tracing::warn!(path = %path.display(), error = %e, "Could not checkpoint detector state.");
                    }
                }
            }
        }
    }
    drop(warm_tx);
    let _ = warmer.join();
    fitter.stop();
    if let Some(path) = &checkpoint {
        crate::stage::checkpoint::save(&state.read().unwrap_or_else(|p| p.into_inner()), path);
    }
    tracing::info!("Detection stage stopped.");
}

const CHECKPOINT_VERSION: u32 = 1;

#[derive(Deserialize)]
struct CheckpointIn {
    version: u32,
    state: DetectState,
}

/// Reads a checkpoint an older version wrote as JSON (see [`crate::stage::checkpoint`] for today's).
pub fn load_json_checkpoint(path: &std::path::Path) -> DetectState {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DetectState::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot read the detector checkpoint; starting cold.");
            return DetectState::default();
        }
    };
    match serde_json::from_slice::<CheckpointIn>(&bytes) {
        Ok(c) if c.version == CHECKPOINT_VERSION => {
            tracing::info!(path = %path.display(), series = c.state.series.len(), events = c.state.events.len(), "Restored detector state (JSON checkpoint of an older version).");
            c.state
        }
        Ok(c) => {
            tracing::warn!(path = %path.display(), version = c.version, "Detector checkpoint has an incompatible version; starting cold.");
            DetectState::default()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Detector checkpoint is corrupt; starting cold.");
            DetectState::default()
        }
    }
}
