//! Builds the running graph from a [`Config`], runs it, and shuts it down so
//! that nothing is lost.
//!
//! Per source: the source task → a small bounded queue → a processing task that
//! runs the source's plugin [`Chain`](crate::plugin::Chain) on a blocking thread
//! and dispatches the result to channels → one sink task per channel.
//!
//! Plugins are loaded once into a [`Registry`] of versions (compiled code is
//! cached in `data_dir`), each source's chain follows it, and a file watcher
//! swaps in new versions while everything runs (see [`crate::plugin::reload`]).
//!
//! Shutdown (Ctrl-C, or `--exit-when-idle`) runs in dependency order: sources
//! stop reading and flush their partial batch, processors finish what they
//! hold and drop their channel senders, channels drain, sinks make everything
//! durable and return, acknowledgements flow back, and sources make their final
//! commit. A sink that fails closes its channel; the batches that could not be
//! sent are failed, so their offsets are never committed and nothing is lost.
//! A failing source or sink, and a `kafka` channel or Kafka lookup table
//! whose client hits a permanent error ([`crate::kafka::errors`]), start that
//! shutdown, and the run returns the first error.

pub mod processor;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, Phase, PhaseCell};
use crate::channels::{ChannelReceiver, ChannelSender, OpenContext};
use crate::config::Config;
use crate::delivery::SourceLink;
use crate::kafka::errors::Health;
use crate::lookup::{Grants, LookupTable};
use crate::metrics::Metrics;
use crate::plugin::reload::{self, WatchSet, WatchedTable};
use crate::plugin::{
    CacheKey, Chain, EngineOptions, LogGate, PluginEngine, PluginSlot, Registry, Sandbox, SlotSpec,
    Stage, StagePolicy,
};
use crate::sinks::{Guarantee, SinkContext, SinkError};
use crate::sources::embedded::EmbeddedBroker;
use crate::sources::{SourceContext, SourceError};
use processor::Dispatch;

/// Longest wait for a durable channel to record its sink's last
/// acknowledgements at shutdown.
const CHANNEL_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let result = run_pipelines(config, options, &phase).await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    result
}

/// [`run`] without the admin endpoint: builds, runs and drains the pipelines.
async fn run_pipelines(
    config: Config,
    options: RunOptions,
    phase: &PhaseCell,
) -> Result<Arc<Metrics>> {
    let metrics = options.metrics.clone();
    let shutdown = options.shutdown.clone();
    let embedded = Embedded::start(&config, &metrics, &shutdown)?;
    let bootstrap = embedded.bootstrap.clone();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let engine = PluginEngine::with_options(EngineOptions {
        cache_dir: Some(config.data_dir.join("cache")),
        cache_key: compile_cache_key(&config.data_dir),
        ..Default::default()
    })
    .context("starting the plugin engine")?;
    let lookups = Lookups::open(&config, bootstrap.as_deref(), &metrics)?;
    // Kafka clients that are not tasks of their own: their permanent errors
    // stop the run.
    let mut healths = lookups.healths.clone();
    let registry = load_plugins(&config, &engine, &lookups.tables, &metrics)?;
    let channels = Channels::open(&config, bootstrap.as_deref(), &metrics)?;
    healths.extend(channels.healths.iter().cloned());

    // Delivery links: one per source, shared with the sinks it feeds.
    let links: BTreeMap<String, Arc<SourceLink>> = config
        .sources
        .keys()
        .map(|name| (name.clone(), SourceLink::new(name)))
        .collect();
    let Channels {
        senders,
        mut receivers,
        settle: channel_tasks,
        ..
    } = channels;
    let sink_tasks = spawn_sinks(
        &config,
        &links,
        &senders,
        &mut receivers,
        &bootstrap,
        &metrics,
    )?;
    let pipelines = spawn_sources(
        &config, &links, &senders, &registry, &engine, &bootstrap, &metrics, &shutdown,
    )?;
    // Only processors hold senders now: channels end when processors finish.
    drop(senders);
    drop(receivers);

    // Hot reload: from here on, a changed plugin or lookup file is picked up.
    let _watcher = reload::watch(WatchSet {
        registry: registry.clone(),
        engine: engine.clone(),
        tables: lookups.watched,
        resume_dir: config.data_dir.join("control").join("resume"),
        resume: pipelines.resume,
    })
    .map_err(|e| anyhow!(e))?;
    let _followers = lookups.followers;

    let status = status::spawn(metrics.clone(), options.status_line, shutdown.clone());
    let idle = options.exit_when_idle.map(|idle| {
        tokio::spawn(status::exit_when_idle(
            metrics.clone(),
            idle,
            embedded.feed_done.clone(),
            shutdown.clone(),
        ))
    });
    stop_on_signal(shutdown.clone());
    phase.set(Phase::Running);
    let stopping = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };

    let supervised = supervise(
        pipelines.sources,
        pipelines.processors,
        sink_tasks,
        &healths,
        &shutdown,
    );
    tokio::pin!(supervised);
    let mut errors = tokio::select! {
        errors = &mut supervised => errors,
        () = stopping => {
            phase.set(Phase::Stopping);
            supervised.await
        }
    };
    phase.set(Phase::Stopping);
    shutdown.cancel();
    settle_channels(channel_tasks, &mut errors).await;
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
            match task.await {
                Ok(Ok(n)) => tracing::info!(events = n, "embedded feed finished"),
                Ok(Err(e)) => errors.push(e.into()),
                Err(e) => errors.push(anyhow!("embedded feed task: {e}")),
            }
        }
        if let Some(broker) = self.broker {
            // The last reference: stopping the cluster joins its thread.
            let _ = tokio::task::spawn_blocking(move || drop(broker)).await;
        }
    }
}

