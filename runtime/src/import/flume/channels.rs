//! Channels: memory → `memory`, file and SPILLABLEMEMORY → `file`, Kafka →
//! `kafka` (or, for a Kafka channel without sources or without sinks, a
//! Kafka source or sink in front of a memory channel), JDBC and custom
//! classes → a stand-in, reported.

use super::kafka::{self, Client};
use super::{Component, Ctx, Role, Section};
use crate::import::toml_out::{Block, Table, Value};

/// Converts every listed channel, recording the names written.
pub(super) fn map_all(ctx: &mut Ctx) {
    let agent = ctx.agent;
    // Names first, so that sources and sinks can refer to every channel.
    for c in agent.active(Role::Channel) {
        let name = ctx.unique(Section::Channels, &c.name);
        ctx.channels.insert(c.name.clone(), name);
    }
    for c in agent.active(Role::Channel) {
        map(ctx, c);
    }
}

/// What feeds and drains Flume channel `name`.
fn wiring(ctx: &Ctx, name: &str) -> (usize, usize) {
    let agent = ctx.agent;
    let fed = agent
        .active(Role::Source)
        .iter()
        .filter(|s| {
            s.str("channels")
                .is_some_and(|list| list.split_whitespace().any(|n| n == name))
        })
        .count();
    let drained = agent
        .active(Role::Sink)
        .iter()
        .filter(|s| s.str("channel") == Some(name))
        .count();
    (fed, drained)
}

fn map(ctx: &mut Ctx, c: &Component) {
    let mark = ctx.report.findings.len();
    let name = ctx.channels[&c.name].clone();
    let mut table = Table::new(&["channels", &name]);
    let mut extra: Vec<Table> = Vec::new();
    let kind = c.type_lower().unwrap_or_default();
    match kind.as_str() {
        "memory" | "org.apache.flume.channel.memorychannel" => memory(ctx, c, &mut table),
        "file" | "org.apache.flume.channel.file.filechannel" => file(ctx, c, &mut table),
        "spillablememory" | "org.apache.flume.channel.spillablememorychannel" => {
            ctx.note(c, "type", "Sluice has no spill-over channel: a `file` channel holds everything on disk (durable like Flume's overflow, slower than memory)");
            for key in [
                "memoryCapacity",
                "overflowCapacity",
                "byteCapacity",
                "avgEventSize",
                "byteCapacityBufferPercentage",
                "overflowTimeout",
                "overflowDeactivationThreshold",
            ] {
                ctx.ignore(
                    c,
                    key,
                    "the `file` channel has no memory part; it is bounded by `max_bytes`",
                );
            }
            file(ctx, c, &mut table);
        }
        "org.apache.flume.channel.kafka.kafkachannel" | "kafka" => {
            kafka_channel(ctx, c, &name, &mut table, &mut extra);
        }
        "jdbc" | "org.apache.flume.channel.jdbc.jdbcchannel" => {
            ctx.unmapped(c, "type", "the JDBC (Derby) channel has no Sluice equivalent: written as a `file` channel, which is durable too; its data is not carried over, so drain the Flume channel first");
            c.consume_all();
            table.set("type", Value::str("file"));
        }
        "" => {
            ctx.unmapped(
                c,
                "",
                "no `type`: Flume cannot start this channel; written as a `memory` channel",
            );
            c.consume_all();
            table.set("type", Value::str("memory"));
        }
        _ => {
            ctx.unmapped(c, "type", "a custom channel class has no Sluice equivalent: written as a `memory` channel (or write `file` for durability)");
            c.consume_all();
            table.set("type", Value::str("memory"));
        }
    }
    ctx.annotate(c, &mut table, mark, false);
    ctx.push(Section::Channels, Block::Table(table));
    for t in extra {
        let section = match t.path()[0].as_str() {
            "sources" => Section::Sources,
            "sinks" => Section::Sinks,
            _ => Section::Channels,
        };
        ctx.push(section, Block::Table(t));
    }
}

fn memory(ctx: &mut Ctx, c: &Component, table: &mut Table) {
    table.set("type", Value::str("memory"));
    if let Some(n) = ctx.positive(
        c,
        "capacity",
        "left out: Sluice's default applies (10000 events)",
    ) {
        table.set("capacity_events", Value::Int(n as i64));
    }
    if let Some(n) = ctx.positive(
        c,
        "byteCapacity",
        "left out: Sluice's default applies (64MiB)",
    ) {
        table.set("capacity_bytes", Value::Int(n as i64));
    }
    ctx.ignore(
        c,
        "transactionCapacity",
        "Sluice channels take whole batches; set the batch size on the source (`batch_max_events`)",
    );
    ctx.ignore(
        c,
        "byteCapacityBufferPercentage",
        "Sluice counts the bytes of event bodies, keys and headers",
    );
    ctx.ignore(
        c,
        "keep-alive",
        "a full Sluice channel makes its source wait, without a timeout",
    );
}

