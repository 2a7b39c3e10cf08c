//! `aiops bench`: throughput measurements that print JSON, each next to a baseline measured in
//! the same run (machines here are shared and noisy; compare ratios, not absolutes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aiops_ingest::remote_write::{
    RemoteWriteClient, decode_write_request, encode_write_request, synthetic_request,
};
use aiops_models::SeriesCatalog;
use axum::routing::post;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

mod args;
mod cardinality;
mod pages;
mod workload;

pub use self::args::*;

/// What the in-process `aiops serve` of `bench remote-write` needs: its archive's folder and
/// fsync setting, the token that stops it and where to send its bound address.
#[derive(Debug)]
pub struct ServeSpec {
    /// The archive's data directory (a temporary folder).
    pub data_dir: std::path::PathBuf,
    /// Whether the archive fsyncs before acknowledging.
    pub fsync: bool,
    /// Cancelled when the benchmark is done.
    pub cancel: CancellationToken,
    /// Receives the address the server bound (loopback, a free port).
    pub ready: oneshot::Sender<std::net::SocketAddr>,
}

/// Starts `aiops serve` in this process as `spec` says and runs it until `spec.cancel`. Only
/// the binary can assemble the server, so it hands this in.
pub type Serve = Box<
    dyn FnOnce(ServeSpec) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send,
>;

/// Runs the selected benchmark; `serve` starts the server `bench remote-write` measures.
pub async fn run(args: BenchArgs, serve: Serve) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::RemoteWrite(a) => remote_write(a, serve).await,
        BenchWhat::Detect(a) => detect(a),
        BenchWhat::Kafka(a) => kafka(a).await,
        BenchWhat::Cardinality(a) => cardinality::run(a).await,
        BenchWhat::Bodies(a) => bodies(a),
        BenchWhat::Disk(a) => disk(a),
    }
}

struct LoadResult {
    samples_per_sec: f64,
    requests: u64,
    failures: u64,
}

