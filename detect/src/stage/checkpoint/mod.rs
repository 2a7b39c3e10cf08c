//! Checkpoints of the detection state: compact, checksummed, and written a slice at a time so
//! that scoring never stops for long, whatever the number of series.
//!
//! ```text
//! checkpoint.bin = magic "AIOPSCK2" frame*
//! frame          = len:u32le crc32:u32le postcard(payload)
//! payloads       = Header, Policies (the scaling targets' policy states; older checkpoints
//!                  lack it), then Series chunks (up to CHUNK series each), then Trailer
//! ```
//!
//! A frame that fails its checksum, a missing trailer or a series count that does not match
//! makes the whole checkpoint corrupt: it is reported and skipped (series then start from their
//! history). Series are written a chunk per call to [`CheckpointWriter::step`], between
//! batches, each as it is at that moment: a restored state is per-series consistent, which is
//! all scoring needs (every series resumes after its own last sample). A checkpoint written by
//! an older version in JSON (`checkpoint.json`) is still read.
//!
//! Detector parameters are not stored: restored detectors take the ones in use
//! ([`DetectState::set_detector_config`]).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aiops_models::{AnomalyEvent, SeriesId};
use serde::{Deserialize, Serialize};

use crate::RankState;
use crate::scaling::{PolicyState, PolicyStateV1, ScalingState, ScalingStateV1};
use crate::score::{RankStateV1, RankStateV2, RankStateV3, RankStateV4, RankStateV5, RankStateV6};
use crate::stage::{DetectState, SeriesState, ServiceState};

const MAGIC: &[u8; 8] = b"AIOPSCK2";
/// Series per frame.
const CHUNK: usize = 4096;
/// Largest frame accepted when reading; anything bigger is corruption.
const MAX_FRAME: usize = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Header {
    services: Vec<(String, ServiceState)>,
    events: Vec<AnomalyEvent>,
    scaling: ScalingState,
}

/// The header as written before events carried their reason.
#[derive(Serialize, Deserialize)]
struct HeaderV3 {
    services: Vec<(String, ServiceState)>,
    events: Vec<EventV2>,
    scaling: ScalingState,
}

/// The header as written before the forecasters' compact layout.
#[derive(Serialize, Deserialize)]
struct HeaderV2 {
    services: Vec<(String, ServiceState)>,
    events: Vec<EventV2>,
    scaling: ScalingStateV1,
}

/// The header as written before events carried a p-value.
#[derive(Serialize, Deserialize)]
struct HeaderV1 {
    services: Vec<(String, ServiceState)>,
    events: Vec<EventV1>,
    scaling: ScalingStateV1,
}

/// An [`AnomalyEvent`] as written before it carried a p-value (postcard: field for field).
#[derive(Serialize, Deserialize)]
struct EventV1 {
    id: String,
    series_id: SeriesId,
    metric: String,
    service: Option<String>,
    labels: Vec<(String, String)>,
    start_ms: i64,
    peak_ms: i64,
    last_ms: i64,
    end_ms: Option<i64>,
    score: f64,
    observed: f64,
    expected: f64,
    lower: f64,
    upper: f64,
}

/// An [`AnomalyEvent`] as written before it carried its reason: an [`EventV1`] and the
/// p-value (postcard: field for field).
#[derive(Serialize, Deserialize)]
struct EventV2 {
    v1: EventV1,
    p_value: f64,
}

impl From<EventV2> for AnomalyEvent {
    fn from(EventV2 { v1: e, p_value }: EventV2) -> Self {
        AnomalyEvent {
            id: e.id,
            series_id: e.series_id,
            metric: e.metric,
            service: e.service,
            labels: e.labels,
            start_ms: e.start_ms,
            peak_ms: e.peak_ms,
            last_ms: e.last_ms,
            end_ms: e.end_ms,
            score: e.score,
            observed: e.observed,
            expected: e.expected,
            lower: e.lower,
            upper: e.upper,
            p_value,
            reason: None,
        }
    }
}

impl From<EventV1> for AnomalyEvent {
    fn from(v1: EventV1) -> Self {
        EventV2 { v1, p_value: 1.0 }.into()
    }
}

