//! Sources: Kafka, exec, spooldir, TAILDIR, http, syslog (TCP, UDP,
//! multiport: one Sluice source per port) and seq/stress (`generator`);
//! the rest is reported and left out. Each source's channel selector and
//! interceptors become its `channels`, `router` and `interceptors`
//! ([`super::plugins`]).

use std::net::IpAddr;

use super::kafka::{self, Client};
use super::plugins;
use super::{Component, Ctx, Role, Section, millis, truthy, words};
use crate::import::toml_out::{Block, Table, Value};

/// Converts every listed source.
pub(super) fn map_all(ctx: &mut Ctx) {
    let agent = ctx.agent;
    for c in agent.active(Role::Source) {
        map(ctx, c);
    }
}

/// One Sluice source a Flume source became.
struct Out {
    /// Sluice name.
    name: String,
    table: Table,
    /// Tables below it (`[sources.x.kafka]`), written after it.
    subtables: Vec<Table>,
    /// Plugins of this source only, run before the shared interceptors.
    own_interceptors: Vec<String>,
}

impl Out {
    fn new(name: String, kind: &str) -> Self {
        let mut table = Table::new(&["sources", &name]);
        table.set("type", Value::str(kind));
        Out {
            name,
            table,
            subtables: Vec::new(),
            own_interceptors: Vec::new(),
        }
    }
}

/// What kind of Flume source a `type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kafka,
    Exec,
    Spooldir,
    Taildir,
    Http,
    SyslogTcp,
    SyslogUdp,
    MultiportSyslog,
    Seq,
    Stress,
    /// No Sluice equivalent; the advice.
    Unsupported(&'static str),
}

fn kind(type_lower: &str) -> Kind {
    match type_lower {
        "org.apache.flume.source.kafka.kafkasource" | "kafka" => Kind::Kafka,
        "exec" | "org.apache.flume.source.execsource" => Kind::Exec,
        "spooldir" | "org.apache.flume.source.spooldirectorysource" => Kind::Spooldir,
        "taildir" | "org.apache.flume.source.taildir.taildirsource" => Kind::Taildir,
        "http" | "org.apache.flume.source.http.httpsource" => Kind::Http,
        "syslogtcp" | "org.apache.flume.source.syslogtcpsource" => Kind::SyslogTcp,
        "syslogudp" | "org.apache.flume.source.syslogudpsource" => Kind::SyslogUdp,
        "multiport_syslogtcp" | "org.apache.flume.source.multiportsyslogtcpsource" => {
            Kind::MultiportSyslog
        }
        "seq" | "org.apache.flume.source.sequencegeneratorsource" => Kind::Seq,
        "org.apache.flume.source.stresssource" | "stress" => Kind::Stress,
        "avro" | "org.apache.flume.source.avrosource" => Kind::Unsupported(
            "Sluice has no Avro RPC server: have the upstream agents send to Kafka (a `kafka` source here) or POST to an `http` source",
        ),
        "thrift" | "org.apache.flume.source.thriftsource" => Kind::Unsupported(
            "Sluice has no Thrift RPC server: have the senders write to Kafka (a `kafka` source here) or POST to an `http` source",
        ),
        "netcat"
        | "netcatudp"
        | "org.apache.flume.source.netcatsource"
        | "org.apache.flume.source.netcatudpsource" => Kind::Unsupported(
            "Sluice has no raw socket source: send lines with an HTTP POST (`http` source, `format = \"lines\"`) or as syslog (`syslog` source)",
        ),
        "jms" | "org.apache.flume.source.jms.jmssource" => Kind::Unsupported(
            "Sluice has no JMS client: bridge the queue into Kafka (e.g. a Kafka Connect JMS source connector) and read it with a `kafka` source",
        ),
        "org.apache.flume.source.avrolegacy.avrolegacysource"
        | "org.apache.flume.source.thriftlegacy.thriftlegacysource" => Kind::Unsupported(
            "the Flume 0.9 (OG) protocols are not supported: move the senders to Kafka or HTTP",
        ),
        "org.apache.flume.source.twitter.twittersource" => Kind::Unsupported(
            "the Twitter firehose source has no Sluice equivalent: write the stream to Kafka and read it with a `kafka` source",
        ),
        "org.apache.flume.source.scribe.scribesource" => {
            Kind::Unsupported("Sluice has no Scribe server: move the senders to Kafka or HTTP")
        }
        _ => Kind::Unsupported(
            "a custom source class cannot run in Sluice: have it write to Kafka, POST to an `http` source, or drop files for a `spooldir` source",
        ),
    }
}

