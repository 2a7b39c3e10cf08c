//! The writing stage: group commits to the WAL, the head, the acks, segment rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::background::{compactor, merger};
use super::read::IdBloom;
use super::{
    ArchiveStage, HeadSegment, Shared, apply_to_catalog, batch_bytes, sync_dir, wal, wal_path,
};
use crate::IngestError;
use crate::transport::{BatchReceiver, Envelope};

pub(super) fn open_segment(shared: &Shared, seq: u64) -> Result<(File, u64), IngestError> {
    let path = wal_path(&shared.cfg.data_dir, seq);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(IngestError::io("create", &path))?;
    (&file)
        .write_all(wal::SEGMENT_HEADER)
        .and_then(|()| file.sync_data())
        .map_err(IngestError::io("write", &path))?;
    sync_dir(&shared.cfg.data_dir.join("wal"))?;
    shared
        .wal_bytes
        .fetch_add(wal::SEGMENT_HEADER.len() as u64, Ordering::Relaxed);
    shared
        .head
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(seq, HeadSegment::default());
    Ok((file, seq))
}

impl ArchiveStage {
    /// Hands every batch, once durable and acknowledged, to `next` (e.g. detection). The
    /// channel is bounded: a slow consumer slows the archive and so, through the transport,
    /// the senders — nothing is dropped.
    pub fn with_downstream(mut self, next: aiops_models::queue::BatchSender) -> Self {
        self.downstream = Some(next);
        self
    }

    /// Runs the stage on its own thread until `input` closes (every sender dropped and the
    /// queue drained), then syncs and returns. Must be called inside a tokio runtime.
    pub fn spawn(self, input: BatchReceiver) -> JoinHandle<()> {
        let rt = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("aiops-archive".into())
            .spawn(move || self.run(rt, input))
            .expect("spawning a thread only fails when the OS is out of resources")
    }

    fn run(mut self, rt: tokio::runtime::Handle, mut input: BatchReceiver) {
        let (compact_tx, compact_rx) = mpsc::channel::<u64>();
        let shared = self.shared.clone();
        let (merge_tx, merge_rx) = mpsc::channel::<()>();
        let compactor = std::thread::Builder::new()
            .name("aiops-compactor".into())
            .spawn(move || compactor(shared, compact_rx, merge_tx))
            .expect("spawning a thread only fails when the OS is out of resources");
        let shared = self.shared.clone();
        let merger = std::thread::Builder::new()
            .name("aiops-merger".into())
            .spawn(move || merger(shared, merge_rx))
            .expect("spawning a thread only fails when the OS is out of resources");
        for seq in self.sealed.drain(..) {
            let _ = compact_tx.send(seq);
        }
        let tick = Duration::from_secs(1);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group: Vec<Envelope> = Vec::new();
        loop {
            let first = match rt.block_on(async { tokio::time::timeout(tick, input.recv()).await })
            {
                Ok(Some(env)) => env,
                Ok(None) => break,
                Err(_) => {
                    self.maybe_rotate(&compact_tx);
                    continue;
                }
            };
            group.push(first);
            buf.clear();
            let mut encode_err = None;
            let mut i = 0;
            loop {
                while i < group.len() {
                    if let Err(e) = wal::encode_record(&group[i].batch, &mut buf) {
                        encode_err = Some(e);
                    }
                    i += 1;
                }
                if buf.len() >= self.shared.cfg.group_commit_max_bytes {
                    break;
                }
                match input.try_recv() {
                    Some(env) => group.push(env),
                    None => break,
                }
            }
            let outcome = match encode_err {
                Some(e) => Err(e),
                None => self.commit(&buf),
            };
            self.finish_group(&mut group, outcome);
            self.maybe_rotate(&compact_tx);
        }
        if let Err(e) = self.file.sync_data() {
            error!(error = %e, "Final WAL sync failed.");
        }
        self.shared.stopping.store(true, Ordering::Relaxed);
        drop(compact_tx);
        let _ = compactor.join();
        let _ = merger.join();
        info!("Archive stage stopped.");
    }

