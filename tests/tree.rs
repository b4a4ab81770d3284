//! envoyproxy/ratelimit's descriptor-tree format (SPEC 2b), table-driven:
//! (config, requests in order, expected answers), run on every backend with
//! an injected clock. Configs include the shapes of envoyproxy/ratelimit's
//! README examples ("mongo_cps", "messaging", wildcards), written here as
//! our own data, and the shipped `envoy/examples/`.

mod common;

use common::backends::{MakeStore, Memory, Redis};
use common::*;
use tollgate::clock::ManualClock;
use tollgate::config::Config;
use tollgate::limiter::{Code, Descriptor, LimitOverride, Limiter, Options, Request, Unit};

const OK: Code = Code::Ok;
const OVER: Code = Code::OverLimit;
const U32_MAX: u64 = u32::MAX as u64;

/// One call and what it must answer: the overall code, and per descriptor
/// the code and `limit_remaining` (`None`: no limit applies).
struct Step {
    advance_secs: u64,
    descriptors: Vec<Descriptor>,
    overall: Code,
    statuses: Vec<(Code, Option<u64>)>,
}

fn d(entries: &[(&str, &str)]) -> Descriptor {
    Descriptor::of(entries)
}

fn with_hits(mut descriptor: Descriptor, hits: u64) -> Descriptor {
    descriptor.hits_addend = Some(hits);
    descriptor
}

fn with_override(mut descriptor: Descriptor, requests_per_unit: u32, unit: Unit) -> Descriptor {
    descriptor.limit = Some(LimitOverride {
        requests_per_unit,
        unit,
    });
    descriptor
}

fn step(descriptors: Vec<Descriptor>, overall: Code, statuses: &[(Code, Option<u64>)]) -> Step {
    Step {
        advance_secs: 0,
        descriptors,
        overall,
        statuses: statuses.to_vec(),
    }
}

fn after(secs: u64, step: Step) -> Step {
    Step {
        advance_secs: secs,
        ..step
    }
}

/// `n` identical allowed calls counting `remaining` down from `first`.
fn countdown(descriptor: &Descriptor, first: u64, n: u64) -> Vec<Step> {
    (0..n)
        .map(|i| step(vec![descriptor.clone()], OK, &[(OK, Some(first - i))]))
        .collect()
}

async fn run<M: MakeStore>(make: &M, domain_file: &str, steps: Vec<Step>) -> Limiter<M::Store> {
    let clock = ManualClock::at(NEW_YEARS_EVE_US);
    let store = make.make(clock.clone()).await;
    let config = Config::from_sources([("tree.yaml".into(), domain_file.to_string())])
        .expect("valid config");
    let domain = config.domain_names()[0].to_string();
    let limiter = Limiter::new(config, store, Options::default());
    for (n, step) in steps.into_iter().enumerate() {
        clock.advance(step.advance_secs * SEC);
        let request = Request {
            domain: domain.clone(),
            descriptors: step.descriptors,
            hits_addend: 0,
        };
        let decision = limiter.should_rate_limit(&request).await.unwrap();
        let got: Vec<(Code, Option<u64>)> = decision
            .statuses
            .iter()
            .map(|s| {
                (
                    s.code,
                    s.limit
                        .as_ref()
                        .map(|_| s.remaining)
                        .or((s.remaining == u64::MAX).then_some(U32_MAX)),
                )
            })
            .collect();
        assert_eq!(
            (decision.overall, got),
            (step.overall, step.statuses),
            "step {n}"
        );
    }
    limiter
}

mod cases {
    use super::*;

