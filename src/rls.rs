//! The gRPC edge: `envoy.service.ratelimit.v3.RateLimitService`. Converts
//! protobuf to the limiter's types and back, and maps errors to gRPC
//! statuses in one place. No decisions are made here.

use std::sync::Arc;

use tonic::{Request as GrpcRequest, Response as GrpcResponse};

use crate::limiter::{self, Code, Decision, LimitError, Limiter, Unit};
use crate::proto::common::rate_limit_descriptor::RateLimitOverride;
use crate::proto::envoy::config::core::v3::HeaderValue;
use crate::proto::envoy::r#type::v3::RateLimitUnit;
use crate::proto::rls::rate_limit_response::{
    Code as ProtoCode, DescriptorStatus, RateLimit, rate_limit::Unit as ProtoUnit,
};
use crate::proto::rls::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use crate::proto::rls::{RateLimitRequest, RateLimitResponse};
use crate::store::Store;

/// The RLS gRPC service over a limiter.
pub struct RlsService<S> {
    limiter: Arc<Limiter<S>>,
    /// `tollgate_grpc_request_duration_seconds` by outcome, resolved once
    /// rather than looked up by label on every call.
    duration_ok: prometheus::Histogram,
    duration_invalid: prometheus::Histogram,
    duration_unavailable: prometheus::Histogram,
}

impl<S: Store> RlsService<S> {
    pub fn new(limiter: Arc<Limiter<S>>) -> Self {
        let duration = |code: &str| limiter.metrics().grpc_duration.with_label_values(&[code]);
        Self {
            duration_ok: duration("ok"),
            duration_invalid: duration("invalid_argument"),
            duration_unavailable: duration("unavailable"),
            limiter,
        }
    }

    pub fn into_server(self) -> RateLimitServiceServer<Self> {
        RateLimitServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl<S: Store> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: GrpcRequest<RateLimitRequest>,
    ) -> Result<GrpcResponse<RateLimitResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let request = from_proto(request.into_inner());
        let result = match self.limiter.should_rate_limit(&request).await {
            Ok(decision) => Ok(GrpcResponse::new(to_proto(decision))),
            Err(error) => Err(to_status(error)),
        };
        let duration = match &result {
            Ok(_) => &self.duration_ok,
            Err(status) if status.code() == tonic::Code::InvalidArgument => &self.duration_invalid,
            Err(_) => &self.duration_unavailable,
        };
        duration.observe(started.elapsed().as_secs_f64());
        result
    }
}

/// The one mapping from limiter errors to gRPC statuses.
pub fn to_status(error: LimitError) -> tonic::Status {
    match error {
        LimitError::Invalid(invalid) => tonic::Status::invalid_argument(invalid.to_string()),
        LimitError::Store(store) => tonic::Status::unavailable(store.to_string()),
    }
}

/// A protobuf request in the limiter's terms (strings are moved, not copied).
pub fn from_proto(request: RateLimitRequest) -> limiter::Request {
    limiter::Request {
        domain: request.domain,
        hits_addend: u64::from(request.hits_addend),
        descriptors: request
            .descriptors
            .into_iter()
            .map(|d| limiter::Descriptor {
                entries: d
                    .entries
                    .into_iter()
                    .map(|e| limiter::Entry {
                        key: e.key,
                        value: e.value,
                    })
                    .collect(),
                hits_addend: d.hits_addend,
                limit: d.limit.and_then(override_from_proto),
            })
            .collect(),
    }
}

fn override_from_proto(limit: RateLimitOverride) -> Option<limiter::LimitOverride> {
    let unit = match RateLimitUnit::try_from(limit.unit).ok()? {
        RateLimitUnit::Second => Unit::Second,
        RateLimitUnit::Minute => Unit::Minute,
        RateLimitUnit::Hour => Unit::Hour,
        RateLimitUnit::Day => Unit::Day,
        RateLimitUnit::Month => Unit::Month,
        RateLimitUnit::Year => Unit::Year,
        RateLimitUnit::Unknown => return None,
    };
    Some(limiter::LimitOverride {
        requests_per_unit: limit.requests_per_unit,
        unit,
    })
}

fn code(code: Code) -> i32 {
    match code {
        Code::Ok => ProtoCode::Ok,
        Code::OverLimit => ProtoCode::OverLimit,
    }
    .into()
}

fn unit(unit: Unit) -> i32 {
    match unit {
        Unit::Second => ProtoUnit::Second,
        Unit::Minute => ProtoUnit::Minute,
        Unit::Hour => ProtoUnit::Hour,
        Unit::Day => ProtoUnit::Day,
        Unit::Week => ProtoUnit::Week,
        Unit::Month => ProtoUnit::Month,
        Unit::Year => ProtoUnit::Year,
    }
    .into()
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A decision as Envoy's `RateLimitResponse`.
pub fn to_proto(decision: Decision) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code(decision.overall),
        statuses: decision
            .statuses
            .into_iter()
            .map(|status| DescriptorStatus {
                code: code(status.code),
                // Also for `unlimited` rules, which report 4294967295 and no limit.
                limit_remaining: saturate(status.remaining),
                duration_until_reset: status.limit.as_ref().map(|_| duration(status.reset_us)),
                current_limit: status.limit.map(|limit| RateLimit {
                    name: limit.name.to_string(),
                    requests_per_unit: saturate(limit.requests_per_unit),
                    unit: unit(limit.unit),
                }),
                quota: None,
            })
            .collect(),
        response_headers_to_add: decision
            .headers
            .into_iter()
            .map(|(key, value)| HeaderValue {
                key: key.to_string(),
                value,
                raw_value: Vec::new(),
            })
            .collect(),
        request_headers_to_add: Vec::new(),
        raw_body: decision.body.map(String::into_bytes).unwrap_or_default(),
        dynamic_metadata: None,
        quota: None,
    }
}

fn duration(us: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (us / 1_000_000) as i64,
        nanos: ((us % 1_000_000) * 1_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Status;

    #[test]
    fn unlimited_rules_report_the_largest_remaining_on_the_wire() {
        let unlimited = Status {
            remaining: u64::MAX,
            ..Status::unlimited()
        };
        let response =
            to_proto(Decision::all_ok(0).with_statuses(vec![unlimited, Status::unlimited()]));
        assert_eq!(response.statuses[0].limit_remaining, u32::MAX);
        assert!(response.statuses[0].current_limit.is_none());
        assert_eq!(response.statuses[1].limit_remaining, 0);
    }
}
