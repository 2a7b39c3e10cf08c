//! The model versions `serve` starts from: the active registered detector parameters
//! (`aiops models register/promote`) and trained profiles (`aiops train`), read from the
//! registry of [`aiops_models::registry`] in the data directory.

use std::collections::HashMap;
use std::path::Path;

use aiops_models::registry::Registry;

use crate::{DetectError, Detector, DetectorConfig};

/// The registry kind of detector parameter sets.
pub const DETECTOR: &str = "detector";
/// The registry kind of trained profiles.
pub const PROFILES: &str = "profiles";

/// The detector parameters of the active `detector` version, if any.
pub fn active_detector(data_dir: &Path) -> Result<Option<(u64, DetectorConfig)>, DetectError> {
    let path = Registry::path(data_dir);
    let reg = Registry::load(&path)?;
    let Some(v) = reg.active(DETECTOR) else {
        return Ok(None);
    };
    let cfg = serde_json::from_value(v.params.clone()).map_err(|e| DetectError::BadInput {
        path: path.clone(),
        reason: format!(
            "model version {} does not hold detector parameters: {e}",
            v.version
        ),
    })?;
    Ok(Some((v.version, cfg)))
}

/// Calibrated detectors by series id: what trained profiles hold.
pub type Profiles = HashMap<u64, Detector>;

/// The calibrated detectors of the active `profiles` version (and its number), if any.
pub fn active_profiles(data_dir: &Path) -> Result<Option<(u64, Profiles)>, DetectError> {
    let path = Registry::path(data_dir);
    let reg = Registry::load(&path)?;
    let Some(v) = reg.active(PROFILES) else {
        return Ok(None);
    };
    let file = v.params["file"]
        .as_str()
        .ok_or_else(|| DetectError::BadInput {
            path: path.clone(),
            reason: format!("model version {} names no profiles file", v.version),
        })?;
    let detectors = crate::train::read_profiles(&path.with_file_name(file))?;
    Ok(Some((v.version, detectors)))
}
