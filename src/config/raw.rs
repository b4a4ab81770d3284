//! The configuration file as written: serde types that mirror the YAML and
//! reject unknown keys. Nothing here is validated beyond its shape; see
//! `tier.rs` for the meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One domain file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<RawKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<BTreeMap<String, RawTier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<RawRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<BTreeMap<String, String>>,
    /// envoyproxy/ratelimit's descriptor tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptors: Option<Vec<RawDescriptor>>,
}

impl RawDomain {
    /// Whether the file uses the tier model at all (a plain
    /// envoyproxy/ratelimit file does not).
    pub fn has_tier_model(&self) -> bool {
        self.keys.is_some()
            || self.tiers.is_some()
            || self.default_tier.is_some()
            || self.burst.is_some()
            || self.endpoints.is_some()
            || self.default_cost.is_some()
            || self.anonymous.is_some()
            || self.whitelist.is_some()
            || self.users.is_some()
    }
}

/// Which descriptor entry keys carry which fact.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    #[serde(default = "default_user_key")]
    pub user: String,
    #[serde(default = "default_tier_key")]
    pub tier: String,
    #[serde(default = "default_endpoint_key")]
    pub endpoint: String,
    #[serde(default = "default_ip_key")]
    pub ip: String,
}

impl Default for RawKeys {
    fn default() -> Self {
        Self {
            user: default_user_key(),
            tier: default_tier_key(),
            endpoint: default_endpoint_key(),
            ip: default_ip_key(),
        }
    }
}

fn default_user_key() -> String {
    "user_id".into()
}
fn default_tier_key() -> String {
    "tier".into()
}
fn default_endpoint_key() -> String {
    "path".into()
}
fn default_ip_key() -> String {
    "remote_address".into()
}

/// A tier's limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlimited: bool,
}

/// A per-minute rate with an optional burst (the anonymous limit).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub per_minute: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
}

/// A node of envoyproxy/ratelimit's descriptor tree, read unchanged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDescriptor {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptors: Option<Vec<RawDescriptor>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow_mode: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detailed_metric: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quota_mode: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub share_threshold: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_to_metric: bool,
}

/// A tree node's limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_unit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlimited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Vec<RawReplaces>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplaces {
    pub name: String,
}
