//! App Insights end to end against the local double (tests/common/appinsights.rs): live polling
//! inside `aiops serve`, backfill into the archive, and every documented fault.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aiops_ingest::appinsights::AppInsightsClient;
use aiops_ingest::{
    AppInsightsAuth, AppInsightsMetric, AppInsightsSourceConfig, IngestError, IngestMetrics,
    KqlQuery,
};
use common::appinsights::{self as double, Fault};
use common::*;

const KQL: &str =
    "requests | summarize requests_count = sum(itemCount) by bin(timestamp, 1m), cloud_RoleName";

fn source(url: &str, auth: AppInsightsAuth) -> AppInsightsSourceConfig {
    AppInsightsSourceConfig {
        name: "test".into(),
        url: url.into(),
        app_id: Some(double::APP_ID.into()),
        workspace_id: None,
        app: Some("shop".into()),
        metrics: vec![AppInsightsMetric {
            id: "requests/count".into(),
            interval: "PT1M".into(),
            aggregation: vec![],
            segment: vec!["cloud/roleName".into()],
            top: None,
            filter: None,
        }],
        kql: vec![],
        auth,
        poll_interval_secs: 1,
        overlap_secs: 120,
        lookback_secs: 600,
        timeout_secs: 5,
        max_retries: 3,
    }
}

fn api_key() -> AppInsightsAuth {
    AppInsightsAuth {
        api_key: Some(double::API_KEY.into()),
        ..Default::default()
    }
}

fn entra(token_url: String, secret_file: &std::path::Path) -> AppInsightsAuth {
    AppInsightsAuth {
        client_id: Some(double::CLIENT_ID.into()),
        client_secret_file: Some(secret_file.to_owned()),
        tenant_id: Some(double::TENANT.into()),
        token_url: Some(token_url),
        ..Default::default()
    }
}

