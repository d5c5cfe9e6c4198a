//! Apache Flume agent configurations → Sluice.
//!
//! A Flume agent `a1` is the properties whose keys start with `a1.`:
//! `a1.sources`, `a1.channels`, `a1.sinks` and `a1.sinkgroups` list the
//! active components, and `a1.<role>.<name>.<key>` configure them. Only
//! listed components are converted (Flume ignores the others too).
//!
//! | Flume | Sluice |
//! |---|---|
//! | Kafka, exec, spooldir, TAILDIR, http, syslog (tcp, udp, multiport) sources | `kafka`, `exec`, `spooldir`, `taildir`, `http`, `syslog` sources (`sources.rs`) |
//! | seq, stress sources | `generator` |
//! | memory, file, SPILLABLEMEMORY, Kafka channels | `memory`, `file`, `file`, `kafka` channels (`channels.rs`) |
//! | hdfs, file_roll sinks | `object_store` sink (or `file`) (`sinks.rs`, `paths.rs`) |
//! | logger, null, Kafka sinks | `logger`, `null`, `kafka` sinks |
//! | replicating selector | the source's `channels` |
//! | multiplexing selector | the `header-router` plugin (`plugins.rs`) |
//! | sink groups (failover, load_balance) | `[sink_groups.<name>]` |
//! | timestamp interceptor | the `timestamp` plugin |
//! | host, static, uuid, remove_header, search_replace, regex_filter, regex_extractor | the `flume-interceptors` plugin, one `mode` each |
//!
//! Everything else (Avro, Thrift, JMS, netcat sources; Avro, Thrift, Hive,
//! HBase, Elasticsearch, HTTP sinks; custom Java classes) is reported with
//! what to do instead. A source that cannot be converted is left out (its
//! section is a comment); a sink that cannot be converted becomes a `file`
//! sink keeping the events on local disk, so that nothing is dropped and
//! the configuration still loads until it is replaced.
//!
//! Values may use Flume's `${...}` references (`env.rs`): `${env:NAME}`
//! stays a reference Sluice replaces from the environment when it loads the
//! file, `${NAME}` naming another property of the file is replaced now.
//!
//! Plugins belong to a team named after the agent (`[teams.<agent>]`),
//! whose `plugin_dir` is `--plugin-dir` or `plugins` beside the output. A
//! source with plugins needs a `dead_letter` channel: the import adds one
//! (`dead-letter`) drained into local JSON-lines files.

mod channels;
mod env;
mod kafka;
mod paths;
mod plugins;
mod sinks;
mod sources;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::properties::Property;
use super::report::{Finding, Report, Severity};
use super::toml_out::{Block, Document, Table, Value};
use super::{Imported, Summary};

/// What to import and where plugins live.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The agent's name: the first part of its keys (`a1` in `a1.sources`).
    pub agent: String,
    /// The team's `plugin_dir` as written into the output: where
    /// `flume_interceptors.wasm`, `timestamp.wasm` and `header_router.wasm`
    /// are. Default `plugins` (relative to the output file).
    pub plugin_dir: Option<PathBuf>,
}

/// Converts agent `options.agent` of the parsed properties of `file`
/// (`file` only names it in comments and the report). `Err` with a
/// message when the agent has no components.
pub fn convert(file: &str, props: &[Property], options: &Options) -> Result<Imported, String> {
    let (props, keep_refs, env_findings) = env::resolve(props, &options.agent);
    let agent = Agent::read(&props, &options.agent);
    if Role::LISTED.iter().all(|r| agent.listed(*r).is_empty()) {
        return Err(no_agent_message(&props, &options.agent));
    }
    let mut ctx = Ctx::new(file, &agent, options);
    ctx.report.findings.extend(env_findings);
    ctx.keep_refs = keep_refs;
    ctx.check_lists();
    channels::map_all(&mut ctx);
    sources::map_all(&mut ctx);
    sinks::map_all(&mut ctx);
    sinks::map_groups(&mut ctx);
    sinks::drain_orphans(&mut ctx);
    ctx.finish_shared();
    ctx.report_stray();
    Ok(ctx.into_imported())
}

