//! A no-op ShouldRateLimit server on the same tonic stack as tollgate: it
//! answers OK for every descriptor and decides nothing. `loadtest/bench.sh`
//! measures it as the gRPC ceiling that tollgate-memory is compared with.
//!
//! cargo bench --bench noop -- --addr 127.0.0.1:18181

use tollgate::proto::rls::rate_limit_response::{Code, DescriptorStatus};
use tollgate::proto::rls::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use tollgate::proto::rls::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

/// The same allocator as tollgate's binary, so the ceiling is fair.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Noop;

#[tonic::async_trait]
impl RateLimitService for Noop {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let statuses = request
            .into_inner()
            .descriptors
            .iter()
            .map(|_| DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses,
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip_while(|a| a != "--addr").skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18181".into());
    assert!(addr.starts_with("127."), "loopback only");
    println!("noop listening {addr}");
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Noop))
        .serve_with_shutdown(addr.parse().unwrap(), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .unwrap();
}
