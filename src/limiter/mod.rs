//! Backend-neutral decisions: everything between a validated request and
//! the store, written once for every store.
//!
//! One request: validate → look up the domain in one config snapshot →
//! plan debits (the tier model, `tier`; the descriptor tree, `tree`) → one atomic store call → a status
//! per descriptor → overall code, shadow mode → headers and 429 body.
//!
//! - `request`: the request in tollgate's terms, and its validation.
//! - `tier`: the tier model's debits and statuses.
//! - `tree`: envoyproxy/ratelimit's descriptor tree: matches, debits, statuses.
//! - `status`: the decision types.
//! - `headers`: client-facing headers and body.

pub mod headers;
pub mod request;
pub mod status;
pub mod tier;
pub mod tree;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use headers::HeaderGroups;
pub use request::{Bounds, Descriptor, Entry, InvalidRequest, LimitOverride, Request};
pub use status::{Code, Decision, LimitKind, ReportedLimit, Status, Unit};

use crate::config::Config;
use crate::limit::Debit;
use crate::metrics::Metrics;
use crate::store::{BatchOutcome, MemoryStore, Store, StoreError};
use tier::Planned;
use tree::TreePlan;

/// What to answer when the store fails or times out (SPEC 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    /// Every descriptor OK.
    Allow,
    /// Every limited descriptor OVER_LIMIT.
    Deny,
    /// Decide on an in-memory store in this replica.
    Local,
    /// gRPC UNAVAILABLE: Envoy's `failure_mode_deny` decides.
    Error,
}

impl OnBackendError {
    pub const ALL: [Self; 4] = [Self::Allow, Self::Deny, Self::Local, Self::Error];

    /// Its name in settings, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Local => "local",
            Self::Error => "error",
        }
    }
}

impl std::str::FromStr for OnBackendError {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.as_str() == text)
            .ok_or_else(|| {
                format!("unknown policy `{text}` (expected allow, deny, local or error)")
            })
    }
}

/// Behaviour that does not change with the config file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub bounds: Bounds,
    pub headers: HeaderGroups,
    /// Answer OK where the answer would be OVER_LIMIT (and count it).
    pub shadow_mode: bool,
    pub on_backend_error: OnBackendError,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bounds: Bounds::default(),
            headers: HeaderGroups::ALL,
            shadow_mode: false,
            on_backend_error: OnBackendError::Local,
        }
    }
}

/// Why no decision was made.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One descriptor's plan: the tier model's or the descriptor tree's.
#[derive(Debug, Clone)]
enum DescriptorPlan {
    Tier(tier::Plan),
    Tree(TreePlan),
}

impl DescriptorPlan {
    /// Bounded metric labels: tier (or `tree`) and endpoint pattern.
    fn labels(&self) -> (&str, &str) {
        match self {
            DescriptorPlan::Tier(plan) => plan.labels(),
            DescriptorPlan::Tree(_) => ("tree", "-"),
        }
    }

    fn charges(&self) -> bool {
        match self {
            DescriptorPlan::Tier(plan) => plan.charges(),
            DescriptorPlan::Tree(plan) => plan.charges(),
        }
    }

    fn status(
        &self,
        outcomes: &[crate::limit::Outcome],
        now_us: u64,
        domain: &str,
        metrics: &Metrics,
    ) -> Status {
        match self {
            DescriptorPlan::Tier(plan) => plan.status(outcomes, now_us),
            DescriptorPlan::Tree(plan) => plan.status(outcomes, domain, metrics),
        }
    }
}

/// What a failed store call turns into.
enum Fallback {
    /// Decided by the local fallback store.
    Decided(BatchOutcome),
    /// Every limited descriptor gets this code.
    Answer(Code),
}

/// Decides rate-limit requests against the current config and a store.
pub struct Limiter<S> {
    config: ArcSwap<Config>,
    store: S,
    options: Options,
    /// Decides while the store is failing, with `on_backend_error: local`.
    fallback: Arc<MemoryStore>,
    metrics: Arc<Metrics>,
    /// `tollgate_backend_duration_seconds` for this store, resolved once:
    /// its label never changes, and the lookup would run on every call.
    backend_duration: prometheus::Histogram,
}

impl<S: Store> Limiter<S> {
    pub fn new(config: Config, store: S, options: Options) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            config: ArcSwap::from_pointee(config),
            backend_duration: metrics.backend_duration.with_label_values(&[store.name()]),
            store,
            options,
            fallback: Arc::new(MemoryStore::default()),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Keeps the local fallback store's memory bounded (see
    /// [`MemoryStore::spawn_sweeper`]); needs a tokio runtime.
    pub fn spawn_fallback_sweeper(
        &self,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.fallback.spawn_sweeper(every)
    }

    /// Live entries held in this process: the store's and the fallback's.
    pub fn entries(&self) -> usize {
        self.store.entries() + self.fallback.len()
    }

