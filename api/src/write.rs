//! `POST /api/v1/write`: the Prometheus remote_write receiver, 1.0 and 2.0.
//!
//! The version is the `Content-Type`'s: `application/x-protobuf` (or with
//! `;proto=prometheus.WriteRequest`) is 1.0, `;proto=io.prometheus.write.v2.Request` is 2.0.
//! Every answer to a 2.0 request, success or not, carries the
//! `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` counts of what was stored
//! (native histograms and exemplars are not stored: 0).
//!
//! Status rules (what Prometheus does with each answer is in protocols.md 1.4):
//!
//! | answer | when | Prometheus |
//! |---|---|---|
//! | 204 | stored durably, including empty and metadata-only requests | done |
//! | 400 | body is not Snappy/protobuf, or some series break the data rules or limits (labels, sample times; the valid rest is stored) | drops, never retries |
//! | 413 | body over `max_body_bytes`, decompressed over `max_decoded_bytes`, or more series or samples than `max_series_per_request` / `max_samples_per_request` | drops |
//! | 415 | not `Content-Encoding: snappy` + `application/x-protobuf`, or another protobuf message | drops (a 2.0 sender falls back to 1.0) |
//! | 503 | ingest queue full, archive write failed, shutting down | retries with backoff |

use aiops_ingest::IngestError;
use aiops_ingest::remote_write::{self, Decoded, WireVersion, proto_v2};
use aiops_ingest::transport::Envelope;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use crate::{ApiError, AppState};

const SOURCE: &str = "remote_write";

/// Bodies up to this size are decoded on the runtime thread; larger ones on the blocking pool,
/// so that a probe or a read waiting on the same runtime thread is not held up by a decode (a
/// body of 2,000 series takes a few ms; the hand-off costs microseconds).
const INLINE_DECODE_BYTES: usize = 16 << 10;

/// The body's version from its headers, or why it cannot be taken.
fn check_headers(headers: &HeaderMap) -> Result<WireVersion, ApiError> {
    let unsupported = |m: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            m,
        )
    };
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = get(header::CONTENT_ENCODING.as_str());
    if !encoding.eq_ignore_ascii_case(remote_write::CONTENT_ENCODING) {
        return Err(unsupported(format!(
            "Content-Encoding {encoding:?} is not supported; remote_write 1.0 bodies are Snappy block compressed (Content-Encoding: snappy)"
        )));
    }
    let ctype = get(header::CONTENT_TYPE.as_str());
    let mut parts = ctype.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(remote_write::CONTENT_TYPE))
    {
        return Err(unsupported(format!(
            "Content-Type {ctype:?} is not supported; expected application/x-protobuf"
        )));
    }
    let version = match parts.find_map(|p| p.strip_prefix("proto=")) {
        None | Some("prometheus.WriteRequest") => WireVersion::V1,
        Some(proto_v2::PROTO_V2) => WireVersion::V2,
        Some(proto) => {
            return Err(unsupported(format!(
                "protobuf message {proto:?} is not supported; this receiver speaks remote_write 1.0 (prometheus.WriteRequest) and 2.0 ({})",
                proto_v2::PROTO_V2
            )));
        }
    };
    // 1.0 senders send 0.1.0, 2.0 senders 2.0.0; some senders omit the header, which we accept.
    // The Content-Type decides the message; the header must not contradict it.
    let announced = get(remote_write::VERSION_HEADER);
    let agrees = match version {
        WireVersion::V1 => announced.starts_with("0.1"),
        WireVersion::V2 => announced.starts_with("2."),
    };
    if !announced.is_empty() && !agrees {
        return Err(ApiError::bad_request(
            "bad_version",
            format!(
                "X-Prometheus-Remote-Write-Version {announced:?} does not match the Content-Type {ctype:?}; expected {}",
                match version {
                    WireVersion::V1 => remote_write::VERSION_1,
                    WireVersion::V2 => proto_v2::VERSION_2,
                }
            ),
        ));
    }
    Ok(version)
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "{what} exceeds the limit of {limit} bytes; lower max_samples_per_send on the sender or raise the limit"
        ),
    )
}

/// Bytes of an oversized body read and discarded before answering 413, so that a sender still
/// writing its body sees the answer instead of a reset connection.
const DRAIN_CAP_BYTES: usize = 256 << 20;

/// Reads the body up to `limit` bytes; a longer body is drained (up to [`DRAIN_CAP_BYTES`]) and
/// answered 413.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let hint = usize::try_from(http_body::Body::size_hint(&body).lower()).unwrap_or(usize::MAX);
    let mut buf = bytes::BytesMut::with_capacity(hint.min(limit));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("bad_body", format!("reading the body failed: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_CAP_BYTES {
            break;
        }
    }
    if seen > limit {
        return Err(too_large(limit, "request body"));
    }
    Ok(buf.freeze())
}

