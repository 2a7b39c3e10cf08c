//! librdkafka properties from the configuration, with their secrets kept out of `Debug`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `transport.kafka.properties`: passed to librdkafka as they are. `Debug` prints the value of
/// any key that names a secret (`sasl.password`, `ssl.key.password`, `ssl.key.pem`,
/// `sasl.oauthbearer.client.secret`, …) as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

/// Parts of a key that mark its value as a secret.
const SECRET_KEY_PARTS: [&str; 5] = ["password", "secret", "pem", "token", "oauthbearer.config"];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|p| key.contains(p))
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl std::ops::Deref for KafkaProperties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for KafkaProperties {
    fn from(m: BTreeMap<String, String>) -> Self {
        Self(m)
    }
}

impl<const N: usize> From<[(String, String); N]> for KafkaProperties {
    fn from(a: [(String, String); N]) -> Self {
        Self(a.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_the_rest_shown() {
        let p = KafkaProperties::from([
            ("sasl.username".to_owned(), "aiops".to_owned()),
            ("sasl.password".to_owned(), "hunter2".to_owned()),
            ("ssl.key.pem".to_owned(), "-----BEGIN".to_owned()),
            ("sasl.oauthbearer.client.secret".to_owned(), "s3".to_owned()),
        ]);
        let shown = format!("{p:?}");
        assert!(shown.contains("\"sasl.username\": \"aiops\""), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("BEGIN") && !shown.contains("s3\""));
        assert_eq!(p["sasl.password"], "hunter2", "the value itself is kept");
    }
}
