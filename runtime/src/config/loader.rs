//! The loader: reads the parsed TOML table section by section into a
//! [`Config`], recording every error at its key (file, line, column) and
//! going on, so that one run reports them all. Each component's own keys
//! are read by its type ([`crate::keys`]); the wiring keys (`type`,
//! `channels`, `channel`, `dead_letter`, …) are taken out here first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{
    Config, ConfigError, DEFAULT_TEAM, LookupDef, PluginDef, SinkDef, SourceDef, TeamDef, locate,
};
use crate::channels::{self, Channel};
use crate::keys::KeyError;
use crate::lookup;
use crate::sinks;
use crate::sources;
use crate::sources::embedded::EmbeddedBrokerConfig;

const TOP_LEVEL: &[&str] = &[
    "data_dir",
    "admin",
    "embedded_broker",
    "teams",
    "lookups",
    "sources",
    "plugins",
    "channels",
    "sinks",
    "sink_groups",
];

/// A value as canonical text: equal for equal values, whatever the layout
/// of the file they were read from.
fn fingerprint(value: &toml::Value) -> String {
    toml::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}

/// Whether `name` may name a component: 1 to 128 ASCII letters, digits,
/// `_` and `-`. A dot would make `source.<name>.events` ambiguous to read back.
fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) struct Loader<'a> {
    pub(super) file: PathBuf,
    pub(super) text: &'a str,
    pub(super) errors: Vec<ConfigError>,
    /// `section.name` of components that failed to load; references to them
    /// are not reported again.
    pub(super) broken: std::collections::BTreeSet<String>,
    /// Each component's table (and each top-level key) as read, after
    /// interpolation: a live reload compares them to find what changed.
    pub(super) fingerprints: BTreeMap<String, String>,
}