fn map(ctx: &mut Ctx, c: &Component) {
    let mark = ctx.report.findings.len();
    let Some(type_lower) = c.type_lower() else {
        ctx.unmapped(c, "", "no `type`: Flume cannot start this source; left out");
        omit(ctx, c, mark);
        return;
    };
    let kind = kind(&type_lower);
    if let Kind::Unsupported(advice) = kind {
        ctx.unmapped(c, "type", advice);
        c.consume_all();
        omit(ctx, c, mark);
        return;
    }
    // The channels it writes to: the selector decides among them.
    let mut flume_channels = Vec::new();
    for name in words(c.str("channels").unwrap_or("")) {
        if ctx.channels.contains_key(&name) {
            flume_channels.push(name);
        } else {
            ctx.unmapped(
                c,
                "channels",
                format!("`{name}` is not an active channel of the agent: left out"),
            );
        }
    }
    if flume_channels.is_empty() {
        ctx.unmapped(
            c,
            "channels",
            "no channel to write to: the source is left out",
        );
        c.consume_all();
        omit(ctx, c, mark);
        return;
    }
    let name = ctx.unique(Section::Sources, &c.name);
    let outs = match kind {
        Kind::Kafka => vec![kafka_source(ctx, c, name)],
        Kind::Exec => vec![exec(ctx, c, name)],
        Kind::Spooldir => vec![spooldir(ctx, c, name)],
        Kind::Taildir => vec![taildir(ctx, c, name)],
        Kind::Http => http(ctx, c, name).into_iter().collect(),
        Kind::SyslogTcp => syslog(ctx, c, name, "tcp").into_iter().collect(),
        Kind::SyslogUdp => syslog(ctx, c, name, "udp").into_iter().collect(),
        Kind::MultiportSyslog => multiport(ctx, c, name),
        Kind::Seq => vec![seq(ctx, c, name)],
        Kind::Stress => vec![stress(ctx, c, name)],
        Kind::Unsupported(_) => Vec::new(),
    };
    if outs.is_empty() {
        c.consume_all();
        omit(ctx, c, mark);
        return;
    }
    let source = &outs[0].name;
    let interceptors = plugins::interceptors(ctx, c, source);
    let wiring = plugins::selector(ctx, c, source, &flume_channels, kind == Kind::Kafka);
    let dead_letter = outs.iter().any(|o| !o.own_interceptors.is_empty())
        || !interceptors.is_empty()
        || wiring.router.is_some();
    let dead_letter = dead_letter.then(|| ctx.dead_letter());
    let mut first = true;
    for mut out in outs {
        let chain: Vec<String> = out
            .own_interceptors
            .iter()
            .chain(&interceptors)
            .cloned()
            .collect();
        if !chain.is_empty() || wiring.router.is_some() {
            let team = ctx.team();
            out.table.set("team", Value::str(team));
            ctx.plugin_instances += chain.len() + usize::from(wiring.router.is_some());
        }
        if !chain.is_empty() {
            out.table.set("interceptors", Value::strs(&chain));
        }
        if let Some(router) = &wiring.router {
            out.table.set("router", Value::str(router));
        }
        out.table.set("channels", Value::strs(&wiring.channels));
        if let Some(dl) = &dead_letter {
            out.table
                .set("dead_letter", Value::str(dl))
                .after("where plugins send events they cannot process");
        }
        if first {
            ctx.annotate(c, &mut out.table, mark, false);
            first = false;
        } else {
            out.table.comment(format!(
                "Also from Flume source `{}` (one Sluice source per port).",
                c.name
            ));
        }
        ctx.push(Section::Sources, Block::Table(out.table));
        for t in out.subtables {
            ctx.push(Section::Sources, Block::Table(t));
        }
    }
}

/// Writes a comment in place of a source that is left out.
fn omit(ctx: &mut Ctx, c: &Component, mark: usize) {
    let mut lines = vec![format!(
        "Flume source `{}` ({}:{}, type {}) is not written: no Sluice equivalent.",
        c.name,
        ctx.file,
        c.line,
        c.str("type").unwrap_or("(none)")
    )];
    lines.extend(ctx.findings_since(mark));
    ctx.push(Section::Sources, Block::Comment(lines));
}

/// `key` as `batch_max_events`, if positive.
fn batch_events(ctx: &mut Ctx, c: &Component, key: &str, table: &mut Table) {
    if let Some(n) = ctx.positive(c, key, "left out: Sluice's default applies (1000)") {
        table.set("batch_max_events", Value::Int(n as i64));
    }
}

/// `key` (milliseconds) as `batch_max_wait`, if positive.
fn batch_wait(ctx: &mut Ctx, c: &Component, key: &str, table: &mut Table) {
    if let Some(ms) = ctx.positive(c, key, "left out: Sluice's default applies (100ms)") {
        table.set("batch_max_wait", millis(ms));
    }
}

/// A character set key that must be UTF-8.
fn utf8_only(ctx: &mut Ctx, c: &Component, key: &str) {
    if let Some(cs) = c.str(key) {
        let normal = cs.to_ascii_uppercase().replace('_', "-");
        if normal != "UTF-8" && normal != "UTF8" {
            let cs = cs.to_owned();
            ctx.unmapped(c, key, format!("`{cs}`: Sluice passes bytes through as they are (UTF-8 text); convert the input or decode it in a plugin"));
        }
    }
}

