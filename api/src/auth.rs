//! Who may call what: credentials with scopes, checked on every route but the probes and the
//! API document.
//!
//! A credential is a bearer token or a user name and password (HTTP basic auth, as Prometheus'
//! `remote_write.basic_auth` sends it), given inline or — better — as files, re-read every few
//! seconds so a rotated secret takes effect without a restart. Each has scopes:
//!
//! * `write` — `POST /api/v1/write`, incidents, feedback, the Alertmanager webhook;
//! * `read` — series, samples, anomalies, incidents, `/metrics`, and the scaling routes;
//! * `scaling` — only the external metrics API and `/api/v1/scaling` (what an HPA reads).
//!
//! With no credential configured nothing is checked (the loopback default; `serve` refuses a
//! non-loopback address then, unless told otherwise). With any, every scoped route needs one:
//! 401 without a valid credential, 403 with one lacking the scope. Presented secrets are hashed
//! (SHA-256) and compared with the stored hashes in constant time, so neither their content nor
//! their length leaks through timing.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use aiops_models::Secret;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read series, samples, anomalies, incidents, metrics and scaling.
    Read,
    /// Write samples, incidents and feedback; deliver Alertmanager webhooks.
    Write,
    /// Read only the scaling routes (the external metrics API).
    Scaling,
}

impl Scope {
    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Scaling => 4,
        }
    }

    /// The scopes a route of this scope accepts (a reader may read the scaling routes).
    fn accepted(self) -> u8 {
        match self {
            Scope::Scaling => Scope::Scaling.bit() | Scope::Read.bit(),
            s => s.bit(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Scaling => "scaling",
        }
    }
}

/// One `[[server.credentials]]` entry: a bearer token (`token` or `token_file`) or basic auth
/// (`username` with `password` or `password_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// A name for logs (never the secret).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Bearer token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the bearer token (surrounding whitespace ignored; re-read on change).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Basic-auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the basic-auth password (re-read on change).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl CredentialConfig {
    /// Problems with the entry, each naming its key.
    pub fn validate(&self, prefix: &str, problems: &mut Vec<String>) {
        if self.name.trim().is_empty() {
            problems.push(format!("{prefix}.name: must not be empty"));
        }
        if self.scopes.is_empty() {
            problems.push(format!(
                "{prefix}.scopes: name at least one of \"read\", \"write\", \"scaling\""
            ));
        }
        let bearer = self.token.is_some() as u8 + self.token_file.is_some() as u8;
        let password = self.password.is_some() as u8 + self.password_file.is_some() as u8;
        match (bearer, self.username.is_some(), password) {
            (1, false, 0) | (0, true, 1) => {}
            (0, false, 0) => problems.push(format!(
                "{prefix}: give a bearer token (token or token_file) or basic auth (username \
                 with password or password_file)"
            )),
            _ => problems.push(format!(
                "{prefix}: give exactly one of token, token_file, or username with one of \
                 password, password_file"
            )),
        }
    }

    fn load(&self) -> Result<Entry, String> {
        let read = |inline: &Option<Secret>, file: &Option<PathBuf>, key: &str| match (inline, file)
        {
            (Some(s), _) => Ok(s.expose().to_owned()),
            (None, Some(path)) => read_secret_file(path)
                .map_err(|e| format!("credential {:?}: {key} {}: {e}", self.name, path.display())),
            (None, None) => Err(format!("credential {:?}: no {key}", self.name)),
        };
        let kind = match &self.username {
            None => Kind::Bearer(digest(
                read(&self.token, &self.token_file, "token_file")?.as_bytes(),
            )),
            Some(user) => Kind::Basic {
                user: digest(user.as_bytes()),
                password: digest(
                    read(&self.password, &self.password_file, "password_file")?.as_bytes(),
                ),
            },
        };
        if let Kind::Bearer(d) | Kind::Basic { password: d, .. } = &kind
            && *d == digest(b"")
        {
            return Err(format!("credential {:?}: the secret is empty", self.name));
        }
        Ok(Entry {
            name: self.name.clone(),
            scopes: self.scopes.iter().fold(0, |m, s| m | s.bit()),
            kind,
        })
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Bearer([u8; 32]),
    Basic { user: [u8; 32], password: [u8; 32] },
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    scopes: u8,
    kind: Kind,
}

/// Largest secret file read (a token or password, not a document).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret file's content, surrounding whitespace removed; refuses files over
/// [`MAX_SECRET_FILE_BYTES`] without reading them.
fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut s = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(|e| e.to_string())?;
    if s.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes: not a secret file"
        ));
    }
    Ok(s.trim().to_owned())
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header, or one of an unknown scheme.
    Missing,
    /// A credential that matches none configured.
    Invalid,
    /// A valid credential without the scope.
    Forbidden { name: String },
}

/// The configured credentials, as hashes; reloaded from their files by [`Authenticator::reload`].
pub struct Authenticator {
    configs: Vec<CredentialConfig>,
    entries: RwLock<Arc<Vec<Entry>>>,
    /// Scopes served without credentials (`server.unauthenticated_scopes`).
    open: u8,
    /// With `server.front_proxy_ca_file`: the common names a verified front-proxy client
    /// certificate may have to get the `scaling` scope (empty: any).
    front_proxy: Option<Vec<String>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.configs.len())
            .field("open", &self.open)
            .finish()
    }
}

