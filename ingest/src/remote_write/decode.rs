//! Zero-copy decoding of remote_write 1.0 and 2.0 bodies into Arrow.
//!
//! The body is Snappy-decompressed into a per-thread scratch buffer, then the protobuf wire
//! format is walked directly. Each series' labels are validated and hashed from borrowed bytes;
//! only series the catalog does not know yet are copied into a [`SeriesMeta`]. Samples go
//! straight into the columns of a [`SampleBatchBuilder`]. A 2.0 body's string table is indexed
//! once (byte ranges, nothing copied) and each series' label references are resolved to the
//! same ranges, so both versions share every check after parsing.
//!
//! Invalid series (unsorted or duplicate labels, missing `__name__`, bad names, samples out of
//! order, id collisions) are left out and reported in [`Decoded::invalid`]; the valid rest of
//! the request is kept. The receiver still answers 400 for such a request, as the spec asks.
//! A body that is not Snappy or not protobuf, or carries more than a request may, is an
//! [`IngestError`] (`BadSnappy`, `BadProtobuf`, `BodyTooLarge`, `TooManyInRequest`) and nothing
//! of it is kept.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use crate::IngestError;
use aiops_models::{
    CatalogView, SampleBatch, SampleBatchBuilder, SeriesCatalog, SeriesHasher, SeriesId,
    StaleMarker, is_stale_nan,
};

/// Why a body cannot be decoded, inside the decoder: small and cheap to pass back through the
/// wire-format walk. Callers see it as the matching [`IngestError`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DecodeError {
    Snappy {
        reason: String,
    },
    TooLarge {
        decoded: usize,
        limit: usize,
    },
    Protobuf {
        offset: usize,
        reason: &'static str,
    },
    TooMany {
        what: &'static str,
        limit: usize,
        key: &'static str,
    },
}

impl From<DecodeError> for IngestError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Snappy { reason } => Self::BadSnappy { reason },
            DecodeError::TooLarge { decoded, limit } => Self::BodyTooLarge { decoded, limit },
            DecodeError::Protobuf { offset, reason } => Self::BadProtobuf { offset, reason },
            DecodeError::TooMany { what, limit, key } => {
                Self::TooManyInRequest { what, limit, key }
            }
        }
    }
}

/// What one request may carry. Each limit names the configuration key reported when it is
/// exceeded.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Decompressed body, bytes (`server.max_decoded_bytes`).
    pub max_decoded_bytes: usize,
    /// Series (`server.max_series_per_request`): more fails the request.
    pub max_series: usize,
    /// Samples (`server.max_samples_per_request`): more fails the request.
    pub max_samples: usize,
    /// Labels of a series, `__name__` included (`server.max_labels_per_series`): the series is
    /// left out.
    pub max_labels: usize,
    /// Label name length (`server.max_label_name_bytes`).
    pub max_label_name_bytes: usize,
    /// Label value length (`server.max_label_value_bytes`).
    pub max_label_value_bytes: usize,
    /// Accepted sample timestamps, ms (`server.max_sample_age_secs`,
    /// `server.max_sample_future_secs`): a series with a sample outside is left out.
    pub timestamps_ms: std::ops::RangeInclusive<i64>,
}

impl DecodeLimits {
    /// Only the decompressed size bounded (benchmarks, tools).
    pub fn unbounded(max_decoded_bytes: usize) -> Self {
        Self {
            max_decoded_bytes,
            max_series: usize::MAX,
            max_samples: usize::MAX,
            max_labels: usize::MAX,
            max_label_name_bytes: usize::MAX,
            max_label_value_bytes: usize::MAX,
            timestamps_ms: i64::MIN..=i64::MAX,
        }
    }
}

/// Series that were left out of a request, with the first reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSeries {
    /// The first problem, naming the series.
    pub first: String,
    /// How many series were left out.
    pub series: usize,
    /// How many samples they carried.
    pub samples: usize,
    /// How many of them collided with a known series id.
    pub collisions: usize,
    /// How many carried a sample outside the accepted time range.
    pub out_of_range: usize,
}

impl std::fmt::Display for InvalidSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.first)?;
        if self.series > 1 {
            write!(f, " (and {} more invalid series)", self.series - 1)?;
        }
        Ok(())
    }
}

