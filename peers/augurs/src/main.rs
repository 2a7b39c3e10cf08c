//! Grafana's augurs as a forecasting peer: fits MSTL (seasonal periods given, AutoETS on the
//! trend) and non-seasonal AutoETS at each origin it is given, on the history up to the origin,
//! and prints their forecasts, one JSON object per line, for `scripts/compare_forecast.py` to
//! score next to ours and statsforecast's on the same origins.
//!
//! ```text
//! aiops-augurs-peer --data CSV --horizon H --origins I,J,… --periods 48,336 [--max-train N]
//! ```
//!
//! The CSV (`timestamp,value`) is ordered by time and a repeated timestamp keeps its last row,
//! as `aiops eval forecast` does, so an origin index means the same sample on every side.
//! Output per model and origin: `model`, `origin`, `point`, `p90`, `p99` (upper ends of the 80 %
//! and 98 % intervals), `secs` (fit and both predictions). A periods entry longer than half the
//! training window is left out at that origin (MSTL needs two whole periods).

use std::collections::BTreeMap;
use std::time::Instant;

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Forecast, Predict};

struct Args {
    data: String,
    horizon: usize,
    origins: Vec<usize>,
    periods: Vec<usize>,
    max_train: usize,
}

fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().map_err(|e| format!("{x}: {e}")))
        .collect()
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        data: String::new(),
        horizon: 1,
        origins: Vec::new(),
        periods: Vec::new(),
        max_train: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--data" => a.data = v,
            "--horizon" => a.horizon = v.parse().map_err(|e| format!("--horizon: {e}"))?,
            "--origins" => a.origins = parse_list(&v)?,
            "--periods" => a.periods = parse_list(&v)?,
            "--max-train" => a.max_train = v.parse().map_err(|e| format!("--max-train: {e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.data.is_empty() {
        return Err("--data is required".into());
    }
    Ok(a)
}

/// `timestamp,value` rows ordered by time, the last of a repeated timestamp kept.
fn read(path: &str) -> Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            continue;
        };
        let v: f64 = v.trim().parse().map_err(|e| format!("{path}: {v}: {e}"))?;
        rows.insert(t.trim().to_string(), v);
    }
    Ok(rows.into_values().collect())
}

fn line(model: &str, origin: usize, p: &Forecast, p98: &Forecast, secs: f64) -> String {
    let upper = |f: &Forecast| {
        f.intervals
            .as_ref()
            .map(|i| i.upper.clone())
            .unwrap_or_else(|| f.point.clone())
    };
    serde_json::json!({
        "model": model,
        "origin": origin,
        "point": p.point,
        "p90": upper(p),
        "p99": upper(p98),
        "secs": secs,
    })
    .to_string()
}

fn fit_predict<M: Fit>(m: &M, train: &[f64], h: usize) -> Option<(Forecast, Forecast)> {
    let fitted = m.fit(train).ok()?;
    Some((fitted.predict(h, 0.8).ok()?, fitted.predict(h, 0.98).ok()?))
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("aiops-augurs-peer: {e}");
            std::process::exit(2);
        }
    };
    let values = match read(&a.data) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("aiops-augurs-peer: {e}");
            std::process::exit(1);
        }
    };
    for &i in &a.origins {
        if i >= values.len() {
            continue;
        }
        let train = &values[(i + 1).saturating_sub(a.max_train)..=i];
        let periods: Vec<usize> = a
            .periods
            .iter()
            .copied()
            .filter(|&p| p > 1 && 2 * p <= train.len())
            .collect();
        let t0 = Instant::now();
        let mstl = MSTLModel::new(periods, AutoETS::non_seasonal().into_trend_model());
        if let Some((f80, f98)) = fit_predict(&mstl, train, a.horizon) {
            println!(
                "{}",
                line("augurs_mstl", i, &f80, &f98, t0.elapsed().as_secs_f64())
            );
        }
        let t0 = Instant::now();
        if let Some((f80, f98)) = fit_predict(&AutoETS::non_seasonal(), train, a.horizon) {
            println!(
                "{}",
                line("augurs_ets", i, &f80, &f98, t0.elapsed().as_secs_f64())
            );
        }
    }
}
