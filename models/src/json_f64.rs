//! Floats in JSON the way Prometheus writes them: a number when JSON has one, else `"+Inf"`,
//! `"-Inf"` or `"NaN"` (serde_json would write `null` — and then fail to read it back into an
//! `f64`). Use with `#[serde(with = "aiops_models::json_f64")]`; reads numbers, those strings,
//! and `null` (as NaN) from older files.

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `v` (binary formats, such as the detector's postcard checkpoint, get the plain
/// float).
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() || !s.is_human_readable() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("+Inf")
    } else {
        s.serialize_str("-Inf")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
    Null(()),
}

/// Reads a value written by [`serialize`] (or a plain number, or `null`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    if !d.is_human_readable() {
        return f64::deserialize(d);
    }
    match Option::<Repr>::deserialize(d)? {
        Some(Repr::Number(v)) => Ok(v),
        Some(Repr::Text(t)) => match t.as_str() {
            "+Inf" | "Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
            "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
            "NaN" | "nan" => Ok(f64::NAN),
            other => other
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{other:?} is not a number"))),
        },
        Some(Repr::Null(())) | None => Ok(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct T {
        #[serde(with = "super")]
        v: f64,
    }

    #[test]
    fn every_float_round_trips_and_old_nulls_read_as_nan() {
        for v in [1.5, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::MAX] {
            let text = serde_json::to_string(&T { v }).expect("writes");
            let back: T = serde_json::from_str(&text).expect("reads");
            assert_eq!(back.v.to_bits(), v.to_bits(), "{text}");
        }
        let nan = serde_json::to_string(&T { v: f64::NAN }).expect("writes");
        assert_eq!(nan, r#"{"v":"NaN"}"#);
        assert!(serde_json::from_str::<T>(&nan).expect("reads").v.is_nan());
        assert!(
            serde_json::from_str::<T>(r#"{"v":null}"#)
                .expect("reads")
                .v
                .is_nan()
        );
        assert!(serde_json::from_str::<T>(r#"{"v":"x"}"#).is_err());
    }

    #[test]
    fn binary_formats_keep_the_plain_float() {
        for v in [2.5, f64::INFINITY, f64::NAN] {
            let bytes = postcard::to_stdvec(&T { v }).expect("writes");
            assert_eq!(bytes.len(), 8, "a plain f64");
            let back: T = postcard::from_bytes(&bytes).expect("reads");
            assert_eq!(back.v.to_bits(), v.to_bits());
        }
    }
}