/// The result of decoding one request.
#[derive(Debug)]
pub struct Decoded {
    /// The valid samples, new series and stale markers.
    pub batch: SampleBatch,
    /// Series left out, if any.
    pub invalid: Option<InvalidSeries>,
    /// Series in the request (valid or not).
    pub series: usize,
    /// Metadata entries in the request (counted, not stored).
    pub metadata: usize,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    hasher: SeriesHasher,
    labels: Vec<(usize, usize, usize, usize)>,
    samples: Vec<(i64, f64)>,
    symbols: Vec<(usize, usize)>,
    refs: Vec<u32>,
}

/// Which remote_write message a body carries (from its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireVersion {
    /// `prometheus.WriteRequest` (remote_write 1.0).
    #[default]
    V1,
    /// `io.prometheus.write.v2.Request` (remote_write 2.0).
    V2,
}

/// Decompresses a Snappy block into `out`, refusing sizes over `limit` before allocating.
fn decompress(body: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy {
        reason: e.to_string(),
    })?;
    if len > limit {
        return Err(DecodeError::TooLarge {
            decoded: len,
            limit,
        });
    }
    out.clear();
    out.resize(len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(body, out)
        .map_err(|e| DecodeError::Snappy {
            reason: e.to_string(),
        })?;
    out.truncate(n);
    Ok(())
}

/// Decodes a remote_write 1.0 body (Snappy block + protobuf `WriteRequest`).
///
/// `catalog` is only read: series it does not know are returned in `batch.new_series`, to be
/// added once the batch is durable.
pub fn decode_write_request(
    body: &[u8],
    catalog: &SeriesCatalog,
    max_decoded_bytes: usize,
) -> Result<Decoded, IngestError> {
    decode_with_limits(body, catalog, &DecodeLimits::unbounded(max_decoded_bytes))
}

/// As [`decode_write_request`], within `limits`.
#[inline]
pub fn decode_with_limits(
    body: &[u8],
    catalog: &SeriesCatalog,
    limits: &DecodeLimits,
) -> Result<Decoded, IngestError> {
    Ok(decode_in_scratch(body, catalog, limits, WireVersion::V1)?)
}

/// As [`decode_with_limits`], for a body of either version.
#[inline]
pub fn decode_version(
    body: &[u8],
    catalog: &SeriesCatalog,
    limits: &DecodeLimits,
    version: WireVersion,
) -> Result<Decoded, IngestError> {
    Ok(decode_in_scratch(body, catalog, limits, version)?)
}

/// The decoder on this thread's scratch buffers.
#[inline(never)]
fn decode_in_scratch(
    body: &[u8],
    catalog: &SeriesCatalog,
    limits: &DecodeLimits,
    version: WireVersion,
) -> Result<Decoded, DecodeError> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch {
            raw,
            hasher,
            labels,
            samples,
            symbols,
            refs,
        } = &mut *scratch;
        decompress(body, limits.max_decoded_bytes, raw)?;
        let mut sink = Sink::new(raw.len(), catalog, limits);
        let walked = match version {
            WireVersion::V1 => walk_v1(raw, &mut sink, hasher, labels, samples),
            WireVersion::V2 => walk_v2(raw, &mut sink, hasher, labels, samples, symbols, refs),
        };
        let out = walked.map(|()| sink.finish());
        // Do not keep a huge buffer alive on this thread after an outsized request.
        if raw.capacity() > 16 << 20 {
            *raw = Vec::new();
        }
        out
    })
}

/// Where parsed series go: limits counted, each series checked, samples into the batch.
struct Sink<'c> {
    builder: SampleBatchBuilder,
    seen_new: HashSet<SeriesId, BuildHasherDefault<aiops_models::IdHasher>>,
    invalid: Option<InvalidSeries>,
    series: usize,
    samples: usize,
    metadata: usize,
    view: CatalogView<'c>,
    limits: &'c DecodeLimits,
}

impl<'c> Sink<'c> {
    fn new(body_len: usize, catalog: &'c SeriesCatalog, limits: &'c DecodeLimits) -> Self {
        Self {
            // A sample costs at least 11 bytes on the wire (tag + fixed64 + tag + 1-byte varint)
            // plus its 2-byte envelope: reserve accordingly, capped, to avoid regrowth.
            builder: SampleBatchBuilder::with_capacity((body_len / 16).min(1 << 20)),
            seen_new: HashSet::default(),
            invalid: None,
            series: 0,
            samples: 0,
            metadata: 0,
            view: catalog.view(),
            limits,
        }
    }

