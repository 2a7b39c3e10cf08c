//! Zero-copy decoding of remote_write 1.0 bodies into Arrow.
//!
//! The body is Snappy-decompressed into a per-thread scratch buffer, then the protobuf wire
//! format is walked directly. Each series' labels are validated and hashed from borrowed bytes;
//! only series the catalog does not know yet are copied into a [`SeriesMeta`]. Samples go
//! straight into the columns of a [`SampleBatchBuilder`].
//!
//! Invalid series (unsorted or duplicate labels, missing `__name__`, bad names, samples out of
//! order, id collisions) are left out and reported in [`Decoded::invalid`]; the valid rest of
//! the request is kept. The receiver still answers 400 for such a request, as the spec asks.
//! A body that is not Snappy or not protobuf, or carries more than a request may, is an
//! [`IngestError`] (`BadSnappy`, `BadProtobuf`, `BodyTooLarge`, `TooManyInRequest`) and nothing
//! of it is kept.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::IngestError;
use aiops_models::{
    CatalogView, Labels, METRIC_NAME_LABEL, SampleBatch, SampleBatchBuilder, SeriesCatalog,
    SeriesHasher, SeriesId, SeriesMeta, Source, StaleMarker, is_stale_nan,
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
    Ok(decode_in_scratch(body, catalog, limits)?)
}

/// The decoder on this thread's scratch buffers.
#[inline(never)]
fn decode_in_scratch(
    body: &[u8],
    catalog: &SeriesCatalog,
    limits: &DecodeLimits,
) -> Result<Decoded, DecodeError> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch {
            raw,
            hasher,
            labels,
            samples,
        } = &mut *scratch;
        decompress(body, limits.max_decoded_bytes, raw)?;
        let out = decode_protobuf(raw, catalog, hasher, labels, samples, limits);
        // Do not keep a huge buffer alive on this thread after an outsized request.
        if raw.capacity() > 16 << 20 {
            *raw = Vec::new();
        }
        out
    })
}