/// Waits up to `limits.shed_wait_ms` while the node is behind (a short overload becomes a
/// little latency), then sheds: `503` + `Retry-After` (Prometheus retries with backoff). Checked
/// before the body is decoded, so shedding costs almost nothing.
async fn wait_for_room(state: &AppState) -> Result<(), ApiError> {
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(state.limits.shed_wait_ms);
    loop {
        match behind(state) {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                state.ingest_metrics.rejected(SOURCE, "overload", 0);
                return Err(e);
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Why the node is behind, if it is: the ingest queue is late (archive, detection or
/// compaction cannot keep up) or the in-memory head is over its bound.
fn behind(state: &AppState) -> Result<(), ApiError> {
    let limits = &state.limits;
    let delay = state.sender.delay_ms();
    if delay > limits.max_queue_delay_ms {
        return Err(ApiError::unavailable(
            "overloaded",
            format!(
                "ingest is {delay} ms behind (limit limits.max_queue_delay_ms = {}); retry later",
                limits.max_queue_delay_ms
            ),
        ));
    }
    let head = state.archive.head_bytes();
    if head > limits.max_head_bytes {
        return Err(ApiError::unavailable(
            "overloaded",
            format!(
                "compaction is behind: {head} bytes wait in memory (limit limits.max_head_bytes = {}); retry later",
                limits.max_head_bytes
            ),
        ));
    }
    Ok(())
}

/// Drops the new series a request brings beyond `limits.max_series` (the first ones in the
/// request are admitted while there is room). Returns the batch and, when series were dropped,
/// how many and their samples. Concurrent requests may overshoot the limit by their new series.
fn cap_series(
    state: &AppState,
    batch: aiops_models::SampleBatch,
) -> (aiops_models::SampleBatch, Option<(usize, usize)>) {
    let max = state.limits.max_series;
    let new = batch.new_series.len();
    if max == 0 || new == 0 || state.catalog.len() + new <= max {
        return (batch, None);
    }
    let room = max.saturating_sub(state.catalog.len());
    let refused: std::collections::HashSet<aiops_models::SeriesId> =
        batch.new_series.iter().skip(room).map(|m| m.id).collect();
    let (kept, dropped) = batch.without_series(|id| refused.contains(&id));
    (kept, Some((refused.len(), dropped)))
}

/// The limits of one request, the accepted time range counted from now.
fn decode_limits(cfg: &crate::config::ApiConfig) -> remote_write::DecodeLimits {
    let now = jiff::Timestamp::now().as_millisecond();
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000);
    let oldest = match cfg.max_sample_age_secs {
        0 => i64::MIN,
        age => now.saturating_sub(secs(age)),
    };
    remote_write::DecodeLimits {
        max_decoded_bytes: cfg.max_decoded_bytes,
        max_series: cfg.max_series_per_request,
        max_samples: cfg.max_samples_per_request,
        max_labels: cfg.max_labels_per_series,
        max_label_name_bytes: cfg.max_label_name_bytes,
        max_label_value_bytes: cfg.max_label_value_bytes,
        timestamps_ms: oldest..=now.saturating_add(secs(cfg.max_sample_future_secs)),
    }
}

/// The handler.
#[tracing::instrument(skip_all, fields(bytes))]
#[utoipa::path(post, path = "/api/v1/write", tag = "ingest",
    request_body(content = ref("#/components/schemas/RemoteWriteBody"), content_type = "application/x-protobuf",
        description = "A Snappy-compressed `prometheus.WriteRequest` (remote_write 1.0), or `io.prometheus.write.v2.Request` (2.0) with `Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`"),
    params(
        ("Content-Encoding" = String, Header, pattern = "^snappy$", description = "`snappy`"),
        ("X-Prometheus-Remote-Write-Version" = Option<String>, Header, pattern = "^(0\\.1|2\\.0)\\.[0-9]+$", description = "`0.1.0` (1.0) or `2.0.0` (2.0)")
    ),
    responses(
        (status = 204, description = "Stored durably"),
        (status = 400, description = "Not Snappy/protobuf, or series breaking the data rules or limits (the valid rest is stored)", body = ref("#/components/schemas/Error")),
        (status = 413, description = "Over `server.max_body_bytes`, `max_decoded_bytes`, `max_series_per_request` or `max_samples_per_request`", body = ref("#/components/schemas/Error")),
        (status = 415, description = "Not remote_write 1.0 or 2.0", body = ref("#/components/schemas/Error")),
        (status = 429, description = "New series over `limits.max_series` (known ones stored)", body = ref("#/components/schemas/Error")),
        (status = 503, description = "Behind, or the archive failed: retry", body = ref("#/components/schemas/Error")),
        crate::openapi::Refusals
    ),
    security(("bearer" = ["write"]), ("basic" = ["write"])))]
pub async fn remote_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let version = match check_headers(&headers) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut written = 0;
    let mut response = match receive(&state, body, version, &mut written).await {
        Ok(status) => status.into_response(),
        Err(e) => e.into_response(),
    };
    if version == WireVersion::V2 {
        let h = response.headers_mut();
        h.insert(proto_v2::SAMPLES_WRITTEN_HEADER, HeaderValue::from(written));
        h.insert(proto_v2::HISTOGRAMS_WRITTEN_HEADER, HeaderValue::from(0));
        h.insert(proto_v2::EXEMPLARS_WRITTEN_HEADER, HeaderValue::from(0));
    }
    response
}

