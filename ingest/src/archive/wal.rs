//! Write-ahead log segments: a header, then framed, checksummed records, each one
//! [`SampleBatch`].
//!
//! ```text
//! segment = "AIOPSWAL" version:u8=2 record*
//! record  = magic:u32le len:u32le payload_crc:u32le header_crc:u32le payload[len]
//! payload = version:u8=2 series_len:u32le series_json stale_len:u32le stale_json samples
//! ```
//!
//! `series_json` lists the new series of the batch, `stale_json` its stale markers as
//! `[[id, ts_ms], …]`, and `samples` holds the samples packed (see [`packed`]: about 6 bytes a
//! sample). Payloads of version 1 (still read) held an Arrow IPC stream instead, 24 bytes a
//! sample. The same records are the messages aiops produces to Kafka.
//!
//! A record's length is trusted only when its header checksum (over magic, length and payload
//! checksum) holds. Replay keeps every record whose payload checksum holds: a damaged record
//! with a sound header is skipped by its length; after a damaged header, replay resyncs on the
//! next offset where a whole valid record starts. What lies between is reported as a
//! [`Damage`]. A bad stretch with no valid record after it is the segment's tail (a torn write
//! when it is the newest segment). Segments written before version 2 (no header: `len crc
//! payload` records) are still read, up to their first bad record.

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use crate::IngestError;
use aiops_models::{SampleBatch, SeriesId, SeriesMeta, StaleMarker, sample_schema};
use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
use arrow::ipc::reader::StreamReader;
use serde::{Deserialize, Serialize};

mod packed;

/// The first bytes of a version 2 segment.
pub const SEGMENT_HEADER: &[u8; 9] = b"AIOPSWAL\x02";
const RECORD_MAGIC: u32 = 0x5741_1A0C;
const HEADER: usize = 16;
/// Payloads with packed samples; version 1 held an Arrow IPC stream.
const VERSION: u8 = 2;
const VERSION_ARROW_IPC: u8 = 1;
/// Largest record accepted on replay; anything bigger is corruption.
const MAX_RECORD: usize = 1 << 30;

/// How a record holds its samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// Packed (payload version 2; see [`packed`]): what the WAL writes.
    #[default]
    Packed,
    /// An Arrow IPC stream (payload version 1), readable by releases before packed records:
    /// for Kafka messages while a cluster is upgraded node by node.
    ArrowIpc,
}

/// Appends the framed record of `batch` to `out`.
pub fn encode_record(batch: &SampleBatch, out: &mut Vec<u8>) -> Result<(), IngestError> {
    encode_record_as(batch, RecordFormat::Packed, out)
}

/// Appends the framed record of `batch`, its samples in `format`, to `out`.
pub fn encode_record_as(
    batch: &SampleBatch,
    format: RecordFormat,
    out: &mut Vec<u8>,
) -> Result<(), IngestError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    out.push(match format {
        RecordFormat::Packed => VERSION,
        RecordFormat::ArrowIpc => VERSION_ARROW_IPC,
    });
    let series =
        serde_json::to_vec(&batch.new_series).map_err(IngestError::codec("series json"))?;
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    out.extend_from_slice(&series);
    let stale: Vec<(SeriesId, i64)> = batch
        .stale
        .iter()
        .map(|m| (m.series_id, m.timestamp_ms))
        .collect();
    let stale = serde_json::to_vec(&stale).map_err(IngestError::codec("stale json"))?;
    out.extend_from_slice(&(stale.len() as u32).to_le_bytes());
    out.extend_from_slice(&stale);
    match format {
        RecordFormat::Packed => {
            packed::encode(batch.series_ids(), batch.timestamps(), batch.values(), out)
        }
        RecordFormat::ArrowIpc => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut *out, &sample_schema())
                .map_err(IngestError::codec("arrow ipc"))?;
            w.write(&batch.samples)
                .map_err(IngestError::codec("arrow ipc"))?;
            w.finish().map_err(IngestError::codec("arrow ipc"))?;
        }
    }
    let payload_len = out.len() - start - HEADER;
    if payload_len > MAX_RECORD {
        out.truncate(start);
        return Err(IngestError::damaged(format!(
            "a record of {payload_len} bytes is over the 1 GiB limit"
        )));
    }
    let crc = crc32fast::hash(&out[start + HEADER..]);
    let h = &mut out[start..start + HEADER];
    h[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
    Ok(())
}

/// A stretch of a segment that held no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte range in the segment.
    pub range: Range<u64>,
    /// What was wrong at its start.
    pub reason: String,
}

/// The outcome of reading a segment.
#[derive(Debug, Default)]
pub struct Replay {
    /// The valid records in order.
    pub batches: Vec<SampleBatch>,
    /// End of the last valid record: what follows is the tail, valid or not.
    pub valid_len: u64,
    /// Damaged stretches before `valid_len`, with valid records after each.
    pub damage: Vec<Damage>,
    /// Why the bytes after `valid_len` are not records, if there are any.
    pub tail: Option<String>,
}

/// A record header at `pos` whose checksum holds: its payload length and checksum.
fn header_at(bytes: &[u8], pos: usize) -> Option<(usize, u32)> {
    let h = bytes.get(pos..pos + HEADER)?;
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    (word(0) == RECORD_MAGIC && crc32fast::hash(&h[..12]) == word(12))
        .then(|| (word(4) as usize, word(8)))
        .filter(|&(len, _)| len <= MAX_RECORD)
}

/// The next offset after `from` where a whole record with sound checksums starts.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut at = from;
    while let Some(i) = bytes.get(at..)?.windows(4).position(|w| w == magic) {
        let pos = at + i;
        if let Some((len, crc)) = header_at(bytes, pos)
            && bytes
                .get(pos + HEADER..pos + HEADER + len)
                .is_some_and(|p| crc32fast::hash(p) == crc)
        {
            return Some(pos);
        }
        at = pos + 1;
    }
    None
}

