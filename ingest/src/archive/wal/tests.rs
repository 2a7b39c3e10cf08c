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

#[test]
fn segments_of_version_1_are_still_replayed() {
    let mut v2 = Vec::new();
    encode_record(&batch(3), &mut v2).expect("encodes");
    // The same record framed the version 1 way: len crc payload.
    let payload = &v2[HEADER..];
    let mut v1 = Vec::new();
    for _ in 0..2 {
        v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        v1.extend_from_slice(payload);
    }
    let r = replay(&v1);
    assert_eq!(sizes(&r), [3, 3]);
    // One record alone is a Kafka message, in either framing.
    let one = &v1[..v1.len() / 2];
    assert_eq!(decode_record(one).expect("v1 message").len(), 3);
    assert_eq!(decode_record(&v2).expect("v2 message").len(), 3);
    assert!(decode_record(&v2[..v2.len() - 1]).is_err());
    assert_eq!(r.valid_len, v1.len() as u64);
    let r = replay(&v1[..v1.len() - 1]);
    assert_eq!(sizes(&r), [3]);
    assert!(r.tail.is_some());
}