/// Decodes and stores one body; `written` counts the samples stored durably.
async fn receive(
    state: &AppState,
    body: Body,
    version: WireVersion,
    written: &mut u64,
) -> Result<StatusCode, ApiError> {
    let limit = state.config.max_body_bytes;
    if let Err(e) = wait_for_room(state).await {
        // Read (and drop) the body so the connection stays usable for the sender's retry.
        let _ = read_body(body, limit).await;
        return Err(e);
    }
    let body = read_body(body, limit).await?;
    tracing::Span::current().record("bytes", body.len());

    let limits = decode_limits(&state.config);
    let catalog = state.catalog.clone();
    let decoded = if body.len() <= INLINE_DECODE_BYTES {
        remote_write::decode_version(&body, &catalog, &limits, version)
    } else {
        tokio::task::spawn_blocking(move || {
            remote_write::decode_version(&body, &catalog, &limits, version)
        })
        .await
        .map_err(ApiError::internal)?
    };
    let Decoded { batch, invalid, .. } = match decoded {
        Ok(d) => d,
        Err(IngestError::BodyTooLarge { limit, .. }) => {
            state.ingest_metrics.rejected(SOURCE, "too_large", 0);
            return Err(too_large(limit, "decompressed body"));
        }
        Err(e @ IngestError::TooManyInRequest { .. }) => {
            state.ingest_metrics.rejected(SOURCE, "too_large", 0);
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("{e}; lower max_samples_per_send on the sender or raise the limit"),
            ));
        }
        Err(e) => {
            state.ingest_metrics.rejected(SOURCE, "decode", 0);
            debug!(error = %e, "Rejected an undecodable remote_write body.");
            return Err(ApiError::bad_request("bad_payload", e.to_string()));
        }
    };

    let (batch, over_limit) = cap_series(state, batch);
    let samples = batch.len() as u64;
    if !batch.is_empty() {
        let (env, waiter) = Envelope::with_ack(batch);
        match state.sender.try_send(env) {
            Ok(()) => {}
            Err(e @ IngestError::QueueFull { .. }) => {
                state.ingest_metrics.rejected(SOURCE, "overload", samples);
                return Err(ApiError::unavailable("overloaded", e.to_string()));
            }
            Err(e) => {
                state
                    .ingest_metrics
                    .rejected(SOURCE, "unavailable", samples);
                return Err(ApiError::unavailable("shutting_down", e.to_string()));
            }
        }
        if let Err(e) = waiter.wait().await {
            state
                .ingest_metrics
                .rejected(SOURCE, "unavailable", samples);
            warn!(error = %e, samples, "Remote write not durable; the sender will retry.");
            return Err(ApiError::unavailable("archive_unavailable", e.to_string()));
        }
        state.ingest_metrics.received(SOURCE, samples);
        *written = samples;
    }
    if let Some((series, dropped)) = over_limit {
        state
            .ingest_metrics
            .rejected(SOURCE, "series_limit", dropped as u64);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "series_limit",
            format!(
                "{series} new series (with {dropped} samples) were dropped: the node holds {} series, the limit is {} (limit limits.max_series); {samples} samples of known series were stored",
                state.catalog.len(),
                state.limits.max_series
            ),
        ));
    }
    if let Some(inv) = invalid {
        state.ingest_metrics.rejected(
            SOURCE,
            if inv.collisions > 0 {
                "collision"
            } else if inv.out_of_range > 0 {
                "out_of_range"
            } else {
                "invalid"
            },
            inv.samples as u64,
        );
        if inv.collisions > 0 {
            tracing::error!(collisions = inv.collisions, first = %inv.first, "Series id collision: samples rejected.");
        }
        return Err(ApiError::bad_request(
            "invalid_series",
            format!("{inv}; {samples} valid samples were stored"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
