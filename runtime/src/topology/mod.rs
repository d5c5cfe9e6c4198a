//! Builds the running graph from a [`Config`], runs it, and shuts it down so
//! that nothing is lost.
//!
//! Per source: the source task → a small bounded queue → a processing task that
//! runs the source's plugin [`Chain`](crate::plugin::Chain) on a blocking thread
//! and dispatches the result to channels → one sink task per channel.
//!
//! Plugins are loaded once into a [`Registry`](crate::plugin::Registry) of
//! versions (compiled code is cached in `data_dir`), each source's chain
//! follows it, and a file watcher swaps in new versions while everything
//! runs (see [`crate::plugin::reload`]). The configuration file itself is
//! watched too (and `SIGHUP` asks for a reload): a valid new configuration
//! is applied as a difference ([`graph`]), an invalid one is refused and the
//! running one goes on ([`config_reload`]).
//!
//! Shutdown (Ctrl-C, or `--exit-when-idle`) runs in dependency order: sources
//! stop reading and flush their partial batch, processors finish what they
//! hold, the route table lets go of the channels, channels drain, sinks make
//! everything durable and return, acknowledgements flow back, and sources
//! make their final commit. A sink that fails closes its channel; the batches that could not be
//! sent are failed, so their offsets are never committed and nothing is lost.
//! A failing source or sink, and a `kafka` channel or Kafka lookup table
//! whose client hits a permanent error ([`crate::kafka::errors`]), start that
//! shutdown, and the run returns the first error.

mod config_reload;
mod graph;
pub mod processor;
pub mod routes;
mod sink_group;
pub mod status;
mod stopping;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, Phase, PhaseCell};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugin::{CacheKey, EngineOptions, PluginEngine};
use crate::sources::SourceError;
use crate::sources::embedded::EmbeddedBroker;
use graph::{Graph, Shared};

/// How to run a topology.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Shut down gracefully once, for this long, no source has read an
    /// event and no sink has written, completed a file or retried (and the
    /// embedded feed, if any, is done): batch mode, like a Camus run.
    pub exit_when_idle: Option<Duration>,
    /// Print a status line every second (when attached to a terminal).
    pub status_line: bool,
    /// Cancel it to shut down gracefully (embedders, tests, benchmarks).
    pub shutdown: CancellationToken,
    /// Where the run's counters go; shared so callers can watch progress.
    pub metrics: Arc<Metrics>,
}

/// Runs `config` until Ctrl-C or idle, returning the final metrics.
pub async fn run(config: Config, options: RunOptions) -> Result<Arc<Metrics>> {
    let metrics = options.metrics.clone();
    // The admin endpoint answers from before the plugins compile until the
    // pipelines have drained.
    let phase = Arc::new(PhaseCell::default());
    let admin = match &config.admin {
        Some(admin) => Some(Admin::start(
            admin,
            &config,
            metrics.clone(),
            phase.clone(),
        )?),
        None => None,
    };
    let result = run_pipelines(config, options, &phase, admin.as_ref()).await;
    if let Some(admin) = admin {
        stopping::watched("admin endpoint", "admin", admin.stop()).await;
    }
    result
}