async fn load(
    url: String,
    bodies: Arc<Vec<Bytes>>,
    samples_per_body: u64,
    secs: u64,
    concurrency: usize,
) -> LoadResult {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (url, bodies, ok, failed) = (url.clone(), bodies.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let client = RemoteWriteClient::new(url).with_max_attempts(1);
            let mut i = w;
            while Instant::now() < deadline {
                match client.send_encoded(bodies[i % bodies.len()].clone()).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = ok.load(Ordering::Relaxed);
    LoadResult {
        samples_per_sec: (requests * samples_per_body) as f64 / elapsed,
        requests,
        failures: failed.load(Ordering::Relaxed),
    }
}

async fn remote_write(a: RemoteWriteBenchArgs, serve: Serve) -> anyhow::Result<()> {
    let samples_per_body = (a.series * a.samples_per_series) as u64;
    let t0 = jiff::Timestamp::now().as_millisecond() - 86_400_000;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..16)
            .map(|k| {
                let req = synthetic_request(
                    a.series,
                    a.samples_per_series,
                    t0 + k as i64 * a.samples_per_series as i64 * 15_000,
                );
                Bytes::from(encode_write_request(&req))
            })
            .collect(),
    );

    // Decode → Arrow on this thread: samples per second per core.
    let catalog = SeriesCatalog::new();
    let first = decode_write_request(&bodies[0], &catalog, 1 << 30)?;
    for m in first.batch.new_series {
        catalog.insert(m);
    }
    let started = Instant::now();
    let mut decoded = 0u64;
    while started.elapsed() < Duration::from_secs(a.secs.min(5)) {
        for b in bodies.iter() {
            decoded += decode_write_request(b, &catalog, 1 << 30)?.batch.len() as u64;
        }
    }
    let decode_rate = decoded as f64 / started.elapsed().as_secs_f64();

    // Baseline: a receiver that reads the body and answers 204 (the HTTP ceiling here).
    let null = axum::Router::new().route(
        "/api/v1/write",
        post(|_b: Bytes| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let null_addr = listener.local_addr()?;
    let null_server = tokio::spawn(async move { axum::serve(listener, null).await });
    let baseline = load(
        format!("http://{null_addr}/api/v1/write"),
        bodies.clone(),
        samples_per_body,
        a.secs,
        a.concurrency,
    )
    .await;
    null_server.abort();

    // aiops serve with the durable archive.
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(serve(ServeSpec {
        data_dir: dir.path().to_owned(),
        fsync: a.fsync,
        cancel: cancel.clone(),
        ready: tx,
    }));
    let addr = rx.await?;
    let ours = load(
        format!("http://{addr}/api/v1/write"),
        bodies.clone(),
        samples_per_body,
        a.secs,
        a.concurrency,
    )
    .await;
    cancel.cancel();
    server.await??;

    let out = json!({
        "benchmark": "remote_write",
        "series_per_request": a.series,
        "samples_per_series": a.samples_per_series,
        "samples_per_request": samples_per_body,
        "body_bytes": bodies[0].len(),
        "concurrency": a.concurrency,
        "fsync": a.fsync,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "decode_to_arrow_samples_per_sec_one_core": decode_rate.round(),
        "aiops_end_to_end": {"samples_per_sec": ours.samples_per_sec.round(), "requests": ours.requests, "failures": ours.failures},
        "baseline_null_receiver": {"samples_per_sec": baseline.samples_per_sec.round(), "requests": baseline.requests, "failures": baseline.failures},
        "ratio_to_baseline": (ours.samples_per_sec / baseline.samples_per_sec.max(1.0) * 1000.0).round() / 1000.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn detect(a: DetectBenchArgs) -> anyhow::Result<()> {
    use aiops_detect::{Detector, DetectorConfig};
    let value = |series: usize, round: usize| -> f64 {
        let x = (round as f64 * 0.05 + series as f64).sin() * 10.0 + 50.0;
        x + ((series * 7919 + round * 104_729) % 1000) as f64 / 1000.0
    };
    let points = (a.series * a.rounds) as f64;

    // Baseline: an EWMA and nothing else, the cheapest useful per-series state.
    let mut ewma = vec![0.0f64; a.series];
    let started = Instant::now();
    let mut sink = 0.0;
    for r in 0..a.rounds {
        for (i, m) in ewma.iter_mut().enumerate() {
            let v = value(i, r);
            sink += (v - *m).abs();
            *m += 0.1 * (v - *m);
        }
    }
    let baseline = points / started.elapsed().as_secs_f64();

    let mut detectors: Vec<Detector> = (0..a.series)
        .map(|_| Detector::new(DetectorConfig::default()))
        .collect();
    let started = Instant::now();
    for r in 0..a.rounds {
        let t = r as i64 * i64::from(a.step_secs) * 1000;
        for (i, d) in detectors.iter_mut().enumerate() {
            sink += d.update(t, value(i, r)).score;
        }
    }
    let ours = points / started.elapsed().as_secs_f64();
    let out = json!({
        "benchmark": "detect",
        "series": a.series,
        "points": points,
        "step_secs": a.step_secs,
        "days": (a.rounds as f64 * f64::from(a.step_secs) / 86_400.0 * 10.0).round() / 10.0,
        "threads": 1,
        "aiops_points_per_sec_one_core": ours.round(),
        "baseline_ewma_points_per_sec_one_core": baseline.round(),
        "ratio_to_baseline": (ours / baseline * 1000.0).round() / 1000.0,
        "state_bytes_per_series": std::mem::size_of::<Detector>(),
        "checksum": sink.is_finite(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Batches of `series` × `samples` samples with their catalog.
fn bench_batches(
    series: usize,
    samples: usize,
    batches: usize,
) -> (Arc<SeriesCatalog>, Vec<aiops_models::SampleBatch>) {
    use aiops_models::{SampleBatchBuilder, SeriesMeta, Source};
    let catalog = Arc::new(SeriesCatalog::new());
    let metas: Vec<Arc<SeriesMeta>> = (0..series)
        .map(|i| {
            let m = Arc::new(SeriesMeta::new(
                Source::Prometheus,
                "http_requests_total",
                [
                    ("service".to_owned(), format!("svc-{}", i % 50)),
                    (
                        "instance".to_owned(),
                        format!("10.0.{}.{}:8080", i / 250, i % 250),
                    ),
                ],
            ));
            catalog.insert(m.clone());
            m
        })
        .collect();
    let out = (0..batches)
        .map(|b| {
            let mut builder = SampleBatchBuilder::with_capacity(series * samples);
            for m in &metas {
                for k in 0..samples {
                    let t = ((b * samples + k) as i64) * 15_000;
                    builder.push(m.id, t, (b * samples + k) as f64);
                }
            }
            builder.finish()
        })
        .collect();
    (catalog, out)
}

/// `aiops bench kafka`: the same batches through the in-memory transport and through the
/// broker (encode → produce, acks=all → consume → decode), samples per second of each.
async fn kafka(a: KafkaBenchArgs) -> anyhow::Result<()> {
    use aiops_ingest::TransportConfig;
    use aiops_ingest::kafka::{KafkaConfig, decode_message, produce_batch};
    use aiops_ingest::transport::Envelope;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let (catalog, batches) = bench_batches(a.series, a.samples_per_series, a.batches);
    let total: usize = batches.iter().map(|b| b.len()).sum();

    // Baseline: the in-memory transport, sender to receiver.
    let (tx, mut rx) = TransportConfig::default().build();
    let started = Instant::now();
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(env) = rx.recv().await {
            n += env.batch.len();
        }
        n
    });
    for b in &batches {
        tx.send(Envelope {
            batch: b.clone(),
            ack: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    drop(tx);
    let got = counter.await?;
    let memory_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(got == total, "memory transport delivered {got} of {total}");

    // The codec alone (split by partition, encode, decode): what Kafka costs beyond the
    // broker round trip.
    let codec_cfg = aiops_ingest::kafka::KafkaConfig {
        partitions: a.partitions,
        ..Default::default()
    };
    let started = Instant::now();
    let mut decoded = 0usize;
    for b in &batches {
        for (_, part) in aiops_ingest::kafka::split_by_partition(&codec_cfg, b, &catalog) {
            let bytes = aiops_ingest::kafka::encode_message(&part, codec_cfg.record_format)
                .map_err(|e| anyhow::anyhow!(e))?;
            decoded += decode_message(&bytes)
                .map_err(|e| anyhow::anyhow!(e))?
                .len();
        }
    }
    let codec_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(decoded == total, "codec round trip lost samples");

    // Kafka: fresh topics, so the consumer reads exactly this run.
    let run = jiff::Timestamp::now().as_millisecond();
    let cfg = KafkaConfig {
        brokers: a.brokers.clone(),
        samples_topic: format!("aiops-bench-{run}.samples"),
        checkpoints_topic: format!("aiops-bench-{run}.checkpoints"),
        anomalies_topic: format!("aiops-bench-{run}.anomalies"),
        forecasts_topic: format!("aiops-bench-{run}.forecasts"),
        load_topic: format!("aiops-bench-{run}.load"),
        incidents_topic: format!("aiops-bench-{run}.incidents"),
        partitions: a.partitions,
        group_id: format!("aiops-bench-{run}"),
        ..KafkaConfig::default()
    };
    cfg.ensure_topics().await?;
    let producer = cfg.producer()?;
    let mut cc = cfg.client();
    cc.set("group.id", &cfg.group_id)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "104857600");
    let consumer: BaseConsumer = cc.create()?;
    consumer.subscribe(&[cfg.samples_topic.as_str()])?;
    let started = Instant::now();
    let reader = std::thread::spawn(move || -> anyhow::Result<(usize, f64)> {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut n = 0usize;
        while n < total {
            anyhow::ensure!(
                Instant::now() < deadline,
                "consumed {n} of {total} samples in 600 s"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m?;
                if let Some(p) = m.payload() {
                    n += decode_message(p).map_err(|e| anyhow::anyhow!(e))?.len();
                }
            }
        }
        Ok((n, started.elapsed().as_secs_f64()))
    });
    let timeout = Duration::from_secs(cfg.delivery_timeout_secs);
    let mut inflight = tokio::task::JoinSet::new();
    for b in batches {
        let (cfg, producer, catalog) = (cfg.clone(), producer.clone(), catalog.clone());
        inflight.spawn(async move { produce_batch(&cfg, &producer, &catalog, &b, timeout).await });
        while inflight.len() >= 16 {
            if let Some(r) = inflight.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let (consumed, kafka_secs) = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
    let memory = total as f64 / memory_secs;
    let kafka = consumed as f64 / kafka_secs;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "samples": total,
            "batches": a.batches,
            "series": a.series,
            "partitions": a.partitions,
            "memory": {"samples_per_sec": memory, "secs": memory_secs},
            "codec_only": {"samples_per_sec": total as f64 / codec_secs, "secs": codec_secs},
            "kafka": {"samples_per_sec": kafka, "secs": kafka_secs,
                      "produce_acked_samples_per_sec": total as f64 / produce_secs},
            "kafka_over_memory": kafka / memory,
        }))?
    );
    Ok(())
}

/// `aiops bench bodies`: the cardinality workload's remote_write bodies as files, for replaying
/// the same bytes to several receivers (`scripts/compare_ingest.sh`).
fn bodies(a: BodiesBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out)?;
    let k = a.samples_per_series as u64;
    let rounds = a.rounds as u64;
    let now = jiff::Timestamp::now().as_millisecond();
    let t0 = now - (rounds * k + 1) as i64 * workload::STEP_MS;
    let w = workload::Workload::new(a.series, t0);
    let mut scratch = Vec::new();
    let (mut files, mut bytes) = (0usize, 0usize);
    for r in 0..rounds {
        for (c, start) in (0..a.series).step_by(a.series_per_request).enumerate() {
            let body = w.body(
                start..(start + a.series_per_request).min(a.series),
                r * k,
                k,
                &mut scratch,
            );
            bytes += body.len();
            std::fs::write(a.out.join(format!("{r:04}-{c:06}.bin")), body)?;
            files += 1;
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "dir": a.out,
            "files": files,
            "bytes": bytes,
            "series": a.series,
            "samples": a.series as u64 * k * rounds,
            "samples_per_file": a.series_per_request as u64 * k,
        }))?
    );
    Ok(())
}

/// `aiops bench disk`: what an archive directory holds on disk, per compacted sample.
fn disk(a: DiskBenchArgs) -> anyhow::Result<()> {
    let (parts, rows, part_bytes) = aiops_ingest::archive::part_stats(&a.data_dir)?;
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let catalog = size(a.data_dir.join("catalog.jsonl"));
    let wal: u64 = std::fs::read_dir(a.data_dir.join("wal"))
        .map(|d| d.flatten().map(|e| size(e.path())).sum())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "parts": parts,
            "samples_in_parts": rows,
            "part_bytes": part_bytes,
            "catalog_bytes": catalog,
            "wal_bytes": wal,
            "part_bytes_per_sample": part_bytes as f64 / rows.max(1) as f64,
            "part_and_catalog_bytes_per_sample": (part_bytes + catalog) as f64 / rows.max(1) as f64,
        }))?
    );
    Ok(())
}
