//! Sinks: hdfs and file_roll → `object_store` (file_roll without rolling
//! → `file`), logger, null and Kafka → their Sluice namesakes; anything
//! else → a stand-in `file` sink keeping the events on local disk, reported.
//! Then sink groups (Flume's sink processors) → `[sink_groups]`, and a
//! stand-in sink for each channel nothing drains.

use std::collections::BTreeSet;

use super::kafka::{self, Client};
use super::paths;
use super::{Component, Ctx, Role, Section, millis, sanitize, seconds, truthy, words};
use crate::import::toml_out::{Block, Table, Value};

/// Converts every listed sink.
pub(super) fn map_all(ctx: &mut Ctx) {
    let agent = ctx.agent;
    for c in agent.active(Role::Sink) {
        map(ctx, c);
    }
}

fn map(ctx: &mut Ctx, c: &Component) {
    let mark = ctx.report.findings.len();
    let flume_channel = c.str("channel").map(str::to_owned);
    let Some(channel) = flume_channel
        .as_deref()
        .and_then(|ch| ctx.channels.get(ch).cloned())
    else {
        let message = match flume_channel {
            Some(ch) => format!(
                "channel `{ch}` is not an active channel of the agent: the sink is left out"
            ),
            None => "no `channel`: the sink is left out".into(),
        };
        ctx.unmapped(c, "channel", message);
        c.consume_all();
        let mut lines = vec![format!(
            "Flume sink `{}` ({}:{}) is not written.",
            c.name, ctx.file, c.line
        )];
        lines.extend(ctx.findings_since(mark));
        ctx.push(Section::Sinks, Block::Comment(lines));
        return;
    };
    let name = ctx.unique(Section::Sinks, &c.name);
    let mut table = Table::new(&["sinks", &name]);
    let mut subtables = Vec::new();
    let kind = c.type_lower().unwrap_or_default();
    let advice = match kind.as_str() {
        "hdfs" | "org.apache.flume.sink.hdfs.hdfseventsink" => {
            table.set("type", Value::str("object_store"));
            table.set("channel", Value::str(&channel));
            subtables = hdfs(ctx, c, &name, &mut table);
            None
        }
        "file_roll" | "org.apache.flume.sink.rollingfilesink" => {
            file_roll(ctx, c, &name, &channel, &mut table);
            None
        }
        "logger" | "org.apache.flume.sink.loggersink" => {
            table.set("type", Value::str("logger"));
            table.set("channel", Value::str(&channel));
            if let Some(n) = ctx.positive(c, "maxBytesToLog", "left out") {
                table.set("max_body", Value::Int(n as i64));
            } else if !c.has("maxBytesToLog") {
                table
                    .set("max_body", Value::Int(16))
                    .after("Flume's default maxBytesToLog");
            }
            None
        }
        "null" | "org.apache.flume.sink.nullsink" => {
            table.set("type", Value::str("null"));
            table.set("channel", Value::str(&channel));
            None
        }
        "org.apache.flume.sink.kafka.kafkasink" | "kafka" => {
            table.set("type", Value::str("kafka"));
            table.set("channel", Value::str(&channel));
            subtables = kafka_sink(ctx, c, &name, &mut table);
            None
        }
        "avro" | "org.apache.flume.sink.avrosink" => Some(
            "Sluice does not send Avro RPC to a next Flume hop: produce to Kafka (a `kafka` sink) and have the next agent read the topic",
        ),
        "thrift" | "org.apache.flume.sink.thriftsink" => Some(
            "Sluice does not send Thrift RPC: produce to Kafka (a `kafka` sink) and have the receiver read the topic",
        ),
        "hive" | "org.apache.flume.sink.hive.hivesink" => Some(
            "Sluice does not stream into Hive transactions: write Hive-style partitions with an `object_store` sink (`path = \"dt=%Y-%m-%d/hr=%H\"`, `format = \"jsonl\"`) under an external table, and add partitions as they appear (`MSCK REPAIR TABLE`)",
        ),
        "hbase"
        | "hbase2"
        | "asynchbase"
        | "org.apache.flume.sink.hbase.hbasesink"
        | "org.apache.flume.sink.hbase2.hbase2sink"
        | "org.apache.flume.sink.hbase.asynchbasesink" => Some(
            "Sluice has no HBase client: produce to Kafka and load HBase from the topic (a Kafka Connect HBase sink)",
        ),
        "elasticsearch" | "org.apache.flume.sink.elasticsearch.elasticsearchsink" => Some(
            "Sluice has no Elasticsearch client: produce to Kafka and index from the topic (Kafka Connect Elasticsearch sink, Logstash, Vector)",
        ),
        "http" | "org.apache.flume.sink.http.httpsink" => {
            Some("Sluice has no HTTP sink: produce to Kafka and forward from the topic")
        }
        "irc" | "org.apache.flume.sink.irc.ircsink" => Some("Sluice has no IRC sink"),
        "org.apache.flume.sink.solr.morphline.morphlinesolrsink" => {
            Some("Sluice has no Solr client: produce to Kafka and index from the topic")
        }
        "org.apache.flume.sink.kite.datasetsink" => Some(
            "Sluice does not write Kite datasets: write files with an `object_store` sink (`format = \"jsonl\"`)",
        ),
        "" => Some("no `type`: Flume cannot start this sink"),
        _ => Some(
            "a custom sink class cannot run in Sluice: produce to Kafka or write files to an object store, and move the sink's logic downstream",
        ),
    };
    if let Some(advice) = advice {
        ctx.unmapped(c, "type", format!("{advice}. Written as a stand-in `file` sink keeping the events on local disk, so that nothing is lost until it is replaced"));
        c.consume_all();
        table.set("type", Value::str("file"));
        table.set("channel", Value::str(&channel));
        table.set(
            "path",
            Value::str(format!(
                "/var/lib/sluice/{}/{}.jsonl",
                sanitize(&ctx.agent.name),
                name
            )),
        );
        table.set("format", Value::str("jsonl"));
    }
    ctx.annotate(c, &mut table, mark, advice.is_some());
    ctx.push(Section::Sinks, Block::Table(table));
    for t in subtables {
        ctx.push(Section::Sinks, Block::Table(t));
    }
    ctx.sinks
        .insert(c.name.clone(), (name.clone(), channel.clone()));
    ctx.drained.entry(channel).or_default().push(name);
}

