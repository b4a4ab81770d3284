//! Client-facing headers and the 429 body (SPEC 4), rendered from the
//! decisive status. Each group can be turned off by a setting.

use super::status::{LimitKind, Status};

/// Which header groups to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderGroups {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    pub x_ratelimit: bool,
    /// `X-Quota-Tier`, `X-Quota-Monthly-Remaining`.
    pub x_quota: bool,
    /// IETF `RateLimit-Policy` and `RateLimit`.
    pub ietf: bool,
    /// On OVER_LIMIT: `Retry-After` and the JSON body.
    pub over_limit: bool,
}

impl HeaderGroups {
    pub const ALL: Self = Self {
        x_ratelimit: true,
        x_quota: true,
        ietf: true,
        over_limit: true,
    };
    pub const NONE: Self = Self {
        x_ratelimit: false,
        x_quota: false,
        ietf: false,
        over_limit: false,
    };

    /// Parses a comma-separated list: `x-ratelimit`, `x-quota`, `ietf`,
    /// `over-limit`, or `all` / `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut groups = Self::NONE;
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => groups = Self::ALL,
                "none" => {}
                "x-ratelimit" => groups.x_ratelimit = true,
                "x-quota" => groups.x_quota = true,
                "ietf" => groups.ietf = true,
                "over-limit" => groups.over_limit = true,
                other => {
                    return Err(format!(
                        "unknown header group `{other}` (expected x-ratelimit, x-quota, ietf, over-limit, all or none)"
                    ));
                }
            }
        }
        Ok(groups)
    }
}

/// The 429 body, fields in the documented order.
#[derive(serde::Serialize)]
struct OverLimitBody<'a> {
    error: &'static str,
    tier: &'a str,
    retry_after: u64,
}

/// Whole seconds, rounded up.
pub fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// Headers and body for a decision whose decisive status is `status`.
/// `rejected`: the request as a whole is over limit.
pub fn render(
    status: &Status,
    rejected: bool,
    groups: HeaderGroups,
) -> (Vec<(&'static str, String)>, Option<String>) {
    let mut headers = Vec::new();
    let Some(limit) = &status.limit else {
        return (headers, None);
    };
    let reset = ceil_secs(status.reset_us);
    let retry = ceil_secs(status.retry_us);
    if groups.x_ratelimit {
        headers.push(("x-ratelimit-limit", limit.requests_per_unit.to_string()));
        headers.push(("x-ratelimit-remaining", status.remaining.to_string()));
        headers.push(("x-ratelimit-reset", reset.to_string()));
    }
    if groups.x_quota {
        if let Some(tier) = &status.tier {
            headers.push(("x-quota-tier", tier.to_string()));
        }
        if let Some(monthly) = status.monthly_remaining {
            headers.push(("x-quota-monthly-remaining", monthly.to_string()));
        }
    }
    if groups.ietf {
        let name = &limit.name;
        headers.push((
            "ratelimit-policy",
            format!(
                "\"{name}\";q={};w={}",
                limit.requests_per_unit, limit.window_secs
            ),
        ));
        let t = if rejected { retry } else { reset };
        headers.push((
            "ratelimit",
            format!("\"{name}\";r={};t={t}", status.remaining),
        ));
    }
    let body = (rejected && groups.over_limit).then(|| {
        headers.push(("retry-after", retry.to_string()));
        headers.push(("content-type", "application/json".to_string()));
        let error = match limit.kind {
            LimitKind::Rate => "rate_limit_exceeded",
            LimitKind::Quota => "quota_exceeded",
        };
        let body = OverLimitBody {
            error,
            tier: status.tier.as_deref().unwrap_or(&limit.name),
            retry_after: retry,
        };
        serde_json::to_string(&body).expect("strings and numbers serialize")
    });
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::status::{Code, ReportedLimit, Unit};

    fn status(code: Code) -> Status {
        Status {
            code,
            limit: Some(ReportedLimit {
                name: "free".into(),
                requests_per_unit: 100,
                unit: Unit::Minute,
                window_secs: 60,
                capacity: 150,
                kind: LimitKind::Rate,
            }),
            remaining: 0,
            reset_us: 90_000_000,
            retry_us: 600_000,
            tier: Some("free".into()),
            monthly_remaining: Some(49_850),
        }
    }

    #[test]
    fn over_limit_renders_every_group() {
        let (headers, body) = render(&status(Code::OverLimit), true, HeaderGroups::ALL);
        let get = |k| {
            headers
                .iter()
                .find(|(h, _)| *h == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-ratelimit-limit"), Some("100"));
        assert_eq!(get("x-ratelimit-remaining"), Some("0"));
        assert_eq!(get("x-ratelimit-reset"), Some("90"));
        assert_eq!(get("x-quota-tier"), Some("free"));
        assert_eq!(get("x-quota-monthly-remaining"), Some("49850"));
        assert_eq!(get("ratelimit-policy"), Some("\"free\";q=100;w=60"));
        assert_eq!(
            get("ratelimit"),
            Some("\"free\";r=0;t=1"),
            "t = time until allowed, rounded up"
        );
        assert_eq!(get("retry-after"), Some("1"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(
            body.unwrap(),
            r#"{"error":"rate_limit_exceeded","tier":"free","retry_after":1}"#
        );
    }

    #[test]
    fn allowed_has_no_body_and_t_is_the_reset() {
        let (headers, body) = render(&status(Code::Ok), false, HeaderGroups::ALL);
        assert!(body.is_none());
        assert!(
            headers
                .iter()
                .any(|(h, v)| *h == "ratelimit" && v == "\"free\";r=0;t=90")
        );
        assert!(!headers.iter().any(|(h, _)| *h == "retry-after"));
    }

    #[test]
    fn groups_switch_off() {
        let groups = HeaderGroups::parse("ietf").unwrap();
        let (headers, body) = render(&status(Code::OverLimit), true, groups);
        let names: Vec<_> = headers.iter().map(|(h, _)| *h).collect();
        assert_eq!(names, ["ratelimit-policy", "ratelimit"]);
        assert!(body.is_none());
        assert_eq!(HeaderGroups::parse("none").unwrap(), HeaderGroups::NONE);
        assert!(HeaderGroups::parse("bogus").is_err());
    }
}
