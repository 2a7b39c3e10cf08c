//! Scale-out against a real Kafka-compatible broker (tansu): two `aiops serve --bus kafka`
//! workers share the samples partitions; `kill -9` one, the other takes its partitions over
//! with their detector state restored from the checkpoints topic, and no sample or anomaly is
//! lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aiops_ingest::remote_write::{RemoteWriteClient, TimeSeries, WriteRequest};
use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

const SERIES: usize = 8;

fn tansu_binary() -> String {
    let candidates = [
        std::env::var("AIOPS_TANSU_BIN").unwrap_or_default(),
        format!(
            "{}/.cargo/bin/tansu",
            std::env::var("HOME").unwrap_or_default()
        ),
        "/usr/local/bin/tansu".into(),
    ];
    candidates
        .into_iter()
        .find(|p| !p.is_empty() && Path::new(p).exists())
        .expect("tansu is needed for this test: run scripts/test.sh (cargo install tansu --features dynostore) or set AIOPS_TANSU_BIN")
}

/// Starts tansu with in-memory storage on `port` and waits until it accepts connections.
async fn start_tansu(dir: &Path, port: u16) -> Proc {
    start_tansu_advertising(dir, port, port).await
}

/// As [`start_tansu`], telling clients to connect to `advertised` (a TLS proxy in front).
async fn start_tansu_advertising(dir: &Path, port: u16, advertised: u16) -> Proc {
    let log = std::fs::File::create(dir.join("tansu.log")).expect("log");
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
    let p = Proc {
        child: Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts"),
        name: "tansu",
    };
    wait_for(
        "tansu to accept connections",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    p
}

fn worker_config(port: u16, create_topics: bool) -> String {
    worker_config_with(port, create_topics, "")
}

/// The worker config with `extra` lines in `[transport.kafka]`.
fn worker_config_with(port: u16, create_topics: bool, extra: &str) -> String {
    format!(
        r#"
[transport]
kind = "kafka"
[transport.kafka]
brokers = "127.0.0.1:{port}"
partitions = 4
create_topics = {create_topics}
checkpoint_secs = 1
group_id = "aiops-e2e"
{extra}
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "max.poll.interval.ms" = "10000" }}
[detect]
event_quiet_secs = 60
[detect.detector]
learning_samples = 50
[detect.services]
enabled = false
[detect.scaling]
step_secs = 10
stale_secs = 60
hold_secs = 7200
warm_start_secs = 3600
[[detect.scaling.targets]]
name = "queue"
selector = "queue_depth"
capacity_per_pod = 1.0
lead_secs = 60
[incidents]
min_services = 2
max_age_secs = 86400
"#
    )
}

/// One step of every series: ~1.0 with a little noise; `jump` added (the anomalies).
fn step_with(t0: i64, k: i64, jump: f64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..SERIES)
            .map(|i| {
                let noise = ((k * 7 + i as i64 * 3) % 5) as f64 * 0.01;
                let service = format!("svc{i}");
                TimeSeries::from_parts(
                    [("__name__", "queue_depth"), ("service", service.as_str())],
                    [(t0 + k * 10_000, 1.0 + noise + jump)],
                )
            })
            .collect(),
        metadata: vec![],
    }
}

fn step(t0: i64, k: i64, spike: bool) -> WriteRequest {
    step_with(t0, k, if spike { 50.0 } else { 0.0 })
}

/// Anomaly events on the anomalies topic: series id → start times.
fn read_anomalies(into: &mut BTreeMap<String, BTreeSet<i64>>, consumer: &BaseConsumer) {
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
        if let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            && let Some(id) = v["series_id"].as_str()
        {
            // (Commands and the incident feed's heartbeats share the topic.)
            into.entry(id.to_owned())
                .or_default()
                .insert(v["start_ms"].as_i64().unwrap_or_default());
        }
    }
}

