//! Credentials at start and while serving: the listen check, the secret files' and the TLS
//! files' reload.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::{ApiConfig, StartError};

/// The credentials of `cfg`, their files read off the async threads. Refuses to serve a
/// non-loopback address with none configured unless `server.allow_unauthenticated` (or
/// `--insecure-listen`) says so, and then warns.
pub async fn authenticator(cfg: &ApiConfig) -> Result<Arc<Authenticator>, StartError> {
    let exposed = cfg.exposed_addresses();
    if !exposed.is_empty() && !cfg.has_credentials() {
        let list = exposed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if !cfg.allow_unauthenticated {
            return Err(StartError::Unauthenticated { addresses: list });
        }
        warn!(
            addresses = %list,
            "Listening beyond loopback with no credentials: anyone who reaches the port can \
             write samples, open incidents and steer the scaling metric."
        );
    }
    if cfg.has_credentials() && !cfg.unauthenticated_scopes.is_empty() {
        warn!(
            scopes = ?cfg.unauthenticated_scopes,
            "These scopes are served without credentials (server.unauthenticated_scopes)."
        );
    }
    let cfg = cfg.clone();
    let auth = tokio::task::spawn_blocking(move || cfg.authenticator()).await??;
    Ok(Arc::new(auth))
}

/// Re-reads the secret files every `every` until `cancel`: a rotated token takes effect within
/// that time. Changes are logged by credential name; a file that cannot be read keeps the
/// previous secret and is reported once per distinct problem.
pub async fn reload_every(auth: Arc<Authenticator>, every: Duration, cancel: CancellationToken) {
    if !auth.enabled() {
        return;
    }
    let mut last_problems: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let a = auth.clone();
        let Ok((changed, problems)) = tokio::task::spawn_blocking(move || a.reload()).await else {
            continue;
        };
        for name in changed {
            info!(credential = %name, "Credential reloaded from its file.");
        }
        if problems != last_problems {
            for p in &problems {
                warn!(problem = %p, "Cannot re-read a credential; it keeps its previous secret.");
            }
            last_problems = problems;
        }
    }
}

/// Re-reads the TLS files (certificate, key, front-proxy CA) every `every` until `cancel`:
/// a renewed certificate or a rotated CA takes effect for new connections within that time. A
/// file that cannot be used keeps the previous configuration and is reported.
pub async fn reload_tls_every(
    tls: Arc<crate::tls::TlsFiles>,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let t = tls.clone();
        match tokio::task::spawn_blocking(move || t.reload_if_changed()).await {
            Ok(Ok(true)) => info!("TLS certificate, key or front-proxy CA reloaded."),
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "Cannot reload the TLS files; new connections keep the previous ones.")
            }
        }
    }
}
