//! What the limiter answers: a code per descriptor with the limit that
//! decided it, the overall code, and what to tell the client.

use std::sync::Arc;

/// A descriptor's or the request's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    OverLimit,
}

/// Units of a reported limit (Envoy's `RateLimitResponse.RateLimit.Unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// Which kind of limit rejected: it picks the error in the 429 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A rate (token bucket, fixed window): `rate_limit_exceeded`.
    Rate,
    /// The monthly quota: `quota_exceeded`.
    Quota,
}

/// The limit a status reports (`current_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedLimit {
    pub name: Arc<str>,
    pub requests_per_unit: u64,
    pub unit: Unit,
    /// Length of the limit's window in seconds (`w` of `RateLimit-Policy`).
    pub window_secs: u64,
    /// Most the limit can hold at once: the bucket's burst capacity, or
    /// `requests_per_unit` for a window (for near-limit counting).
    pub capacity: u64,
    pub kind: LimitKind,
}

/// One descriptor's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    /// The limit that decided; `None` when no limit applies.
    pub limit: Option<ReportedLimit>,
    /// Whole units left of that limit.
    pub remaining: u64,
    /// Microseconds until the limit is whole again.
    pub reset_us: u64,
    /// Microseconds until the request would be allowed (0 when allowed).
    pub retry_us: u64,
    /// The caller's tier (tier model only).
    pub tier: Option<Arc<str>>,
    /// What is left of the caller's monthly quota (tier model only).
    pub monthly_remaining: Option<u64>,
}

impl Status {
    /// `OK`, no limit applies.
    pub fn unlimited() -> Self {
        Self {
            code: Code::Ok,
            limit: None,
            remaining: 0,
            reset_us: 0,
            retry_us: 0,
            tier: None,
            monthly_remaining: None,
        }
    }
}

/// The limiter's whole answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub overall: Code,
    /// One per request descriptor, in request order.
    pub statuses: Vec<Status>,
    /// Headers for the client response.
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body for the 429, when over limit.
    pub body: Option<String>,
}

impl Decision {
    /// Every descriptor `OK`, no limit: unknown domain, whitelisted client.
    pub fn all_ok(descriptors: usize) -> Self {
        Self {
            overall: Code::Ok,
            statuses: vec![Status::unlimited(); descriptors],
            headers: Vec::new(),
            body: None,
        }
    }

    /// The same decision with other statuses (tests and adapters).
    pub fn with_statuses(self, statuses: Vec<Status>) -> Self {
        Self { statuses, ..self }
    }

    /// The status the client-facing headers describe: of the rejected ones
    /// the one that blocks longest (so Retry-After is when the request can
    /// pass), else the limited one with the least left.
    pub fn decisive(&self) -> Option<&Status> {
        self.statuses
            .iter()
            .filter(|s| self.overall == Code::OverLimit && s.code == Code::OverLimit)
            .max_by_key(|s| s.retry_us)
            .or_else(|| {
                self.statuses
                    .iter()
                    .filter(|s| s.limit.is_some())
                    .min_by_key(|s| s.remaining)
            })
    }
}
