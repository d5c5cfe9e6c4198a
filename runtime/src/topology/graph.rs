//! The running graph: every source (with its processor), channel, sink,
//! plugin slot and lookup table of the running configuration, each with the
//! handles to stop it, and how a new configuration is applied to it while
//! events flow ([`Graph::apply`]).
//!
//! A live reload changes only what the new configuration changes, in an
//! order that loses and duplicates nothing:
//!
//! 1. **Plugins** whose definition, team or granted lookup tables changed
//!    get a new version (new config, limits, grants, policy), checked like
//!    a new file and swapped in at the next batch: the sources running them
//!    go on. New lookup tables are opened first.
//! 2. **Sources** that were removed or changed stop gracefully: they hand
//!    on their open batch, wait for every sink to acknowledge what they
//!    handed on, and commit. Sinks still run meanwhile.
//! 3. **Channels** that changed, and the channels of sinks that were added,
//!    removed or changed, are cycled: the route table marks the name
//!    pending (processors sending there wait: backpressure, not loss), the
//!    old channel closes, its sink drains it and makes everything durable,
//!    and the new channel and sink start. A sink is only ever stopped by
//!    closing its channel, so it always finishes what it received.
//! 4. **Sources** that were added or changed start.
//!
//! An exactly-once sink learns where each partition's committed output ends
//! when its source is assigned partitions; so when such a sink is rebuilt,
//! the sources feeding it are restarted with it (after it, so they resume at
//! its committed output). Everything else keeps running untouched: the
//! `starts` counter of each component (`sluice_<kind>_starts_total`) shows
//! what was rebuilt. `data_dir`, `[admin]` and `[embedded_broker]` cannot
//! change live: a reload changing them is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::processor::{self, Dispatch};
use super::routes::{Route, RouteTable};
use super::sink_group;
use super::stopping;
use crate::channels::{ChannelReceiver, OpenContext};
use crate::config::Config;
use crate::delivery::SourceLink;
use crate::kafka::errors::Health;
use crate::lookup::{Grants, LookupTable};
use crate::metrics::Metrics;
use crate::plugin::reload::{self, WatchSet, WatchedTable};
use crate::plugin::{
    Chain, LogGate, PluginEngine, PluginSlot, Registry, Sandbox, SlotSpec, Stage, StagePolicy,
};
use crate::sinks::{Guarantee, SinkContext};
use crate::sources::SourceContext;

/// Longest wait for a durable channel to record its sink's last
/// acknowledgements when it closes.
const CHANNEL_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the graph shares with every component it starts.
pub(super) struct Shared {
    pub metrics: Arc<Metrics>,
    pub engine: PluginEngine,
    pub bootstrap: Option<String>,
    /// Fires when the whole run shuts down.
    pub shutdown: CancellationToken,
}

/// A task of the graph ended with an error, or a Kafka client of a channel
/// or lookup table failed for good: the run shuts down.
pub(super) type Failure = anyhow::Error;

struct RunningSource {
    /// Tells this instance from an earlier one of the same name.
    id: u64,
    /// Whether its task has ended on its own (an `exec` command that exited).
    ended: bool,
    /// Stops this source alone (a child of the run's shutdown).
    stop: CancellationToken,
    source: JoinHandle<()>,
    processor: JoinHandle<()>,
    resume: Arc<Notify>,
}

struct RunningChannel {
    /// Records the sink's last acknowledgements of a durable channel.
    settle: Option<JoinHandle<()>>,
    /// Watches the channel's Kafka client, if it has one.
    health: Option<JoinHandle<()>>,
}

/// The lookup tables, filled, and what keeps them current.
struct OpenLookup {
    table: Arc<LookupTable>,
    watched: Option<WatchedTable>,
    /// What follows the table's source of changes; dropping it stops it.
    _follower: Option<Box<dyn std::any::Any + Send>>,
    health: Option<JoinHandle<()>>,
}

impl Drop for OpenLookup {
    /// A table dropped (replaced, removed, or opened for a refused reload)
    /// no longer reports its client's failures.
    fn drop(&mut self) {
        if let Some(h) = self.health.take() {
            h.abort();
        }
    }
}