    /// The config snapshot in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Swaps in a new config; requests in flight finish on the old one.
    pub fn replace_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Decides one request: charges every limit it touches, or none.
    pub async fn should_rate_limit(&self, request: &Request) -> Result<Decision, LimitError> {
        request.validate(&self.options.bounds)?;
        let config = self.config.load();
        let descriptors = request.descriptors.len();
        let Some(domain) = config.domain(&request.domain) else {
            // The request's domain is not a label: it is not bounded.
            self.count_all(descriptors, "unknown", "unknown_domain");
            return Ok(Decision::all_ok(descriptors));
        };
        let mut debits: Vec<Debit> = Vec::new();
        let mut plans: Vec<DescriptorPlan> = match &domain.tier_model {
            None => vec![DescriptorPlan::Tree(TreePlan::None); descriptors],
            Some(model) => match tier::plan(model, &domain.name, request, &mut debits) {
                Planned::Whitelisted => {
                    self.count_all(descriptors, &domain.name, "whitelisted");
                    return Ok(Decision::all_ok(descriptors));
                }
                Planned::Plans(plans) => plans
                    .into_iter()
                    .map(|p| p.map_or(DescriptorPlan::Tree(TreePlan::None), DescriptorPlan::Tier))
                    .collect(),
            },
        };
        // Descriptors the tier model does not own go to the descriptor tree.
        let tree_indices: Vec<usize> = (0..descriptors)
            .filter(|&i| matches!(plans[i], DescriptorPlan::Tree(_)))
            .collect();
        if !tree_indices.is_empty() {
            let tree_plans = tree::plan(domain, request, &tree_indices, &mut debits);
            for (i, plan) in tree_indices.into_iter().zip(tree_plans) {
                plans[i] = DescriptorPlan::Tree(plan);
            }
        }
        if debits.is_empty() {
            let statuses: Vec<Status> = plans
                .iter()
                .map(|p| p.status(&[], 0, &domain.name, &self.metrics))
                .collect();
            self.count(&domain.name, &plans, &statuses);
            return Ok(self.finish(&domain.name, statuses, false));
        }
        let started = std::time::Instant::now();
        let charged = self.store.charge(&debits).await;
        self.backend_duration
            .observe(started.elapsed().as_secs_f64());
        let batch = match charged {
            Ok(batch) => batch,
            Err(error) => match self.on_store_error(error, &debits).await? {
                Fallback::Decided(batch) => batch,
                Fallback::Answer(code) => {
                    let statuses: Vec<Status> = plans
                        .iter()
                        .map(|plan| match plan.charges() {
                            true => Status {
                                code,
                                ..Status::unlimited()
                            },
                            false => Status::unlimited(),
                        })
                        .collect();
                    self.count(&domain.name, &plans, &statuses);
                    return Ok(self.finish(&domain.name, statuses, code == Code::OverLimit));
                }
            },
        };
        let statuses: Vec<Status> = plans
            .iter()
            .map(|plan| plan.status(&batch.outcomes, batch.now_us, &domain.name, &self.metrics))
            .collect();
        self.count(&domain.name, &plans, &statuses);
        if !batch.admitted {
            tracing::debug!(
                domain = %domain.name,
                statuses = ?statuses.iter().map(|s| (s.code, s.limit.as_ref().map(|l| l.name.clone()), s.remaining)).collect::<Vec<_>>(),
                "rejected"
            );
        }
        Ok(self.finish(&domain.name, statuses, !batch.admitted))
    }

    /// Applies `on_backend_error` to a failed store call.
    async fn on_store_error(
        &self,
        error: StoreError,
        debits: &[Debit],
    ) -> Result<Fallback, LimitError> {
        let policy = self.options.on_backend_error;
        tracing::warn!(%error, kind = error.kind(), policy = policy.as_str(), "backend call failed");
        self.metrics
            .backend_errors
            .with_label_values(&[self.store.name(), error.kind()])
            .inc();
        self.metrics
            .fallbacks
            .with_label_values(&[policy.as_str()])
            .inc();
        match policy {
            OnBackendError::Error => Err(error.into()),
            OnBackendError::Allow => Ok(Fallback::Answer(Code::Ok)),
            OnBackendError::Deny => Ok(Fallback::Answer(Code::OverLimit)),
            OnBackendError::Local => Ok(Fallback::Decided(self.fallback.charge(debits).await?)),
        }
    }

    /// Counts each descriptor's decision (before global shadow mode).
    fn count(&self, domain: &str, plans: &[DescriptorPlan], statuses: &[Status]) {
        for (plan, status) in plans.iter().zip(statuses) {
            let (tier, endpoint) = plan.labels();
            let code = match status.code {
                Code::Ok => "ok",
                Code::OverLimit => "over_limit",
            };
            let reason = match (&status.limit, status.code) {
                (None, _) => "no_limit",
                (Some(_), Code::Ok) => "within_limit",
                (Some(limit), Code::OverLimit) => match limit.kind {
                    LimitKind::Rate => "rate_limited",
                    LimitKind::Quota => "quota_exceeded",
                },
            };
            self.metrics
                .decisions
                .with_label_values(&[domain, tier, endpoint, code, reason])
                .inc();
            if let (Some(limit), Code::Ok) = (&status.limit, status.code)
                && status.remaining as f64
                    <= limit.requests_per_unit as f64 * (1.0 - crate::metrics::NEAR_LIMIT_RATIO)
            {
                self.metrics
                    .near_limit
                    .with_label_values(&[domain, tier])
                    .inc();
            }
        }
    }

    /// Counts `n` descriptors answered OK without a limit, for `reason`.
    fn count_all(&self, n: usize, domain: &str, reason: &str) {
        self.metrics
            .decisions
            .with_label_values(&[domain, "none", "-", "ok", reason])
            .inc_by(n as u64);
    }

    /// Overall code (`over`: the request was rejected), global shadow
    /// mode, headers and body.
    fn finish(&self, domain: &str, mut statuses: Vec<Status>, over: bool) -> Decision {
        let shadow = over && self.options.shadow_mode;
        if shadow {
            self.metrics
                .shadow_mode_requests
                .with_label_values(&[domain])
                .inc();
            for status in &mut statuses {
                status.code = Code::Ok;
            }
        }
        let mut decision = Decision {
            overall: if over && !shadow {
                Code::OverLimit
            } else {
                Code::Ok
            },
            statuses,
            headers: Vec::new(),
            body: None,
        };
        if let Some(decisive) = decision.decisive() {
            (decision.headers, decision.body) = headers::render(
                decisive,
                decision.overall == Code::OverLimit,
                self.options.headers,
            );
        }
        decision
    }
}