    /// envoyproxy's "mongo_cps": per database, per second; windows roll over
    /// at the epoch-aligned second; a rejected call is not charged.
    pub async fn mongo_cps<M: MakeStore>(make: M) {
        let config = "domain: mongo_cps\ndescriptors:\n  - key: database\n    value: users\n    rate_limit:\n      unit: second\n      requests_per_unit: 3\n  - key: database\n    value: default\n    rate_limit:\n      unit: second\n      requests_per_unit: 5\n";
        let users = d(&[("database", "users")]);
        let mut steps = countdown(&users, 2, 3);
        steps.push(step(vec![users.clone()], OVER, &[(OVER, Some(0))]));
        steps.push(step(
            vec![d(&[("database", "default")])],
            OK,
            &[(OK, Some(4))],
        ));
        steps.push(step(vec![d(&[("database", "other")])], OK, &[(OK, None)]));
        steps.push(after(1, step(vec![users.clone()], OK, &[(OK, Some(2))])));
        let limiter = run(&make, config, steps).await;
        let metrics = limiter.metrics().render();
        for line in [
            "tollgate_rule_total_hits{domain=\"mongo_cps\",rule=\"mongo_cps.database_users\"} 5",
            "tollgate_rule_over_limit{domain=\"mongo_cps\",rule=\"mongo_cps.database_users\"} 1",
            "tollgate_rule_within_limit{domain=\"mongo_cps\",rule=\"mongo_cps.database_users\"} 4",
            "tollgate_rule_near_limit{domain=\"mongo_cps\",rule=\"mongo_cps.database_users\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
    }

    /// envoyproxy's "messaging": marketing messages 5 a day per number, all
    /// messages 100 a day per number; two descriptors, decided together.
    pub async fn messaging<M: MakeStore>(make: M) {
        let config = "domain: messaging\ndescriptors:\n  - key: message_type\n    value: marketing\n    descriptors:\n      - key: to_number\n        rate_limit:\n          unit: day\n          requests_per_unit: 2\n  - key: to_number\n    rate_limit:\n      unit: day\n      requests_per_unit: 100\n";
        let marketing = d(&[("message_type", "marketing"), ("to_number", "2061234567")]);
        let any = d(&[("to_number", "2061234567")]);
        let steps = vec![
            step(
                vec![marketing.clone(), any.clone()],
                OK,
                &[(OK, Some(1)), (OK, Some(99))],
            ),
            step(
                vec![marketing.clone(), any.clone()],
                OK,
                &[(OK, Some(0)), (OK, Some(98))],
            ),
            step(
                vec![marketing.clone(), any.clone()],
                OVER,
                &[(OVER, Some(0)), (OK, Some(98))],
            ),
            step(vec![any.clone()], OK, &[(OK, Some(97))]), // the rejected call charged nothing
            step(
                vec![d(&[("message_type", "marketing"), ("to_number", "555")])],
                OK,
                &[(OK, Some(1))],
            ),
            step(vec![d(&[("message_type", "marketing")])], OK, &[(OK, None)]), // one entry: level 1 has no limit
        ];
        run(&make, config, steps).await;
    }

    /// Wildcards: per-value counters, share_threshold, per-rule shadow mode.
    pub async fn wildcards_and_shadow<M: MakeStore>(make: M) {
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/envoy/examples/wildcard.yaml"
        ))
        .unwrap();
        let path = |p: &str| d(&[("path", p)]);
        let mut steps = countdown(&path("/v1/search/a"), 4, 5);
        steps.push(step(vec![path("/v1/search/a")], OVER, &[(OVER, Some(0))]));
        steps.push(step(vec![path("/v1/search/b")], OK, &[(OK, Some(4))])); // its own counter
        steps.push(step(vec![path("/v1/images/x")], OK, &[(OK, Some(99))]));
        steps.push(step(vec![path("/v1/images/y")], OK, &[(OK, Some(98))])); // shared
        steps.push(step(vec![path("/v1/admin/z")], OK, &[(OK, Some(0))]));
        steps.push(step(vec![path("/v1/admin/z")], OK, &[(OK, Some(0))])); // over, but shadow
        steps.push(step(vec![path("/v2/other")], OK, &[(OK, None)]));
        let limiter = run(&make, &config, steps).await;
        let metrics = limiter.metrics().render();
        assert!(
            metrics.contains(
                "tollgate_rule_shadow_mode{domain=\"wildcard\",rule=\"wildcard.path\"} 1"
            ),
            "{metrics}"
        );
        assert!(
            !metrics.contains("/v1/search/a"),
            "wildcard values stay out of labels:\n{metrics}"
        );
    }

    /// Per address (key only, a value per counter), a specific value first,
    /// and `unlimited`.
    pub async fn per_ip_example<M: MakeStore>(make: M) {
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/envoy/examples/per-ip.yaml"
        ))
        .unwrap();
        let ip = |a: &str| d(&[("remote_address", a)]);
        let mut steps = countdown(&ip("192.0.2.66"), 4, 5);
        steps.push(step(vec![ip("192.0.2.66")], OVER, &[(OVER, Some(0))]));
        steps.push(step(vec![ip("192.0.2.1")], OK, &[(OK, Some(59))]));
        steps.push(step(vec![ip("192.0.2.2")], OK, &[(OK, Some(59))]));
        steps.push(step(vec![ip("10.1.1.1")], OK, &[(OK, Some(U32_MAX))]));
        steps.push(after(
            60,
            step(vec![ip("192.0.2.66")], OK, &[(OK, Some(4))]),
        ));
        run(&make, &config, steps).await;
    }

    /// Nested per user and path; the second level decides.
    pub async fn per_user_per_path_example<M: MakeStore>(make: M) {
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/envoy/examples/per-user-per-path.yaml"
        ))
        .unwrap();
        let steps = vec![
            step(
                vec![d(&[("user", "alice"), ("path", "/export")])],
                OK,
                &[(OK, Some(9))],
            ),
            step(
                vec![d(&[("user", "alice"), ("path", "/list")])],
                OK,
                &[(OK, Some(99))],
            ),
            step(
                vec![d(&[("user", "bob"), ("path", "/list")])],
                OK,
                &[(OK, Some(99))],
            ),
            step(vec![d(&[("path", "/list")])], OK, &[(OK, Some(19))]),
            step(vec![d(&[("user", "alice")])], OK, &[(OK, None)]),
        ];
        run(&make, &config, steps).await;
    }

    /// `replaces` removes the replaced limit; overrides replace the
    /// configured limit and share its counter; hits 0 checks without charging.
    pub async fn replaces_overrides_and_hits<M: MakeStore>(make: M) {
        let config = "domain: r\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 1, name: narrow}\n  - key: b\n    rate_limit: {unit: minute, requests_per_unit: 10, replaces: [{name: narrow}]}\n  - key: c\n    rate_limit: {unit: minute, requests_per_unit: 100}\n";
        let steps = vec![
            step(vec![d(&[("a", "1")])], OK, &[(OK, Some(0))]),
            step(vec![d(&[("a", "1")])], OVER, &[(OVER, Some(0))]),
            step(
                vec![d(&[("a", "1")]), d(&[("b", "1")])],
                OK,
                &[(OK, None), (OK, Some(9))],
            ),
            step(
                vec![with_override(d(&[("c", "x")]), 2, Unit::Minute)],
                OK,
                &[(OK, Some(1))],
            ),
            step(
                vec![with_override(d(&[("c", "x")]), 3, Unit::Minute)],
                OK,
                &[(OK, Some(1))],
            ),
            step(
                vec![with_override(d(&[("c", "x")]), 2, Unit::Minute)],
                OVER,
                &[(OVER, Some(0))],
            ),
            step(vec![with_hits(d(&[("c", "y")]), 0)], OK, &[(OK, Some(100))]),
            step(vec![with_hits(d(&[("c", "y")]), 100)], OK, &[(OK, Some(0))]),
            step(vec![with_hits(d(&[("c", "y")]), 0)], OK, &[(OK, Some(0))]),
            step(
                vec![with_hits(d(&[("c", "y")]), 1)],
                OVER,
                &[(OVER, Some(0))],
            ),
        ];
        run(&make, config, steps).await;
    }

    /// quota_mode: over limit only when every quota-mode descriptor is over.
    pub async fn quota_mode<M: MakeStore>(make: M) {
        let config = "domain: q\ndescriptors:\n  - key: q1\n    quota_mode: true\n    rate_limit: {unit: hour, requests_per_unit: 1}\n  - key: q2\n    quota_mode: true\n    rate_limit: {unit: hour, requests_per_unit: 2}\n";
        let both = vec![d(&[("q1", "x")]), d(&[("q2", "x")])];
        let steps = vec![
            step(both.clone(), OK, &[(OK, Some(0)), (OK, Some(1))]),
            step(both.clone(), OK, &[(OVER, Some(0)), (OK, Some(0))]),
            step(both.clone(), OVER, &[(OVER, Some(0)), (OVER, Some(0))]),
        ];
        run(&make, config, steps).await;
    }

    /// One file mixes the tier model and the tree (SPEC 2a).
    pub async fn tier_model_and_tree_in_one_domain<M: MakeStore>(make: M) {
        let config = "domain: mixed\ntiers:\n  free: { per_minute: 60 }\ndescriptors:\n  - key: generic_key\n    value: batch\n    rate_limit: {unit: minute, requests_per_unit: 1}\n";
        let steps = vec![
            step(
                vec![d(&[("user_id", "u1")]), d(&[("generic_key", "batch")])],
                OK,
                &[(OK, Some(89)), (OK, Some(0))],
            ),
            step(
                vec![d(&[("user_id", "u1")]), d(&[("generic_key", "batch")])],
                OVER,
                &[(OK, Some(89)), (OVER, Some(0))],
            ),
        ];
        run(&make, config, steps).await;
    }
}

