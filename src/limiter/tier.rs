//! The tier model applied to one request (SPEC 2a): which descriptors it
//! owns, the debits they make, and the status each one reports.

use std::borrow::Cow;
use std::sync::Arc;

use super::request::Request;
use super::status::{Code, LimitKind, ReportedLimit, Status, Unit};
use crate::config::{Tier, TierModel};
use crate::limit::{BucketSpec, Debit, Gate, Limit, Outcome, Window, WindowSpec};

/// What one tier-model descriptor asks of the store: indices into the
/// request's debits.
#[derive(Debug, Clone)]
pub enum Plan {
    /// OK, no limit: cost 0, or an address-only descriptor of a signed-in
    /// request, or no anonymous limit configured.
    Free,
    /// A signed-in caller: its bucket (none for unlimited tiers) and its
    /// monthly counter.
    User {
        tier: Arc<Tier>,
        /// The endpoint pattern that set the cost (a bounded label).
        endpoint: Arc<str>,
        bucket: Option<usize>,
        monthly: usize,
    },
    /// A caller with no user: the anonymous bucket of its address.
    Anonymous {
        endpoint: Arc<str>,
        bucket: usize,
        spec: BucketSpec,
    },
}

/// The tier model's view of a request.
pub enum Planned {
    /// A client address is whitelisted: every descriptor OK, nothing charged.
    Whitelisted,
    /// One entry per request descriptor: `None` for descriptors the tier
    /// model does not own (they go to the descriptor tree).
    Plans(Vec<Option<Plan>>),
}

/// Facts a descriptor carries, by the model's keys.
#[derive(Default, Clone, Copy)]
struct Facts<'a> {
    user: Option<&'a str>,
    tier: Option<&'a str>,
    endpoint: Option<&'a str>,
    ip: Option<&'a str>,
}

fn facts<'a>(model: &TierModel, entries: &'a [super::request::Entry]) -> Facts<'a> {
    let keys = &model.keys;
    let mut facts = Facts::default();
    for entry in entries {
        let value = Some(entry.value.as_str()).filter(|v| !v.is_empty());
        let slot = if entry.key == keys.user {
            &mut facts.user
        } else if entry.key == keys.tier {
            &mut facts.tier
        } else if entry.key == keys.endpoint {
            &mut facts.endpoint
        } else if entry.key == keys.ip {
            &mut facts.ip
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = value;
        }
    }
    facts
}

