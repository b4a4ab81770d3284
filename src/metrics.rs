//! Prometheus metrics. Handles are created once; labels stay bounded
//! (domain, rule key from the config path) — never a user, key or IP,
//! except where a rule opts in with `detailed_metric`, as in
//! envoyproxy/ratelimit.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Descriptor decisions by domain, tier, endpoint, code and reason.
    pub decisions: IntCounterVec,
    /// Allowed tier-model decisions with ≥ 80 % of the decisive limit used.
    pub near_limit: IntCounterVec,
    /// Store call latency.
    pub backend_duration: HistogramVec,
    /// Failed store calls by kind (timeout, connection, backend).
    pub backend_errors: IntCounterVec,
    /// Answers given by `on_backend_error` instead of the store.
    pub fallbacks: IntCounterVec,
    /// ShouldRateLimit latency by gRPC code.
    pub grpc_duration: HistogramVec,
    /// Config reloads by result (ok, error).
    pub config_reloads: IntCounterVec,
    /// Live entries of the in-memory store.
    pub memory_entries: IntGauge,
    names: Vec<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers metrics and remembers their names.
struct Registrar {
    registry: Registry,
    names: Vec<String>,
}

impl Registrar {
    fn register<C: prometheus::core::Collector + Clone + 'static>(
        &mut self,
        name: &str,
        collector: C,
    ) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .expect("unique metric");
        self.names.push(name.to_string());
        collector
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            name,
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
        )
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(name, HistogramVec::new(opts, labels).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.register(name, IntGauge::new(name, help).expect("valid metric"))
    }
}

const LATENCY_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registrar {
            registry: Registry::new(),
            names: Vec::new(),
        };
        let rule = ["domain", "rule"];
        Self {
            rule_total_hits: r.counter(
                "tollgate_rule_total_hits",
                "Hits on a descriptor-tree rule.",
                &rule,
            ),
            rule_over_limit: r.counter(
                "tollgate_rule_over_limit",
                "Hits over a descriptor-tree rule's limit.",
                &rule,
            ),
            rule_near_limit: r.counter(
                "tollgate_rule_near_limit",
                "Hits at or above 80% of a rule's limit, within it.",
                &rule,
            ),
            rule_within_limit: r.counter(
                "tollgate_rule_within_limit",
                "Hits within a descriptor-tree rule's limit.",
                &rule,
            ),
            rule_shadow_mode: r.counter(
                "tollgate_rule_shadow_mode",
                "Hits over a rule's limit let through by shadow mode.",
                &rule,
            ),
            shadow_mode_requests: r.counter(
                "tollgate_shadow_mode_requests_total",
                "OVER_LIMIT answers turned into OK by global shadow mode.",
                &["domain"],
            ),
            decisions: r.counter(
                "tollgate_decisions_total",
                "Descriptor decisions.",
                &["domain", "tier", "endpoint", "code", "reason"],
            ),
            near_limit: r.counter(
                "tollgate_near_limit_total",
                "Allowed decisions with at least 80% of the limit used.",
                &["domain", "tier"],
            ),
            backend_duration: r.histogram(
                "tollgate_backend_duration_seconds",
                "Store call latency.",
                &["backend"],
                &LATENCY_BUCKETS[..10],
            ),
            backend_errors: r.counter(
                "tollgate_backend_errors_total",
                "Failed store calls.",
                &["backend", "kind"],
            ),
            fallbacks: r.counter(
                "tollgate_backend_fallbacks_total",
                "Answers given by on_backend_error.",
                &["policy"],
            ),
            grpc_duration: r.histogram(
                "tollgate_grpc_request_duration_seconds",
                "ShouldRateLimit latency.",
                &["code"],
                &LATENCY_BUCKETS,
            ),
            config_reloads: r.counter(
                "tollgate_config_reloads_total",
                "Config reloads.",
                &["result"],
            ),
            memory_entries: r.gauge(
                "tollgate_memory_entries",
                "Live entries of the in-memory store.",
            ),
            registry: r.registry,
            names: r.names,
        }
    }

    /// The name of every metric registered (dashboards and alerts may use
    /// only these; `k8s/monitoring/exported-metrics.txt` must equal them).
    pub fn names(&self) -> &[String] {
        &self.names
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_metric_list_is_what_tollgate_registers() {
        let mut exported = Metrics::new().names().to_vec();
        exported.sort();
        let file = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/k8s/monitoring/exported-metrics.txt"
        ))
        .expect("k8s/monitoring/exported-metrics.txt");
        let mut published: Vec<String> = file
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        published.sort();
        assert_eq!(
            published, exported,
            "dashboards and alerts are checked against this list"
        );
    }
}
