//! The decoder against prost's, on made-up, hostile and truncated bodies.

use super::*;
use crate::remote_write::proto::{MetricMetadata, TimeSeries, WriteRequest, encode_write_request};
use crate::remote_write::proto_v2;
use aiops_models::{STALE_NAN_BITS, SeriesMeta, Source};
use proptest::prelude::*;
use prost::Message;
use std::sync::Arc;

const LIMIT: usize = 32 << 20;

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| crate::remote_write::Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| crate::remote_write::Sample { value, timestamp })
            .collect(),
    }
}

fn decode(req: &WriteRequest) -> Decoded {
    decode_write_request(&encode_write_request(req), &SeriesCatalog::new(), LIMIT).expect("decodes")
}

#[test]
fn decodes_samples_and_new_series() {
    let req = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up"), ("instance", "a:1"), ("job", "node")],
            &[(1000, 1.0), (2000, 0.0)],
        )],
        metadata: vec![],
    };
    let d = decode(&req);
    assert!(d.invalid.is_none());
    assert_eq!(d.batch.timestamps(), &[1000, 2000]);
    assert_eq!(d.batch.values(), &[1.0, 0.0]);
    let meta = &d.batch.new_series[0];
    assert_eq!(meta.metric, "up");
    assert_eq!(
        meta.labels.to_vec(),
        vec![
            ("instance".into(), "a:1".into()),
            ("job".into(), "node".into())
        ]
    );
    assert_eq!(
        meta.id,
        SeriesMeta::new(Source::Prometheus, "up", meta.labels.to_vec()).id
    );
}

#[test]
fn known_series_are_not_new_again() {
    let req = WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0)])],
        metadata: vec![],
    };
    let catalog = SeriesCatalog::new();
    let body = encode_write_request(&req);
    let d = decode_write_request(&body, &catalog, LIMIT).expect("decodes");
    catalog.insert(d.batch.new_series[0].clone());
    let d = decode_write_request(&body, &catalog, LIMIT).expect("decodes");
    assert!(d.batch.new_series.is_empty());
    assert_eq!(d.batch.len(), 1);
}

#[test]
fn empty_and_metadata_only_requests_decode_to_nothing() {
    let d = decode(&WriteRequest::default());
    assert!(d.batch.is_empty());
    let d = decode(&WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "x_total".into(),
            help: "h".into(),
            unit: String::new(),
        }],
    });
    assert!(d.batch.is_empty());
    assert_eq!(d.metadata, 1);
}

#[test]
fn stale_markers_are_not_values() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let d = decode(&WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up")],
            &[(1, 1.0), (2, stale), (3, f64::NAN)],
        )],
        metadata: vec![],
    });
    assert_eq!(d.batch.timestamps(), &[1, 3]);
    assert_eq!(d.batch.stale.len(), 1);
    assert_eq!(d.batch.stale[0].timestamp_ms, 2);
}

fn rejected(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> String {
    let good = series(&[("__name__", "ok")], &[(1, 1.0)]);
    let d = decode(&WriteRequest {
        timeseries: vec![good, series(labels, samples)],
        metadata: vec![],
    });
    // The valid series is kept.
    assert_eq!(d.batch.len(), 1);
    let inv = d.invalid.expect("rejected");
    assert_eq!(inv.series, 1);
    inv.first
}

#[test]
fn rejects_unsorted_labels() {
    let msg = rejected(&[("__name__", "x"), ("b", "1"), ("a", "2")], &[(1, 1.0)]);
    assert!(msg.contains("not sorted"), "{msg}");
}

#[test]
fn rejects_duplicate_labels() {
    let msg = rejected(&[("__name__", "x"), ("a", "1"), ("a", "2")], &[(1, 1.0)]);
    assert!(msg.contains("duplicate label name \"a\""), "{msg}");
}

#[test]
fn rejects_missing_metric_name() {
    let msg = rejected(&[("job", "x")], &[(1, 1.0)]);
    assert!(msg.contains("missing __name__"), "{msg}");
}

#[test]
fn rejects_bad_names_and_empty_values() {
    assert!(rejected(&[("__name__", "1x")], &[(1, 1.0)]).contains("invalid metric name"));
    assert!(
        rejected(&[("__name__", "x"), ("a-b", "1")], &[(1, 1.0)]).contains("invalid label name")
    );
    assert!(rejected(&[("__name__", "x"), ("a", "")], &[(1, 1.0)]).contains("empty value"));
}

#[test]
fn rejects_samples_out_of_order() {
    let msg = rejected(&[("__name__", "x")], &[(2, 1.0), (1, 1.0)]);
    assert!(msg.contains("out of timestamp order"), "{msg}");
}

#[test]
fn rejects_colliding_series() {
    let catalog = SeriesCatalog::new();
    let real = SeriesMeta::new(Source::Prometheus, "a", []);
    let mut forged = SeriesMeta::new(Source::Prometheus, "b", []);
    forged.id = real.id;
    catalog.insert(Arc::new(forged));
    let body = encode_write_request(&WriteRequest {
        timeseries: vec![series(&[("__name__", "a")], &[(1, 1.0)])],
        metadata: vec![],
    });
    let d = decode_write_request(&body, &catalog, LIMIT).expect("decodes");
    let inv = d.invalid.expect("collision");
    assert_eq!(inv.collisions, 1);
    assert!(inv.first.contains("collides"), "{}", inv.first);
}

#[test]
fn rejects_framed_snappy_and_garbage() {
    let raw = WriteRequest::default().encode_to_vec();
    let mut framed = Vec::new();
    {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(&mut framed);
        w.write_all(&raw).expect("in memory");
    }
    assert!(matches!(
        decode_write_request(&framed, &SeriesCatalog::new(), LIMIT),
        Err(IngestError::BadSnappy { .. }) | Err(IngestError::BadProtobuf { .. })
    ));
    let garbage = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0xff, 0xff])
        .expect("ok");
    assert!(matches!(
        decode_write_request(&garbage, &SeriesCatalog::new(), LIMIT),
        Err(IngestError::BadProtobuf { .. })
    ));
}