/// [`run`] without the admin endpoint: builds the graph, runs it, applies
/// live reloads, and drains it.
async fn run_pipelines(
    config: Config,
    options: RunOptions,
    phase: &PhaseCell,
    admin: Option<&Admin>,
) -> Result<Arc<Metrics>> {
    let metrics = options.metrics.clone();
    let shutdown = options.shutdown.clone();
    // From here a signal drains what has started (plugins may take seconds
    // to compile) rather than killing the process.
    stop_on_signal(shutdown.clone());
    let embedded = Embedded::start(&config, &metrics, &shutdown)?;

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let engine = PluginEngine::with_options(EngineOptions {
        cache_dir: Some(config.data_dir.join("cache")),
        cache_key: compile_cache_key(&config.data_dir),
        ..Default::default()
    })
    .context("starting the plugin engine")?;
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let shared = Shared {
        metrics: metrics.clone(),
        engine,
        bootstrap: embedded.bootstrap.clone(),
        shutdown: shutdown.clone(),
    };
    let mut reloads = config_reload::Trigger::start(&config.file, &metrics)?;
    let mut graph = match Graph::start(config, shared, failures_tx, ended_tx) {
        Ok(g) => g,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };

    let status = status::spawn(metrics.clone(), options.status_line, shutdown.clone());
    let idle = options.exit_when_idle.map(|idle| {
        tokio::spawn(status::exit_when_idle(
            metrics.clone(),
            idle,
            embedded.feed_done.clone(),
            shutdown.clone(),
        ))
    });
    phase.set(Phase::Running);

    let mut errors = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(failure) = failures.recv() => {
                errors.push(failure);
                shutdown.cancel();
            }
            Some((source, id)) = ended.recv() => {
                if graph.source_ended(&source, id) {
                    tracing::info!("every source has ended; draining the pipelines");
                    shutdown.cancel();
                }
            }
            Some(()) = reloads.requested() => {
                if let Err(e) = config_reload::apply(&mut graph, &metrics, admin).await {
                    errors.push(e);
                    shutdown.cancel();
                }
            }
        }
    }
    phase.set(Phase::Stopping);
    graph.drain().await;
    while let Ok(failure) = failures.try_recv() {
        errors.push(failure);
    }
    embedded.finish(&mut errors).await;
    if let Some(idle) = idle {
        idle.abort();
    }
    status.abort();
    let mut errors = errors.into_iter();
    if let Some(first) = errors.next() {
        for other in errors {
            tracing::error!("also failed: {other:#}");
        }
        return Err(first);
    }
    Ok(metrics)
}

/// The embedded demo broker and its feed, if the configuration has one.
struct Embedded {
    bootstrap: Option<String>,
    feed: Option<tokio::task::JoinHandle<Result<u64, SourceError>>>,
    /// Fires when the feed is done (at once without a broker).
    feed_done: CancellationToken,
    /// Held until the run ends: the sources may start reading only after
    /// the feed is done (slow plugin compiles), so the feed task's
    /// reference alone must not decide when the broker stops.
    broker: Option<Arc<EmbeddedBroker>>,
}

impl Embedded {
    fn start(
        config: &Config,
        metrics: &Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Result<Self> {
        let feed_done = CancellationToken::new();
        let Some(cfg) = &config.embedded_broker else {
            feed_done.cancel();
            return Ok(Self {
                bootstrap: None,
                feed: None,
                feed_done,
                broker: None,
            });
        };
        let broker = Arc::new(EmbeddedBroker::start(cfg).context("starting the embedded broker")?);
        let bootstrap = Some(broker.bootstrap_servers());
        let (metrics, shutdown, done) = (metrics.clone(), shutdown.clone(), feed_done.clone());
        let feeder = broker.clone();
        let feed = tokio::spawn(async move {
            let result = feeder.run_feed(metrics, shutdown).await;
            done.cancel();
            result
        });
        Ok(Self {
            bootstrap,
            feed: Some(feed),
            feed_done,
            broker: Some(broker),
        })
    }

    /// Waits for the feed to end, recording its failure; then the broker
    /// stops (the sources reading it have ended by now).
    async fn finish(self, errors: &mut Vec<anyhow::Error>) {
        if let Some(task) = self.feed {
            match stopping::watched("embedded feed", "embedded_broker", task).await {
                Ok(Ok(n)) => tracing::info!(events = n, "embedded feed finished"),
                Ok(Err(e)) => errors.push(e.into()),
                Err(e) => errors.push(anyhow!("embedded feed task: {e}")),
            }
        }
        if let Some(broker) = self.broker {
            // The last reference: stopping the cluster joins its thread.
            let stopped = tokio::task::spawn_blocking(move || drop(broker));
            let _ = stopping::watched("embedded broker", "embedded_broker", stopped).await;
        }
    }
}

/// The key compile cache entries are signed with, from the file named by
/// `SLUICE_COMPILE_CACHE_KEY` or `$XDG_CONFIG_HOME/sluice/compile-cache.key`
/// (`~/.config/...`), created owner-only on first use. It must lie outside
/// `data_dir`: write access to the data directory must not be enough to
/// have code run. Without a usable key file the key lasts this process only
/// (a restart compiles every plugin again), with a warning.
fn compile_cache_key(data_dir: &std::path::Path) -> Option<CacheKey> {
    let path = std::env::var_os("SLUICE_COMPILE_CACHE_KEY")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config"))
                })
                .map(|dir| dir.join("sluice/compile-cache.key"))
        });
    let Some(path) = path else {
        tracing::warn!(
            "no compile cache key file (set SLUICE_COMPILE_CACHE_KEY or HOME): cached plugins last this run only"
        );
        return None;
    };
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let parent = path.parent().and_then(|p| std::fs::canonicalize(p).ok());
    if path.starts_with(&data_dir) || parent.is_some_and(|p| p.starts_with(&data_dir)) {
        tracing::warn!(key = %path.display(), "the compile cache key lies inside data_dir, where it protects nothing: cached plugins last this run only");
        return None;
    }
    match CacheKey::load_or_create(&path) {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!(key = %path.display(), "compile cache key unusable ({e}): cached plugins last this run only");
            None
        }
    }
}