fn kafka_source(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "kafka");
    let t = &mut out.table;
    let bootstrap = match c.first(&["kafka.bootstrap.servers", "brokerList"]) {
        Some((_, b)) => b.to_owned(),
        None => {
            let message = match c.str("zookeeperConnect") {
                Some(zk) => format!("`{zk}` is ZooKeeper, which Kafka consumers no longer use: `bootstrap_servers` is a placeholder; set it to the brokers (`host:9092,...`)"),
                None => "no `kafka.bootstrap.servers`: `bootstrap_servers` is a placeholder; set it to the brokers".into(),
            };
            ctx.unmapped(
                c,
                if c.has("zookeeperConnect") {
                    "zookeeperConnect"
                } else {
                    ""
                },
                message,
            );
            "CHANGE-ME:9092".into()
        }
    };
    t.set("bootstrap_servers", Value::str(bootstrap));
    match c.first(&["kafka.consumer.group.id", "groupId"]) {
        Some((_, g)) => {
            t.set("group_id", Value::str(g));
        }
        None => {
            t.set("group_id", Value::str("flume"))
                .after("Flume's default group");
        }
    }
    ctx.note(c, "", "same consumer group: stop the Flume agent, and Sluice continues from the offsets it committed");
    let regex = c.str("kafka.topics.regex").map(str::to_owned);
    let topics = c
        .first(&["kafka.topics", "topic"])
        .map(|(_, v)| v.to_owned());
    match (regex, topics) {
        (Some(re), topics) => {
            t.set("topic_pattern", Value::str(&re));
            if topics.is_some() {
                ctx.note(
                    c,
                    "kafka.topics",
                    "ignored: `kafka.topics.regex` takes precedence, in Flume too",
                );
            }
            if regex::Regex::new(&re).is_err() {
                ctx.note(c, "kafka.topics.regex", "librdkafka reads the pattern as a POSIX regular expression; check it matches the same topics");
            }
        }
        (None, Some(list)) => {
            let topics: Vec<String> = list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            t.set("topics", Value::strs(&topics));
        }
        (None, None) => {
            ctx.unmapped(
                c,
                "",
                "no `kafka.topics` or `kafka.topics.regex`: `topics` is a placeholder",
            );
            t.set("topics", Value::strs(["CHANGE-ME"]));
        }
    }
    batch_events(ctx, c, "batchSize", t);
    batch_wait(ctx, c, "batchDurationMillis", t);
    match c
        .str("kafka.consumer.auto.offset.reset")
        .map(str::to_ascii_lowercase)
    {
        Some(v) if v == "earliest" || v == "latest" => {
            t.set("start_from", Value::str(v));
        }
        Some(other) => {
            ctx.unmapped(c, "kafka.consumer.auto.offset.reset", format!("`{other}`: Sluice starts a partition without committed offset at `earliest` or `latest`; wrote `latest`"));
            t.set("start_from", Value::str("latest"));
        }
        None => {
            t.set("start_from", Value::str("latest"))
                .after("the Kafka Java client's default, which Flume used");
        }
    }
    if c.str("useFlumeEventFormat").is_some_and(truthy) {
        ctx.unmapped(c, "useFlumeEventFormat", "Sluice does not decode Flume's Avro event format: records are read as they are, with their Kafka headers; have the producers write plain records with headers");
    }
    let topic_header = c.str("setTopicHeader").is_none_or(truthy);
    c.get("topicHeader");
    if topic_header {
        ctx.note(c, "", "Flume set the headers `topic`, `partition`, `key` and `timestamp`; Sluice keeps them as the event's own metadata (paths use `%{topic}`, `%{partition}`; the event timestamp is the record's), not as headers");
    }
    for key in ["backoffSleepIncrement", "maxBackoffSleep"] {
        ctx.ignore(
            c,
            key,
            "Sluice waits on the broker instead of sleeping between empty polls",
        );
    }
    ctx.ignore(
        c,
        "migrateZookeeperOffsets",
        "offsets kept in ZooKeeper are not read; Sluice uses the group's offsets in Kafka",
    );
    ctx.ignore(
        c,
        "kafka.consumer.timeout.ms",
        "not a setting of current Kafka clients",
    );
    let mut props = Table::new(&["sources", &out.name, "kafka"]);
    for (key, prop) in c.below("kafka.consumer.") {
        if matches!(
            key.as_str(),
            "group.id" | "auto.offset.reset" | "timeout.ms"
        ) {
            continue;
        }
        for (k, v) in kafka::properties(
            ctx,
            c,
            Client::Consumer,
            &format!("kafka.consumer.{key}"),
            &key,
            &prop.value,
        ) {
            props.set(&k, v);
        }
    }
    if !props.is_empty() {
        props.comment("librdkafka consumer properties (Flume's kafka.consumer.*).");
        out.subtables.push(props);
    }
    out
}

