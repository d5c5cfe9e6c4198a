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
pub mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use error::{ConfigError, ConfigErrors};
use units::{ByteSize, HumanDuration};

use crate::sinks::kafka::KafkaSinkConfig;
use crate::sinks::logger::LoggerSinkConfig;
use crate::sinks::null::NullSinkConfig;
use crate::sinks::object_store::ObjectStoreSinkConfig;
use crate::sources::embedded::EmbeddedBrokerConfig;
use crate::sources::kafka::KafkaSourceConfig;

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The embedded demo broker (`[embedded_broker]`), for running without Kafka.
    pub embedded_broker: Option<EmbeddedBrokerConfig>,
    /// `[sources.<name>]`.
    pub sources: BTreeMap<String, SourceDef>,
    /// `[plugins.<name>]`.
    pub plugins: BTreeMap<String, PluginDef>,
    /// `[channels.<name>]`.
    pub channels: BTreeMap<String, ChannelDef>,
    /// `[sinks.<name>]`.
    pub sinks: BTreeMap<String, SinkDef>,
}

/// A source and the processing chain of its events.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The source itself, by `type`.
    pub kind: SourceKind,
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

/// Source types.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// `type = "kafka"`.
    Kafka(Box<KafkaSourceConfig>),
}

/// What a plugin is for; the component must export the matching interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports `sluice:plugin/decoder`.
    Decoder,
    /// Exports `sluice:plugin/interceptor`.
    Interceptor,
    /// Exports `sluice:plugin/router`.
    Router,
}

impl PluginKind {
    /// The key value (`decoder`, `interceptor`, `router`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decoder => "decoder",
            Self::Interceptor => "interceptor",
            Self::Router => "router",
        }
    }
}

/// `[plugins.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDef {
    /// `decoder`, `interceptor` or `router`.
    #[serde(rename = "type")]
    pub kind: PluginKind,
    /// The component file (`.wasm`), relative to the configuration file.
    pub path: PathBuf,
    /// Table passed to the plugin as JSON through the `host.config` import.
    #[serde(default)]
    pub config: toml::Table,
    /// Cap on the plugin instance's linear memory. Default `"64MiB"`.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Longest a plugin may spend on one batch before it is interrupted.
    /// Default `"2s"`.
    #[serde(default = "default_time_budget")]
    pub time_budget: HumanDuration,
}

fn default_memory_limit() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_time_budget() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

/// `[channels.<name>]`.
#[derive(Debug, Clone)]
pub enum ChannelDef {
    /// `type = "memory"`: a bounded in-memory queue (see [`crate::channels::memory`]).
    Memory(MemoryChannelConfig),
}

/// Keys of a `memory` channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryChannelConfig {
    /// Most events held. Default 10000.
    #[serde(default = "default_capacity_events")]
    pub capacity_events: usize,
    /// Most payload bytes held. Default `"64MiB"`.
    #[serde(default = "default_capacity_bytes")]
    pub capacity_bytes: ByteSize,
}

fn default_capacity_events() -> usize {
    10_000
}

fn default_capacity_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

/// A sink and the channel it drains.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// The sink itself, by `type`.
    pub kind: SinkKind,
    /// Key `channel` (required): the channel this sink consumes.
    pub channel: String,
}

/// Sink types.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// `type = "object_store"`: rolling files in S3, OSS, GCS, Azure, local disk.
    ObjectStore(Box<ObjectStoreSinkConfig>),
    /// `type = "kafka"`.
    Kafka(Box<KafkaSinkConfig>),
    /// `type = "logger"`.
    Logger(LoggerSinkConfig),
    /// `type = "null"`.
    Null(NullSinkConfig),
}

