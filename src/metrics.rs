//! Prometheus metrics. Handles are created once; labels stay bounded
//! (domain, rule key from the config path) — never a user, key or IP,
//! except where a rule opts in with `detailed_metric`, as in
//! envoyproxy/ratelimit.

use prometheus::{IntCounterVec, Opts, Registry};

/// Share of a limit used at which a hit counts as near the limit.
pub const NEAR_LIMIT_RATIO: f64 = 0.8;

/// Every metric tollgate exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Per descriptor-tree rule, by hits (as envoyproxy/ratelimit counts).
    pub rule_total_hits: IntCounterVec,
    pub rule_over_limit: IntCounterVec,
    pub rule_near_limit: IntCounterVec,
    pub rule_within_limit: IntCounterVec,
    pub rule_shadow_mode: IntCounterVec,
    /// Requests that global shadow mode let through.
    pub shadow_mode_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let rule = |name: &str, help: &str| {
            let counter = IntCounterVec::new(Opts::new(name, help), &["domain", "rule"])
                .expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        Self {
            rule_total_hits: rule(
                "tollgate_rule_total_hits",
                "Hits on a descriptor-tree rule.",
            ),
            rule_over_limit: rule(
                "tollgate_rule_over_limit",
                "Hits over a descriptor-tree rule's limit.",
            ),
            rule_near_limit: rule(
                "tollgate_rule_near_limit",
                "Hits at or above 80% of a rule's limit, within it.",
            ),
            rule_within_limit: rule(
                "tollgate_rule_within_limit",
                "Hits within a descriptor-tree rule's limit.",
            ),
            rule_shadow_mode: rule(
                "tollgate_rule_shadow_mode",
                "Hits over a rule's limit let through by shadow mode.",
            ),
            shadow_mode_requests: {
                let counter = IntCounterVec::new(
                    Opts::new(
                        "tollgate_shadow_mode_requests_total",
                        "OVER_LIMIT answers turned into OK by global shadow mode.",
                    ),
                    &["domain"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(counter.clone()))
                    .expect("unique metric");
                counter
            },
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding");
        out
    }
}
