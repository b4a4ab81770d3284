//! Test harness shared by the integration suites: requests, a real gRPC
//! server on a free loopback port, and clocks.
#![allow(dead_code)]

pub mod backends;
pub mod process;
pub mod redis;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tollgate::config::Config;
use tollgate::limiter::{Descriptor, Limiter, Options, Request};
use tollgate::proto::common::RateLimitDescriptor;
use tollgate::proto::common::rate_limit_descriptor::Entry as ProtoEntry;
use tollgate::proto::rls::RateLimitRequest;
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;
use tollgate::server::serve_grpc;
use tollgate::store::Store;

/// 2026-12-31T23:59:00Z: a minute before the turn of a month and a year.
pub const NEW_YEARS_EVE_US: u64 = 1_798_761_540_000_000;
pub const SEC: u64 = 1_000_000;

/// A request of the tier model's default keys.
pub fn request(descriptors: Vec<Descriptor>) -> Request {
    Request {
        domain: "fingerprint-api".into(),
        descriptors,
        hits_addend: 0,
    }
}

/// The descriptors Envoy sends for a signed-in call.
pub fn user_call(user: &str, path: &str) -> Request {
    request(vec![Descriptor::of(&[("user_id", user), ("path", path)])])
}

pub fn config(yaml: &str) -> Config {
    Config::from_sources([("test.yaml".into(), yaml.to_string())]).expect("test config is valid")
}

/// A gRPC request from `(key, value)` descriptors.
pub fn grpc_request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: descriptors
            .iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| ProtoEntry {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

/// A tollgate gRPC server on a free loopback port; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start<S: Store>(limiter: Arc<Limiter<S>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_grpc(
                limiter,
                listener,
                None,
                Default::default(),
                |health| {
                    tokio::spawn(async move { health.set(true).await });
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("server runs");
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn memory(config: Config, clock: tollgate::clock::ManualClock) -> Self {
        let store = tollgate::store::MemoryStore::new(Arc::new(clock));
        Self::start(Arc::new(Limiter::new(config, store, Options::default()))).await
    }

    pub async fn client(&self) -> RateLimitServiceClient<tonic::transport::Channel> {
        RateLimitServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
