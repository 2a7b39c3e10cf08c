//! HTTPS for the API (rustls): the Kubernetes aggregator only talks to an APIService over TLS.
//!
//! [`TlsFiles`] reads a PEM certificate chain, its private key and, for the Kubernetes
//! aggregator, the CA of its front-proxy client certificates, and reloads them when they
//! change; [`crate::listen::serve`] serves the router over TLS with them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::StartError;

/// Reads `cert` (PEM chain, leaf first) and `key` (PEM, PKCS#8, PKCS#1 or SEC1); with
/// `client_ca`, client certificates signed by one of its CAs are verified (and clients without
/// one still connect: the HTTP layer decides what they may do).
pub fn load(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let certs: Vec<CertificateDer<'static>> = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| StartError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(StartError::Tls)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| StartError::Certificate {
                        path: ca.to_owned(),
                        reason: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| StartError::Certificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(StartError::Certificate {
            path: path.to_owned(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The TLS configuration of a listener, reloaded when its files change (a renewed certificate,
/// a rotated front-proxy CA) without a restart. New connections use the newest; open ones
/// keep theirs.
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    current: RwLock<(Arc<rustls::ServerConfig>, Vec<Stamp>)>,
}

/// When a file was last modified and its size (`None`: unreadable).
type Stamp = Option<(SystemTime, u64)>;

impl TlsFiles {
    /// Loads the files once (an error names the bad one).
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, StartError> {
        let files = Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.map(Path::to_owned),
            current: RwLock::new((load(cert, key, client_ca)?, Vec::new())),
        };
        let stamps = files.stamps();
        files.current.write().unwrap_or_else(|p| p.into_inner()).1 = stamps;
        Ok(files)
    }

    fn stamps(&self) -> Vec<Stamp> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reloads when a file changed (blocking: call from a blocking thread). `Ok(true)` when a
    /// new configuration is in place; on an error the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool, StartError> {
        let stamps = self.stamps();
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == stamps {
            return Ok(false);
        }
        let fresh = load(&self.cert, &self.key, self.client_ca.as_deref());
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Remember the stamps either way: a broken file is reported once, not every round.
        cur.1 = stamps;
        cur.0 = fresh?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let err = load(&dir.path().join("nope.pem"), &empty, None).expect_err("missing");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let err = load(&empty, &empty, None).expect_err("empty");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
