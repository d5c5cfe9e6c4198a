//! The TOML configuration: named sources, plugins, channels and sinks wired by name.
//!
//! ```toml
//! [sources.tx]                 # a source and its processing chain
//! type = "kafka"               # every component has a `type`
//! bootstrap_servers = "${KAFKA:-127.0.0.1:9092}"
//! group_id = "sluice"
//! topics = ["transactions"]
//! decoder = "csv"              # plugins run in this order:
//! interceptors = ["mask"]      #   decoder → interceptors → router
//! router = "by-type"
//! channels = ["lake"]          # where events go unless routed elsewhere
//! dead_letter = "rejects"      # where dead-lettered events go
//! dead_letter_interceptors = ["redact"]   # run on dead letters before they go there
//!
//! [plugins.mask]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/mask.wasm"   # relative to this file
//! config = { fields = ["card"], keep_last = 4 }         # passed to the plugin
//!
//! [channels.lake]
//! type = "memory"
//!
//! [sinks.lake]
//! type = "object_store"
//! channel = "lake"
//! url = "file:///tmp/lake"
//! ```
//!
//! Loading is two-step so that every error, including those of a component's
//! own keys and of references between components, names `file:line:col` and
//! the key: the text is parsed into a table, the `type` and wiring keys of each
//! component are taken out, the rest is deserialized into the component's own
//! config struct (`deny_unknown_fields`), and error paths are mapped back to
//! positions with [`locate`]. All errors found are reported at once.

pub mod admin;
pub mod error;
pub(crate) mod interpolate;
mod loader;
pub(crate) mod locate;
mod references;
pub mod sink_groups;
pub mod team;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use error::{ConfigError, ConfigErrors};
use loader::Loader;
pub use team::{Capabilities, DEFAULT_TEAM, TeamDef};

pub use crate::plugin::{BreakerConfig, FailurePolicy, PluginKind};
use crate::units::{ByteSize, HumanDuration};

use crate::channels::Channel;
use crate::plugin::Limits;

use crate::sinks::{Guarantee, Sink};
use crate::sources::Source;
use crate::sources::embedded::EmbeddedBrokerConfig;

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Key `data_dir`: where Sluice keeps state between runs (compiled
    /// plugin cache, status files, control requests), relative to the
    /// configuration file. Default `.sluice` beside the file.
    pub data_dir: PathBuf,
    /// `[admin]`: the admin endpoint (`/metrics`, `/health`, `/ready`,
    /// `/tap`); off when absent. See [`crate::admin`].
    pub admin: Option<admin::AdminConfig>,
    /// `[teams.<name>]`, plus the implicit [`DEFAULT_TEAM`].
    pub teams: BTreeMap<String, TeamDef>,
    /// `[lookups.<name>]`: tables plugins read through the `lookup` interface.
    pub lookups: BTreeMap<String, LookupDef>,
    /// The embedded demo broker (`[embedded_broker]`), for running without Kafka.
    pub embedded_broker: Option<EmbeddedBrokerConfig>,
    /// `[sources.<name>]`.
    pub sources: BTreeMap<String, SourceDef>,
    /// `[plugins.<name>]`.
    pub plugins: BTreeMap<String, PluginDef>,
    /// `[channels.<name>]`.
    pub channels: BTreeMap<String, Arc<dyn Channel>>,
    /// `[sinks.<name>]`.
    pub sinks: BTreeMap<String, SinkDef>,
    /// `[sink_groups.<name>]`: sinks draining one channel together.
    pub sink_groups: BTreeMap<String, sink_groups::SinkGroupDef>,
    /// `section.name` (and the top-level keys `data_dir`, `admin`,
    /// `embedded_broker`) → the component's table as canonical text, so a
    /// live reload can tell which components changed.
    pub fingerprints: BTreeMap<String, String>,
}

