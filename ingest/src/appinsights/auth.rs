//! Credentials for App Insights: an API key, or Microsoft Entra ID client credentials with a
//! cached token refreshed before it expires. Secrets are read from the config, a file or an
//! environment variable at use, and never logged.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::http::{self, Failure};
use crate::{IngestMetrics, SecretSource};

/// How requests are authenticated.
#[derive(Debug)]
pub enum Credentials {
    /// `X-Api-Key` (retired by Microsoft for new use; kept for existing setups and doubles).
    ApiKey(SecretSource),
    /// Entra ID client credentials.
    Entra(EntraToken),
}

/// A client-credentials token source with its cache.
#[derive(Debug)]
pub struct EntraToken {
    /// Token endpoint, e.g. `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretSource,
    /// Scope, e.g. `https://api.applicationinsights.io/.default`.
    pub scope: String,
    cache: Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3599
}

impl EntraToken {
    /// A token source; nothing is fetched until the first request.
    pub fn new(
        token_url: String,
        client_id: String,
        client_secret: SecretSource,
        scope: String,
    ) -> Self {
        Self {
            token_url,
            client_id,
            client_secret,
            scope,
            cache: Mutex::new(None),
        }
    }

    /// A valid token: the cached one until 10 % of its lifetime (at least 60 s, at most 5 min)
    /// is left, then a fresh one.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        max_retries: u32,
        metrics: &IngestMetrics,
    ) -> Result<String, Failure> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let secret = self.client_secret.read().map_err(Failure::local)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let build = || std::future::ready(Ok(http.post(&self.token_url).form(&form)));
        let answer =
            http::send_with_retry(build, max_retries, metrics, "entra_token", &self.token_url)
                .await
                .map_err(|mut f| {
                    // {"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. ..."}
                    let detail = serde_json::from_slice::<serde_json::Value>(&f.body)
                        .ok()
                        .and_then(|v| {
                            let e = v.get("error")?.as_str()?.to_owned();
                            let d = v
                                .get("error_description")
                                .and_then(|d| d.as_str())
                                .unwrap_or("");
                            Some(format!("{e}: {d}"))
                        })
                        .unwrap_or_else(|| f.message.clone());
                    f.message = format!(
                        "token request to {} failed: {}",
                        self.token_url,
                        f.describe(&detail)
                    );
                    // The words are in the message now; the status was the token endpoint's.
                    f.status = None;
                    f.body = Default::default();
                    f
                })?;
        let t: TokenResponse = serde_json::from_slice(&answer.body).map_err(|e| {
            Failure::local(format!(
                "token endpoint {} answered without an access_token: {e}",
                self.token_url
            ))
        })?;
        let lifetime = Duration::from_secs(t.expires_in);
        let margin = (lifetime / 10)
            .clamp(Duration::from_secs(60), Duration::from_secs(300))
            .min(lifetime);
        *cache = Some(Cached {
            token: t.access_token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(t.access_token)
    }

    /// Forgets the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}