/// The HDFS sink's keys; returns the `s3`/`azure` subtables.
fn hdfs(ctx: &mut Ctx, c: &Component, name: &str, t: &mut Table) -> Vec<Table> {
    let mut subtables = Vec::new();
    let path = match c.str("hdfs.path") {
        Some(p) => p.to_owned(),
        None => {
            ctx.unmapped(c, "", "no `hdfs.path`: `url` is a placeholder");
            "file:///CHANGE-ME".into()
        }
    };
    let loc = paths::location(&path);
    for u in &loc.unmapped {
        ctx.unmapped(c, "hdfs.path", u.clone());
    }
    for n in &loc.notes {
        ctx.note(c, "hdfs.path", n.clone());
    }
    t.set("url", Value::str(&loc.url));
    if !loc.template.is_empty() {
        let value = if loc.uses_env {
            Value::Interp(loc.template.clone())
        } else {
            Value::str(&loc.template)
        };
        t.set("path", value);
    }
    if let Some(endpoint) = &loc.oss_endpoint {
        let mut s3 = Table::new(&["sinks", name, "s3"]);
        s3.set("endpoint", Value::str(endpoint))
            .after("your bucket's region: https://oss-<region>.aliyuncs.com");
        subtables.push(s3);
    }
    if let Some(account) = &loc.azure_account {
        let mut azure = Table::new(&["sinks", name, "azure"]);
        azure.set("account_name", Value::str(account));
        subtables.push(azure);
    }
    format_and_compression(ctx, c, t);
    rolls(ctx, c, t);
    if let Some(n) = ctx.positive(c, "hdfs.maxOpenFiles", "left out") {
        let clamped = n.clamp(1, 100_000);
        t.set("max_open_files", Value::Int(clamped as i64));
    }
    times(ctx, c, &loc);
    for key in [
        "hdfs.filePrefix",
        "hdfs.fileSuffix",
        "hdfs.inUsePrefix",
        "hdfs.inUseSuffix",
        "hdfs.emptyInUseSuffix",
    ] {
        ctx.ignore(c, key, "Sluice names files `<topic>+<partition>+<first offset>.<txt|jsonl>[.gz|.zst]` and keeps them invisible until complete; readers selecting files by name must change");
    }
    for key in [
        "hdfs.kerberosPrincipal",
        "hdfs.kerberosKeytab",
        "hdfs.proxyUser",
    ] {
        if c.has(key) {
            ctx.unmapped(c, key, "HDFS authentication does not apply: Sluice authenticates to the object store with its own credentials (environment, instance role, or the `s3`/`gcs`/`azure` table)");
            c.get(key);
        }
    }
    ctx.ignore(
        c,
        "hdfs.batchSize",
        "Sluice writes each batch as it comes, and makes files visible when they roll",
    );
    for key in [
        "hdfs.callTimeout",
        "hdfs.threadsPoolSize",
        "hdfs.rollTimerPoolSize",
        "hdfs.closeTries",
        "hdfs.retryInterval",
        "hdfs.minBlockReplicas",
    ] {
        ctx.ignore(c, key, "an HDFS client setting; Sluice retries failed writes with backoff (`retry_backoff_initial`, `retry_backoff_max`)");
    }
    subtables
}

