//! Remote write (1.0 and 2.0), reads and health: what is accepted, what is refused and how.

use super::*;

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
    let resp = send(&h, write_req_v2(&req)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(written(&resp), [Some(n), Some(0), Some(0)]);
    let (_, body) = get(&h, "/api/v1/series").await;
    assert_eq!(body["total"], req.timeseries.len());
    // The same series by 1.0 are the same series (same ids), and 1.0 answers carry no counts.
    let resp = send(&h, write_req(encode_write_request(&req))).await;
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
    let resp = send(&h, write_req_v2(&bad)).await;
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