const TOP_LEVEL: &[&str] = &["embedded_broker", "sources", "plugins", "channels", "sinks"];
const SOURCE_TYPES: &[&str] = &["kafka"];
const CHANNEL_TYPES: &[&str] = &["memory"];
const SINK_TYPES: &[&str] = &["object_store", "kafka", "logger", "null"];

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

    /// Deserializes `value` into `T`, reporting errors at `path` + the error's own path.
    fn typed<T: DeserializeOwned>(&mut self, value: toml::Value, path: &[String]) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
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
                None
            }
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

        let sources = self.section(&root, "sources", |l, name, table| l.source(name, table));
        let plugins = self.section(&root, "plugins", |l, name, table| {
            let path = ["plugins".to_string(), name.to_string()];
            let mut def: PluginDef = l.typed(toml::Value::Table(table), &path)?;
            def.path = base.join(&def.path);
            Some(def)
        });
        let channels = self.section(&root, "channels", |l, name, mut table| {
            let path = ["channels".to_string(), name.to_string()];
            let kind = l.take_type(&mut table, &path, CHANNEL_TYPES)?;
            match kind.as_str() {
                "memory" => Some(ChannelDef::Memory(
                    l.typed(toml::Value::Table(table), &path)?,
                )),
                other => unreachable!("type `{other}` was checked against CHANNEL_TYPES"),
            }
        });
        let sinks = self.section(&root, "sinks", |l, name, table| l.sink(name, table));

        let config = Config {
            file: self.file.clone(),
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
        let kind = self.take_type(&mut table, &path, SOURCE_TYPES);
        let decoder = self.take::<String>(&mut table, "decoder", &path);
        let interceptors = self.take::<Vec<String>>(&mut table, "interceptors", &path);
        let router = self.take::<String>(&mut table, "router", &path);
        let channels = self.take::<Vec<String>>(&mut table, "channels", &path);
        let dead_letter = self.take::<String>(&mut table, "dead_letter", &path);
        let kind = match kind?.as_str() {
            "kafka" => {
                let cfg: KafkaSourceConfig = self.typed(toml::Value::Table(table), &path)?;
                if let Err(e) = cfg.validate() {
                    self.error(&path, e);
                }
                SourceKind::Kafka(Box::new(cfg))
            }
            other => unreachable!("type `{other}` was checked against SOURCE_TYPES"),
        };
        let channels = channels.ok()?;
        if channels.as_ref().is_none_or(Vec::is_empty) {
            self.error(
                &path,
                "missing required key `channels`: the channels that receive this source's events",
            );
        }
        Some(SourceDef {
            kind,
            decoder: decoder.ok()?,
            interceptors: interceptors.ok()?.unwrap_or_default(),
            router: router.ok()?,
            channels: channels.unwrap_or_default(),
            dead_letter: dead_letter.ok()?,
        })
    }

    fn sink(&mut self, name: &str, mut table: toml::Table) -> Option<SinkDef> {
        let path = ["sinks".to_string(), name.to_string()];
        let kind = self.take_type(&mut table, &path, SINK_TYPES);
        let channel = self.take::<String>(&mut table, "channel", &path).ok()?;
        let value = toml::Value::Table(table);
        let kind = match kind?.as_str() {
            "object_store" => {
                let cfg: ObjectStoreSinkConfig = self.typed(value, &path)?;
                if let Err(e) = cfg.validate() {
                    self.error(&path, e);
                }
                SinkKind::ObjectStore(Box::new(cfg))
            }
            "kafka" => {
                let cfg: KafkaSinkConfig = self.typed(value, &path)?;
                if let Err(e) = cfg.validate() {
                    self.error(&path, e);
                }
                SinkKind::Kafka(Box::new(cfg))
            }
            "logger" => SinkKind::Logger(self.typed(value, &path)?),
            "null" => SinkKind::Null(self.typed(value, &path)?),
            other => unreachable!("type `{other}` was checked against SINK_TYPES"),
        };
        let Some(channel) = channel else {
            self.error(
                &path,
                "missing required key `channel`: the channel this sink drains",
            );
            return None;
        };
        Some(SinkDef { kind, channel })
    }

    /// Checks references between components.
    fn validate(&mut self, config: &Config) {
        let key = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (name, source) in &config.sources {
            let plugin_refs = source
                .decoder
                .iter()
                .map(|p| ("decoder", None, p, PluginKind::Decoder))
                .chain(
                    source
                        .interceptors
                        .iter()
                        .enumerate()
                        .map(|(i, p)| ("interceptors", Some(i), p, PluginKind::Interceptor)),
                )
                .chain(
                    source
                        .router
                        .iter()
                        .map(|p| ("router", None, p, PluginKind::Router)),
                );
            for (field, index, plugin, want) in plugin_refs {
                let idx = index.map(|i| i.to_string());
                let mut path = key(&["sources", name, field]);
                path.extend(idx);
                match config.plugins.get(plugin) {
                    None if self.broken.contains(&format!("plugins.{plugin}")) => {}
                    None => self.error(
                        &path,
                        format!("no plugin named `{plugin}`; define `[plugins.{plugin}]` (plugins defined: {})",
                            names(config.plugins.keys())),
                    ),
                    Some(def) if def.kind != want => self.error(
                        &path,
                        format!("plugin `{plugin}` has type `{}` but `{field}` needs a `{}`", def.kind.as_str(), want.as_str()),
                    ),
                    Some(_) => {}
                }
            }
            for (i, channel) in source.channels.iter().enumerate() {
                if !config.channels.contains_key(channel)
                    && !self.broken.contains(&format!("channels.{channel}"))
                {
                    self.error(
                        &key(&["sources", name, "channels", &i.to_string()]),
                        format!(
                            "no channel named `{channel}` (channels defined: {})",
                            names(config.channels.keys())
                        ),
                    );
                }
            }
            match &source.dead_letter {
                Some(dl)
                    if !config.channels.contains_key(dl)
                        && !self.broken.contains(&format!("channels.{dl}")) =>
                {
                    self.error(
                        &key(&["sources", name, "dead_letter"]),
                        format!("no channel named `{dl}` (channels defined: {})", names(config.channels.keys())),
                    );
                }
                Some(_) => {}
                None if source.chain().next().is_some() => self.error(
                    &key(&["sources", name]),
                    "missing required key `dead_letter`: a source with plugins needs a channel for events they dead-letter and for batches they fail",
                ),
                None => {}
            }
        }
        let mut drained: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, sink) in &config.sinks {
            if self.broken.contains(&format!("channels.{}", sink.channel)) {
                drained.insert(&sink.channel, name);
            } else if !config.channels.contains_key(&sink.channel) {
                self.error(
                    &key(&["sinks", name, "channel"]),
                    format!(
                        "no channel named `{}` (channels defined: {})",
                        sink.channel,
                        names(config.channels.keys())
                    ),
                );
            } else if let Some(other) = drained.insert(&sink.channel, name) {
                self.error(
                    &key(&["sinks", name, "channel"]),
                    format!("channel `{}` is already drained by sink `{other}`; a channel has exactly one sink", sink.channel),
                );
            }
        }
        let sink_broken = self.broken.iter().any(|b| b.starts_with("sinks."));
        for name in config.channels.keys() {
            if !drained.contains_key(name.as_str()) && !sink_broken {
                self.error(
                    &key(&["channels", name]),
                    format!(
                        "no sink drains channel `{name}`; add a sink with `channel = \"{name}\"`"
                    ),
                );
            }
        }
        for (name, plugin) in &config.plugins {
            if !plugin.path.is_file() {
                self.error(
                    &key(&["plugins", name, "path"]),
                    format!("plugin file `{}` does not exist (build plugins with `scripts/build-plugins.sh`)", plugin.path.display()),
                );
            }
        }
        let needs_embedded = config.sources.values().any(|s| match &s.kind {
            SourceKind::Kafka(k) => k.bootstrap_servers == "embedded",
        }) || config
            .sinks
            .values()
            .any(|s| matches!(&s.kind, SinkKind::Kafka(k) if k.bootstrap_servers == "embedded"));
        if needs_embedded && config.embedded_broker.is_none() {
            self.error(
                &key(&["sources"]),
                "`bootstrap_servers = \"embedded\"` needs an `[embedded_broker]` table",
            );
        }
    }
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
