//! Prints what the detector sees, row by row, for part of a `timestamp,value` CSV — the quickest
//! way to see why a row scored as it did:
//!
//! ```text
//! cargo run --release -p aiops-eval --example trace -- FILE FROM TO [key=value ...]
//! ```
//!
//! The learning period is NAB's probation (15 % of the rows, at most 750), as in `aiops eval nab`;
//! `key=value` pairs override [`DetectorConfig`] fields.

use aiops_detect::{Detector, DetectorConfig};
use aiops_eval::nab;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, from, to, overrides @ ..] = args.as_slice() else {
        return Err("usage: trace FILE FROM TO [key=value ...]".into());
    };
    let (from, to): (usize, usize) = (from.parse()?, to.parse()?);
    let cfg: DetectorConfig = toml::from_str(&overrides.join("\n"))?;
    let (_, times_ms, values) = nab::read_series_csv(std::path::Path::new(file))?;
    let learning_samples = nab::probation(values.len()) as u32;
    let mut d = Detector::new(DetectorConfig {
        learning_samples,
        ..cfg
    });
    for (i, (&t, &v)) in times_ms.iter().zip(&values).enumerate() {
        let s = d.update(t, v);
        if (from..to).contains(&i) {
            println!(
                "{i} value={v:.3} expected={:.3} raw={:.3} score={:.3}",
                s.expected, s.raw, s.score
            );
        }
    }
    Ok(())
}