/// Every case, on every backend.
macro_rules! all_cases {
    ($backend:ident, $make:expr) => {
        backend_suite!($backend, $make;
            mongo_cps,
            messaging,
            wildcards_and_shadow,
            per_ip_example,
            per_user_per_path_example,
            replaces_overrides_and_hits,
            quota_mode,
            tier_model_and_tree_in_one_domain
        );
    };
}

all_cases!(memory, Memory);
all_cases!(redis, Redis);

/// Malformed configs: every problem with file and line, as there.
#[test]
fn malformed_tree_configs_are_refused_with_file_and_line() {
    let cases = [
        (
            "domain: d\ndescriptors:\n  - key: k\n    ratelimit: {unit: second}\n",
            "t.yaml:4: descriptors[0]: unknown field `ratelimit`",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n",
            "t.yaml:5: duplicate descriptor composite key 'd.k_v'",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, unlimited: true}\n",
            "t.yaml:3: should not specify rate limit unit when unlimited (d.k: unit second)",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "t.yaml:3: invalid rate limit unit 'fortnight' (d.k)",
        ),
    ];
    for (yaml, expected) in cases {
        let error = Config::from_sources([("t.yaml".into(), yaml.to_string())])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
}

/// Global shadow mode: every OVER_LIMIT becomes OK, and is counted.
#[tokio::test]
async fn global_shadow_mode_answers_ok_and_counts() {
    let config = Config::from_sources([(
        "s.yaml".into(),
        "domain: s\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 1}\n".to_string(),
    )])
    .unwrap();
    let store =
        tollgate::store::MemoryStore::new(std::sync::Arc::new(ManualClock::at(NEW_YEARS_EVE_US)));
    let limiter = Limiter::new(
        config,
        store,
        Options {
            shadow_mode: true,
            ..Options::default()
        },
    );
    let request = Request {
        domain: "s".into(),
        descriptors: vec![d(&[("k", "v")])],
        hits_addend: 0,
    };
    for _ in 0..3 {
        let decision = limiter.should_rate_limit(&request).await.unwrap();
        assert_eq!(decision.overall, OK);
        assert!(decision.body.is_none());
    }
    assert!(
        limiter
            .metrics()
            .render()
            .contains("tollgate_shadow_mode_requests_total{domain=\"s\"} 2")
    );
}