/// `hdfs.fileType`, `hdfs.codeC`, `serializer`.
fn format_and_compression(ctx: &mut Ctx, c: &Component, t: &mut Table) {
    let file_type = c.str("hdfs.fileType").map(str::to_ascii_lowercase);
    let codec = c.str("hdfs.codeC").map(str::to_owned);
    match file_type.as_deref() {
        Some("datastream") => {
            if codec.is_some() {
                ctx.note(
                    c,
                    "hdfs.codeC",
                    "ignored: Flume does not compress a DataStream either",
                );
            }
        }
        Some("compressedstream") => match codec {
            Some(codec) => {
                let simple = codec
                    .rsplit('.')
                    .next()
                    .unwrap_or(&codec)
                    .to_ascii_lowercase();
                let (compression, message) = match simple.trim_end_matches("codec") {
                    "gzip" => ("gzip", None),
                    "bzip2" => (
                        "gzip",
                        Some("bzip2 is not supported: wrote gzip (or choose zstd)"),
                    ),
                    "snappy" | "lzo" | "lzop" | "lz4" => (
                        "zstd",
                        Some("not supported: wrote zstd, as fast to read and smaller"),
                    ),
                    "zstandard" | "zstd" => ("zstd", None),
                    "default" | "deflate" => (
                        "gzip",
                        Some(
                            "zlib (`.deflate`) files are not supported: wrote gzip, which holds the same deflate data",
                        ),
                    ),
                    _ => ("gzip", Some("not a codec Sluice knows: wrote gzip")),
                };
                t.set("compression", Value::str(compression));
                if let Some(m) = message {
                    ctx.unmapped(
                        c,
                        "hdfs.codeC",
                        format!("`{codec}`: {m}; readers of the files must change"),
                    );
                }
            }
            None => {
                ctx.unmapped(
                    c,
                    "hdfs.fileType",
                    "CompressedStream without `hdfs.codeC` (Flume refuses it): wrote gzip",
                );
                t.set("compression", Value::str("gzip"));
            }
        },
        None | Some("sequencefile") => {
            let default = if file_type.is_none() {
                " (Flume's default)"
            } else {
                ""
            };
            ctx.unmapped(c, "hdfs.fileType", format!("SequenceFile{default}: Sluice writes text or JSON lines, not Hadoop SequenceFiles; wrote text (body + newline, Flume's DataStream): tables and jobs reading these files must change"));
            if codec.is_some() {
                ctx.note(c, "hdfs.codeC", "ignored with SequenceFile; set `compression` (`gzip`, `zstd`) to compress the text files");
            }
            ctx.ignore(c, "hdfs.writeFormat", "a SequenceFile setting");
        }
        Some(other) => {
            let other = other.to_owned();
            ctx.unmapped(
                c,
                "hdfs.fileType",
                format!("`{other}` is not a Flume file type: wrote text"),
            );
        }
    }
    if !matches!(file_type.as_deref(), None | Some("sequencefile")) {
        ctx.ignore(c, "hdfs.writeFormat", "it applies to SequenceFiles only");
    }
    let serializer = c.str("serializer").map(str::to_ascii_lowercase);
    match serializer.as_deref() {
        None
        | Some("text")
        | Some("org.apache.flume.serialization.bodytexteventserializer$builder") => {
            t.set("format", Value::str("text"))
                .after("the body and a newline, Flume's TEXT serializer");
        }
        Some("header_and_text")
        | Some("org.apache.flume.serialization.headerandbodytexteventserializer$builder") => {
            t.set("format", Value::str("jsonl"));
            ctx.note(c, "serializer", "Flume wrote `{headers} body` lines; Sluice's `jsonl` writes one JSON object per event with `headers` and `value`");
        }
        Some(other) => {
            let other = other.to_owned();
            t.set("format", Value::str("jsonl"));
            ctx.unmapped(c, "serializer", format!("`{other}` (Avro container files or a custom serializer) is not supported: wrote JSON lines (`jsonl`, with headers and Kafka metadata)"));
        }
    }
    if c.str("serializer.appendNewline")
        .is_some_and(|v| !truthy(v))
    {
        ctx.unmapped(
            c,
            "serializer.appendNewline",
            "Sluice always ends an event with a newline",
        );
    } else {
        c.get("serializer.appendNewline");
    }
    for (key, _) in c.below("serializer.") {
        if key != "appendNewline" {
            ctx.note(
                c,
                &format!("serializer.{key}"),
                "ignored: a serializer setting without Sluice equivalent",
            );
        }
    }
}