fn decode_protobuf(
    buf: &[u8],
    catalog: &SeriesCatalog,
    hasher: &mut SeriesHasher,
    labels: &mut Vec<(usize, usize, usize, usize)>,
    samples: &mut Vec<(i64, f64)>,
    limits: &DecodeLimits,
) -> Result<Decoded, DecodeError> {
    // A sample costs at least 11 bytes on the wire (tag + fixed64 + tag + 1-byte varint)
    // plus its 2-byte envelope: reserve accordingly, capped, to avoid regrowth.
    let mut builder = SampleBatchBuilder::with_capacity((buf.len() / 16).min(1 << 20));
    let mut seen_new: HashSet<SeriesId, BuildHasherDefault<aiops_models::IdHasher>> =
        HashSet::default();
    let mut invalid: Option<InvalidSeries> = None;
    let mut series = 0;
    let mut total_samples = 0usize;
    let mut metadata = 0;
    let view = catalog.view();
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let (start, end) = r.len_delimited()?;
                series += 1;
                if series > limits.max_series {
                    return Err(DecodeError::TooMany {
                        what: "series",
                        limit: limits.max_series,
                        key: "server.max_series_per_request",
                    });
                }
                labels.clear();
                samples.clear();
                parse_series(buf, start, end, labels, samples)?;
                total_samples += samples.len();
                if total_samples > limits.max_samples {
                    return Err(DecodeError::TooMany {
                        what: "samples",
                        limit: limits.max_samples,
                        key: "server.max_samples_per_request",
                    });
                }
                match check_series(buf, labels, samples, &view, hasher, limits) {
                    Ok(SeriesCheck { id, new_meta }) => {
                        if let Some(meta) = new_meta.filter(|_| seen_new.insert(id)) {
                            builder.push_series(meta);
                        }
                        for &(ts, v) in samples.iter() {
                            if is_stale_nan(v) {
                                builder.push_stale(StaleMarker {
                                    series_id: id,
                                    timestamp_ms: ts,
                                });
                            } else {
                                builder.push(id, ts, v);
                            }
                        }
                    }
                    Err(problem) => {
                        let inv = invalid.get_or_insert(InvalidSeries {
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
            }
            (3, WIRE_LEN) => {
                r.len_delimited()?;
                metadata += 1;
            }
            (1 | 3, _) => return Err(r.err("WriteRequest field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Decoded {
        batch: builder.finish(),
        invalid,
        series,
        metadata,
    })
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

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
                let mut sr = Reader::new(&buf[..se], ss);
                let (mut ts, mut v) = (0i64, 0f64);
                while !sr.done() {
                    match sr.key()? {
                        (1, WIRE_FIXED64) => v = f64::from_bits(sr.fixed64()?),
                        (2, WIRE_VARINT) => ts = sr.varint()? as i64,
                        (1 | 2, _) => return Err(sr.err("Sample field has the wrong wire type")),
                        (_, w) => sr.skip(w)?,
                    }
                }
                samples.push((ts, v));
            }
            (1 | 2, _) => return Err(r.err("TimeSeries field has the wrong wire type")),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

struct SeriesCheck {
    id: SeriesId,
    new_meta: Option<Arc<SeriesMeta>>,
}

#[derive(PartialEq, Eq)]
enum ProblemKind {
    Invalid,
    Collision,
    OutOfRange,
}

struct Problem {
    message: String,
    kind: ProblemKind,
}

fn check_series(
    buf: &[u8],
    labels: &[(usize, usize, usize, usize)],
    samples: &[(i64, f64)],
    catalog: &CatalogView<'_>,
    hasher: &mut SeriesHasher,
    limits: &DecodeLimits,
) -> Result<SeriesCheck, Problem> {
    let bad = |reason: String| Problem {
        message: format!("series {}: {reason}", describe(buf, labels)),
        kind: ProblemKind::Invalid,
    };
    hasher.reset(Source::Prometheus);
    for &(ns, ne, vs, ve) in labels {
        hasher.label(&buf[ns..ne], &buf[vs..ve]);
    }
    let (id, check) = (hasher.finish(), hasher.finish_check());
    if let Some(w) = samples.windows(2).find(|w| w[1].0 < w[0].0) {
        return Err(bad(format!(
            "samples out of timestamp order ({} after {})",
            w[1].0, w[0].0
        )));
    }
    // In time order (checked above): the first and last samples bound the rest.
    if let Some(&t) = [samples.first(), samples.last()]
        .into_iter()
        .flatten()
        .map(|(t, _)| t)
        .find(|t| !limits.timestamps_ms.contains(t))
    {
        return Err(Problem {
            message: format!(
                "series {}: a sample at {} is outside the accepted range {} to {} (server.max_sample_age_secs, server.max_sample_future_secs)",
                describe(buf, labels),
                show_ms(t),
                show_ms(*limits.timestamps_ms.start()),
                show_ms(*limits.timestamps_ms.end())
            ),
            kind: ProblemKind::OutOfRange,
        });
    }
    let known = catalog.check_of(id);
    if known == Some(check) {
        // The very bytes of a series validated before: nothing more to check.
        return Ok(SeriesCheck { id, new_meta: None });
    }
    if labels.len() > limits.max_labels {
        return Err(bad(format!(
            "{} labels, over the limit of {} (server.max_labels_per_series)",
            labels.len(),
            limits.max_labels
        )));
    }
    let mut prev: Option<&[u8]> = None;
    let mut metric: Option<&[u8]> = None;
    for &(ns, ne, vs, ve) in labels {
        let (name, value) = (&buf[ns..ne], &buf[vs..ve]);
        if name.len() > limits.max_label_name_bytes {
            return Err(bad(format!(
                "label name {:?} is {} bytes, over the limit of {} (server.max_label_name_bytes)",
                lossy(name),
                name.len(),
                limits.max_label_name_bytes
            )));
        }
        if value.len() > limits.max_label_value_bytes {
            return Err(bad(format!(
                "label {:?} has a value of {} bytes, over the limit of {} (server.max_label_value_bytes)",
                lossy(name),
                value.len(),
                limits.max_label_value_bytes
            )));
        }
        if let Some(p) = prev {
            if name == p {
                return Err(bad(format!("duplicate label name {:?}", lossy(name))));
            }
            if name < p {
                return Err(bad(format!(
                    "labels not sorted by name ({:?} after {:?})",
                    lossy(name),
                    lossy(p)
                )));
            }
        }
        prev = Some(name);
        if name == METRIC_NAME_LABEL.as_bytes() {
            if !valid_metric_name(value) {
                return Err(bad(format!("invalid metric name {:?}", lossy(value))));
            }
            metric = Some(value);
        } else if !valid_label_name(name) {
            return Err(bad(format!("invalid label name {:?}", lossy(name))));
        }
        if value.is_empty() {
            return Err(bad(format!("label {:?} has an empty value", lossy(name))));
        }
        if std::str::from_utf8(value).is_err() {
            return Err(bad(format!(
                "label {:?} value is not valid UTF-8",
                lossy(name)
            )));
        }
    }
    let Some(metric) = metric else {
        return Err(bad("missing __name__ label".into()));
    };
    match known.and_then(|_| catalog.get(id)) {
        Some(known) => Err(Problem {
            message: format!(
                "series {} collides with known series {} (id {id}); its samples were not stored",
                describe(buf, labels),
                known.to_selector_string()
            ),
            kind: ProblemKind::Collision,
        }),
        None => {
            let text =
                |s: usize, e: usize| std::str::from_utf8(&buf[s..e]).expect("validated above");
            // In one allocation (two): a catalog entry lives as long as its series.
            let kept = Labels::from_sorted(
                labels
                    .iter()
                    .filter(|&&(ns, ne, _, _)| &buf[ns..ne] != METRIC_NAME_LABEL.as_bytes())
                    .map(|&(ns, ne, vs, ve)| (text(ns, ne), text(vs, ve))),
            );
            let meta = SeriesMeta {
                id,
                source: Source::Prometheus,
                metric: String::from_utf8_lossy(metric).into_owned(),
                labels: kept,
            };
            Ok(SeriesCheck {
                id,
                new_meta: Some(Arc::new(meta)),
            })
        }
    }
}

fn valid_label_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        None => false,
    }
}

fn valid_metric_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        }
        None => false,
    }
}

