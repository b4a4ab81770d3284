//! envoyproxy/ratelimit's descriptor tree (SPEC 2b), compiled, with their
//! matching: a request descriptor of N entries walks N levels; at each level
//! `key_value` wins, then a wildcard value (`prefix*`), then the key alone; a
//! limit applies only if it sits at the Nth level.

use std::collections::HashMap;
use std::sync::Arc;

use super::raw::{RawDescriptor, RawRateLimit};
use crate::limiter::Unit;

/// A configured limit.
#[derive(Debug, PartialEq)]
pub struct Rule {
    /// `rate_limit.name` (may be empty), reported and matched by `replaces`.
    pub name: Arc<str>,
    pub unit: Unit,
    pub requests_per_unit: u32,
    pub unlimited: bool,
    /// Names of limits this one removes from the same request.
    pub replaces: Vec<String>,
    pub shadow_mode: bool,
    pub quota_mode: bool,
    pub detailed_metric: bool,
    /// The metric key: `domain.key_value.key…` from the config path.
    pub stat_key: Arc<str>,
}

/// One level of the tree.
#[derive(Debug, Default)]
pub struct Tree {
    /// By `key_value`, or `key` for key-only descriptors.
    exact: HashMap<String, Node>,
    /// `(key, value prefix, node)` for values ending in `*`.
    wildcards: Vec<(String, String, Node)>,
}

#[derive(Debug)]
struct Node {
    rule: Option<Arc<Rule>>,
    children: Tree,
    share_threshold: bool,
    value_to_metric: bool,
}

/// A match: the rule, the counter identity and the metric key.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule: Arc<Rule>,
    /// `key=value` per level; a shared wildcard counts under its pattern.
    pub counter: String,
    /// Bounded metric key (request values only where the config opts in).
    pub stat_key: String,
}

/// Seconds of each unit: envoyproxy/ratelimit's fixed windows (month = 30
/// days, year = 365 days), aligned to the Unix epoch.
pub fn unit_seconds(unit: Unit) -> u64 {
    match unit {
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3_600,
        Unit::Day => 86_400,
        Unit::Week => 604_800,
        Unit::Month => 2_592_000,
        Unit::Year => 31_536_000,
    }
}

fn parse_unit(text: &str) -> Option<Unit> {
    Some(match text.to_ascii_uppercase().as_str() {
        "SECOND" => Unit::Second,
        "MINUTE" => Unit::Minute,
        "HOUR" => Unit::Hour,
        "DAY" => Unit::Day,
        "WEEK" => Unit::Week,
        "MONTH" => Unit::Month,
        "YEAR" => Unit::Year,
        _ => return None,
    })
}

/// A compile problem: a message and the descriptor key it concerns.
pub type Problem = (String, String);

impl Tree {
    pub fn compile(domain: &str, descriptors: &[RawDescriptor]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let tree = Self::level(domain, descriptors, &mut problems);
        if problems.is_empty() {
            Ok(tree)
        } else {
            Err(problems)
        }
    }

    fn level(parent: &str, descriptors: &[RawDescriptor], problems: &mut Vec<Problem>) -> Self {
        let mut tree = Tree::default();
        for raw in descriptors {
            let composite = match raw.value.as_deref().filter(|v| !v.is_empty()) {
                Some(value) => format!("{}_{}", raw.key, value),
                None => raw.key.clone(),
            };
            let path = format!("{parent}.{composite}");
            let rule = raw
                .rate_limit
                .as_ref()
                .and_then(|limit| rule(&path, raw, limit, problems));
            let node = Node {
                rule,
                children: Self::level(
                    &path,
                    raw.descriptors.as_deref().unwrap_or_default(),
                    problems,
                ),
                share_threshold: raw.share_threshold,
                value_to_metric: raw.value_to_metric,
            };
            let duplicate = match raw.value.as_deref().and_then(|v| v.strip_suffix('*')) {
                Some(prefix) => {
                    let known = tree
                        .wildcards
                        .iter()
                        .any(|(k, p, _)| *k == raw.key && p == prefix);
                    tree.wildcards
                        .push((raw.key.clone(), prefix.to_string(), node));
                    known
                }
                None => tree.exact.insert(composite, node).is_some(),
            };
            if duplicate {
                problems.push((
                    format!("duplicate descriptor composite key '{path}'"),
                    raw.key.clone(),
                ));
            }
        }
        tree
    }

