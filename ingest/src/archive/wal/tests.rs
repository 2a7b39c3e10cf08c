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

/// A segment of records of 1..=n samples; the byte offsets where each record starts.
fn segment(n: i64) -> (Vec<u8>, Vec<usize>) {
    let mut buf = SEGMENT_HEADER.to_vec();
    let mut starts = Vec::new();
    for k in 1..=n {
        starts.push(buf.len());
        encode_record(&batch(k), &mut buf).expect("encodes");
    }
    (buf, starts)
}

fn sizes(r: &Replay) -> Vec<usize> {
    r.batches.iter().map(|b| b.len()).collect()
}

#[test]
fn records_round_trip() {
    let (buf, _) = segment(2);
    let r = replay(&buf);
    assert!(r.tail.is_none() && r.damage.is_empty());
    assert_eq!(r.valid_len, buf.len() as u64);
    assert_eq!(sizes(&r), [1, 2]);
    assert_eq!(r.batches[1].values(), &[0.0, 1.0]);
    assert_eq!(r.batches[1].new_series.len(), 1);
    assert_eq!(r.batches[1].stale[0].timestamp_ms, 2);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_record() {
    let (buf, starts) = segment(2);
    let first = starts[1];
    for cut in [first + 3, first + 20, buf.len() - 1] {
        let r = replay(&buf[..cut]);
        assert_eq!(sizes(&r), [1]);
        assert_eq!(r.valid_len, first as u64);
        assert!(r.damage.is_empty());
        assert!(r.tail.is_some(), "cut at {cut}");
    }
}

/// One flipped byte anywhere loses at most the record that holds it: the records before and
/// after it are kept, and the damaged stretch is reported where it is.
#[test]
fn any_flipped_byte_costs_only_its_own_record() {
    let (buf, starts) = segment(4);
    let end = |k: usize| starts.get(k + 1).copied().unwrap_or(buf.len());
    for at in SEGMENT_HEADER.len()..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x5a;
        let r = replay(&bad);
        let hit = starts.iter().rposition(|&s| s <= at).expect("in a record");
        let want: Vec<usize> = (1..=4).filter(|&k| k != hit + 1).collect();
        assert_eq!(sizes(&r), want, "byte {at} in record {hit}");
        if hit == 3 {
            assert!(
                r.damage.is_empty() && r.tail.is_some(),
                "byte {at}: the tail"
            );
            assert_eq!(r.valid_len, starts[3] as u64);
        } else {
            assert_eq!(r.damage.len(), 1, "byte {at}");
            assert_eq!(
                r.damage[0].range,
                starts[hit] as u64..end(hit) as u64,
                "byte {at}"
            );
            assert_eq!(r.valid_len, buf.len() as u64);
        }
    }
}

#[test]
fn garbage_between_records_is_skipped_and_reported() {
    let (buf, starts) = segment(3);
    let mut bad = buf[..starts[1]].to_vec();
    bad.extend_from_slice(&[0xAB; 100]);
    bad.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    bad.extend_from_slice(&buf[starts[1]..]);
    let r = replay(&bad);
    assert_eq!(sizes(&r), [1, 2, 3]);
    assert_eq!(r.damage.len(), 1);
    assert_eq!(
        r.damage[0].range,
        starts[1] as u64..(starts[1] + 104) as u64
    );
}

/// A payload as releases before packed samples wrote it: the samples as an Arrow IPC stream.
fn payload_v1(batch: &SampleBatch) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record_as(batch, RecordFormat::ArrowIpc, &mut out).expect("encodes");
    out.split_off(HEADER)
}

/// A payload framed the version 2 way (a segment written by the release before packed samples).
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut h = RECORD_MAGIC.to_le_bytes().to_vec();
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let hcrc = crc32fast::hash(&h);
    h.extend_from_slice(&hcrc.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

#[test]
fn segments_of_version_1_are_still_replayed() {
    let payload = payload_v1(&batch(3));
    // The record framed the version 1 way: len crc payload.
    let mut v1 = Vec::new();
    for _ in 0..2 {
        v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        v1.extend_from_slice(&payload);
    }
    let r = replay(&v1);
    assert_eq!(sizes(&r), [3, 3]);
    assert_eq!(r.batches[0].values(), &[0.0, 1.0, 2.0]);
    // One record alone is a Kafka message, in either framing and either payload.
    let one = &v1[..v1.len() / 2];
    assert_eq!(decode_record(one).expect("v1 message").len(), 3);
    let mut v2 = Vec::new();
    encode_record(&batch(3), &mut v2).expect("encodes");
    assert_eq!(decode_record(&v2).expect("v2 message").len(), 3);
    assert!(decode_record(&v2[..v2.len() - 1]).is_err());
    assert_eq!(r.valid_len, v1.len() as u64);
    let r = replay(&v1[..v1.len() - 1]);
    assert_eq!(sizes(&r), [3]);
    assert!(r.tail.is_some());
}

#[test]
fn arrow_ipc_payloads_in_version_2_segments_are_still_replayed() {
    let mut seg = SEGMENT_HEADER.to_vec();
    seg.extend_from_slice(&framed(&payload_v1(&batch(2))));
    encode_record(&batch(3), &mut seg).expect("encodes");
    let r = replay(&seg);
    assert!(r.tail.is_none() && r.damage.is_empty());
    assert_eq!(sizes(&r), [2, 3]);
    assert_eq!(r.batches[0].timestamps(), &r.batches[1].timestamps()[..2]);
    assert_eq!(r.batches[1].stale[0].timestamp_ms, 3);
    assert_eq!(
        decode_record(&framed(&payload_v1(&batch(4))))
            .expect("old message")
            .len(),
        4
    );
}

#[test]
fn packed_records_are_a_quarter_of_arrow_ipc() {
    let b = batch(1000);
    let mut packed = Vec::new();
    encode_record(&b, &mut packed).expect("encodes");
    let ipc = payload_v1(&b).len();
    assert!(
        packed.len() * 4 < ipc,
        "{} bytes packed, {ipc} as IPC",
        packed.len()
    );
}
