//! The external metrics API the HPA and KEDA read.

use super::*;

/// A scaling target fed two hours of load (reactive: the forecaster is still learning) ending
/// now, the router, and the series' catalog.
pub(super) fn scaling_harness(token: Option<&str>) -> Harness {
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
