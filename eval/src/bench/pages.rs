//! What the console's pages cost the server: every API request each page makes, timed from a
//! client on the same host, against the server the cardinality benchmark filled (run after
//! detection caught up). The budget: a page's requests answer within 200 ms.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cardinality::q_ms;

/// Requests per route.
const ROUNDS: usize = 20;
/// The budget of one request.
const BUDGET_MS: f64 = 200.0;

/// Times the console's requests `ROUNDS` times each; `target` is a scaling target's name.
pub(super) async fn measure(client: &reqwest::Client, base: &str, target: &str) -> Value {
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let started = Instant::now();
            let ok = match client.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (started.elapsed().as_secs_f64(), ok)
        }
    };
    // A series to look at: the first listed, over its last hour of (virtual) samples.
    let listed: Value = match client
        .get(format!("{base}/api/v1/series?limit=1"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let id = listed["series"][0]["id"].as_str().unwrap_or("0").to_owned();
    let metric = listed["series"][0]["metric"]
        .as_str()
        .unwrap_or("up")
        .to_owned();
    let end = jiff::Timestamp::now().as_second();
    let hour = format!("start={}&end={end}", end - 3600);
    // (A metric name needs no escaping in a URL: [a-zA-Z0-9_:].)
    let selector = metric;
    let routes: Vec<(&str, String)> = vec![
        ("console /console/", "/console/".into()),
        ("console app.js", "/console/app.js".into()),
        ("incidents list", "/api/v1/incidents".into()),
        (
            "series lookup (match[])",
            format!("/api/v1/series?limit=1&match[]={selector}"),
        ),
        (
            "samples, 1 h",
            format!("/api/v1/series/{id}/samples?{hour}"),
        ),
        (
            "scored, 1 h (1 day warm-up)",
            format!("/api/v1/series/{id}/scored?{hour}"),
        ),
        ("scores, top 25", "/api/v1/scores?limit=25".into()),
        ("anomalies, 24 h", "/api/v1/anomalies".into()),
        ("scaling list", "/api/v1/scaling".into()),
        (
            "scaling outlook",
            format!("/api/v1/scaling/{target}/outlook"),
        ),
        ("readyz", "/readyz".into()),
        ("metrics", "/metrics".into()),
    ];
    let mut out = serde_json::Map::new();
    let mut worst: f64 = 0.0;
    let mut over = 0usize;
    let mut failed = 0usize;
    for (name, path) in routes {
        let mut secs = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let (s, ok) = get(path.clone()).await;
            failed += usize::from(!ok);
            over += usize::from(s * 1000.0 > BUDGET_MS);
            worst = worst.max(s);
            secs.push(s);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.insert(
            name.to_owned(),
            json!({"p50": q_ms(&secs, 0.5), "p99": q_ms(&secs, 0.99), "max": q_ms(&secs, 1.0)}),
        );
    }
    json!({
        "routes_ms": out,
        "requests_per_route": ROUNDS,
        "budget_ms": BUDGET_MS,
        "over_budget": over,
        "failed": failed,
        "max_ms": (worst * 1e5).round() / 100.0,
    })
}
