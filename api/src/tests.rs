use std::sync::Arc;

use aiops_ingest::IngestMetrics;
use aiops_ingest::SourceStates;
use aiops_ingest::archive::{Archive, ArchiveConfig};
use aiops_ingest::remote_write::{MetricMetadata, TimeSeries, WriteRequest, encode_write_request};
use aiops_ingest::transport::TransportConfig;
use aiops_models::SeriesCatalog;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use super::*;

struct Harness {
    router: Router,
    _dir: tempfile::TempDir,
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
    detect: Arc<std::sync::RwLock<aiops_detect::DetectState>>,
    catalog: Arc<SeriesCatalog>,
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    let ingest_metrics = IngestMetrics::register(&mut registry);
    let api_metrics = ApiMetrics::register(&mut registry);
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
    let state = AppState {
        config: Arc::new(config),
        catalog,
        archive,
        sender,
        sources: SourceStates::default(),
        registry: Arc::new(registry),
        ingest_metrics,
        api_metrics,
        detect,
        max_score_gauges: 10,
        scaling: Arc::new(scaling),
    };
    Harness {
        router: router(state),
        _dir: dir,
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
    call(h, Request::get(uri).body(Body::empty()).expect("valid")).await
}

async fn get_text(h: &Harness, uri: &str) -> String {
    let req = Request::get(uri).body(Body::empty()).expect("valid");
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
async fn wrong_encoding_or_version_gets_415() {
    let h = harness();
    let body = encode_write_request(&sample_request());
    let mut gzip = write_req(body.clone());
    gzip.headers_mut()
        .insert("content-encoding", "gzip".parse().expect("valid"));
    let mut json_ct = write_req(body.clone());
    json_ct
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    let mut v2 = write_req(body.clone());
    v2.headers_mut().insert(
        "content-type",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
            .parse()
            .expect("valid"),
    );
    v2.headers_mut().insert(
        "x-prometheus-remote-write-version",
        "2.0.0".parse().expect("valid"),
    );
    for req in [gzip, json_ct, v2] {
        let (status, json) = call(&h, req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
        assert_eq!(error_code(&json), "unsupported_media_type");
    }
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
        (StatusCode::BAD_REQUEST, "bad_parameter")
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
    let mut detect = aiops_detect::DetectState::default();
    let now = jiff::Timestamp::now().as_millisecond();
    for i in (0..120).rev() {
        detect.scaling.observe(
            &scaling,
            &catalog,
            meta.id,
            now - i * 60_000,
            12.5,
            &|_, _, _| Vec::new(),
        );
    }
    harness_full(
        ApiConfig {
            scaling_token: token.map(str::to_owned),
            ..ApiConfig::default()
        },
        scaling,
        Arc::new(std::sync::RwLock::new(detect)),
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