/// Some(()) when incident `id` on `node` holds an alert that `matches`.
async fn alert_on(
    node: &Served,
    id: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Option<()> {
    let inc = get_json(&node.http, &format!("{}/api/v1/incidents/{id}", node.base)).await?;
    inc["alerts"].as_array()?.iter().any(matches).then_some(())
}

fn log_of(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_partitions_and_one_takes_over_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The real broker; AIOPS_KAFKA_MOCK=1 swaps in librdkafka's mock cluster for a quick check
    // while developing.
    let mock;
    let _broker;
    let mocked = std::env::var_os("AIOPS_KAFKA_MOCK").is_some();
    let port = if mocked {
        mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        for t in [
            "aiops.samples",
            "aiops.checkpoints",
            "aiops.anomalies",
            "aiops.forecasts",
            "aiops.load",
            "aiops.incidents",
        ] {
            mock.create_topic(t, 4, 1).expect("topic");
        }
        let b = mock.bootstrap_servers();
        b.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    } else {
        let port = free_port();
        _broker = start_tansu(dir.path(), port).await;
        port
    };
    let brokers = format!("127.0.0.1:{port}");

    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).expect("dir");
    std::fs::create_dir_all(&b_dir).expect("dir");
    let a = serve_with_config(&a_dir, &worker_config(port, !mocked)).await;
    let b = serve_with_config(&b_dir, &worker_config(port, !mocked)).await;

    // Both own partitions (4 partitions, 2 workers).
    wait_for(
        "both workers to own partitions",
        Duration::from_secs(60),
        || async {
            let owned = |log: String| {
                log.lines()
                    .rfind(|l| l.contains("Partitions assigned"))
                    .is_some_and(|l| !l.contains("partitions=[]"))
            };
            (owned(log_of(&a.data)) && owned(log_of(&b.data))).then_some(())
        },
    )
    .await;

    let to_a = RemoteWriteClient::new(format!("{}/api/v1/write", a.base));
    let t0 = jiff::Timestamp::now().as_millisecond() - 2_000_000;
    for k in 0..100 {
        to_a.send(&step(t0, k, false)).await.expect("acknowledged");
    }
    to_a.send(&step(t0, 100, true)).await.expect("acknowledged");

    let mut reader_cfg = ClientConfig::new();
    reader_cfg
        .set("bootstrap.servers", &brokers)
        .set("group.id", "e2e-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let reader: BaseConsumer = reader_cfg.create().expect("reader");
    reader.subscribe(&["aiops.anomalies"]).expect("subscribe");
    let mut seen: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let first_spike = t0 + 100 * 10_000;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.values().filter(|s| s.contains(&first_spike)).count() < SERIES {
        assert!(
            std::time::Instant::now() < deadline,
            "first spike anomalies: {seen:?}"
        );
        read_anomalies(&mut seen, &reader);
    }
    // Every anomaly meets at one incident owner: one incident, across both nodes, holding the
    // services of every partition.
    let incidents = |base: String, http: reqwest::Client| async move {
        get_json(&http, &format!("{base}/api/v1/incidents"))
            .await
            .and_then(|v| v["incidents"].as_array().cloned())
            .unwrap_or_default()
    };
    let owns = |base: String, http: reqwest::Client| async move {
        get_json(&http, &format!("{base}/api/v1/incidents"))
            .await
            .and_then(|v| v["owner"].as_bool())
            .unwrap_or(false)
    };
    // Every node shows the same single incident (the owner's, mirrored); exactly one owns it.
    // What each node showed is printed every five seconds, so that a failure says which
    // node lacked what.
    let polls = std::cell::Cell::new(0u32);
    let (first_incident, owner_is_a) = wait_for(
        "one incident with every service, on both nodes",
        Duration::from_secs(60),
        || async {
            let on_a = incidents(a.base.clone(), a.http.clone()).await;
            let on_b = incidents(b.base.clone(), b.http.clone()).await;
            polls.set(polls.get() + 1);
            if polls.get().is_multiple_of(50) {
                let brief = |l: &Vec<serde_json::Value>| -> Vec<String> {
                    l.iter()
                        .map(|i| format!("{} {} {}", i["id"], i["state"], i["services"]))
                        .collect()
                };
                eprintln!("node a: {:?}; node b: {:?}", brief(&on_a), brief(&on_b));
            }
            let one = |l: &Vec<serde_json::Value>| {
                (l.len() == 1 && l[0]["services"].as_array().map(Vec::len) == Some(SERIES))
                    .then(|| l[0]["id"].as_str().unwrap_or_default().to_owned())
            };
            let (ia, ib) = (one(&on_a)?, one(&on_b)?);
            let (oa, ob) = (
                owns(a.base.clone(), a.http.clone()).await,
                owns(b.base.clone(), b.http.clone()).await,
            );
            (ia == ib && oa != ob).then_some((ia, oa))
        },
    )
    .await;
    // An Alertmanager alert sent to the node that does not own the incidents reaches the
    // owner (through the anomalies topic) and shows on both nodes.
    let other = if owner_is_a { &b } else { &a };
    let alert = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "aiops", "groupKey": "{}:{}",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "QueueDepthHigh", "service": "svc1"},
            "annotations": {"summary": "queue depth high on svc1"},
            "startsAt": jiff::Timestamp::from_millisecond(t0 + 100 * 10_000).expect("time").to_string(),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "e2e-alert-1"
        }]
    });
    let resp = other
        .http
        .post(format!("{}/api/v1/alertmanager", other.base))
        .json(&alert)
        .send()
        .await
        .expect("alertmanager webhook");
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    // A malformed one is refused where it arrives, with the reason.
    let bad = other
        .http
        .post(format!("{}/api/v1/alertmanager", other.base))
        .json(&serde_json::json!({"version": "4", "alerts": [{"status": "maybe", "startsAt": "x", "fingerprint": "f"}]}))
        .send()
        .await
        .expect("alertmanager webhook");
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    for node in [&a, &b] {
        wait_for(
            "the alert on the incident, on both nodes",
            Duration::from_secs(30),
            || alert_on(node, &first_incident, |a| a["fingerprint"] == "e2e-alert-1"),
        )
        .await;
    }
    // The owner ranks from every partition (through the samples topic), not only its own
    // archive: every service is a candidate.
    let owner = if owner_is_a { &a } else { &b };
    wait_for(
        "candidates from every partition",
        Duration::from_secs(60),
        || async {
            let inc = get_json(
                &owner.http,
                &format!("{}/api/v1/incidents/{first_incident}", owner.base),
            )
            .await?;
            (inc["candidates"].as_array()?.len() == SERIES).then_some(())
        },
    )
    .await;
    // Both nodes serve the scaling target's whole load (8 series of ~1.0), not the share of
    // their own partitions.
    let scaled = |base: String, http: reqwest::Client| async move {
        get_json(&http, &format!("{base}/api/v1/scaling/queue"))
            .await
            .and_then(|v| v["current"].as_f64())
    };
    let whole = |v: Option<f64>| v.is_some_and(|c| (7.9..8.5).contains(&c));
    wait_for(
        "both nodes to serve the whole load",
        Duration::from_secs(60),
        || async {
            let on_a = scaled(a.base.clone(), a.http.clone()).await;
            let on_b = scaled(b.base.clone(), b.http.clone()).await;
            (whole(on_a) && whole(on_b)).then_some(())
        },
    )
    .await;
    // Kill the incident owner, so the survivor must take over samples and incidents alike.
    let (mut victim, b) = if owner_is_a { (a, b) } else { (b, a) };
    let to_b = RemoteWriteClient::new(format!("{}/api/v1/write", b.base));
    // Let a checkpoint cover the spike, then kill it without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.server.kill9();

    // B takes everything over; A's partitions restart from their checkpoints, not cold: a
    // second anomaly after only 30 more samples (fewer than the 50 learning samples a cold
    // detector needs) is found on every series.
    for k in 101..131 {
        to_b.send(&step(t0, k, false)).await.expect("acknowledged");
    }
    // A different anomaly (a drop), so it is not discounted as a recurrence of the first.
    to_b.send(&step_with(t0, 131, -30.0))
        .await
        .expect("acknowledged");
    let second_spike = t0 + 131 * 10_000;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while seen.values().filter(|s| s.contains(&second_spike)).count() < SERIES {
        assert!(
            std::time::Instant::now() < deadline,
            "second spike anomalies after the failover: {seen:?}\nB's log:\n{}",
            log_of(&b.data)
        );
        read_anomalies(&mut seen, &reader);
    }
    let log = log_of(&b.data);
    assert!(
        log.contains("Restored a partition's detector state"),
        "{log}"
    );
    // The survivor still serves the whole load (after the spike step of 8 × ~51 passed).
    wait_for(
        "the survivor to serve the whole load",
        Duration::from_secs(60),
        || async { whole(scaled(b.base.clone(), b.http.clone()).await).then_some(()) },
    )
    .await;
    // B owns the incidents now (the owner died; B adopted them from the topic) and acts on
    // them: the alert's resolution, sent to B, is applied by B's incident feed.
    wait_for(
        "B to own the incidents and hold the first one",
        Duration::from_secs(90),
        || async {
            let held = incidents(b.base.clone(), b.http.clone())
                .await
                .iter()
                .any(|i| i["id"] == first_incident.as_str());
            (held && owns(b.base.clone(), b.http.clone()).await).then_some(())
        },
    )
    .await;
    let mut resolved = alert.clone();
    resolved["alerts"][0]["status"] = "resolved".into();
    resolved["alerts"][0]["endsAt"] = jiff::Timestamp::from_millisecond(t0 + 131 * 10_000)
        .expect("time")
        .to_string()
        .into();
    let resp = b
        .http
        .post(format!("{}/api/v1/alertmanager", b.base))
        .json(&resolved)
        .send()
        .await
        .expect("alertmanager webhook");
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    wait_for(
        "the new owner to apply the resolved alert",
        Duration::from_secs(30),
        || {
            alert_on(&b, &first_incident, |a| {
                a["fingerprint"] == "e2e-alert-1" && a["status"] == "resolved"
            })
        },
    )
    .await;
    // Every sample B acknowledged after the kill is in B's archive (B owns every partition now).
    let v = get_json(
        &b.http,
        &format!("{}/api/v1/series?match[]=queue_depth", b.base),
    )
    .await
    .expect("series");
    let ids: Vec<String> = v["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), SERIES, "{v}");
    for id in &ids {
        let url = format!(
            "{}/api/v1/series/{id}/samples?start={}&end={}",
            b.base,
            (t0 + 101 * 10_000) as f64 / 1000.0,
            (t0 + 131 * 10_000) as f64 / 1000.0
        );
        let n = wait_for(
            "B's archive to hold every sample",
            Duration::from_secs(30),
            || async {
                let s = get_json(&b.http, &url).await?;
                let n = s["samples"].as_array()?.len();
                (n == 31).then_some(n)
            },
        )
        .await;
        assert_eq!(n, 31);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_kafka_adapter_topics_are_a_source() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = start_tansu(dir.path(), port).await;
    let brokers = format!("127.0.0.1:{port}");
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &brokers);
    let admin: AdminClient<DefaultClientContext> = cc.create().expect("admin");
    let _ = admin
        .create_topics(
            &[NewTopic::new("prom-metrics", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    // What prometheus-kafka-adapter writes: one JSON sample per message, no key; one bad one.
    let producer: FutureProducer = cc.create().expect("producer");
    let t0 = jiff::Timestamp::now().as_second() - 600;
    for k in 0..30 {
        for svc in ["api", "db"] {
            let ts = jiff::Timestamp::from_second(t0 + k * 10).expect("ts");
            let v = serde_json::json!({"timestamp": ts.to_string(), "value": format!("{}", 1.5 + k as f64),
                "name": "adapter_requests", "labels": {"__name__": "adapter_requests", "service": svc, "env": "prod"}});
            producer
                .send(
                    FutureRecord::<(), _>::to("prom-metrics").payload(&v.to_string()),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
        if k == 10 {
            producer
                .send(
                    FutureRecord::<(), _>::to("prom-metrics").payload("{not json"),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    }
    let config = worker_config_with(port, true, "source_topics = [\"prom-metrics\"]");
    let w = serve_with_config(dir.path(), &config).await;
    let v = wait_for(
        "both adapter series with every sample",
        Duration::from_secs(60),
        || async {
            let v = get_json(
                &w.http,
                &format!("{}/api/v1/series?match[]=adapter_requests", w.base),
            )
            .await?;
            let ids: Vec<String> = v["series"]
                .as_array()?
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect();
            if ids.len() != 2 {
                return None;
            }
            for id in &ids {
                let url = format!("{}/api/v1/series/{id}/samples?start={}", w.base, t0 - 1);
                let s = get_json(&w.http, &url).await?;
                if s["samples"].as_array()?.len() != 30 {
                    return None;
                }
            }
            Some(v)
        },
    )
    .await;
    assert!(v.to_string().contains("\"env\":\"prod\""), "{v}");
    let metrics = get_text(&w.http, &format!("{}/metrics", w.base)).await;
    assert!(
        metrics.contains("source=\"kafka\"") && metrics.contains("reason=\"decode\""),
        "the malformed message is counted: {metrics}"
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_certificates(dir: &Path) {
    certs::ca(dir, "ca");
    certs::signed(
        dir,
        "server",
        "/CN=server",
        "subjectAltName=IP:127.0.0.1",
        "ca",
    );
    certs::signed(
        dir,
        "client",
        "/CN=client",
        "extendedKeyUsage=clientAuth",
        "ca",
    );
}

/// The security options pass through to librdkafka: the broker is reachable only over TLS with
/// a client certificate (stunnel in front of tansu, which cannot terminate TLS from its command
/// line in 0.6); a worker configured with `security.protocol = "SSL"` and its certificate
/// ingests and archives, a client without a certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_passes_through_to_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_certificates(d);
    let (plain, tls) = (free_port(), free_port());
    let _broker = start_tansu_advertising(d, plain, tls).await;
    std::fs::write(
        d.join("stunnel.conf"),
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\n\
             cert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\n\
             verifyChain = yes\nrequireCert = yes\n",
            d = d.display()
        ),
    )
    .expect("stunnel config");
    let stunnel = ["stunnel4", "stunnel"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("stunnel is needed for this test: run scripts/test.sh (apt-get install stunnel4)");
    let _proxy = Proc {
        child: Command::new(stunnel)
            .arg(d.join("stunnel.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stunnel.log")).expect("log"))
            .spawn()
            .expect("stunnel starts"),
        name: "stunnel",
    };
    wait_for("stunnel to accept", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", tls))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let node = d.join("node");
    std::fs::create_dir_all(&node).expect("dir");
    let extra = format!(
        r#"properties = {{ "security.protocol" = "SSL", "ssl.ca.location" = "{d}/ca.pem", "ssl.certificate.location" = "{d}/client.pem", "ssl.key.location" = "{d}/client.key", "session.timeout.ms" = "6000" }}"#,
        d = d.display()
    );
    let cfg = worker_config(tls, true).replace(
        r#"properties = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "max.poll.interval.ms" = "10000" }"#,
        &extra,
    );
    assert!(cfg.contains("ssl.certificate.location"), "{cfg}");
    let a = serve_with_config(&node, &cfg).await;
    wait_for(
        "the worker to own partitions",
        Duration::from_secs(60),
        || async {
            log_of(&a.data)
                .lines()
                .rfind(|l| l.contains("Partitions assigned"))
                .is_some_and(|l| !l.contains("partitions=[]"))
                .then_some(())
        },
    )
    .await;
    let to_a = RemoteWriteClient::new(format!("{}/api/v1/write", a.base));
    let t0 = jiff::Timestamp::now().as_millisecond() - 600_000;
    for k in 0..20 {
        to_a.send(&step(t0, k, false))
            .await
            .expect("acknowledged over TLS");
    }
    // Through the broker (over TLS) and back into the worker's archive.
    let v = wait_for(
        "every series in the archive",
        Duration::from_secs(60),
        || async {
            let v = get_json(
                &a.http,
                &format!("{}/api/v1/series?match[]=queue_depth", a.base),
            )
            .await?;
            (v["series"].as_array()?.len() == SERIES).then_some(v)
        },
    )
    .await;
    let id = v["series"][0]["id"].as_str().expect("id").to_owned();
    let url = format!(
        "{}/api/v1/series/{id}/samples?start={}&end={}",
        a.base,
        t0 as f64 / 1000.0,
        (t0 + 19 * 10_000) as f64 / 1000.0
    );
    wait_for("all 20 samples", Duration::from_secs(30), || async {
        (get_json(&a.http, &url).await?["samples"].as_array()?.len() == 20).then_some(())
    })
    .await;
    // Without a client certificate the broker is out of reach.
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", format!("127.0.0.1:{tls}"))
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", format!("{}/ca.pem", d.display()))
        .set("message.timeout.ms", "5000");
    let producer: rdkafka::producer::FutureProducer = c.create().expect("producer");
    let res = producer
        .send(
            rdkafka::producer::FutureRecord::to("aiops.samples")
                .key("k")
                .payload("v"),
            Duration::from_secs(10),
        )
        .await;
    assert!(res.is_err(), "a client without a certificate got through");
}