fn exec(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "exec");
    let t = &mut out.table;
    let command = c.str("command").map(str::to_owned);
    let shell = c.str("shell").map(words);
    match (command, shell) {
        (Some(cmd), Some(shell)) if !shell.is_empty() => {
            let mut argv = shell;
            argv.push(cmd);
            t.set("command", Value::strs(&argv));
        }
        (Some(cmd), _) => {
            t.set("command", Value::strs(["sh", "-c", cmd.as_str()]))
                .after("Flume ran it without a shell, split on blanks");
        }
        (None, _) => {
            ctx.unmapped(c, "", "no `command`: `command` is a placeholder");
            t.set("command", Value::strs(["CHANGE-ME"]));
        }
    }
    let restart = c.str("restart").is_some_and(truthy);
    t.set("restart", Value::Bool(restart))
        .after(if c.has("restart") {
            "Flume's restart"
        } else {
            "Flume's default; Sluice's own is true"
        });
    if restart {
        match ctx.uint(c, "restartThrottle") {
            Some(ms) if ms > 0 => {
                t.set("restart_backoff", millis(ms));
            }
            Some(_) => {}
            None if !c.has("restartThrottle") => {
                t.set("restart_backoff", millis(10_000))
                    .after("Flume's default restartThrottle");
            }
            None => {}
        }
    } else {
        ctx.ignore(c, "restartThrottle", "the command is not restarted");
    }
    if let Some(log) = c.str("logStdErr")
        && !truthy(log)
    {
        t.set("stderr", Value::str("ignore"));
    }
    batch_events(ctx, c, "batchSize", t);
    batch_wait(ctx, c, "batchTimeout", t);
    utf8_only(ctx, c, "charset");
    out
}

fn spooldir(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "spooldir");
    let t = &mut out.table;
    match c.str("spoolDir") {
        Some(dir) => {
            t.set("dir", Value::str(dir));
        }
        None => {
            ctx.unmapped(c, "", "no `spoolDir`: `dir` is a placeholder");
            t.set("dir", Value::str("/CHANGE-ME"));
        }
    }
    if let Some(suffix) = c.str("fileSuffix") {
        t.set("completed_suffix", Value::str(suffix));
    }
    match c
        .str("deletePolicy")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("never") => {}
        Some("immediate") => {
            t.set("delete_policy", Value::str("immediate"));
        }
        Some(other) => {
            let other = other.to_owned();
            ctx.unmapped(
                c,
                "deletePolicy",
                format!("`{other}` is not `never` or `immediate`: left out (files are renamed)"),
            );
        }
    }
    for (flume, sluice, default) in [
        ("includePattern", "include_pattern", "^.*$"),
        ("ignorePattern", "ignore_pattern", "^$"),
    ] {
        if let Some(re) = c.str(flume)
            && re != default
            && plugins::check_regex(ctx, c, flume, re)
        {
            t.set(sluice, Value::str(re));
        }
    }
    if c.str("fileHeader").is_some_and(truthy) {
        t.set(
            "file_header",
            Value::str(c.str("fileHeaderKey").unwrap_or("file")),
        );
    } else {
        c.get("fileHeaderKey");
    }
    if c.str("basenameHeader").is_some_and(truthy) {
        t.set(
            "basename_header",
            Value::str(c.str("basenameHeaderKey").unwrap_or("basename")),
        );
    } else {
        c.get("basenameHeaderKey");
    }
    match c
        .str("consumeOrder")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("oldest") => {}
        Some(order @ ("youngest" | "random")) => {
            t.set("consume_order", Value::str(order));
        }
        Some(other) => {
            let other = other.to_owned();
            ctx.unmapped(
                c,
                "consumeOrder",
                format!("`{other}` is not `oldest`, `youngest` or `random`: left out"),
            );
        }
    }
    if let Some(ms) = ctx.positive(c, "pollDelay", "left out") {
        t.set("poll_interval", millis(ms));
    }
    batch_events(ctx, c, "batchSize", t);
    match c
        .str("deserializer")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("line") | Some("org.apache.flume.serialization.lineserializer$builder") => {}
        Some(_) => {
            ctx.unmapped(c, "deserializer", "Sluice reads spooled files line by line only: whole-file (BlobDeserializer) and Avro files need a plugin or another way in");
        }
    }
    if let Some((key, _)) = c.first(&["deserializer.maxLineLength", "bufferMaxLineLength"])
        && let Some(n) = ctx.positive(c, key, "left out")
    {
        t.set("max_line_bytes", Value::Int(n as i64));
        ctx.note(c, key, "Flume cut longer lines; Sluice splits them into numbered pieces (header `sluice.exec.part`), losing nothing");
    } else if !c.has("deserializer.maxLineLength") {
        ctx.note(c, "", "Flume's line deserializer cut lines at 2048 characters by default; Sluice keeps lines up to `max_line_bytes` (1MiB) and splits longer ones");
    }
    utf8_only(ctx, c, "inputCharset");
    utf8_only(ctx, c, "deserializer.outputCharset");
    ctx.ignore(
        c,
        "decodeErrorPolicy",
        "Sluice does not decode the bytes: they are passed on as they are",
    );
    if c.str("trackingPolicy")
        .is_some_and(|p| p.eq_ignore_ascii_case("tracker_dir"))
    {
        ctx.unmapped(c, "trackingPolicy", "Sluice renames completed files (or deletes them); it does not leave them in place with marker files in a tracker directory");
    } else {
        c.get("trackingPolicy");
    }
    ctx.ignore(
        c,
        "trackerDir",
        "Sluice keeps its position in its own data directory",
    );
    if c.str("recursiveDirectorySearch").is_some_and(truthy) {
        ctx.unmapped(c, "recursiveDirectorySearch", "Sluice reads files directly in `dir`, not in subdirectories: add a source per subdirectory, or move files up");
    } else {
        c.get("recursiveDirectorySearch");
    }
    ctx.ignore(
        c,
        "maxBackoff",
        "a full Sluice channel makes the source wait, without a backoff",
    );
    ctx.ignore(c, "bufferMaxLines", "obsolete in Flume too");
    out
}