/// `hdfs.rollInterval`, `hdfs.rollSize`, `hdfs.rollCount`, `hdfs.idleTimeout`.
fn rolls(ctx: &mut Ctx, c: &Component, t: &mut Table) {
    let mut any = false;
    for (key, default, sluice) in [
        ("hdfs.rollInterval", 30, "roll_interval"),
        ("hdfs.rollSize", 1024, "roll_size"),
        ("hdfs.rollCount", 10, "roll_count"),
        ("hdfs.idleTimeout", 0, "roll_idle"),
    ] {
        let set = c.has(key);
        let value = if set { ctx.uint(c, key) } else { Some(default) };
        let Some(v) = value.filter(|v| *v > 0) else {
            continue;
        };
        any = true;
        let entry = match sluice {
            "roll_interval" | "roll_idle" => t.set(sluice, seconds(v)),
            _ => t.set(sluice, Value::Int(v as i64)),
        };
        if !set {
            entry.after(format!("Flume's default {key}; set it to what you need"));
        }
    }
    if !any {
        ctx.unmapped(c, "hdfs.rollInterval", "Flume never rolled these files by time, size, count or idleness (all 0); Sluice needs a roll trigger: wrote roll_interval = \"1h\"");
        t.set("roll_interval", Value::str("1h"));
    }
}

