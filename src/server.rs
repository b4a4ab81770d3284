//! The gRPC listener: RLS, `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha: older grpcurl speaks only v1alpha) on one port.
//!
//! Shutdown is a parameter, so tests pass their own: when it resolves,
//! health turns NOT_SERVING first, then the server stops accepting and
//! lets in-flight calls finish.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::limiter::Limiter;
use crate::proto::rls::rate_limit_service_server::RateLimitServiceServer;
use crate::rls::RlsService;
use crate::store::Store;

/// The name health reports the RLS under.
pub const RLS_SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// Why the gRPC server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Health of the process as seen by gRPC health checks.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status(RLS_SERVICE_NAME, status)
            .await;
    }
}

/// Limits of the gRPC server's tower stack.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Per call: answered with an error when exceeded.
    pub timeout: std::time::Duration,
    /// Per connection: calls beyond this are shed at once (UNAVAILABLE)
    /// rather than queued.
    pub concurrency_per_connection: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(1),
            concurrency_per_connection: 1024,
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` resolves, then drains.
///
/// Tower stack, outermost first, per connection: load shedding (refuse when
/// the next layer is full) → concurrency limit → timeout → the services.
/// `health_ready` receives the health handle once the services are built
/// (it starts NOT_SERVING; the caller sets it while config and backend are up).
pub async fn serve_grpc<S: Store>(
    limiter: Arc<Limiter<S>>,
    listener: TcpListener,
    tls: Option<crate::tls::TlsFiles>,
    limits: GrpcLimits,
    health_ready: impl FnOnce(Health),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health { reporter };
    health.set(false).await;
    health_ready(health.clone());

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let rls: RateLimitServiceServer<RlsService<S>> = RlsService::new(limiter).into_server();

    let router = Server::builder()
        .load_shed(true)
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .timeout(limits.timeout)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(rls);
    let drain_health = health.clone();
    let shutdown = async move {
        shutdown.await;
        drain_health.set(false).await;
        tracing::info!("gRPC server draining");
    };
    match tls {
        None => {
            // Our own incoming stream bypasses tonic's socket options: turn
            // Nagle off here, or answers written in two parts wait ~40 ms for
            // the client's delayed ACK.
            let incoming =
                tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |stream| {
                    if let Ok(stream) = &stream {
                        let _ = stream.set_nodelay(true);
                    }
                    stream
                });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?
        }
        Some(files) => {
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(listener, files)?, shutdown)
                .await?
        }
    }
    Ok(())
}
