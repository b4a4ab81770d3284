//! The Redis backend against real redis-server processes: NOSCRIPT after
//! SCRIPT FLUSH, a dead Redis under every failure policy and its recovery,
//! a 3-master Cluster, and the local over-limit shortcut.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisSentinel, RedisServer};
use common::*;
use tollgate::clock::ManualClock;
use tollgate::config::Config;
use tollgate::limiter::{Code, Descriptor, LimitError, Limiter, OnBackendError, Options};
use tollgate::store::{RedisOptions, RedisStore};

async fn redis_limiter(
    url: &str,
    policy: OnBackendError,
    options: RedisOptions,
) -> Limiter<RedisStore> {
    let store = RedisStore::connect(url, options).await.unwrap();
    Limiter::new(
        Config::builtin(),
        store,
        Options {
            on_backend_error: policy,
            ..Options::default()
        },
    )
}

fn real_time(timeout_ms: u64) -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..RedisOptions::default()
    }
}

fn evals(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| {
            l.split("calls=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[tokio::test]
async fn script_flush_mid_run_fails_no_decision() {
    let server = RedisServer::start();
    let limiter = redis_limiter(&server.url(), OnBackendError::Error, real_time(1000)).await;
    for i in 0..200 {
        if i % 50 == 25 {
            assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).unwrap().trim(), "OK");
        }
        let decision = limiter
            .should_rate_limit(&user_call(&format!("sk_{i}"), "/identify"))
            .await;
        assert_eq!(
            decision
                .expect("NOSCRIPT is handled by loading the script")
                .overall,
            Code::Ok
        );
    }
}

#[tokio::test]
async fn a_dead_redis_gets_each_policy_and_recovery_is_automatic() {
    let mut server = RedisServer::start();
    let cases = [
        (OnBackendError::Allow, Some(Code::Ok)),
        (OnBackendError::Deny, Some(Code::OverLimit)),
        (OnBackendError::Local, Some(Code::Ok)),
        (OnBackendError::Error, None),
    ];
    let mut limiters = Vec::new();
    for (policy, _) in cases {
        limiters.push(redis_limiter(&server.url(), policy, real_time(50)).await);
    }
    for limiter in &limiters {
        let d = limiter
            .should_rate_limit(&user_call("sk_before", "/identify"))
            .await
            .unwrap();
        assert_eq!(d.overall, Code::Ok);
    }
    server.kill();
    for (limiter, (policy, expected)) in limiters.iter().zip(cases) {
        for _ in 0..3 {
            let started = Instant::now();
            let result = limiter
                .should_rate_limit(&user_call("sk_during", "/identify"))
                .await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{policy:?}: bounded by the timeout"
            );
            match (result, expected) {
                (Ok(decision), Some(code)) => {
                    assert_eq!(decision.overall, code, "{policy:?}");
                    if policy == OnBackendError::Local {
                        let status = &decision.statuses[0];
                        assert_eq!(
                            status.limit.as_ref().map(|l| &*l.name),
                            Some("free"),
                            "decided locally"
                        );
                    }
                }
                (Err(LimitError::Store(_)), None) => {}
                (other, _) => panic!("{policy:?}: unexpected {other:?}"),
            }
        }
    }
    server.restart();
    for limiter in &limiters {
        let mut resumed = false;
        for _ in 0..100 {
            if let Ok(d) = limiter
                .should_rate_limit(&user_call("sk_after", "/identify"))
                .await
                && d.overall == Code::Ok
                && d.statuses[0].limit.is_some()
            {
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(resumed, "decisions resume without restarting tollgate");
    }
    for (limiter, (policy, _)) in limiters.iter().zip(cases) {
        let metrics = limiter.metrics().render();
        let fallbacks = format!(
            "tollgate_backend_fallbacks_total{{policy=\"{}\"}} ",
            policy.as_str()
        );
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&fallbacks) && !l.ends_with(" 0")),
            "{policy:?} counted:\n{metrics}"
        );
        assert!(
            metrics.contains("tollgate_backend_errors_total{backend=\"redis\""),
            "{metrics}"
        );
    }
    let keys = server
        .cli(&[
            "--scan",
            "--pattern",
            "tollgate:{fingerprint-api:u:sk_after}:*",
        ])
        .unwrap();
    assert_eq!(
        keys.lines().count(),
        2,
        "the bucket and monthly counter live in the restarted Redis: {keys}"
    );
}