/// Time zone, local time stamps and rounding of the path's time escapes.
fn times(ctx: &mut Ctx, c: &Component, loc: &paths::Location) {
    let local = c.str("hdfs.useLocalTimeStamp").is_some_and(truthy);
    if loc.finest.is_some() {
        let source = if local {
            "Flume used the agent's clock (useLocalTimeStamp); Sluice uses the `timestamp` header when set, else the Kafka record's time (for file, HTTP and syslog sources: when read), else the clock"
        } else {
            "Sluice takes the time from the `timestamp` header like Flume, and without one from the Kafka record's time (file, HTTP, syslog sources: when read) instead of failing"
        };
        ctx.note(
            c,
            "hdfs.path",
            format!("{source}; times are rendered in UTC, where Flume used the agent's time zone"),
        );
    } else {
        c.get("hdfs.useLocalTimeStamp");
    }
    if let Some(zone) = c.str("hdfs.timeZone")
        && !matches!(
            zone.to_ascii_uppercase().as_str(),
            "UTC" | "GMT" | "ETC/UTC" | "Z"
        )
    {
        let zone = zone.to_owned();
        ctx.unmapped(
            c,
            "hdfs.timeZone",
            format!("`{zone}`: Sluice renders path times in UTC only; directory names shift by the zone's offset"),
        );
    }
    if c.str("hdfs.round").is_some_and(truthy) {
        let value = ctx.uint(c, "hdfs.roundValue").unwrap_or(1).max(1);
        let unit = match c
            .str("hdfs.roundUnit")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("minute") => 60,
            Some("hour") => 3_600,
            _ => 1,
        };
        let round = value * unit;
        match loc.finest {
            None => ctx.note(c, "hdfs.round", "ignored: the path has no time escapes"),
            Some(finest) if finest % round == 0 => ctx.note(c, "hdfs.round", "no effect with this path (its finest time unit is a multiple of the rounding): left out"),
            Some(_) => ctx.unmapped(c, "hdfs.round", format!("Sluice does not round path times (here to {round} s): events land in the directory of their own minute/second; round in a plugin that rewrites the `timestamp` header, or use a coarser escape")),
        }
    } else {
        c.get("hdfs.roundValue");
        c.get("hdfs.roundUnit");
    }
}

fn file_roll(ctx: &mut Ctx, c: &Component, name: &str, channel: &str, t: &mut Table) {
    let dir = match c.str("sink.directory") {
        Some(d) if d.starts_with('/') => d.trim_end_matches('/').to_owned(),
        Some(d) => {
            let d = d.to_owned();
            ctx.unmapped(c, "sink.directory", format!("`{d}` is relative to Flume's working directory: Sluice needs an absolute path; change it"));
            format!("/CHANGE-ME/{d}")
        }
        None => {
            ctx.unmapped(c, "", "no `sink.directory`: the directory is a placeholder");
            "/CHANGE-ME".into()
        }
    };
    let interval = if c.has("sink.rollInterval") {
        ctx.uint(c, "sink.rollInterval").unwrap_or(30)
    } else {
        30
    };
    let format = match c
        .str("sink.serializer")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => "text",
        Some("header_and_text") => {
            ctx.note(
                c,
                "sink.serializer",
                "written as JSON lines (`jsonl`), which keep the headers",
            );
            "jsonl"
        }
        Some(other) => {
            let other = other.to_owned();
            ctx.unmapped(
                c,
                "sink.serializer",
                format!("`{other}` is not supported: wrote JSON lines"),
            );
            "jsonl"
        }
    };
    if interval == 0 {
        t.set("type", Value::str("file"));
        t.set("channel", Value::str(channel));
        t.set("path", Value::str(format!("{dir}/{name}.log")));
        t.set("format", Value::str(format));
        ctx.note(c, "sink.rollInterval", format!("0: Flume wrote one file that never rolls; Sluice's `file` sink appends to `{dir}/{name}.log`"));
    } else {
        t.set("type", Value::str("object_store"));
        t.set("channel", Value::str(channel));
        t.set("url", Value::str(format!("file://{dir}")));
        t.set("format", Value::str(format));
        let entry = t.set("roll_interval", seconds(interval));
        if !c.has("sink.rollInterval") {
            entry.after("Flume's default sink.rollInterval");
        }
        ctx.note(c, "sink.directory", "files are named `<topic>+<partition>+<first offset>.<ext>` and appear when complete (Flume named them `<time>-<n>` and wrote in place)");
    }
    for key in [
        "sink.pathManager",
        "sink.pathManager.extension",
        "sink.pathManager.prefix",
    ] {
        ctx.ignore(c, key, "Sluice names the files itself");
    }
    for key in ["sink.batchSize", "batchSize"] {
        ctx.ignore(c, key, "Sluice writes each batch as it comes");
    }
}

