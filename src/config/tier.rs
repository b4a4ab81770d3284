//! The tier model (SPEC 2a), compiled: tiers resolved to bucket and monthly
//! limits, endpoints to costs, the whitelist to networks. Immutable once
//! built; every lookup here is pure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::raw::{RawDomain, RawKeys, RawRate};
use crate::limit::BucketSpec;

/// Default burst factor when neither the tier nor the domain sets one.
pub const DEFAULT_BURST: f64 = 1.5;

/// One customer tier.
#[derive(Debug, PartialEq)]
pub struct Tier {
    pub name: Arc<str>,
    /// Name of the monthly limit in statuses and headers: `<tier>-monthly`.
    pub monthly_name: Arc<str>,
    /// The per-minute bucket; `None` for an unlimited tier.
    pub bucket: Option<BucketSpec>,
    /// The monthly quota; `None` counts usage without a cap.
    pub monthly: Option<u64>,
}

/// What an endpoint costs, and the bounded label it is counted under.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointCost {
    pub cost: u64,
    /// The configured pattern that matched, or `"other"`.
    pub label: Arc<str>,
}

/// A domain's tier model.
#[derive(Debug)]
pub struct TierModel {
    pub keys: RawKeys,
    tiers: HashMap<String, Arc<Tier>>,
    default_tier: Arc<Tier>,
    users: HashMap<String, Arc<Tier>>,
    exact: HashMap<String, EndpointCost>,
    /// Prefix patterns without their `*`, longest first.
    prefixes: Vec<(String, EndpointCost)>,
    default_cost: EndpointCost,
    pub anonymous: Option<BucketSpec>,
    whitelist: Vec<IpNet>,
}

/// A problem found while compiling, with the YAML key path it concerns.
pub type Problem = (Vec<String>, String);

impl TierModel {
    /// Compiles a domain's tier model; reports every problem found.
    pub fn compile(raw: &RawDomain) -> Result<Self, Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();
        let mut problem = |path: &[&str], message: String| {
            problems.push((path.iter().map(|s| s.to_string()).collect(), message));
        };
        let domain_burst = raw.burst.unwrap_or(DEFAULT_BURST);
        if let Some(message) = burst_problem(domain_burst) {
            problem(&["burst"], message);
        }

        let mut tiers = HashMap::new();
        for (name, tier) in raw.tiers.iter().flatten() {
            let path = ["tiers", name.as_str()];
            let bucket = if tier.unlimited {
                if tier.per_minute.is_some() || tier.monthly.is_some() {
                    problem(
                        &path,
                        format!("tier `{name}` is unlimited and sets limits; choose one"),
                    );
                }
                None
            } else {
                match tier.per_minute {
                    None => {
                        problem(
                            &path,
                            format!("tier `{name}` needs `per_minute` (or `unlimited: true`)"),
                        );
                        None
                    }
                    Some(0) => {
                        problem(
                            &path,
                            format!("tier `{name}`: `per_minute` must be at least 1"),
                        );
                        None
                    }
                    Some(per_minute) => {
                        let burst = tier.burst.unwrap_or(domain_burst);
                        if let Some(message) = burst_problem(burst) {
                            problem(
                                &["tiers", name, "burst"],
                                format!("tier `{name}`: {message}"),
                            );
                        }
                        Some(BucketSpec::with_burst(per_minute, burst))
                    }
                }
            };
            tiers.insert(
                name.clone(),
                Arc::new(Tier {
                    name: name.as_str().into(),
                    monthly_name: format!("{name}-monthly").into(),
                    bucket,
                    monthly: if tier.unlimited { None } else { tier.monthly },
                }),
            );
        }

        let default_name = raw.default_tier.as_deref().unwrap_or("free");
        let default_tier = match tiers.get(default_name) {
            Some(tier) => Arc::clone(tier),
            None => {
                if raw.tiers.is_some() || raw.default_tier.is_some() {
                    problem(
                        &["default_tier"],
                        format!("default_tier `{default_name}` is not a configured tier"),
                    );
                }
                // A model with no tiers (anonymous or whitelist only) has no
                // signed-in limit: callers with a user are not limited.
                Arc::new(Tier {
                    name: "none".into(),
                    monthly_name: "none-monthly".into(),
                    bucket: None,
                    monthly: None,
                })
            }
        };

