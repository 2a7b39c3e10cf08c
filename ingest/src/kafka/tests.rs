//! Partitioning, encoding, the adapter format and configuration checks.

use super::*;

#[test]
fn batches_split_by_service_partition_and_round_trip() {
    let cfg = KafkaConfig {
        partitions: 4,
        ..KafkaConfig::default()
    };
    let catalog = SeriesCatalog::new();
    let mut b = SampleBatchBuilder::with_capacity(100);
    // Eight series of three services, two without a service.
    let metas: Vec<Arc<SeriesMeta>> = (0..10)
        .map(|i| {
            let mut labels = vec![("i".to_owned(), i.to_string())];
            if i < 8 {
                labels.push(("service".to_owned(), format!("svc{}", i % 3)));
            }
            Arc::new(SeriesMeta::new(Source::Prometheus, "m", labels))
        })
        .collect();
    for m in &metas {
        catalog.insert(m.clone());
        for t in 0..5 {
            b.push(m.id, t * 1000, t as f64);
        }
    }
    let batch = b.finish();
    let parts = split_by_partition(&cfg, &batch, &catalog);
    let total: usize = parts.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(total, 50);
    let mut service_partition: BTreeMap<String, i32> = BTreeMap::new();
    for (p, part) in &parts {
        for &id in part.series_ids() {
            let meta = catalog.get(SeriesId(id)).expect("known");
            assert_eq!(cfg.partition_of(&meta), *p);
            // A service's series share one partition.
            if let Some(s) = aiops_models::service_of(&meta) {
                assert_eq!(*service_partition.entry(s).or_insert(*p), *p);
            }
        }
        // Every series of a part travels with its catalog entry.
        let ids: std::collections::BTreeSet<u64> = part.series_ids().iter().copied().collect();
        assert_eq!(part.new_series.len(), ids.len());
        // Both record formats come back whole (`arrow_ipc` for clusters mid-upgrade).
        for format in [RecordFormat::Packed, RecordFormat::ArrowIpc] {
            let bytes = encode_message(part, format).expect("encodes");
            let back = decode_message(&bytes).expect("decodes");
            assert_eq!(back.series_ids(), part.series_ids());
            assert_eq!(back.timestamps(), part.timestamps());
            assert_eq!(back.values(), part.values());
            assert_eq!(back.new_series.len(), part.new_series.len());
            assert_eq!(back.stale, part.stale);
        }
    }
    assert!(decode_message(b"garbage").is_err());
}

#[tokio::test]
async fn batches_reach_the_broker_and_come_back_whole() {
    // librdkafka's in-process mock cluster: real sockets, real protocol.
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let cfg = KafkaConfig {
        brokers: mock.bootstrap_servers(),
        partitions: 3,
        ..KafkaConfig::default()
    };
    mock.create_topic(&cfg.samples_topic, cfg.partitions, 1)
        .expect("topic");
    let catalog = SeriesCatalog::new();
    let mut b = SampleBatchBuilder::with_capacity(30);
    for i in 0..10 {
        let m = Arc::new(SeriesMeta::new(
            Source::Prometheus,
            "m",
            [("i".to_owned(), i.to_string())],
        ));
        catalog.insert(m.clone());
        b.push_series(m.clone());
        for t in 0..3 {
            b.push(m.id, t * 1000, (i * 10 + t) as f64);
        }
    }
    let batch = b.finish();
    let producer = cfg.producer().expect("producer");
    produce_batch(&cfg, &producer, &catalog, &batch, Duration::from_secs(10))
        .await
        .expect("delivered");
    let mut c = cfg.client();
    c.set("group.id", "t").set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create().expect("consumer");
    consumer
        .subscribe(&[&cfg.samples_topic])
        .expect("subscribe");
    let mut got = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got < 30 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let part = decode_message(m.payload().expect("payload")).expect("decodes");
            assert!(
                part.series_ids()
                    .iter()
                    .all(|&id| cfg.partition_by(None, SeriesId(id)) == m.partition())
            );
            got += part.len();
        }
    }
    assert_eq!(got, 30);
}

#[tokio::test]
async fn a_checkpoint_larger_than_kafkas_default_message_size_goes_and_comes_back() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let cfg = KafkaConfig {
        brokers: mock.bootstrap_servers(),
        partitions: 2,
        ..KafkaConfig::default()
    };
    mock.create_topic(&cfg.checkpoints_topic, cfg.partitions, 1)
        .expect("topic");
    // 4 MB: four times Kafka's default 1 MB message limit (some 4,000 series' state).
    let payload: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let producer = cfg.producer().expect("producer");
    producer
        .send(
            FutureRecord::to(&cfg.checkpoints_topic)
                .partition(1)
                .key("p1")
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    let back = tokio::task::spawn_blocking(move || cfg.fetch_checkpoint(1))
        .await
        .expect("join")
        .expect("read")
        .expect("a checkpoint");
    assert!(
        back == payload,
        "{} bytes back of {}",
        back.len(),
        payload.len()
    );
}

#[test]
fn adapter_json_parses_and_bad_messages_say_why() {
    let (meta, ts, v) = parse_adapter_json(
        br#"{"timestamp":"2024-05-01T12:00:00Z","value":"0.93","name":"aiops_anomaly_score",
            "labels":{"__name__":"aiops_anomaly_score","service":"api","env":"prod"}}"#,
    )
    .expect("parses");
    assert_eq!(meta.metric, "aiops_anomaly_score");
    assert_eq!(meta.label("service"), Some("api"));
    assert_eq!((ts, v), (1_714_564_800_000, 0.93));
    let (_, _, nan) = parse_adapter_json(
        br#"{"timestamp":"2024-05-01T12:00:00Z","value":"NaN","labels":{"__name__":"x"}}"#,
    )
    .expect("NaN is a value");
    assert!(nan.is_nan());
    for bad in [
        &br#"{"timestamp":"yesterday","value":"1","labels":{"__name__":"x"}}"#[..],
        br#"{"timestamp":"2024-05-01T12:00:00Z","value":"one","labels":{"__name__":"x"}}"#,
        br#"{"timestamp":"2024-05-01T12:00:00Z","value":"1","labels":{}}"#,
        b"not json",
    ] {
        assert!(parse_adapter_json(bad).is_err());
    }
}

#[test]
fn config_validation_names_the_key() {
    let mut p = Vec::new();
    KafkaConfig {
        brokers: " ".into(),
        partitions: 0,
        properties: [("group.id".to_owned(), "x".to_owned())].into(),
        ..KafkaConfig::default()
    }
    .validate("transport.kafka", &mut p);
    let text = p.join("\n");
    for k in ["brokers", "partitions", "properties"] {
        assert!(text.contains(&format!("transport.kafka.{k}")), "{text}");
    }
}
