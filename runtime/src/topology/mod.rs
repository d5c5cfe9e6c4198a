//! Builds the running graph from a [`Config`], runs it, and shuts it down so
//! that nothing is lost.
//!
//! Per source: the source task → a small bounded queue → a processing task that
//! runs the source's plugin [`Chain`](crate::plugin::Chain) on a blocking thread
//! and dispatches the result to channels → one sink task per channel.
//!
//! Shutdown (Ctrl-C, or `--exit-when-idle`) runs in dependency order: sources
//! stop reading and flush their partial batch, processors finish what they
//! hold and drop their channel senders, channels drain, sinks make everything
//! durable and return, acknowledgements flow back, and sources make their final
//! commit. A sink that fails closes its channel; the batches that could not be
//! sent are failed, so their offsets are never committed and nothing is lost.

pub mod processor;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channels::{ChannelReceiver, ChannelSender, memory};
use crate::config::{ChannelDef, Config, SinkKind, SourceKind};
use crate::metrics::Metrics;
use crate::plugin::{Chain, Limits, PluginEngine, PluginInstance, Stage};
use crate::sinks::{self, SinkContext};
use crate::sources::embedded::EmbeddedBroker;
use crate::sources::{self, SourceContext};
use processor::Dispatch;

/// How to run a topology.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Shut down gracefully once no source has read an event for this long
    /// (and the embedded feed, if any, is done): batch mode, like a Camus run.
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
    let shutdown = options.shutdown.clone();

    let broker = match &config.embedded_broker {
        Some(cfg) => Some(Arc::new(
            EmbeddedBroker::start(cfg).context("starting the embedded broker")?,
        )),
        None => None,
    };
    let embedded_bootstrap = broker.as_ref().map(|b| b.bootstrap_servers());
    let feed_done = CancellationToken::new();
    let mut feed_task = None;
    if let Some(broker) = &broker {
        let broker = broker.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let done = feed_done.clone();
        feed_task = Some(tokio::spawn(async move {
            let result = broker.run_feed(metrics, shutdown).await;
            done.cancel();
            result
        }));
    } else {
        feed_done.cancel();
    }

    // Plugins: compile each file once; every source gets its own instances.
    let engine = PluginEngine::new().context("starting the plugin engine")?;
    let mut loaded = BTreeMap::new();
    for (name, def) in &config.plugins {
        let plugin = tokio::task::block_in_place(|| engine.load(&def.path, Some(def.kind)))
            .with_context(|| format!("plugin `{name}`"))?;
        tracing::info!(plugin = %name, digest = %&plugin.digest[..12], kind = def.kind.as_str(), "plugin loaded");
        let config_json = serde_json::to_string(&def.config).context("encoding plugin config")?;
        let limits = Limits {
            memory_bytes: def.memory_limit.get() as usize,
            time_budget: def.time_budget.get(),
        };
        loaded.insert(name.clone(), (plugin, config_json, limits));
    }

    // Channels.
    let mut senders: BTreeMap<String, ChannelSender> = BTreeMap::new();
    let mut receivers: BTreeMap<String, ChannelReceiver> = BTreeMap::new();
    for (name, def) in &config.channels {
        let ChannelDef::Memory(memory_config) = def;
        let (tx, rx) = memory::channel(memory::Capacity {
            events: memory_config.capacity_events,
            bytes: memory_config.capacity_bytes.get() as usize,
        });
        senders.insert(name.clone(), tx);
        receivers.insert(name.clone(), rx);
    }

    // Sinks.
    let mut sink_tasks = JoinSet::new();
    for (name, def) in &config.sinks {
        let rx = receivers
            .remove(&def.channel)
            .ok_or_else(|| anyhow!("channel `{}` has no receiver", def.channel))?;
        let ctx = SinkContext {
            name: name.clone(),
            metrics: metrics.clone(),
            embedded_bootstrap: embedded_bootstrap.clone(),
        };
        let kind = def.kind.clone();
        sink_tasks.spawn(async move {
            match kind {
                SinkKind::ObjectStore(c) => sinks::object_store::run(*c, rx, ctx).await,
                SinkKind::Kafka(c) => sinks::kafka::run(*c, rx, ctx).await,
                SinkKind::Logger(c) => sinks::logger::run(c, rx, ctx).await,
                SinkKind::Null(c) => sinks::null::run(c, rx, ctx).await,
            }
        });
    }

    // Sources and their processors.
    let mut source_tasks = JoinSet::new();
    let mut processor_tasks = JoinSet::new();
    for (name, def) in &config.sources {
        let mut stages = Vec::new();
        for plugin in def.chain() {
            let (loaded_plugin, config_json, limits) = &loaded[plugin];
            let mut instance = PluginInstance::new(
                engine.clone(),
                loaded_plugin.clone(),
                plugin,
                config_json.clone(),
                *limits,
            );
            tokio::task::block_in_place(|| instance.warm_up())
                .map_err(|e| anyhow!("plugin `{plugin}` {e}"))?;
            stages.push(Stage::new(instance, &metrics));
        }
        let dispatch = Dispatch {
            source: name.clone(),
            default: def.channels.iter().map(|c| senders[c].clone()).collect(),
            by_name: senders.clone(),
            dead: def.dead_letter.as_ref().map(|c| senders[c].clone()),
            metrics: metrics.clone(),
        };
        let (tx, rx) = mpsc::channel(2);
        let ctx = SourceContext {
            name: name.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            embedded_bootstrap: embedded_bootstrap.clone(),
        };
        let kind = def.kind.clone();
        source_tasks.spawn(async move {
            match kind {
                SourceKind::Kafka(c) => sources::kafka::run(*c, tx, ctx).await,
            }
        });
        let failed = shutdown.clone();
        processor_tasks.spawn(processor::run(Chain::new(stages), rx, dispatch, failed));
    }
    // Only processors hold senders now: channels end when processors finish.
    drop(senders);
    drop(receivers);

    let status = status::spawn(metrics.clone(), options.status_line, shutdown.clone());
    let idle = options.exit_when_idle.map(|idle| {
        tokio::spawn(status::exit_when_idle(
            metrics.clone(),
            idle,
            feed_done.clone(),
            shutdown.clone(),
        ))
    });
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("interrupted; shutting down gracefully (Ctrl-C again to abort)");
                shutdown.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let mut errors = Vec::new();
    let mut sinks_left = sink_tasks.len();
    let mut sources_left = source_tasks.len();
    let mut processors_left = processor_tasks.len();
    // Wait for everything; a failing sink or source starts a shutdown.
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
        }
    }
    shutdown.cancel();
    if let Some(task) = feed_task {
        match task.await {
            Ok(Ok(n)) => tracing::info!(events = n, "embedded feed finished"),
            Ok(Err(e)) => errors.push(e.into()),
            Err(e) => errors.push(anyhow!("embedded feed task: {e}")),
        }
    }
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

fn flatten<E: Into<anyhow::Error>>(r: Result<Result<(), E>, tokio::task::JoinError>) -> Result<()> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow!("task failed: {e}")),
    }
}
