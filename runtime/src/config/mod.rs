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

pub mod error;
pub mod interpolate;
pub mod locate;
mod references;
pub mod team;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use error::{ConfigError, ConfigErrors};
pub use team::{Capabilities, DEFAULT_TEAM, TeamDef};

pub use crate::plugin::{BreakerConfig, FailurePolicy, PluginKind};
use crate::units::{ByteSize, HumanDuration};

use crate::channels::{self, Channel};
use crate::lookup::config::{FileLookupConfig, KafkaLookupConfig};
use crate::plugin::Limits;

use crate::keys::KeyError;
use crate::sinks::{self, Guarantee, Sink};
use crate::sources::embedded::EmbeddedBrokerConfig;
use crate::sources::{self, Source};

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Key `data_dir`: where Sluice keeps state between runs (compiled
    /// plugin cache, status files, control requests), relative to the
    /// configuration file. Default `.sluice` beside the file.
    pub data_dir: PathBuf,
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
}

/// A source and the processing chain of its events.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The source itself, by `type` (one of [`sources::TYPES`]).
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
    /// Key `team`: the team whose pipeline this is ([`DEFAULT_TEAM`] if
    /// absent). It may use that team's plugins and plugins shared with it.
    pub team: Option<String>,
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
pub struct PluginSettings {
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
    /// The sources whose events may reach `channel`: those listing it in
    /// `channels` or `dead_letter`, and those with a router (a router may
    /// route to any channel by name).
    pub fn sources_feeding(&self, channel: &str) -> Vec<&str> {
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
    pub fn plugin_settings(&self, name: &str) -> PluginSettings {
        let def = &self.plugins[name];
        let team = &self.teams[def.team()];
        PluginSettings {
            team: def.team().to_owned(),
            limits: Limits {
                memory_bytes: def.memory_limit.unwrap_or(team.memory_limit).get() as usize,
                time_budget: def.time_budget.unwrap_or(team.time_budget).get(),
            },
            on_failure: def.on_failure.unwrap_or(team.on_failure),
            breaker: def.circuit_breaker.unwrap_or(team.circuit_breaker),
            capabilities: team.capabilities(),
        }
    }
}

/// `[lookups.<name>]`.
#[derive(Debug, Clone)]
pub enum LookupDef {
    /// `type = "file"`: a CSV or JSON-lines file, reloaded when it changes.
    File(FileLookupConfig),
    /// `type = "kafka"`: a compacted topic, followed from its beginning.
    Kafka(Box<KafkaLookupConfig>),
}

/// A sink and the channel it drains.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// The sink itself, by `type` (one of [`sinks::TYPES`]).
    pub kind: Arc<dyn Sink>,
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
    pub fn exactly_once_source(&self, sink: &str) -> Option<&str> {
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
    pub fn channels_closed_to(&self, source: &str) -> Vec<String> {
        self.sinks
            .iter()
            .filter(|(name, _)| self.exactly_once_source(name).is_some_and(|s| s != source))
            .map(|(_, def)| def.channel.clone())
            .collect()
    }
}

const TOP_LEVEL: &[&str] = &[
    "data_dir",
    "embedded_broker",
    "teams",
    "lookups",
    "sources",
    "plugins",
    "channels",
    "sinks",
];
const LOOKUP_TYPES: &[&str] = &["file", "kafka"];

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
    };
    let config = loader.load();
    match config {
        Some(config) if loader.errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(loader.errors)),
    }
}

struct Loader<'a> {
    file: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
    /// `section.name` of components that failed to load; references to them
    /// are not reported again.
    broken: std::collections::BTreeSet<String>,
}

