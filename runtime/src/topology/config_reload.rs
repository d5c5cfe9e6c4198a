//! Live reload of the configuration: what asks for one (`SIGHUP`, or the
//! configuration file changing), and what happens then.
//!
//! The file is loaded and checked exactly as at startup. An invalid file
//! (or one changing what cannot change live: `data_dir`, `[admin]`,
//! `[embedded_broker]`) is refused with every problem at its
//! `file:line:col`, counted (`sluice_config_reloads_rejected_total`), and the
//! running configuration goes on. A valid one is applied as a difference
//! (see [`super::graph`]); the time it took is observed in
//! `sluice_config_reload_seconds`. Requests that arrive while one is being
//! applied are merged into one more.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::graph::{self, Graph};
use crate::admin::Admin;
use crate::metrics::{FAST_BUCKETS, Metrics};

/// How long the file must be quiet before it is read (editors write in steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Reload requests.
pub(super) struct Trigger {
    requests: mpsc::UnboundedReceiver<()>,
    _watcher: Option<Debouncer<notify::RecommendedWatcher, RecommendedCache>>,
    signal: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Trigger {
    fn drop(&mut self) {
        if let Some(s) = self.signal.take() {
            s.abort();
        }
    }
}

impl Trigger {
    /// Watches `file` (through its directory, so a file replaced by a
    /// rename is seen) and listens for `SIGHUP`.
    pub fn start(file: &Path, metrics: &Metrics) -> Result<Self> {
        // Registered so that they read 0 before the first reload.
        metrics.counter("config.reloads");
        metrics.counter("config.reloads_rejected");
        let (tx, requests) = mpsc::unbounded_channel();
        let target: PathBuf = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = target.file_name().map(|n| n.to_owned());
        let on_change = tx.clone();
        let handler = move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let ours = events.iter().any(|e| {
                !matches!(e.kind, notify::EventKind::Access(_))
                    && e.paths.iter().any(|p| p.file_name() == name.as_deref())
            });
            if ours {
                let _ = on_change.send(());
            }
        };
        let watcher = match new_debouncer(DEBOUNCE, None, handler) {
            Ok(mut d) => match d.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(d),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "not watching the configuration file ({e}); SIGHUP still reloads it");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(
                    "not watching the configuration file ({e}); SIGHUP still reloads it"
                );
                None
            }
        };
        let signal = hangups(tx);
        Ok(Self {
            requests,
            _watcher: watcher,
            signal,
        })
    }

    /// The next request; several waiting count as one.
    pub async fn requested(&mut self) -> Option<()> {
        self.requests.recv().await?;
        while self.requests.try_recv().is_ok() {}
        Some(())
    }
}

#[cfg(unix)]
fn hangups(tx: mpsc::UnboundedSender<()>) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "no SIGHUP handler ({e}); the configuration reloads when its file changes"
            );
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if tx.send(()).is_err() {
                break;
            }
        }
    }))
}

#[cfg(not(unix))]
fn hangups(_tx: mpsc::UnboundedSender<()>) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// Loads the configuration file again and applies it to `graph`; `Err`
/// only if applying a valid configuration failed (the run then stops).
pub(super) async fn apply(
    graph: &mut Graph,
    metrics: &Metrics,
    admin: Option<&Admin>,
) -> Result<()> {
    let started = Instant::now();
    let file = graph.config().file.clone();
    let refuse = |why: String| {
        metrics
            .counter("config.reloads_rejected")
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(component = "config", file = %file.display(), "configuration reload refused; the running configuration goes on:\n{why}");
    };
    let new = match tokio::task::block_in_place(|| crate::config::load(&file)) {
        Ok(c) => c,
        Err(errors) => {
            refuse(errors.to_string());
            return Ok(());
        }
    };
    let plan = match graph::plan(graph.config(), &new) {
        Ok(p) => p,
        Err(why) => {
            refuse(why.to_string());
            return Ok(());
        }
    };
    if plan.is_empty() {
        tracing::info!(
            component = "config",
            "configuration file changed, but no component did"
        );
        return Ok(());
    }
    tracing::info!(
        component = "config",
        ?plan,
        "applying the new configuration"
    );
    match graph.apply(new, &plan).await {
        Ok(()) => {}
        Err(graph::ApplyError::Refused(why)) => {
            refuse(why);
            return Ok(());
        }
        Err(graph::ApplyError::Failed(e)) => {
            return Err(anyhow!("applying the reloaded configuration: {e:#}"));
        }
    }
    if let Some(admin) = admin {
        admin.update(graph.config());
    }
    let took = started.elapsed();
    metrics
        .histogram("config.reload_seconds", FAST_BUCKETS)
        .observe(took);
    metrics
        .counter("config.reloads")
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        component = "config",
        reload_ms = took.as_millis() as u64,
        "configuration applied"
    );
    Ok(())
}