/// A source and the processing chain of its events.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The source itself, by `type` (one of [`sources::TYPES`](crate::sources::TYPES)).
    pub kind: Arc<dyn Source>,
    /// Its `type`.
    pub type_name: &'static str,
    /// Key `decoder`: name of a decoder plugin run first.
    pub decoder: Option<String>,
    /// Key `interceptors`: interceptor plugins run in order.
    pub interceptors: Vec<String>,
    /// Key `router`: a router plugin run last.
    pub router: Option<String>,
    /// Key `channels` (required): channels that receive events not routed elsewhere.
    pub channels: Vec<String>,
    /// Key `dead_letter`: channel for dead-lettered events and failed batches;
    /// required when the source has plugins.
    pub dead_letter: Option<String>,
    /// Key `dead_letter_interceptors`: interceptor plugins every dead letter
    /// of this source passes through, in order, before it reaches the
    /// `dead_letter` channel: a dead letter holds the event as the failing
    /// stage received it (a decoder's raw input, say), so a value the chain
    /// would have masked is in clear there unless a stage here masks it
    /// (`mask` with `patterns`). The event keeps its dead-letter headers. A
    /// stage here that fails or dead-letters an event withholds that event's
    /// body and key (header [`crate::plugin::chain::DEAD_LETTER_WITHHELD`]), whatever the
    /// plugin's `on_failure`: a dead letter is never written unredacted. Default none.
    pub dead_letter_interceptors: Vec<String>,
    /// Key `team`: the team whose pipeline this is ([`DEFAULT_TEAM`] if
    /// absent). It may use that team's plugins and plugins shared with it.
    pub team: Option<String>,
    /// Key `parallelism`: how many batches this source's plugins process at
    /// once, each lane taking the events of its own partitions (partition
    /// modulo lanes), so the order within a partition is kept. Each lane
    /// runs its own instance of every plugin of the chain (memory: lanes ×
    /// each plugin's `memory_limit`). 1 to [`MAX_PARALLELISM`]; default:
    /// the machine's cores, at most [`DEFAULT_MAX_PARALLELISM`]. Without
    /// plugins there is nothing to spread and one lane runs.
    pub parallelism: usize,
}

/// The most lanes a source's `parallelism` may ask for.
pub const MAX_PARALLELISM: usize = 64;

/// The most lanes a source gets by default (one per core up to this).
pub const DEFAULT_MAX_PARALLELISM: usize = 8;

/// A source's `parallelism` when the key is absent: one lane per core, at
/// most [`DEFAULT_MAX_PARALLELISM`].
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(DEFAULT_MAX_PARALLELISM)
}

impl SourceDef {
    /// The plugin names of the chain, in the order they run.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        self.decoder
            .iter()
            .chain(&self.interceptors)
            .chain(&self.router)
            .map(String::as_str)
    }

    /// Every plugin the source runs: its chain, then its
    /// `dead_letter_interceptors`.
    pub fn plugins(&self) -> impl Iterator<Item = &str> {
        self.chain()
            .chain(self.dead_letter_interceptors.iter().map(String::as_str))
    }
}

/// `[plugins.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDef {
    /// `decoder`, `interceptor` or `router`.
    #[serde(rename = "type")]
    pub kind: PluginKind,
    /// The component file (`.wasm`): relative to the team's `plugin_dir`, or
    /// to the configuration file for plugins without a team. Watched: a new
    /// version is checked and swapped in at a batch boundary.
    pub path: PathBuf,
    /// The team owning the plugin; its limits, grants and policy apply.
    #[serde(default)]
    pub team: Option<String>,
    /// Other teams whose sources may use this plugin (`["*"]`: every team).
    /// Default none: only the owning team's sources.
    #[serde(default)]
    pub shared_with: Vec<String>,
    /// Pins the plugin to one version: the hex SHA-256 of the file. A file
    /// with another digest is refused, at startup and on reload.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Table passed to the plugin as JSON through the `host.config` import.
    #[serde(default)]
    pub config: toml::Table,
    /// Overrides the team's `memory_limit` for this plugin.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// Overrides the team's `time_budget` for this plugin.
    #[serde(default)]
    pub time_budget: Option<HumanDuration>,
    /// Overrides the team's `on_failure` for this plugin.
    #[serde(default)]
    pub on_failure: Option<FailurePolicy>,
    /// Overrides the team's `circuit_breaker` for this plugin.
    #[serde(default)]
    pub circuit_breaker: Option<BreakerConfig>,
}

impl PluginDef {
    /// The owning team's name.
    pub fn team(&self) -> &str {
        self.team.as_deref().unwrap_or(DEFAULT_TEAM)
    }
}

/// A plugin's effective settings: its own keys over its team's.
#[derive(Debug, Clone)]
pub(crate) struct PluginSettings {
    /// The owning team.
    pub team: String,
    /// Memory cap and time budget.
    pub limits: Limits,
    /// Failure policy.
    pub on_failure: FailurePolicy,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// What the plugin may reach.
    pub capabilities: Capabilities,
}