fn taildir(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "taildir");
    let mut groups: Vec<(String, Value)> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for group in words(c.str("filegroups").unwrap_or("")) {
        let key = format!("filegroups.{group}");
        let Some(path) = c.str(&key).map(str::to_owned) else {
            ctx.unmapped(
                c,
                "filegroups",
                format!("group `{group}` has no `{key}`: left out"),
            );
            continue;
        };
        match glob_of(&path) {
            Ok(glob) => {
                groups.push((group.clone(), Value::str(glob)));
                kept.push(group);
            }
            Err(why) => ctx.unmapped(c, &key, format!("`{path}`: {why}; the group is left out: write its files as a glob (`*`, `?`, `[a-z]`) over the file name")),
        }
    }
    if groups.is_empty() {
        ctx.unmapped(
            c,
            "filegroups",
            "no file group could be converted: `filegroups` is a placeholder",
        );
        groups.push(("CHANGE-ME".into(), Value::str("/CHANGE-ME/*.log")));
    }
    let t = &mut out.table;
    t.set("filegroups", Value::Inline(groups));
    if let Some(pos) = c.str("positionFile") {
        let sluice = sibling(pos);
        t.set("position_file", Value::str(&sluice));
        ctx.note(c, "positionFile", format!("Sluice keeps positions in its own format, in `{sluice}` beside Flume's file, which is not read: files are read from their beginning (or end, with skip_to_end) the first time"));
    }
    if c.str("skipToEnd").is_some_and(truthy) {
        t.set("skip_to_end", Value::Bool(true));
    }
    if c.str("fileHeader").is_some_and(truthy) {
        t.set(
            "file_header",
            Value::str(c.str("fileHeaderKey").unwrap_or("file")),
        );
    } else {
        c.get("fileHeaderKey");
    }
    let mut headers: Vec<(String, Value)> = Vec::new();
    for group in &kept {
        let statics: Vec<(String, Value)> = c
            .below(&format!("headers.{group}."))
            .into_iter()
            .map(|(k, p)| (k, Value::str(p.value.trim())))
            .collect();
        if !statics.is_empty() {
            headers.push((group.clone(), Value::Inline(statics)));
        }
    }
    for (key, _) in c.below("headers.") {
        let group = key.split('.').next().unwrap_or("");
        if !kept.iter().any(|g| g == group) {
            ctx.note(
                c,
                &format!("headers.{key}"),
                format!("ignored: file group `{group}` is not converted"),
            );
        }
    }
    if !headers.is_empty() {
        t.set("group_headers", Value::Inline(headers));
    }
    if let Some(ms) = ctx.positive(c, "idleTimeout", "left out") {
        t.set("idle_timeout", millis(ms));
    }
    batch_events(ctx, c, "batchSize", t);
    if c.str("byteOffsetHeader").is_some_and(truthy) {
        ctx.unmapped(c, "byteOffsetHeader", "Sluice has no byte-offset header; an event's offset is the byte offset its line ends at (its `offset`, `jsonl` output's `offset` field)");
    } else {
        c.get("byteOffsetHeader");
    }
    ctx.ignore(
        c,
        "writePosInterval",
        "Sluice writes positions after every acknowledged batch",
    );
    ctx.ignore(
        c,
        "maxBatchCount",
        "Sluice reads the files of a source in turn",
    );
    for key in ["backoffSleepIncrement", "maxBackoffSleep"] {
        ctx.ignore(
            c,
            key,
            "Sluice lists and reads files every `poll_interval` (default 250ms)",
        );
    }
    ctx.ignore(
        c,
        "cachePatternMatching",
        "Sluice lists the directories every `poll_interval`",
    );
    out
}

/// A TAILDIR `filegroups` path as a glob: the directory as it is, the
/// file name's regular expression as a glob when it is simple.
pub(super) fn glob_of(path: &str) -> Result<String, String> {
    let Some((dir, name)) = path.rsplit_once('/') else {
        return Err("not an absolute path".into());
    };
    if !path.starts_with('/') {
        return Err("not an absolute path".into());
    }
    Ok(format!("{dir}/{}", regex_to_glob(name)?))
}

