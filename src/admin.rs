//! The HTTP admin server (SPEC 5): metrics, liveness and readiness, status,
//! a read-only quota view, `POST /check` for callers that are not Envoy, and
//! the active config. Everything here reads; only `/check` decides (and
//! charges, like a gRPC call).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::limit::{Debit, Gate, Limit, Window, WindowSpec};
use crate::limiter::Limiter;
use crate::limiter::tier::key;
use crate::store::Store;

/// Largest count a Lua double holds exactly: the cap used to read an
/// uncapped monthly counter.
const UNCAPPED: u64 = (1 << 53) - 1;

/// What the admin endpoints read.
pub struct Admin<S> {
    pub limiter: Arc<Limiter<S>>,
    /// False once shutdown began: `/readyz` answers 503 first.
    pub accepting: AtomicBool,
    pub started: Instant,
}

impl<S: Store> Admin<S> {
    pub fn new(limiter: Arc<Limiter<S>>) -> Arc<Self> {
        Arc::new(Self {
            limiter,
            accepting: AtomicBool::new(true),
            started: Instant::now(),
        })
    }

    /// Config loaded (always, once built), backend answering, not shutting down.
    pub async fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::SeqCst) && self.limiter.store().ready().await.is_ok()
    }
}

/// The admin routes.
pub fn router<S: Store>(admin: Arc<Admin<S>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/status", get(status::<S>))
        .route("/quota/{domain}/{user}", get(quota::<S>))
        .route("/check", post(check::<S>))
        .route("/config", get(config::<S>))
        .with_state(admin)
}

async fn metrics<S: Store>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let metrics = admin.limiter.metrics();
    metrics
        .memory_entries
        .set(admin.limiter.store().entries() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

async fn readyz<S: Store>(State(admin): State<Arc<Admin<S>>>) -> Response {
    if admin.is_ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn status<S: Store>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let config = admin.limiter.config();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backend": admin.limiter.store().name(),
        "domains": config.domain_names(),
        "uptime_seconds": admin.started.elapsed().as_secs(),
    }))
    .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// What a user has left, charging nothing.
async fn quota<S: Store>(
    State(admin): State<Arc<Admin<S>>>,
    Path((domain, user)): Path<(String, String)>,
) -> Response {
    let config = admin.limiter.config();
    let Some(model) = config.domain(&domain).and_then(|d| d.tier_model.as_ref()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("domain `{domain}` has no tier model"),
        );
    };
    let tier = model.tier_for(None, &user);
    let monthly_cap = tier.monthly.unwrap_or(UNCAPPED);
    let mut debits = vec![Debit {
        key: key(&domain, "u", &user, "m"),
        limit: Limit::Window(WindowSpec {
            window: Window::Month,
            limit: Some(monthly_cap),
        }),
        cost: 0,
        gate: Gate::Enforce,
    }];
    if let Some(spec) = tier.bucket {
        debits.push(Debit {
            key: key(&domain, "u", &user, "b"),
            limit: Limit::Bucket(spec),
            cost: 0,
            gate: Gate::Enforce,
        });
    }
    let batch = match admin.limiter.store().peek(&debits).await {
        Ok(batch) => batch,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let monthly = batch.outcomes[0];
    let bucket = batch.outcomes.get(1);
    let reset_us = bucket.map_or(monthly.reset_us, |b| b.reset_us);
    axum::Json(json!({
        "tier": &*tier.name,
        "tokens": bucket.map(|b| b.remaining),
        "capacity": tier.bucket.map(|s| s.capacity),
        "per_minute": tier.bucket.map(|s| s.per_minute),
        "monthly_used": monthly_cap - monthly.remaining.min(monthly_cap),
        "monthly_limit": tier.monthly,
        "monthly_remaining": tier.monthly.map(|_| monthly.remaining),
        "reset_seconds": reset_us.div_ceil(1_000_000),
    }))
    .into_response()
}

/// A RateLimitRequest as proto3 JSON → the RateLimitResponse as JSON.
async fn check<S: Store>(State(admin): State<Arc<Admin<S>>>, body: Bytes) -> Response {
    let request = match crate::json::request_from_json(&body) {
        Ok(request) => request,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid RateLimitRequest JSON: {message}"),
            );
        }
    };
    match admin
        .limiter
        .should_rate_limit(&crate::rls::from_proto(request))
        .await
    {
        Ok(decision) => axum::Json(crate::json::response_to_json(&crate::rls::to_proto(
            decision,
        )))
        .into_response(),
        Err(crate::limiter::LimitError::Invalid(invalid)) => {
            error(StatusCode::BAD_REQUEST, invalid.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn config<S: Store>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let config = admin.limiter.config();
    let domains: serde_json::Map<String, serde_json::Value> = config
        .domain_names()
        .into_iter()
        .filter_map(|name| config.domain(name))
        .map(|d| {
            (
                d.name.to_string(),
                json!({ "file": d.file, "config": d.raw }),
            )
        })
        .collect();
    axum::Json(json!({ "domains": domains })).into_response()
}
