//! A synthetic remote_write request, deterministic: the benchmarks' load (`aiops bench
//! remote-write`) and the checked-in fixtures of `benches/` are made by it.

use super::{TimeSeries, WriteRequest};

/// A synthetic remote_write request for benchmarks and fixtures: `series` series of
/// `http_requests_total` with six labels each (like a typical scraped series) and `samples`
/// samples 15 s apart from `t0_ms`. Deterministic.
pub fn synthetic_request(series: usize, samples: usize, t0_ms: i64) -> WriteRequest {
    let timeseries = (0..series)
        .map(|i| {
            let svc = format!("svc-{}", i % 50);
            let inst = format!("10.0.{}.{}:8080", i / 250, i % 250);
            let code = format!("{}", 200 + (i % 5));
            TimeSeries::from_parts(
                [
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("service", svc.as_str()),
                    ("instance", inst.as_str()),
                    ("code", code.as_str()),
                    ("namespace", "prod"),
                ],
                (0..samples).map(|k| (t0_ms + k as i64 * 15_000, (i * 1000 + k) as f64)),
            )
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark fixtures are `synthetic_request` bodies; regenerate them with
    /// `AIOPS_REGENERATE_FIXTURES=1 cargo test -p aiops-ingest fixtures`.
    #[test]
    fn fixtures_are_the_synthetic_requests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
        for (name, series, samples) in [("10k_series_x1", 10_000, 1), ("1k_series_x10", 1_000, 10)]
        {
            let body = super::super::encode_write_request(&synthetic_request(
                series,
                samples,
                1_700_000_000_000,
            ));
            let path = dir.join(format!("{name}.snappy"));
            if std::env::var_os("AIOPS_REGENERATE_FIXTURES").is_some() {
                std::fs::create_dir_all(&dir).expect("create fixtures dir");
                std::fs::write(&path, &body).expect("write fixture");
            }
            let on_disk = std::fs::read(&path).expect("fixture is checked in");
            assert!(
                on_disk == body,
                "{} differs from the generator",
                path.display()
            );
        }
    }
}
