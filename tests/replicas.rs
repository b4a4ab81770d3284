//! Several tollgate processes on one Redis behave as one rate limiter:
//! 3 replicas × 8 concurrent clients hammer one free-tier user; the total
//! admitted stays within capacity + rate × elapsed (+1), and close to it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use tollgate::proto::rls::rate_limit_response::Code;
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
/// 120/min = 2 tokens a second, capacity floor(120 × 1.5) = 180.
const CONFIG: &str = "domain: replicas\ntiers:\n  free: { per_minute: 120 }\n";

struct Replica {
    child: Child,
    addr: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_replica(config: &std::path::Path, redis_url: &str) -> Replica {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--backend",
            "redis",
        ])
        .args([
            "--redis-url",
            redis_url,
            "--on-backend-error",
            "error",
            "--backend-timeout-ms",
            "1000",
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut replica = Replica {
        child,
        addr: String::new(),
    };
    // Read the log on a thread (and keep draining it, so the replica never
    // blocks on a full pipe); wait for the address with a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("gRPC listening addr=") {
                let addr = line[at + "gRPC listening addr=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let _ = tx.send(addr.to_string());
            }
        }
    });
    replica.addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("replica logs its address");
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_what_one_bucket_allows() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replicas.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let replicas: Vec<Replica> = (0..3)
        .map(|_| start_replica(&config, &redis.url()))
        .collect();

    let admitted = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for replica in &replicas {
        for _ in 0..8 {
            let mut client = RateLimitServiceClient::connect(format!("http://{}", replica.addr))
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