fn kafka_sink(ctx: &mut Ctx, c: &Component, name: &str, t: &mut Table) -> Vec<Table> {
    let bootstrap = match c.first(&["kafka.bootstrap.servers", "brokerList"]) {
        Some((_, b)) => b.to_owned(),
        None => {
            ctx.unmapped(
                c,
                "",
                "no `kafka.bootstrap.servers`: `bootstrap_servers` is a placeholder",
            );
            "CHANGE-ME:9092".into()
        }
    };
    t.set("bootstrap_servers", Value::str(bootstrap));
    let mut topic_header: Option<String> = None;
    match c
        .first(&["kafka.topic", "topic"])
        .map(|(k, v)| (k, v.to_owned()))
    {
        Some((key, topic)) if topic.contains("%{") => {
            let whole = topic
                .strip_prefix("%{")
                .and_then(|r| r.strip_suffix('}'))
                .filter(|h| !h.contains(['{', '}', '%']));
            match whole {
                Some(header) => topic_header = Some(header.to_owned()),
                None => {
                    ctx.unmapped(c, key, format!("`{topic}`: Sluice takes the topic from a header's whole value (`topic_header`), not from a template: wrote a placeholder topic; set a header with the full topic name in a plugin"));
                    t.set("topic", Value::str("CHANGE-ME"));
                }
            }
        }
        Some((_, topic)) => {
            t.set("topic", Value::str(topic));
        }
        None => {
            t.set("topic", Value::str("default-flume-topic"))
                .after("Flume's default topic");
        }
    }
    let override_ok = c.str("allowTopicOverride").is_none_or(truthy);
    let flume_header = c.str("topicHeader").unwrap_or("topic").to_owned();
    if topic_header.is_none() && override_ok {
        topic_header = Some(flume_header);
    }
    if let Some(h) = topic_header {
        t.set("topic_header", Value::str(h))
            .after("an event with this header goes to the topic it names, as in Flume");
    }
    t.set("key_header", Value::str("key"))
        .after("Flume's Kafka sink keys records by the `key` header");
    for key in ["flumeBatchSize", "kafka.flumeBatchSize", "batchSize"] {
        ctx.ignore(
            c,
            key,
            "Sluice produces each channel batch as it comes (set the batch size on the source)",
        );
    }
    if c.str("useFlumeEventFormat").is_some_and(truthy) {
        ctx.unmapped(c, "useFlumeEventFormat", "Sluice writes the body as the record value and headers as record headers, not Flume's Avro events: consumers decoding Flume events must change");
    } else {
        c.get("useFlumeEventFormat");
    }
    for key in ["defaultPartitionId", "partitionIdHeader"] {
        if c.has(key) {
            ctx.unmapped(c, key, "Sluice partitions records by key (librdkafka's partitioner); fixed or header-chosen partitions are not supported: key the events instead");
            c.get(key);
        }
    }
    let mut props = Table::new(&["sinks", name, "kafka"]);
    if let Some(acks) = c.get("requiredAcks").map(|p| p.value.clone()) {
        for (k, v) in kafka::properties(ctx, c, Client::Producer, "requiredAcks", "acks", &acks) {
            props.set(&k, v);
        }
    }
    for (key, prop) in c.below("kafka.producer.") {
        for (k, v) in kafka::properties(
            ctx,
            c,
            Client::Producer,
            &format!("kafka.producer.{key}"),
            &key,
            &prop.value,
        ) {
            props.set(&k, v);
        }
    }
    if props.is_empty() {
        return Vec::new();
    }
    props.comment("librdkafka producer properties (Flume's kafka.producer.*).");
    vec![props]
}

