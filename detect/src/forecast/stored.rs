//! How a [`Forecaster`] is read back: from either layout where the format can tell them apart
//! (JSON), and seasonal offsets with NaN as `null`.

use serde::{Deserialize, Deserializer};

use super::{Forecaster, ForecasterV1};

/// Reads a forecaster stored in either layout, for fields whose format can tell them apart
/// (JSON, as older versions' `checkpoint.json` holds; `deserialize_with`). Binary checkpoints
/// name the layout in their frame instead (see `stage::checkpoint`).
pub fn any_layout<'de, D: Deserializer<'de>>(d: D) -> Result<Forecaster, D::Error> {
    if d.is_human_readable() {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Now(Forecaster),
            V1(ForecasterV1),
        }
        Ok(match Any::deserialize(d)? {
            Any::Now(f) => f,
            Any::V1(v) => v.into(),
        })
    } else {
        Forecaster::deserialize(d)
    }
}

/// Seasonal offsets with NaN (not seen) as JSON `null`.
pub(super) mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let v = Vec::<Option<f32>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
    }
}
