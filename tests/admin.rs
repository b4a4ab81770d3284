//! Operating tollgate (SPEC 2c, 5, 6, 7) through the real binary: the admin
//! API, exact metrics after a known sequence, bounded metric cardinality,
//! hot reload (file, ConfigMap-style directory swap, SIGHUP) with requests
//! in flight, SIGTERM drain, JSON logs.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::{get, post, start_tollgate};
use common::*;
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;

const E2E_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/e2e.yaml");

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const CHECK: &str = r#"{"domain":"fingerprint-api","descriptors":[{"entries":[{"key":"user_id","value":"sk_admin"},{"key":"path","value":"/compare"}]}]}"#;

#[tokio::test]
async fn admin_endpoints_answer_with_their_documented_shapes() {
    let tollgate = start_tollgate(&["--config", E2E_CONFIG]);
    let port = tollgate.http_port();

    let health = get(port, "/healthz", &[], None).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(get(port, "/readyz", &[], None).await.unwrap().status, 200);

    let status = json(&get(port, "/status", &[], None).await.unwrap().body);
    assert_eq!(status["backend"], "memory");
    assert_eq!(status["domains"], serde_json::json!(["fingerprint-api"]));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_seconds"].is_u64());

    let checked = post(port, "/check", CHECK).await.unwrap();
    assert_eq!(checked.status, 200);
    let checked = json(&checked.body);
    assert_eq!(checked["overallCode"], "OK");
    assert_eq!(checked["statuses"][0]["currentLimit"]["name"], "free");
    assert_eq!(checked["statuses"][0]["limitRemaining"], 148);

    for _ in 0..2 {
        let quota = get(port, "/quota/fingerprint-api/sk_admin", &[], None)
            .await
            .unwrap();
        assert_eq!(quota.status, 200);
        let quota = json(&quota.body);
        assert_eq!(quota["tier"], "free");
        // 148 after the call; a slow machine may have refilled one since.
        let tokens = quota["tokens"].as_u64().unwrap();
        assert!(
            (148..=149).contains(&tokens),
            "reading charges nothing: {tokens}"
        );
        assert_eq!(quota["capacity"], 150);
        assert_eq!(quota["per_minute"], 100);
        assert_eq!(quota["monthly_used"], 2);
        assert_eq!(quota["monthly_limit"], 50000);
        assert_eq!(quota["monthly_remaining"], 49998);
        assert!(quota["reset_seconds"].as_u64().unwrap() <= 2);
    }
    assert_eq!(
        get(port, "/quota/nope/sk_admin", &[], None)
            .await
            .unwrap()
            .status,
        404
    );

    let malformed = post(port, "/check", r#"{"domain": 5}"#).await.unwrap();
    assert_eq!(malformed.status, 400);
    assert!(
        json(&malformed.body)["error"]
            .as_str()
            .unwrap()
            .contains("invalid RateLimitRequest JSON")
    );
    let invalid = post(port, "/check", r#"{"domain":"fingerprint-api"}"#)
        .await
        .unwrap();
    assert_eq!(invalid.status, 400);
    assert_eq!(
        json(&invalid.body)["error"],
        "descriptors must not be empty"
    );

    let config = json(&get(port, "/config", &[], None).await.unwrap().body);
    assert_eq!(
        config["domains"]["fingerprint-api"]["config"]["anonymous"]["per_minute"],
        5
    );

    let metrics = get(port, "/metrics", &[], None).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_after_a_known_sequence_have_exact_values() {
    let tollgate = start_tollgate(&["--config", E2E_CONFIG]);
    let port = tollgate.http_port();
    for _ in 0..3 {
        assert_eq!(post(port, "/check", CHECK).await.unwrap().status, 200);
    }
    let drain = CHECK.replace("\"domain\"", "\"hitsAddend\":100,\"domain\"");
    assert_eq!(
        json(&post(port, "/check", &drain).await.unwrap().body)["overallCode"],
        "OVER_LIMIT"
    );
    let mut client = RateLimitServiceClient::connect(format!("http://{}", tollgate.grpc_addr))
        .await
        .unwrap();
    client
        .should_rate_limit(grpc_request(
            "fingerprint-api",
            &[&[("user_id", "sk_grpc")]],
        ))
        .await
        .unwrap();
    client
        .should_rate_limit(grpc_request("", &[&[("user_id", "sk_grpc")]]))
        .await
        .unwrap_err();
    client
        .should_rate_limit(grpc_request("elsewhere", &[&[("a", "b")], &[("c", "d")]]))
        .await
        .unwrap();

    let text = get(port, "/metrics", &[], None).await.unwrap().body;
    let decisions = "tollgate_decisions_total{code=";
    assert_eq!(
        metric(
            &text,
            &format!(
                "{decisions}\"ok\",domain=\"fingerprint-api\",endpoint=\"/compare\",reason=\"within_limit\",tier=\"free\"}}"
            )
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "{decisions}\"over_limit\",domain=\"fingerprint-api\",endpoint=\"/compare\",reason=\"rate_limited\",tier=\"free\"}}"
            )
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "{decisions}\"ok\",domain=\"fingerprint-api\",endpoint=\"other\",reason=\"within_limit\",tier=\"free\"}}"
            )
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "{decisions}\"ok\",domain=\"unknown\",endpoint=\"-\",reason=\"unknown_domain\",tier=\"none\"}}"
            )
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "tollgate_backend_duration_seconds_count{backend=\"memory\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(
            &text,
            "tollgate_grpc_request_duration_seconds_count{code=\"ok\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "tollgate_grpc_request_duration_seconds_count{code=\"invalid_argument\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "tollgate_memory_entries"),
        4.0,
        "two users × (bucket + monthly)"
    );
}

#[tokio::test]
async fn metric_series_stay_constant_under_ten_thousand_users() {
    use tollgate::config::Config;
    use tollgate::limiter::{Limiter, Options};
    let store = tollgate::store::MemoryStore::new(Arc::new(tollgate::clock::ManualClock::at(
        NEW_YEARS_EVE_US,
    )));
    let limiter = Limiter::new(Config::builtin(), store, Options::default());
    let series = |limiter: &Limiter<_>| {
        limiter
            .metrics()
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    };
    let mut measured = Vec::new();
    for (from, to) in [(0, 100), (100, 10_000)] {
        for i in from..to {
            let mut call = user_call(
                &format!("sk_user_{i}"),
                ["/identify", "/compare", "/nope"][i % 3],
            );
            call.descriptors.push(tollgate::limiter::Descriptor::of(&[(
                "remote_address",
                &format!("192.0.{}.{}", i / 250, i % 250),
            )]));
            limiter.should_rate_limit(&call).await.unwrap();
        }
        measured.push(series(&limiter));
    }
    assert_eq!(
        measured[0], measured[1],
        "series after 100 users vs after 10,000"
    );
    let text = limiter.metrics().render();
    assert!(
        !text.contains("sk_user_") && !text.contains("192.0."),
        "no user or address in any label"
    );
}

/// Writes a ConfigMap-style directory: `config.yaml -> ..data/config.yaml`,
/// `..data -> ..<version>`; a new version is swapped in with one rename.
fn configmap_write(dir: &Path, version: &str, yaml: &str) {
    let target = dir.join(format!("..{version}"));
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("config.yaml"), yaml).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("config.yaml").exists() {
        std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
    }
}

const RELOADABLE: &str = "domain: reload\ntiers:\n  free: { per_minute: PER_MINUTE }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_takes_good_configs_rejects_bad_ones_and_keeps_counters_with_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    configmap_write(dir.path(), "v1", &RELOADABLE.replace("PER_MINUTE", "100"));
    let tollgate = start_tollgate(&["--config", dir.path().to_str().unwrap()]);
    let port = tollgate.http_port();
    let remaining = |body: &str| {
        json(body)["statuses"][0]["limitRemaining"]
            .as_u64()
            .unwrap_or(0)
    };
    let check = r#"{"domain":"reload","descriptors":[{"entries":[{"key":"user_id","value":"sk_reload"}]}]}"#;
    assert_eq!(
        remaining(&post(port, "/check", check).await.unwrap().body),
        149
    );

    // Requests in flight for the whole test, none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut client = RateLimitServiceClient::connect(format!("http://{}", tollgate.grpc_addr))
        .await
        .unwrap();
    let traffic = {
        let (stop, failures, sent) = (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&sent));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let request = grpc_request("reload", &[&[("user_id", "sk_background")]]);
                if client.should_rate_limit(request).await.is_err() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let wait_for = |what: &'static str, expected: serde_json::Value| async move {
        let started = Instant::now();
        loop {
            let config = json(&get(port, "/config", &[], None).await.unwrap().body);
            let metrics = get(port, "/metrics", &[], None).await.unwrap().body;
            if config["domains"]["reload"]["config"]["tiers"]["free"]["per_minute"] == expected
                && metrics.contains(what)
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what} within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    // A broken config is rejected, counted, and the old one keeps serving.
    configmap_write(dir.path(), "v2", "domain: reload\ntiers: [\n");
    wait_for(
        "tollgate_config_reloads_total{result=\"error\"}",
        serde_json::json!(100),
    )
    .await;
    let left = remaining(&post(port, "/check", check).await.unwrap().body);
    assert!(
        (148..=149).contains(&left),
        "the old config still decides (148, +1 if refilled): {left}"
    );

    // A good one takes effect; the user's bucket survives the swap.
    configmap_write(dir.path(), "v3", &RELOADABLE.replace("PER_MINUTE", "1000"));
    wait_for(
        "tollgate_config_reloads_total{result=\"ok\"}",
        serde_json::json!(1000),
    )
    .await;
    let after = json(&post(port, "/check", check).await.unwrap().body);
    assert_eq!(
        after["statuses"][0]["currentLimit"]["requestsPerUnit"],
        1000
    );
    let left = after["statuses"][0]["limitRemaining"].as_u64().unwrap();
    assert!(
        (147..=160).contains(&left),
        "the bucket kept its 2 charges (plus refill): {left}"
    );

    // SIGHUP reloads too.
    let before = metric(
        &get(port, "/metrics", &[], None).await.unwrap().body,
        "tollgate_config_reloads_total{result=\"ok\"}",
    );
    let pid = tollgate.process.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    while metric(
        &get(port, "/metrics", &[], None).await.unwrap().body,
        "tollgate_config_reloads_total{result=\"ok\"}",
    ) <= before
    {
        assert!(started.elapsed() < Duration::from_secs(5), "SIGHUP reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) > 10);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no request failed across the reloads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_first_answers_calls_in_flight_and_exits_0() {
    let mut tollgate = start_tollgate(&["--config", E2E_CONFIG, "--drain-secs", "1"]);
    let port = tollgate.http_port();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", tollgate.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..8 {
        let mut client = RateLimitServiceClient::new(channel.clone());
        calls.push(tokio::spawn(async move {
            let mut answered = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(700) {
                let request = grpc_request(
                    "fingerprint-api",
                    &[&[("user_id", &format!("sk_drain_{i}"))]],
                );
                client
                    .should_rate_limit(request)
                    .await
                    .expect("calls during the drain are answered");
                answered += 1;
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = tollgate.process.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(port, "/readyz", &[], None).await.unwrap().status,
        503,
        "readiness fails first"
    );
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, ServingStatus::NotServing as i32);
    for call in calls {
        assert!(call.await.unwrap() > 0);
    }
    let status =
        tokio::task::spawn_blocking(move || tollgate.process.0.as_mut().unwrap().wait().unwrap())
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_rejected_decision_is_one_structured_debug_line_and_allowed_ones_are_silent() {
    use std::io::{BufRead, BufReader};
    let http = common::redis::free_port();
    let mut child = std::process::Command::new(common::process::TOLLGATE)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--log-format",
            "json",
        ])
        .args(["--drain-secs", "0"])
        .env("RUST_LOG", "info,tollgate::limiter=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = common::process::Guard(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    while get(http, "/healthz", &[], None).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        post(http, "/check", CHECK).await.unwrap();
    }
    let over = CHECK.replace("\"domain\"", "\"hitsAddend\":500,\"domain\"");
    assert_eq!(
        json(&post(http, "/check", &over).await.unwrap().body)["overallCode"],
        "OVER_LIMIT"
    );
    let mut rejected = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        let value = json(&line);
        if value["message"] == "rejected" {
            rejected.push(value);
        }
    }
    assert_eq!(
        rejected.len(),
        1,
        "one line per rejected decision, none per allowed one"
    );
    assert_eq!(rejected[0]["level"], "DEBUG");
    assert_eq!(rejected[0]["domain"], "fingerprint-api");
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(common::process::TOLLGATE)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--drain-secs",
            "0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = common::process::Guard(None);
    let stderr = child.stderr.take().unwrap();
    guard.0 = Some(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = 0;
    while seen < 3 {
        let line = lines.next().unwrap().unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        seen += 1;
    }
}
