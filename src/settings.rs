//! Command line and environment: every flag has a `TOLLGATE_*` variable.
//! Raw flags become validated values here, before anything uses them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::limiter::{Bounds, HeaderGroups, OnBackendError, Options};

/// tollgate: a rate-limit service for Envoy.
///
/// With no command it serves: `tollgate --grpc-addr …` is `tollgate serve --grpc-addr …`.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC rate-limit service (the default command).
    Serve(Box<ServeArgs>),
    /// Check a config file or directory; print every problem and exit 1 on any.
    Validate {
        /// A YAML file or a directory of *.yaml files.
        path: PathBuf,
    },
}

impl Cli {
    /// The command to run; `serve` when none is given.
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Serve(Box::new(self.serve)))
    }
}

/// Where limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// In this process: one replica.
    Memory,
    /// In Redis: any number of replicas.
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file or directory of *.yaml files; the built-in example when unset.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// gRPC listen address (RLS, health, reflection).
    #[arg(long, env = "TOLLGATE_GRPC_ADDR", default_value = "0.0.0.0:8081")]
    pub grpc_addr: SocketAddr,

    /// HTTP admin listen address (metrics, health, admin API).
    #[arg(long, env = "TOLLGATE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Where limit state lives.
    #[arg(long, env = "TOLLGATE_BACKEND", value_enum, default_value_t = Backend::Memory)]
    pub backend: Backend,

    /// Redis URL: redis://, rediss://, redis+cluster://, redis+sentinel://.
    #[arg(
        long,
        env = "TOLLGATE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// What to answer when the backend fails: allow, deny, local (decide in this replica) or error (UNAVAILABLE).
    #[arg(long, env = "TOLLGATE_ON_BACKEND_ERROR", default_value = "local", value_parser = str::parse::<OnBackendError>)]
    pub on_backend_error: OnBackendError,

    /// PEM CA that signs the Redis servers' certificates (rediss:// with a private CA).
    #[arg(long, env = "TOLLGATE_REDIS_CA_CERT")]
    pub redis_ca_cert: Option<PathBuf>,

    /// Prefix of every Redis key.
    #[arg(long, env = "TOLLGATE_REDIS_PREFIX", default_value = "tollgate:")]
    pub redis_prefix: String,

    /// Backend command timeout in milliseconds.
    #[arg(long, env = "TOLLGATE_BACKEND_TIMEOUT_MS", default_value_t = 10)]
    pub backend_timeout_ms: u64,

    /// Answer OK where the answer would be OVER_LIMIT (counted in metrics).
    #[arg(long, env = "TOLLGATE_SHADOW_MODE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub shadow_mode: bool,

    /// Server certificate (PEM) for TLS on the gRPC listener.
    #[arg(long, env = "TOLLGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Server private key (PEM).
    #[arg(long, env = "TOLLGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) whose client certificates are required (mutual TLS).
    #[arg(long, env = "TOLLGATE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Most descriptors in one request.
    #[arg(long, env = "TOLLGATE_MAX_DESCRIPTORS", default_value_t = 64)]
    pub max_descriptors: usize,

    /// Most entries in one descriptor.
    #[arg(long, env = "TOLLGATE_MAX_ENTRIES", default_value_t = 32)]
    pub max_entries: usize,

    /// Longest descriptor key or value, in bytes.
    #[arg(long, env = "TOLLGATE_MAX_VALUE_BYTES", default_value_t = 1024)]
    pub max_value_bytes: usize,

    /// Client header groups: x-ratelimit, x-quota, ietf, over-limit, all, none.
    #[arg(long, env = "TOLLGATE_RESPONSE_HEADERS", default_value = "all", value_parser = HeaderGroups::parse)]
    pub response_headers: HeaderGroups,

    /// Longest time one gRPC call may take before it is answered with an error, in ms.
    #[arg(long, env = "TOLLGATE_GRPC_TIMEOUT_MS", default_value_t = 1000)]
    pub grpc_timeout_ms: u64,

    /// Most calls in flight on one gRPC connection; beyond it calls are shed (UNAVAILABLE).
    #[arg(
        long,
        env = "TOLLGATE_GRPC_CONCURRENCY_PER_CONNECTION",
        default_value_t = 1024
    )]
    pub grpc_concurrency_per_connection: usize,

    /// On SIGTERM: seconds to keep failing readiness before closing listeners
    /// (lets load balancers notice), then at most this long again to drain.
    #[arg(long, env = "TOLLGATE_DRAIN_SECS", default_value_t = 5)]
    pub drain_secs: u64,

    /// How often the memory backend forgets idle entries, in seconds.
    #[arg(long, env = "TOLLGATE_SWEEP_INTERVAL_SECS", default_value_t = 10)]
    pub sweep_interval_secs: u64,
}

impl ServeArgs {
    /// The limiter's options.
    pub fn limiter_options(&self) -> Options {
        Options {
            bounds: Bounds {
                max_descriptors: self.max_descriptors,
                max_entries: self.max_entries,
                max_bytes: self.max_value_bytes,
            },
            headers: self.response_headers,
            shadow_mode: self.shadow_mode,
            on_backend_error: self.on_backend_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let Command::Serve(args) = Cli::parse_from(["tollgate"]).command() else {
            panic!("expected serve");
        };
        assert_eq!(args.config, None);
        assert_eq!(args.grpc_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(args.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.backend, Backend::Memory);
        assert_eq!(args.response_headers, HeaderGroups::ALL);
    }

    #[test]
    fn flags_without_a_command_serve() {
        let Command::Serve(args) =
            Cli::parse_from(["tollgate", "--grpc-addr", "127.0.0.1:1"]).command()
        else {
            panic!("expected serve");
        };
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:1");
    }

    #[test]
    fn backend_error_policies_parse_by_name() {
        for policy in OnBackendError::ALL {
            let cli = Cli::parse_from(["tollgate", "--on-backend-error", policy.as_str()]);
            let Command::Serve(args) = cli.command() else {
                panic!("expected serve")
            };
            assert_eq!(args.on_backend_error, policy);
        }
        assert!(Cli::try_parse_from(["tollgate", "--on-backend-error", "maybe"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from([
            "tollgate",
            "serve",
            "--backend",
            "redis",
            "--shadow-mode",
            "--response-headers",
            "ietf,x-quota",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.backend, Backend::Redis);
        assert!(args.shadow_mode);
        assert!(
            args.response_headers.ietf
                && args.response_headers.x_quota
                && !args.response_headers.x_ratelimit
        );
    }
}