/// The lookup tables, filled, and what keeps them current.
struct Lookups {
    tables: BTreeMap<String, Arc<LookupTable>>,
    /// File tables, reloaded by the watcher when their file changes.
    watched: Vec<WatchedTable>,
    /// What follows a table's source of changes; dropping one stops it.
    followers: Vec<Box<dyn std::any::Any + Send>>,
    healths: Vec<Arc<Health>>,
}

impl Lookups {
    fn open(config: &Config, bootstrap: Option<&str>, metrics: &Arc<Metrics>) -> Result<Self> {
        let mut lookups = Self {
            tables: BTreeMap::new(),
            watched: Vec::new(),
            followers: Vec::new(),
            healths: Vec::new(),
        };
        let ctx = crate::lookup::OpenContext {
            metrics,
            embedded_bootstrap: bootstrap,
        };
        for (name, def) in &config.lookups {
            let table = Arc::new(LookupTable::new(name));
            let open = def.kind.open(table.clone(), &ctx).map_err(|e| anyhow!(e))?;
            if let Some(file) = open.watched {
                lookups.watched.push(WatchedTable {
                    file,
                    table: table.clone(),
                });
            }
            lookups.healths.extend(open.health);
            lookups.followers.extend(open.follower);
            lookups.tables.insert(name.clone(), table);
        }
        Ok(lookups)
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

/// Loads every plugin into a registry of versions, each with its team's
/// sandbox, and writes the registry's status file.
fn load_plugins(
    config: &Config,
    engine: &PluginEngine,
    tables: &BTreeMap<String, Arc<LookupTable>>,
    metrics: &Arc<Metrics>,
) -> Result<Registry> {
    let mut registry = Registry::new(Some(config.data_dir.join("status").join("plugins.json")));
    for (name, def) in &config.plugins {
        let settings = config.plugin_settings(name);
        let sandbox = Sandbox {
            limits: settings.limits,
            grants: Grants::new(
                settings
                    .capabilities
                    .lookups
                    .iter()
                    .filter_map(|t| tables.get(t).cloned()),
            ),
            env: settings
                .capabilities
                .env
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
            clock: settings.capabilities.clock,
            log: LogGate::new(metrics.counter(&format!("plugin.{name}.log_suppressed"))),
        };
        let spec = SlotSpec {
            name: name.clone(),
            kind: def.kind,
            path: def.path.clone(),
            team: settings.team.clone(),
            pin: def.sha256.clone(),
            config_json: serde_json::to_string(&def.config).context("encoding plugin config")?,
            sandbox,
        };
        let slot = tokio::task::block_in_place(|| PluginSlot::load(engine, spec, metrics))
            .map_err(|e| anyhow!("plugin `{name}`: {e}"))?;
        let v = slot.current();
        tracing::info!(plugin = %name, team = %settings.team, digest = v.loaded.short_digest(), kind = def.kind.as_str(),
            cached = v.loaded.cached, compile_ms = v.loaded.compile_time.as_millis() as u64, "plugin loaded");
        registry.insert(slot);
    }
    registry.write_status();
    Ok(registry)
}

/// Every channel, open.
struct Channels {
    senders: BTreeMap<String, ChannelSender>,
    receivers: BTreeMap<String, ChannelReceiver>,
    /// Tasks recording acknowledgements of durable channels, by channel.
    settle: Vec<(String, tokio::task::JoinHandle<()>)>,
    healths: Vec<Arc<Health>>,
}

impl Channels {
    fn open(config: &Config, bootstrap: Option<&str>, metrics: &Metrics) -> Result<Self> {
        let ctx = OpenContext {
            metrics,
            embedded_bootstrap: bootstrap,
        };
        let mut channels = Self {
            senders: BTreeMap::new(),
            receivers: BTreeMap::new(),
            settle: Vec::new(),
            healths: Vec::new(),
        };
        for (name, def) in &config.channels {
            let open = tokio::task::block_in_place(|| def.open(name, &ctx))?;
            if let Some(settle) = open.settle {
                channels.settle.push((name.clone(), settle));
            }
            channels.healths.extend(open.health);
            channels.senders.insert(name.clone(), open.sender);
            channels.receivers.insert(name.clone(), open.receiver);
        }
        Ok(channels)
    }
}

/// Starts every sink on its channel's receiver.
fn spawn_sinks(
    config: &Config,
    links: &BTreeMap<String, Arc<SourceLink>>,
    senders: &BTreeMap<String, ChannelSender>,
    receivers: &mut BTreeMap<String, ChannelReceiver>,
    bootstrap: &Option<String>,
    metrics: &Arc<Metrics>,
) -> Result<JoinSet<Result<(), SinkError>>> {
    let mut tasks = JoinSet::new();
    for (name, def) in &config.sinks {
        let rx = receivers
            .remove(&def.channel)
            .ok_or_else(|| anyhow!("channel `{}` has no receiver", def.channel))?;
        let link = match config.sources_feeding(&def.channel)[..] {
            [source] => links.get(source).cloned(),
            _ => None,
        };
        if let (Guarantee::Transactional, Some(link)) = (def.kind.guarantee(), &link) {
            // The sink's transactions commit the source's offsets.
            link.set_offsets_in_transactions();
        }
        // Every source that may reach this sink resumes no later than the
        // consumer group's commit, unless the sink keeps its own positions
        // and has no dead-letter sink (which keeps none: an exactly-once
        // sink sends what it re-reads there again).
        if def.kind.guarantee() != Guarantee::ExactlyOnce || def.dead_letter.is_some() {
            for source in config.sources_feeding(&def.channel) {
                links[source].set_co_fed();
            }
        }
        let ctx = SinkContext {
            name: name.clone(),
            metrics: metrics.clone(),
            embedded_bootstrap: bootstrap.clone(),
            link: config
                .exactly_once_source(name)
                .and_then(|s| links.get(s).cloned())
                .or(link),
            state_dir: Some(config.data_dir.join("sinks").join(name)),
            dead_letter: def.dead_letter.as_ref().map(|c| senders[c].clone()),
        };
        tasks.spawn(def.kind.run(rx, ctx));
    }
    Ok(tasks)
}

/// Every source's task and its processor's, and the handles an operator
/// resumes a paused source by.
struct Pipelines {
    sources: JoinSet<Result<(), SourceError>>,
    processors: JoinSet<()>,
    resume: BTreeMap<String, Arc<Notify>>,
}

/// Starts every source and the processor running its plugin chain.
#[allow(clippy::too_many_arguments)]
fn spawn_sources(
    config: &Config,
    links: &BTreeMap<String, Arc<SourceLink>>,
    senders: &BTreeMap<String, ChannelSender>,
    registry: &Registry,
    engine: &PluginEngine,
    bootstrap: &Option<String>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Pipelines> {
    let mut pipelines = Pipelines {
        sources: JoinSet::new(),
        processors: JoinSet::new(),
        resume: BTreeMap::new(),
    };
    for (name, def) in &config.sources {
        // One chain per lane (see `SourceDef::parallelism`); no plugins, one lane.
        let lanes = if def.chain().next().is_none() {
            1
        } else {
            def.parallelism
        };
        let stages = |plugins: &mut dyn Iterator<Item = &str>| -> Result<Vec<Stage>> {
            plugins
                .map(|plugin| {
                    let settings = config.plugin_settings(plugin);
                    let policy = StagePolicy {
                        on_failure: settings.on_failure,
                        breaker: settings.breaker,
                    };
                    let slot = registry
                        .get(plugin)
                        .cloned()
                        .ok_or_else(|| anyhow!("plugin `{plugin}` was not loaded"))?;
                    Ok(Stage::from_slot(slot, engine, policy, metrics))
                })
                .collect()
        };
        let mut chains = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let chain = Chain::new(stages(&mut def.chain())?);
            let redaction = stages(&mut def.dead_letter_interceptors.iter().map(String::as_str))?;
            chains.push(chain.with_redaction(redaction));
        }
        let resume = Arc::new(Notify::new());
        pipelines.resume.insert(name.clone(), resume.clone());
        let dispatch = Dispatch {
            source: name.clone(),
            default: def
                .channels
                .iter()
                .map(|c| (c.clone(), senders[c].clone()))
                .collect(),
            by_name: {
                let closed = config.channels_closed_to(name);
                senders
                    .iter()
                    .filter(|(c, _)| !closed.contains(c))
                    .map(|(c, s)| (c.clone(), s.clone()))
                    .collect()
            },
            dead: def
                .dead_letter
                .as_ref()
                .map(|c| (c.clone(), senders[c].clone())),
            metrics: metrics.clone(),
            registry: registry.clone(),
            resume,
        };
        let (tx, rx) = mpsc::channel(2);
        let ctx = SourceContext {
            name: name.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            embedded_bootstrap: bootstrap.clone(),
        };
        pipelines
            .sources
            .spawn(def.kind.run(tx, ctx, links[name].clone()));
        pipelines
            .processors
            .spawn(processor::run(chains, rx, dispatch, shutdown.clone()));
    }
    Ok(pipelines)
}

/// On the first SIGINT or SIGTERM, shuts down gracefully; on the second,
/// exits at once.
fn stop_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        if stop_requested().await {
            tracing::info!("interrupted; shutting down gracefully (interrupt again to abort)");
            shutdown.cancel();
            if stop_requested().await {
                std::process::exit(130);
            }
        }
    });
}