/// Plans a request's tier-model descriptors, pushing their debits.
pub fn plan(
    model: &TierModel,
    domain: &str,
    request: &Request,
    debits: &mut Vec<Debit>,
) -> Planned {
    let own: smallvec::SmallVec<[Facts<'_>; 4]> = request
        .descriptors
        .iter()
        .map(|d| facts(model, &d.entries))
        .collect();
    if own
        .iter()
        .filter_map(|f| f.ip)
        .any(|ip| model.is_whitelisted(ip))
    {
        return Planned::Whitelisted;
    }
    // Request-wide facts: the first of each, for descriptors that lack one.
    let shared = own.iter().fold(Facts::default(), |acc, f| Facts {
        user: acc.user.or(f.user),
        tier: acc.tier.or(f.tier),
        endpoint: acc.endpoint.or(f.endpoint),
        ip: acc.ip.or(f.ip),
    });
    // A caller named by several descriptors (Envoy actions `[user_id, path]`
    // and `[user_id]`) is charged once per request: later descriptors share
    // the first one's plan.
    let mut planned: smallvec::SmallVec<[(&str, &str, Plan); 2]> = smallvec::SmallVec::new();
    let plans = own
        .iter()
        .enumerate()
        .map(|(index, facts)| {
            if facts.user.is_none() && facts.ip.is_none() {
                return None;
            }
            let caller = match (facts.user, facts.ip) {
                (Some(user), _) => ("u", user),
                (None, Some(ip)) => ("ip", ip),
                (None, None) => unreachable!("checked above"),
            };
            if let Some((_, _, plan)) = planned.iter().find(|(k, id, _)| (*k, *id) == caller) {
                return Some(plan.clone());
            }
            let endpoint = model.endpoint(facts.endpoint.or(shared.endpoint));
            let cost = endpoint.cost * request.hits(index);
            let plan = match (facts.user, facts.ip) {
                _ if cost == 0 => Plan::Free,
                (Some(user), _) => {
                    let tier = model.tier_for(facts.tier.or(shared.tier), user);
                    let bucket = tier.bucket.map(|spec| {
                        debits.push(Debit {
                            key: key(domain, "u", user, "b"),
                            limit: Limit::Bucket(spec),
                            cost,
                            gate: Gate::Enforce,
                        });
                        debits.len() - 1
                    });
                    let monthly = WindowSpec {
                        window: Window::Month,
                        limit: tier.monthly,
                    };
                    debits.push(Debit {
                        key: key(domain, "u", user, "m"),
                        limit: Limit::Window(monthly),
                        cost,
                        gate: Gate::Enforce,
                    });
                    Plan::User {
                        tier: Arc::clone(tier),
                        endpoint: Arc::clone(&endpoint.label),
                        bucket,
                        monthly: debits.len() - 1,
                    }
                }
                // Signed-in requests are limited once, by their tier.
                (None, Some(_)) if shared.user.is_some() => Plan::Free,
                (None, Some(ip)) => match model.anonymous {
                    Some(spec) => {
                        debits.push(Debit {
                            key: key(domain, "ip", ip, "b"),
                            limit: Limit::Bucket(spec),
                            cost,
                            gate: Gate::Enforce,
                        });
                        Plan::Anonymous {
                            endpoint: Arc::clone(&endpoint.label),
                            bucket: debits.len() - 1,
                            spec,
                        }
                    }
                    None => Plan::Free,
                },
                (None, None) => unreachable!("checked above"),
            };
            if plan.charges() {
                planned.push((caller.0, caller.1, plan.clone()));
            }
            Some(plan)
        })
        .collect();
    Planned::Plans(plans)
}

/// A store key: `{<domain>:<kind>:<id>}:<suffix>`. The braces are a Redis
/// Cluster hash tag, so one caller's bucket and monthly counter share a
/// slot. `%`, `:`, `{` and `}` inside names are percent-encoded, so no two
/// (domain, id) pairs share a key.
pub fn key(domain: &str, kind: &str, id: &str, suffix: &str) -> String {
    let (domain, id) = (escape(domain), escape(id));
    let mut key = String::with_capacity(domain.len() + kind.len() + id.len() + suffix.len() + 5);
    for part in ["{", &domain, ":", kind, ":", &id, "}:", suffix] {
        key.push_str(part);
    }
    key
}

fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', ':', '{', '}']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 6);
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

impl Plan {
    /// Bounded metric labels: tier and endpoint pattern.
    pub fn labels(&self) -> (&str, &str) {
        match self {
            Plan::Free => ("none", "-"),
            Plan::User { tier, endpoint, .. } => (&tier.name, endpoint),
            Plan::Anonymous { endpoint, .. } => ("anonymous", endpoint),
        }
    }

    /// Whether the plan charges anything (a failing store concerns it).
    pub fn charges(&self) -> bool {
        !matches!(self, Plan::Free)
    }

    /// This descriptor's status, from the store's outcomes.
    pub fn status(&self, outcomes: &[Outcome], now_us: u64) -> Status {
        match self {
            Plan::Free => Status::unlimited(),
            Plan::Anonymous { bucket, spec, .. } => status(
                outcomes[*bucket],
                per_minute("anonymous".into(), spec),
                None,
                None,
            ),
            Plan::User {
                tier,
                bucket,
                monthly,
                ..
            } => {
                let monthly_outcome = outcomes[*monthly];
                let monthly_remaining = tier.monthly.map(|_| monthly_outcome.remaining);
                let mut candidates = Vec::with_capacity(2);
                if let (Some(i), Some(spec)) = (bucket, tier.bucket) {
                    candidates.push((outcomes[*i], per_minute(Arc::clone(&tier.name), &spec)));
                }
                if let Some(monthly) = tier.monthly {
                    let span = Window::Month.span_at(now_us);
                    let limit = ReportedLimit {
                        name: Arc::clone(&tier.monthly_name),
                        requests_per_unit: monthly,
                        unit: Unit::Month,
                        window_secs: (span.end_us - span.start_us) / 1_000_000,
                        capacity: monthly,
                        kind: LimitKind::Quota,
                    };
                    candidates.push((monthly_outcome, limit));
                }
                // The limit that rejected (when both did, the one that
                // blocks longer: Retry-After must be when the request
                // passes), else the one with less left.
                let decisive = (0..candidates.len())
                    .filter(|&i| !candidates[i].0.allowed)
                    .max_by_key(|&i| candidates[i].0.retry_us)
                    .or_else(|| (0..candidates.len()).min_by_key(|&i| candidates[i].0.remaining));
                match decisive {
                    Some(i) => {
                        let (outcome, limit) = candidates.swap_remove(i);
                        status(
                            outcome,
                            limit,
                            Some(Arc::clone(&tier.name)),
                            monthly_remaining,
                        )
                    }
                    // Unlimited: counted, never rejected.
                    None => Status {
                        tier: Some(Arc::clone(&tier.name)),
                        ..Status::unlimited()
                    },
                }
            }
        }
    }
}

/// A token bucket, reported as its per-minute rate.
fn per_minute(name: Arc<str>, spec: &BucketSpec) -> ReportedLimit {
    ReportedLimit {
        name,
        requests_per_unit: spec.per_minute,
        unit: Unit::Minute,
        window_secs: 60,
        capacity: spec.capacity,
        kind: LimitKind::Rate,
    }
}

fn status(
    outcome: Outcome,
    limit: ReportedLimit,
    tier: Option<Arc<str>>,
    monthly_remaining: Option<u64>,
) -> Status {
    Status {
        code: if outcome.allowed {
            Code::Ok
        } else {
            Code::OverLimit
        },
        limit: Some(limit),
        remaining: outcome.remaining,
        reset_us: outcome.reset_us,
        retry_us: outcome.retry_us,
        tier,
        monthly_remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_share_a_hash_tag_and_never_collide() {
        assert_eq!(key("api", "u", "sk_1", "b"), "{api:u:sk_1}:b");
        assert_eq!(key("api", "u", "sk_1", "m"), "{api:u:sk_1}:m");
        assert_ne!(key("a", "u", "u:x", "b"), key("a:u", "u", "x", "b"));
        assert_eq!(key("a", "u", "x}{y", "b"), "{a:u:x%7D%7By}:b");
    }
}
