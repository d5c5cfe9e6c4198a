//! Checks of the references between components, once each has loaded:
//! that every name used (a channel, a plugin, a team, a lookup table) exists,
//! that each channel has one sink, and that the delivery guarantees asked
//! for can hold (exactly-once sinks and the sources and channels feeding
//! them). Each check reports at the key that is wrong.

use std::collections::BTreeMap;

use super::loader::{Loader, names};
use super::{Config, DEFAULT_TEAM, PluginKind};
use crate::sinks::Guarantee;

/// `path` with `.` and `..` resolved without touching the file system (the
/// directories may not exist yet).
fn lexical(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Loader<'_> {
    /// Checks references between components.
    pub(super) fn validate(&mut self, config: &Config) {
        self.check_sources(config);
        let drained = self.check_sink_channels(config);
        self.check_sink_dead_letters(config);
        self.check_sink_groups(config);
        self.check_transactional_sinks(config);
        self.check_bounded_sources(config);
        self.check_drained(config, &drained);
        self.check_teams(config);
        self.check_plugin_files(config);
        self.check_exactly_once_sinks(config);
        self.check_positional_topics(config);
        self.check_embedded_broker(config);
    }

    /// Each source's team, plugins, channels and dead-letter channel.
    fn check_sources(&mut self, config: &Config) {
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
                )
                .chain(
                    source
                        .dead_letter_interceptors
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            (
                                "dead_letter_interceptors",
                                Some(i),
                                p,
                                PluginKind::Interceptor,
                            )
                        }),
                );
            let team = source.team.as_deref().unwrap_or(DEFAULT_TEAM);
            if !config.teams.contains_key(team) && !self.broken.contains(&format!("teams.{team}")) {
                self.error(
                    &key(&["sources", name, "team"]),
                    format!(
                        "no team named `{team}` (teams defined: {})",
                        names(config.teams.keys().filter(|t| *t != DEFAULT_TEAM))
                    ),
                );
            }
            for (field, index, plugin, want) in plugin_refs {
                let idx = index.map(|i| i.to_string());
                let mut path = key(&["sources", name, field]);
                path.extend(idx);
                match config.plugins.get(plugin) {
                    Some(def)
                        if def.team() != team
                            && !def.shared_with.iter().any(|t| t == team || t == "*") =>
                    {
                        self.error(
                            &path,
                            format!(
                                "plugin `{plugin}` belongs to team `{}` and is not shared with team `{team}`; add `shared_with = [\"{team}\"]` to `[plugins.{plugin}]`",
                                def.team()
                            ),
                        )
                    }
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
                None if !source.dead_letter_interceptors.is_empty() => self.error(
                    &key(&["sources", name, "dead_letter_interceptors"]),
                    "`dead_letter_interceptors` redact the events sent to `dead_letter`, which is not set",
                ),
                None if source.chain().next().is_some() => self.error(
                    &key(&["sources", name]),
                    "missing required key `dead_letter`: a source with plugins needs a channel for events they dead-letter and for batches they fail",
                ),
                None => {}
            }
        }
    }

    /// Each sink's channel exists and has no other sink; returns the
    /// drained channels, with their sink.
    fn check_sink_channels<'c>(&mut self, config: &'c Config) -> BTreeMap<&'c str, &'c str> {
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
            } else if let Some(other) = drained.insert(&sink.channel, name)
                && (config.group_of(name).is_none()
                    || config.group_of(name) != config.group_of(other))
            {
                self.error(
                    &key(&["sinks", name, "channel"]),
                    format!("channel `{}` is already drained by sink `{other}`; a channel has exactly one sink", sink.channel),
                );
            }
        }
        drained
    }

    /// Each group's members exist, belong to no other group, drain one
    /// channel together, and are not exactly-once.
    fn check_sink_groups(&mut self, config: &Config) {
        let mut member_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (group, def) in &config.sink_groups {
            let at = key(&["sink_groups", group, "sinks"]);
            let mut channel: Option<&str> = None;
            for sink in &def.sinks {
                let Some(s) = config.sinks.get(sink) else {
                    if !self.broken.contains(&format!("sinks.{sink}")) {
                        self.error(
                            &at,
                            format!(
                                "no sink named `{sink}` (sinks defined: {})",
                                names(config.sinks.keys())
                            ),
                        );
                    }
                    continue;
                };
                if let Some(other) = member_of.insert(sink, group) {
                    self.error(&at, format!("sink `{sink}` is already in group `{other}`; a sink belongs to one group"));
                }
                if s.kind.guarantee() != Guarantee::AtLeastOnce {
                    self.error(&at, format!("sink `{sink}` is exactly-once: its committed positions are its own, so it cannot share a channel's batches with other sinks"));
                }
                match channel {
                    None => channel = Some(&s.channel),
                    Some(c) if c != s.channel => self.error(
                        &at,
                        format!("the members of a group drain one channel: `{sink}` drains `{}`, the others `{c}`", s.channel),
                    ),
                    Some(_) => {}
                }
            }
            if let Some(c) = channel
                && let Some(stray) = config
                    .sinks
                    .iter()
                    .find(|(n, s)| s.channel == c && !def.sinks.contains(n))
            {
                self.error(
                    &at,
                    format!(
                        "sink `{}` drains channel `{c}` too but is not in the group",
                        stray.0
                    ),
                );
            }
        }
    }

    /// Each sink's own `dead_letter` channel: it exists, is not its own
    /// channel, and goes to a plain sink.
    fn check_sink_dead_letters(&mut self, config: &Config) {
        for (name, sink) in &config.sinks {
            let Some(dl) = &sink.dead_letter else {
                continue;
            };
            let at = key(&["sinks", name, "dead_letter"]);
            let drainer = config.sinks.iter().find(|(_, s)| &s.channel == dl);
            if !config.channels.contains_key(dl) {
                if !self.broken.contains(&format!("channels.{dl}")) {
                    self.error(
                        &at,
                        format!(
                            "no channel named `{dl}` (channels defined: {})",
                            names(config.channels.keys())
                        ),
                    );
                }
            } else if *dl == sink.channel {
                self.error(&at, format!("`{dl}` is the channel this sink drains; dead letters need a channel of their own"));
            } else if let Some((other, drained_by)) = drainer
                && (drained_by.dead_letter.is_some()
                    || drained_by.kind.guarantee() == Guarantee::ExactlyOnce)
            {
                self.error(
                    &at,
                    format!("channel `{dl}` is drained by sink `{other}`, which has a `dead_letter` of its own or is exactly-once; dead letters go to a plain sink (no chains, no loops)"),
                );
            }
        }
    }

    /// A transactional sink is fed by exactly one source that can re-read.
    fn check_transactional_sinks(&mut self, config: &Config) {
        for (name, sink) in &config.sinks {
            if sink.kind.guarantee() != Guarantee::Transactional
                || !config.channels.contains_key(&sink.channel)
            {
                continue;
            }
            let path = key(&["sinks", name, "exactly_once"]);
            match config.sources_feeding(&sink.channel)[..] {
                [source] => {
                    let def = &config.sources[source];
                    if def.kind.rereads() {
                        self.check_transaction_siblings(config, name, source);
                    } else {
                        self.error(
                            &path,
                            format!("`exactly_once = true` needs a `kafka` source, whose offsets the transactions commit; source `{source}` is an `{}` source, which cannot re-read (put a `file` channel after it for at-least-once instead)", def.type_name),
                        );
                    }
                }
                [] if self.broken.iter().any(|b| b.starts_with("sources.")) => {}
                ref feeders => self.error(
                    &path,
                    format!(
                        "`exactly_once = true` needs the sink's channel `{}` fed by exactly one `kafka` source (whose consumer offsets the transactions commit), but it is fed by {} (a source feeds a channel through `channels`, `dead_letter`, or any `router`); give this sink a channel of its own, or set `exactly_once = false`",
                        sink.channel,
                        if feeders.is_empty() { "none".to_owned() } else { feeders.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ") }
                    ),
                ),
            }
        }
    }

    /// A bounded source ends once everything it read is durable: a sink it
    /// feeds through a memory channel must release what it holds without
    /// waiting for more events, or the run would never end. (A `file` or
    /// `kafka` channel holds the events itself, durably.)
    fn check_bounded_sources(&mut self, config: &Config) {
        for (source, def) in &config.sources {
            if !def.kind.bounded() {
                continue;
            }
            for (sink, sink_def) in &config.sinks {
                if config
                    .channels
                    .get(&sink_def.channel)
                    .is_none_or(|c| c.durable())
                    || !config
                        .sources_feeding(&sink_def.channel)
                        .contains(&source.as_str())
                    || sink_def.kind.releases_without_more_input()
                {
                    continue;
                }
                self.error(
                    &key(&["sinks", sink]),
                    format!("sink `{sink}` is fed by the bounded source `{source}`, whose run ends only once everything it read is durable; the sink must make each batch durable without waiting for more events (an `object_store` sink: roll by time too, with `roll_interval` or `roll_idle`)"),
                );
            }
        }
    }

    /// Every channel has a sink.
    fn check_drained(&mut self, config: &Config, drained: &BTreeMap<&str, &str>) {
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
    }

    /// Each team's lookup tables exist, its plugins fit `max_instances`,
    /// and its `plugin_dir` is not inside `data_dir` (which holds the
    /// compile cache and the status files: a directory that deploys plugin
    /// files must not be one the runtime trusts for its own state).
    fn check_teams(&mut self, config: &Config) {
        let data_dir = lexical(&config.data_dir);
        for (name, team) in &config.teams {
            if name != DEFAULT_TEAM && lexical(&team.plugin_dir).starts_with(&data_dir) {
                self.error(
                    &key(&["teams", name, "plugin_dir"]),
                    format!(
                        "`{}` lies inside data_dir `{}`, which holds the compile cache; keep plugin files apart from the runtime's state",
                        team.plugin_dir.display(),
                        config.data_dir.display()
                    ),
                );
            }
            for (i, table) in team.lookups.iter().enumerate() {
                if !config.lookups.contains_key(table)
                    && !self.broken.contains(&format!("lookups.{table}"))
                {
                    self.error(
                        &key(&["teams", name, "lookups", &i.to_string()]),
                        format!(
                            "no lookup table named `{table}` (lookups defined: {})",
                            names(config.lookups.keys())
                        ),
                    );
                }
            }
            let instances = config
                .sources
                .values()
                .flat_map(|s| s.plugins())
                .filter(|p| config.plugins.get(*p).is_some_and(|d| d.team() == name))
                .count();
            if instances > team.max_instances {
                self.error(
                    &key(&["teams", name, "max_instances"]),
                    format!("team `{name}` needs {instances} plugin instances (one per plugin per source using it) but `max_instances` is {}", team.max_instances),
                );
            }
        }
    }

    /// Each plugin's file exists.
    fn check_plugin_files(&mut self, config: &Config) {
        for (name, plugin) in &config.plugins {
            if !plugin.path.is_file() {
                self.error(
                    &key(&["plugins", name, "path"]),
                    format!("plugin file `{}` does not exist (build plugins with `scripts/build-plugins.sh`)", plugin.path.display()),
                );
            }
        }
    }

    /// Exactly-once sinks (both kinds) need a channel that is not durable;
    /// object-store ones need exactly one source that can re-read.
    /// A durable channel knows positional sources' events by topic (their
    /// name), partition and offset, and drops those it holds; a Kafka topic
    /// of the same name in the same channel would be mistaken for them.
    fn check_positional_topics(&mut self, config: &Config) {
        for (name, source) in &config.sources {
            if !source.kind.positional() {
                continue;
            }
            for (other, def) in &config.sources {
                let shared = def.channels.iter().find(|c| {
                    source.channels.contains(c)
                        && config.channels.get(*c).is_some_and(|ch| ch.durable())
                });
                if let Some(channel) = shared
                    && def.kind.may_read_topic(name)
                {
                    self.error(
                        &key(&["sources", other, "channels"]),
                        format!("source `{other}` may read a topic named `{name}` and shares the durable channel `{channel}` with the `{}` source `{name}`, whose events carry that topic: rename the source or give each its own channel", source.type_name),
                    );
                }
            }
        }
    }

    fn check_exactly_once_sinks(&mut self, config: &Config) {
        for (name, sink) in &config.sinks {
            let eo = sink.kind.guarantee() != Guarantee::AtLeastOnce;
            if eo
                && config
                    .channels
                    .get(&sink.channel)
                    .is_some_and(|c| c.durable())
            {
                self.error(
                    &key(&["sinks", name, "exactly_once"]),
                    format!(
                        "an exactly-once sink needs a `memory` channel: its committed position (beside the output, or in the transaction) is what makes it durable, and it must see the source's own batches; channel `{}` is not a memory channel",
                        sink.channel
                    ),
                );
            }
        }
        for (name, sink) in &config.sinks {
            if sink.kind.guarantee() != Guarantee::ExactlyOnce {
                continue;
            }
            let feeders: Vec<&String> = config
                .sources
                .iter()
                .filter(|(_, s)| s.channels.contains(&sink.channel))
                .map(|(n, _)| n)
                .collect();
            let dead: Vec<&String> = config
                .sources
                .iter()
                .filter(|(_, s)| s.dead_letter.as_ref() == Some(&sink.channel))
                .map(|(n, _)| n)
                .collect();
            if feeders.len() != 1 {
                self.error(
                    &key(&["sinks", name, "exactly_once"]),
                    format!(
                        "an exactly-once sink needs its channel `{}` in the `channels` of exactly one source (it keeps one committed position per partition of that source); it is in {}",
                        sink.channel,
                        if feeders.is_empty() { "none".to_string() } else { names(feeders.into_iter()) }
                    ),
                );
            } else if !dead.is_empty() {
                self.error(
                    &key(&["sinks", name, "exactly_once"]),
                    format!(
                        "channel `{}` of an exactly-once sink cannot be the `dead_letter` channel of {}",
                        sink.channel,
                        names(dead.into_iter())
                    ),
                );
            } else if let Some(source) = config.sources.get(feeders[0])
                && !source.kind.rereads()
                && !source.kind.positional()
            {
                self.error(
                    &key(&["sinks", name, "exactly_once"]),
                    format!("an exactly-once sink needs a source that can re-read from a committed position (`kafka`, `taildir`); source `{}` is not", feeders[0]),
                );
            }
        }
    }

    /// `bootstrap_servers = "embedded"` needs the embedded broker.
    fn check_embedded_broker(&mut self, config: &Config) {
        let needs_embedded = config
            .sources
            .values()
            .any(|s| s.kind.uses_embedded_broker())
            || config.sinks.values().any(|s| s.kind.uses_embedded_broker())
            || config.channels.values().any(|c| c.uses_embedded_broker())
            || config
                .lookups
                .values()
                .any(|l| l.kind.uses_embedded_broker());
        if needs_embedded && config.embedded_broker.is_none() {
            self.error(
                &key(&["sources"]),
                "`bootstrap_servers = \"embedded\"` needs an `[embedded_broker]` table",
            );
        }
    }

    /// A transactional sink's commit waits for every other sink fed by its
    /// source to make its part of each batch durable (see
    /// `sinks::kafka::transactional`). A sink behind a memory channel that
    /// holds its part until more events arrive (an object-store file that
    /// rolls by size or count alone) would wait for events that cannot come
    /// while the transaction waits for it. (A `file` or `kafka` channel holds
    /// the part itself, durably, so what drains it does not matter.)
    fn check_transaction_siblings(&mut self, config: &Config, sink: &str, source: &str) {
        for (other, def) in &config.sinks {
            if other == sink
                || config
                    .channels
                    .get(&def.channel)
                    .is_none_or(|c| c.durable())
                || !config.sources_feeding(&def.channel).contains(&source)
            {
                continue;
            }
            if !def.kind.releases_without_more_input() {
                self.error(
                    &["sinks".to_owned(), other.clone()],
                    format!("sink `{other}` shares source `{source}` with the exactly-once sink `{sink}`, whose transactions wait for it to make each batch durable; it must make each batch durable without waiting for more events (an `object_store` sink: roll by time, with `roll_interval` or `roll_idle`)"),
                );
            }
        }
    }
}

/// The key path of `parts`.
fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}