        let mut users = HashMap::new();
        for (user, tier) in raw.users.iter().flatten() {
            match tiers.get(tier) {
                Some(t) => {
                    users.insert(user.clone(), Arc::clone(t));
                }
                None => problem(
                    &["users", user],
                    format!("user `{user}`: tier `{tier}` is not a configured tier"),
                ),
            }
        }

        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (pattern, &cost) in raw.endpoints.iter().flatten() {
            let entry = EndpointCost {
                cost,
                label: pattern.as_str().into(),
            };
            match pattern.strip_suffix('*') {
                _ if pattern.is_empty() => {
                    problem(&["endpoints"], "an endpoint pattern is empty".into())
                }
                Some(prefix) if !prefix.contains('*') => prefixes.push((prefix.to_string(), entry)),
                None if !pattern.contains('*') => {
                    exact.insert(pattern.clone(), entry);
                }
                _ => problem(
                    &["endpoints", pattern],
                    format!("endpoint `{pattern}`: `*` may only end a prefix pattern"),
                ),
            }
        }
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));

        let anonymous = raw
            .anonymous
            .as_ref()
            .and_then(|RawRate { per_minute, burst }| {
                let burst = burst.unwrap_or(1.0);
                if *per_minute == 0 {
                    problem(
                        &["anonymous"],
                        "anonymous: `per_minute` must be at least 1".into(),
                    );
                    return None;
                }
                if let Some(message) = burst_problem(burst) {
                    problem(&["anonymous"], format!("anonymous: {message}"));
                }
                Some(BucketSpec::with_burst(*per_minute, burst))
            });

        let mut whitelist = Vec::new();
        for entry in raw.whitelist.iter().flatten() {
            match parse_network(entry) {
                Some(net) => whitelist.push(net),
                None => problem(
                    &["whitelist"],
                    format!("whitelist: `{entry}` is not an IP address or CIDR"),
                ),
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            keys: raw.keys.clone().unwrap_or_default(),
            tiers,
            default_tier,
            users,
            exact,
            prefixes,
            default_cost: EndpointCost {
                cost: raw.default_cost.unwrap_or(1),
                label: "other".into(),
            },
            anonymous,
            whitelist,
        })
    }

    /// The caller's tier: the tier entry when it names a configured tier,
    /// else the user's fixed tier, else the default. An unknown tier name
    /// never grants more than the default.
    pub fn tier_for(&self, tier_entry: Option<&str>, user: &str) -> &Arc<Tier> {
        tier_entry
            .and_then(|name| self.tiers.get(name))
            .or_else(|| self.users.get(user))
            .unwrap_or(&self.default_tier)
    }

    /// A named tier, for admin reads.
    pub fn tier(&self, name: &str) -> Option<&Arc<Tier>> {
        self.tiers.get(name)
    }

    /// The cost of one call to `path` (a query string is ignored): the exact
    /// pattern, else the longest matching prefix, else `default_cost`.
    pub fn endpoint(&self, path: Option<&str>) -> &EndpointCost {
        let Some(path) = path else {
            return &self.default_cost;
        };
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.exact
            .get(path)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                    .map(|(_, c)| c)
            })
            .unwrap_or(&self.default_cost)
    }

    /// Whether a client address is exempt from every limit.
    pub fn is_whitelisted(&self, ip: &str) -> bool {
        parse_ip(ip).is_some_and(|ip| self.whitelist.iter().any(|net| net.contains(&ip)))
    }
}

