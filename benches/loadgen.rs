//! A gRPC load generator for tollgate (ghz cannot be installed here):
//! bounded in requests and time, loopback only, prints one summary line.
//!
//! cargo bench --bench loadgen -- --addr 127.0.0.1:8081 --users 10000 \
//!     --concurrency 64 --duration 10 [--rps 20000] [--domain D] [--path /identify]
//!
//! Summary: requests/s, p50, p99, p99.9 latency, errors, OK and OVER_LIMIT
//! counts, and whether the answers match what the scenario expects.
//! `--rps` paces the total rate.
//!
//! Scenarios (`--scenario`, for the built-in config's domain):
//! - `hot`: one free user; admitted ≤ 150 + 100/min × elapsed (+1).
//! - `uniform`: `--users` distinct free users, uniformly; none over limit
//!   while each user's share stays under its burst.
//! - `zipf`: `--users` users drawn Zipf(1.1); the hottest go over limit.
//! - `mixed`: tiers (free, pro, enterprise) × endpoints (/identify,
//!   /compare, /health); no errors.
//! - `storm`: one user far over its limit among `--users` others; only the
//!   storm user is rejected, within its bound.
//! - `anonymous`: per-IP traffic from `--users` addresses (30/min each).

use std::time::{Duration, Instant};

use tollgate::proto::common::RateLimitDescriptor;
use tollgate::proto::common::rate_limit_descriptor::Entry;
use tollgate::proto::rls::RateLimitRequest;
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Hot,
    Uniform,
    Zipf,
    Mixed,
    Storm,
    Anonymous,
}

struct Args {
    scenario: Scenario,
    addr: String,
    users: u64,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    max_requests: u64,
    rps: Option<f64>,
    domain: String,
    path: String,
}

fn parse() -> Args {
    let mut args = Args {
        scenario: Scenario::Uniform,
        addr: "127.0.0.1:8081".into(),
        users: 10_000,
        concurrency: 64,
        connections: 4,
        duration: Duration::from_secs(10),
        max_requests: 5_000_000,
        rps: None,
        domain: "fingerprint-api".into(),
        path: "/identify".into(),
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => {
                args.scenario = match value().as_str() {
                    "hot" => Scenario::Hot,
                    "uniform" => Scenario::Uniform,
                    "zipf" => Scenario::Zipf,
                    "mixed" => Scenario::Mixed,
                    "storm" => Scenario::Storm,
                    "anonymous" => Scenario::Anonymous,
                    other => panic!("unknown scenario {other}"),
                }
            }
            "--addr" => args.addr = value(),
            "--users" => args.users = value().parse().unwrap(),
            "--concurrency" => args.concurrency = value().parse().unwrap(),
            "--connections" => args.connections = value().parse().unwrap(),
            "--duration" => args.duration = Duration::from_secs_f64(value().parse().unwrap()),
            "--max-requests" => args.max_requests = value().parse().unwrap(),
            "--rps" => args.rps = Some(value().parse().unwrap()),
            "--domain" => args.domain = value(),
            "--path" => args.path = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        args.addr.starts_with("127.")
            || args.addr.starts_with("localhost")
            || args.addr.starts_with("[::1]"),
        "load is sent to loopback only"
    );
    args
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    over: u64,
    errors: u64,
    /// Storm scenario: admitted calls of the storm user.
    storm_ok: u64,
    /// Rejected calls of anyone but the storm user.
    calm_over: u64,
}

/// Whether the answers match what the scenario expects, and why.
fn expectation(args: &Args, all: &Tally, elapsed: f64) -> (bool, String) {
    // The built-in free tier: capacity 150, 100 a minute.
    let bound = 150.0 + 100.0 / 60.0 * elapsed + 1.0;
    let requests = (all.ok + all.over) as f64;
    let checks = match args.scenario {
        Scenario::Hot => (all.ok as f64 <= bound, format!("ok ≤ {bound:.0}")),
        Scenario::Uniform if requests / args.users as f64 <= 100.0 => {
            (all.over == 0, "over_limit = 0".into())
        }
        Scenario::Uniform => (all.ok > 0, "ok > 0 (users over their burst)".into()),
        Scenario::Zipf => (
            all.ok > 0 && (all.over > 0 || requests * 0.12 <= 150.0),
            "hottest users over limit".into(),
        ),
        Scenario::Mixed => (all.ok > 0, "ok > 0".into()),
        Scenario::Storm => (
            all.storm_ok as f64 <= bound && all.calm_over == 0,
            format!("storm ok ≤ {bound:.0} and nobody else rejected"),
        ),
        Scenario::Anonymous => (all.ok > 0, "ok > 0".into()),
    };
    (checks.0 && all.errors == 0, checks.1)
}

fn request(domain: &str, path: &str, user: u64) -> RateLimitRequest {
    let entry = |k: &str, v: String| Entry {
        key: k.into(),
        value: v,
    };
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                entry("user_id", format!("load_{user}")),
                entry("path", path.into()),
            ],
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

#[tokio::main]
async fn main() {
    let args = parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))
            .unwrap()
            .connect()
            .await
            .expect("tollgate is listening");
        channels.push(channel);
    }
    let started = Instant::now();
    let per_task_requests = args.max_requests / args.concurrency as u64;
    let per_task_interval = args
        .rps
        .map(|rps| Duration::from_secs_f64(args.concurrency as f64 / rps));
    let mut tasks = Vec::new();
    for task in 0..args.concurrency {
        let mut client = RateLimitServiceClient::new(channels[task % channels.len()].clone());
        let (domain, path, users, deadline) = (
            args.domain.clone(),
            args.path.clone(),
            args.users,
            args.duration,
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut pace = per_task_interval.map(tokio::time::interval);
            let mut state = (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for _ in 0..per_task_requests {
                if started.elapsed() >= deadline {
                    break;
                }
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let sent = Instant::now();
                let result = client
                    .should_rate_limit(request(&domain, &path, state % users))
                    .await;
                tally
                    .latencies_us
                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match result {
                    Ok(r) if r.get_ref().overall_code == 1 => tally.ok += 1,
                    Ok(_) => tally.over += 1,
                    Err(_) => tally.errors += 1,
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        all.latencies_us.extend(t.latencies_us);
        all.ok += t.ok;
        all.over += t.over;
        all.errors += t.errors;
        all.storm_ok += t.storm_ok;
        all.calm_over += t.calm_over;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &all.latencies_us;
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    let (passed, expected) = expectation(&args, &all, elapsed);
    println!(
        "requests={} rps={:.0} p50={:.2}ms p99={:.2}ms p99.9={:.2}ms errors={} ok={} over_limit={} users={} concurrency={} expected=\"{expected}\" check={}",
        all.latencies_us.len(),
        all.latencies_us.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        all.errors,
        all.ok,
        all.over,
        args.users,
        args.concurrency,
        if passed { "PASS" } else { "FAIL" }
    );
    if !passed {
        std::process::exit(1);
    }
}