/// New variants go at the end: postcard numbers them in order, so older checkpoints still read.
#[derive(Serialize, Deserialize)]
enum Frame {
    /// The header as written before events carried a p-value.
    Header(Box<HeaderV1>),
    /// Series as written before the continuous score (it then starts learning afresh).
    Series(Vec<(SeriesId, SeriesState)>),
    Trailer {
        series: u64,
    },
    /// Series with the continuous score's state as written before counts were scored.
    Series2(Vec<(SeriesId, SeriesState, RankStateV1)>),
    /// The header with events that carry their p-value, as written before the forecasters'
    /// compact layout.
    Header2(Box<HeaderV2>),
    /// Series with the continuous score's state and their counts, as written before the
    /// range's tails were kept.
    Series3(Vec<(SeriesId, SeriesState, RankStateV2)>),
    /// The scaling targets' policy states (after the header; absent from older checkpoints),
    /// as written before the extra-capacity budget.
    Policies(Vec<(String, PolicyStateV1)>),
    /// The header with the forecasters' compact layout (one seasonal profile per season), as
    /// written before events carried their reason.
    Header3(Box<HeaderV3>),
    /// The scaling targets' policy states with the extra capacity they measured.
    Policies2(Vec<(String, PolicyState)>),
    /// Series with the continuous score's state, their counts and the range's tails, as
    /// written before the level's drift was kept.
    Series4(Vec<(SeriesId, SeriesState, RankStateV3)>),
    /// Series with the continuous score's state, their counts, the range's tails and the
    /// level's drift, as written before the step sizes were watched.
    Series5(Vec<(SeriesId, SeriesState, RankStateV4)>),
    /// Series with the continuous score's state, their counts, the range's tails, the level's
    /// drift and the step sizes', as written before the departure from the day's shape was
    /// watched.
    Series6(Vec<(SeriesId, SeriesState, RankStateV5)>),
    /// Series with the continuous score's state, their counts, the range's tails, the level's
    /// drift, the step sizes' and the departure from the day's shape, as written before bursts
    /// were watched.
    Series7(Vec<(SeriesId, SeriesState, RankStateV6)>),
    /// Series with the continuous score's state, their counts, the range's tails, the level's
    /// drift, the step sizes', the departure from the day's shape and the share of large steps.
    Series8(Vec<(SeriesId, SeriesState, RankState)>),
    /// The header with events that carry their reason.
    Header4(Box<Header>),
}

fn write_frame(w: &mut impl Write, frame: &Frame) -> std::io::Result<()> {
    let payload = postcard::to_stdvec(frame).map_err(std::io::Error::other)?;
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    w.write_all(&payload)
}

/// A checkpoint being written, a chunk of series at a time (see the module docs).
#[derive(Debug)]
pub struct CheckpointWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    ids: Vec<SeriesId>,
    next: usize,
    written: u64,
}

impl CheckpointWriter {
    /// Starts a checkpoint of `state` to `path`: writes the header (services, events, scaling)
    /// and notes which series to write.
    pub fn start(state: &DetectState, path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(MAGIC)?;
        let header = Header {
            services: state
                .services
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            events: state.events.clone(),
            scaling: state.scaling.lock().clone(),
        };
        let policies = header
            .scaling
            .targets
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), t.policy.clone()?)))
            .collect();
        write_frame(&mut out, &Frame::Header4(Box::new(header)))?;
        write_frame(&mut out, &Frame::Policies2(policies))?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            out,
            ids: state.series.keys().copied().collect(),
            next: 0,
            written: 0,
        })
    }

    /// Writes up to `max_series` more series as they are now; true once all are written.
    pub fn step(&mut self, state: &DetectState, max_series: usize) -> std::io::Result<bool> {
        let end = (self.next + max_series).min(self.ids.len());
        while self.next < end {
            let stop = (self.next + CHUNK).min(end);
            let chunk: Vec<(SeriesId, SeriesState, RankState)> = self.ids[self.next..stop]
                .iter()
                .filter_map(|id| {
                    let s = state.series.get(id)?;
                    Some((*id, (**s).clone(), s.detector.rank))
                })
                .collect();
            self.written += chunk.len() as u64;
            write_frame(&mut self.out, &Frame::Series8(chunk))?;
            self.next = stop;
        }
        Ok(self.next == self.ids.len())
    }

    /// Seals the checkpoint: trailer, fsync, rename over the previous one, fsync the directory.
    pub fn finish(mut self) -> std::io::Result<u64> {
        write_frame(
            &mut self.out,
            &Frame::Trailer {
                series: self.written,
            },
        )?;
        let f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(self.written)
    }
}

/// Writes a whole checkpoint at once (at shutdown, in tests).
pub fn save(state: &DetectState, path: &Path) {
    let res = CheckpointWriter::start(state, path).and_then(|mut w| {
        w.step(state, usize::MAX)?;
        w.finish()
    });
    match res {
        Ok(n) => {
            tracing::debug!(path = %path.display(), series = n, "Checkpointed detector state.")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Could not checkpoint detector state.")
        }
    }
}