#[test]
fn rejects_oversized_before_allocating() {
    let big = vec![0u8; 1 << 20];
    let body = snap::raw::Encoder::new().compress_vec(&big).expect("ok");
    assert!(matches!(
        decode_write_request(&body, &SeriesCatalog::new(), 1 << 10),
        Err(IngestError::BodyTooLarge { .. })
    ));
}

fn arb_series() -> impl Strategy<Value = TimeSeries> {
    (
        "[a-z_][a-z0-9_:]{0,12}",
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{1,12}", 0..6),
        prop::collection::vec((any::<i32>(), any::<f64>()), 0..8),
    )
        .prop_map(|(name, labels, mut samples)| {
            samples.sort_by_key(|s| s.0);
            let mut l: Vec<(String, String)> = labels
                .into_iter()
                .filter(|(n, _)| !n.starts_with("__"))
                .collect();
            l.push(("__name__".into(), name));
            l.sort();
            TimeSeries {
                labels: l
                    .into_iter()
                    .map(|(name, value)| crate::remote_write::Label { name, value })
                    .collect(),
                samples: samples
                    .into_iter()
                    .map(|(t, value)| crate::remote_write::Sample {
                        value,
                        timestamp: i64::from(t) * 1000,
                    })
                    .collect(),
            }
        })
}

proptest! {
    /// decode ∘ encode = id, checked against prost's own decoder.
    #[test]
    fn agrees_with_prost_on_valid_requests(ts in prop::collection::vec(arb_series(), 0..20)) {
        let req = WriteRequest { timeseries: ts, metadata: vec![] };
        let body = encode_write_request(&req);
        let reference = WriteRequest::decode(
            snap::raw::Decoder::new().decompress_vec(&body).expect("ok").as_slice(),
        ).expect("prost decodes");
        let d = decode_write_request(&body, &SeriesCatalog::new(), LIMIT).expect("decodes");
        prop_assert!(d.invalid.is_none(), "{:?}", d.invalid);
        let mut i = 0;
        let mut stale = 0;
        for s in &reference.timeseries {
            let metric = s.labels.iter().find(|l| l.name == "__name__").map(|l| l.value.clone()).unwrap_or_default();
            let id = SeriesMeta::new(
                Source::Prometheus,
                metric,
                s.labels.iter().map(|l| (l.name.clone(), l.value.clone())),
            ).id;
            for smp in &s.samples {
                if is_stale_nan(smp.value) {
                    prop_assert_eq!(d.batch.stale[stale].series_id, id);
                    stale += 1;
                    continue;
                }
                prop_assert_eq!(d.batch.series_ids()[i], id.0);
                prop_assert_eq!(d.batch.timestamps()[i], smp.timestamp);
                prop_assert_eq!(d.batch.values()[i].to_bits(), smp.value.to_bits());
                i += 1;
            }
        }
        prop_assert_eq!(i, d.batch.len());
    }

    /// Arbitrary bytes never panic; they decode or are rejected.
    #[test]
    fn never_panics_on_arbitrary_protobuf(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let body = snap::raw::Encoder::new().compress_vec(&raw).expect("ok");
        let _ = decode_write_request(&body, &SeriesCatalog::new(), LIMIT);
    }

    #[test]
    fn never_panics_on_arbitrary_bodies(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_write_request(&body, &SeriesCatalog::new(), LIMIT);
    }

    /// The same request as 2.0 decodes to exactly the batch 1.0 gives.
    #[test]
    fn a_v2_body_decodes_like_its_v1_original(ts in prop::collection::vec(arb_series(), 0..20)) {
        let req = WriteRequest { timeseries: ts, metadata: vec![] };
        let v1 = decode_write_request(&encode_write_request(&req), &SeriesCatalog::new(), LIMIT)
            .expect("1.0 decodes");
        let v2 = decode_v2(&req).expect("2.0 decodes");
        prop_assert!(v2.invalid.is_none(), "{:?}", v2.invalid);
        prop_assert_eq!(v2.series, v1.series);
        prop_assert_eq!(v2.batch.series_ids(), v1.batch.series_ids());
        prop_assert_eq!(v2.batch.timestamps(), v1.batch.timestamps());
        let bits = |d: &Decoded| d.batch.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&v2), bits(&v1));
        prop_assert_eq!(v2.batch.stale.len(), v1.batch.stale.len());
        prop_assert_eq!(v2.batch.new_series.len(), v1.batch.new_series.len());
        for (a, b) in v2.batch.new_series.iter().zip(&v1.batch.new_series) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn v2_never_panics_on_arbitrary_protobuf(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let body = snap::raw::Encoder::new().compress_vec(&raw).expect("ok");
        let _ = decode_version(&body, &SeriesCatalog::new(), &DecodeLimits::unbounded(LIMIT), WireVersion::V2);
    }
}

