//! The decision suite: SPEC 2a's semantics, call by call, with an injected
//! clock. Written once and run against every backend (the `backend_suite!`
//! invocations at the bottom), so backends cannot drift apart.

mod common;

use common::backends::{MakeStore, Memory, Redis};
use common::*;
use tollgate::clock::ManualClock;
use tollgate::config::Config;
use tollgate::limiter::{Code, Decision, Descriptor, Limiter, Options, Request, Unit};
use tollgate::store::Store;

struct Harness<S> {
    limiter: Limiter<S>,
    clock: ManualClock,
}

impl<S: Store> Harness<S> {
    async fn new<M: MakeStore<Store = S>>(make: &M, config: Config) -> Self {
        let clock = ManualClock::at(NEW_YEARS_EVE_US);
        let store = make.make(clock.clone()).await;
        Self {
            limiter: Limiter::new(config, store, Options::default()),
            clock,
        }
    }

    async fn call(&self, request: &Request) -> Decision {
        self.limiter
            .should_rate_limit(request)
            .await
            .expect("decided")
    }

    /// Sends `request` until the first rejection (at most `max` times);
    /// returns how many were admitted.
    async fn admitted(&self, request: &Request, max: usize) -> usize {
        for n in 0..max {
            if self.call(request).await.overall == Code::OverLimit {
                return n;
            }
        }
        max
    }
}

fn header<'a>(decision: &'a Decision, name: &str) -> Option<&'a str> {
    decision
        .headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

mod cases {
    use super::*;

    pub async fn free_user_bursts_then_is_rejected<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let call = user_call("sk_free", "/identify");
        let first = h.call(&call).await;
        assert_eq!(first.overall, Code::Ok);
        let status = &first.statuses[0];
        let limit = status.limit.as_ref().unwrap();
        assert_eq!(
            (&*limit.name, limit.requests_per_unit, limit.unit),
            ("free", 100, Unit::Minute)
        );
        assert_eq!(status.remaining, 149, "capacity floor(100 × 1.5) = 150");
        assert_eq!(header(&first, "x-ratelimit-remaining"), Some("149"));
        assert_eq!(header(&first, "x-quota-tier"), Some("free"));
        assert_eq!(header(&first, "x-quota-monthly-remaining"), Some("49999"));
        assert_eq!(h.admitted(&call, 1000).await, 149);
        let rejected = h.call(&call).await;
        assert_eq!(rejected.statuses[0].code, Code::OverLimit);
        assert_eq!(
            header(&rejected, "retry-after"),
            Some("1"),
            "0.6 s to the next token, rounded up"
        );
        assert_eq!(header(&rejected, "ratelimit"), Some("\"free\";r=0;t=1"));
        assert_eq!(
            header(&rejected, "x-ratelimit-reset"),
            Some("90"),
            "empty → full takes 90 s"
        );
        assert_eq!(
            rejected.body.as_deref(),
            Some(r#"{"error":"rate_limit_exceeded","tier":"free","retry_after":1}"#)
        );
    }