/// See the module docs.
pub(super) struct Graph {
    shared: Shared,
    config: Config,
    routes: Arc<RouteTable>,
    /// One per source name, kept across restarts of the source: the sinks
    /// it feeds hold it.
    links: BTreeMap<String, Arc<SourceLink>>,
    lookups: BTreeMap<String, OpenLookup>,
    registry: Registry,
    channels: BTreeMap<String, RunningChannel>,
    sinks: BTreeMap<String, JoinHandle<()>>,
    sources: BTreeMap<String, RunningSource>,
    failures: mpsc::UnboundedSender<Failure>,
    /// Receives `(name, id)` when a source's task ends.
    ended: mpsc::UnboundedSender<(String, u64)>,
    next_id: u64,
    /// Tasks of sources a reload was stopping when the run shut down:
    /// [`Graph::drain`] awaits them with the others.
    stopping: Vec<(String, JoinHandle<()>)>,
    watcher: Option<reload::Watcher>,
}

/// Why a new configuration was not applied.
#[derive(Debug)]
pub(super) enum ApplyError {
    /// It was refused before anything changed: the running one goes on.
    Refused(String),
    /// Applying it failed half-way: the run shuts down.
    Failed(anyhow::Error),
}

/// What a new configuration changes; see [`plan`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Sources to stop (removed, changed, or feeding a rebuilt exactly-once sink).
    pub stop_sources: BTreeSet<String>,
    /// Sources to start from the new configuration.
    pub start_sources: BTreeSet<String>,
    /// Channels to close (with their sinks), by their old definition.
    pub close_channels: BTreeSet<String>,
    /// Channels to open (with their sinks), by their new definition.
    pub open_channels: BTreeSet<String>,
    /// Plugins to publish a new version of (settings changed).
    pub reconfigure_plugins: BTreeSet<String>,
    /// Plugins to load anew (added, or their kind or file changed).
    pub load_plugins: BTreeSet<String>,
    /// Plugins to drop.
    pub remove_plugins: BTreeSet<String>,
    /// Lookup tables to open anew (added or changed).
    pub open_lookups: BTreeSet<String>,
    /// Lookup tables to drop.
    pub remove_lookups: BTreeSet<String>,
}