/// A file-name regular expression as a glob, if it has one: `.*` → `*`,
/// `.+` → `?*`, `.` → `?`, `\.` → `.`, `[...]` kept (`[^` → `[!`),
/// anchors dropped.
pub(super) fn regex_to_glob(re: &str) -> Result<String, String> {
    let re = re.strip_prefix('^').unwrap_or(re);
    let re = match re.strip_suffix('$') {
        Some(r) if !r.ends_with('\\') => r,
        _ => re,
    };
    let too_complex = |what: &str| {
        Err(format!(
            "the file-name pattern uses {what}, which a glob cannot express"
        ))
    };
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let quantified = |i: usize| {
        chars
            .get(i)
            .is_some_and(|c| matches!(c, '*' | '+' | '?' | '{'))
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '.' => match chars.get(i + 1) {
                Some('*') => {
                    out.push('*');
                    i += 2;
                    continue;
                }
                Some('+') => {
                    out.push_str("?*");
                    i += 2;
                    continue;
                }
                Some('?' | '{') => return too_complex("an optional or counted `.`"),
                _ => out.push('?'),
            },
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return too_complex("a trailing backslash");
                };
                if next.is_ascii_alphanumeric() {
                    return too_complex(&format!("the class `\\{next}`"));
                }
                if matches!(next, '*' | '?' | '[' | ']') {
                    return too_complex(&format!("a literal `{next}`"));
                }
                if quantified(i + 2) {
                    return too_complex("a quantifier");
                }
                out.push(next);
                i += 2;
                continue;
            }
            '[' => {
                let Some(end) = chars[i + 1..].iter().position(|c| *c == ']') else {
                    return too_complex("an unclosed `[`");
                };
                let inner: String = chars[i + 1..i + 1 + end].iter().collect();
                if inner.contains('\\') || inner.contains('[') || inner.is_empty() {
                    return too_complex("an escape inside `[...]`");
                }
                if quantified(i + 2 + end) {
                    return too_complex("a repeated `[...]`");
                }
                out.push('[');
                out.push_str(
                    &inner
                        .strip_prefix('^')
                        .map_or(inner.clone(), |r| format!("!{r}")),
                );
                out.push(']');
                i += end + 2;
                continue;
            }
            '(' | ')' | '|' | '{' | '}' | '*' | '+' | '?' | '^' | '$' => {
                return too_complex(&format!("`{c}`"));
            }
            c => {
                if quantified(i + 1) {
                    return too_complex("a quantifier");
                }
                out.push(c);
            }
        }
        i += 1;
    }
    if out.is_empty() {
        return Err("the file-name pattern is empty".into());
    }
    Ok(out)
}

/// `dir/name.json` → `dir/name.sluice.json`.
fn sibling(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') && !stem.ends_with('/') => {
            format!("{stem}.sluice.{ext}")
        }
        _ => format!("{path}.sluice"),
    }
}