impl Config {
    /// The group sink `sink` is a member of, if any.
    pub fn group_of(&self, sink: &str) -> Option<&str> {
        self.sink_groups
            .iter()
            .find(|(_, g)| g.sinks.iter().any(|s| s == sink))
            .map(|(name, _)| name.as_str())
    }

    /// The sources whose events may reach `channel`: those listing it in
    /// `channels` or `dead_letter`, and those with a router (a router may
    /// route to any channel by name).
    pub(crate) fn sources_feeding(&self, channel: &str) -> Vec<&str> {
        self.sources
            .iter()
            .filter(|(_, s)| {
                s.router.is_some()
                    || s.channels.iter().any(|c| c == channel)
                    || s.dead_letter.as_deref() == Some(channel)
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The effective settings of plugin `name` (which must exist).
    pub(crate) fn plugin_settings(&self, name: &str) -> PluginSettings {
        let def = &self.plugins[name];
        let team = &self.teams[def.team()];
        PluginSettings {
            team: def.team().to_owned(),
            limits: Limits {
                memory_bytes: def.memory_limit.unwrap_or(team.memory_limit).get() as usize,
                time_budget: def.time_budget.unwrap_or(team.time_budget).get(),
                output_ratio: team.output_ratio,
            },
            on_failure: def.on_failure.unwrap_or(team.on_failure),
            breaker: def.circuit_breaker.unwrap_or(team.circuit_breaker),
            capabilities: team.capabilities(),
        }
    }
}

/// `[lookups.<name>]`.
#[derive(Debug, Clone)]
pub struct LookupDef {
    /// The table, by `type` (one of [`lookup::TYPES`](crate::lookup::TYPES)):
    /// `file` (a CSV or JSON-lines file, reloaded when it changes) or
    /// `kafka` (a compacted topic, followed from its beginning).
    pub kind: Arc<dyn crate::lookup::Lookup>,
}

/// A sink and the channel it drains.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// The sink itself, by `type` (one of [`sinks::TYPES`](crate::sinks::TYPES)).
    pub kind: Arc<dyn Sink>,
    /// Its `type`.
    pub type_name: &'static str,
    /// Key `channel` (required): the channel this sink consumes.
    pub channel: String,
    /// Key `dead_letter` (`kafka` and `object_store` sinks): the channel for
    /// events the sink can never deliver (a record too large for the
    /// broker, an invalid topic, a path too long for the store), each with
    /// header `sluice.dead_letter.reason`. Without it such an event stops
    /// the sink with an error naming it: nothing is dropped silently.
    pub dead_letter: Option<String>,
}

impl Config {
    /// The source feeding an exactly-once sink: the one source listing its
    /// channel in `channels` (checked when the config loads).
    pub(crate) fn exactly_once_source(&self, sink: &str) -> Option<&str> {
        let def = self
            .sinks
            .get(sink)
            .filter(|d| d.kind.guarantee() == Guarantee::ExactlyOnce)?;
        let mut feeders = self
            .sources
            .iter()
            .filter(|(_, s)| s.channels.contains(&def.channel));
        match (feeders.next(), feeders.next()) {
            (Some((name, _)), None) => Some(name),
            _ => None,
        }
    }

    /// Channels a source may not route to: those of exactly-once sinks fed
    /// by another source (their events would be foreign to the sink's
    /// committed positions).
    pub(crate) fn channels_closed_to(&self, source: &str) -> Vec<String> {
        self.sinks
            .iter()
            .filter(|(name, _)| self.exactly_once_source(name).is_some_and(|s| s != source))
            .map(|(_, def)| def.channel.clone())
            .collect()
    }
}

/// Reads, interpolates and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: 0,
        col: 0,
        key: String::new(),
        message: format!("reading configuration: {e}"),
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
}

/// Parses configuration `text` read from `file`, using `env` for `${VAR}`.
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = interpolate::interpolate(text, env).map_err(|e| ConfigError {
        file: file.to_owned(),
        line: e.line,
        col: e.col,
        key: String::new(),
        message: e.message,
    })?;
    let mut loader = Loader {
        file: file.to_owned(),
        text: &text,
        errors: Vec::new(),
        broken: Default::default(),
        fingerprints: Default::default(),
    };
    let config = loader.load();
    match config {
        Some(config) if loader.errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(loader.errors)),
    }
}

#[cfg(test)]
mod tests;