async fn samples(
    http: &reqwest::Client,
    base: &str,
    selector: &str,
) -> Vec<(String, Vec<(i64, f64)>)> {
    let url = format!(
        "{base}/api/v1/series?match[]={}",
        form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
    );
    let list = get_json(http, &url).await.unwrap_or_default();
    let mut out = Vec::new();
    for s in list["series"].as_array().cloned().unwrap_or_default() {
        let id = s["id"].as_str().unwrap_or_default().to_owned();
        let v = get_json(http, &format!("{base}/api/v1/series/{id}/samples?start=0"))
            .await
            .unwrap_or_default();
        let pts = v["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    p[0].as_i64().unwrap_or_default(),
                    p[1].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        out.push((id, pts));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_polling_brings_metrics_and_kql_into_the_api() {
    let d = double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("aiops.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[sources.appinsights]]
name = "shop"
url = "{url}"
app_id = "{app}"
app = "shop"
poll_interval_secs = 1
overlap_secs = 120
lookback_secs = 600
[sources.appinsights.auth]
api_key_env = "DOUBLE_KEY"
[[sources.appinsights.metrics]]
id = "requests/count"
segment = ["cloud/roleName"]
[[sources.appinsights.metrics]]
id = "requests/duration"
aggregation = ["avg", "max"]
[[sources.appinsights.kql]]
query = "{KQL}"

[[sources.appinsights]]
name = "locked-out"
url = "{url}"
app_id = "{app}"
[sources.appinsights.auth]
api_key = "wrong-key"
[[sources.appinsights.metrics]]
id = "requests/count"
"#,
            url = d.url(),
            app = double::APP_ID
        ),
    )
    .expect("config");
    let port = free_port();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("aiops.log")).expect("log");
    let _server = Proc {
        child: aiops()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&data)
            .env("DOUBLE_KEY", double::API_KEY)
            .stderr(log)
            .spawn()
            .expect("serve starts"),
        name: "aiops",
    };
    let http = http();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;

    // Metrics API and KQL name the same thing the same way: one series per role.
    let count = wait_for(
        "requests_count series from both sources",
        Duration::from_secs(30),
        || async {
            let s = samples(
                &http,
                &base,
                r#"appinsights_requests_count{app="shop",cloud_role_name="api"}"#,
            )
            .await;
            (s.len() == 1 && s[0].1.len() >= 8).then_some(s)
        },
    )
    .await;
    let now_min = jiff::Timestamp::now().as_millisecond() / 60_000;
    for &(ts, v) in &count[0].1 {
        assert_eq!(ts % 60_000, 0, "bucket starts are minute-aligned");
        assert_eq!(
            Some(v),
            double::requests_count("api", ts / 60_000),
            "minute {}",
            ts / 60_000
        );
        assert!(ts / 60_000 <= now_min);
    }
    // Null buckets stay gaps, never zeros.
    let minutes: Vec<i64> = count[0].1.iter().map(|p| p.0 / 60_000).collect();
    assert!(minutes.iter().all(|m| m % 13 != 0));
    let web = samples(
        &http,
        &base,
        r#"appinsights_requests_count{cloud_role_name="web"}"#,
    )
    .await;
    assert_eq!(web.len(), 1);

    let avg = samples(&http, &base, r#"appinsights_requests_duration{app="shop"}"#).await;
    let max = samples(
        &http,
        &base,
        r#"appinsights_requests_duration_max{app="shop"}"#,
    )
    .await;
    assert_eq!((avg.len(), max.len()), (1, 1));
    for &(ts, v) in &max[0].1 {
        assert_eq!(Some(v), double::requests_duration(ts / 60_000).map(|d| d.1));
    }
    assert!(avg[0].1.iter().all(|p| (p.0 / 60_000) % 11 != 0));

    // The source with a wrong key is reported, with the app, the metric and the server's words.
    let ready = wait_for(
        "the failing source in /readyz",
        Duration::from_secs(30),
        || async {
            let v = get_json(&http, &format!("{base}/readyz")).await?;
            (v["sources"]["locked-out"]["healthy"] == false).then_some(v)
        },
    )
    .await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["sources"]["shop"]["healthy"], true);
    let err = ready["sources"]["locked-out"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        err.contains(double::APP_ID)
            && err.contains("metric requests/count")
            && err.contains("403")
            && err.contains("InsufficientAccessError"),
        "{err}"
    );

    // Overlapping polls do not send a value twice: what was received is what is stored.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics = get_text(&http, &format!("{base}/metrics")).await;
    let received: f64 = metrics
        .lines()
        .find(|l| l.starts_with("aiops_ingest_samples_received_total{source=\"appinsights\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("counter present");
    let mut stored = 0usize;
    for sel in [
        "appinsights_requests_count",
        "appinsights_requests_duration",
        "appinsights_requests_duration_max",
    ] {
        stored += samples(&http, &base, sel)
            .await
            .iter()
            .map(|s| s.1.len())
            .sum::<usize>();
    }
    // The metrics API and KQL both deliver requests_count, and every poll reaches back two
    // minutes: still each stored point was received once (a poll in flight may add a few).
    assert!(
        received as usize <= stored + 8,
        "received {received}, stored {stored}"
    );
    assert!(
        received as usize + 8 >= stored,
        "received {received}, stored {stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_with_entra_id_and_kql_lands_in_the_archive() {
    let d = double::start().await;
    d.state.api_key_enabled.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", double::CLIENT_SECRET)).expect("secret");
    let data = dir.path().join("data");
    let end = (jiff::Timestamp::now().as_second() / 60) * 60 - 3600;
    let start = end - 2 * 86_400; // two days: two requests of 1440 buckets
    let ts = |s: i64| jiff::Timestamp::from_second(s).expect("valid").to_string();
    let backfill = |what: &[&str]| {
        aiops()
            .args([
                "backfill",
                "--source",
                "appinsights",
                "--url",
                &d.url(),
                "--app-id",
                double::APP_ID,
                "--app",
                "shop",
            ])
            .args([
                "--tenant-id",
                double::TENANT,
                "--client-id",
                double::CLIENT_ID,
                "--token-url",
                &d.token_url(),
            ])
            .arg("--client-secret-file")
            .arg(&secret)
            .args(what)
            .args([
                "--start",
                &ts(start),
                "--end",
                &ts(end),
                "--quiet",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .expect("backfill runs")
    };
    let out = backfill(&[
        "--metric",
        "requests/count",
        "--segment",
        "cloud/roleName",
        "--interval",
        "PT1M",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("backfilled 2 series"), "{stdout}");
    assert!(stdout.contains("(2 requests)"), "{stdout}");
    // One token for both requests: it is cached.
    assert_eq!(d.state.token_requests.load(Ordering::SeqCst), 1);

    // KQL into the same archive: the same series, the same values.
    let out = backfill(&["--kql", KQL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let _server = start_serve(port, &data, None);
    let http = http();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    let api = samples(
        &http,
        &base,
        r#"appinsights_requests_count{cloud_role_name="api"}"#,
    )
    .await;
    assert_eq!(api.len(), 1, "metrics API and KQL share one series");
    let expected: Vec<(i64, f64)> = (start / 60..end / 60)
        .filter_map(|m| double::requests_count("api", m).map(|v| (m * 60_000, v)))
        .collect();
    assert_eq!(api[0].1, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_behave_as_documented() {
    let d = double::start().await;
    let now = jiff::Timestamp::now().as_millisecond() / 60_000 * 60_000;
    let (start, end) = (now - 10 * 60_000, now);
    let client =
        AppInsightsClient::new(&source(&d.url(), api_key()), IngestMetrics::unregistered())
            .expect("client");
    let metric = source(&d.url(), api_key()).metrics[0].clone();

    // 429 honours Retry-After.
    d.inject(Fault::Status(429, Some(1)));
    let t = Instant::now();
    let pts = client
        .metric(&metric, start, end)
        .await
        .expect("succeeds after the throttle");
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert!(!pts.is_empty());

    // 5xx are retried.
    d.inject(Fault::Status(503, None));
    d.inject(Fault::Status(500, None));
    assert!(client.metric(&metric, start, end).await.is_ok());

    // Timeouts are retried, then reported with the attempt count.
    let mut slow_cfg = source(&d.url(), api_key());
    slow_cfg.timeout_secs = 1;
    slow_cfg.max_retries = 1;
    let slow = AppInsightsClient::new(&slow_cfg, IngestMetrics::unregistered()).expect("client");
    d.inject(Fault::Slow(Duration::from_secs(3)));
    d.inject(Fault::Slow(Duration::from_secs(3)));
    let err = slow
        .metric(&metric, start, end)
        .await
        .expect_err("times out");
    assert!(
        matches!(
            err,
            IngestError::AppInsights {
                retryable: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("after 2 attempts"), "{err}");

    // A bad query: the query and the server's inner message, no retry.
    let before = d.state.api_requests.load(Ordering::SeqCst);
    let bad = KqlQuery {
        query: "requests | summarize summarize".into(),
        time_column: "timestamp".into(),
        value_columns: vec![],
        interval: "PT1M".into(),
    };
    let err = client
        .kql(&bad, start, end)
        .await
        .expect_err("syntax error");
    let msg = err.to_string();
    assert!(
        msg.contains(double::APP_ID)
            && msg.contains("summarize summarize")
            && msg.contains("SyntaxError")
            && msg.contains("400"),
        "{msg}"
    );
    assert_eq!(
        d.state.api_requests.load(Ordering::SeqCst),
        before + 1,
        "4xx is not retried"
    );

    // An unknown metric names the metric.
    let mut unknown = metric.clone();
    unknown.id = "requests/nonsense".into();
    let msg = client
        .metric(&unknown, start, end)
        .await
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.contains("metric requests/nonsense") && msg.contains("BadArgumentError"),
        "{msg}"
    );

    // Wrong key: 403 with the server's words. Retired API keys: the same, clearly worded.
    let mut wrong = api_key();
    wrong.api_key = Some("nope".into());
    let c = AppInsightsClient::new(&source(&d.url(), wrong), IngestMetrics::unregistered())
        .expect("client");
    let msg = c
        .metric(&metric, start, end)
        .await
        .expect_err("forbidden")
        .to_string();
    assert!(
        msg.contains("403") && msg.contains("InsufficientAccessError"),
        "{msg}"
    );
    d.state.api_key_enabled.store(false, Ordering::SeqCst);
    let msg = client
        .metric(&metric, start, end)
        .await
        .expect_err("retired")
        .to_string();
    assert!(msg.contains("retired"), "{msg}");

    // Entra: a wrong secret fails at the token endpoint with its words; a right one works, and an
    // expired token is replaced before use.
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "wrong").expect("write");
    let c = AppInsightsClient::new(
        &source(&d.url(), entra(d.token_url(), &secret)),
        IngestMetrics::unregistered(),
    )
    .expect("client");
    let msg = c
        .metric(&metric, start, end)
        .await
        .expect_err("bad secret")
        .to_string();
    assert!(
        msg.contains("invalid_client") && msg.contains("AADSTS7000215"),
        "{msg}"
    );
    std::fs::write(&secret, double::CLIENT_SECRET).expect("write");
    *d.state.token_ttl_secs.lock().expect("lock") = 1;
    let tokens_before = d.state.token_requests.load(Ordering::SeqCst);
    assert!(
        c.metric(&metric, start, end).await.is_ok(),
        "rotated secret file is re-read"
    );
    assert!(c.metric(&metric, start, end).await.is_ok());
    // A one-second token is never reused: each call fetched a fresh one.
    assert_eq!(
        d.state.token_requests.load(Ordering::SeqCst),
        tokens_before + 2
    );

    // Both spellings of a metric id reach the same route.
    let seen = d.state.seen.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|p| p.contains("/metrics/requests/count?")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_metric_ids_and_workspace_queries_are_served() {
    let d = double::start().await;
    let http = http();
    let now = jiff::Timestamp::now();
    let span = format!("{}/{}", now - jiff::SignedDuration::from_secs(300), now);
    let url = format!(
        "{}/v1/apps/{}/metrics/requests%2Fcount?interval=PT1M&timespan={}",
        d.url(),
        double::APP_ID,
        form_urlencoded::byte_serialize(span.as_bytes()).collect::<String>()
    );
    let r = http
        .get(url)
        .header("x-api-key", double::API_KEY)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["value"]["segments"]
            .as_array()
            .is_some_and(|s| s.len() >= 5)
    );

    let mut cfg = source(&d.url(), api_key());
    cfg.app_id = None;
    cfg.workspace_id = Some(double::WORKSPACE_ID.into());
    cfg.metrics.clear();
    let client = AppInsightsClient::new(&cfg, IngestMetrics::unregistered()).expect("client");
    let q = KqlQuery {
        query: KQL.into(),
        time_column: "timestamp".into(),
        value_columns: vec![],
        interval: "PT1M".into(),
    };
    let ms = now.as_millisecond();
    let pts = client
        .kql(&q, ms - 600_000, ms)
        .await
        .expect("workspace query");
    assert!(pts.iter().all(|p| p.metric == "appinsights_requests_count"));
    assert!(pts.len() >= 15);
}