/// `host:port` from a Flume host key (`bind`, `host`) and port; a host name
/// other than `localhost` is reported and replaced by `0.0.0.0`, a
/// `${VAR}` reference kept.
fn listen(ctx: &mut Ctx, c: &Component, host_key: &str, default_host: &str, port: &str) -> String {
    let host = c.str(host_key).unwrap_or(default_host).to_owned();
    if host.contains("${") {
        return format!("{host}:{port}");
    }
    let ip: IpAddr = match host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => match h.trim_matches(['[', ']']).parse() {
            Ok(ip) => ip,
            Err(_) => {
                ctx.unmapped(c, host_key, format!("`{host}` is a host name; Sluice listens on an IP address: wrote 0.0.0.0 (every interface), change it to the interface's address"));
                IpAddr::from([0, 0, 0, 0])
            }
        },
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The port `value` of `key` (a number, or a `${VAR}` reference), reported
/// if it is neither.
fn port_value(ctx: &mut Ctx, c: &Component, key: &str, value: &str) -> Option<String> {
    let is_ref = value.starts_with("${") && value.ends_with('}');
    match value.parse::<u64>() {
        Ok(p) if (1..=65_535).contains(&p) => Some(p.to_string()),
        _ if is_ref => Some(value.to_owned()),
        _ => {
            ctx.unmapped(c, key, format!("`{value}` is not a port: left out"));
            None
        }
    }
}

/// The port of `key`, reported if missing or not a port.
fn port(ctx: &mut Ctx, c: &Component, key: &str) -> Option<String> {
    match c.str(key).map(str::to_owned) {
        Some(v) => port_value(ctx, c, key, &v),
        None => {
            ctx.unmapped(c, "", format!("no `{key}`: the source is left out"));
            None
        }
    }
}

fn http(ctx: &mut Ctx, c: &Component, name: String) -> Option<Out> {
    let port = port(ctx, c, "port")?;
    let mut out = Out::new(name, "http");
    let listen_at = listen(ctx, c, "bind", "0.0.0.0", &port);
    let loopback = listen_at
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let t = &mut out.table;
    let entry = t.set("listen", Value::str(&listen_at));
    if !c.has("bind") {
        entry.after("Flume's default bind address; Sluice's own default is 127.0.0.1:8080");
    }
    if !loopback {
        let var = format!("{}_{}_TOKEN", super::sanitize(&ctx.agent.name), out.name)
            .to_ascii_uppercase()
            .replace('-', "_");
        t.set("token_env", Value::str(&var))
            .after("the bearer token clients must send");
        ctx.unmapped(c, "bind", format!("Flume took POSTs from any host without authentication; Sluice listening beyond loopback requires a bearer token: set `{var}` in the agent's environment and have clients send `Authorization: Bearer <token>` (or listen on 127.0.0.1 behind a proxy)"));
    }
    match c.str("handler") {
        None | Some("org.apache.flume.source.http.JSONHandler") => {
            t.set("format", Value::str("json"))
                .after("Flume's JSONHandler: [{\"headers\": {...}, \"body\": \"...\"}]");
        }
        Some(h) if h.ends_with("BlobHandler") => {
            t.set("format", Value::str("lines"));
            ctx.note(c, "handler", "Flume's BlobHandler made the whole body one event; Sluice's `lines` makes each line an event (a body without newlines stays one event)");
            if let Some(n) = ctx.positive(c, "handler.maxBlobLength", "left out") {
                t.set("max_body_bytes", Value::Int(n.min(1 << 30) as i64));
            }
        }
        Some(h) => {
            let h = h.to_owned();
            ctx.unmapped(c, "handler", format!("the custom handler `{h}` cannot run in Sluice: wrote `format = \"auto\"` (NDJSON, Flume JSON or lines by Content-Type); decode other bodies in a decoder plugin"));
            t.set("format", Value::str("auto"));
        }
    }
    if c.str("ssl").or(c.str("enableSSL")).is_some_and(truthy) {
        let store = c
            .str("keystore")
            .unwrap_or("the global keystore")
            .to_owned();
        ctx.unmapped(c, "ssl", format!("Sluice serves HTTPS from PEM files, not a Java keystore: convert {store} (`keytool -importkeystore -deststoretype PKCS12`, `openssl pkcs12 -nokeys -out cert.pem`, `-nocerts -nodes -out key.pem`) and set `tls_cert` and `tls_key`"));
    }
    for key in [
        "keystore",
        "keystore-password",
        "keystorePassword",
        "keystore-type",
        "exclude-protocols",
        "excludeProtocols",
        "include-protocols",
        "exclude-cipher-suites",
        "include-cipher-suites",
    ] {
        c.get(key);
    }
    for prefix in [
        "QueuedThreadPool",
        "HttpConfiguration",
        "SslContextFactory",
        "ServerConnector",
        "handler",
    ] {
        for (key, _) in c.below(&format!("{prefix}.")) {
            ctx.note(c, &format!("{prefix}.{key}"), "ignored: a Jetty or handler setting without Sluice equivalent (see `max_connections`, `max_body_bytes`)");
        }
    }
    Some(out)
}

fn syslog(ctx: &mut Ctx, c: &Component, name: String, protocol: &str) -> Option<Out> {
    let port = port(ctx, c, "port")?;
    let mut out = Out::new(name, "syslog");
    let listen_at = listen(ctx, c, "host", "0.0.0.0", &port);
    out.table.set("protocol", Value::str(protocol));
    out.table.set("listen", Value::str(listen_at));
    syslog_common(ctx, c, &mut out.table);
    Some(out)
}

/// Keys the syslog sources share.
fn syslog_common(ctx: &mut Ctx, c: &Component, t: &mut Table) {
    if let Some(n) = ctx.positive(c, "eventSize", "left out") {
        let clamped = n.clamp(480, 16 << 20);
        let entry = t.set("max_message_bytes", Value::Int(clamped as i64));
        if clamped != n {
            entry.after(format!("Flume's {n} is outside 480 bytes..16MiB"));
        }
    }
    if c.str("keepFields")
        .is_some_and(|v| !v.eq_ignore_ascii_case("none") && !v.eq_ignore_ascii_case("false"))
    {
        ctx.unmapped(c, "keepFields", "Sluice's body is the message itself; the priority, time and host are headers (`syslog.facility`, `syslog.severity`, `syslog.timestamp`, `syslog.hostname`), not kept in the body");
    } else {
        c.get("keepFields");
    }
    for key in ["clientIPHeader", "clientHostnameHeader"] {
        ctx.ignore(c, key, "Sluice always sets the sender's `ip:port` in header `syslog.peer` (no host name lookup)");
    }
    ctx.note(c, "", "Flume set headers `Facility`, `Severity`, `host` and `timestamp`; Sluice sets `syslog.facility`, `syslog.severity`, `syslog.hostname` and the event timestamp: rename them where they are used (paths, selectors)");
    if c.str("ssl").is_some_and(truthy) {
        ctx.unmapped(c, "ssl", "Sluice's syslog source has no TLS: terminate TLS in front of it (stunnel, a relay), or send over Kafka");
    }
    for key in [
        "keystore",
        "keystore-password",
        "keystore-type",
        "exclude-protocols",
        "include-protocols",
        "exclude-cipher-suites",
        "include-cipher-suites",
    ] {
        c.get(key);
    }
}

fn multiport(ctx: &mut Ctx, c: &Component, name: String) -> Vec<Out> {
    let ports: Vec<String> = words(c.str("ports").unwrap_or(""));
    if ports.is_empty() {
        ctx.unmapped(c, "", "no `ports`: the source is left out");
        return Vec::new();
    }
    let port_header = c.str("portHeader").map(str::to_owned);
    let mut outs = Vec::new();
    for p in &ports {
        let Some(port) = port_value(ctx, c, "ports", p) else {
            continue;
        };
        let source = if ports.len() == 1 {
            name.clone()
        } else {
            ctx.unique(Section::Sources, &format!("{name}-{port}"))
        };
        let mut out = Out::new(source, "syslog");
        let listen_at = listen(ctx, c, "host", "0.0.0.0", &port);
        out.table.set("protocol", Value::str("tcp"));
        out.table.set("listen", Value::str(listen_at));
        syslog_common(ctx, c, &mut out.table);
        batch_events(ctx, c, "batchSize", &mut out.table);
        if let Some(header) = &port_header {
            let plugin = plugins::static_header(ctx, c, &out.name, header, &port);
            out.own_interceptors.push(plugin);
        }
        outs.push(out);
    }
    // Findings of the shared keys were recorded once per port: keep one.
    dedup_findings(ctx);
    if ports.len() > 1 {
        ctx.note(c, "ports", "Sluice's syslog source listens on one port: one source per port, each with the same channels and plugins");
    }
    if port_header.is_some() {
        ctx.note(
            c,
            "portHeader",
            "each port's source sets the header with a `static` interceptor",
        );
    }
    for (key, _) in c.below("charset.") {
        ctx.note(
            c,
            &format!("charset.{key}"),
            "ignored: Sluice passes message bytes as they are",
        );
    }
    for key in ["readBufferSize", "numProcessors"] {
        ctx.ignore(c, key, "Sluice sizes its own buffers and threads");
    }
    outs
}

/// Drops repeated findings (same key and message) of the last component.
fn dedup_findings(ctx: &mut Ctx) {
    let mut seen = std::collections::BTreeSet::new();
    ctx.report
        .findings
        .retain(|f| seen.insert((f.key.clone(), f.message.clone(), f.line)));
}

fn seq(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "generator");
    let t = &mut out.table;
    match ctx.uint(c, "totalEvents") {
        Some(n) => {
            t.set("count", Value::Int(n as i64));
        }
        None => {
            t.set("count", Value::Int(0))
                .after("until stopped, as Flume's default");
        }
    }
    t.set("body", Value::str("{n}"))
        .after("the sequence number, from 0");
    batch_events(ctx, c, "batchSize", t);
    out
}