#[tokio::test]
async fn keys_are_hash_tagged_and_expire() {
    let server = RedisServer::start();
    let limiter = redis_limiter(&server.url(), OnBackendError::Error, real_time(1000)).await;
    limiter
        .should_rate_limit(&user_call("sk_ttl", "/compare"))
        .await
        .unwrap();
    for suffix in ["b", "m"] {
        let key = format!("tollgate:{{fingerprint-api:u:sk_ttl}}:{suffix}");
        let ttl: i64 = server.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
        assert!(ttl > 0, "{key} has a TTL ({ttl})");
    }
    let bucket_ttl: i64 = server
        .cli(&["PTTL", "tollgate:{fingerprint-api:u:sk_ttl}:b"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        bucket_ttl <= 1_200 + 1_000 + 1_000 + 5,
        "two tokens refill in 1.2 s, plus 1 s slack and up to 1 s jitter: {bucket_ttl}"
    );
}

#[tokio::test]
async fn a_known_rejection_is_answered_without_a_round_trip() {
    let server = RedisServer::start();
    let clock = ManualClock::at(NEW_YEARS_EVE_US);
    let options = RedisOptions {
        clock: Some(Arc::new(clock.clone())),
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let limiter = redis_limiter(&server.url(), OnBackendError::Error, options).await;
    let call = user_call("sk_storm", "/identify");
    let mut call150 = call.clone();
    call150.hits_addend = 150;
    assert_eq!(
        limiter.should_rate_limit(&call150).await.unwrap().overall,
        Code::Ok
    );
    assert_eq!(
        limiter.should_rate_limit(&call).await.unwrap().overall,
        Code::OverLimit
    );
    let before = evals(&server);
    for _ in 0..100 {
        let d = limiter.should_rate_limit(&call).await.unwrap();
        assert_eq!(d.overall, Code::OverLimit);
        assert_eq!(d.statuses[0].retry_us, 600_000);
    }
    assert_eq!(
        evals(&server),
        before,
        "no script call while the bucket cannot have refilled"
    );
    clock.advance(600_000);
    assert_eq!(
        limiter.should_rate_limit(&call).await.unwrap().overall,
        Code::Ok,
        "asks Redis again at T"
    );
    assert_eq!(evals(&server), before + 1);
}

#[tokio::test]
async fn cluster_admits_exactly_the_capacity_and_refunds_across_nodes() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let clock = ManualClock::at(NEW_YEARS_EVE_US);
    let options = RedisOptions {
        clock: Some(Arc::new(clock)),
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let limiter = Arc::new(redis_limiter(&cluster.url(), OnBackendError::Error, options).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let limiter = Arc::clone(&limiter);
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..40 {
                let d = limiter
                    .should_rate_limit(&user_call("sk_cluster_hot", "/identify"))
                    .await
                    .unwrap();
                admitted += usize::from(d.overall == Code::Ok);
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(
        admitted, 150,
        "the clock stands still: exactly the capacity, across 8 concurrent clients"
    );

    // Two users in one request live under two hash tags (possibly two
    // nodes): a rejection by the second refunds the first.
    let both = request(vec![
        Descriptor::of(&[("user_id", "sk_cluster_fresh"), ("path", "/identify")]),
        Descriptor::of(&[("user_id", "sk_cluster_hot"), ("path", "/identify")]),
    ]);
    for _ in 0..5 {
        assert_eq!(
            limiter.should_rate_limit(&both).await.unwrap().overall,
            Code::OverLimit
        );
    }
    let fresh = limiter
        .should_rate_limit(&user_call("sk_cluster_fresh", "/identify"))
        .await
        .unwrap();
    assert_eq!(
        fresh.statuses[0].remaining, 149,
        "the rejected requests left sk_cluster_fresh whole"
    );
}

#[tokio::test]
async fn decisions_continue_on_the_new_master_after_a_sentinel_failover() {
    let mut setup = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .unwrap();
    let limiter = redis_limiter(&setup.url(), OnBackendError::Error, real_time(500)).await;
    let call = user_call("sk_failover", "/identify");
    assert_eq!(
        limiter.should_rate_limit(&call).await.unwrap().overall,
        Code::Ok
    );
    assert!(
        setup
            .master
            .cli(&["EXISTS", "tollgate:{fingerprint-api:u:sk_failover}:b"])
            .unwrap()
            .contains('1')
    );

    setup.master.kill();
    let started = Instant::now();
    let mut recovered = false;
    while started.elapsed() < Duration::from_secs(30) {
        if limiter.should_rate_limit(&call).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "no decision succeeded after the failover");
    for _ in 0..20 {
        limiter
            .should_rate_limit(&call)
            .await
            .expect("decisions keep succeeding on the new master");
    }
    let role = setup.replica.cli(&["ROLE"]).unwrap();
    assert!(
        role.starts_with("master"),
        "the replica was promoted: {role}"
    );
    let bucket = setup
        .replica
        .cli(&["GET", "tollgate:{fingerprint-api:u:sk_failover}:b"])
        .unwrap();
    assert!(!bucket.trim().is_empty(), "the new master holds the bucket");
}

#[tokio::test]
async fn replicas_with_skewed_clocks_agree_because_time_comes_from_redis() {
    use tollgate::clock::{MonotonicClock, SkewedClock};
    let server = RedisServer::start();
    let honest = redis_limiter(&server.url(), OnBackendError::Error, real_time(1000)).await;
    let skewed_clock = SkewedClock {
        inner: MonotonicClock::default(),
        offset_us: 3_600 * 1_000_000,
    };
    let skewed_options = RedisOptions {
        local_clock: Arc::new(skewed_clock),
        ..real_time(1000)
    };
    let skewed = redis_limiter(&server.url(), OnBackendError::Error, skewed_options).await;
    let call = user_call("sk_skew", "/identify");
    let mut drain = call.clone();
    drain.hits_addend = 150;
    let drained = Instant::now(); // no later than Redis's time of the drain
    assert_eq!(
        honest.should_rate_limit(&drain).await.unwrap().overall,
        Code::Ok
    );
    // The replica an hour ahead sees the same empty bucket, not an hour of refill.
    let seen = skewed.should_rate_limit(&call).await.unwrap();
    assert_eq!(seen.overall, Code::OverLimit);
    assert!(
        seen.statuses[0].retry_us <= 600_000,
        "{}",
        seen.statuses[0].retry_us
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Redis time refilled about one token (100/min); the replica an hour
    // ahead gets no more than Redis time allows, however the calls interleave.
    let mut admitted = 0;
    for replica in [&honest, &skewed, &honest, &skewed] {
        admitted +=
            usize::from(replica.should_rate_limit(&call).await.unwrap().overall == Code::Ok);
    }
    let refilled = (drained.elapsed().as_secs_f64() * 100.0 / 60.0).floor() as usize;
    assert!(
        (1..=refilled.max(1)).contains(&admitted),
        "{admitted} admitted, {refilled} tokens refilled"
    );
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (cert_file, key_file, ca_file) = (
        write("redis.pem", &cert.pem()),
        write("redis.key", &key.serialize_pem()),
        write("ca.pem", &ca_pem),
    );
    let tls_port = common::redis::free_port();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let trusted = RedisOptions {
        ca_cert: Some(ca_pem.into_bytes()),
        ..real_time(1000)
    };
    let limiter = redis_limiter(&url, OnBackendError::Error, trusted).await;
    let decision = limiter
        .should_rate_limit(&user_call("sk_tls", "/identify"))
        .await
        .expect("decided over TLS");
    assert_eq!(decision.statuses[0].remaining, 149);
    assert!(
        server
            .cli(&["EXISTS", "tollgate:{fingerprint-api:u:sk_tls}:b"])
            .unwrap()
            .contains('1')
    );

    let untrusted = redis_limiter(&url, OnBackendError::Error, real_time(1000)).await;
    let refused = untrusted
        .should_rate_limit(&user_call("sk_tls", "/identify"))
        .await;
    assert!(
        matches!(refused, Err(LimitError::Store(_))),
        "a certificate from an unknown CA is refused"
    );
}
