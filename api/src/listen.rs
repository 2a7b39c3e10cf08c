//! Accepting connections: one loop for HTTP and HTTPS, with the bounds that keep slow or
//! greedy clients from starving everyone else (health probes, the HPA, Prometheus):
//!
//! * a request's headers must arrive within `server.header_read_timeout_secs` of the
//!   connection being ready for them — which also closes kept-alive connections idle that long;
//! * a TLS handshake must finish within `server.tls_handshake_timeout_secs`;
//! * at most `server.max_connections` open connections, `server.max_connections_per_ip` from
//!   one address; one more is closed at once and counted.
//!
//! hyper's own answers to requests it cannot parse get JSON bodies too (`parse_errors`).
//!
//! On cancel the listener stops accepting and open connections finish their requests (the
//! caller bounds how long).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::front_proxy::PeerCert;
use crate::metrics::ApiMetrics;
use crate::tls::TlsFiles;
use parse_errors::JsonParseErrors;

mod parse_errors;

/// The connection bounds, and the open connections of every listener that shares them.
#[derive(Debug)]
pub struct Connections {
    header_read_timeout: Duration,
    tls_handshake_timeout: Duration,
    max: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    metrics: ApiMetrics,
}

/// One open connection; counted until dropped.
struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
        self.conns.metrics.connections.set(open.0 as i64);
    }
}

impl Connections {
    /// The bounds of `cfg`, with at most `max_connections` connections at once.
    pub fn new(cfg: &ApiConfig, max_connections: usize, metrics: ApiMetrics) -> Arc<Self> {
        Arc::new(Self {
            header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(cfg.tls_handshake_timeout_secs),
            max: max_connections,
            max_per_ip: cfg.max_connections_per_ip,
            open: Mutex::new((0, HashMap::new())),
            metrics,
        })
    }

    /// A slot for a connection from `ip`, or why there is none.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.max {
            return Err("max_connections");
        }
        let from_ip = open.1.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *from_ip += 1;
        open.0 += 1;
        self.metrics.connections.set(open.0 as i64);
        Ok(Slot {
            conns: self.clone(),
            ip,
        })
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given: each connection with the newest
/// configuration, a verified client certificate put in each request's extensions as a
/// [`PeerCert`]) until `cancel`, then waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<TlsFiles>>,
    conns: Arc<Connections>,
    cancel: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let slot = match conns.admit(peer.ip()) {
            Ok(s) => s,
            Err(reason) => {
                conns.metrics.refused(reason);
                tracing::debug!(%peer, reason, "Connection refused: too many open.");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.current()));
        let conns = conns.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(conns.header_read_timeout);
            let outcome = match acceptor {
                None => {
                    let service = TowerToHyperService::new(app);
                    watcher
                        .watch(
                            http.serve_connection(
                                TokioIo::new(JsonParseErrors::new(stream)),
                                service,
                            ),
                        )
                        .await
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(
                        conns.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                            return;
                        }
                        Err(_) => {
                            conns.metrics.refused("tls_handshake_timeout");
                            tracing::debug!(%peer, "TLS handshake timed out.");
                            return;
                        }
                    };
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|der| PeerCert::of(der));
                    let service = TowerToHyperService::new(tower::util::MapRequest::new(
                        app,
                        move |mut req: axum::http::Request<hyper::body::Incoming>| {
                            if let Some(p) = &peer_cert {
                                req.extensions_mut().insert(p.clone());
                            }
                            req
                        },
                    ));
                    watcher
                        .watch(
                            http.serve_connection(TokioIo::new(JsonParseErrors::new(tls)), service),
                        )
                        .await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "Connection ended with an error.");
            }
        });
    }
    graceful.shutdown().await;
}

/// The open-file limit after raising the soft limit to the hard one (as Go servers do), and
/// the connection cap that leaves room for the archive's files within it.
pub fn connection_cap(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum)
        && cur < max
    {
        lim.current = Some(max);
        if setrlimit(Resource::Nofile, lim).is_err() {
            lim.current = Some(cur);
        }
    }
    let files = lim.current.map_or(usize::MAX, |c| c as usize);
    // Parts, WAL, sockets to Kafka and sources: keep a quarter (at least 256) for them.
    let room = files.saturating_sub((files / 4).max(256));
    if room < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = wanted,
            capped = room,
            "The open-file limit is too low for server.max_connections; capping connections (raise `ulimit -n`)."
        );
        room.max(16)
    } else {
        wanted
    }
}