    /// The limit for a request descriptor's entries, if any.
    pub fn find(&self, domain: &str, entries: &[(&str, &str)]) -> Option<Match> {
        let mut level = self;
        let mut counter = String::new();
        let mut stat_key = String::from(domain);
        let mut found = None;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let exact = level
                .exact
                .get(&format!("{key}_{value}"))
                .map(|n| (n, false));
            let node = exact
                .or_else(|| {
                    level
                        .wildcards
                        .iter()
                        .find(|(k, prefix, _)| k == key && value.starts_with(prefix.as_str()))
                        .map(|(_, _, n)| (n, true))
                })
                .or_else(|| level.exact.get(key).map(|n| (n, false)));
            let Some((node, wildcard)) = node else { break };
            if !counter.is_empty() {
                counter.push('|');
            }
            let shared = wildcard && node.share_threshold;
            counter.push_str(key);
            counter.push('=');
            counter.push_str(if shared { "*" } else { value });
            // Values enter the metric key only where they are bounded (a
            // configured value) or the config opts in.
            let detailed = node.rule.as_ref().is_some_and(|r| r.detailed_metric);
            stat_key.push('.');
            stat_key.push_str(key);
            if exact.is_some() || node.value_to_metric || detailed {
                stat_key.push('_');
                stat_key.push_str(value);
            }
            if i == entries.len() - 1
                && let Some(rule) = &node.rule
            {
                found = Some(Match {
                    rule: Arc::clone(rule),
                    counter: counter.clone(),
                    stat_key: stat_key.clone(),
                });
            }
            if node.children.exact.is_empty() && node.children.wildcards.is_empty() {
                break;
            }
            level = &node.children;
        }
        found
    }
}

fn rule(
    path: &str,
    raw: &RawDescriptor,
    limit: &RawRateLimit,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Rule>> {
    let mut problem = |message: String| problems.push((message, raw.key.clone()));
    let unit = match (&limit.unit, limit.unlimited) {
        (Some(unit), true) => {
            problem(format!(
                "should not specify rate limit unit when unlimited ({path}: unit {unit})"
            ));
            return None;
        }
        (None, true) => Unit::Second,
        (Some(unit), false) => match parse_unit(unit) {
            Some(unit) => unit,
            None => {
                problem(format!("invalid rate limit unit '{unit}' ({path})"));
                return None;
            }
        },
        (None, false) => {
            problem(format!("rate limit without unit ({path})"));
            return None;
        }
    };
    Some(Arc::new(Rule {
        name: limit.name.as_deref().unwrap_or("").into(),
        unit,
        requests_per_unit: limit.requests_per_unit.unwrap_or(0),
        unlimited: limit.unlimited,
        replaces: limit
            .replaces
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect(),
        shadow_mode: raw.shadow_mode,
        quota_mode: raw.quota_mode,
        detailed_metric: raw.detailed_metric,
        stat_key: path.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Tree {
        let raw: Vec<RawDescriptor> = serde_yaml::from_str(yaml).unwrap();
        Tree::compile("d", &raw).unwrap()
    }

    #[test]
    fn key_value_before_wildcard_before_key() {
        let t = tree(
            "- {key: k, value: exact, rate_limit: {unit: second, requests_per_unit: 1}}\n\
             - {key: k, value: 'pre*', rate_limit: {unit: second, requests_per_unit: 2}}\n\
             - {key: k, rate_limit: {unit: second, requests_per_unit: 3}}\n",
        );
        let rpu = |v| t.find("d", &[("k", v)]).map(|m| m.rule.requests_per_unit);
        assert_eq!(rpu("exact"), Some(1));
        assert_eq!(rpu("prefix"), Some(2));
        assert_eq!(rpu("other"), Some(3));
        assert_eq!(t.find("d", &[("nope", "x")]), None);
    }

    #[test]
    fn n_entries_match_n_levels() {
        let t = tree(
            "- key: a\n  descriptors:\n    - {key: b, rate_limit: {unit: minute, requests_per_unit: 5}}\n",
        );
        assert_eq!(
            t.find("d", &[("a", "1")]),
            None,
            "a node without rate_limit means no limit"
        );
        assert_eq!(
            t.find("d", &[("a", "1"), ("b", "2")])
                .unwrap()
                .rule
                .requests_per_unit,
            5
        );
        assert_eq!(
            t.find("d", &[("a", "1"), ("b", "2"), ("c", "3")]),
            None,
            "too deep"
        );
        assert_eq!(
            t.find("d", &[("a", "1"), ("b", "2")]).unwrap().counter,
            "a=1|b=2"
        );
    }

    #[test]
    fn share_threshold_makes_wildcard_values_share_a_counter() {
        let t = tree(
            "- {key: p, value: '/api/*', share_threshold: true, rate_limit: {unit: hour, requests_per_unit: 9}}\n\
             - {key: q, value: '/api/*', rate_limit: {unit: hour, requests_per_unit: 9}}\n",
        );
        assert_eq!(t.find("d", &[("p", "/api/a")]).unwrap().counter, "p=*");
        assert_eq!(t.find("d", &[("q", "/api/a")]).unwrap().counter, "q=/api/a");
    }

    #[test]
    fn config_errors() {
        let errors = |yaml: &str| {
            let raw: Vec<RawDescriptor> = serde_yaml::from_str(yaml).unwrap();
            Tree::compile("d", &raw)
                .unwrap_err()
                .into_iter()
                .map(|(m, _)| m)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            errors("- {key: k, rate_limit: {unit: fortnight, requests_per_unit: 1}}"),
            ["invalid rate limit unit 'fortnight' (d.k)"]
        );
        assert_eq!(
            errors("- {key: k, rate_limit: {unit: second, unlimited: true}}"),
            ["should not specify rate limit unit when unlimited (d.k: unit second)"]
        );
        assert_eq!(
            errors("- {key: k, value: v}\n- {key: k, value: v}"),
            ["duplicate descriptor composite key 'd.k_v'"]
        );
    }
}