impl Plan {
    /// Whether the new configuration changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// Names in `section` of `new` that are new, changed or removed compared
/// with `old`: (changed or added, removed).
fn changed(old: &Config, new: &Config, section: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let names = |c: &Config| -> BTreeSet<String> {
        let prefix = format!("{section}.");
        c.fingerprints
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    };
    let (before, after) = (names(old), names(new));
    let key = |n: &str| format!("{section}.{n}");
    let changed = after
        .iter()
        .filter(|n| old.fingerprints.get(&key(n)) != new.fingerprints.get(&key(n)))
        .cloned()
        .collect();
    let removed = before.difference(&after).cloned().collect();
    (changed, removed)
}

/// A new configuration changes a top-level key that cannot change live.
#[derive(Debug, thiserror::Error)]
#[error("`{key}` changed: that needs a restart")]
pub(super) struct NeedsRestart {
    /// `data_dir`, `admin`, `embedded_broker` or `sink_groups`.
    pub key: &'static str,
}

/// What must change to go from `old` to `new`, or why it cannot be done live.
pub(super) fn plan(old: &Config, new: &Config) -> Result<Plan, NeedsRestart> {
    for key in ["data_dir", "admin", "embedded_broker"] {
        if old.fingerprints.get(key) != new.fingerprints.get(key) {
            return Err(NeedsRestart { key });
        }
    }
    if old.sink_groups != new.sink_groups {
        return Err(NeedsRestart { key: "sink_groups" });
    }
    let mut plan = Plan::default();
    let (lookups, removed_lookups) = changed(old, new, "lookups");
    plan.open_lookups = lookups;
    plan.remove_lookups = removed_lookups;
    let (teams, _) = changed(old, new, "teams");
    let (plugins, removed_plugins) = changed(old, new, "plugins");
    for (name, def) in &new.plugins {
        let granted = new.plugin_settings(name).capabilities.lookups;
        let touched = plugins.contains(name)
            || teams.contains(def.team())
            || granted.iter().any(|t| plan.open_lookups.contains(t));
        if !touched {
            continue;
        }
        match old.plugins.get(name) {
            Some(before) if before.kind == def.kind && before.path == def.path => {
                plan.reconfigure_plugins.insert(name.clone());
            }
            _ => {
                plan.load_plugins.insert(name.clone());
            }
        }
    }
    plan.remove_plugins = removed_plugins;

    let (sources, removed_sources) = changed(old, new, "sources");
    plan.stop_sources.extend(removed_sources);
    for name in &sources {
        if old.sources.contains_key(name) {
            plan.stop_sources.insert(name.clone());
        }
        plan.start_sources.insert(name.clone());
    }
    // A source whose plugin is loaded anew runs new stages, and one whose
    // plugins may now route into a channel newly closed to it (a new
    // exactly-once sink of another source) must learn that: restart them.
    for (name, def) in &new.sources {
        let reloaded = def.plugins().any(|p| plan.load_plugins.contains(p));
        let closed_before: BTreeSet<String> = old.channels_closed_to(name).into_iter().collect();
        let newly_closed = def.chain().next().is_some()
            && new
                .channels_closed_to(name)
                .iter()
                .any(|c| !closed_before.contains(c));
        if (reloaded || newly_closed) && old.sources.contains_key(name) {
            plan.stop_sources.insert(name.clone());
            plan.start_sources.insert(name.clone());
        }
    }

    let (channels, removed_channels) = changed(old, new, "channels");
    let (sinks, removed_sinks) = changed(old, new, "sinks");
    let mut cycled: BTreeSet<String> = channels.union(&removed_channels).cloned().collect();
    for sink in sinks.iter().chain(&removed_sinks) {
        for config in [old, new] {
            if let Some(def) = config.sinks.get(sink) {
                cycled.insert(def.channel.clone());
            }
        }
    }
    // A sink holding a channel as its `dead_letter` must end before that
    // channel can close: it is cycled too.
    loop {
        let more: Vec<String> = [old, new]
            .iter()
            .flat_map(|c| c.sinks.values())
            .filter(|d| d.dead_letter.as_ref().is_some_and(|dl| cycled.contains(dl)))
            .map(|d| d.channel.clone())
            .filter(|c| !cycled.contains(c))
            .collect();
        if more.is_empty() {
            break;
        }
        cycled.extend(more);
    }
    for config in [old, new] {
        for (name, def) in &config.sinks {
            if !cycled.contains(&def.channel) || def.kind.guarantee() == Guarantee::AtLeastOnce {
                continue;
            }
            // An exactly-once or transactional sink learns its positions
            // through its sources' assignments: they restart with it.
            for source in config.sources_feeding(&def.channel) {
                let _ = name;
                if old.sources.contains_key(source) {
                    plan.stop_sources.insert(source.to_owned());
                }
                if new.sources.contains_key(source) {
                    plan.start_sources.insert(source.to_owned());
                }
            }
        }
    }
    plan.close_channels = cycled
        .iter()
        .filter(|c| old.channels.contains_key(*c))
        .cloned()
        .collect();
    plan.open_channels = cycled
        .iter()
        .filter(|c| new.channels.contains_key(*c))
        .cloned()
        .collect();
    Ok(plan)
}

impl Graph {
    /// Opens every lookup table and channel, loads every plugin, and starts
    /// every sink and source of `config`. `failures` receives what must
    /// shut the run down, `ended` each source instance whose task ended
    /// (see [`Graph::source_ended`]).
    pub fn start(
        config: Config,
        shared: Shared,
        failures: mpsc::UnboundedSender<Failure>,
        ended: mpsc::UnboundedSender<(String, u64)>,
    ) -> Result<Self> {
        let mut graph = Self {
            links: BTreeMap::new(),
            routes: Arc::new(RouteTable::default()),
            lookups: BTreeMap::new(),
            registry: Registry::new(Some(config.data_dir.join("status").join("plugins.json"))),
            channels: BTreeMap::new(),
            sinks: BTreeMap::new(),
            sources: BTreeMap::new(),
            failures,
            ended,
            next_id: 0,
            stopping: Vec::new(),
            watcher: None,
            shared,
            config,
        };
        let config = graph.config.clone();
        for name in config.lookups.keys() {
            let lookup = graph.open_lookup(&config, name)?;
            graph.lookups.insert(name.clone(), lookup);
        }
        let none = BTreeMap::new();
        for name in config.plugins.keys() {
            let slot = graph.load_plugin(&config, name, &none)?;
            graph.registry.insert(slot);
        }
        graph.registry.write_status();
        for name in config.channels.keys() {
            graph.open_channel(&config, name)?;
        }
        for name in config.sources.keys() {
            graph.start_source(&config, name)?;
        }
        graph.watch()?;
        Ok(graph)
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records that instance `id` of source `name` ended on its own (not
    /// stopped by a reload); `true` once every source has: the run is over
    /// and drains, as when every `exec` command has exited.
    pub fn source_ended(&mut self, name: &str, id: u64) -> bool {
        if let Some(s) = self.sources.get_mut(name)
            && s.id == id
        {
            s.ended = true;
        }
        !self.sources.is_empty() && self.sources.values().all(|s| s.ended)
    }

    /// Applies `new` (see the module docs). First everything that can
    /// refuse it is checked without changing anything: new lookup tables
    /// open, new plugins load, changed plugins pass their checks with their
    /// new settings. A refusal leaves the running graph as it was. Then the
    /// changes are made; an error there shuts the run down.
    pub async fn apply(&mut self, new: Config, plan: &Plan) -> Result<(), ApplyError> {
        let old = self.config.clone();
        // Prepare: nothing running changes.
        let mut fresh: BTreeMap<String, OpenLookup> = BTreeMap::new();
        for name in &plan.open_lookups {
            let lookup = self
                .open_lookup(&new, name)
                .map_err(|e| ApplyError::Refused(format!("lookup table `{name}`: {e:#}")))?;
            fresh.insert(name.clone(), lookup);
        }
        let mut slots = Vec::new();
        for name in &plan.load_plugins {
            let slot = self
                .load_plugin(&new, name, &fresh)
                .map_err(|e| ApplyError::Refused(format!("{e:#}")))?;
            slots.push(slot);
        }
        let mut versions = Vec::new();
        for name in &plan.reconfigure_plugins {
            let (spec, policy) = self
                .slot_spec(&new, name, &fresh)
                .map_err(|e| ApplyError::Refused(format!("{e:#}")))?;
            let slot = self
                .registry
                .get(name)
                .cloned()
                .ok_or_else(|| ApplyError::Failed(anyhow!("plugin `{name}` has no slot")))?;
            let engine = self.shared.engine.clone();
            let version = tokio::task::block_in_place(|| slot.prepare(&engine, spec, policy))
                .map_err(|e| ApplyError::Refused(e.0))?;
            versions.push((slot, version));
        }
        // Commit.
        for (name, lookup) in fresh {
            // The table it replaces (if any) stops following its source.
            self.lookups.insert(name, lookup);
        }
        for slot in slots {
            self.registry.insert(slot);
        }
        for (slot, version) in versions {
            slot.publish(version);
        }
        self.change(old, new, plan)
            .await
            .map_err(ApplyError::Failed)
    }

    /// The second half of [`Graph::apply`]: sources, channels and sinks.
    async fn change(&mut self, old: Config, new: Config, plan: &Plan) -> Result<()> {
        for name in &plan.stop_sources {
            self.stop_source(name).await;
        }
        if self.shared.shutdown.is_cancelled() {
            // Shut down mid-way: the drain stops what runs now.
            return Ok(());
        }
        for name in closing_order(&old, &plan.close_channels) {
            self.close_channel(&old, &name, plan.open_channels.contains(&name))
                .await;
        }
        for name in &plan.open_channels {
            self.open_channel(&new, name)?;
        }
        for name in &plan.start_sources {
            self.start_source(&new, name)?;
        }
        for name in &plan.remove_plugins {
            self.registry.remove(name);
        }
        for name in &plan.remove_lookups {
            self.lookups.remove(name);
        }
        self.registry.write_status();
        self.config = new;
        self.watch()?;
        Ok(())
    }

    /// Stops everything in dependency order once the run's shutdown fired:
    /// sources stop reading and hand on their last batch, processors finish
    /// and end, the route table lets go of the channels, sinks drain them
    /// (completing their files, which acknowledges the sources' last
    /// batches), sources make their final commit, durable channels settle.
    /// A source waits for its acknowledgements, which a sink may hold until
    /// its channel closes: so the channels close before sources are awaited.
    pub async fn drain(mut self) {
        self.shared.shutdown.cancel();
        let sources = std::mem::take(&mut self.sources);
        for s in sources.values() {
            s.stop.cancel();
        }
        let mut waiting = std::mem::take(&mut self.stopping);
        for (name, s) in sources {
            let _ = stopping::watched("processor", &name, s.processor).await;
            waiting.push((name, s.source));
        }
        self.routes.clear();
        for (name, sink) in std::mem::take(&mut self.sinks) {
            let _ = stopping::watched("sink", &name, sink).await;
        }
        for (name, source) in waiting {
            let _ = stopping::watched("source", &name, source).await;
        }
        for (name, channel) in std::mem::take(&mut self.channels) {
            settle(&name, channel).await;
        }
        self.lookups.clear();
    }

    /// Sources by name, and how an operator resumes each.
    fn watch(&mut self) -> Result<()> {
        self.watcher = None;
        let watcher = reload::watch(WatchSet {
            registry: self.registry.clone(),
            engine: self.shared.engine.clone(),
            tables: self
                .lookups
                .values()
                .filter_map(|l| l.watched.clone())
                .collect(),
            resume_dir: self.config.data_dir.join("control").join("resume"),
            resume: self
                .sources
                .iter()
                .map(|(n, s)| (n.clone(), s.resume.clone()))
                .collect(),
        })
        .map_err(|e| anyhow!(e))?;
        self.watcher = Some(watcher);
        Ok(())
    }

    /// Opens lookup table `name` of `config` (not yet in the graph).
    fn open_lookup(&self, config: &Config, name: &str) -> Result<OpenLookup> {
        let def = &config.lookups[name];
        let table = Arc::new(LookupTable::new(name));
        let ctx = crate::lookup::OpenContext {
            metrics: &self.shared.metrics,
            embedded_bootstrap: self.shared.bootstrap.as_deref(),
        };
        let open = def.kind.open(table.clone(), &ctx).map_err(|e| anyhow!(e))?;
        let health = open.health.map(|h| self.watch_health(h));
        Ok(OpenLookup {
            watched: open.watched.map(|file| WatchedTable {
                file,
                table: table.clone(),
            }),
            table,
            _follower: open.follower,
            health,
        })
    }

    /// The slot spec and stage policy of plugin `name` under `config`, its
    /// grants from `fresh` tables before the graph's.
    fn slot_spec(
        &self,
        config: &Config,
        name: &str,
        fresh: &BTreeMap<String, OpenLookup>,
    ) -> Result<(SlotSpec, StagePolicy)> {
        let def = &config.plugins[name];
        let settings = config.plugin_settings(name);
        let sandbox = Sandbox {
            limits: settings.limits,
            grants: Grants::new(
                settings
                    .capabilities
                    .lookups
                    .iter()
                    .filter_map(|t| fresh.get(t).or(self.lookups.get(t)))
                    .map(|l| l.table.clone()),
            ),
            env: settings
                .capabilities
                .env
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
            clock: settings.capabilities.clock,
            log: LogGate::new(
                self.shared
                    .metrics
                    .counter(&format!("plugin.{name}.log_suppressed")),
            ),
        };
        let spec = SlotSpec {
            name: name.to_owned(),
            kind: def.kind,
            path: def.path.clone(),
            team: settings.team.clone(),
            pin: def.sha256.clone(),
            config_json: serde_json::to_string(&def.config).context("encoding plugin config")?,
            sandbox,
        };
        let policy = StagePolicy {
            on_failure: settings.on_failure,
            breaker: settings.breaker,
        };
        Ok((spec, policy))
    }

    /// Loads plugin `name` of `config` into a new slot (not yet in the registry).
    fn load_plugin(
        &self,
        config: &Config,
        name: &str,
        fresh: &BTreeMap<String, OpenLookup>,
    ) -> Result<Arc<PluginSlot>> {
        let (spec, _) = self.slot_spec(config, name, fresh)?;
        let team = spec.team.clone();
        let kind = spec.kind;
        let slot = tokio::task::block_in_place(|| {
            PluginSlot::load(&self.shared.engine, spec, &self.shared.metrics)
        })
        .map_err(|e| anyhow!("plugin `{name}`: {e}"))?;
        let v = slot.current();
        tracing::info!(plugin = %name, %team, digest = v.loaded.short_digest(), kind = kind.as_str(),
            cached = v.loaded.cached, compile_ms = v.loaded.compile_time.as_millis() as u64, "plugin loaded");
        Ok(slot)
    }

    fn watch_health(&self, health: Arc<Health>) -> JoinHandle<()> {
        let failures = self.failures.clone();
        tokio::spawn(async move {
            health.failed().await;
            let _ = failures.send(anyhow!(
                "{}: {}",
                health.component(),
                health.failure().unwrap_or_default()
            ));
        })
    }

    fn starts(&self, kind: &str, name: &str) {
        self.shared
            .metrics
            .counter(&format!("{kind}.{name}.starts"))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Opens channel `name` of `config` and starts the sinks draining it.
    fn open_channel(&mut self, config: &Config, name: &str) -> Result<()> {
        if self.channels.contains_key(name) {
            return Ok(()); // opened first as a sink's dead-letter channel
        }
        let def = &config.channels[name];
        let ctx = OpenContext {
            metrics: &self.shared.metrics,
            embedded_bootstrap: self.shared.bootstrap.as_deref(),
        };
        let open = tokio::task::block_in_place(|| def.open(name, &ctx))?;
        let health = open.health.map(|h| self.watch_health(h));
        self.channels.insert(
            name.to_owned(),
            RunningChannel {
                settle: open.settle,
                health,
            },
        );
        self.starts("channel", name);
        let mut receiver = Some(open.receiver);
        // A sink group drains the channel: each member gets a channel of
        // its own, fed by the group's dispatcher.
        let group = config
            .sinks
            .iter()
            .find(|(_, d)| d.channel == name)
            .and_then(|(sink, _)| config.group_of(sink))
            .map(str::to_owned);
        // Each member's channel from the group, and what restarts it (see
        // `sink_group::supervise`).
        let mut member_ends: BTreeMap<String, (ChannelReceiver, sink_group::Supervision)> =
            BTreeMap::new();
        let mut members = Vec::new();
        let (revive, revived) = tokio::sync::mpsc::unbounded_channel();
        if let Some(group) = &group {
            let def = &config.sink_groups[group];
            let restarts = self
                .shared
                .metrics
                .counter(&format!("sink_group.{group}.member_restarts"));
            for sink in def.by_priority() {
                let (tx, rx) = sink_group::member_channel();
                let member = sink_group::Member::new(&sink, tx, &self.shared.metrics);
                let supervision = sink_group::Supervision {
                    index: members.len(),
                    dead: member.dead.clone(),
                    revive: revive.clone(),
                    max_backoff: def.max_backoff.get(),
                    restarts: restarts.clone(),
                };
                member_ends.insert(sink, (rx, supervision));
                members.push(member);
            }
        }
        drop(revive);
        for (sink, def) in config.sinks.iter().filter(|(_, d)| d.channel == name) {
            let (rx, supervision) = match member_ends.remove(sink) {
                Some((rx, s)) => (Some(rx), Some(s)),
                None => (receiver.take(), None),
            };
            let rx = rx.ok_or_else(|| anyhow!("channel `{name}` has more than one sink"))?;
            let link = match config.sources_feeding(name)[..] {
                [source] => Some(self.link(source)),
                _ => None,
            };
            if let (Guarantee::Transactional, Some(link)) = (def.kind.guarantee(), &link) {
                // The sink's transactions commit the source's offsets.
                link.set_offsets_in_transactions();
            }
            // Every source that may reach this sink resumes no later than
            // the consumer group's commit, unless the sink keeps its own
            // positions and has no dead-letter sink (which keeps none: an
            // exactly-once sink sends what it re-reads there again).
            if def.kind.guarantee() != Guarantee::ExactlyOnce || def.dead_letter.is_some() {
                for source in config.sources_feeding(name) {
                    self.link(source).set_co_fed();
                }
            }
            let dead_letter = match &def.dead_letter {
                Some(c) => match self.routes.sender_now(c) {
                    Some(tx) => Some(tx),
                    None => {
                        // Its dead-letter channel opens after it: open it first.
                        self.open_channel(config, c)?;
                        self.routes.sender_now(c)
                    }
                },
                None => None,
            };
            let ctx = SinkContext {
                name: sink.clone(),
                metrics: self.shared.metrics.clone(),
                embedded_bootstrap: self.shared.bootstrap.clone(),
                link: config
                    .exactly_once_source(sink)
                    .map(|s| self.link(s))
                    .or(link),
                state_dir: Some(config.data_dir.join("sinks").join(sink)),
                dead_letter,
            };
            let task = match supervision {
                // A group member's failure is the group's to handle.
                Some(s) => tokio::spawn(sink_group::supervise(def.kind.clone(), rx, ctx, s)),
                None => {
                    let task = def.kind.run(rx, ctx);
                    let failures = self.failures.clone();
                    tokio::spawn(async move {
                        if let Err(e) = task.await {
                            let _ = failures.send(e.into());
                        }
                    })
                }
            };
            self.sinks.insert(sink.clone(), task);
            self.starts("sink", sink);
        }
        if let (Some(group), Some(rx)) = (group, receiver.take()) {
            let def = config.sink_groups[&group].clone();
            let failures = self.failures.clone();
            let run = sink_group::run(
                group.clone(),
                def,
                rx,
                members,
                revived,
                self.shared.metrics.clone(),
            );
            self.sinks.insert(
                format!("group:{group}"),
                tokio::spawn(async move {
                    if let Err(e) = run.await {
                        let _ = failures.send(e.into());
                    }
                }),
            );
        }
        self.routes.set(name, Route::Ready(open.sender));
        Ok(())
    }

    /// Closes channel `name`: processors sending there wait (if it is
    /// `reopened`) or no longer find it; its sink drains it and ends.
    async fn close_channel(&mut self, old: &Config, name: &str, reopened: bool) {
        if reopened {
            self.routes.set(name, Route::Pending);
        } else {
            self.routes.remove(name);
        }
        for (sink, def) in old.sinks.iter().filter(|(_, d)| d.channel == name) {
            if let Some(task) = self.sinks.remove(sink) {
                let _ = task.await;
            }
            if let Some(source) = old.exactly_once_source(sink) {
                self.link(source).unregister(sink);
            }
            let _ = def;
        }
        if let Some(channel) = self.channels.remove(name) {
            settle(name, channel).await;
        }
    }

    fn link(&mut self, source: &str) -> Arc<SourceLink> {
        self.links
            .entry(source.to_owned())
            .or_insert_with(|| SourceLink::new(source))
            .clone()
    }

    /// Starts source `name` of `config` and the processor running its chain.
    fn start_source(&mut self, config: &Config, name: &str) -> Result<()> {
        let def = &config.sources[name];
        let metrics = &self.shared.metrics;
        let engine = &self.shared.engine;
        // One chain per lane (see `SourceDef::parallelism`); no plugins, one lane.
        let lanes = if def.chain().next().is_none() {
            1
        } else {
            def.parallelism
        };
        let registry = &self.registry;
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
        if def.type_name == "kafka" {
            // Not ready (see `/ready`) until it joins its group.
            metrics
                .gauge(&format!("source.{name}.assigned_partitions"))
                .store(-1, Ordering::Relaxed);
        }
        let stop = self.shared.shutdown.child_token();
        let resume = Arc::new(Notify::new());
        let dispatch = Dispatch {
            source: name.to_owned(),
            default: def.channels.clone(),
            closed: config.channels_closed_to(name).into_iter().collect(),
            dead: def.dead_letter.clone(),
            routes: self.routes.clone(),
            metrics: metrics.clone(),
            registry: self.registry.clone(),
            resume: resume.clone(),
            fatal: self.shared.shutdown.clone(),
        };
        let (tx, rx) = mpsc::channel(2);
        let ctx = SourceContext {
            name: name.to_owned(),
            metrics: metrics.clone(),
            shutdown: stop.clone(),
            embedded_bootstrap: self.shared.bootstrap.clone(),
            state_dir: config.data_dir.join("sources").join(name),
        };
        let run = def.kind.run(tx, ctx, self.link(name));
        let (failures, ended) = (self.failures.clone(), self.ended.clone());
        let id = self.next_id;
        self.next_id += 1;
        let source_name = name.to_owned();
        let source = tokio::spawn(async move {
            if let Err(e) = run.await {
                let _ = failures.send(e.into());
            }
            let _ = ended.send((source_name, id));
        });
        let processor = tokio::spawn(processor::run(chains, rx, dispatch, stop.clone()));
        self.sources.insert(
            name.to_owned(),
            RunningSource {
                id,
                ended: false,
                stop,
                source,
                processor,
                resume,
            },
        );
        self.starts("source", name);
        Ok(())
    }

    /// Stops source `name` gracefully and waits until it committed.
    async fn stop_source(&mut self, name: &str) {
        let Some(s) = self.sources.remove(name) else {
            return;
        };
        s.stop.cancel();
        // The processor ends once the source stops handing on; the source
        // then waits until its sinks hold everything it read (a file sink:
        // up to its roll), and commits. A shutdown meanwhile leaves the
        // waiting to the drain.
        let shutdown = self.shared.shutdown.clone();
        let (mut processor, mut source) = (s.processor, s.source);
        tokio::select! {
            _ = &mut processor => {}
            () = shutdown.cancelled() => {
                let _ = processor.await;
                self.stopping.push((name.to_owned(), source));
                return;
            }
        }
        tokio::select! {
            _ = &mut source => {}
            () = shutdown.cancelled() => self.stopping.push((name.to_owned(), source)),
        }
    }
}

/// `channels` in an order that closes a channel only once no sink still
/// running holds it as its `dead_letter` (such a sink drains a channel that
/// closes earlier in the order); a cycle, which the loader refuses, falls
/// back to name order.
fn closing_order(old: &Config, channels: &BTreeSet<String>) -> Vec<String> {
    let mut left = channels.clone();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let held = |c: &String| {
            old.sinks.values().any(|d| {
                d.dead_letter.as_ref() == Some(c) && d.channel != *c && left.contains(&d.channel)
            })
        };
        let next = left
            .iter()
            .find(|c| !held(c))
            .or_else(|| left.iter().next())
            .cloned()
            .expect("not empty");
        left.remove(&next);
        order.push(next);
    }
    order
}

/// Waits (bounded) for a durable channel to record its sink's last
/// acknowledgements, and stops watching its client.
async fn settle(name: &str, channel: RunningChannel) {
    if let Some(h) = channel.health {
        h.abort();
    }
    let Some(task) = channel.settle else {
        return;
    };
    match tokio::time::timeout(CHANNEL_SETTLE_TIMEOUT, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(channel = %name, "settling acknowledgements: {e}"),
        Err(_) => {
            tracing::warn!(channel = %name, "channel did not settle its acknowledgements in time; what it has not recorded is delivered again next time")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[sources.a]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["a"]
channels = ["lake"]

[sources.b]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["b"]
channels = ["other"]

[channels.lake]
type = "memory"

[channels.other]
type = "memory"

[channels.rejects]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "file:///tmp/lake"
roll_interval = "10s"
dead_letter = "rejects"

[sinks.other]
type = "object_store"
channel = "other"
url = "file:///tmp/other"
exactly_once = true
roll_interval = "10s"

[sinks.rejects]
type = "null"
channel = "rejects"
"#;

    fn load(text: &str) -> Config {
        crate::config::parse(std::path::Path::new("t.toml"), text, |_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        // Layout and comments do not count: only values do.
        let spaced = BASE.replace("type = \"null\"", "type    =   \"null\"   # the end");
        assert!(plan(&load(BASE), &load(&spaced)).unwrap().is_empty());
    }

    #[test]
    fn a_sinks_new_roll_cycles_its_channel_and_nothing_else() {
        let new = BASE.replacen("roll_interval = \"10s\"", "roll_interval = \"1s\"", 1);
        let p = plan(&load(BASE), &load(&new)).unwrap();
        assert_eq!(p.close_channels, set(&["lake"]));
        assert_eq!(p.open_channels, set(&["lake"]));
        assert!(
            p.stop_sources.is_empty() && p.start_sources.is_empty(),
            "{p:?}"
        );
    }

    #[test]
    fn an_exactly_once_sink_restarts_its_source_with_it() {
        let new = BASE.replace(
            "url = \"file:///tmp/other\"",
            "url = \"file:///tmp/other2\"",
        );
        let p = plan(&load(BASE), &load(&new)).unwrap();
        assert_eq!(p.close_channels, set(&["other"]));
        assert_eq!(p.stop_sources, set(&["b"]));
        assert_eq!(p.start_sources, set(&["b"]));
    }

    #[test]
    fn a_dead_letter_channel_cycles_the_sinks_writing_into_it() {
        let new = BASE.replace("type = \"null\"", "type = \"logger\"");
        let p = plan(&load(BASE), &load(&new)).unwrap();
        // `lake` holds `rejects` as its dead-letter channel: it must end
        // before `rejects` can close.
        assert_eq!(p.close_channels, set(&["lake", "rejects"]));
        assert!(p.stop_sources.is_empty(), "{p:?}");
    }

    #[test]
    fn a_dead_letter_channel_closes_after_the_sinks_writing_into_it() {
        // `zlake`'s sink writes into `arejects`: `arejects` closes last,
        // although its name comes first.
        let text = BASE.replace("lake", "zlake").replace("rejects", "arejects");
        let order = closing_order(&load(&text), &set(&["zlake", "arejects"]));
        assert_eq!(order, vec!["zlake".to_string(), "arejects".to_string()]);
    }

    #[test]
    fn a_removed_source_only_stops() {
        let new = BASE.replace(
            "[sources.a]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ngroup_id = \"g\"\ntopics = [\"a\"]\nchannels = [\"lake\"]\n",
            "",
        );
        let new = load(&new);
        assert!(!new.sources.contains_key("a"));
        let p = plan(&load(BASE), &new).unwrap();
        assert_eq!(p.stop_sources, set(&["a"]));
        assert!(
            p.start_sources.is_empty() && p.close_channels.is_empty(),
            "{p:?}"
        );
    }

    #[test]
    fn what_needs_a_restart_is_refused() {
        let new = format!("data_dir = \"elsewhere\"\n{BASE}");
        let why = plan(&load(BASE), &load(&new)).unwrap_err();
        assert_eq!(why.key, "data_dir");
        assert!(why.to_string().contains("needs a restart"), "{why}");
    }
}
