//! The binary: wiring only. settings → tracing → config → store → servers
//! → shutdown. Everything testable lives in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tollgate::admin::{self, Admin};
use tollgate::config::Config;
use tollgate::limiter::Limiter;
use tollgate::reload;
use tollgate::server::{GrpcLimits, serve_grpc};
use tollgate::settings::{Backend, Cli, Command, LogFormat, ServeArgs};
use tollgate::store::{AnyStore, MemoryStore, RedisOptions, RedisStore, Store};
use tollgate::tls::TlsFiles;

/// mimalloc: every decision allocates small, short-lived strings (keys,
/// header values, protobuf buffers); under load glibc's malloc took ~20 % of
/// the server's CPU in a profile, mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
                ca_cert: match &args.redis_ca_cert {
                    Some(path) => Some(
                        std::fs::read(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    ),
                    None => None,
                },
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
    let _fallback_sweeper =
        limiter.spawn_fallback_sweeper(Duration::from_secs(args.sweep_interval_secs.max(1)));
    let _watcher = match &args.config {
        Some(path) => {
            Some(reload::spawn(Arc::clone(&limiter), path.clone()).context("watching the config")?)
        }
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            };
            files.server_config().context("TLS")?; // refuse to start on bad files
            Some(files)
        }
        _ => None,
    };

    let grpc_listener = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.grpc_addr))?;
    let http_listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    tracing::info!(addr = %grpc_listener.local_addr()?, tls = tls.is_some(), "gRPC listening");
    tracing::info!(addr = %http_listener.local_addr()?, "HTTP admin listening");

    // One signal stops both servers, after readiness has failed for a while.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = Admin::new(Arc::clone(&limiter));
    let limits = GrpcLimits {
        timeout: Duration::from_millis(args.grpc_timeout_ms.max(1)),
        concurrency_per_connection: args.grpc_concurrency_per_connection.max(1),
    };
    let (health_tx, health_rx) = tokio::sync::oneshot::channel();
    let grpc = tokio::spawn(serve_grpc(
        Arc::clone(&limiter),
        grpc_listener,
        tls,
        limits,
        {
            let admin = Arc::clone(&admin);
            move |health| {
                // SERVING only while the backend answers; re-checked every second.
                let serving = health.clone();
                tokio::spawn(async move {
                    while admin.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                        serving.set(admin.is_ready().await).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
                let _ = health_tx.send(health);
            }
        },
        until_stopped(stopped.clone()),
    ));
    let http = tokio::spawn(
        axum::serve(http_listener, admin::router(Arc::clone(&admin)))
            .with_graceful_shutdown(until_stopped(stopped))
            .into_future(),
    );

    shutdown.await;
    let drain = Duration::from_secs(args.drain_secs);
    tracing::info!(
        ?drain,
        "shutting down: readiness fails now, listeners close after the drain delay"
    );
    admin
        .accepting
        .store(false, std::sync::atomic::Ordering::SeqCst);
    if let Ok(health) = health_rx.await {
        health.set(false).await;
    }
    tokio::time::sleep(drain).await;
    let _ = stop.send(true);
    let drained = tokio::time::timeout(drain.max(Duration::from_secs(1)), async {
        let grpc = grpc.await.context("gRPC task")?;
        let http = http.await.context("HTTP task")?;
        grpc.context("gRPC server")?;
        http.context("HTTP admin server")?;
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => tracing::warn!("drain time over; exiting with calls still open"),
    }
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