impl Loader<'_> {
    fn error(&mut self, path: &[String], message: impl Into<String>) {
        let (line, col) = locate::key_offset(self.text, path)
            .map_or((1, 1), |off| locate::line_col(self.text, off));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            col,
            key: path.join("."),
            message: message.into(),
        });
    }

    /// A component type's reading of its table at `path`, its errors
    /// reported there.
    fn component<T>(&mut self, loaded: Result<T, KeyError>, path: &[String]) -> Option<T> {
        match loaded {
            Ok(v) => Some(v),
            Err(KeyError::Keys(e)) => {
                self.deserialize_error(e, path);
                None
            }
            Err(KeyError::Invalid { at, message }) => {
                let mut full = path.to_vec();
                full.extend(at);
                self.error(&full, message);
                None
            }
        }
    }

    /// Deserializes `value` into `T`, reporting errors at `path` + the error's own path.
    fn typed<T: DeserializeOwned>(&mut self, value: toml::Value, path: &[String]) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.deserialize_error(e, path);
                None
            }
        }
    }

    /// Reports a deserialization error at `path` + the error's own path.
    fn deserialize_error(
        &mut self,
        e: serde_path_to_error::Error<toml::de::Error>,
        path: &[String],
    ) {
        let mut full = path.to_vec();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => full.push(key.clone()),
                serde_path_to_error::Segment::Seq { index } => full.push(index.to_string()),
                _ => {}
            }
        }
        let message = e.inner().to_string();
        let message = message.trim().to_string();
        if let Some(field) = unknown_field(&message) {
            if full.last().map(String::as_str) != Some(field) {
                full.push(field.to_owned());
            }
            let expected = message
                .split_once(", expected ")
                .map(|(_, exp)| format!("; expected {exp}"))
                .unwrap_or_default();
            self.error(&full, format!("unknown key `{field}`{expected}"));
        } else if let Some(field) = missing_field(&message) {
            self.error(&full, format!("missing required key `{field}`"));
        } else {
            self.error(&full, message);
        }
    }

    fn load(&mut self) -> Option<Config> {
        let root: toml::Table = match toml::from_str(self.text) {
            Ok(t) => t,
            Err(e) => {
                let (line, col) = e
                    .span()
                    .map_or((1, 1), |s| locate::line_col(self.text, s.start));
                self.errors.push(ConfigError {
                    file: self.file.clone(),
                    line,
                    col,
                    key: String::new(),
                    message: format!("invalid TOML: {}", e.message().trim()),
                });
                return None;
            }
        };
        for key in root.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                self.error(
                    std::slice::from_ref(key),
                    format!("unknown key `{key}`; expected one of {}", list(TOP_LEVEL)),
                );
            }
        }
        let base = self.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let embedded_broker = root.get("embedded_broker").and_then(|v| {
            let path = ["embedded_broker".to_string()];
            let cfg: EmbeddedBrokerConfig = self.typed(v.clone(), &path)?;
            if let Err(e) = cfg.validate() {
                self.error(&path, e);
            }
            Some(cfg)
        });

        let data_dir = match root.get("data_dir") {
            Some(v) => self
                .typed::<PathBuf>(v.clone(), &["data_dir".to_string()])
                .map(|d| base.join(d)),
            None => Some(base.join(".sluice")),
        }
        .unwrap_or_else(|| base.join(".sluice"));
        let mut teams = self.section(&root, "teams", |l, name, table| {
            let path = ["teams".to_string(), name.to_string()];
            if name == DEFAULT_TEAM {
                l.error(&path, format!("`{DEFAULT_TEAM}` is the implicit team of plugins and sources without `team`; choose another name"));
                return None;
            }
            let mut def: TeamDef = l.typed(toml::Value::Table(table), &path)?;
            def.plugin_dir = base.join(&def.plugin_dir);
            if def.max_instances == 0 {
                l.error(&[path[0].clone(), path[1].clone(), "max_instances".into()], "must be at least 1");
            }
            Some(def)
        });
        teams.insert(
            DEFAULT_TEAM.to_string(),
            TeamDef::default_team(base.clone()),
        );
        let lookups = self.section(&root, "lookups", |l, name, mut table| {
            let path = ["lookups".to_string(), name.to_string()];
            let kind = l.take_type(&mut table, &path, LOOKUP_TYPES)?;
            let value = toml::Value::Table(table);
            match kind.as_str() {
                "file" => {
                    let mut cfg: FileLookupConfig = l.typed(value, &path)?;
                    cfg.path = base.join(&cfg.path);
                    if let Err((key, e)) = cfg.validate() {
                        l.error(&[path[0].clone(), path[1].clone(), key.into()], e);
                    }
                    Some(LookupDef::File(cfg))
                }
                "kafka" => {
                    let cfg: KafkaLookupConfig = l.typed(value, &path)?;
                    if let Err((k, e)) = cfg.validate() {
                        let at = match k {
                            "properties" => property_path(&path, k, &cfg.properties, &e),
                            k => vec![path[0].clone(), path[1].clone(), k.into()],
                        };
                        l.error(&at, e);
                    }
                    Some(LookupDef::Kafka(Box::new(cfg)))
                }
                other => unreachable!("type `{other}` was checked against LOOKUP_TYPES"),
            }
        });
        let sources = self.section(&root, "sources", |l, name, table| l.source(name, table));
        let plugins = self.section(&root, "plugins", |l, name, table| {
            let path = ["plugins".to_string(), name.to_string()];
            let mut def: PluginDef = l.typed(toml::Value::Table(table), &path)?;
            let key = |k: &str| vec![path[0].clone(), path[1].clone(), k.to_string()];
            if let Some(pin) = &def.sha256
                && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                l.error(&key("sha256"), "expected the 64 hex digits of a SHA-256 digest (`sha256sum FILE`)");
            }
            match teams.get(def.team()) {
                Some(team) if def.team.is_some() => {
                    let escapes = def.path.is_absolute()
                        || def.path.components().any(|c| matches!(c, std::path::Component::ParentDir));
                    if escapes {
                        l.error(&key("path"), format!(
                            "a team plugin's path must lie inside the team's plugin_dir `{}`: give it relative, without `..`",
                            team.plugin_dir.display()
                        ));
                    }
                    def.path = team.plugin_dir.join(&def.path);
                }
                Some(_) => def.path = base.join(&def.path),
                None => {
                    if !l.broken.contains(&format!("teams.{}", def.team())) {
                        l.error(&key("team"), format!("no team named `{}` (teams defined: {})", def.team(), names(teams.keys().filter(|t| *t != DEFAULT_TEAM))));
                    }
                    return None;
                }
            }
            Some(def)
        });
        let mut own_dirs: BTreeMap<PathBuf, String> = BTreeMap::new();
        let channels = self.section(&root, "channels", |l, name, mut table| {
            let path = ["channels".to_string(), name.to_string()];
            let type_names: Vec<&str> = channels::TYPES.iter().map(|t| t.name).collect();
            let kind = l.take_type(&mut table, &path, &type_names)?;
            let channel_type = channels::TYPES.iter().find(|t| t.name == kind)?;
            let ctx = channels::LoadContext {
                name,
                base: &base,
                data_dir: &data_dir,
            };
            let channel =
                l.component((channel_type.load)(toml::Value::Table(table), &ctx), &path)?;
            if let Some((key, dir)) = channel.own_dir()
                && let Some(other) = own_dirs.insert(dir.to_owned(), name.to_owned())
            {
                l.error(
                    &[path[0].clone(), path[1].clone(), key.to_owned()],
                    format!(
                        "channel `{other}` already uses `{}`; give each channel its own `{key}`",
                        dir.display()
                    ),
                );
            }
            Some(channel)
        });
        let sinks = self.section(&root, "sinks", |l, name, table| l.sink(name, table));

        let config = Config {
            file: self.file.clone(),
            data_dir,
            teams,
            lookups,
            embedded_broker,
            sources,
            plugins,
            channels,
            sinks,
        };
        self.validate(&config);
        Some(config)
    }

    fn section<T>(
        &mut self,
        root: &toml::Table,
        section: &str,
        mut build: impl FnMut(&mut Self, &str, toml::Table) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        let Some(value) = root.get(section) else {
            return out;
        };
        let Some(table) = value.as_table() else {
            self.error(
                &[section.into()],
                format!("expected a table of named {section}"),
            );
            return out;
        };
        for (name, value) in table {
            let path = [section.to_string(), name.clone()];
            let Some(component) = value.as_table() else {
                self.error(
                    &path,
                    format!("expected a table, like `[{section}.{name}]`"),
                );
                continue;
            };
            match build(self, name, component.clone()) {
                Some(built) => {
                    out.insert(name.clone(), built);
                }
                None => {
                    self.broken.insert(format!("{section}.{name}"));
                }
            }
        }
        out
    }

    /// Takes the `type` key out of a component table.
    fn take_type(
        &mut self,
        table: &mut toml::Table,
        path: &[String],
        allowed: &[&str],
    ) -> Option<String> {
        match table.remove("type") {
            Some(toml::Value::String(t)) if allowed.contains(&t.as_str()) => Some(t),
            Some(toml::Value::String(t)) => {
                let mut p = path.to_vec();
                p.push("type".into());
                self.error(
                    &p,
                    format!("unknown type `{t}`; expected one of {}", list(allowed)),
                );
                None
            }
            Some(_) => {
                let mut p = path.to_vec();
                p.push("type".into());
                self.error(&p, "expected a string");
                None
            }
            None => {
                self.error(
                    path,
                    format!(
                        "missing required key `type`; expected one of {}",
                        list(allowed)
                    ),
                );
                None
            }
        }
    }

    fn take<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        key: &str,
        path: &[String],
    ) -> Result<Option<T>, ()> {
        let Some(value) = table.remove(key) else {
            return Ok(None);
        };
        let mut p = path.to_vec();
        p.push(key.into());
        self.typed(value, &p).map(Some).ok_or(())
    }

    fn source(&mut self, name: &str, mut table: toml::Table) -> Option<SourceDef> {
        let path = ["sources".to_string(), name.to_string()];
        let type_names: Vec<&str> = sources::TYPES.iter().map(|t| t.name).collect();
        let kind = self.take_type(&mut table, &path, &type_names);
        let decoder = self.take::<String>(&mut table, "decoder", &path);
        let interceptors = self.take::<Vec<String>>(&mut table, "interceptors", &path);
        let router = self.take::<String>(&mut table, "router", &path);
        let channels = self.take::<Vec<String>>(&mut table, "channels", &path);
        let dead_letter = self.take::<String>(&mut table, "dead_letter", &path);
        let team = self.take::<String>(&mut table, "team", &path);
        let source_type = sources::TYPES
            .iter()
            .find(|t| Some(t.name) == kind.as_deref())?;
        let kind = self.component((source_type.load)(toml::Value::Table(table)), &path)?;
        let channels = channels.ok()?;
        if channels.as_ref().is_none_or(Vec::is_empty) {
            self.error(
                &path,
                "missing required key `channels`: the channels that receive this source's events",
            );
        }
        Some(SourceDef {
            kind,
            type_name: source_type.name,
            decoder: decoder.ok()?,
            interceptors: interceptors.ok()?.unwrap_or_default(),
            router: router.ok()?,
            channels: channels.unwrap_or_default(),
            dead_letter: dead_letter.ok()?,
            team: team.ok()?,
        })
    }

    fn sink(&mut self, name: &str, mut table: toml::Table) -> Option<SinkDef> {
        let path = ["sinks".to_string(), name.to_string()];
        let names: Vec<&str> = sinks::TYPES.iter().map(|t| t.name).collect();
        let kind = self.take_type(&mut table, &path, &names);
        let channel = self.take::<String>(&mut table, "channel", &path).ok()?;
        let dead_letter = self.take::<String>(&mut table, "dead_letter", &path).ok()?;
        let sink_type = sinks::TYPES
            .iter()
            .find(|t| Some(t.name) == kind.as_deref())?;
        let kind = self.component((sink_type.load)(toml::Value::Table(table)), &path)?;
        let Some(channel) = channel else {
            self.error(
                &path,
                "missing required key `channel`: the channel this sink drains",
            );
            return None;
        };
        if dead_letter.is_some() && !sink_type.takes_dead_letter {
            let mut takers: Vec<&str> = sinks::TYPES
                .iter()
                .filter(|t| t.takes_dead_letter)
                .map(|t| t.name)
                .collect();
            takers.sort_unstable();
            self.error(
                &path,
                format!(
                    "`dead_letter` is for {} sinks (a `{}` sink never rejects an event)",
                    list(&takers).replace(", ", " and "),
                    sink_type.name
                ),
            );
        }
        Some(SinkDef {
            kind,
            channel,
            dead_letter,
        })
    }
}

/// Where a component's validation error `message` points: at the property
/// of its librdkafka table `table` that the message names
/// (`` `kafka."sasl.password"`: ... ``), else at the component (`path`) or,
/// for a channel's or a table's `properties`, at that table.
fn property_path(
    path: &[String],
    table: &str,
    props: &crate::sources::kafka::KafkaProperties,
    message: &str,
) -> Vec<String> {
    let mut at = path.to_vec();
    at.extend(props.key_of(table, message));
    at
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<_> = keys.map(|k| format!("`{k}`")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests;
