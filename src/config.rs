//! The configuration of the `aiops` process: defaults → TOML file → `AIOPS__SECTION__KEY`
//! environment variables → command-line flags. Validation reports every problem at once.

use std::path::{Path, PathBuf};

use aiops_api::ApiConfig;
use aiops_detect::DetectConfig;
use aiops_ingest::TransportConfig;
use aiops_ingest::archive::ArchiveConfig;
use aiops_ingest::{AppInsightsSourceConfig, PrometheusSourceConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `aiops serve` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server.
    pub server: ApiConfig,
    /// The durable archive.
    pub archive: ArchiveConfig,
    /// How batches travel between stages.
    pub transport: TransportConfig,
    /// Pulling sources.
    pub sources: Sources,
    /// Anomaly detection.
    pub detect: DetectConfig,
    /// Incidents: when they open, how they are ranked, PagerDuty.
    pub incidents: aiops_rca::incident::IncidentConfig,
    /// Limits that keep the node responsive: series cap, load shedding.
    pub limits: aiops_api::LimitsConfig,
    /// Where derived series (scores, expected bands, forecasts, incidents) are written.
    pub outputs: Outputs,
}

/// Outputs by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    /// Prometheus remote_write receivers (Prometheus, VictoriaMetrics, Mimir, Thanos).
    pub remote_write: Vec<aiops_ingest::remote_write::output::OutputConfig>,
}

/// Pulling sources by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    /// Prometheus-compatible HTTP APIs polled with `query_range`.
    pub prometheus: Vec<PrometheusSourceConfig>,
    /// Azure Application Insights resources (metrics API and KQL).
    pub appinsights: Vec<AppInsightsSourceConfig>,
}

/// Configuration problems, all of them.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads defaults, then `file` (if given), then `AIOPS__…` variables, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed("AIOPS__").split("__"));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(|e| e.to_string()).collect()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every problem with the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.server.validate("server", &mut problems);
        self.archive.validate("archive", &mut problems);
        self.transport.validate("transport", &mut problems);
        self.detect.validate("detect", &mut problems);
        self.incidents.validate("incidents", &mut problems);
        self.limits.validate("limits", &mut problems);
        if self.limits.max_head_bytes < 2 * self.archive.segment_max_bytes {
            problems.push(format!(
                "limits.max_head_bytes = {}: must be at least twice archive.segment_max_bytes ({}), or the open segment alone would shed every write",
                self.limits.max_head_bytes, self.archive.segment_max_bytes
            ));
        }
        let mut outputs = std::collections::HashSet::new();
        for (i, o) in self.outputs.remote_write.iter().enumerate() {
            let at = format!("outputs.remote_write[{i}]");
            o.validate(&at, &mut problems);
            if !outputs.insert(&o.name) {
                problems.push(format!("{at}.name = {:?}: names must be unique", o.name));
            }
        }
        if self.outputs.remote_write.len() > 8 {
            problems.push("outputs.remote_write: at most 8 outputs".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.prometheus.iter().enumerate() {
            s.validate(&format!("sources.prometheus[{i}]"), &mut problems);
            if !names.insert(&s.name) {
                problems.push(format!(
                    "sources.prometheus[{i}].name = {:?}: names must be unique",
                    s.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Applies command-line overrides.
    pub fn with_overrides(
        mut self,
        listen: Option<std::net::SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Self {
        if let Some(l) = listen {
            self.server.listen = l;
        }
        if let Some(d) = data_dir {
            self.archive.data_dir = d;
        }
        self
    }

    /// Applies `--bus` and `--kafka-brokers`, then validates again.
    pub fn with_bus(
        mut self,
        bus: Option<&str>,
        brokers: Option<String>,
    ) -> Result<Self, ConfigError> {
        match bus {
            Some("kafka") => self.transport.kind = aiops_ingest::TransportKind::Kafka,
            Some("memory") => self.transport.kind = aiops_ingest::TransportKind::Memory,
            _ => {}
        }
        if let Some(b) = brokers {
            self.transport.kafka.brokers = b;
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("aiops.example.toml");
        let cfg = Config::load(Some(&path)).expect("the shipped example is valid");
        assert_eq!(cfg.sources.prometheus.len(), 1);
        assert_eq!(cfg.sources.appinsights.len(), 1);
        assert_eq!(cfg.sources.appinsights[0].metrics.len(), 2);
        assert_eq!(cfg.incidents.topology.len(), 2);
        assert_eq!(cfg.incidents.symptoms.len(), 1);
        assert_eq!(
            cfg.sources.prometheus[0]
                .headers
                .get("X-Scope-OrgID")
                .map(String::as_str),
            Some("tenant-1")
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default()
            .validate()
            .expect("defaults work on one machine");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            r#"
[server]
request_timeout_secs = 0
[archive]
segment_max_bytes = 10
[transport]
capacity = 0
[[sources.prometheus]]
name = "p"
url = "ftp://x"
selectors = []
"#,
        )
        .expect("write");
        let err = Config::load(Some(&path)).expect_err("invalid");
        let text = err.to_string();
        for key in [
            "server.request_timeout_secs",
            "archive.segment_max_bytes",
            "transport.capacity",
            "sources.prometheus[0].url",
            "sources.prometheus[0].selectors",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.toml");
        std::fs::write(&path, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").expect("write");
        let err = Config::load(Some(&path)).expect_err("invalid");
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/aiops.toml"))).expect_err("missing");
        assert!(err.to_string().contains("does not exist"));
    }
}