    /// Counts a series against the request's limits before it is parsed.
    fn count_series(&mut self) -> Result<(), DecodeError> {
        self.series += 1;
        if self.series > self.limits.max_series {
            return Err(DecodeError::TooMany {
                what: "series",
                limit: self.limits.max_series,
                key: "server.max_series_per_request",
            });
        }
        Ok(())
    }

    /// One parsed series: labels as byte ranges of `buf`.
    fn series(
        &mut self,
        buf: &[u8],
        labels: &[(usize, usize, usize, usize)],
        samples: &[(i64, f64)],
        hasher: &mut SeriesHasher,
    ) -> Result<(), DecodeError> {
        self.samples += samples.len();
        if self.samples > self.limits.max_samples {
            return Err(DecodeError::TooMany {
                what: "samples",
                limit: self.limits.max_samples,
                key: "server.max_samples_per_request",
            });
        }
        match check_series(buf, labels, samples, &self.view, hasher, self.limits) {
            Ok(SeriesCheck { id, new_meta }) => {
                if let Some(meta) = new_meta.filter(|_| self.seen_new.insert(id)) {
                    self.builder.push_series(meta);
                }
                for &(ts, v) in samples {
                    if is_stale_nan(v) {
                        self.builder.push_stale(StaleMarker {
                            series_id: id,
                            timestamp_ms: ts,
                        });
                    } else {
                        self.builder.push(id, ts, v);
                    }
                }
            }
            Err(problem) => {
                let inv = self.invalid.get_or_insert(InvalidSeries {
                    first: problem.message,
                    series: 0,
                    samples: 0,
                    collisions: 0,
                    out_of_range: 0,
                });
                inv.series += 1;
                inv.samples += samples.len();
                inv.collisions += usize::from(problem.kind == ProblemKind::Collision);
                inv.out_of_range += usize::from(problem.kind == ProblemKind::OutOfRange);
            }
        }
        Ok(())
    }

    fn finish(self) -> Decoded {
        Decoded {
            batch: self.builder.finish(),
            invalid: self.invalid,
            series: self.series,
            metadata: self.metadata,
        }
    }
}