impl Authenticator {
    /// An authenticator of `configs` (their files read now); `open` scopes are served without
    /// a credential; `front_proxy`, when set, lets a verified front-proxy certificate with one of
    /// those common names (any, when empty) use the scaling scope.
    pub fn new(
        configs: Vec<CredentialConfig>,
        open: &[Scope],
        front_proxy: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let entries = configs
            .iter()
            .map(CredentialConfig::load)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            configs,
            entries: RwLock::new(Arc::new(entries)),
            open: open.iter().fold(0, |m, s| m | s.bit()),
            front_proxy,
        })
    }

    /// The name a verified front-proxy certificate is known by, when it may use `scope`.
    pub fn front_proxy(
        &self,
        peer: Option<&crate::front_proxy::PeerCert>,
        scope: Scope,
    ) -> Option<String> {
        let allowed = self.front_proxy.as_ref()?;
        let cn = peer?.common_name.as_deref().unwrap_or("");
        (scope == Scope::Scaling && (allowed.is_empty() || allowed.iter().any(|a| a == cn)))
            .then(|| format!("front-proxy:{cn}"))
    }

    /// Whether any credential is configured (then every scoped route checks).
    pub fn enabled(&self) -> bool {
        !self.configs.is_empty() || self.front_proxy.is_some()
    }

    /// Re-reads the secret files (blocking I/O: call from a blocking thread). A credential
    /// whose file cannot be read keeps its previous secret. Returns the names of the
    /// credentials that changed, and the problems met.
    pub fn reload(&self) -> (Vec<String>, Vec<String>) {
        let old = self.snapshot();
        let (mut changed, mut problems) = (Vec::new(), Vec::new());
        let fresh: Vec<Entry> = self
            .configs
            .iter()
            .zip(old.iter())
            .map(|(c, prev)| match c.load() {
                Ok(e) => {
                    if e != *prev {
                        changed.push(e.name.clone());
                    }
                    e
                }
                Err(p) => {
                    problems.push(p);
                    prev.clone()
                }
            })
            .collect();
        if !changed.is_empty() {
            *self.entries.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        }
        (changed, problems)
    }

    fn snapshot(&self) -> Arc<Vec<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks a request's `Authorization` header for `scope`; the credential's name when it
    /// passes (`None` when the route is open).
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Option<String>, Denied> {
        if !self.enabled() || self.open & scope.bit() != 0 {
            return Ok(None);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_authorization)
            .ok_or(Denied::Missing)?;
        let entries = self.snapshot();
        // Every entry is compared (no early exit), each in constant time.
        let mut found: Option<&Entry> = None;
        for e in entries.iter() {
            let hit = match (&e.kind, &presented) {
                (Kind::Bearer(want), Presented::Bearer(got)) => want.ct_eq(got),
                (
                    Kind::Basic { user, password },
                    Presented::Basic {
                        user: u,
                        password: p,
                    },
                ) => user.ct_eq(u) & password.ct_eq(p),
                _ => subtle::Choice::from(0),
            };
            if bool::from(hit) && found.is_none() {
                found = Some(e);
            }
        }
        let e = found.ok_or(Denied::Invalid)?;
        if e.scopes & scope.accepted() == 0 {
            return Err(Denied::Forbidden {
                name: e.name.clone(),
            });
        }
        Ok(Some(e.name.clone()))
    }
}

enum Presented {
    Bearer([u8; 32]),
    Basic { user: [u8; 32], password: [u8; 32] },
}

/// `Bearer <token>` or `Basic <base64 user:password>`, the scheme in any case.
fn parse_authorization(v: &str) -> Option<Presented> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| Presented::Bearer(digest(rest.as_bytes())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = raw.iter().position(|&b| b == b':')?;
        return Some(Presented::Basic {
            user: digest(&raw[..colon]),
            password: digest(&raw[colon + 1..]),
        });
    }
    None
}

/// The answer to a turned-away request: JSON naming the scope, a Kubernetes `Status` on the
/// external metrics API; 401 carries `WWW-Authenticate`.
fn denied(path: &str, scope: Scope, why: Denied) -> Response {
    let (code, status, message) = match why {
        Denied::Missing => (
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            format!(
                "this route needs credentials with the {:?} scope: `Authorization: Bearer <token>` or basic auth (server.credentials)",
                scope.name()
            ),
        ),
        Denied::Invalid => (
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "the credentials match none configured (server.credentials)".to_string(),
        ),
        Denied::Forbidden { name } => (
            "forbidden",
            StatusCode::FORBIDDEN,
            format!(
                "credential {name:?} lacks the {:?} scope this route needs",
                scope.name()
            ),
        ),
    };
    let mut r = if path.starts_with("/apis") {
        crate::external::Status::new(
            status,
            if status == StatusCode::FORBIDDEN {
                "Forbidden"
            } else {
                "Unauthorized"
            },
            &message,
        )
        .into_response()
    } else {
        ApiError::new(status, code, message).into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"aiops\", Basic realm=\"aiops\""),
        );
    }
    r
}

/// Who made a request: the credential's name, `None` on an open route. Put in the request's
/// extensions by the scope middleware (per-caller rate limits key on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<String>);

async fn guard(state: &AppState, scope: Scope, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<crate::front_proxy::PeerCert>();
    if let Some(name) = state.auth.front_proxy(peer, scope) {
        req.extensions_mut().insert(Caller(Some(name)));
        return next.run(req).await;
    }
    match state.auth.check(req.headers(), scope) {
        Ok(name) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        Err(why) => {
            state.api_metrics.auth_denied(scope.name(), &why);
            denied(req.uri().path(), scope, why)
        }
    }
}

/// Middleware: the `read` scope.
pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(&state, Scope::Read, req, next).await
}

/// Middleware: the `write` scope.
pub async fn require_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(&state, Scope::Write, req, next).await
}

/// Middleware: the `scaling` scope (or `read`).
pub async fn require_scaling(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guard(&state, Scope::Scaling, req, next).await
}

#[cfg(test)]
mod tests;
