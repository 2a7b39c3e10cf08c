//! remote_write body → decoded → Arrow `SampleBatch`, on the checked-in fixtures, in samples per
//! second on one core. Baselines in the same run: Snappy decompression alone (the floor) and
//! decoding into prost structs (what a receiver built on the generated types does, before it
//! has even started building Arrow columns). `decode_v2_to_arrow` is the same request sent as
//! remote_write 2.0 (string table and label references).

use aiops_ingest::remote_write::{
    DecodeLimits, WireVersion, WriteRequest, decode_version, decode_write_request, proto_v2,
};
use aiops_models::SeriesCatalog;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/fixtures")
        .join(format!("{name}.snappy"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn bench(c: &mut Criterion) {
    for (name, samples) in [("10k_series_x1", 10_000u64), ("1k_series_x10", 10_000u64)] {
        let body = fixture(name);
        let mut g = c.benchmark_group(format!("remote_write/{name}"));
        g.throughput(Throughput::Elements(samples));

        // Steady state: every series already in the catalog (the common case).
        let warm = SeriesCatalog::new();
        let first = decode_write_request(&body, &warm, 64 << 20).expect("fixture decodes");
        assert_eq!(first.batch.len() as u64, samples);
        for m in first.batch.new_series {
            warm.insert(m);
        }
        g.bench_function("decode_to_arrow", |b| {
            b.iter(|| {
                decode_write_request(&body, &warm, 64 << 20)
                    .expect("decodes")
                    .batch
                    .len()
            })
        });
        let v2 = proto_v2::transcode_v1_body(&body).expect("fixture re-encodes");
        let limits = DecodeLimits::unbounded(64 << 20);
        g.bench_function("decode_v2_to_arrow", |b| {
            b.iter(|| {
                decode_version(&v2, &warm, &limits, WireVersion::V2)
                    .expect("decodes")
                    .batch
                    .len()
            })
        });
        // First sight of every series: labels are copied into the new catalog entries.
        let cold = SeriesCatalog::new();
        g.bench_function("decode_to_arrow_new_series", |b| {
            b.iter(|| {
                decode_write_request(&body, &cold, 64 << 20)
                    .expect("decodes")
                    .batch
                    .len()
            })
        });
        g.bench_function("baseline_snappy_only", |b| {
            b.iter(|| {
                snap::raw::Decoder::new()
                    .decompress_vec(&body)
                    .expect("snappy")
                    .len()
            })
        });
        g.bench_function("baseline_prost_structs", |b| {
            b.iter(|| {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&body)
                    .expect("snappy");
                WriteRequest::decode(raw.as_slice())
                    .expect("protobuf")
                    .timeseries
                    .len()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
