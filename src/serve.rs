//! `aiops serve`: wires sources, transport, archive and API, and shuts them down front to back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aiops_api::{ApiMetrics, AppState, router};
use aiops_ingest::IngestMetrics;
use aiops_ingest::SourceStates;
use aiops_ingest::TransportKind;
use aiops_ingest::appinsights::{self, AppInsightsClient};
use aiops_ingest::archive::Archive;
use aiops_ingest::prometheus_api::{PromClient, run_live};
use aiops_ingest::transport::EventBus;
use aiops_models::SeriesCatalog;
use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

/// Runs until `cancel`, then drains: the server stops accepting and finishes in-flight
/// requests (up to `shutdown_grace_secs`), sources stop, the archive writes what is queued,
/// syncs and closes. `bound` receives the listening address once the server accepts.
pub async fn serve(
    mut cfg: Config,
    cancel: CancellationToken,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    // A promoted model overrides the configured detector parameters.
    if let Some((version, params)) =
        aiops_detect::registered::active_detector(&cfg.archive.data_dir)?
    {
        info!(
            version,
            "Using the detector parameters of the active registered model."
        );
        cfg.detect.detector = params;
    }
    let auth = aiops_api::credentials::authenticator(&cfg.server).await?;
    // The Kafka worker stops after the forwarder drained (not with the first signal).
    let worker_cancel = CancellationToken::new();
    let mut registry = Registry::default();
    let ingest_metrics = IngestMetrics::register(&mut registry);
    let api_metrics = ApiMetrics::register(&mut registry);
    let catalog = Arc::new(SeriesCatalog::new());

    let (archive, stage) = {
        let (acfg, catalog, metrics) =
            (cfg.archive.clone(), catalog.clone(), ingest_metrics.clone());
        tokio::task::spawn_blocking(move || Archive::open(acfg, catalog, metrics)).await??
    };
    let (sender, receiver) = cfg.transport.build();
    // Detection scores every batch once it is durable; its state survives restarts.
    let checkpoint = aiops_detect::stage::checkpoint::path(&cfg.archive.data_dir);
    let detect_state = {
        let (data_dir, dcfg) = (cfg.archive.data_dir.clone(), cfg.detect.clone());
        let st = tokio::task::spawn_blocking(move || {
            aiops_detect::stage::checkpoint::restore(&data_dir, &dcfg)
        })
        .await?;
        Arc::new(std::sync::RwLock::new(st))
    };
    // What the API reads: published snapshots and the scaling targets' own lock.
    let (published, scaling_state) = {
        let st = detect_state.read().unwrap_or_else(|p| p.into_inner());
        (st.published.clone(), st.scaling.clone())
    };
    let events = EventBus::new(cfg.detect.max_events.min(65_536));
    // Subscribed before detection starts, so the incident task sees every event.
    let incident_events = events.subscribe();
    let publish = {
        let bus = events.clone();
        Box::new(move |ev: &aiops_models::AnomalyEvent| bus.publish(ev))
    };
    let kafka = cfg.transport.kind == TransportKind::Kafka;
    // What runs after ingest: the archive stage and the detector (one process), or — on Kafka —
    // the forwarder to the samples topic and a worker of the detector group that archives
    // and scores what its partitions bring.
    let (stage, detector, forwarder) = if kafka {
        let kcfg = cfg.transport.kafka.clone();
        info!(brokers = %kcfg.brokers, "Using the Kafka transport; checking topics.");
        kcfg.ensure_topics()
            .await
            .context("creating the Kafka topics")?;
        info!(samples = %kcfg.samples_topic, partitions = kcfg.partitions, "Kafka topics ready.");
        let producer = kcfg.producer()?;
        let forwarder = tokio::spawn(aiops_ingest::kafka::run_forwarder(
            kcfg.clone(),
            producer,
            catalog.clone(),
            receiver,
        ));
        let (archive_tx, archive_rx) = cfg.transport.build();
        let stage = stage.spawn(archive_rx);
        let worker = aiops_cluster::Worker {
            cfg: kcfg,
            detect: cfg.detect.clone(),
            catalog: catalog.clone(),
            state: detect_state.clone(),
            archive: archive_tx,
            // Anomalies meet at the incident owner through the anomalies topic, not here.
            publish: Box::new(|_: &aiops_models::AnomalyEvent| {}),
            rt: tokio::runtime::Handle::current(),
        };
        let token = worker_cancel.clone();
        let detector = std::thread::Builder::new()
            .name("aiops-worker".into())
            .spawn(move || {
                if let Err(e) = worker.run(token) {
                    tracing::error!(error = %e, "The detector worker stopped.");
                }
            })?;
        (stage, detector, Some(forwarder))
    } else {
        let (detect_tx, detect_rx) =
            aiops_models::queue::batch_queue(cfg.transport.capacity, cfg.detect.max_queue_bytes);
        let (dcfg, catalog, state) = (cfg.detect.clone(), catalog.clone(), detect_state.clone());
        // Series without checkpointed state start from what the archive holds of them.
        let reader = archive.clone();
        let scanner = archive.clone();
        let history = aiops_detect::stage::HistoryReaders {
            series: Box::new(move |id, from, to| {
                reader.read_series(id, from, to).unwrap_or_else(|e| {
                    warn!(series = %id, error = %e, "Cannot read a scaling target member's history.");
                    Vec::new()
                })
            }),
            scan: Box::new(move |series, visit| {
                if let Err(e) = scanner.scan_many(series, i64::MAX, visit) {
                    warn!(series = series.len(), error = %e, "Cannot read history to warm detectors; they stay cold.");
                }
            }),
        };
        let detector = std::thread::Builder::new()
            .name("aiops-detect".into())
            .spawn(move || {
                aiops_detect::stage::run(
                    dcfg,
                    detect_rx,
                    catalog,
                    state,
                    Some(checkpoint),
                    history,
                    publish,
                )
            })?;
        (
            stage.with_downstream(detect_tx).spawn(receiver),
            detector,
            None,
        )
    };

    let states = SourceStates::default();
    let mut sources = JoinSet::new();
    for src in cfg.sources.prometheus.clone() {
        let client = PromClient::new(&src, ingest_metrics.clone())?;
        sources.spawn(run_live(
            src,
            client,
            sender.clone(),
            catalog.clone(),
            states.clone(),
            cancel.child_token(),
        ));
    }

    if kafka && !cfg.transport.kafka.source_topics.is_empty() {
        let (kcfg, sender, catalog, metrics, token) = (
            cfg.transport.kafka.clone(),
            sender.clone(),
            catalog.clone(),
            ingest_metrics.clone(),
            cancel.child_token(),
        );
        sources.spawn(async move {
            if let Err(e) =
                aiops_ingest::kafka::run_adapter_source(kcfg, sender, catalog, metrics, token).await
            {
                tracing::error!(error = %e, "The Kafka source stopped.");
            }
        });
    }
    for src in cfg.sources.appinsights.clone() {
        let client = AppInsightsClient::new(&src, ingest_metrics.clone())?;
        sources.spawn(appinsights::run_live(
            src,
            client,
            sender.clone(),
            catalog.clone(),
            states.clone(),
            cancel.child_token(),
        ));
    }

    let mut incident_service = aiops_api::incidents::IncidentService::open(
        cfg.incidents.clone(),
        &cfg.archive.data_dir.join("incidents"),
        &mut registry,
    )
    .context("opening the incident book")?;
    // One producer for the incident side: updates, forwarded changes, the feed's heartbeats.
    let incident_producer = if kafka {
        Some(cfg.transport.kafka.producer()?)
    } else {
        None
    };
    if let Some(producer) = &incident_producer {
        incident_service = aiops_cluster::incident_feed::on_bus(
            incident_service,
            producer.clone(),
            &cfg.transport.kafka,
            cfg.incidents.max_series,
        );
    }
    let incidents = Arc::new(incident_service);
    // Derived series out to remote_write receivers; detection buffers its share as it scores.
    let (outputs, sinks) = crate::outputs::Outputs::start(
        &cfg.outputs.remote_write,
        &cfg.archive.data_dir,
        &mut registry,
        crate::outputs::StateSources {
            scaling: Arc::new(cfg.detect.scaling.clone()),
            scaling_state: scaling_state.clone(),
            incidents: incidents.clone(),
        },
    )?;
    if !sinks.is_empty() {
        detect_state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .outputs = sinks;
    }
    // Events a crash kept from the incident book (it is saved after the event log): replayed;
    // the book ignores what it already holds.
    {
        let open: Vec<aiops_models::AnomalyEvent> = detect_state
            .read()
            .map(|st| {
                st.events
                    .iter()
                    .filter(|e| e.end_ms.is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for ev in &open {
            incidents.on_anomaly(ev);
        }
    }
    let kcfg = &cfg.transport.kafka;
    let incident_feed = incident_producer.map(|producer| {
        spawn_reporting(
            "The incident feed stopped.",
            aiops_cluster::run_incident_feed(
                kcfg.clone(),
                producer,
                incidents.clone(),
                worker_cancel.clone(),
            ),
        )
    });
    // Every node shows every incident: a mirror of the incidents topic.
    let incident_mirror = kafka.then(|| {
        spawn_reporting(
            "The incident mirror stopped; this node shows only its own incidents.",
            aiops_cluster::run_incident_mirror(
                kcfg.clone(),
                incidents.clone(),
                worker_cancel.clone(),
            ),
        )
    });
    let scaling_feed = (kafka && !cfg.detect.scaling.targets.is_empty()).then(|| {
        spawn_reporting(
            "The load feed stopped; scaling targets are not served from every partition.",
            aiops_cluster::run_scaling_feed(
                kcfg.clone(),
                cfg.detect.scaling.clone(),
                detect_state.clone(),
                worker_cancel.clone(),
            ),
        )
    });
    let incident_task = tokio::spawn(aiops_api::incidents::run(
        incidents.clone(),
        incident_events,
        catalog.clone(),
        archive.clone(),
        cancel.child_token(),
    ));
    let pagerduty_sender = tokio::spawn(aiops_api::pagerduty::run_sender(
        incidents.outbox.clone(),
        cfg.incidents.pagerduty.clone(),
        aiops_ingest::http_client()
            .build()
            .context("building the PagerDuty HTTP client")?,
        cancel.child_token(),
    ));
    let (scaling_for_keda, auth_for_keda) = (scaling_state.clone(), auth.clone());
    let state = AppState {
        config: Arc::new(aiops_api::ApiConfig {
            // 0: as old as the archive keeps.
            max_sample_age_secs: match cfg.server.max_sample_age_secs {
                0 => cfg.archive.retention_secs,
                age => age,
            },
            ..cfg.server.clone()
        }),
        catalog,
        archive,
        sender,
        sources: states,
        registry: Arc::new(registry),
        ingest_metrics,
        api_metrics: api_metrics.clone(),
        detect: published,
        scaling_state,
        detect_config: Arc::new(cfg.detect.clone()),
        max_score_gauges: cfg.detect.max_score_gauges,
        scaling: Arc::new(cfg.detect.scaling.clone()),
        incidents,
        limits: Arc::new(cfg.limits.clone()),
        heavy_reads: Arc::new(tokio::sync::Semaphore::new(cfg.server.max_concurrent_reads)),
        analyses: Arc::new(aiops_api::RateLimit::per_minute(
            cfg.incidents.max_analyses_per_minute,
        )),
        auth: auth.clone(),
    };
    tokio::spawn(aiops_api::credentials::reload_every(
        auth,
        std::time::Duration::from_secs(5),
        cancel.child_token(),
    ));
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    info!(%addr, data_dir = %cfg.archive.data_dir.display(), "aiops is serving.");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let app = router(state);
    let conns = aiops_api::listen::Connections::new(
        &cfg.server,
        aiops_api::listen::connection_cap(cfg.server.max_connections),
        api_metrics.clone(),
    );
    // KEDA's external scaler (gRPC): the same predictive values.
    let keda_server = match cfg.server.keda_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at}"))?;
            info!(addr = %l.local_addr()?, "aiops serves KEDA's external scaler (gRPC).");
            let scaler = aiops_api::keda::Scaler::new(
                Arc::new(cfg.detect.scaling.clone()),
                scaling_for_keda,
                auth_for_keda,
                cfg.server.keda_allow_unauthenticated,
                cfg.server.keda_max_streams,
            );
            let token = cancel.child_token();
            Some(tokio::spawn(async move {
                if let Err(e) = aiops_api::keda::serve(scaler, l, token).await {
                    tracing::error!(error = %e, "KEDA's external scaler stopped.");
                }
            }))
        }
        None => None,
    };
    // HTTPS beside HTTP, same routes (the Kubernetes aggregator needs TLS).
    let tls_server = match (
        &cfg.server.tls_listen,
        &cfg.server.tls_cert_file,
        &cfg.server.tls_key_file,
    ) {
        (Some(at), Some(cert), Some(key)) => {
            let (cert, key, ca) = (
                cert.clone(),
                key.clone(),
                cfg.server.front_proxy_ca_file.clone(),
            );
            let tls = Arc::new(
                tokio::task::spawn_blocking(move || {
                    aiops_api::tls::TlsFiles::load(&cert, &key, ca.as_deref())
                })
                .await??,
            );
            tokio::spawn(aiops_api::credentials::reload_tls_every(
                tls.clone(),
                Duration::from_secs(5),
                cancel.child_token(),
            ));
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at}"))?;
            info!(addr = %l.local_addr()?, "aiops is serving HTTPS.");
            Some(tokio::spawn(aiops_api::listen::serve(
                l,
                app.clone(),
                Some(tls),
                conns.clone(),
                cancel.clone(),
            )))
        }
        _ => None,
    };
    let mut server = tokio::spawn(aiops_api::listen::serve(
        listener,
        app,
        None,
        conns,
        cancel.clone(),
    ));
    // One deadline for the whole shutdown, from the moment it starts: requests, feeds and the
    // archive share `shutdown_grace_secs`; what is still running then is cut off (everything
    // acknowledged is durable in the WAL already; detectors re-warm from the archive).
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    let deadline = tokio::select! {
        res = &mut server => {
            // The server ended on its own: shut the rest down too.
            cancel.cancel();
            res?;
            tokio::time::Instant::now() + grace
        }
        _ = cancel.cancelled() => {
            let deadline = tokio::time::Instant::now() + grace;
            if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
                warn!(grace_secs = grace.as_secs(), "In-flight requests did not finish in time; closing them.");
                server.abort();
            }
            deadline
        }
    };
    let within = |what: &'static str, task: tokio::task::JoinHandle<()>| async move {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            warn!(
                what,
                "Still running at the end of the shutdown grace period; cut off."
            );
        }
    };
    if let Some(tls) = tls_server {
        within("HTTPS requests", tls).await;
    }
    if let Some(k) = keda_server {
        within("KEDA's external scaler", k).await;
    }
    if tokio::time::timeout_at(deadline, async {
        while sources.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("Pulling sources still running at the end of the grace period; cut off.");
    }
    if let Some(f) = forwarder {
        // Every batch the server accepted reaches Kafka (or its sender was told it did not).
        within("the Kafka forwarder", f).await;
        worker_cancel.cancel();
    }
    // The incident book is saved on every change and the outbox is on disk: both just stop.
    within("the incident task", incident_task).await;
    for (what, f) in [
        ("the incident feed", incident_feed),
        ("the scaling feed", scaling_feed),
        ("the incident mirror", incident_mirror),
    ] {
        if let Some(f) = f {
            within(what, f).await;
        }
    }
    within("the PagerDuty sender", pagerduty_sender).await;
    // Every sender is gone once the server and sources are: the archive drains and stops.
    let joined = tokio::task::spawn_blocking(move || {
        let _ = stage.join();
        // The archive held the detector's input: it drains, checkpoints and stops now.
        let _ = detector.join();
    });
    // At least a moment for the final WAL sync and checkpoint, even when the grace is spent.
    let deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    match tokio::time::timeout_at(deadline, joined).await {
        Ok(_) => info!("Archive flushed and detector state checkpointed; bye."),
        Err(_) => warn!(
            "Archive or detector still busy at the end of the grace period; exiting (acknowledged data is already durable)."
        ),
    }
    // Detection is done: the outputs queue what they hold on disk for the next start.
    outputs.stop(deadline).await;
    Ok(())
}

/// Runs a background task of the Kafka deployment; if it fails, logs `what` stops working.
fn spawn_reporting<E: std::fmt::Display>(
    what: &'static str,
    task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "{what}");
        }
    })
}