/// Why an agent has nothing to import, and which agents the file has.
fn no_agent_message(props: &[Property], wanted: &str) -> String {
    let mut agents: BTreeMap<&str, usize> = BTreeMap::new();
    for p in props {
        let mut parts = p.key.splitn(3, '.');
        if let (Some(agent), Some(role)) = (parts.next(), parts.next())
            && Role::LISTED.iter().any(|r| r.plural() == role)
        {
            agents.entry(agent).or_insert(p.line);
        }
    }
    let found = if agents.is_empty() {
        "the file has no Flume agent keys (`<agent>.sources = ...`)".to_owned()
    } else {
        let list: Vec<String> = agents
            .iter()
            .map(|(a, line)| format!("`{a}` (from line {line})"))
            .collect();
        format!("agents in the file: {}", list.join(", "))
    };
    let own = props
        .iter()
        .find(|p| p.key.starts_with(&format!("{wanted}.")));
    match own {
        Some(p) => format!(
            "agent `{wanted}` has no components: no `{wanted}.sources`, `{wanted}.channels` or `{wanted}.sinks` line lists any (its first key is on line {}); {found}",
            p.line
        ),
        None => {
            format!("agent `{wanted}` has no components: no key starts with `{wanted}.`; {found}")
        }
    }
}

/// The kinds of Flume component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Role {
    Source,
    Channel,
    Sink,
    SinkGroup,
}

impl Role {
    /// The roles an agent lists components of.
    const LISTED: [Role; 4] = [Role::Source, Role::Channel, Role::Sink, Role::SinkGroup];

    /// The key segment: `sources`, `channels`, `sinks`, `sinkgroups`.
    pub fn plural(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Channel => "channels",
            Role::Sink => "sinks",
            Role::SinkGroup => "sinkgroups",
        }
    }

    /// For messages.
    pub fn singular(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Channel => "channel",
            Role::Sink => "sink",
            Role::SinkGroup => "sink group",
        }
    }

    fn from_plural(s: &str) -> Option<Self> {
        Role::LISTED.into_iter().find(|r| r.plural() == s)
    }
}

/// One property value and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prop {
    pub value: String,
    pub line: usize,
}

/// One Flume component: its keys below `agent.role.name.`, and which of
/// them the conversion read.
#[derive(Debug)]
pub(super) struct Component {
    pub role: Role,
    /// The Flume name.
    pub name: String,
    /// `agent.role.name`, for messages.
    pub prefix: String,
    /// Line of its first key.
    pub line: usize,
    keys: BTreeMap<String, Prop>,
    used: RefCell<BTreeSet<String>>,
}

impl Component {
    /// The property `key` (relative: `hdfs.path`), marked as read.
    pub fn get(&self, key: &str) -> Option<&Prop> {
        let p = self.keys.get(key)?;
        self.used.borrow_mut().insert(key.to_owned());
        Some(p)
    }

