//! A secret from configuration: kept as given, never shown by `Debug` or `Display`.

use serde::{Deserialize, Serialize};

/// A token, password or key. `Debug` prints `<redacted>`; the value is only reachable through
/// [`Secret::expose`], so a config struct deriving `Debug` cannot log it by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it (a header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value_and_serde_is_transparent() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(
            format!("{:?}", Some(s.clone())),
            "Some(<redacted>)".to_string()
        );
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"hunter2\"");
        let back: Secret = serde_json::from_str("\"hunter2\"").expect("json");
        assert_eq!(back.expose(), "hunter2");
    }
}