/// Sink groups, and a `load_balance` group for each channel several
/// sinks outside any group drain (Flume's sink runners took turns).
pub(super) fn map_groups(ctx: &mut Ctx) {
    let agent = ctx.agent;
    let mut grouped: BTreeSet<String> = BTreeSet::new();
    for g in agent.active(Role::SinkGroup) {
        let mark = ctx.report.findings.len();
        let mut members: Vec<String> = Vec::new();
        let mut channel: Option<String> = None;
        let mut ok = true;
        for s in words(g.str("sinks").unwrap_or("")) {
            let Some((sluice, ch)) = ctx.sinks.get(&s).cloned() else {
                ctx.unmapped(
                    g,
                    "sinks",
                    format!("`{s}` is not a written sink: left out of the group"),
                );
                continue;
            };
            if !grouped.insert(sluice.clone()) {
                ctx.unmapped(
                    g,
                    "sinks",
                    format!("`{s}` is already in another group: left out"),
                );
                continue;
            }
            match &channel {
                None => channel = Some(ch),
                Some(c) if *c != ch => {
                    ctx.unmapped(g, "sinks", format!("the members drain different channels (`{c}`, `{ch}`): a Sluice group's sinks share one channel; the group is not written"));
                    ok = false;
                }
                Some(_) => {}
            }
            members.push(sluice);
        }
        let processor = g
            .str("processor.type")
            .map_or("default".to_owned(), str::to_ascii_lowercase);
        if !ok || members.len() < 2 {
            if ok {
                ctx.note(g, "sinks", "fewer than two sinks: no group needed");
            }
            for m in &members {
                grouped.remove(m);
            }
            g.consume_all();
            omit_group(ctx, g, mark);
            continue;
        }
        // Sinks draining the group's channel outside it join it: a Sluice
        // channel has one sink or one group.
        let others: Vec<String> = channel
            .as_ref()
            .and_then(|ch| ctx.drained.get(ch))
            .map(|sinks| {
                sinks
                    .iter()
                    .filter(|s| !members.contains(s) && !grouped.contains(*s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for other in others {
            ctx.unmapped(g, "sinks", format!("sink `{other}` drains the group's channel outside the group (Flume let it take events on its own); a Sluice channel has one sink or one group: added to the group"));
            grouped.insert(other.clone());
            members.push(other);
        }
        let name = ctx.unique(Section::SinkGroups, &g.name);
        let mut t = Table::new(&["sink_groups", &name]);
        t.set("sinks", Value::strs(&members));
        match processor.as_str() {
            "failover" | "org.apache.flume.sink.failoversinkprocessor" => {
                t.set("processor", Value::str("failover"));
                let mut priorities = Vec::new();
                for (sink, prop) in g.below("processor.priority.") {
                    let Some((sluice, _)) = ctx.sinks.get(&sink).cloned() else {
                        ctx.note(
                            g,
                            &format!("processor.priority.{sink}"),
                            "ignored: not a member",
                        );
                        continue;
                    };
                    match prop.value.trim().parse::<i32>() {
                        Ok(p) if members.contains(&sluice) => {
                            priorities.push((sluice, Value::Int(i64::from(p))))
                        }
                        Ok(_) => ctx.note(
                            g,
                            &format!("processor.priority.{sink}"),
                            "ignored: not a member",
                        ),
                        Err(_) => ctx.unmapped(
                            g,
                            &format!("processor.priority.{sink}"),
                            "not a whole number: left out",
                        ),
                    }
                }
                if !priorities.is_empty() {
                    t.set("priorities", Value::Inline(priorities))
                        .after("higher first, as in Flume");
                }
                if let Some(ms) = ctx.positive(g, "processor.maxpenalty", "left out") {
                    t.set("max_backoff", millis(ms.max(1000)));
                }
            }
            "load_balance" | "org.apache.flume.sink.loadbalancingsinkprocessor" => {
                t.set("processor", Value::str("load_balance"));
                match g
                    .str("processor.selector")
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("round_robin") => {
                        t.set("selector", Value::str("round_robin"));
                    }
                    Some("random") => {
                        t.set("selector", Value::str("random"));
                    }
                    Some(other) => {
                        let other = other.to_owned();
                        ctx.unmapped(g, "processor.selector", format!("the custom selector `{other}` cannot run in Sluice: wrote round_robin"));
                        t.set("selector", Value::str("round_robin"));
                    }
                }
                let backoff = g.str("processor.backoff").is_some_and(truthy);
                let entry = t.set("backoff", Value::Bool(backoff));
                if !g.has("processor.backoff") {
                    entry.after("Flume's default; Sluice's own is true");
                }
                if let Some(ms) = ctx.positive(g, "processor.selector.maxTimeOut", "left out") {
                    t.set("max_backoff", millis(ms.max(1000)));
                }
            }
            "default" | "org.apache.flume.sink.defaultsinkprocessor" => {
                ctx.note(g, "processor.type", "the default processor runs a single sink; with several, written as load_balance (each batch to one sink)");
                t.set("processor", Value::str("load_balance"));
                t.set("backoff", Value::Bool(false));
            }
            other => {
                let other = other.to_owned();
                ctx.unmapped(
                    g,
                    "processor.type",
                    format!(
                        "the custom sink processor `{other}` cannot run in Sluice: wrote failover"
                    ),
                );
                t.set("processor", Value::str("failover"));
                g.consume("processor");
            }
        }
        ctx.annotate(g, &mut t, mark, false);
        ctx.push(Section::SinkGroups, Block::Table(t));
    }
    // Channels several ungrouped sinks drain.
    let drained = ctx.drained.clone();
    for (channel, sinks) in drained {
        if sinks.len() < 2 || sinks.iter().any(|s| grouped.contains(s)) {
            continue;
        }
        let name = ctx.unique(Section::SinkGroups, &format!("{channel}-sinks"));
        let mut t = Table::new(&["sink_groups", &name]);
        t.comment(format!("Several Flume sinks drained channel `{channel}` in turn (each event to one of them); Sluice drains a channel with one sink or a group."));
        ctx.report.findings.push(crate::import::Finding {
            severity: crate::import::Severity::Note,
            line: None,
            key: format!("{}.channels.{channel}", ctx.agent.name),
            message: format!("drained by several sinks outside a sink group: written as the load_balance group `{name}`"),
        });
        t.set("sinks", Value::strs(&sinks));
        t.set("processor", Value::str("load_balance"));
        t.set("backoff", Value::Bool(false));
        ctx.push(Section::SinkGroups, Block::Table(t));
    }
}

fn omit_group(ctx: &mut Ctx, g: &Component, mark: usize) {
    let mut lines = vec![format!(
        "Flume sink group `{}` ({}:{}) is not written.",
        g.name, ctx.file, g.line
    )];
    lines.extend(ctx.findings_since(mark));
    ctx.push(Section::SinkGroups, Block::Comment(lines));
}

/// A stand-in sink for each channel no sink drains (Sluice requires one).
pub(super) fn drain_orphans(ctx: &mut Ctx) {
    let channels: Vec<(String, String)> = ctx
        .channels
        .iter()
        .map(|(f, s)| (f.clone(), s.clone()))
        .collect();
    for (flume, channel) in channels {
        if ctx.drained.get(&channel).is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let name = ctx.unique(Section::Sinks, &format!("{channel}-undrained"));
        let mut t = Table::new(&["sinks", &name]);
        let line = ctx.agent.component(Role::Channel, &flume).map(|c| c.line);
        let message = format!(
            "no sink drains channel `{flume}` (Flume let events pile up until it was full); Sluice needs one: written as a stand-in `file` sink `{name}` keeping them on local disk; replace it, or remove the channel"
        );
        t.comment(format!("UNMAPPED: {message}"));
        ctx.report.findings.push(crate::import::Finding {
            severity: crate::import::Severity::Unmapped,
            line,
            key: format!("{}.channels.{flume}", ctx.agent.name),
            message,
        });
        t.set("type", Value::str("file"));
        t.set("channel", Value::str(&channel));
        t.set(
            "path",
            Value::str(format!(
                "/var/lib/sluice/{}/{}.jsonl",
                sanitize(&ctx.agent.name),
                name
            )),
        );
        t.set("format", Value::str("jsonl"));
        ctx.push(Section::Sinks, Block::Table(t));
        ctx.drained.entry(channel).or_default().push(name);
    }
}
