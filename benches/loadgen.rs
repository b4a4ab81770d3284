//! A gRPC load generator for tollgate (ghz cannot be installed here):
//! bounded in requests and time, loopback only, prints one summary line.
//!
//! cargo bench --bench loadgen -- --scenario uniform --addr 127.0.0.1:8081 \
//!     --users 10000 --concurrency 64 --duration 10 [--rps 20000]
//!
//! Summary: requests/s, p50, p99, p99.9 latency, errors, OK and OVER_LIMIT
//! counts, and whether the answers match what the scenario expects (exit 1
//! when they do not). `--rps` paces the total rate.
//!
//! Scenarios, for the built-in config (free tier: burst 150, 100/min):
//! - `hot`: one free user; admitted ≤ 150 + 100/min × elapsed (+1).
//! - `uniform`: `--users` distinct free users, uniformly; none over limit
//!   while each user's share stays under its burst.
//! - `zipf`: `--users` users drawn Zipf(1.1); the hottest go over limit.
//! - `mixed`: tiers (free, pro, enterprise) × endpoints (/identify,
//!   /compare, /health), with the client address; no errors.
//! - `storm`: one user sends half the load, far over its limit, among
//!   `--users` others; only the storm user is rejected, within its bound.
//! - `anonymous`: per-IP traffic from `--users` addresses (30/min each).

use std::sync::Arc;
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
    let loopback = ["127.", "localhost", "[::1]"];
    assert!(
        loopback.iter().any(|p| args.addr.starts_with(p)),
        "load is sent to loopback only"
    );
    args
}

fn entry(key: &str, value: String) -> Entry {
    Entry {
        key: key.into(),
        value,
    }
}

fn descriptor(entries: Vec<Entry>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries,
        ..Default::default()
    }
}

/// xorshift64: cheap, good enough to spread load.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Cumulative Zipf(1.1) weights over `n` ranks.
fn zipf_cdf(n: u64) -> Vec<f64> {
    let mut total = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|rank| {
            total += 1.0 / (rank as f64).powf(1.1);
            total
        })
        .collect();
    cdf.iter_mut().for_each(|c| *c /= total);
    cdf
}

/// The next request of a scenario, and whether it is the storm user's.
fn request(args: &Args, cdf: &[f64], state: &mut u64) -> (RateLimitRequest, bool) {
    let r = next(state);
    let ip = |n: u64| format!("198.51.{}.{}", (n / 250) % 250, n % 250);
    let user_call = |user: String, path: &str| {
        descriptor(vec![entry("user_id", user), entry("path", path.into())])
    };
    let (descriptors, storm) = match args.scenario {
        Scenario::Hot => (vec![user_call("load_hot".into(), &args.path)], false),
        Scenario::Uniform => (
            vec![user_call(format!("load_{}", r % args.users), &args.path)],
            false,
        ),
        Scenario::Zipf => {
            let u = (r >> 11) as f64 / (1u64 << 53) as f64;
            (
                vec![user_call(
                    format!("zipf_{}", cdf.partition_point(|&c| c < u)),
                    &args.path,
                )],
                false,
            )
        }
        Scenario::Mixed => {
            let tier = ["free", "pro", "enterprise"][(r % 3) as usize];
            let path = ["/identify", "/compare", "/health"][((r >> 8) % 3) as usize];
            let user = (r >> 16) % args.users;
            let call = descriptor(vec![
                entry("user_id", format!("mixed_{user}")),
                entry("tier", tier.into()),
                entry("path", path.into()),
            ]);
            (
                vec![call, descriptor(vec![entry("remote_address", ip(user))])],
                false,
            )
        }
        Scenario::Storm => {
            let storm = r.is_multiple_of(2);
            let user = if storm {
                "storm".to_string()
            } else {
                format!("calm_{}", (r >> 1) % args.users)
            };
            (vec![user_call(user, &args.path)], storm)
        }
        Scenario::Anonymous => (
            vec![descriptor(vec![entry(
                "remote_address",
                ip(r % args.users),
            )])],
            false,
        ),
    };
    (
        RateLimitRequest {
            domain: args.domain.clone(),
            descriptors,
            hits_addend: 0,
        },
        storm,
    )
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

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.over += other.over;
        self.errors += other.errors;
        self.storm_ok += other.storm_ok;
        self.calm_over += other.calm_over;
    }
}

/// Whether the answers match what the scenario expects, and the rule.
fn expectation(args: &Args, all: &Tally, elapsed: f64) -> (bool, String) {
    let bound = 150.0 + 100.0 / 60.0 * elapsed + 1.0;
    let per_user = (all.ok + all.over) as f64 / args.users as f64;
    let (passed, rule) = match args.scenario {
        Scenario::Hot => (
            all.ok as f64 <= bound && all.over > 0,
            format!("0 < over_limit, ok ≤ {bound:.0}"),
        ),
        Scenario::Uniform if per_user <= 100.0 => (all.over == 0, "over_limit = 0".into()),
        Scenario::Uniform => (all.ok > 0, "ok > 0 (users past their burst)".into()),
        Scenario::Zipf => (
            all.ok > 0 && all.over > 0,
            "ok > 0, the hottest users over limit".into(),
        ),
        Scenario::Mixed => (all.ok > 0, "ok > 0".into()),
        Scenario::Storm => (
            all.storm_ok as f64 <= bound && all.calm_over == 0,
            format!("storm user ok ≤ {bound:.0}, nobody else rejected"),
        ),
        Scenario::Anonymous => (all.ok > 0, "ok > 0".into()),
    };
    (passed && all.errors == 0, rule)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse());
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))
            .unwrap()
            .tcp_nodelay(true);
        channels.push(endpoint.connect().await.expect("tollgate is listening"));
    }
    let cdf = Arc::new(if args.scenario == Scenario::Zipf {
        zipf_cdf(args.users)
    } else {
        Vec::new()
    });
    let started = Instant::now();
    let per_task_requests = args.max_requests / args.concurrency as u64;
    let per_task_interval = args
        .rps
        .map(|rps| Duration::from_secs_f64(args.concurrency as f64 / rps));
    let mut tasks = Vec::new();
    for task in 0..args.concurrency {
        let mut client = RateLimitServiceClient::new(channels[task % channels.len()].clone());
        let (args, cdf) = (Arc::clone(&args), Arc::clone(&cdf));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut pace = per_task_interval.map(tokio::time::interval);
            let mut state = (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for _ in 0..per_task_requests {
                if started.elapsed() >= args.duration {
                    break;
                }
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                let (request, storm) = request(&args, &cdf, &mut state);
                let sent = Instant::now();
                let result = client.should_rate_limit(request).await;
                tally
                    .latencies_us
                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match result {
                    Ok(r) if r.get_ref().overall_code == 1 => {
                        tally.ok += 1;
                        tally.storm_ok += u64::from(storm);
                    }
                    Ok(_) => {
                        tally.over += 1;
                        tally.calm_over += u64::from(!storm);
                    }
                    Err(_) => tally.errors += 1,
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        all.add(task.await.unwrap());
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
    let (passed, rule) = expectation(&args, &all, elapsed);
    println!(
        "requests={} rps={:.0} p50={:.2}ms p99={:.2}ms p99.9={:.2}ms errors={} ok={} over_limit={} users={} concurrency={} expected=\"{rule}\" check={}",
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