fn file(ctx: &mut Ctx, c: &Component, table: &mut Table) {
    table.set("type", Value::str("file"));
    if let Some(dirs) = c.str("dataDirs") {
        let dirs: Vec<String> = dirs
            .split(',')
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .collect();
        if let Some(first) = dirs.first() {
            table.set("dir", Value::str(first));
        }
        if dirs.len() > 1 {
            ctx.note(
                c,
                "dataDirs",
                format!(
                    "Sluice keeps a channel in one directory: `{}` (the others are not used)",
                    dirs[0]
                ),
            );
        }
        ctx.note(c, "dataDirs", "Flume's log files are not read: drain the Flume channel before switching, and give Sluice an empty directory");
    }
    ctx.ignore(
        c,
        "checkpointDir",
        "Sluice keeps its checkpoint inside `dir`",
    );
    for key in [
        "useDualCheckpoints",
        "backupCheckpointDir",
        "checkpointInterval",
        "checkpointOnClose",
        "use-log-replay-v1",
        "use-fast-replay",
    ] {
        ctx.ignore(
            c,
            key,
            "Sluice's log recovers from its own checkpoint and segments",
        );
    }
    if let Some(size) = ctx.positive(c, "maxFileSize", "left out") {
        let clamped = size.clamp(64 << 10, 4 << 30);
        let entry = table.set("segment_size", Value::Int(clamped as i64));
        if clamped != size {
            entry.after(format!("Flume's {size} is outside 64KiB..4GiB"));
        }
    }
    ctx.ignore(
        c,
        "capacity",
        "Sluice bounds a file channel by bytes (`max_bytes`, default 1GiB), not events",
    );
    ctx.ignore(
        c,
        "transactionCapacity",
        "Sluice channels take whole batches; set the batch size on the source",
    );
    ctx.ignore(
        c,
        "minimumRequiredSpace",
        "a full disk makes writes fail and retry; bound the log with `max_bytes`",
    );
    ctx.ignore(
        c,
        "keep-alive",
        "a full Sluice channel makes its source wait, without a timeout",
    );
    for (key, _) in c.below("encryption.") {
        ctx.unmapped(
            c,
            &format!("encryption.{key}"),
            "Sluice does not encrypt its log: put `dir` on an encrypted file system",
        );
    }
}