    /// The trimmed value of `key`, if set and not blank.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .map(|p| p.value.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first of `keys` that is set, with its key.
    pub fn first<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &str)> {
        keys.iter().find_map(|k| self.str(k).map(|v| (*k, v)))
    }

    /// Whether `key` is set (without marking it read).
    pub fn has(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// The `type` value, lowercased for matching (Flume matches aliases
    /// without regard to case).
    pub fn type_lower(&self) -> Option<String> {
        self.str("type").map(str::to_ascii_lowercase)
    }

    /// The keys below `prefix` (`kafka.consumer.`), the prefix cut off,
    /// all marked as read.
    pub fn below(&self, prefix: &str) -> Vec<(String, Prop)> {
        let found: Vec<(String, Prop)> = self
            .keys
            .iter()
            .filter_map(|(k, p)| {
                k.strip_prefix(prefix)
                    .map(|rest| (rest.to_owned(), p.clone()))
            })
            .collect();
        let mut used = self.used.borrow_mut();
        for (rest, _) in &found {
            used.insert(format!("{prefix}{rest}"));
        }
        found
    }

    /// Marks every key below `prefix` (or equal to it) as read.
    pub fn consume(&self, prefix: &str) {
        let mut used = self.used.borrow_mut();
        for k in self.keys.keys() {
            if k == prefix || k.starts_with(&format!("{prefix}.")) {
                used.insert(k.clone());
            }
        }
    }

    /// Marks every key as read.
    pub fn consume_all(&self) {
        self.used.borrow_mut().extend(self.keys.keys().cloned());
    }

    /// The line of `key`, or of the component.
    pub fn line_of(&self, key: &str) -> usize {
        self.keys.get(key).map_or(self.line, |p| p.line)
    }

    /// Keys nobody read, in key order.
    fn unread(&self) -> Vec<(String, Prop)> {
        let used = self.used.borrow();
        self.keys
            .iter()
            .filter(|(k, _)| !used.contains(*k))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }
}

/// One agent's keys, by component.
#[derive(Debug, Default)]
pub(super) struct Agent {
    pub name: String,
    /// `a1.sources = r1 r2` and the like: the names and the line.
    lists: BTreeMap<Role, (Vec<String>, usize)>,
    components: BTreeMap<(Role, String), Component>,
    /// Keys of the agent that are no component's (`a1.configfilters...`).
    stray: Vec<(String, Prop)>,
    /// Keys set more than once: full key, earlier line, later line.
    duplicates: Vec<(String, usize, usize)>,
}

impl Agent {
    fn read(props: &[Property], name: &str) -> Self {
        let mut agent = Agent {
            name: name.to_owned(),
            ..Agent::default()
        };
        let own = format!("{name}.");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for p in props {
            let Some(rest) = p.key.strip_prefix(&own) else {
                continue;
            };
            if let Some(earlier) = seen.insert(&p.key, p.line) {
                agent.duplicates.push((p.key.clone(), earlier, p.line));
            }
            let prop = Prop {
                value: p.value.clone(),
                line: p.line,
            };
            let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let Some(role) = Role::from_plural(head) else {
                agent.stray.push((p.key.clone(), prop));
                continue;
            };
            if tail.is_empty() {
                agent.lists.insert(role, (words(&p.value), p.line));
                continue;
            }
            let Some((comp, key)) = tail
                .split_once('.')
                .filter(|(c, k)| !c.is_empty() && !k.is_empty())
            else {
                agent.stray.push((p.key.clone(), prop));
                continue;
            };
            let component = agent
                .components
                .entry((role, comp.to_owned()))
                .or_insert_with(|| Component {
                    role,
                    name: comp.to_owned(),
                    prefix: format!("{name}.{}.{comp}", role.plural()),
                    line: p.line,
                    keys: BTreeMap::new(),
                    used: RefCell::default(),
                });
            component.line = component.line.min(p.line);
            component.keys.insert(key.to_owned(), prop);
        }
        agent
    }

