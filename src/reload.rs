//! Hot reload: a changed config file (or directory — including a Kubernetes
//! ConfigMap's `..data` symlink swap) or SIGHUP loads the config again. A
//! bad config is logged and counted, and the old one keeps serving; limit
//! state lives in the store, so counters survive a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::limiter::Limiter;
use crate::store::Store;

/// How long to wait for a burst of file events to settle.
const SETTLE: Duration = Duration::from_millis(250);

/// Loads `path` and swaps it in; on failure keeps the old config.
pub fn reload<S: Store>(limiter: &Limiter<S>, path: &Path) -> bool {
    match Config::load(path) {
        Ok(config) => {
            tracing::info!(path = %path.display(), domains = ?config.domain_names(), "configuration reloaded");
            limiter.replace_config(config);
            limiter
                .metrics()
                .config_reloads
                .with_label_values(&["ok"])
                .inc();
            true
        }
        Err(errors) => {
            tracing::error!(path = %path.display(), "configuration rejected; the previous one keeps serving:\n{errors}");
            limiter
                .metrics()
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            false
        }
    }
}

/// Watches `path` and listens for SIGHUP; reloads on either until the
/// limiter is dropped. The returned watcher must be kept alive.
pub fn spawn<S: Store>(
    limiter: Arc<Limiter<S>>,
    path: PathBuf,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    })?;
    // Watch the directory: editors and ConfigMaps replace files rather than
    // write them, which a watch on the file itself would miss.
    let watched = if path.is_dir() {
        path.clone()
    } else {
        path.parent().map_or(PathBuf::from("."), Path::to_path_buf)
    };
    watcher.watch(&watched, RecursiveMode::Recursive)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    let limiter = Arc::downgrade(&limiter);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = rx.recv() => {
                    if changed.is_none() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                    tracing::debug!("config files changed");
                }
                _ = hangup.recv() => tracing::info!("SIGHUP received"),
            }
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            reload(&limiter, &path);
        }
    });
    Ok(watcher)
}
