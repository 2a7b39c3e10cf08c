//! Compacting a WAL segment into a part: `write_part` (rows sorted by series and time, every page
//! with its CRC-32) against parquet's `ArrowWriter` given the same encodings, compression and row
//! groups on rows already in part order, in samples per second on one core, same run. The gap is
//! the sort, the page CRCs and the read-back for the part's checksums.

use std::sync::Arc;

use aiops_ingest::archive::{FRESH_ZSTD_LEVEL, part_properties, write_part};
use aiops_models::{SampleBatch, SampleBatchBuilder, SeriesId, sample_schema};
use arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;

const SERIES: u64 = 10_000;
const ROUNDS: i64 = 50;

/// A segment as the WAL holds it: every series once per scrape, counters and gauges.
fn segment() -> SampleBatch {
    let mut b = SampleBatchBuilder::with_capacity((SERIES as i64 * ROUNDS) as usize);
    for t in 0..ROUNDS {
        for s in 0..SERIES {
            let v = if s % 2 == 0 {
                (t * (s as i64 % 7 + 1)) as f64
            } else {
                ((t as f64 * 0.1 + s as f64).sin() * 100.0).round() / 4.0
            };
            b.push(SeriesId(s * 7919), t * 15_000, v);
        }
    }
    b.finish()
}

fn bench(c: &mut Criterion) {
    let batch = segment();
    let rows = batch.len();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("part.parquet");
    let mut g = c.benchmark_group("part_write");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.bench_function("write_part", |b| {
        b.iter(|| {
            write_part(1, &path, std::slice::from_ref(&batch))
                .expect("writes")
                .bytes
        })
    });
    // The same rows, already sorted, through parquet's own writer with the part's settings.
    let mut order: Vec<usize> = (0..rows).collect();
    let (ids, ts, vs) = (batch.series_ids(), batch.timestamps(), batch.values());
    order.sort_by_key(|&i| (ids[i], ts[i]));
    let sorted = RecordBatch::try_new(
        sample_schema(),
        vec![
            Arc::new(UInt64Array::from_iter_values(order.iter().map(|&i| ids[i]))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(order.iter().map(|&i| ts[i]))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(order.iter().map(|&i| vs[i]))),
        ],
    )
    .expect("batch");
    let props = part_properties(FRESH_ZSTD_LEVEL).build();
    g.bench_function("baseline_arrow_writer_presorted", |b| {
        b.iter(|| {
            let file = std::fs::File::create(&path).expect("create");
            let mut w =
                ArrowWriter::try_new(file, sample_schema(), Some(props.clone())).expect("writer");
            w.write(&sorted).expect("write");
            let file = w.into_inner().expect("close");
            file.sync_all().expect("fsync");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
