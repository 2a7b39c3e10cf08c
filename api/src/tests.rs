use std::sync::Arc;

use aiops_ingest::IngestMetrics;
use aiops_ingest::SourceStates;
use aiops_ingest::TransportConfig;
use aiops_ingest::archive::{Archive, ArchiveConfig};
use aiops_ingest::remote_write::{MetricMetadata, TimeSeries, WriteRequest, encode_write_request};
use aiops_models::SeriesCatalog;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use super::*;

struct Harness {
    router: Router,
    _dir: tempfile::TempDir,
    /// Sent as `Authorization: Bearer` by [`get`].
    token: Option<String>,
}

fn harness_with(config: ApiConfig) -> Harness {
    harness_full(
        config,
        Default::default(),
        Default::default(),
        Default::default(),
    )
}

fn harness_full(
    config: ApiConfig,
    scaling: aiops_detect::scaling::ScalingConfig,
    detect: aiops_detect::DetectState,
    catalog: Arc<SeriesCatalog>,
) -> Harness {
    harness_all(
        config,
        scaling,
        detect,
        catalog,
        Default::default(),
        Default::default(),
    )
}

fn harness_limited(config: ApiConfig, limits: crate::LimitsConfig) -> Harness {
    harness_all(
        config,
        Default::default(),
        Default::default(),
        Default::default(),
        Default::default(),
        limits,
    )
}

fn harness_all(
    config: ApiConfig,
    scaling: aiops_detect::scaling::ScalingConfig,
    detect: aiops_detect::DetectState,
    catalog: Arc<SeriesCatalog>,
    incident_cfg: aiops_rca::incident::IncidentConfig,
    limits: crate::LimitsConfig,
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    let ingest_metrics = IngestMetrics::register(&mut registry);
    let api_metrics = ApiMetrics::register(&mut registry);
    let analyses_per_minute = incident_cfg.max_analyses_per_minute;
    let incidents = Arc::new(
        incidents::IncidentService::open(
            incident_cfg,
            &dir.path().join("incidents"),
            &mut registry,
        )
        .expect("incident book opens"),
    );
    let (archive, stage) = Archive::open(
        ArchiveConfig {
            data_dir: dir.path().to_owned(),
            ..ArchiveConfig::default()
        },
        catalog.clone(),
        ingest_metrics.clone(),
    )
    .expect("archive opens");
    let (sender, receiver) = TransportConfig::default().build();
    // The stage ends when the router (holding the last sender) is dropped with the test.
    let _ = stage.spawn(receiver);
    let auth = Arc::new(config.authenticator().expect("credentials"));
    let state = AppState {
        auth,
        config: Arc::new(config),
        catalog,
        archive,
        sender,
        sources: SourceStates::default(),
        registry: Arc::new(registry),
        ingest_metrics,
        api_metrics,
        detect: detect.published.clone(),
        scaling_state: detect.scaling.clone(),
        detect_config: Arc::new(aiops_detect::DetectConfig::default()),
        max_score_gauges: 10,
        scaling: Arc::new(scaling),
        incidents,
        limits: Arc::new(limits),
        heavy_reads: Arc::new(tokio::sync::Semaphore::new(4)),
        analyses: Arc::new(crate::RateLimit::per_minute(analyses_per_minute)),
    };
    Harness {
        router: router(state),
        _dir: dir,
        token: None,
    }
}

fn harness() -> Harness {
    harness_with(ApiConfig::default())
}

fn write_req(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/write")
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Body::from(body))
        .expect("valid request")
}

/// The router's answer to `req`, headers and all.
async fn send(h: &Harness, req: Request<Body>) -> axum::response::Response {
    h.router.clone().oneshot(req).await.expect("infallible")
}

async fn call(h: &Harness, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = send(h, req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json)
}

async fn get(h: &Harness, uri: &str) -> (StatusCode, serde_json::Value) {
    let mut r = Request::get(uri);
    if let Some(t) = &h.token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    call(h, r.body(Body::empty()).expect("valid")).await
}

async fn get_text(h: &Harness, uri: &str) -> String {
    let mut req = Request::get(uri);
    if let Some(t) = &h.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::empty()).expect("valid");
    let resp = send(h, req).await;
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8(body.to_vec()).expect("utf8")
}

fn sample_request() -> WriteRequest {
    WriteRequest {
        timeseries: vec![
            TimeSeries::from_parts(
                [("__name__", "up"), ("job", "node"), ("instance", "a:9100")],
                [(1_000, 1.0), (2_000, 0.0)],
            ),
            TimeSeries::from_parts([("__name__", "up"), ("job", "api")], [(1_000, 1.0)]),
        ],
        metadata: vec![],
    }
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

mod console;
mod limits;
mod routes;
mod scaling;
mod triage;
mod writes;
