//! KEDA's external scaler over gRPC (`server.keda_listen`): KEDA's `external` trigger asks aiops
//! for a scaling target's predictive value — the same value the external metrics API and the
//! `metrics-api` JSON serve — so clusters whose one external metrics API is KEDA's still scale
//! ahead of their load.
//!
//! The trigger names the target in its metadata (`scalerAddress: aiops.aiops.svc:9202`,
//! `target: checkout_rps`). `GetMetricSpec` answers the target's capacity per pod as the target
//! size (KEDA's HPA then asks for value ÷ capacity replicas, as the external metrics API does);
//! `GetMetrics` the served value; `IsActive` whether it is above `activationValue` (metadata,
//! default 0); `StreamIsActive` sends that at once and again whenever it changes (checked every
//! `pollSecs`, default 5). Unknown target: `NOT_FOUND`; no fresh value: `UNAVAILABLE`. At most
//! `server.keda_max_streams` streams are open at once; one more is `RESOURCE_EXHAUSTED`, naming
//! the key (KEDA opens one per ScaledObject and retries).
//!
//! With credentials configured, a call carries `authorization: Bearer <token>` with the
//! `scaling` scope — unless the scope is open or `server.keda_allow_unauthenticated` is set
//! (KEDA's external trigger sends no token: then let a NetworkPolicy admit only KEDA's pods).

#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
mod externalscaler;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aiops_detect::DetectError;
use aiops_detect::published::SharedScaling;
use aiops_detect::scaling::{ScalingConfig, ScalingValue};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use externalscaler::external_scaler_server::ExternalScaler;
pub use externalscaler::external_scaler_server::ExternalScalerServer;
use externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

use crate::auth::{Authenticator, Denied, Scope};

/// The scaler: the scaling targets and their shared state, and who may ask.
#[derive(Debug, Clone)]
pub struct Scaler {
    scaling: Arc<ScalingConfig>,
    state: SharedScaling,
    auth: Arc<Authenticator>,
    open: bool,
    streams: Arc<tokio::sync::Semaphore>,
    max_streams: usize,
    /// Ends the open streams when the server stops (graceful shutdown waits for them).
    shutdown: CancellationToken,
}

impl Scaler {
    /// A scaler over `scaling`'s targets; `open` serves without credentials; at most
    /// `max_streams` `StreamIsActive` streams at once.
    pub fn new(
        scaling: Arc<ScalingConfig>,
        state: SharedScaling,
        auth: Arc<Authenticator>,
        open: bool,
        max_streams: usize,
    ) -> Self {
        Self {
            scaling,
            state,
            auth,
            open,
            streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
            max_streams,
            shutdown: CancellationToken::new(),
        }
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.open {
            return Ok(());
        }
        let headers = req.metadata().clone().into_headers();
        match self.auth.check(&headers, Scope::Scaling) {
            Ok(_) => Ok(()),
            Err(Denied::Forbidden { name }) => Err(Status::permission_denied(format!(
                "credential {name:?} lacks the scaling scope"
            ))),
            Err(_) => Err(Status::unauthenticated(
                "needs `authorization: Bearer <token>` with the scaling scope (server.credentials), or server.keda_allow_unauthenticated",
            )),
        }
    }

    /// The target a ScaledObject names, and its served value now.
    fn value(&self, r: &ScaledObjectRef) -> Result<(String, f64, ScalingValue), Status> {
        let name = r
            .scaler_metadata
            .get("target")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(
                    "the trigger's metadata names no `target` (an aiops scaling target)",
                )
            })?
            .clone();
        let capacity = self
            .scaling
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.capacity_per_pod)
            .ok_or_else(|| Status::not_found(format!("no scaling target {name}")))?;
        let now = jiff::Timestamp::now().as_millisecond();
        let v = self
            .state
            .lock()
            .value(&self.scaling, &name, None, now)
            .map_err(|e| match e {
                DetectError::UnknownTarget(_) => {
                    Status::not_found(format!("no scaling target {name}"))
                }
                other => Status::unavailable(other.to_string()),
            })?;
        Ok((name, capacity, v))
    }

    fn active(&self, r: &ScaledObjectRef) -> Result<bool, Status> {
        let threshold = metadata_f64(r, "activationValue", 0.0)?;
        let (_, _, v) = self.value(r)?;
        Ok(v.value > threshold)
    }
}

fn metadata_f64(r: &ScaledObjectRef, key: &str, default: f64) -> Result<f64, Status> {
    match r.scaler_metadata.get(key) {
        None => Ok(default),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("metadata {key}={s:?}: a number, at least 0"))
            }),
    }
}

type ActiveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        req: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        self.authorize(&req)?;
        let result = self.active(req.get_ref())?;
        Ok(Response::new(IsActiveResponse { result }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(
        &self,
        req: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        self.authorize(&req)?;
        let r = req.into_inner();
        let every = metadata_f64(&r, "pollSecs", 5.0)?.clamp(1.0, 300.0);
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} StreamIsActive streams are open, the limit (server.keda_max_streams)",
                self.max_streams
            ))
        })?;
        let first = self.active(&r)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let me = self.clone();
        tokio::spawn(async move {
            // Held for the stream's life.
            let _permit = permit;
            let mut last = first;
            if tx
                .send(Ok(IsActiveResponse { result: first }))
                .await
                .is_err()
            {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(every));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    // KEDA hung up, or aiops is stopping (KEDA reconnects elsewhere).
                    _ = tx.closed() => return,
                    _ = me.shutdown.cancelled() => return,
                }
                match me.active(&r) {
                    Ok(now) if now != last => {
                        last = now;
                        if tx.send(Ok(IsActiveResponse { result: now })).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_metric_spec(
        &self,
        req: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        self.authorize(&req)?;
        let r = req.get_ref();
        let (name, capacity, _) = self.value(r)?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: name,
                target_size: capacity.ceil() as i64,
                target_size_float: capacity,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        req: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        self.authorize(&req)?;
        let r = req
            .get_ref()
            .scaled_object_ref
            .clone()
            .ok_or_else(|| Status::invalid_argument("no scaledObjectRef"))?;
        let (name, _, v) = self.value(&r)?;
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: name,
                metric_value: v.value.ceil() as i64,
                metric_value_float: v.value,
            }],
        }))
    }
}

/// Serves the scaler on `listener` until `cancel`.
pub async fn serve(
    mut scaler: Scaler,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    scaler.shutdown = cancel.clone();
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(ExternalScalerServer::new(scaler))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            cancel.cancelled_owned(),
        )
        .await
}