/// On the first SIGINT or SIGTERM, shuts down gracefully; on the second,
/// exits at once. The handlers are in place when this returns, so a signal
/// arriving once the run has begun never meets the default (fatal) action.
fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGINT is Ctrl-C; SIGTERM is what Kubernetes, systemd and
        // `docker stop` send.
        let (mut int, mut term) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => (int, term),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(
                    "no SIGINT/SIGTERM handler ({e}): a signal stops the run without draining it"
                );
                return;
            }
        };
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let received = tokio::select! {
                    r = int.recv() => r.is_some(),
                    r = term.recv() => r.is_some(),
                };
                if !received {
                    return;
                }
                if !first {
                    std::process::exit(130);
                }
                first = false;
                tracing::info!("interrupted; shutting down gracefully (interrupt again to abort)");
                shutdown.cancel();
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupted; shutting down gracefully (interrupt again to abort)");
            shutdown.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    use super::*;

    const EMBEDDED: &str = r#"
[embedded_broker]
partitions = 1

[embedded_broker.feed]
topic = "demo"
scenario = "card-transactions"
count = 20
rate = 100000

[sources.demo]
type = "kafka"
bootstrap_servers = "embedded"
group_id = "g"
topics = ["demo"]
channels = ["out"]

[channels.out]
type = "memory"

[sinks.out]
type = "null"
channel = "out"
"#;

    /// The sources may start after the feed is done (a cold plugin compile
    /// takes seconds): the broker must still be there for them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_embedded_broker_outlives_its_feed() {
        let config =
            crate::config::parse(std::path::Path::new("embedded.toml"), EMBEDDED, |_| None)
                .unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut embedded = Embedded::start(&config, &metrics, &CancellationToken::new()).unwrap();
        // Once its task has ended, the feed holds the broker no longer.
        let feed = embedded.feed.take().unwrap();
        assert_eq!(feed.await.unwrap().unwrap(), 20);
        let bootstrap = embedded.bootstrap.clone().unwrap();
        let answered = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            consumer
                .fetch_metadata(Some("demo"), Duration::from_secs(5))
                .map(|m| m.topics().len())
        })
        .await
        .unwrap();
        assert_eq!(
            answered.ok(),
            Some(1),
            "the broker still answers after its feed"
        );
        let mut errors = Vec::new();
        embedded.finish(&mut errors).await;
        assert!(errors.is_empty(), "{errors:?}");
    }
}
