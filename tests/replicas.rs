//! Several tollgate processes on one Redis behave as one rate limiter:
//! 3 replicas × 8 concurrent clients hammer one free-tier user; the total
//! admitted stays within capacity + rate × elapsed (+1), and close to it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::{Tollgate, start_tollgate};
use common::redis::{RedisCluster, RedisServer};
use common::*;
use tollgate::proto::rls::rate_limit_response::Code;
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;

/// 120/min = 2 tokens a second, capacity floor(120 × 1.5) = 180.
const CONFIG: &str = "domain: replicas\ntiers:\n  free: { per_minute: 120 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_what_one_bucket_allows() {
    let redis = RedisServer::start();
    hammer(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_redis_cluster_admit_what_one_bucket_allows() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    hammer(&cluster.url()).await;
}

/// 3 replicas × 8 clients on one free-tier user for 3 s.
async fn hammer(redis_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replicas.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let (config, url) = (config.to_str().unwrap(), redis_url);
    let args = ["--config", config, "--backend", "redis", "--redis-url", url];
    let args = [
        &args[..],
        &[
            "--on-backend-error",
            "error",
            "--backend-timeout-ms",
            "1000",
        ],
    ]
    .concat();
    let replicas: Vec<Tollgate> = (0..3).map(|_| start_tollgate(&args)).collect();

    let admitted = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for replica in &replicas {
        for _ in 0..8 {
            let mut client =
                RateLimitServiceClient::connect(format!("http://{}", replica.grpc_addr))
                    .await
                    .unwrap();
            let (admitted, errors) = (Arc::clone(&admitted), Arc::clone(&errors));
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < run_for {
                    let request =
                        grpc_request("replicas", &[&[("user_id", "sk_shared"), ("path", "/x")]]);
                    match client.should_rate_limit(request).await {
                        Ok(r) if r.get_ref().overall_code == Code::Ok as i32 => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::SeqCst) as f64;
    let bound = 180.0 + 2.0 * elapsed;
    eprintln!("admitted {admitted} in {elapsed:.2} s; bound {bound:.1}");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "no failed decision");
    assert!(
        admitted <= bound + 1.0,
        "over-admission: {admitted} > {bound:.1} + 1"
    );
    assert!(
        admitted >= bound - 3.0,
        "under-admission: {admitted} < {bound:.1} - 3"
    );
}