fn decode_v2(req: &WriteRequest) -> Result<Decoded, IngestError> {
    let body = proto_v2::encode_v2(&proto_v2::to_v2(req));
    decode_version(
        &body,
        &SeriesCatalog::new(),
        &DecodeLimits::unbounded(LIMIT),
        WireVersion::V2,
    )
}

fn v2_body(v2: &proto_v2::RequestV2) -> Vec<u8> {
    proto_v2::encode_v2(v2)
}

#[test]
fn v2_series_metadata_is_counted_and_bad_references_refuse_the_request() {
    use proto_v2::{MetadataV2, RequestV2, SampleV2, TimeSeriesV2};
    let limits = DecodeLimits::unbounded(LIMIT);
    let run = |r: &RequestV2| {
        decode_version(&v2_body(r), &SeriesCatalog::new(), &limits, WireVersion::V2)
    };
    let good = RequestV2 {
        symbols: ["", "__name__", "up", "job", "node", "help text"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![TimeSeriesV2 {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![SampleV2 {
                value: 1.0,
                timestamp: 5_000,
                start_timestamp: 1_000,
            }],
            metadata: Some(MetadataV2 {
                r#type: 2,
                help_ref: 5,
                unit_ref: 0,
            }),
        }],
    };
    let d = run(&good).expect("decodes");
    assert_eq!((d.series, d.metadata, d.batch.len()), (1, 1, 1));
    assert_eq!(d.batch.timestamps(), &[5_000]);
    assert_eq!(d.batch.new_series[0].metric, "up");
    assert_eq!(
        d.batch.new_series[0].labels.to_vec(),
        vec![("job".into(), "node".into())]
    );

    let mut odd = good.clone();
    odd.timeseries[0].labels_refs.pop();
    let e = run(&odd).expect_err("odd references");
    assert!(e.to_string().contains("odd number"), "{e}");
    let mut past = good.clone();
    past.timeseries[0].labels_refs[3] = 6;
    let e = run(&past).expect_err("past the table");
    assert!(e.to_string().contains("past the end"), "{e}");
    let mut first = good.clone();
    first.symbols[0] = "x".into();
    let e = run(&first).expect_err("symbols[0]");
    assert!(e.to_string().contains("symbols[0]"), "{e}");
    // An empty value (reference 0) is a series-level problem, as in 1.0: the rest is kept.
    let mut empty = good.clone();
    empty.timeseries.push(TimeSeriesV2 {
        labels_refs: vec![1, 2, 3, 0],
        samples: vec![SampleV2 {
            value: 2.0,
            timestamp: 6_000,
            start_timestamp: 0,
        }],
        metadata: None,
    });
    let d = run(&empty).expect("decodes");
    assert_eq!(d.batch.len(), 1);
    assert!(
        d.invalid
            .expect("one invalid")
            .first
            .contains("empty value")
    );
}