    /// Writes and syncs one group; on failure cuts the segment back to its last good length.
    fn commit(&mut self, buf: &[u8]) -> Result<(), IngestError> {
        let started = Instant::now();
        let res = self.file.write_all(buf).and_then(|()| {
            if self.shared.cfg.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        self.shared
            .metrics
            .archive_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match res {
            Ok(()) => {
                self.seg_bytes += buf.len() as u64;
                self.shared
                    .wal_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.seg_bytes);
                Err(IngestError::io(
                    "write",
                    wal_path(&self.shared.cfg.data_dir, self.seq),
                )(e))
            }
        }
    }

    fn finish_group(&mut self, group: &mut Vec<Envelope>, outcome: Result<(), IngestError>) {
        let shared = &self.shared;
        match outcome {
            Ok(()) => {
                {
                    let mut stale = shared.stale.write().unwrap_or_else(|p| p.into_inner());
                    for env in group.iter() {
                        apply_to_catalog(&shared.catalog, &mut stale, &env.batch);
                        shared
                            .metrics
                            .stale_markers
                            .inc_by(env.batch.stale.len() as u64);
                    }
                }
                shared.metrics.series.set(shared.catalog.len() as i64);
                shared
                    .metrics
                    .catalog_bytes
                    .set(shared.catalog.bytes() as i64);
                let mut forward = Vec::new();
                // Filters are built before the lock: readers wait only for the pushes.
                let blooms: Vec<Arc<IdBloom>> = group
                    .iter()
                    .map(|env| Arc::new(IdBloom::of(&env.batch)))
                    .collect();
                let added: u64 = group
                    .iter()
                    .zip(&blooms)
                    .map(|(env, bloom)| batch_bytes(&env.batch, bloom))
                    .sum();
                shared.add_head_bytes(added as i64);
                self.seg_head_bytes += added;
                {
                    let mut head = shared.head.write().unwrap_or_else(|p| p.into_inner());
                    let seg = head.entry(self.seq).or_default();
                    for (env, bloom) in group.drain(..).zip(blooms) {
                        shared
                            .metrics
                            .samples_archived
                            .inc_by(env.batch.len() as u64);
                        shared.metrics.batches_archived.inc();
                        if self.downstream.is_some() && !env.batch.is_empty() {
                            // Columns are shared, not copied.
                            forward.push(env.batch.clone());
                        }
                        seg.batches.push((env.batch, bloom));
                        if let Some(ack) = env.ack {
                            ack.send(Ok(()));
                        }
                    }
                }
                if let Some(next) = &self.downstream {
                    for b in forward {
                        if next.send(b).is_err() {
                            error!(
                                "The stage after the archive stopped; batches are no longer forwarded."
                            );
                            self.downstream = None;
                            break;
                        }
                    }
                }
                if !shared.healthy.swap(true, Ordering::Relaxed) {
                    info!("Archive writes succeed again.");
                }
            }
            Err(msg) => {
                error!(error = %msg, batches = group.len(), "Archive write failed; senders were told to retry.");
                shared
                    .metrics
                    .archive_write_errors
                    .inc_by(group.len() as u64);
                shared.fail(msg.to_string());
                for env in group.drain(..) {
                    if let Some(ack) = env.ack {
                        ack.send(Err(IngestError::Pipeline(format!(
                            "archive write failed: {msg}"
                        ))));
                    }
                }
            }
        }
    }

    fn maybe_rotate(&mut self, compact_tx: &mpsc::Sender<u64>) {
        let cfg = &self.shared.cfg;
        let full = self.seg_bytes.max(self.seg_head_bytes) >= cfg.segment_max_bytes;
        let old = self.seg_bytes > wal::SEGMENT_HEADER.len() as u64
            && self.seg_opened.elapsed() >= Duration::from_secs(cfg.segment_max_secs);
        if !(full || old) {
            return;
        }
        match open_segment(&self.shared, self.seq + 1) {
            Ok((file, seq)) => {
                let sealed = self.seq;
                let _ = self.file.sync_all();
                self.file = file;
                self.seq = seq;
                self.seg_bytes = wal::SEGMENT_HEADER.len() as u64;
                self.seg_head_bytes = 0;
                self.seg_opened = Instant::now();
                let _ = compact_tx.send(sealed);
            }
            Err(e) => {
                error!(error = %e, "Could not open a new WAL segment; appending to the current one.");
                self.shared.fail(e.to_string());
            }
        }
    }
}
