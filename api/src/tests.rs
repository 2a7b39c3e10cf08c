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

async fn call(h: &Harness, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = h.router.clone().oneshot(req).await.expect("infallible");
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
    let resp = h.router.clone().oneshot(req).await.expect("infallible");
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

#[tokio::test(flavor = "multi_thread")]
async fn accepted_write_is_readable() {
    let h = harness();
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = get(&h, "/api/v1/series?match[]=up%7Bjob%3D%22node%22%7D").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    let s = &body["series"][0];
    assert_eq!(s["metric"], "up");
    assert_eq!(s["labels"]["instance"], "a:9100");
    let id = s["id"].as_str().expect("id").to_owned();

    let (status, body) = get(
        &h,
        &format!("/api/v1/series/{id}/samples?start=0&end=1970-01-01T00:00:02Z"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["samples"],
        serde_json::json!([[1000, 1.0], [2000, 0.0]])
    );

    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_and_metadata_only_requests_get_204() {
    let h = harness();
    let (status, _) = call(
        &h,
        write_req(encode_write_request(&WriteRequest::default())),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let meta = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: 2,
            metric_family_name: "up".into(),
            help: "Target up.".into(),
            unit: String::new(),
        }],
    };
    let (status, _) = call(&h, write_req(encode_write_request(&meta))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_get_400_and_the_server_keeps_serving() {
    let h = harness();
    let good = encode_write_request(&sample_request());
    let mut framed = Vec::new();
    {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(&mut framed);
        w.write_all(&prost::Message::encode_to_vec(&sample_request()))
            .expect("in memory");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not snappy".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("framed snappy", framed),
        (
            "uncompressed protobuf",
            prost::Message::encode_to_vec(&sample_request()),
        ),
        (
            "snappy of garbage",
            snap::raw::Encoder::new()
                .compress_vec(&[0x0a, 0x7f, 1, 2])
                .expect("ok"),
        ),
    ];
    for (name, body) in cases {
        let (status, json) = call(&h, write_req(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {json}");
        assert_eq!(error_code(&json), "bad_payload", "{name}: {json}");
        assert!(!json["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let (status, _) = call(&h, write_req(good)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_series_get_400_naming_the_problem_and_valid_rest_is_kept() {
    let h = harness();
    let mut req = sample_request();
    req.timeseries.push(TimeSeries {
        labels: vec![
            aiops_ingest::remote_write::Label {
                name: "__name__".into(),
                value: "x".into(),
            },
            aiops_ingest::remote_write::Label {
                name: "b".into(),
                value: "1".into(),
            },
            aiops_ingest::remote_write::Label {
                name: "a".into(),
                value: "1".into(),
            },
        ],
        samples: vec![aiops_ingest::remote_write::Sample {
            value: 1.0,
            timestamp: 1,
        }],
    });
    let (status, json) = call(&h, write_req(encode_write_request(&req))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&json), "invalid_series");
    let msg = json["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("not sorted") && msg.contains("3 valid samples were stored"),
        "{msg}"
    );
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_encoding_or_message_gets_415() {
    let h = harness();
    let body = encode_write_request(&sample_request());
    let mut gzip = write_req(body.clone());
    gzip.headers_mut()
        .insert("content-encoding", "gzip".parse().expect("valid"));
    let mut json_ct = write_req(body.clone());
    json_ct
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    let mut other = write_req(body.clone());
    other.headers_mut().insert(
        "content-type",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request"
            .parse()
            .expect("valid"),
    );
    for req in [gzip, json_ct, other] {
        let (status, json) = call(&h, req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
        assert_eq!(error_code(&json), "unsupported_media_type");
    }
    // A version header contradicting the Content-Type is a 400 naming both.
    let mut mixed = write_req(body);
    mixed.headers_mut().insert(
        "x-prometheus-remote-write-version",
        "2.0.0".parse().expect("valid"),
    );
    let (status, json) = call(&h, mixed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(error_code(&json), "bad_version");
}

fn write_req_v2(req: &WriteRequest) -> Request<Body> {
    use aiops_ingest::remote_write::proto_v2;
    Request::post("/api/v1/write")
        .header("content-encoding", "snappy")
        .header("content-type", proto_v2::CONTENT_TYPE_V2)
        .header("x-prometheus-remote-write-version", proto_v2::VERSION_2)
        .body(Body::from(proto_v2::encode_v2(&proto_v2::to_v2(req))))
        .expect("valid request")
}

/// The `X-Prometheus-Remote-Write-*-Written` counts of an answer.
fn written(resp: &axum::response::Response) -> [Option<u64>; 3] {
    ["samples", "histograms", "exemplars"].map(|k| {
        resp.headers()
            .get(format!("x-prometheus-remote-write-{k}-written"))
            .and_then(|v| v.to_str().ok()?.parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_write_2_0_is_stored_and_every_answer_says_how_much() {
    let h = harness();
    let req = sample_request();
    let n = req
        .timeseries
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum::<u64>();
    let resp = h
        .router
        .clone()
        .oneshot(write_req_v2(&req))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(written(&resp), [Some(n), Some(0), Some(0)]);
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], req.timeseries.len());
    // The same series by 1.0 are the same series (same ids), and 1.0 answers carry no counts.
    let resp = h
        .router
        .clone()
        .oneshot(write_req(encode_write_request(&req)))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(written(&resp), [None, None, None]);
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], req.timeseries.len());
    // A refused 2.0 request still says what was stored: the valid series' samples.
    let mut bad = sample_request();
    bad.timeseries[0].labels.reverse();
    let kept = bad.timeseries[1..]
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum::<u64>();
    let resp = h
        .router
        .clone()
        .oneshot(write_req_v2(&bad))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(written(&resp), [Some(kept), Some(0), Some(0)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let h = harness_with(ApiConfig {
        max_body_bytes: 4096,
        max_decoded_bytes: 8192,
        ..ApiConfig::default()
    });
    let (status, json) = call(&h, write_req(vec![0u8; 10_000])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    // Small on the wire, big once decompressed.
    let bomb = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 64 << 10])
        .expect("ok");
    assert!(bomb.len() < 4096);
    let (status, json) = call(&h, write_req(bomb)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(error_code(&json), "payload_too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn query_errors_are_json() {
    let h = harness();
    let (status, json) = get(&h, "/api/v1/series?match[]=up%7Bjob%3D").await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::BAD_REQUEST, "bad_selector"),
        "{json}"
    );
    let (status, json) = get(&h, "/api/v1/series/zz/samples").await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::BAD_REQUEST, "bad_series_id")
    );
    let (status, json) = get(&h, "/api/v1/series/00000000000000ff/samples").await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, json) = get(&h, "/nope").await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, json) = call(
        &h,
        Request::delete("/api/v1/series")
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    call(&h, write_req(encode_write_request(&sample_request()))).await;
    let (_, body) = get(&h, "/api/v1/series?match[]=up").await;
    let id = body["series"][0]["id"].as_str().expect("id").to_owned();
    let (status, json) = get(&h, &format!("/api/v1/series/{id}/samples?start=yesterday")).await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::BAD_REQUEST, "bad_parameter")
    );
    let (status, json) = get(&h, &format!("/api/v1/series/{id}/samples?start=10&end=5")).await;
    assert_eq!(
        (status, error_code(&json)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_range")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let h = harness();
    assert_eq!(get(&h, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    call(&h, write_req(encode_write_request(&sample_request()))).await;
    call(&h, write_req(b"junk".to_vec())).await;
    let text = get_text(&h, "/metrics").await;
    assert!(
        text.contains("aiops_ingest_samples_received_total{source=\"remote_write\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("aiops_ingest_archive_samples_total 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "aiops_ingest_samples_rejected_total{source=\"remote_write\",reason=\"decode\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("aiops_api_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_markers_mark_the_series_instead_of_becoming_values() {
    let h = harness();
    let stale = f64::from_bits(aiops_models::STALE_NAN_BITS);
    let req = WriteRequest {
        timeseries: vec![TimeSeries::from_parts(
            [("__name__", "up"), ("job", "gone")],
            [(1_000, 1.0), (2_000, stale)],
        )],
        metadata: vec![],
    };
    assert_eq!(
        call(&h, write_req(encode_write_request(&req))).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, body) = get(&h, "/api/v1/series?match[]=up").await;
    assert_eq!(body["series"][0]["stale_at_ms"], 2000);
    let id = body["series"][0]["id"].as_str().expect("id").to_owned();
    let (_, body) = get(&h, &format!("/api/v1/series/{id}/samples?start=0&end=10")).await;
    assert_eq!(body["samples"], serde_json::json!([[1000, 1.0]]));
    // A newer sample revives the series.
    let req = WriteRequest {
        timeseries: vec![TimeSeries::from_parts(
            [("__name__", "up"), ("job", "gone")],
            [(3_000, 1.0)],
        )],
        metadata: vec![],
    };
    call(&h, write_req(encode_write_request(&req))).await;
    let (_, body) = get(&h, "/api/v1/series?match[]=up").await;
    assert!(body["series"][0]["stale_at_ms"].is_null());
}

/// A scaling target fed two hours of load (reactive: the forecaster is still learning) ending
/// now, the router, and the series' catalog.
fn scaling_harness(token: Option<&str>) -> Harness {
    use aiops_detect::scaling::{ScalingConfig, ScalingTarget};
    use aiops_models::{SeriesMeta, Source};
    let scaling = ScalingConfig {
        step_secs: 60,
        targets: vec![ScalingTarget {
            name: "checkout_rps".into(),
            namespace: Some("shop".into()),
            selector: r#"rps{service="checkout"}"#.into(),
            labels: [("service".to_owned(), "checkout".to_owned())].into(),
            capacity_per_pod: 10.0,
            lead_secs: 120,
            quantile: 0.9,
            under_budget: None,
            extra_budget: None,
            mode: Default::default(),
        }],
        ..ScalingConfig::default()
    };
    let catalog = Arc::new(SeriesCatalog::new());
    let meta = Arc::new(SeriesMeta::new(
        Source::Prometheus,
        "rps",
        [("service".into(), "checkout".into())],
    ));
    catalog.insert(meta.clone());
    let detect = aiops_detect::DetectState::default();
    let now = jiff::Timestamp::now().as_millisecond();
    for i in (0..120).rev() {
        detect
            .scaling
            .lock()
            .observe(&scaling, &catalog, meta.id, now - i * 60_000, 12.5);
    }
    harness_full(
        ApiConfig {
            scaling_token: token.map(Into::into),
            ..ApiConfig::default()
        },
        scaling,
        detect,
        catalog,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn external_metrics_discovery_and_values_read_as_kubernetes_types() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        APIGroup, APIGroupList, APIResourceList, Status,
    };
    let h = scaling_harness(None);
    let (s, v) = get(&h, "/apis").await;
    assert_eq!(s, StatusCode::OK);
    let list: APIGroupList = serde_json::from_value(v).expect("APIGroupList");
    assert_eq!(list.groups[0].name, "external.metrics.k8s.io");
    let (_, v) = get(&h, "/apis/external.metrics.k8s.io").await;
    let group: APIGroup = serde_json::from_value(v).expect("APIGroup");
    assert_eq!(
        group.preferred_version.expect("preferred").group_version,
        "external.metrics.k8s.io/v1beta1"
    );
    let (_, v) = get(&h, "/apis/external.metrics.k8s.io/v1beta1").await;
    let resources: APIResourceList = serde_json::from_value(v).expect("APIResourceList");
    assert_eq!(resources.resources[0].name, "checkout_rps");
    assert!(resources.resources[0].namespaced);

    let (s, v) = get(
        &h,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_rps?labelSelector=service%3Dcheckout",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "ExternalMetricValueList");
    let item = &v["items"][0];
    let q: Quantity = serde_json::from_value(item["value"].clone()).expect("Quantity");
    // Reactive while learning: the current load of 12.5 requests per second.
    assert_eq!(q.0, "12500m");
    assert_eq!(item["metricName"], "checkout_rps");
    assert_eq!(item["metricLabels"]["service"], "checkout");
    let ts: jiff::Timestamp = item["timestamp"]
        .as_str()
        .expect("timestamp")
        .parse()
        .expect("RFC 3339");
    assert!(ts.as_second() > 0);

    for (uri, code, reason) in [
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/nope",
            404,
            "NotFound",
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/other/checkout_rps",
            404,
            "NotFound",
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_rps?labelSelector=service%3Dweb",
            404,
            "NotFound",
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/checkout_rps?labelSelector=env%20in%20prod",
            400,
            "BadRequest",
        ),
    ] {
        let (s, v) = get(&h, uri).await;
        assert_eq!(s.as_u16(), code, "{uri}: {v}");
        let status: Status = serde_json::from_value(v).expect("Status");
        assert_eq!(status.reason.as_deref(), Some(reason), "{uri}");
        assert_eq!(status.code, Some(i32::from(code)));
    }

    // The plain JSON view for KEDA, and the gauges.
    let (s, v) = get(&h, "/api/v1/scaling/checkout_rps").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["value"].as_f64(), v["mode"].as_str()),
        (Some(12.5), Some("reactive"))
    );
    assert_eq!(v["desired_replicas"], 2);
    let (s, _) = get(&h, "/api/v1/scaling/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let text = get_text(&h, "/metrics").await;
    assert!(
        text.contains("aiops_scaling_value{target=\"checkout_rps\"} 12.5"),
        "{text}"
    );
    assert!(
        text.contains("aiops_scaling_stale{target=\"checkout_rps\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scaling_routes_require_the_token_when_one_is_set() {
    let h = scaling_harness(Some("s3cret"));
    let (s, v) = get(&h, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["kind"], "Status");
    let req = |token: &str| {
        Request::get("/apis/external.metrics.k8s.io/v1beta1")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("valid")
    };
    assert_eq!(call(&h, req("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&h, req("s3cret")).await.0, StatusCode::OK);
    // Other routes are not affected.
    assert_eq!(get(&h, "/healthz").await.0, StatusCode::OK);
}

fn incident_harness() -> Harness {
    let cfg = aiops_rca::incident::IncidentConfig {
        pagerduty: aiops_rca::pagerduty::PagerdutyConfig {
            webhook_secrets: vec!["old-secret".into(), "new-secret".into()],
            services: [("PSVC".to_owned(), "checkout-svc".to_owned())].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = harness_all(
        ApiConfig {
            api_token: Some("t0ken".into()),
            ..ApiConfig::default()
        },
        Default::default(),
        Default::default(),
        Default::default(),
        cfg,
        Default::default(),
    );
    h.token = Some("t0ken".into());
    h
}

fn post_json(uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_owned())).expect("valid")
}

#[tokio::test]
async fn triage_routes_answer_and_refuse_with_json_errors() {
    let h = incident_harness();
    let (s, doc) = get(&h, "/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/feedback",
        "/api/v1/alertmanager",
        "/api/v1/pagerduty/webhook",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
    let (s, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["incidents"], serde_json::json!([]));
    assert_eq!(
        get(&h, "/api/v1/incidents?status=maybe").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&h, "/api/v1/incidents/inc-nope").await.0,
        StatusCode::NOT_FOUND
    );
    // Write routes need the token.
    let body =
        r#"{"service":"api","detected_at":"2024-05-01T12:00:00Z","end":"2024-05-01T12:10:00Z"}"#;
    let (s, e) = call(&h, post_json("/api/v1/incidents", None, body)).await;
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, e) = call(
        &h,
        post_json("/api/v1/incidents", Some("t0ken"), "{not json"),
    )
    .await;
    assert_eq!((s, error_code(&e)), (StatusCode::BAD_REQUEST, "bad_json"));
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/incidents",
            Some("t0ken"),
            r#"{"detected_at":"yesterday"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("detected_at"))
    );
    // A valid analysis with no data: stored, no candidates, and it says what it read.
    let (s, inc) = call(&h, post_json("/api/v1/incidents", Some("t0ken"), body)).await;
    assert_eq!(s, StatusCode::CREATED, "{inc}");
    assert_eq!(inc["source"], "api");
    assert_eq!(inc["candidates"], serde_json::json!([]));
    let id = inc["id"].as_str().expect("id").to_owned();
    let (s, got) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!((s, &got["id"]), (StatusCode::OK, &inc["id"]));
    // Feedback: validated, counted.
    let fb = format!("/api/v1/incidents/{id}/feedback");
    assert_eq!(
        call(&h, post_json(&fb, None, r#"{"service":"db"}"#))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&h, post_json(&fb, Some("t0ken"), r#"{"servce":"db"}"#))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &h,
            post_json(
                "/api/v1/incidents/inc-x/feedback",
                Some("t0ken"),
                r#"{"service":"db"}"#
            )
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (s, r) = call(
        &h,
        post_json(
            &fb,
            Some("t0ken"),
            r#"{"service":"db","comment":"disk full"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["accuracy"]["total"], 1);
    assert_eq!(r["feedback"]["rank"], serde_json::Value::Null);
    let metrics = get_text(&h, "/metrics").await;
    assert!(
        metrics.contains("aiops_rca_feedback_total{outcome=\"missed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn alertmanager_payloads_open_and_resolve_incidents() {
    let h = incident_harness();
    let alert = |status: &str, ends: &str| {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"HighLatency\"}}","truncatedAlerts":0,"status":"{status}","receiver":"aiops",
            "groupLabels":{{"alertname":"HighLatency"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am:9093","notification_reason":"x",
            "alerts":[{{"status":"{status}","labels":{{"alertname":"HighLatency","service":"api"}},"annotations":{{"summary":"p99 latency above SLO"}},
            "startsAt":"2024-05-01T11:58:30.123Z","endsAt":"{ends}","generatorURL":"http://p:9090/graph","fingerprint":"3f1c2a9b8d7e6f50"}}]}}"#
        )
    };
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("firing", "0001-01-01T00:00:00Z")
                .replace(r#""version":"4""#, r#""version":"3""#),
        ),
    )
    .await;
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::BAD_REQUEST, "unsupported_version")
    );
    // An endsAt that is not a time is refused like a bad startsAt (accepted as "not ended"
    // before).
    let (s, e) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("resolved", ""),
        ),
    )
    .await;
    assert_eq!((s, error_code(&e)), (StatusCode::BAD_REQUEST, "bad_alert"));
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("endsAt"))
    );
    assert_eq!(
        call(&h, post_json("/api/v1/alertmanager", None, "{}"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, r) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("firing", "0001-01-01T00:00:00Z"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["incidents"][0].as_str().expect("an incident").to_owned();
    let (_, inc) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(
        (inc["status"].as_str(), inc["source"].as_str()),
        (Some("open"), Some("alertmanager"))
    );
    assert_eq!(inc["title"], "p99 latency above SLO");
    assert_eq!(inc["symptom"]["service"], "api");
    let (s, _) = call(
        &h,
        post_json(
            "/api/v1/alertmanager",
            Some("t0ken"),
            &alert("resolved", "2024-05-01T12:08:00Z"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, inc) = get(&h, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "resolved");
}

#[tokio::test]
async fn pagerduty_webhooks_are_verified_and_deduplicated() {
    let h = incident_harness();
    let body = r#"{"event":{"id":"01HWZ","event_type":"incident.triggered","resource_type":"incident","occurred_at":"2024-05-01T12:00:03.512Z","agent":null,"client":null,
        "data":{"id":"Q1AB","type":"incident","html_url":"https://acme.pagerduty.com/incidents/Q1AB","number":1,"status":"triggered","incident_key":"other:key",
        "created_at":"2024-05-01T12:00:03Z","title":"Checkout slow","service":{"id":"PSVC","type":"service_reference","summary":"checkout"}}}}"#;
    let hook = |sig: Option<String>, id: &str| {
        let mut r = Request::post("/api/v1/pagerduty/webhook")
            .header("content-type", "application/json")
            .header("x-webhook-id", id);
        if let Some(s) = sig {
            r = r.header("x-pagerduty-signature", s);
        }
        r.body(Body::from(body)).expect("valid")
    };
    let sign = |secret: &str| aiops_rca::pagerduty::sign(secret, body.as_bytes());
    assert_eq!(call(&h, hook(None, "w1")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&h, hook(Some(sign("wrong")), "w1")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Several signatures (a rotation): any valid one will do.
    let both = format!("{},{}", sign("wrong"), sign("new-secret"));
    let (s, r) = call(&h, hook(Some(both), "w1")).await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::ACCEPTED, Some("opened"))
    );
    let (s, r) = call(&h, hook(Some(sign("old-secret")), "w1")).await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::ACCEPTED, Some("duplicate"))
    );
    let (_, list) = get(&h, "/api/v1/incidents").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["incidents"][0]["source"], "pagerduty");
    assert_eq!(list["incidents"][0]["pagerduty"]["incident_id"], "Q1AB");
    // PagerDuty's service id maps to ours.
    assert_eq!(list["incidents"][0]["symptom"]["service"], "checkout-svc");
    // Off without a secret.
    assert_eq!(
        call(&harness(), hook(Some(sign("new-secret")), "w2"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn series_listings_over_a_limit_get_422_naming_it() {
    let h = harness_limited(
        ApiConfig {
            max_series_selectors: 2,
            max_series_scanned: 3,
            ..ApiConfig::default()
        },
        Default::default(),
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = get(&h, "/api/v1/series?match[]=up&match[]=up&match[]=up").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.max_series_selectors")),
        "{body}"
    );
    // Two selectors over two series would scan four, more than three.
    let (status, body) = get(&h, "/api/v1/series?match[]=up&match[]=down").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.max_series_scanned")),
        "{body}"
    );
    let (status, body) = get(&h, "/api/v1/series?match[]=up").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_series_over_the_series_limit_get_429_and_known_ones_are_stored() {
    let h = harness_limited(
        ApiConfig::default(),
        crate::LimitsConfig {
            max_series: 2,
            ..Default::default()
        },
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let more = WriteRequest {
        timeseries: vec![
            TimeSeries::from_parts([("__name__", "up"), ("job", "api")], [(5_000, 7.0)]),
            TimeSeries::from_parts([("__name__", "up"), ("job", "new-1")], [(5_000, 1.0)]),
            TimeSeries::from_parts([("__name__", "up"), ("job", "new-2")], [(5_000, 1.0)]),
        ],
        metadata: vec![],
    };
    let (status, body) = call(&h, write_req(encode_write_request(&more))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "series_limit");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("limits.max_series") && msg.contains("2 new series"),
        "{msg}"
    );
    // The known series' sample was stored; the new series were not.
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = get(&h, "/api/v1/series?match[]=up%7Bjob%3D%22api%22%7D").await;
    let id = body["series"][0]["id"].as_str().expect("id").to_owned();
    let (_, body) = get(&h, &format!("/api/v1/series/{id}/samples?start=0&end=10")).await;
    assert_eq!(
        body["samples"],
        serde_json::json!([[1000, 1.0], [5000, 7.0]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_shed_with_503_and_retry_after_while_compaction_is_behind() {
    let h = harness_limited(
        ApiConfig::default(),
        crate::LimitsConfig {
            max_head_bytes: 1,
            shed_wait_ms: 50,
            ..Default::default()
        },
    );
    let (status, _) = call(&h, write_req(encode_write_request(&sample_request()))).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "an empty head takes a write"
    );
    let resp = h
        .router
        .clone()
        .oneshot(write_req(encode_write_request(&sample_request())))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(error_code(&body), "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_head_bytes")),
        "{body}"
    );
}

/// Every route, the scope it needs (`None`: open), and a request body that gets past auth.
/// A concrete path for a documented one: its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "inc-1")
        .replace("{name}", "checkout")
        .replace("{namespace}", "shop")
        .replace("{metric}", "checkout_rps")
}

/// Every operation of the API document: method, concrete path and the scope its security
/// names (`None`: open).
async fn documented_routes(h: &Harness) -> Vec<(String, String, Option<crate::auth::Scope>)> {
    let (_, doc) = get(h, "/api/v1/openapi.json").await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let scopes: Vec<&str> = op["security"]
                .as_array()
                .expect("every operation states its security")
                .iter()
                .flat_map(|req| req.as_object().expect("requirement").values())
                .flat_map(|v| v.as_array().expect("scopes").iter())
                .map(|v| v.as_str().expect("scope"))
                .collect();
            let scope = scopes.first().map(|s| match *s {
                "read" => crate::auth::Scope::Read,
                "write" => crate::auth::Scope::Write,
                "scaling" => crate::auth::Scope::Scaling,
                other => panic!("{method} {path}: unknown scope {other}"),
            });
            assert!(
                scopes.iter().all(|s| Some(*s) == scopes.first().copied()),
                "{method} {path}: one scope"
            );
            out.push((method.to_uppercase(), concrete(path), scope));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_401_without_credentials_403_without_the_scope_and_passes_with_it() {
    use crate::auth::{CredentialConfig, Scope};
    let cred = |name: &str, token: &str, scope: Scope| CredentialConfig {
        name: name.into(),
        scopes: vec![scope],
        token: Some(token.into()),
        token_file: None,
        username: None,
        password: None,
        password_file: None,
    };
    let h = harness_with(ApiConfig {
        credentials: vec![
            cred("writer", "w", Scope::Write),
            cred("reader", "r", Scope::Read),
            cred("hpa", "s", Scope::Scaling),
        ],
        ..ApiConfig::default()
    });
    let token_of = |s: Scope| match s {
        Scope::Write => "w",
        Scope::Read => "r",
        Scope::Scaling => "s",
    };
    let req = |method: &str, path: &str, token: Option<&str>| {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.header("content-type", "application/json")
            .body(Body::from("{}"))
            .expect("valid")
    };
    let routes = documented_routes(&h).await;
    assert_eq!(
        routes.len(),
        23,
        "every route is in the document: {routes:?}"
    );
    for (method, path, scope) in routes {
        let (method, path) = (method.as_str(), path.as_str());
        let Some(scope) = scope else {
            let (s, _) = call(&h, req(method, path, None)).await;
            assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "{method} {path} is open, got {s}"
            );
            continue;
        };
        let resp = h
            .router
            .clone()
            .oneshot(req(method, path, None))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            resp.headers().contains_key("www-authenticate"),
            "{method} {path}"
        );
        assert_eq!(
            call(&h, req(method, path, Some("nope"))).await.0,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong token"
        );
        for other in [Scope::Write, Scope::Read, Scope::Scaling] {
            let (s, body) = call(&h, req(method, path, Some(token_of(other)))).await;
            let allowed = other == scope || (scope == Scope::Scaling && other == Scope::Read);
            if allowed {
                assert!(
                    s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                    "{method} {path} with {other:?}: {s} {body}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} with {other:?}");
                let named = if path.starts_with("/apis") {
                    body["message"].as_str()
                } else {
                    body["error"]["message"].as_str()
                };
                assert!(named.is_some_and(|m| m.contains("scope")), "{body}");
            }
        }
    }
    // An unknown route is 404 whoever asks, not 401.
    assert_eq!(
        call(&h, req("GET", "/api/v1/nothing", None)).await.0,
        StatusCode::NOT_FOUND
    );
    let metrics = get_text(
        &Harness {
            token: Some("r".into()),
            ..h
        },
        "/metrics",
    )
    .await;
    assert!(
        metrics.contains("aiops_api_auth_denied_total{scope=\"write\",reason=\"missing\"}"),
        "{metrics}"
    );
}

mod console;
mod limits;
