//! The scaling targets' state as checkpoints stored it before the forecaster's compact layout
//! (frozen: a checkpoint written then still loads, each forecaster converted).

use std::collections::HashMap;

use aiops_models::SeriesId;
use serde::{Deserialize, Serialize};

use super::{ScalingState, TargetState, members_as_pairs};
use crate::forecast::ForecasterV1;

/// One target's state, as stored before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStateV1 {
    #[serde(with = "members_as_pairs")]
    pub latest: HashMap<SeriesId, (i64, f64)>,
    pub step: i64,
    pub forecaster: ForecasterV1,
    pub current: Option<(i64, f64)>,
    pub last_good: Option<(i64, f64)>,
}

/// Every target's state, as stored before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScalingStateV1 {
    pub targets: HashMap<String, TargetStateV1>,
}

impl From<ScalingStateV1> for ScalingState {
    fn from(v: ScalingStateV1) -> Self {
        ScalingState {
            targets: v
                .targets
                .into_iter()
                .map(|(name, t)| {
                    let state = TargetState {
                        latest: t.latest,
                        step: t.step,
                        forecaster: t.forecaster.into(),
                        current: t.current,
                        last_good: t.last_good,
                        history: Default::default(),
                        warned: false,
                        policy: None,
                    };
                    (name, state)
                })
                .collect(),
            ..Default::default()
        }
    }
}