fn burst_problem(burst: f64) -> Option<String> {
    (!(burst.is_finite() && burst >= 1.0))
        .then(|| format!("burst must be a number ≥ 1.0, not {burst}"))
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A client address as Envoy sends it (`1.2.3.4`, `::1`), tolerating a port
/// (`1.2.3.4:5678`, `[::1]:5678`).
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> TierModel {
        let raw: RawDomain = serde_yaml::from_str(yaml).unwrap();
        TierModel::compile(&raw).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        let raw: RawDomain = serde_yaml::from_str(yaml).unwrap();
        TierModel::compile(&raw)
            .unwrap_err()
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    #[test]
    fn endpoints_exact_then_longest_prefix_then_default() {
        let m = model(
            "domain: d\ntiers: {free: {per_minute: 1}}\nendpoints: {/a: 1, /a/*: 2, /a/b/*: 3, /*: 4}\ndefault_cost: 5",
        );
        let cost = |p| m.endpoint(Some(p)).cost;
        assert_eq!(cost("/a"), 1);
        assert_eq!(cost("/a?x=1"), 1, "query string ignored");
        assert_eq!(cost("/a/x"), 2);
        assert_eq!(cost("/a/b/c"), 3);
        assert_eq!(cost("/z"), 4);
        assert_eq!(m.endpoint(Some("z")).cost, 5);
        assert_eq!(m.endpoint(None).cost, 5);
        assert_eq!(&*m.endpoint(Some("/a/b/c?q")).label, "/a/b/*");
    }

    #[test]
    fn tier_resolution_order_and_unknown_names() {
        let m = model(
            "domain: d\ntiers: {free: {per_minute: 1}, pro: {per_minute: 9}, partner: {unlimited: true}}\nusers: {u1: partner}",
        );
        assert_eq!(
            &*m.tier_for(Some("pro"), "u1").name,
            "pro",
            "tier entry first"
        );
        assert_eq!(&*m.tier_for(None, "u1").name, "partner", "then users map");
        assert_eq!(&*m.tier_for(Some("platinum"), "u1").name, "partner");
        assert_eq!(
            &*m.tier_for(Some("platinum"), "u2").name,
            "free",
            "unknown tier → default"
        );
    }

    #[test]
    fn burst_per_tier_overrides_domain_burst() {
        let m = model(
            "domain: d\nburst: 2.0\ntiers: {free: {per_minute: 10}, pro: {per_minute: 10, burst: 1.5}}",
        );
        assert_eq!(m.tier("free").unwrap().bucket.unwrap().capacity, 20);
        assert_eq!(m.tier("pro").unwrap().bucket.unwrap().capacity, 15);
    }

    #[test]
    fn whitelist_v4_v6_and_bare_addresses() {
        let m = model("domain: d\nwhitelist: [10.0.0.0/8, '2001:db8::/32', 192.0.2.7]");
        assert!(m.is_whitelisted("10.1.2.3"));
        assert!(m.is_whitelisted("10.1.2.3:443"));
        assert!(m.is_whitelisted("2001:db8::1"));
        assert!(m.is_whitelisted("192.0.2.7"));
        assert!(!m.is_whitelisted("192.0.2.8"));
        assert!(!m.is_whitelisted("not-an-ip"));
    }

    #[test]
    fn every_problem_is_reported() {
        let found = problems(
            "domain: d\ntiers: {free: {burst: 2}, gold: {per_minute: 5, burst: 0.5}, x: {unlimited: true, monthly: 3}}\ndefault_tier: silver\nusers: {u: bronze}\nwhitelist: [nope]\nendpoints: {/a*b: 1}",
        );
        let expected = [
            "tier `free` needs `per_minute` (or `unlimited: true`)",
            "tier `gold`: burst must be a number ≥ 1.0, not 0.5",
            "tier `x` is unlimited and sets limits; choose one",
            "default_tier `silver` is not a configured tier",
            "user `u`: tier `bronze` is not a configured tier",
            "endpoint `/a*b`: `*` may only end a prefix pattern",
            "whitelist: `nope` is not an IP address or CIDR",
        ];
        for message in expected {
            assert!(
                found.iter().any(|f| f == message),
                "missing {message:?} in {found:?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:?}");
    }
}