/// A Kafka channel; without sources it becomes a Kafka source, without
/// sinks a Kafka sink, each in front of a memory channel.
fn kafka_channel(
    ctx: &mut Ctx,
    c: &Component,
    name: &str,
    table: &mut Table,
    extra: &mut Vec<Table>,
) {
    let bootstrap = match c.first(&["kafka.bootstrap.servers", "brokerList"]) {
        Some((_, b)) => b.to_owned(),
        None => {
            let zk = c.str("zookeeperConnect").map(str::to_owned);
            let message = match zk {
                Some(zk) => format!(
                    "the channel names ZooKeeper (`{zk}`), which Kafka clients no longer use: set `bootstrap_servers` to the brokers"
                ),
                None => {
                    "no `kafka.bootstrap.servers`: set `bootstrap_servers` to the brokers".into()
                }
            };
            ctx.unmapped(c, "kafka.bootstrap.servers", message);
            "CHANGE-ME:9092".into()
        }
    };
    let topic = c
        .first(&["kafka.topic", "topic"])
        .map_or_else(|| "flume-channel".to_owned(), |(_, t)| t.to_owned());
    let group = c
        .first(&["kafka.consumer.group.id", "groupId"])
        .map_or_else(|| "flume".to_owned(), |(_, g)| g.to_owned());
    let parse_as_event = c.str("parseAsFlumeEvent").is_none_or(super::truthy);
    let (fed, drained) = wiring(ctx, &c.name);
    let mut props: Vec<(String, Value)> = Vec::new();
    for (client, prefix) in [
        (Client::Producer, "kafka.producer."),
        (Client::Consumer, "kafka.consumer."),
    ] {
        for (key, prop) in c.below(prefix) {
            if key == "group.id" {
                continue;
            }
            for (k, v) in
                kafka::properties(ctx, c, client, &format!("{prefix}{key}"), &key, &prop.value)
            {
                match props.iter().find(|(have, _)| *have == k) {
                    Some((_, other)) if *other != v => ctx.note(c, &format!("{prefix}{key}"), "set for the producer and the consumer with different values: the channel's `properties` hold one value for both; the producer's is kept"),
                    Some(_) => {}
                    None => props.push((k, v)),
                }
            }
        }
    }
    for key in [
        "migrateZookeeperOffsets",
        "pollTimeout",
        "kafka.pollTimeout",
    ] {
        ctx.ignore(c, key, "Sluice's Kafka channel has no such setting");
    }
    for key in ["defaultPartitionId", "partitionIdHeader"] {
        if c.has(key) {
            ctx.unmapped(c, key, "Sluice partitions the channel's records by key; fixed or header-chosen partitions are not supported");
            c.consume(key);
        }
    }
    match (fed > 0, drained > 0) {
        (true, true) => {
            table.set("type", Value::str("kafka"));
            table.set("bootstrap_servers", Value::str(&bootstrap));
            table.set("topic", Value::str(&topic));
            table.set("group_id", Value::str(&group));
            if parse_as_event {
                ctx.note(c, "parseAsFlumeEvent", "Sluice keeps events in the topic as plain records with headers, not Flume's Avro events: drain the Flume channel, or give Sluice a new topic");
            } else {
                ctx.note(
                    c,
                    "parseAsFlumeEvent",
                    "records other producers write to the topic are read too, as Flume did",
                );
            }
            if !props.is_empty() {
                let mut t = Table::new(&["channels", name, "properties"]);
                for (k, v) in props {
                    t.set(&k, v);
                }
                extra.push(t);
            }
        }
        (false, true) => {
            // Sinks read the topic: a Kafka source feeds a memory channel.
            table.set("type", Value::str("memory"));
            let source = ctx.unique(Section::Sources, &format!("{name}-kafka"));
            ctx.note(c, "", format!("no Flume source writes to this Kafka channel, so its sinks read the topic: written as the Kafka source `{source}` into this memory channel, same topic and group (it continues from the group's committed offsets)"));
            if parse_as_event {
                ctx.note(c, "parseAsFlumeEvent", "records written by Flume's Kafka channel or sink as Avro events are read as raw bytes: Sluice does not read Flume's event format");
            }
            let mut s = Table::new(&["sources", &source]);
            s.comment(format!(
                "Reads the topic of Flume's Kafka channel `{}`, which had no source.",
                c.name
            ));
            s.set("type", Value::str("kafka"));
            s.set("bootstrap_servers", Value::str(&bootstrap));
            s.set("group_id", Value::str(&group));
            s.set("topics", Value::strs([&topic]));
            s.set("start_from", Value::str("latest"))
                .after("the Kafka Java client's default, which Flume used");
            s.set("channels", Value::strs([name]));
            extra.push(s);
            if !props.is_empty() {
                let mut t = Table::new(&["sources", &source, "kafka"]);
                for (k, v) in props {
                    t.set(&k, v);
                }
                extra.push(t);
            }
        }
        (true, false) => {
            // Sources write to the topic: a Kafka sink drains a memory channel.
            table.set("type", Value::str("memory"));
            let sink = ctx.unique(Section::Sinks, &format!("{name}-kafka"));
            ctx.note(c, "", format!("no Flume sink reads this Kafka channel, so it only wrote to the topic: written as the Kafka sink `{sink}` draining this memory channel"));
            if parse_as_event {
                ctx.unmapped(c, "parseAsFlumeEvent", "Flume wrote Avro-wrapped Flume events to the topic; Sluice writes the body as the record value and headers as record headers: readers of the topic that decode Flume events must change");
            }
            let mut s = Table::new(&["sinks", &sink]);
            s.comment(format!(
                "Writes to the topic of Flume's Kafka channel `{}`, which had no sink.",
                c.name
            ));
            s.set("type", Value::str("kafka"));
            s.set("channel", Value::str(name));
            s.set("bootstrap_servers", Value::str(&bootstrap));
            s.set("topic", Value::str(&topic));
            ctx.drained
                .entry(name.to_owned())
                .or_default()
                .push(sink.clone());
            extra.push(s);
            if !props.is_empty() {
                let mut t = Table::new(&["sinks", &sink, "kafka"]);
                for (k, v) in props {
                    t.set(&k, v);
                }
                extra.push(t);
            }
        }
        (false, false) => {
            table.set("type", Value::str("memory"));
            ctx.note(c, "", "no source writes to this Kafka channel and no sink reads it: written as an unused memory channel");
        }
    }
}
