//! envoyproxy/ratelimit's descriptor tree applied to one request (SPEC 2b):
//! match, `replaces`, `limit` overrides, fixed-window debits, statuses and
//! per-rule metrics.

use std::collections::HashSet;
use std::sync::Arc;

use super::request::Request;
use super::status::{Code, LimitKind, ReportedLimit, Status};
use super::tier::key;
use crate::config::tree::unit_seconds;
use crate::config::{Domain, Match, Rule};
use crate::limit::{Debit, Gate, Limit, Outcome, Window, WindowSpec};
use crate::metrics::{Metrics, NEAR_LIMIT_RATIO};

/// What one tree descriptor asks of the store.
#[derive(Debug, Clone)]
pub enum TreePlan {
    /// No rule matched (or it was replaced): OK, no limit.
    None,
    /// An `unlimited` rule: OK, remaining 4294967295.
    Unlimited,
    /// A limited rule and the index of its debit.
    Limited {
        debit: usize,
        limit: ReportedLimit,
        shadow: bool,
        stat_key: Arc<str>,
        hits: u64,
    },
}

/// Plans the descriptors at `indices` (those the tier model does not own).
pub fn plan(
    domain: &Domain,
    request: &Request,
    indices: &[usize],
    debits: &mut Vec<Debit>,
) -> Vec<TreePlan> {
    // Match every descriptor first: `replaces` looks across the request.
    let matches: Vec<Option<Match>> = indices
        .iter()
        .map(|&i| {
            let descriptor = &request.descriptors[i];
            let entries: smallvec::SmallVec<[(&str, &str); 4]> = descriptor
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            if let Some(limit) = descriptor.limit {
                // The override replaces the configured limit; the counter is
                // keyed by the entries, not the override's value, so changing
                // overrides cannot grow state without bound.
                let counter = entries
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("|");
                let rule = Rule {
                    name: "".into(),
                    unit: limit.unit,
                    requests_per_unit: limit.requests_per_unit,
                    unlimited: false,
                    replaces: Vec::new(),
                    shadow_mode: false,
                    quota_mode: false,
                    detailed_metric: false,
                    stat_key: format!("{}.override", domain.name).into(),
                };
                let stat_key = rule.stat_key.to_string();
                return Some(Match {
                    rule: Arc::new(rule),
                    counter,
                    stat_key,
                });
            }
            domain.tree.find(&domain.name, &entries)
        })
        .collect();
    let replaced: HashSet<String> = matches
        .iter()
        .flatten()
        .flat_map(|m| m.rule.replaces.iter().cloned())
        .collect();

    matches
        .into_iter()
        .zip(indices)
        .map(|(matched, &i)| {
            let Some(Match {
                rule,
                counter,
                stat_key,
            }) = matched
            else {
                return TreePlan::None;
            };
            if !rule.name.is_empty() && replaced.contains(&*rule.name) {
                return TreePlan::None;
            }
            if rule.unlimited {
                return TreePlan::Unlimited;
            }
            let seconds = unit_seconds(rule.unit);
            let hits = request.hits(i);
            debits.push(Debit {
                key: key(&domain.name, "t", &counter, &seconds.to_string()),
                limit: Limit::Window(WindowSpec {
                    window: Window::Fixed { seconds },
                    limit: Some(u64::from(rule.requests_per_unit)),
                }),
                cost: hits,
                gate: if rule.shadow_mode {
                    Gate::Shadow
                } else if rule.quota_mode {
                    Gate::Quota
                } else {
                    Gate::Enforce
                },
            });
            TreePlan::Limited {
                debit: debits.len() - 1,
                limit: ReportedLimit {
                    name: Arc::clone(&rule.name),
                    requests_per_unit: u64::from(rule.requests_per_unit),
                    unit: rule.unit,
                    window_secs: seconds,
                    capacity: u64::from(rule.requests_per_unit),
                    kind: LimitKind::Rate,
                },
                shadow: rule.shadow_mode,
                stat_key: stat_key.into(),
                hits,
            }
        })
        .collect()
}

impl TreePlan {
    /// Whether the plan charges anything.
    pub fn charges(&self) -> bool {
        matches!(self, TreePlan::Limited { .. })
    }

    /// This descriptor's status; counts the rule's metrics.
    pub fn status(&self, outcomes: &[Outcome], domain: &str, metrics: &Metrics) -> Status {
        match self {
            TreePlan::None => Status::unlimited(),
            TreePlan::Unlimited => Status {
                remaining: u64::MAX,
                ..Status::unlimited()
            },
            TreePlan::Limited {
                debit,
                limit,
                shadow,
                stat_key,
                hits,
            } => {
                let outcome = outcomes[*debit];
                let labels = [domain, &**stat_key];
                metrics
                    .rule_total_hits
                    .with_label_values(&labels)
                    .inc_by(*hits);
                if outcome.allowed {
                    // As envoyproxy/ratelimit: near when the count after this
                    // hit passes floor(limit × 0.8).
                    let used = limit.requests_per_unit.saturating_sub(outcome.remaining);
                    let threshold =
                        (limit.requests_per_unit as f64 * NEAR_LIMIT_RATIO).floor() as u64;
                    if used > threshold {
                        metrics
                            .rule_near_limit
                            .with_label_values(&labels)
                            .inc_by(*hits);
                    }
                    metrics
                        .rule_within_limit
                        .with_label_values(&labels)
                        .inc_by(*hits);
                } else {
                    metrics
                        .rule_over_limit
                        .with_label_values(&labels)
                        .inc_by(*hits);
                    if *shadow {
                        metrics
                            .rule_shadow_mode
                            .with_label_values(&labels)
                            .inc_by(*hits);
                    }
                }
                Status {
                    code: if outcome.allowed || *shadow {
                        Code::Ok
                    } else {
                        Code::OverLimit
                    },
                    limit: Some(limit.clone()),
                    remaining: outcome.remaining,
                    reset_us: outcome.reset_us,
                    retry_us: outcome.retry_us,
                    tier: None,
                    monthly_remaining: None,
                }
            }
        }
    }
}
