//! The model registry: versioned artefacts (a kind, parameters, the data range they were
//! trained or evaluated on, an evaluation score, when they were made), one of them active per
//! kind, with a history so that a promotion can be rolled back.
//!
//! Stored as one JSON file (`data_dir/models/registry.json`), rewritten through a synced
//! temporary file, so a crash leaves the old or the new registry, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// One registered artefact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Version number, unique per registry, increasing.
    pub version: u64,
    /// What it is for, e.g. `detector`.
    pub kind: String,
    /// The parameters (for `detector`: a `DetectorConfig`).
    pub params: serde_json::Value,
    /// The data it was trained or evaluated on, e.g. `nab:../shared/data/nab`.
    pub data: Option<String>,
    /// First and last time of that data, Unix ms, when known.
    pub range_ms: Option<(i64, i64)>,
    /// Evaluation scores by name, e.g. `nab_standard`.
    pub scores: std::collections::BTreeMap<String, f64>,
    /// When it was registered, Unix ms.
    pub created_ms: i64,
    /// Free text.
    pub note: Option<String>,
}

/// The registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Every version, oldest first.
    pub versions: Vec<ModelVersion>,
    /// Per kind, the active version and the ones active before it (last = current).
    pub active: std::collections::BTreeMap<String, Vec<u64>>,
}

impl Registry {
    /// The registry file under `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("models").join("registry.json")
    }

    /// Loads the registry at `path` (empty when the file does not exist).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ModelError::RegistryCorrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ModelError::RegistryIo {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the registry to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::RegistryIo {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("a registry always serialises");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a version (not active yet) and returns its number.
    pub fn register(&mut self, mut v: ModelVersion) -> u64 {
        v.version = self.versions.iter().map(|x| x.version).max().unwrap_or(0) + 1;
        let n = v.version;
        self.versions.push(v);
        n
    }

    /// A version.
    pub fn get(&self, version: u64) -> Option<&ModelVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Makes `version` the active one of its kind.
    pub fn promote(&mut self, version: u64) -> Result<&ModelVersion, ModelError> {
        let kind = self
            .get(version)
            .ok_or(ModelError::NoSuchVersion(version))?
            .kind
            .clone();
        let stack = self.active.entry(kind).or_default();
        if stack.last() != Some(&version) {
            stack.push(version);
        }
        Ok(self.get(version).expect("checked above"))
    }

    /// Makes the previously active version of `kind` active again.
    pub fn rollback(&mut self, kind: &str) -> Result<&ModelVersion, ModelError> {
        let stack = self
            .active
            .get_mut(kind)
            .filter(|s| s.len() >= 2)
            .ok_or_else(|| ModelError::NothingToRollBack(kind.to_owned()))?;
        stack.pop();
        let v = *stack.last().expect("at least one left");
        Ok(self.get(v).expect("active versions are registered"))
    }

    /// The active version of `kind`.
    pub fn active(&self, kind: &str) -> Option<&ModelVersion> {
        self.active
            .get(kind)
            .and_then(|s| s.last())
            .and_then(|v| self.get(*v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(note: &str) -> ModelVersion {
        ModelVersion {
            version: 0,
            kind: "detector".into(),
            params: serde_json::json!({"short_window": 12}),
            data: None,
            range_ms: None,
            scores: Default::default(),
            created_ms: 0,
            note: Some(note.into()),
        }
    }

    #[test]
    fn promote_and_rollback_walk_the_history() {
        let mut r = Registry::default();
        let a = r.register(version("a"));
        let b = r.register(version("b"));
        assert_eq!((a, b), (1, 2));
        assert!(r.active("detector").is_none());
        r.promote(a).expect("exists");
        r.promote(b).expect("exists");
        assert_eq!(r.active("detector").map(|v| v.version), Some(2));
        assert_eq!(r.rollback("detector").expect("has history").version, 1);
        assert!(matches!(
            r.rollback("detector"),
            Err(ModelError::NothingToRollBack(_))
        ));
        assert!(matches!(r.promote(9), Err(ModelError::NoSuchVersion(9))));
    }

    #[test]
    fn saves_atomically_and_reports_corruption() {
        let dir = std::env::temp_dir().join(format!("aiops-registry-{}", std::process::id()));
        let path = Registry::path(&dir);
        let mut r = Registry::default();
        let v = r.register(version("x"));
        r.promote(v).expect("exists");
        r.save(&path).expect("saves");
        assert_eq!(Registry::load(&path).expect("loads"), r);
        std::fs::write(&path, b"{oops").expect("write");
        assert!(matches!(
            Registry::load(&path),
            Err(ModelError::RegistryCorrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
