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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let histogram = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(histogram.clone()))
        .expect("unique metric");
    histogram
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
            decisions: counter(
                &registry,
                "tollgate_decisions_total",
                "Descriptor decisions.",
                &["domain", "tier", "endpoint", "code", "reason"],
            ),
            near_limit: counter(
                &registry,
                "tollgate_near_limit_total",
                "Allowed decisions with at least 80% of the limit used.",
                &["domain", "tier"],
            ),
            backend_duration: histogram(
                &registry,
                "tollgate_backend_duration_seconds",
                "Store call latency.",
                &["backend"],
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                ],
            ),
            backend_errors: counter(
                &registry,
                "tollgate_backend_errors_total",
                "Failed store calls.",
                &["backend", "kind"],
            ),
            fallbacks: counter(
                &registry,
                "tollgate_backend_fallbacks_total",
                "Answers given by on_backend_error.",
                &["policy"],
            ),
            grpc_duration: histogram(
                &registry,
                "tollgate_grpc_request_duration_seconds",
                "ShouldRateLimit latency.",
                &["code"],
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ],
            ),
            config_reloads: counter(
                &registry,
                "tollgate_config_reloads_total",
                "Config reloads.",
                &["result"],
            ),
            memory_entries: {
                let gauge = IntGauge::new(
                    "tollgate_memory_entries",
                    "Live entries of the in-memory store.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("unique metric");
                gauge
            },
            registry,
        }
    }

    /// The name of every metric registered (dashboards and alerts may use
    /// only these; `k8s/monitoring/exported-metrics.txt` must equal them).
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 14] = [
            &self.rule_total_hits,
            &self.rule_over_limit,
            &self.rule_near_limit,
            &self.rule_within_limit,
            &self.rule_shadow_mode,
            &self.shadow_mode_requests,
            &self.decisions,
            &self.near_limit,
            &self.backend_duration,
            &self.backend_errors,
            &self.fallbacks,
            &self.grpc_duration,
            &self.config_reloads,
            &self.memory_entries,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
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
        let mut exported = Metrics::new().names();
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
