//! `aiops bench cardinality`: ramps the number of distinct series to `--series` while the
//! series already there keep reporting, against `aiops serve` in a child process (detection
//! on, a scaling target fed live), and prints per phase: samples/s, write latency, `/healthz`
//! and external-metrics latency measured during the phase, RSS; at the end RSS per active
//! series (with the server's own split), bytes per sample on disk and the shutdown time.
//!
//! Phases: `ramp_phases` phases each add `series / ramp_phases` new series and send one round
//! (every active series `samples_per_series` samples, in requests of `series_per_request`
//! series); then `steady_rounds` rounds over every series. Time is virtual (15 s scrapes,
//! ending about now), so the run is as fast as the server accepts.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::CardinalityBenchArgs;
use super::workload::{STEP_MS, Workload};

/// Latencies of one phase, seconds.
#[derive(Debug, Default)]
struct PhaseStats {
    write: Vec<f64>,
    healthz: Vec<f64>,
    external: Vec<f64>,
    probe_failures: u64,
    retried_503: u64,
    rejected_4xx: u64,
    samples: u64,
}

/// Quantile of unsorted values (nearest rank), in ms.
pub(super) fn q_ms(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some((s[i] * 1e5).round() / 100.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Sum of every sample of `name` (any labels) in an OpenMetrics text.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

const BENCH_TARGET: &str = "bench_load";

fn write_config(path: &Path, port: u16, data: &Path, fsync: bool) -> anyhow::Result<()> {
    let text = format!(
        r#"# Written by `aiops bench cardinality`.
[server]
listen = "127.0.0.1:{port}"

[archive]
data_dir = "{data}"
fsync = {fsync}

[[detect.scaling.targets]]
name = "{BENCH_TARGET}"
namespace = "bench"
selector = "{BENCH_TARGET}"
capacity_per_pod = 50.0
lead_secs = 120
"#,
        data = data.display()
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One remote_write body of the live scaling feed: four pods' load at `now`.
fn live_body(now_ms: i64, round: u64) -> Vec<u8> {
    use aiops_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    let timeseries = (0..4)
        .map(|p| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: BENCH_TARGET.into(),
                },
                Label {
                    name: "pod".into(),
                    value: format!("load-{p}"),
                },
            ],
            samples: vec![Sample {
                value: 100.0 + ((round * 7 + p) % 11) as f64,
                timestamp: now_ms,
            }],
        })
        .collect();
    aiops_ingest::remote_write::encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
}

/// Probes `/healthz` and the external metrics route every 25 ms and feeds the scaling target
/// once a second, on a thread and runtime of its own so that the load generator's work does
/// not delay the probes.
fn spawn_probe(
    base: String,
    phase: Arc<AtomicUsize>,
    stats: Arc<Vec<Mutex<PhaseStats>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        rt.block_on(async move {
            let client = aiops_ingest::http_client()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client builds");
            let health = format!("{base}/healthz");
            let external = format!(
                "{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/{BENCH_TARGET}"
            );
            let write = format!("{base}/api/v1/write");
            let mut last_feed = Instant::now() - Duration::from_secs(2);
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                if last_feed.elapsed() >= Duration::from_secs(1) {
                    last_feed = Instant::now();
                    round += 1;
                    let body = live_body(jiff::Timestamp::now().as_millisecond(), round);
                    let _ = post(&client, &write, body).await;
                }
                for (url, is_health) in [(&health, true), (&external, false)] {
                    let started = Instant::now();
                    let ok = client.get(url).send().await.is_ok();
                    let secs = started.elapsed().as_secs_f64();
                    let p = phase.load(Ordering::Relaxed).min(stats.len() - 1);
                    let mut s = stats[p].lock().unwrap_or_else(|e| e.into_inner());
                    if !ok {
                        s.probe_failures += 1;
                    }
                    if is_health {
                        s.healthz.push(secs);
                    } else {
                        s.external.push(secs);
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
    })
}

/// Sends one round: series `0..active`, samples `first..first+count` each, over `concurrency`
/// connections; 503s are retried like Prometheus does (honouring `Retry-After`, capped).
async fn send_round(
    w: &Arc<Workload>,
    url: &str,
    a: &CardinalityBenchArgs,
    active: usize,
    first: u64,
    stats: &Arc<Vec<Mutex<PhaseStats>>>,
    phase: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let chunks = active.div_ceil(a.series_per_request);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.concurrency {
        let (w, next, url, stats) = (w.clone(), next.clone(), url.to_owned(), stats.clone());
        let (per, k) = (a.series_per_request, a.samples_per_series as u64);
        tasks.spawn(async move {
            let client = aiops_ingest::http_client()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("a plain HTTP client builds");
            let mut scratch = Vec::new();
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                let range = c * per..((c + 1) * per).min(active);
                let samples = (range.len() as u64) * k;
                let body = w.body(range, first, k, &mut scratch);
                let mut backoff = Duration::from_millis(30);
                loop {
                    let started = Instant::now();
                    let res = post(&client, &url, body.clone()).await;
                    let secs = started.elapsed().as_secs_f64();
                    let retry = {
                        let mut s = stats[phase].lock().unwrap_or_else(|e| e.into_inner());
                        s.write.push(secs);
                        match &res {
                            Ok(r) if r.status().is_success() => {
                                s.samples += samples;
                                None
                            }
                            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                                s.retried_503 += 1;
                                Some(
                                    r.headers()
                                        .get("retry-after")
                                        .and_then(|v| v.to_str().ok())
                                        .and_then(|v| v.parse::<u64>().ok())
                                        .map_or(backoff, Duration::from_secs),
                                )
                            }
                            Ok(_) => {
                                s.rejected_4xx += 1;
                                None
                            }
                            Err(_) => {
                                s.probe_failures += 1;
                                Some(backoff)
                            }
                        }
                    };
                    match retry {
                        None => break,
                        Some(wait) => {
                            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    Ok(())
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Runs the benchmark and prints JSON.
pub async fn run(a: CardinalityBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.series >= a.ramp_phases && a.ramp_phases >= 1,
        "need --series >= --ramp-phases >= 1"
    );
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let data = dir.path().join("data");
    let port = free_port()?;
    let config = dir.path().join("aiops.toml");
    write_config(&config, port, &data, a.fsync)?;
    let binary = match &a.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = tokio::process::Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "AIOPS_LOG",
            std::env::var("AIOPS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the server has no pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = aiops_ingest::http_client()
        .timeout(Duration::from_secs(10))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not become ready in 60 s; see {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = rss_bytes(pid).unwrap_or(0);

    eprintln!("building {} series ...", a.series);
    let rounds = a.ramp_phases + a.steady_rounds;
    let k = a.samples_per_series as u64;
    let now = jiff::Timestamp::now().as_millisecond();
    let t0 = now - (rounds as i64 * k as i64 + 1) * STEP_MS;
    let series = a.series;
    let w = Arc::new(tokio::task::spawn_blocking(move || Workload::new(series, t0)).await?);

    let phases = a.ramp_phases + usize::from(a.steady_rounds > 0);
    let stats: Arc<Vec<Mutex<PhaseStats>>> =
        Arc::new((0..phases).map(|_| Mutex::default()).collect());
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = spawn_probe(base.clone(), phase.clone(), stats.clone(), stop.clone());
    let url = format!("{base}/api/v1/write");
    let mut rows = Vec::new();
    let mut round = 0u64;
    for p in 0..phases {
        phase.store(p, Ordering::Relaxed);
        let ramp = p < a.ramp_phases;
        let active = if ramp {
            a.series * (p + 1) / a.ramp_phases
        } else {
            a.series
        };
        let new = if ramp {
            active - a.series * p / a.ramp_phases
        } else {
            0
        };
        let started = Instant::now();
        let n_rounds = if ramp { 1 } else { a.steady_rounds };
        for _ in 0..n_rounds {
            send_round(&w, &url, &a, active, round * k, &stats, p).await?;
            round += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        let rss = rss_bytes(pid);
        let s = stats[p].lock().unwrap_or_else(|e| e.into_inner());
        let rate = s.samples as f64 / secs;
        eprintln!(
            "{} phase {p}: {active} active series ({new} new), {:.0} samples/s, write p99 {:?} ms, healthz p99 {:?} ms, external p99 {:?} ms, RSS {} MB",
            if ramp { "ramp" } else { "steady" },
            rate,
            q_ms(&s.write, 0.99),
            q_ms(&s.healthz, 0.99),
            q_ms(&s.external, 0.99),
            rss.unwrap_or(0) >> 20
        );
        rows.push(json!({
            "phase": if ramp { format!("ramp-{}", p + 1) } else { "steady".to_owned() },
            "active_series": active,
            "new_series": new,
            "rounds": n_rounds,
            "samples": s.samples,
            "secs": (secs * 1000.0).round() / 1000.0,
            "samples_per_sec": rate.round(),
            "write_ms": {"p50": q_ms(&s.write, 0.5), "p99": q_ms(&s.write, 0.99), "max": q_ms(&s.write, 1.0), "requests": s.write.len()},
            "retried_503": s.retried_503,
            "rejected_4xx": s.rejected_4xx,
            "healthz_ms": {"p50": q_ms(&s.healthz, 0.5), "p99": q_ms(&s.healthz, 0.99), "max": q_ms(&s.healthz, 1.0), "probes": s.healthz.len()},
            "external_metrics_ms": {"p50": q_ms(&s.external, 0.5), "p99": q_ms(&s.external, 0.99), "max": q_ms(&s.external, 1.0), "probes": s.external.len()},
            "failed_requests": s.probe_failures,
            "rss_bytes": rss,
        }));
    }
    // Detection runs behind the archive: wait (bounded) until it has scored what was archived.
    let caught_up = Instant::now();
    let mut detect_lag = None;
    let mut metrics = String::new();
    while caught_up.elapsed() < Duration::from_secs(a.catch_up_secs) {
        metrics = scrape(&client, &base).await;
        let archived = metric_sum(&metrics, "aiops_ingest_archive_samples_total");
        let scored = metric_sum(&metrics, "aiops_detect_received_samples_total");
        let warming = metric_sum(&metrics, "aiops_detect_warm_backlog").unwrap_or(0.0);
        match (archived, scored) {
            (Some(x), Some(y)) if y >= x && warming == 0.0 => {
                detect_lag = Some(caught_up.elapsed().as_secs_f64());
                break;
            }
            (_, None) => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || probe.join()).await;
    eprintln!("timing the console's requests ...");
    let pages = super::pages::measure(&client, &base, BENCH_TARGET).await;
    let rss_end = rss_bytes(pid).unwrap_or(0);
    let steady = rows
        .last()
        .and_then(|r| r["samples_per_sec"].as_f64())
        .unwrap_or(0.0);
    let ramp_min = rows
        .iter()
        .take(a.ramp_phases)
        .filter_map(|r| r["samples_per_sec"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let all = |f: fn(&PhaseStats) -> &Vec<f64>| -> Vec<f64> {
        stats
            .iter()
            .flat_map(|s| f(&s.lock().unwrap_or_else(|e| e.into_inner())).clone())
            .collect()
    };
    let (healthz, external, write) = (all(|s| &s.healthz), all(|s| &s.external), all(|s| &s.write));
    let split = |name: &str| metric_sum(&metrics, name);

    // Graceful shutdown, timed.
    let stopping = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exited = tokio::time::timeout(Duration::from_secs(120), child.wait()).await;
    let shutdown_secs = stopping.elapsed().as_secs_f64();
    if exited.is_err() {
        let _ = child.kill().await;
    }
    let (parts, rows_in_parts, part_bytes) = aiops_ingest::archive::part_stats(&data)?;
    let wal_bytes = dir_bytes(&data.join("wal"));
    let total_samples: u64 = stats
        .iter()
        .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).samples)
        .sum();
    let per_series = |b: u64| (b as f64 / a.series as f64).round();
    let out = json!({
        "benchmark": "cardinality",
        "series": a.series,
        "samples_per_series_per_request": a.samples_per_series,
        "series_per_request": a.series_per_request,
        "concurrency": a.concurrency,
        "fsync": a.fsync,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "phases": rows,
        "steady_samples_per_sec": steady,
        "lowest_ramp_phase_over_steady": ((ramp_min / steady.max(1.0)) * 1000.0).round() / 1000.0,
        "write_ms_p99": q_ms(&write, 0.99),
        "healthz_ms": {"p99": q_ms(&healthz, 0.99), "max": q_ms(&healthz, 1.0)},
        "external_metrics_ms": {"p99": q_ms(&external, 0.99), "max": q_ms(&external, 1.0)},
        "detection_caught_up_secs": detect_lag,
        "console_requests": pages,
        "memory": {
            "rss_idle_bytes": rss_idle,
            "rss_end_bytes": rss_end,
            "rss_bytes_per_active_series": per_series(rss_end.saturating_sub(rss_idle)),
            "server_split_bytes_per_series": {
                "detector": split("aiops_detect_state_bytes").map(|b| (b / a.series as f64).round()),
                "catalog": split("aiops_ingest_catalog_bytes").map(|b| (b / a.series as f64).round()),
                "head": split("aiops_ingest_head_bytes").map(|b| (b / a.series as f64).round()),
            },
        },
        "disk": {
            "parts": parts,
            "samples_in_parts": rows_in_parts,
            "part_bytes": part_bytes,
            "part_bytes_per_sample": (part_bytes as f64 / (rows_in_parts.max(1)) as f64 * 1000.0).round() / 1000.0,
            "wal_bytes_left": wal_bytes,
            "archive_bytes_per_accepted_sample": (dir_bytes(&data) as f64 / total_samples.max(1) as f64 * 1000.0).round() / 1000.0,
        },
        "accepted_samples": total_samples,
        "shutdown_secs": (shutdown_secs * 100.0).round() / 100.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if a.keep {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}
