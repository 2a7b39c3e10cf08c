//! Write-ahead log segments: length-prefixed, checksummed records, each one [`SampleBatch`].
//!
//! ```text
//! record  = len:u32le crc32:u32le payload[len]
//! payload = version:u8=1 series_len:u32le series_json stale_len:u32le stale_json arrow_ipc_stream
//! ```
//!
//! `series_json` lists the new series of the batch, `stale_json` its stale markers as
//! `[[id, ts_ms], …]`, and the Arrow IPC stream holds the samples. A record is valid only when
//! its length fits the file and its CRC matches; replay stops at the first invalid record (a
//! torn write at the tail after a crash).

use std::io::Cursor;
use std::sync::Arc;

use aiops_models::{SampleBatch, SeriesId, SeriesMeta, StaleMarker, sample_schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

const VERSION: u8 = 1;
/// Largest record accepted on replay; anything bigger is corruption.
const MAX_RECORD: usize = 1 << 30;

/// Appends the framed record of `batch` to `out`.
pub fn encode_record(batch: &SampleBatch, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(VERSION);
    let series = serde_json::to_vec(&batch.new_series).map_err(|e| format!("series json: {e}"))?;
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    out.extend_from_slice(&series);
    let stale: Vec<(SeriesId, i64)> = batch
        .stale
        .iter()
        .map(|m| (m.series_id, m.timestamp_ms))
        .collect();
    let stale = serde_json::to_vec(&stale).map_err(|e| format!("stale json: {e}"))?;
    out.extend_from_slice(&(stale.len() as u32).to_le_bytes());
    out.extend_from_slice(&stale);
    {
        let mut w = StreamWriter::try_new(&mut *out, &sample_schema())
            .map_err(|e| format!("arrow ipc: {e}"))?;
        w.write(&batch.samples)
            .map_err(|e| format!("arrow ipc: {e}"))?;
        w.finish().map_err(|e| format!("arrow ipc: {e}"))?;
    }
    let payload_len = out.len() - start - 8;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The outcome of reading a segment.
#[derive(Debug, Default)]
pub struct Replay {
    /// The valid records in order.
    pub batches: Vec<SampleBatch>,
    /// Byte length of the valid prefix.
    pub valid_len: u64,
    /// Why reading stopped early, if it did.
    pub stopped: Option<String>,
}

/// Reads every valid record of a segment's bytes.
pub fn replay(bytes: &[u8]) -> Replay {
    let mut out = Replay::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            out.stopped = Some(format!("torn record header at byte {pos}"));
            break;
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes
            .get(pos + 8..pos + 8 + len)
            .filter(|_| len <= MAX_RECORD)
        else {
            out.stopped = Some(format!("torn record of {len} bytes at byte {pos}"));
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.stopped = Some(format!("checksum mismatch in record at byte {pos}"));
            break;
        }
        match decode_payload(payload) {
            Ok(b) => out.batches.push(b),
            Err(e) => {
                out.stopped = Some(format!("undecodable record at byte {pos}: {e}"));
                break;
            }
        }
        pos += 8 + len;
        out.valid_len = pos as u64;
    }
    out
}

fn decode_payload(p: &[u8]) -> Result<SampleBatch, String> {
    let mut pos = 0;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = p.get(*pos..*pos + n).ok_or("truncated payload")?;
        *pos += n;
        Ok(s)
    };
    if take(&mut pos, 1)?[0] != VERSION {
        return Err("unknown record version".into());
    }
    let n = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4")) as usize;
    let series: Vec<SeriesMeta> =
        serde_json::from_slice(take(&mut pos, n)?).map_err(|e| format!("series json: {e}"))?;
    let n = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4")) as usize;
    let stale: Vec<(SeriesId, i64)> =
        serde_json::from_slice(take(&mut pos, n)?).map_err(|e| format!("stale json: {e}"))?;
    let mut reader = StreamReader::try_new(Cursor::new(&p[pos..]), None)
        .map_err(|e| format!("arrow ipc: {e}"))?;
    let samples = reader
        .next()
        .ok_or("arrow ipc stream without a batch")?
        .map_err(|e| format!("arrow ipc: {e}"))?;
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
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_models::{SampleBatchBuilder, Source};

    fn batch(n: i64) -> SampleBatch {
        let meta = Arc::new(SeriesMeta::new(Source::Prometheus, "up", []));
        let mut b = SampleBatchBuilder::with_capacity(n as usize);
        b.push_series(meta.clone());
        for t in 0..n {
            b.push(meta.id, t, t as f64);
        }
        b.push_stale(StaleMarker {
            series_id: meta.id,
            timestamp_ms: n,
        });
        b.finish()
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode_record(&batch(3), &mut buf).expect("encodes");
        encode_record(&batch(5), &mut buf).expect("encodes");
        let r = replay(&buf);
        assert!(r.stopped.is_none());
        assert_eq!(r.valid_len, buf.len() as u64);
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[1].values(), &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.batches[1].new_series.len(), 1);
        assert_eq!(r.batches[1].stale[0].timestamp_ms, 5);
    }

    #[test]
    fn replay_stops_at_torn_or_corrupt_tail() {
        let mut buf = Vec::new();
        encode_record(&batch(3), &mut buf).expect("encodes");
        let first = buf.len();
        encode_record(&batch(4), &mut buf).expect("encodes");
        for cut in [first + 3, first + 20, buf.len() - 1] {
            let r = replay(&buf[..cut]);
            assert_eq!(r.batches.len(), 1);
            assert_eq!(r.valid_len, first as u64);
            assert!(r.stopped.is_some());
        }
        let mut corrupt = buf.clone();
        corrupt[first + 30] ^= 0xff;
        let r = replay(&corrupt);
        assert_eq!(r.batches.len(), 1);
        assert!(r.stopped.expect("stopped").contains("checksum"));
    }
}