    pub async fn refill_is_continuous<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let call = user_call("sk_refill", "/identify");
        assert_eq!(h.admitted(&call, 1000).await, 150);
        h.clock.advance(599_999);
        assert_eq!(
            h.call(&call).await.overall,
            Code::OverLimit,
            "not a whole token yet"
        );
        h.clock.advance(1);
        assert_eq!(
            h.call(&call).await.overall,
            Code::Ok,
            "0.6 s = one token at 100/min"
        );
        assert_eq!(h.call(&call).await.overall, Code::OverLimit);
        h.clock.advance(30 * SEC);
        assert_eq!(h.admitted(&call, 1000).await, 50, "30 s refill 50 tokens");
        h.clock.advance(3600 * SEC);
        assert_eq!(
            h.admitted(&call, 1000).await,
            150,
            "refill stops at capacity"
        );
    }

    pub async fn endpoint_costs<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let compare = user_call("sk_cost", "/compare?fast=1");
        assert_eq!(
            h.admitted(&compare, 1000).await,
            75,
            "/compare costs 2 of 150"
        );
        let health = user_call("sk_cost", "/health");
        for _ in 0..500 {
            let d = h.call(&health).await;
            assert_eq!(d.overall, Code::Ok, "/health costs 0: never limited");
            assert_eq!(d.statuses[0].limit, None);
        }
        let other = user_call("sk_cost2", "/unlisted");
        assert_eq!(h.admitted(&other, 1000).await, 150, "default_cost 1");
    }

    pub async fn hits_addend_request_and_descriptor<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let mut call = user_call("sk_hits", "/identify");
        call.hits_addend = 50;
        assert_eq!(h.admitted(&call, 10).await, 3, "3 × 50 = 150");
        let mut check = user_call("sk_hits2", "/identify");
        check.hits_addend = 50;
        check.descriptors[0].hits_addend = Some(0);
        for _ in 0..10 {
            assert_eq!(
                h.call(&check).await.statuses[0].limit,
                None,
                "a descriptor's 0 charges nothing"
            );
        }
        check.descriptors[0].hits_addend = Some(149);
        assert_eq!(
            h.call(&check).await.statuses[0].remaining,
            1,
            "descriptor hits win over the request's"
        );
        let mut compare = user_call("sk_hits3", "/compare");
        compare.hits_addend = 10;
        assert_eq!(
            h.call(&compare).await.statuses[0].remaining,
            130,
            "cost = endpoint cost × hits"
        );
    }

    pub async fn monthly_quota_turns_over_at_midnight_utc<M: MakeStore>(make: M) {
        let h = Harness::new(
            &make,
            config("domain: fingerprint-api\ntiers:\n  free: { per_minute: 1000, monthly: 5 }\n"),
        )
        .await;
        h.clock.set(NEW_YEARS_EVE_US + 59 * SEC); // 23:59:59
        let call = user_call("sk_month", "/identify");
        assert_eq!(h.admitted(&call, 100).await, 5);
        let rejected = h.call(&call).await;
        let status = &rejected.statuses[0];
        let limit = status.limit.as_ref().unwrap();
        assert_eq!(
            (&*limit.name, limit.unit, limit.requests_per_unit),
            ("free-monthly", Unit::Month, 5)
        );
        assert_eq!(status.reset_us, SEC, "until next month's start");
        assert_eq!(header(&rejected, "retry-after"), Some("1"));
        assert_eq!(
            header(&rejected, "ratelimit-policy"),
            Some("\"free-monthly\";q=5;w=2678400"),
            "31 days"
        );
        assert_eq!(
            rejected.body.as_deref(),
            Some(r#"{"error":"quota_exceeded","tier":"free","retry_after":1}"#)
        );
        h.clock.advance(SEC); // 2027-01-01T00:00:00Z
        let allowed = h.call(&call).await;
        assert_eq!(allowed.overall, Code::Ok);
        assert_eq!(header(&allowed, "x-quota-monthly-remaining"), Some("4"));
    }

    pub async fn unlimited_tiers_count_but_never_reject<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let mut call = user_call("sk_big", "/identify");
        call.descriptors[0].entries.push(tollgate::limiter::Entry {
            key: "tier".into(),
            value: "enterprise".into(),
        });
        call.hits_addend = 100_000;
        for _ in 0..20 {
            let d = h.call(&call).await;
            assert_eq!(d.overall, Code::Ok);
            assert_eq!(d.statuses[0].tier.as_deref(), Some("enterprise"));
        }
        // The usage was counted: the same user on the free tier is now far
        // past free's monthly quota.
        let free = user_call("sk_big", "/identify");
        let d = h.call(&free).await;
        assert_eq!(d.overall, Code::OverLimit);
        assert_eq!(d.statuses[0].limit.as_ref().unwrap().unit, Unit::Month);
        // The users map grants partner.
        let partner = user_call("sk_partner_demo", "/identify");
        let d = h.call(&partner).await;
        assert_eq!(
            (d.overall, d.statuses[0].tier.as_deref()),
            (Code::Ok, Some("partner"))
        );
    }

    pub async fn tier_entry_users_map_and_unknown_names<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let with_tier = |user: &str, tier: &str| {
            request(vec![Descriptor::of(&[
                ("user_id", user),
                ("tier", tier),
                ("path", "/identify"),
            ])])
        };
        assert_eq!(
            h.admitted(&with_tier("sk_pro", "pro"), 5000).await,
            1500,
            "pro: 1000 × 1.5"
        );
        assert_eq!(
            h.admitted(&with_tier("sk_odd", "platinum"), 5000).await,
            150,
            "unknown tier → default"
        );
    }

    pub async fn anonymous_callers_are_limited_per_ip<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let anon = |ip: &str| {
            request(vec![
                Descriptor::of(&[("path", "/identify")]),
                Descriptor::of(&[("remote_address", ip)]),
            ])
        };
        let first = h.call(&anon("192.0.2.1")).await;
        assert_eq!(
            first.statuses[0].limit, None,
            "a descriptor without user or ip is not the tier model's"
        );
        assert_eq!(
            &*first.statuses[1].limit.as_ref().unwrap().name,
            "anonymous"
        );
        assert_eq!(
            h.admitted(&anon("192.0.2.1"), 100).await,
            29,
            "30/min, burst 1.0"
        );
        assert_eq!(
            h.admitted(&anon("2001:db8::1"), 100).await,
            30,
            "another address, another bucket"
        );
        // A signed-in caller from the same drained address is limited by its tier only.
        let signed_in = request(vec![
            Descriptor::of(&[("user_id", "sk_anon_test"), ("path", "/identify")]),
            Descriptor::of(&[("remote_address", "192.0.2.1")]),
        ]);
        let d = h.call(&signed_in).await;
        assert_eq!(d.overall, Code::Ok);
        assert_eq!(d.statuses.len(), 2);
        assert_eq!(&*d.statuses[0].limit.as_ref().unwrap().name, "free");
        assert_eq!(
            d.statuses[1].limit, None,
            "the ip descriptor of a signed-in call gets OK, no limit"
        );
    }

    pub async fn whitelisted_clients_are_never_limited<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let call = request(vec![
            Descriptor::of(&[("user_id", "sk_internal"), ("path", "/identify")]),
            Descriptor::of(&[("remote_address", "10.20.30.40")]),
        ]);
        for _ in 0..400 {
            let d = h.call(&call).await;
            assert_eq!(d.overall, Code::Ok);
            assert!(d.statuses.iter().all(|s| s.limit.is_none()));
        }
        // Nothing was consumed: from outside the whitelist the user has a full bucket.
        let outside = user_call("sk_internal", "/identify");
        assert_eq!(h.call(&outside).await.statuses[0].remaining, 149);
    }

    pub async fn a_rejected_request_charges_nothing<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        assert_eq!(h.admitted(&user_call("sk_a", "/identify"), 1000).await, 150);
        let both = request(vec![
            Descriptor::of(&[("user_id", "sk_b"), ("path", "/identify")]),
            Descriptor::of(&[("user_id", "sk_a"), ("path", "/identify")]),
        ]);
        for _ in 0..10 {
            let d = h.call(&both).await;
            assert_eq!(d.overall, Code::OverLimit);
            assert_eq!(
                d.statuses[0].code,
                Code::Ok,
                "sk_b alone is within its limit"
            );
            assert_eq!(d.statuses[1].code, Code::OverLimit);
            assert_eq!(
                d.statuses[0].remaining, 150,
                "and is told its uncharged balance"
            );
        }
        assert_eq!(
            h.admitted(&user_call("sk_b", "/identify"), 1000).await,
            150,
            "sk_b was never charged"
        );
    }

    pub async fn unknown_domains_and_foreign_descriptors_are_ok<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let mut call = user_call("sk_x", "/identify");
        call.domain = "no-such-domain".into();
        call.descriptors.push(Descriptor::of(&[("k", "v")]));
        for _ in 0..200 {
            let d = h.call(&call).await;
            assert_eq!(d.overall, Code::Ok);
            assert_eq!(d.statuses.len(), 2);
            assert!(
                d.statuses
                    .iter()
                    .all(|s| s.code == Code::Ok && s.limit.is_none())
            );
        }
    }

    pub async fn a_caller_named_twice_is_charged_once<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let twice = request(vec![
            Descriptor::of(&[("user_id", "sk_twice"), ("path", "/identify")]),
            Descriptor::of(&[("user_id", "sk_twice")]),
            Descriptor::of(&[("remote_address", "192.0.2.9")]),
        ]);
        let d = h.call(&twice).await;
        assert_eq!(d.statuses[0].remaining, 149);
        assert_eq!(
            d.statuses[1].remaining, 149,
            "the same charge, reported twice"
        );
        let anonymous_twice = request(vec![
            Descriptor::of(&[("remote_address", "192.0.2.10")]),
            Descriptor::of(&[("remote_address", "192.0.2.10")]),
        ]);
        assert_eq!(h.call(&anonymous_twice).await.statuses[1].remaining, 29);
    }

    pub async fn retry_after_is_when_every_rejecting_limit_passes<M: MakeStore>(make: M) {
        let h = Harness::new(&make, config("domain: fingerprint-api\ntiers:\n  free: { per_minute: 1, burst: 1.0, monthly: 1 }\n")).await;
        let call = user_call("sk_both", "/identify");
        assert_eq!(h.call(&call).await.overall, Code::Ok);
        let d = h.call(&call).await;
        assert_eq!(d.overall, Code::OverLimit, "bucket and month both empty");
        assert_eq!(
            d.statuses[0].limit.as_ref().unwrap().unit,
            Unit::Month,
            "the month blocks longer"
        );
        assert_eq!(header(&d, "retry-after"), Some("60"), "23:59:00 → midnight");
        assert!(d.body.as_deref().unwrap().contains("quota_exceeded"));
    }

    pub async fn a_tier_change_is_seen_at_once<M: MakeStore>(make: M) {
        let yaml = "domain: fingerprint-api\ntiers:\n  free: { per_minute: 1000, monthly: 3 }\n  pro: { per_minute: 1000, monthly: 1000 }\n";
        let h = Harness::new(&make, config(yaml)).await;
        let free = user_call("sk_upgrade", "/identify");
        assert_eq!(h.admitted(&free, 10).await, 3);
        assert_eq!(h.call(&free).await.overall, Code::OverLimit);
        let pro = request(vec![Descriptor::of(&[
            ("user_id", "sk_upgrade"),
            ("tier", "pro"),
            ("path", "/identify"),
        ])]);
        let d = h.call(&pro).await;
        assert_eq!(
            d.overall,
            Code::Ok,
            "no cached rejection outlives the limit it was made under"
        );
        assert_eq!(header(&d, "x-quota-monthly-remaining"), Some("996"));
    }

    pub async fn statuses_are_one_per_descriptor_in_order<M: MakeStore>(make: M) {
        let h = Harness::new(&make, Config::builtin()).await;
        let call = request(vec![
            Descriptor::of(&[("generic_key", "x")]),
            Descriptor::of(&[("user_id", "sk_order"), ("path", "/compare")]),
            Descriptor::of(&[("remote_address", "192.0.2.77")]),
            Descriptor::of(&[
                ("user_id", "sk_order2"),
                ("tier", "pro"),
                ("path", "/health"),
            ]),
        ]);
        let d = h.call(&call).await;
        assert_eq!(d.statuses.len(), 4);
        let names: Vec<_> = d
            .statuses
            .iter()
            .map(|s| s.limit.as_ref().map(|l| l.name.to_string()))
            .collect();
        // sk_order's descriptor has no tier entry: it takes the request's
        // (SPEC 2a: a fact a descriptor lacks comes from the others).
        assert_eq!(names, [None, Some("pro".to_string()), None, None]);
        assert_eq!(d.statuses[1].remaining, 1498);
    }
}

/// Every case, on every backend.
macro_rules! all_cases {
    ($backend:ident, $make:expr) => {
        backend_suite!($backend, $make;
    free_user_bursts_then_is_rejected,
    refill_is_continuous,
    endpoint_costs,
    hits_addend_request_and_descriptor,
    monthly_quota_turns_over_at_midnight_utc,
    unlimited_tiers_count_but_never_reject,
    tier_entry_users_map_and_unknown_names,
    anonymous_callers_are_limited_per_ip,
    whitelisted_clients_are_never_limited,
    a_rejected_request_charges_nothing,
    unknown_domains_and_foreign_descriptors_are_ok,
    statuses_are_one_per_descriptor_in_order,
    a_caller_named_twice_is_charged_once,
    retry_after_is_when_every_rejecting_limit_passes,
    a_tier_change_is_seen_at_once
        );
    };
}

all_cases!(memory, Memory);

all_cases!(redis, Redis);