impl Loader<'_> {
    pub(super) fn error(&mut self, path: &[String], message: impl Into<String>) {
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

    pub(super) fn load(&mut self) -> Option<Config> {
        let root = self.root()?;
        for key in root.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                self.error(
                    std::slice::from_ref(key),
                    format!("unknown key `{key}`; expected one of {}", list(TOP_LEVEL)),
                );
            }
        }
        for key in ["data_dir", "admin", "embedded_broker"] {
            if let Some(v) = root.get(key) {
                self.fingerprints.insert(key.to_owned(), fingerprint(v));
            }
        }
        let base = self.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let embedded_broker = self.embedded_broker(&root);
        let data_dir = self.data_dir(&root, &base);
        let admin = self.admin(&root, &base);
        let teams = self.teams(&root, &base);
        let lookups = self.lookups(&root, &base);
        let sources = self.section(&root, "sources", |l, name, table| l.source(name, table));
        let plugins = self.plugins(&root, &base, &teams);
        let channels = self.channels(&root, &base, &data_dir);
        let sinks = self.section(&root, "sinks", |l, name, table| l.sink(name, table));
        let sink_groups = self.section(&root, "sink_groups", |l, name, table| {
            let path = ["sink_groups".to_string(), name.to_string()];
            let loaded = crate::keys::deserialize::<super::sink_groups::SinkGroupDef>(
                toml::Value::Table(table),
            )
            .and_then(|g| g.validate().map(|()| g).map_err(Into::into));
            l.component(loaded, &path)
        });

        let config = Config {
            file: self.file.clone(),
            data_dir,
            admin,
            teams,
            lookups,
            embedded_broker,
            sources,
            plugins,
            channels,
            sinks,
            sink_groups,
            fingerprints: std::mem::take(&mut self.fingerprints),
        };
        self.validate(&config);
        Some(config)
    }

    /// The text as a TOML table, or the syntax error.
    fn root(&mut self) -> Option<toml::Table> {
        match toml::from_str(self.text) {
            Ok(t) => Some(t),
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
                None
            }
        }
    }

    /// `[embedded_broker]`, if present.
    fn embedded_broker(&mut self, root: &toml::Table) -> Option<EmbeddedBrokerConfig> {
        root.get("embedded_broker").and_then(|v| {
            let path = ["embedded_broker".to_string()];
            let cfg: EmbeddedBrokerConfig = self.typed(v.clone(), &path)?;
            if let Err(e) = cfg.validate() {
                self.error(&path, e.0);
            }
            Some(cfg)
        })
    }

    /// `[admin]`, if present, with its token read.
    fn admin(&mut self, root: &toml::Table, base: &Path) -> Option<super::admin::AdminConfig> {
        let value = root.get("admin")?;
        let path = ["admin".to_string()];
        let keys: super::admin::AdminKeys = self.typed(value.clone(), &path)?;
        match keys.check(base, |var| std::env::var(var).ok()) {
            Ok(admin) => Some(admin),
            Err(e) => {
                self.error(&["admin".to_string(), e.key.to_string()], e.message);
                None
            }
        }
    }

    /// `data_dir`, relative to the file (default `.sluice` beside it).
    fn data_dir(&mut self, root: &toml::Table, base: &Path) -> PathBuf {
        match root.get("data_dir") {
            Some(v) => self
                .typed::<PathBuf>(v.clone(), &["data_dir".to_string()])
                .map(|d| base.join(d)),
            None => Some(base.join(".sluice")),
        }
        .unwrap_or_else(|| base.join(".sluice"))
    }

    /// `[teams.<name>]`, and the implicit default team.
    fn teams(&mut self, root: &toml::Table, base: &Path) -> BTreeMap<String, TeamDef> {
        let mut teams = self.section(root, "teams", |l, name, table| {
            let path = ["teams".to_string(), name.to_string()];
            if name == DEFAULT_TEAM {
                l.error(&path, format!("`{DEFAULT_TEAM}` is the implicit team of plugins and sources without `team`; choose another name"));
                return None;
            }
            let mut def: TeamDef = l.typed(toml::Value::Table(table), &path)?;
            def.plugin_dir = base.join(&def.plugin_dir);
            if !(1..=1000).contains(&def.output_ratio) {
                l.error(&[path[0].clone(), path[1].clone(), "output_ratio".into()], "must be from 1 to 1000");
            }
            if def.max_instances == 0 {
                l.error(&[path[0].clone(), path[1].clone(), "max_instances".into()], "must be at least 1");
            }
            Some(def)
        });
        teams.insert(
            DEFAULT_TEAM.to_string(),
            TeamDef::default_team(base.to_path_buf()),
        );
        teams
    }

    /// `[lookups.<name>]`.
    fn lookups(&mut self, root: &toml::Table, base: &Path) -> BTreeMap<String, LookupDef> {
        self.section(root, "lookups", |l, name, mut table| {
            let path = ["lookups".to_string(), name.to_string()];
            let type_names: Vec<&str> = lookup::TYPES.iter().map(|t| t.name).collect();
            let kind = l.take_type(&mut table, &path, &type_names)?;
            let lookup_type = lookup::TYPES.iter().find(|t| t.name == kind)?;
            let kind = l.component((lookup_type.load)(toml::Value::Table(table), base), &path)?;
            Some(LookupDef { kind })
        })
    }

    /// `[plugins.<name>]`, each placed in its team's `plugin_dir`.
    fn plugins(
        &mut self,
        root: &toml::Table,
        base: &Path,
        teams: &BTreeMap<String, TeamDef>,
    ) -> BTreeMap<String, PluginDef> {
        self.section(root, "plugins", |l, name, table| {
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
        })
    }

    /// `[channels.<name>]`, read by their types; no two share a directory.
    fn channels(
        &mut self,
        root: &toml::Table,
        base: &Path,
        data_dir: &Path,
    ) -> BTreeMap<String, Arc<dyn Channel>> {
        let mut own_dirs: BTreeMap<PathBuf, String> = BTreeMap::new();
        self.section(root, "channels", |l, name, mut table| {
            let path = ["channels".to_string(), name.to_string()];
            let type_names: Vec<&str> = channels::TYPES.iter().map(|t| t.name).collect();
            let kind = l.take_type(&mut table, &path, &type_names)?;
            let channel_type = channels::TYPES.iter().find(|t| t.name == kind)?;
            let ctx = channels::LoadContext {
                name,
                base,
                data_dir,
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
        })
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
            if !valid_name(name) {
                self.error(
                    &path,
                    format!("`{name}` is not a valid name: use letters, digits, `_` and `-` (names appear in metric labels, file names and logs)"),
                );
                self.broken.insert(format!("{section}.{name}"));
                continue;
            }
            let Some(component) = value.as_table() else {
                self.error(
                    &path,
                    format!("expected a table, like `[{section}.{name}]`"),
                );
                continue;
            };
            self.fingerprints
                .insert(format!("{section}.{name}"), fingerprint(value));
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
        let dead_letter_interceptors =
            self.take::<Vec<String>>(&mut table, "dead_letter_interceptors", &path);
        let team = self.take::<String>(&mut table, "team", &path);
        let parallelism = self.take::<usize>(&mut table, "parallelism", &path);
        if let Ok(Some(n)) = parallelism
            && !(1..=super::MAX_PARALLELISM).contains(&n)
        {
            let mut at = path.to_vec();
            at.push("parallelism".into());
            self.error(
                &at,
                format!(
                    "`parallelism` is {n}; expected 1 to {} (lanes processing this source's batches at once)",
                    super::MAX_PARALLELISM
                ),
            );
        }
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
            dead_letter_interceptors: dead_letter_interceptors.ok()?.unwrap_or_default(),
            team: team.ok()?,
            parallelism: parallelism.ok()?.unwrap_or_else(super::default_parallelism),
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
        if let Some(why) = kind.needs_dead_letter()
            && dead_letter.is_none()
        {
            self.error(
                &path,
                format!("{why} needs `dead_letter`: the channel such events go to"),
            );
        }
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
            type_name: sink_type.name,
            channel,
            dead_letter,
        })
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

pub(super) fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<_> = keys.map(|k| format!("`{k}`")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}