/// Waits for every source, processor and sink to end. A failing one, or a
/// Kafka client in `healths` hitting a permanent error, starts a shutdown;
/// returns every failure.
async fn supervise(
    mut source_tasks: JoinSet<Result<(), SourceError>>,
    mut processor_tasks: JoinSet<()>,
    mut sink_tasks: JoinSet<Result<(), SinkError>>,
    healths: &[Arc<Health>],
    shutdown: &CancellationToken,
) -> Vec<anyhow::Error> {
    let (failure_tx, mut failures) = mpsc::unbounded_channel::<usize>();
    let health_watchers: Vec<_> = healths
        .iter()
        .enumerate()
        .map(|(i, health)| {
            let (health, tx) = (health.clone(), failure_tx.clone());
            tokio::spawn(async move {
                health.failed().await;
                let _ = tx.send(i);
            })
        })
        .collect();
    drop(failure_tx);
    let mut reported = vec![false; healths.len()];
    let failure = |i: usize| {
        let h = &healths[i];
        anyhow!("{}: {}", h.component(), h.failure().unwrap_or_default())
    };

    let mut errors = Vec::new();
    let mut sinks_left = sink_tasks.len();
    let mut sources_left = source_tasks.len();
    let mut processors_left = processor_tasks.len();
    while sinks_left + sources_left + processors_left > 0 {
        tokio::select! {
            Some(r) = source_tasks.join_next(), if sources_left > 0 => {
                sources_left -= 1;
                if let Err(e) = flatten(r) { errors.push(e); shutdown.cancel(); }
            }
            Some(r) = processor_tasks.join_next(), if processors_left > 0 => {
                processors_left -= 1;
                if let Err(e) = r { errors.push(anyhow!("processor task: {e}")); shutdown.cancel(); }
            }
            Some(r) = sink_tasks.join_next(), if sinks_left > 0 => {
                sinks_left -= 1;
                if let Err(e) = flatten(r) { errors.push(e); shutdown.cancel(); }
            }
            Some(i) = failures.recv() => {
                reported[i] = true;
                errors.push(failure(i));
                shutdown.cancel();
            }
        }
    }
    for (i, health) in healths.iter().enumerate() {
        if !reported[i] && health.failure().is_some() {
            errors.push(failure(i));
        }
    }
    for watcher in health_watchers {
        watcher.abort();
    }
    errors
}

/// Durable channels settle the acknowledgements of their sinks (last
/// checkpoint, last offset commit) once every sink has stopped.
async fn settle_channels(
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    errors: &mut Vec<anyhow::Error>,
) {
    for (name, task) in tasks {
        match tokio::time::timeout(CHANNEL_SETTLE_TIMEOUT, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(anyhow!("channel `{name}`: {e}")),
            Err(_) => {
                tracing::warn!(channel = %name, "channel did not settle its acknowledgements in time; what it has not recorded is delivered again next time")
            }
        }
    }
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM (what Kubernetes, systemd
/// and `docker stop` send); `false` if no handler could be installed.
async fn stop_requested() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            _ = term.recv() => true,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

fn flatten<E: Into<anyhow::Error>>(r: Result<Result<(), E>, tokio::task::JoinError>) -> Result<()> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow!("task failed: {e}")),
    }
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
