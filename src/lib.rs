//! tollgate: a rate-limit service for Envoy (`envoy.service.ratelimit.v3`).
//!
//! # Layout
//! - [`settings`]: command line and `TOLLGATE_*` environment → validated settings.
//! - [`config`]: YAML domain files → an immutable, compiled rule set.
//! - [`limit`]: pure limit math — token bucket, windows, all-or-nothing batches.
//! - [`store`]: where limit state lives (`memory`, `redis`); one atomic batch call per request.
//! - [`limiter`]: backend-neutral decisions — plan debits, call the store, statuses, headers.
//! - [`rls`]: the gRPC service — protobuf ↔ limiter types, errors → `Status`.
//! - [`metrics`]: Prometheus metric handles with bounded labels.
//! - [`admin`]: the HTTP admin API (metrics, health, status, quota, check, config).
//! - [`json`]: proto3 JSON mapping of the RLS messages, for `POST /check`.
//! - [`reload`]: hot reload on file change or SIGHUP.
//! - [`server`]: the gRPC listener with health and reflection, and its shutdown.
//! - [`tls`]: TLS/mTLS on the gRPC listener, reloaded on file change.
//! - [`clock`]: injected time.
//! - [`proto`]: generated code.
//!
//! # One request's path
//! Envoy → [`rls::RlsService`] (protobuf → [`limiter::Request`]) →
//! [`limiter::Limiter::should_rate_limit`] (validate, one config snapshot,
//! plan debits) → [`store::Store::charge`] (decide and charge atomically,
//! using [`limit`]'s math) → statuses, overall code, headers →
//! [`rls::to_proto`] → Envoy. Nothing below `limiter` knows about protobuf;
//! nothing above `store` knows which store it uses.

pub mod admin;
pub mod clock;
pub mod config;
pub mod json;
pub mod limit;
pub mod limiter;
pub mod metrics;
pub mod proto;
pub mod reload;
pub mod rls;
pub mod server;
pub mod settings;
pub mod store;
pub mod tls;