/// Walks a `prometheus.WriteRequest`.
fn walk_v1(
    buf: &[u8],
    sink: &mut Sink<'_>,
    hasher: &mut SeriesHasher,
    labels: &mut Vec<(usize, usize, usize, usize)>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let (start, end) = r.len_delimited()?;
                sink.count_series()?;
                labels.clear();
                samples.clear();
                parse_series(buf, start, end, labels, samples)?;
                sink.series(buf, labels, samples, hasher)?;
            }
            (3, WIRE_LEN) => {
                r.len_delimited()?;
                sink.metadata += 1;
            }
            (1 | 3, _) => return Err(r.err("WriteRequest field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

/// Walks an `io.prometheus.write.v2.Request`: the string table first (wherever it sits in the
/// body), then the series with their label references resolved to the table's byte ranges.
/// Histograms and exemplars are skipped; a series' metadata is counted.
fn walk_v2(
    buf: &[u8],
    sink: &mut Sink<'_>,
    hasher: &mut SeriesHasher,
    labels: &mut Vec<(usize, usize, usize, usize)>,
    samples: &mut Vec<(i64, f64)>,
    symbols: &mut Vec<(usize, usize)>,
    refs: &mut Vec<u32>,
) -> Result<(), DecodeError> {
    symbols.clear();
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.key()? {
            (4, WIRE_LEN) => symbols.push(r.len_delimited()?),
            (5, WIRE_LEN) => {
                r.len_delimited()?;
            }
            (4 | 5, _) => return Err(r.err("Request field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    if symbols.first().is_some_and(|&(s, e)| s != e) {
        return Err(DecodeError::Protobuf {
            offset: symbols[0].0,
            reason: "symbols[0] must be the empty string",
        });
    }
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let (field, wire) = r.key()?;
        if (field, wire) != (5, WIRE_LEN) {
            r.skip(wire)?;
            continue;
        }
        let (start, end) = r.len_delimited()?;
        sink.count_series()?;
        labels.clear();
        samples.clear();
        refs.clear();
        if parse_series_v2(buf, start, end, refs, samples)? {
            sink.metadata += 1;
        }
        if !refs.len().is_multiple_of(2) {
            return Err(DecodeError::Protobuf {
                offset: start,
                reason: "labels_refs holds an odd number of references",
            });
        }
        for pair in refs.chunks_exact(2) {
            let at = |i: u32| symbols.get(i as usize).copied();
            let (Some((ns, ne)), Some((vs, ve))) = (at(pair[0]), at(pair[1])) else {
                return Err(DecodeError::Protobuf {
                    offset: start,
                    reason: "labels_refs names a symbol past the end of the table",
                });
            };
            labels.push((ns, ne, vs, ve));
        }
        sink.series(buf, labels, samples, hasher)?;
    }
    Ok(())
}

/// Reads the labels (as byte ranges of `buf`) and samples of one `TimeSeries`.
fn parse_series(
    buf: &[u8],
    start: usize,
    end: usize,
    labels: &mut Vec<(usize, usize, usize, usize)>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(&buf[..end], start);
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let (ls, le) = r.len_delimited()?;
                let mut lr = Reader::new(&buf[..le], ls);
                let (mut name, mut value) = ((ls, ls), (ls, ls));
                while !lr.done() {
                    match lr.key()? {
                        (1, WIRE_LEN) => name = lr.len_delimited()?,
                        (2, WIRE_LEN) => value = lr.len_delimited()?,
                        (1 | 2, _) => return Err(lr.err("Label field has the wrong wire type")),
                        (_, w) => lr.skip(w)?,
                    }
                }
                labels.push((name.0, name.1, value.0, value.1));
            }
            (2, WIRE_LEN) => {
                let (ss, se) = r.len_delimited()?;
                samples.push(parse_sample(buf, ss, se)?);
            }
            (1 | 2, _) => return Err(r.err("TimeSeries field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

/// Reads the label references and samples of one 2.0 `TimeSeries`; whether it has metadata.
fn parse_series_v2(
    buf: &[u8],
    start: usize,
    end: usize,
    refs: &mut Vec<u32>,
    samples: &mut Vec<(i64, f64)>,
) -> Result<bool, DecodeError> {
    let mut r = Reader::new(&buf[..end], start);
    let mut metadata = false;
    let to_ref = |v: u64, r: &Reader<'_>| {
        u32::try_from(v).map_err(|_| r.err("a label reference is over 32 bits"))
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            // Packed, as every encoder writes it; unpacked is valid protobuf as well.
            (1, WIRE_LEN) => {
                let (ps, pe) = r.len_delimited()?;
                let mut pr = Reader::new(&buf[..pe], ps);
                while !pr.done() {
                    let v = pr.varint()?;
                    refs.push(to_ref(v, &pr)?);
                }
            }
            (1, WIRE_VARINT) => {
                let v = r.varint()?;
                refs.push(to_ref(v, &r)?);
            }
            (2, WIRE_LEN) => {
                let (ss, se) = r.len_delimited()?;
                samples.push(parse_sample(buf, ss, se)?);
            }
            (5, WIRE_LEN) => {
                r.len_delimited()?;
                metadata = true;
            }
            (1 | 2 | 5, _) => return Err(r.err("TimeSeries field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(metadata)
}

/// One `Sample` (the same fields in both versions; 2.0's `start_timestamp` is skipped).
fn parse_sample(buf: &[u8], start: usize, end: usize) -> Result<(i64, f64), DecodeError> {
    let mut sr = Reader::new(&buf[..end], start);
    let (mut ts, mut v) = (0i64, 0f64);
    while !sr.done() {
        match sr.key()? {
            (1, WIRE_FIXED64) => v = f64::from_bits(sr.fixed64()?),
            (2, WIRE_VARINT) => ts = sr.varint()? as i64,
            (1 | 2, _) => return Err(sr.err("Sample field has the wrong wire type")),
            (_, w) => sr.skip(w)?,
        }
    }
    Ok((ts, v))
}

mod check;
mod wire;

use check::{ProblemKind, SeriesCheck, check_series};
use wire::{Reader, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT};

#[cfg(test)]
mod tests;