fn read(bytes: &[u8]) -> Result<DetectState, String> {
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err("not an aiops checkpoint (bad magic)".into());
    }
    let mut pos = 8;
    let mut st = DetectState::default();
    let mut header = false;
    let mut series = 0u64;
    loop {
        let Some(h) = bytes.get(pos..pos + 8) else {
            return Err(format!("truncated at byte {pos} (no trailer)"));
        };
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
        let payload = bytes
            .get(pos + 8..pos + 8 + len)
            .filter(|_| len <= MAX_FRAME)
            .ok_or_else(|| format!("truncated frame at byte {pos}"))?;
        if crc32fast::hash(payload) != crc {
            return Err(format!("checksum mismatch in the frame at byte {pos}"));
        }
        pos += 8 + len;
        match postcard::from_bytes::<Frame>(payload)
            .map_err(|e| format!("undecodable frame at byte {}: {e}", pos - 8 - len))?
        {
            Frame::Header(h) if !header => {
                header = true;
                st.services = h.services.into_iter().collect();
                st.events = h.events.into_iter().map(AnomalyEvent::from).collect();
                st.scaling.replace(h.scaling.into());
            }
            Frame::Header2(h) if !header => {
                header = true;
                st.services = h.services.into_iter().collect();
                st.events = h.events.into_iter().map(AnomalyEvent::from).collect();
                st.scaling.replace(h.scaling.into());
            }
            Frame::Header3(h) if !header => {
                header = true;
                st.services = h.services.into_iter().collect();
                st.events = h.events.into_iter().map(AnomalyEvent::from).collect();
                st.scaling.replace(h.scaling);
            }
            Frame::Header4(h) if !header => {
                header = true;
                st.services = h.services.into_iter().collect();
                st.events = h.events;
                st.scaling.replace(h.scaling);
            }
            Frame::Series(chunk) if header => {
                series += chunk.len() as u64;
                st.series
                    .extend(chunk.into_iter().map(|(id, s)| (id, Box::new(s))));
            }
            Frame::Series2(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series3(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series4(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series5(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series6(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series7(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank.into();
                    (id, Box::new(s))
                }));
            }
            Frame::Series8(chunk) if header => {
                series += chunk.len() as u64;
                st.series.extend(chunk.into_iter().map(|(id, mut s, rank)| {
                    s.detector.rank = rank;
                    (id, Box::new(s))
                }));
            }
            Frame::Policies(policies) if header => {
                let policies = policies.into_iter().map(|(n, p)| (n, p.into()));
                restore_policies(&st, policies);
            }
            Frame::Policies2(policies) if header => restore_policies(&st, policies),
            Frame::Trailer { series: n } if header => {
                if n != series {
                    return Err(format!(
                        "trailer counts {n} series, the frames hold {series}"
                    ));
                }
                return Ok(st);
            }
            _ => return Err(format!("frame out of order at byte {}", pos - 8 - len)),
        }
    }
}

/// Gives each target named in `policies` its policy state (targets no longer configured are
/// not in the header either: theirs is dropped).
fn restore_policies(st: &DetectState, policies: impl IntoIterator<Item = (String, PolicyState)>) {
    let mut scaling = st.scaling.lock();
    for (name, p) in policies {
        if let Some(t) = scaling.targets.get_mut(&name) {
            t.policy = Some(p);
        }
    }
}

/// Where `serve` keeps the detection checkpoint under its data directory.
pub fn path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("detect").join("checkpoint.bin")
}

/// The detection state `serve` starts from (blocking: run it off the async threads): the
/// checkpoint, the events of the event log beside it (the record of events: it also holds those
/// a crash kept out of the last checkpoint), the active trained profiles (series the checkpoint
/// does not know start from them) and `cfg`'s detector and limits.
pub fn restore(data_dir: &Path, cfg: &crate::DetectConfig) -> DetectState {
    let checkpoint = path(data_dir);
    let mut st = load(&checkpoint);
    let logged =
        crate::stage::load_events(&checkpoint.with_file_name("events.jsonl"), cfg.max_events);
    if !logged.is_empty() {
        st.events = logged;
        st.reattach_open_events();
    }
    st.profiles = match crate::registered::active_profiles(data_dir) {
        Ok(Some((version, p))) => {
            tracing::info!(
                version,
                series = p.len(),
                "Using the trained profiles of the active model."
            );
            p
        }
        Ok(None) => Default::default(),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot load the active trained profiles; series start from history.");
            Default::default()
        }
    };
    st.set_detector_config(cfg.detector);
    st.published
        .set_limits(cfg.max_events, cfg.max_score_gauges);
    st.published.reset_events(&st.events);
    st
}

/// The checkpoint at `path` (or, if absent, an older JSON one beside it); an empty state when
/// there is none or it is unreadable (reported).
pub fn load(path: &Path) -> DetectState {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => match read(&bytes) {
            Ok(st) => {
                tracing::info!(path = %path.display(), series = st.series.len(), events = st.events.len(), "Restored detector state.");
                st
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "Detector checkpoint is corrupt; series start from their history.");
                DetectState::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::stage::load_json_checkpoint(&path.with_extension("json"))
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot read the detector checkpoint; series start from their history.");
            DetectState::default()
        }
    }
}

#[cfg(test)]
mod tests;