/// Most bytes of one label name or value echoed in an error message.
const ECHO_BYTES: usize = 256;

/// A label name or value for an error message: at most [`ECHO_BYTES`] of it.
fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    if b.len() <= ECHO_BYTES {
        return String::from_utf8_lossy(b);
    }
    let head = String::from_utf8_lossy(&b[..ECHO_BYTES]);
    std::borrow::Cow::Owned(format!(
        "{}…(+{} bytes)",
        head.trim_end_matches('\u{fffd}'),
        b.len() - ECHO_BYTES
    ))
}

/// A timestamp in ms for an error message: RFC 3339 when it has one.
fn show_ms(t: i64) -> String {
    match jiff::Timestamp::from_millisecond(t) {
        Ok(ts) => format!("{ts} ({t} ms)"),
        Err(_) => format!("{t} ms"),
    }
}

/// `{a="b", c="d"}` from wire labels, for error messages only.
fn describe(buf: &[u8], labels: &[(usize, usize, usize, usize)]) -> String {
    let mut s = String::from("{");
    for (i, &(ns, ne, vs, ve)) in labels.iter().enumerate().take(12) {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={:?}", lossy(&buf[ns..ne]), lossy(&buf[vs..ve]));
    }
    if labels.len() > 12 {
        s.push_str(", …");
    }
    s.push('}');
    s
}

/// A cursor over protobuf wire format within `buf[pos..]`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError::Protobuf {
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    #[inline]
    fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated fixed64"))?;
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes.try_into().expect("slice of 8")))
    }

    #[inline]
    fn len_delimited(&mut self) -> Result<(usize, usize), DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length-delimited field runs past the end"))?;
        self.pos = end;
        Ok((start, end))
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => {
                self.fixed64()?;
            }
            WIRE_LEN => {
                self.len_delimited()?;
            }
            WIRE_FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos += 4;
            }
            _ => {
                return Err(self.err("unsupported wire type (groups are not used by remote_write)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