    /// The names listed for `role`, in order, without repeats.
    pub fn listed(&self, role: Role) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.lists
            .get(&role)
            .map(|(names, _)| {
                names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| seen.insert(*n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The listed component `name` of `role`, if it has keys.
    pub fn component(&self, role: Role, name: &str) -> Option<&Component> {
        self.components.get(&(role, name.to_owned()))
    }

    /// The listed components of `role` that have keys, in list order.
    pub fn active(&self, role: Role) -> Vec<&Component> {
        self.listed(role)
            .into_iter()
            .filter_map(|n| self.component(role, n))
            .collect()
    }
}

/// Whitespace-separated words, as Flume splits lists.
pub(super) fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Flume's `Boolean.parseBoolean`: `true` in any case is true, anything
/// else false.
pub(super) fn truthy(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true")
}

/// A duration in milliseconds as Sluice writes it: in the largest unit
/// that divides it (`"2m"`, `"10s"`, `"1500ms"`).
pub(super) fn millis(ms: u64) -> Value {
    let units = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")];
    match units
        .iter()
        .find(|(size, _)| ms > 0 && ms.is_multiple_of(*size))
    {
        Some((size, unit)) => Value::str(format!("{}{unit}", ms / size)),
        None => Value::str(format!("{ms}ms")),
    }
}

/// A duration in seconds, as [`millis`] writes it.
pub(super) fn seconds(s: u64) -> Value {
    millis(s.saturating_mul(1000))
}

/// A name Sluice accepts: letters, digits, `_` and `-`, at most 128.
pub(super) fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if clean.is_empty() {
        "unnamed".into()
    } else {
        clean
    }
}

/// The sections of the output, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Section {
    Teams,
    Sources,
    Plugins,
    Channels,
    Sinks,
    SinkGroups,
}

impl Section {
    fn title(self) -> &'static str {
        match self {
            Section::Teams => "Teams: who owns the plugins",
            Section::Sources => "Sources",
            Section::Plugins => "Plugins: Flume's interceptors and channel selectors",
            Section::Channels => "Channels",
            Section::Sinks => "Sinks",
            Section::SinkGroups => "Sink groups: Flume's sink processors",
        }
    }
}