fn stress(ctx: &mut Ctx, c: &Component, name: String) -> Out {
    let mut out = Out::new(name, "generator");
    let t = &mut out.table;
    if let Some(n) = ctx.uint(c, "maxTotalEvents").filter(|n| *n > 0) {
        t.set("count", Value::Int(n as i64));
    }
    if let Some(n) = ctx.uint(c, "maxEventsPerSecond").filter(|n| *n > 0) {
        t.set("rate", Value::Int(n.min(10_000_000) as i64));
    }
    let size = ctx.uint(c, "size").unwrap_or(500).clamp(1, 1 << 20) as usize;
    t.set("body", Value::str("x".repeat(size))).above(format!(
        "{size} bytes per event, as Flume's `size`; Flume's bytes were random"
    ));
    batch_events(ctx, c, "batchSize", t);
    ctx.ignore(c, "maxSuccessfulEvents", "use `count`");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_file_name_regexes_become_globs() {
        assert_eq!(regex_to_glob(".*log.*").unwrap(), "*log*");
        assert_eq!(regex_to_glob(r"^app\.log$").unwrap(), "app.log");
        assert_eq!(regex_to_glob(r"access\.log\..+").unwrap(), "access.log.?*");
        assert_eq!(regex_to_glob(r"app-.\.log").unwrap(), "app-?.log");
        assert!(
            regex_to_glob(r"[^.]*\.log")
                .unwrap_err()
                .contains("repeated")
        );
        assert_eq!(regex_to_glob(r"log[0-9]\.txt").unwrap(), "log[0-9].txt");
        assert_eq!(regex_to_glob(r"log[^x]").unwrap(), "log[!x]");
        assert_eq!(
            glob_of("/var/log/test2/.*log.*").unwrap(),
            "/var/log/test2/*log*"
        );
        assert_eq!(
            glob_of("/var/log/test1/example.log").unwrap(),
            "/var/log/test1/example?log"
        );
    }

    #[test]
    fn complex_regexes_are_refused() {
        for re in [
            r"(a|b)\.log",
            r"\d+\.log",
            r"a+\.log",
            "x{2}",
            "(?i)x",
            r"a\*",
        ] {
            assert!(regex_to_glob(re).is_err(), "{re}");
        }
        assert!(glob_of("relative/.*").is_err());
    }

    #[test]
    fn position_files_get_a_sibling() {
        assert_eq!(
            sibling("/var/log/flume/taildir_position.json"),
            "/var/log/flume/taildir_position.sluice.json"
        );
        assert_eq!(sibling("/var/pos"), "/var/pos.sluice");
        assert_eq!(sibling("/var.d/pos"), "/var.d/pos.sluice");
    }
}