/// Reads every valid record of a segment's bytes (see the module doc).
pub fn replay(bytes: &[u8]) -> Replay {
    if !bytes.starts_with(SEGMENT_HEADER) {
        return replay_v1(bytes);
    }
    let mut out = Replay {
        valid_len: SEGMENT_HEADER.len() as u64,
        ..Replay::default()
    };
    let mut pos = SEGMENT_HEADER.len();
    while pos < bytes.len() {
        let (reason, skip_to) = match header_at(bytes, pos) {
            Some((len, crc)) => match bytes.get(pos + HEADER..pos + HEADER + len) {
                None => (
                    format!("record of {len} bytes at byte {pos} runs past the end"),
                    None,
                ),
                Some(p) if crc32fast::hash(p) != crc => (
                    format!("checksum mismatch in the record at byte {pos}"),
                    Some(pos + HEADER + len),
                ),
                Some(p) => match decode_payload(p) {
                    Ok(b) => {
                        out.batches.push(b);
                        pos += HEADER + len;
                        out.valid_len = pos as u64;
                        continue;
                    }
                    Err(e) => (
                        format!("undecodable record at byte {pos}: {e}"),
                        Some(pos + HEADER + len),
                    ),
                },
            },
            None => (format!("no valid record header at byte {pos}"), None),
        };
        // Skip a record whose header holds; otherwise look for the next sound record.
        let next = skip_to
            .filter(|&n| n >= bytes.len() || header_at(bytes, n).is_some())
            .or_else(|| resync(bytes, pos + 1));
        match next {
            Some(n) if n < bytes.len() => {
                out.damage.push(Damage {
                    range: pos as u64..n as u64,
                    reason,
                });
                pos = n;
            }
            _ => {
                out.tail = Some(reason);
                break;
            }
        }
    }
    out
}

/// Decodes one whole framed record (a Kafka message), framed as version 2 writes it or as
/// version 1 did (messages produced before an upgrade).
pub fn decode_record(bytes: &[u8]) -> Result<SampleBatch, IngestError> {
    if let Some((len, crc)) = header_at(bytes, 0) {
        let p = bytes
            .get(HEADER..)
            .filter(|p| p.len() == len)
            .ok_or_else(|| {
                IngestError::damaged(format!(
                    "a record of {len} bytes in a message of {}",
                    bytes.len()
                ))
            })?;
        if crc32fast::hash(p) != crc {
            return Err(IngestError::damaged("record checksum mismatch"));
        }
        return decode_payload(p);
    }
    let r = replay_v1(bytes);
    if r.valid_len != bytes.len() as u64 || r.batches.len() != 1 {
        return Err(IngestError::damaged(format!(
            "not one whole samples record ({} of {} bytes valid)",
            r.valid_len,
            bytes.len()
        )));
    }
    Ok(r.batches.into_iter().next().expect("one batch"))
}

/// Segments written before version 2: replay stops at the first invalid record.
fn replay_v1(bytes: &[u8]) -> Replay {
    let mut out = Replay::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            out.tail = Some(format!("torn record header at byte {pos}"));
            break;
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes
            .get(pos + 8..pos + 8 + len)
            .filter(|_| len <= MAX_RECORD)
        else {
            out.tail = Some(format!("torn record of {len} bytes at byte {pos}"));
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.tail = Some(format!("checksum mismatch in record at byte {pos}"));
            break;
        }
        match decode_payload(payload) {
            Ok(b) => out.batches.push(b),
            Err(e) => {
                out.tail = Some(format!("undecodable record at byte {pos}: {e}"));
                break;
            }
        }
        pos += 8 + len;
        out.valid_len = pos as u64;
    }
    out
}

fn decode_payload(p: &[u8]) -> Result<SampleBatch, IngestError> {
    let mut pos = 0;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], IngestError> {
        let s = p
            .get(*pos..*pos + n)
            .ok_or_else(|| IngestError::damaged("truncated payload"))?;
        *pos += n;
        Ok(s)
    };
    let version = take(&mut pos, 1)?[0];
    if version != VERSION && version != VERSION_ARROW_IPC {
        return Err(IngestError::damaged(format!(
            "unknown record version {version}"
        )));
    }
    let n = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4")) as usize;
    let series: Vec<SeriesMeta> =
        serde_json::from_slice(take(&mut pos, n)?).map_err(IngestError::codec("series json"))?;
    let n = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4")) as usize;
    let stale: Vec<(SeriesId, i64)> =
        serde_json::from_slice(take(&mut pos, n)?).map_err(IngestError::codec("stale json"))?;
    let samples = if version == VERSION {
        let (ids, ts, vs) = packed::decode(&p[pos..])?;
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(vs)),
        ];
        RecordBatch::try_new(sample_schema(), columns).map_err(IngestError::codec("arrow"))?
    } else {
        let mut reader = StreamReader::try_new(Cursor::new(&p[pos..]), None)
            .map_err(IngestError::codec("arrow ipc"))?;
        reader
            .next()
            .ok_or_else(|| IngestError::damaged("arrow ipc stream without a batch"))?
            .map_err(IngestError::codec("arrow ipc"))?
    };
    SampleBatch::try_new(
        samples,
        series.into_iter().map(Arc::new).collect(),
        stale
            .into_iter()
            .map(|(series_id, timestamp_ms)| StaleMarker {
                series_id,
                timestamp_ms,
            })
            .collect(),
    )
    .map_err(IngestError::codec("arrow"))
}

#[cfg(test)]
mod tests;