/// The conversion's state.
pub(super) struct Ctx<'a> {
    pub file: &'a str,
    pub agent: &'a Agent,
    pub options: &'a Options,
    pub report: Report,
    blocks: BTreeMap<Section, Vec<Block>>,
    /// Names taken in each section.
    taken: BTreeMap<Section, BTreeSet<String>>,
    /// Flume channel name → Sluice channel name, for channels written.
    pub channels: BTreeMap<String, String>,
    /// Flume sink name → (Sluice sink name, Sluice channel), for sinks written.
    pub sinks: BTreeMap<String, (String, String)>,
    /// Sluice channels → the Sluice sinks draining them.
    pub drained: BTreeMap<String, Vec<String>>,
    /// The team of the plugins, once one is needed.
    team: Option<String>,
    /// Environment variables the team's plugins read.
    pub team_env: BTreeSet<String>,
    /// Plugin instances of the team (one per plugin per source).
    pub plugin_instances: usize,
    /// The dead-letter channel, once a source needs one.
    dead_letter: Option<String>,
    /// Findings already written as comments.
    shown: BTreeSet<usize>,
    /// Whether values hold `${VAR}` references for Sluice to replace.
    keep_refs: bool,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, agent: &'a Agent, options: &'a Options) -> Self {
        let mut ctx = Ctx {
            file,
            agent,
            options,
            report: Report::default(),
            blocks: BTreeMap::new(),
            taken: BTreeMap::new(),
            channels: BTreeMap::new(),
            sinks: BTreeMap::new(),
            drained: BTreeMap::new(),
            team: None,
            team_env: BTreeSet::new(),
            plugin_instances: 0,
            dead_letter: None,
            shown: BTreeSet::new(),
            keep_refs: false,
        };
        for (key, first, last) in &agent.duplicates {
            ctx.report.findings.push(Finding {
                severity: Severity::Note,
                line: Some(*last),
                key: key.clone(),
                message: format!("set on line {first} and again here; Flume uses the last value, and so does the import"),
            });
        }
        ctx
    }

    /// Reports listed components without keys, and components with keys
    /// that are not listed.
    fn check_lists(&mut self) {
        for role in Role::LISTED {
            let listed = self.agent.listed(role);
            let line = self.agent.lists.get(&role).map(|(_, l)| *l);
            for name in &listed {
                if self.agent.component(role, name).is_none() {
                    self.report.findings.push(Finding {
                        severity: Severity::Unmapped,
                        line,
                        key: format!("{}.{}", self.agent.name, role.plural()),
                        message: format!(
                            "{} `{name}` is listed but has no keys (not even `type`); Flume cannot start it, and the import leaves it out",
                            role.singular()
                        ),
                    });
                }
            }
            let unlisted: Vec<&Component> = self
                .agent
                .components
                .values()
                .filter(|c| c.role == role && !listed.contains(&c.name.as_str()))
                .collect();
            for c in unlisted {
                self.report.findings.push(Finding {
                    severity: Severity::Note,
                    line: Some(c.line),
                    key: c.prefix.clone(),
                    message: format!(
                        "not listed in `{}.{}`: Flume ignores it, and so does the import",
                        self.agent.name,
                        role.plural()
                    ),
                });
            }
        }
    }

    /// Records a finding about `key` of `c` (`""`: the component).
    pub fn find(
        &mut self,
        severity: Severity,
        c: &Component,
        key: &str,
        message: impl Into<String>,
    ) {
        let (full, line) = if key.is_empty() {
            (c.prefix.clone(), c.line)
        } else {
            (format!("{}.{key}", c.prefix), c.line_of(key))
        };
        self.report.findings.push(Finding {
            severity,
            line: Some(line),
            key: full,
            message: message.into(),
        });
    }

    /// Records an unmapped finding about `key` of `c`.
    pub fn unmapped(&mut self, c: &Component, key: &str, message: impl Into<String>) {
        self.find(Severity::Unmapped, c, key, message);
    }

    /// Records a note about `key` of `c`.
    pub fn note(&mut self, c: &Component, key: &str, message: impl Into<String>) {
        self.find(Severity::Note, c, key, message);
    }

    /// Notes that `key`, when set, is ignored because `why`.
    pub fn ignore(&mut self, c: &Component, key: &str, why: &str) {
        if let Some(p) = c.get(key) {
            let value = p.value.trim().to_owned();
            self.note(c, key, format!("`{value}` ignored: {why}"));
        }
    }

    /// An integer value of `key`; a value that is not one is reported.
    pub fn int(&mut self, c: &Component, key: &str) -> Option<i64> {
        let v = c.str(key)?;
        match v.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) if v.contains("${") => {
                let v = v.to_owned();
                self.unmapped(
                    c,
                    key,
                    format!("`{v}`: the import needs the number itself here; write it (left out)"),
                );
                None
            }
            Err(_) => {
                let v = v.to_owned();
                self.unmapped(
                    c,
                    key,
                    format!("`{v}` is not a whole number; Flume would refuse it; left out"),
                );
                None
            }
        }
    }

    /// A non-negative integer value of `key`.
    pub fn uint(&mut self, c: &Component, key: &str) -> Option<u64> {
        let n = self.int(c, key)?;
        match u64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.unmapped(c, key, format!("`{n}` is negative; left out"));
                None
            }
        }
    }

    /// A positive integer value of `key` (0 and negatives are reported as
    /// `zero_means`).
    pub fn positive(&mut self, c: &Component, key: &str, zero_means: &str) -> Option<u64> {
        let n = self.int(c, key)?;
        if n > 0 {
            return Some(n as u64);
        }
        self.note(c, key, format!("`{n}`: {zero_means}"));
        None
    }

    /// A unique name in `section` for `wanted` (sanitized; `-2`, `-3`, ...
    /// added on a clash).
    pub fn unique(&mut self, section: Section, wanted: &str) -> String {
        let base = sanitize(wanted);
        let taken = self.taken.entry(section).or_default();
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        name
    }

    /// Adds a block to `section`.
    pub fn push(&mut self, section: Section, block: Block) {
        self.blocks.entry(section).or_default().push(block);
    }

    /// The comment block naming where a table came from, and its findings
    /// since `mark`, as comments of `table`; keys of `c` nobody read are
    /// reported first (unless `skip_unread`).
    pub fn annotate(&mut self, c: &Component, table: &mut Table, mark: usize, skip_unread: bool) {
        if !skip_unread {
            self.report_unread(c);
        }
        let kind = c.str("type").unwrap_or("(no type)").to_owned();
        table.comment(format!(
            "From Flume {} `{}` ({}:{}), type {kind}.",
            c.role.singular(),
            c.name,
            self.file,
            c.line
        ));
        for line in self.findings_since(mark) {
            table.comment(line);
        }
    }

    /// The findings recorded since `mark` and not yet written as comments
    /// (an interceptor's are written on its plugin, not again on its
    /// source), as comment lines.
    pub fn findings_since(&mut self, mark: usize) -> Vec<String> {
        let fresh: Vec<usize> = (mark..self.report.findings.len())
            .filter(|i| !self.shown.contains(i))
            .collect();
        self.shown.extend(fresh.iter().copied());
        fresh
            .into_iter()
            .map(|i| &self.report.findings[i])
            .map(|f| {
                let tag = match f.severity {
                    Severity::Unmapped => "UNMAPPED",
                    Severity::Note => "NOTE",
                };
                let key = f
                    .key
                    .rsplit_once(&format!("{}.", self.component_prefix(&f.key)))
                    .map_or(f.key.as_str(), |(_, k)| k);
                let at = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                format!("{tag}{at} {key}: {}", f.message)
            })
            .collect()
    }

    /// `a1.sinks.k1` of `a1.sinks.k1.hdfs.path`.
    fn component_prefix(&self, key: &str) -> String {
        key.splitn(4, '.').take(3).collect::<Vec<_>>().join(".")
    }

    /// Reports the keys of `c` nobody read.
    pub fn report_unread(&mut self, c: &Component) {
        for (key, prop) in c.unread() {
            let value = prop.value.trim().to_owned();
            self.report.findings.push(Finding {
                severity: Severity::Note,
                line: Some(prop.line),
                key: format!("{}.{key}", c.prefix),
                message: format!(
                    "`{value}` ignored: not a key the import knows for this {} type (Flume ignores unknown keys too)",
                    c.role.singular()
                ),
            });
        }
        c.consume_all();
    }

    /// The team owning the generated plugins.
    pub fn team(&mut self) -> String {
        if let Some(t) = &self.team {
            return t.clone();
        }
        let wanted = if self.agent.name == crate::config::DEFAULT_TEAM {
            format!("{}-agent", self.agent.name)
        } else {
            self.agent.name.clone()
        };
        let name = self.unique(Section::Teams, &wanted);
        self.team = Some(name.clone());
        name
    }

    /// The dead-letter channel every source with plugins sends to.
    pub fn dead_letter(&mut self) -> String {
        if let Some(d) = &self.dead_letter {
            return d.clone();
        }
        let name = self.unique(Section::Channels, "dead-letter");
        self.dead_letter = Some(name.clone());
        name
    }

    /// Writes the team and the dead-letter channel and sink, if used.
    fn finish_shared(&mut self) {
        if let Some(team) = self.team.clone() {
            let mut t = Table::new(&["teams", &team]);
            t.comment(format!(
                "The plugins below belong to this team, named after the Flume agent `{}`.",
                self.agent.name
            ));
            let entry = match &self.options.plugin_dir {
                Some(dir) => t.set("plugin_dir", Value::str(dir.display().to_string())),
                None => t.set("plugin_dir", Value::str("plugins")),
            };
            entry.above(
                "Where the plugin files are (relative to this file): flume_interceptors.wasm,",
            );
            entry.above(
                "timestamp.wasm and header_router.wasm, which scripts/build-plugins.sh builds",
            );
            entry.above(
                "into target/wasm32-wasip2/plugin/. Watched: a changed file is swapped in live.",
            );
            if !self.team_env.is_empty() {
                t.set("env", Value::strs(&self.team_env)).above(
                    "Environment variables the plugins may read (the `host` interceptor's value).",
                );
            }
            if self.plugin_instances > 16 {
                t.set("max_instances", Value::Int(self.plugin_instances as i64))
                    .after("one instance per plugin per source");
            }
            self.push(Section::Teams, Block::Table(t));
        }
        if let Some(channel) = self.dead_letter.clone() {
            let mut c = Table::new(&["channels", &channel]);
            c.comment("Events a plugin dead-letters (a timestamp it cannot read, say) and batches");
            c.comment("a plugin fails. Flume had no such place: its interceptors could not fail.");
            c.set("type", Value::str("memory"));
            self.push(Section::Channels, Block::Table(c));
            let sink = self.unique(Section::Sinks, &channel);
            let mut s = Table::new(&["sinks", &sink]);
            s.comment(
                "Dead letters as JSON lines (with the reason in header sluice.dead_letter.reason).",
            );
            s.set("type", Value::str("object_store"));
            s.set("channel", Value::str(&channel));
            s.set(
                "url",
                Value::str(format!(
                    "file:///var/lib/sluice/{}/dead-letter",
                    sanitize(&self.agent.name)
                )),
            )
            .after("change to where dead letters should go");
            s.set("format", Value::str("jsonl"));
            s.set("roll_interval", Value::str("1m"));
            self.push(Section::Sinks, Block::Table(s));
            self.drained.entry(channel).or_default().push(sink);
        }
    }

    /// Reports the agent's keys that belong to no component.
    fn report_stray(&mut self) {
        for (key, prop) in &self.agent.stray {
            let configfilters = key
                .strip_prefix(&format!("{}.", self.agent.name))
                .is_some_and(|k| k.starts_with("configfilters"));
            let (severity, message) = if configfilters {
                (
                    Severity::Unmapped,
                    "Flume's config filters are not read: Sluice replaces `${VAR}` from the environment; put secrets in environment variables or files (`{ env = ... }`, `{ file = ... }` in Kafka properties)".to_owned(),
                )
            } else {
                (
                    Severity::Note,
                    "ignored: not a key of a Flume component".to_owned(),
                )
            };
            self.report.findings.push(Finding {
                severity,
                line: Some(prop.line),
                key: key.clone(),
                message,
            });
        }
    }

    /// The document and the report.
    fn into_imported(self) -> Imported {
        let mut summary = Summary::default();
        let mut doc = Document {
            keep_refs: self.keep_refs,
            ..Document::default()
        };
        let unmapped = self.report.unmapped();
        let notes = self.report.findings.len() - unmapped;
        doc.header = vec![
            format!(
                "Sluice configuration imported from Flume agent `{}` of {} by `sluice import flume`.",
                self.agent.name, self.file
            ),
            String::new(),
            "Each section says which Flume component it came from. UNMAPPED lines say what Flume did that this file does not (or a placeholder to fill in) and what to do instead; NOTE lines say where Sluice behaves differently.".into(),
            format!("{unmapped} unmapped, {notes} notes (the same list is printed by the import)."),
            String::new(),
            "Check it with `sluice validate <this file>`; run it with `sluice run <this file>`.".into(),
        ];
        let mut blocks = self.blocks;
        for (section, list) in blocks.iter_mut() {
            let count = list
                .iter()
                .filter(|b| matches!(b, Block::Table(t) if t.path().len() == 2))
                .count();
            match section {
                Section::Sources => summary.sources = count,
                Section::Plugins => summary.plugins = count,
                Section::Channels => summary.channels = count,
                Section::Sinks => summary.sinks = count,
                Section::SinkGroups => summary.sink_groups = count,
                Section::Teams => {}
            }
            doc.blocks.push(Block::Comment(vec![
                "-".repeat(78),
                section.title().to_owned(),
                "-".repeat(78),
            ]));
            doc.blocks.append(list);
        }
        Imported {
            toml: doc.render(),
            report: self.report,
            summary,
        }
    }
}
