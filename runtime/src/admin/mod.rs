//! The admin endpoint (`[admin]`): Prometheus `/metrics`, `/health`,
//! `/ready` and live `/tap`, over HTTP/1.1.
//!
//! Off unless `[admin]` is configured; meant for loopback, and guarded by a
//! bearer token when it listens anywhere else (the loader refuses a
//! non-loopback address without one). `/health` and `/ready` are open: an
//! orchestrator's probes carry no secret, and the probes reveal only
//! component names and states. `/metrics` and `/tap` need the token when one
//! is set.
//!
//! The endpoint starts before the plugins compile (so a slow start shows as
//! "not ready" rather than as a dead process) and stops after the pipelines
//! have drained. It reads the same registry the pipelines bump
//! ([`crate::metrics`]): serving it takes no lock on their path.

pub mod exposition;
mod probes;
mod server;
mod tap;

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::config::admin::{AdminConfig, Token};
pub use exposition::Catalog;
pub use probes::{NotReady, Phase, PhaseCell, Probes, Readiness};

use crate::config::{Config, DEFAULT_TEAM};
use crate::metrics::Metrics;

/// What the request handlers share.
pub(crate) struct State {
    metrics: Arc<Metrics>,
    /// What the running configuration implies; replaced on a live reload.
    view: ArcSwap<View>,
    phase: Arc<PhaseCell>,
    token: Option<Token>,
}

/// What the endpoint knows of the running configuration.
pub(crate) struct View {
    catalog: Catalog,
    probes: Probes,
    /// `sink:<name>` → `channel:<its channel>`, for `/tap`.
    sink_channels: std::collections::BTreeMap<String, String>,
}

impl View {
    fn of(config: &Config) -> Self {
        Self {
            probes: Probes::new(config),
            catalog: catalog(config),
            sink_channels: config
                .sinks
                .iter()
                .map(|(name, def)| (name.clone(), def.channel.clone()))
                .collect(),
        }
    }
}

/// A running admin endpoint; [`Admin::stop`] ends it.
pub struct Admin {
    state: Arc<State>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// The address it listens on (the port is known even if `listen` gave 0).
    pub local_addr: std::net::SocketAddr,
}

impl Admin {
    /// Binds `admin.listen` (failing at once if it cannot) and serves.
    pub fn start(
        admin: &AdminConfig,
        config: &Config,
        metrics: Arc<Metrics>,
        phase: Arc<PhaseCell>,
    ) -> Result<Self> {
        let listener = crate::listener::listen(admin.listen)
            .with_context(|| format!("admin endpoint: binding {}", admin.listen))?;
        let local_addr = listener.local_addr().context("admin endpoint")?;
        let state = Arc::new(State {
            view: ArcSwap::from_pointee(View::of(config)),
            metrics,
            phase,
            token: admin.token.clone(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            listener,
            state.clone(),
            admin.max_connections,
            stop.clone(),
        ));
        // Where it listens (`listen` may give port 0), for `sluice top`.
        let status = config.data_dir.join("status");
        if let Err(e) = std::fs::create_dir_all(&status)
            .and_then(|()| std::fs::write(status.join("admin.addr"), local_addr.to_string()))
        {
            tracing::warn!(
                component = "admin",
                "could not record the admin address in {}: {e}",
                status.display()
            );
        }
        tracing::info!(component = "admin", address = %local_addr, token = admin.token.is_some(), "admin endpoint listening: /metrics /health /ready /tap");
        Ok(Self {
            state,
            stop,
            task,
            local_addr,
        })
    }

    /// Follows a live reload: labels, readiness checks and tap points of
    /// the new configuration.
    pub fn update(&self, config: &Config) {
        self.state.view.store(Arc::new(View::of(config)));
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Each component's type and team, for metric labels.
pub fn catalog(config: &Config) -> Catalog {
    let mut c = Catalog::default();
    for (name, def) in &config.sources {
        let key = ("source".to_owned(), name.clone());
        c.types.insert(key.clone(), def.type_name.to_owned());
        c.teams.insert(
            key,
            def.team.clone().unwrap_or_else(|| DEFAULT_TEAM.to_owned()),
        );
    }
    for (name, def) in &config.plugins {
        let key = ("plugin".to_owned(), name.clone());
        c.types.insert(key.clone(), def.kind.as_str().to_owned());
        c.teams.insert(key, def.team().to_owned());
    }
    for (name, def) in &config.sinks {
        c.types
            .insert(("sink".to_owned(), name.clone()), def.type_name.to_owned());
    }
    c
}
