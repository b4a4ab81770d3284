//! The binary: wiring only. settings → tracing → config → store → servers
//! → shutdown. Everything testable lives in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tollgate::config::Config;
use tollgate::limiter::Limiter;
use tollgate::server::serve_grpc;
use tollgate::settings::{Backend, Cli, Command, LogFormat, ServeArgs};
use tollgate::store::{AnyStore, MemoryStore, RedisOptions, RedisStore, Store};

fn main() -> ExitCode {
    match Cli::parse().command() {
        Command::Validate { path } => validate(&path),
        Command::Serve(args) => {
            init_tracing(args.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("tollgate: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: OK ({} domains: {})",
                path.display(),
                config.domain_names().len(),
                config.domain_names().join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let config = match &args.config {
        Some(path) => {
            Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?
        }
        None => Config::builtin(),
    };
    tracing::info!(domains = ?config.domain_names(), source = ?args.config, "configuration loaded");
    let mut _sweeper = None;
    let store = match args.backend {
        Backend::Memory => {
            let store = Arc::new(MemoryStore::default());
            _sweeper =
                Some(store.spawn_sweeper(Duration::from_secs(args.sweep_interval_secs.max(1))));
            AnyStore::Memory(store)
        }
        Backend::Redis => {
            let options = RedisOptions {
                prefix: args.redis_prefix.clone(),
                timeout: Duration::from_millis(args.backend_timeout_ms.max(1)),
                ..RedisOptions::default()
            };
            let store = RedisStore::connect(&args.redis_url, options)
                .await
                .context("redis backend")?;
            if let Err(error) = store.ping().await {
                tracing::warn!(%error, "redis does not answer yet; on_backend_error applies until it does");
            }
            AnyStore::Redis(Box::new(store))
        }
    };
    tracing::info!(backend = store.name(), on_backend_error = ?args.on_backend_error, "store ready");
    let limiter = Arc::new(Limiter::new(config, store, args.limiter_options()));

    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "gRPC listening");
    serve_grpc(
        limiter,
        listener,
        None,
        |health| {
            tokio::spawn(async move { health.set(true).await });
        },
        shutdown,
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Registers for SIGTERM and SIGINT now (so a signal that arrives during
/// start-up is not lost) and resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
