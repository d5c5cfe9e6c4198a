//! Live reload of the configuration under a steady stream, on Apache Kafka.
//!
//! Three pipelines run: `a` (topic A, the `mask` plugin, into the
//! exactly-once `lake`), `b` (topic B into `bsink`) and `c` (topic C into
//! `csink`). While producers send, the configuration file is replaced:
//!
//! 1. by a file with a syntax error, then by one whose plugin cannot start
//!    in its team's new memory limit: both refused, everything runs on;
//! 2. by one that changes `lake`'s roll settings, adds a sink `copy` fed by
//!    `a`, removes source `b` (with its channel and sink), and changes
//!    `mask`'s config and its team's limits;
//! 3. by one that changes only the team's limits again.
//!
//! Then: every id of A is in `lake` exactly once and every id of C in
//! `csink` exactly once; `bsink` holds no id twice; `copy` holds only events
//! masked by the new config; pipeline `c` was never restarted, and the third
//! reload restarted nothing at all (only `mask` got a new version).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::stream::{Producer, parse_id, until};
use sluice_tests::{create_topic, files_under, plugin, services, unique};
use tokio_util::sync::CancellationToken;

const A_EVENTS: usize = 6_000;
const B_EVENTS: usize = 2_000;
const C_EVENTS: usize = 3_000;

struct Names {
    kafka: String,
    topic_a: String,
    topic_b: String,
    topic_c: String,
    group: String,
}

/// The configuration: `version` 1, 2 or 3 (see the module docs); version
/// 0 is version 1 with a memory limit no plugin can start in.
fn config(n: &Names, dir: &Path, version: u32) -> String {
    let memory = if version == 0 { "64KiB" } else { "64MiB" };
    let version = version.max(1);
    let plugin_dir = plugin("mask").parent().unwrap().display().to_string();
    let out = dir.display();
    let time_budget = ["", "2s", "3s", "4s"][version as usize];
    let keep_last = if version == 1 { 4 } else { 2 };
    let roll = if version == 1 { "2s" } else { "1s" };
    let mut text = format!(
        r#"
data_dir = "{out}/state"

[teams.t]
plugin_dir = "{plugin_dir}"
time_budget = "{time_budget}"
memory_limit = "{memory}"
on_failure = "dead-letter"

[plugins.mask]
type = "interceptor"
team = "t"
path = "mask.wasm"
config = {{ patterns = ['[0-9]{{8}}'], keep_last = {keep_last} }}

[sources.a]
type = "kafka"
team = "t"
bootstrap_servers = "{kafka}"
group_id = "{group}-a"
topics = ["{ta}"]
batch_max_wait = "50ms"
interceptors = ["mask"]
channels = [{a_channels}]
dead_letter = "dlq"
parallelism = 1

[sources.c]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}-c"
topics = ["{tc}"]
batch_max_wait = "50ms"
channels = ["cch"]

[channels.lake]
type = "memory"

[channels.dlq]
type = "memory"

[channels.cch]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "file://{out}/lake"
path = "%{{topic}}"
format = "jsonl"
exactly_once = true
roll_interval = "{roll}"

[sinks.dlq]
type = "object_store"
channel = "dlq"
url = "file://{out}/dlq"
path = "%{{topic}}"
format = "jsonl"
roll_interval = "1s"

[sinks.csink]
type = "object_store"
channel = "cch"
url = "file://{out}/csink"
path = "%{{topic}}"
format = "jsonl"
exactly_once = true
roll_interval = "1s"
"#,
        kafka = n.kafka,
        group = n.group,
        ta = n.topic_a,
        tc = n.topic_c,
        a_channels = if version == 1 {
            r#""lake""#
        } else {
            r#""lake", "copy""#
        },
    );
    if version == 1 {
        text.push_str(&format!(
            r#"
[sources.b]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}-b"
topics = ["{tb}"]
batch_max_wait = "50ms"
channels = ["bch"]

[channels.bch]
type = "memory"

[sinks.bsink]
type = "object_store"
channel = "bch"
url = "file://{out}/bsink"
path = "%{{topic}}"
format = "jsonl"
exactly_once = true
roll_interval = "1s"
"#,
            kafka = n.kafka,
            group = n.group,
            tb = n.topic_b,
        ));
    } else {
        text.push_str(&format!(
            r#"
[channels.copy]
type = "memory"

[sinks.copy]
type = "object_store"
channel = "copy"
url = "file://{out}/copy"
path = "%{{topic}}"
format = "jsonl"
roll_interval = "1s"
"#
        ));
    }
    text
}

/// Replaces the file as a deployment tool would: write beside, rename over.
fn deploy(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Every record (key, value) in the visible `jsonl` files under `dir`.
fn records(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in files_under(dir) {
        // Bookkeeping (`_sluice/`) and in-progress (hidden) files are not output.
        let hidden = path.strip_prefix(dir).is_ok_and(|rel| {
            rel.iter()
                .any(|c| c.to_string_lossy().starts_with(['_', '.']))
        });
        if hidden {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push((
                v["key"].as_str().unwrap_or_default().to_owned(),
                v["value"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

/// How many times each id appears.
fn counts(records: &[(String, String)]) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for (key, _) in records {
        *counts.entry(parse_id(key).unwrap()).or_default() += 1;
    }
    counts
}

/// The `generation` of plugin `name` in the status file.
fn generation(dir: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join("state/status/plugins.json")).unwrap_or_default();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    rows.iter()
        .find(|r| r["plugin"] == name)
        .and_then(|r| r["generation"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reload_changes_only_what_changed_and_loses_nothing() -> Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let n = Names {
        kafka: services.kafka.clone(),
        topic_a: unique("reload-a"),
        topic_b: unique("reload-b"),
        topic_c: unique("reload-c"),
        group: unique("reload"),
    };
    create_topic(&n.kafka, &n.topic_a, 3).await?;
    create_topic(&n.kafka, &n.topic_b, 1).await?;
    create_topic(&n.kafka, &n.topic_c, 2).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sluice.toml");
    deploy(&file, &config(&n, dir.path(), 1));

    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let loaded = sluice::config::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = tokio::spawn(topology::run(
        loaded,
        RunOptions {
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            ..Default::default()
        },
    ));
    // Stop the agent whatever happens below.
    let _stop = shutdown.clone().drop_guard();

    let a = Producer::spawn(&n.kafka, &n.topic_a, A_EVENTS, 300, true)?;
    let b = Producer::spawn(&n.kafka, &n.topic_b, B_EVENTS, 100, true)?;
    let c = Producer::spawn(&n.kafka, &n.topic_c, C_EVENTS, 150, true)?;
    let m = metrics.clone();
    until("the lake's first files", Duration::from_secs(60), || {
        m.get("sink.lake.files_written") > 0 && m.get("sink.bsink.files_written") > 0
    })
    .await?;

    // 1. A broken file is refused; the pipelines run on.
    deploy(&file, "[sources.a\ntype = \"kafka\"\n");
    until("the refusal", Duration::from_secs(30), || {
        m.get("config.reloads_rejected") == 1
    })
    .await?;
    let read = m.get("source.a.events");
    until(
        "events read after the refusal",
        Duration::from_secs(30),
        || m.get("source.a.events") > read,
    )
    .await?;
    ensure!(
        m.get("config.reloads") == 0,
        "a refused file is not applied"
    );
    // A valid file whose plugin cannot start with its new settings is
    // refused before anything changes.
    deploy(&file, &config(&n, dir.path(), 0));
    until("the second refusal", Duration::from_secs(60), || {
        m.get("config.reloads_rejected") == 2
    })
    .await?;
    ensure!(
        generation(dir.path(), "mask") == 1,
        "the running mask version stays"
    );
    ensure!(m.get("config.reloads") == 0);

    // 2. The real change, mid-stream.
    ensure!(
        a.sent() < A_EVENTS && c.sent() < C_EVENTS,
        "the stream must still run"
    );
    deploy(&file, &config(&n, dir.path(), 2));
    until("the reload", Duration::from_secs(120), || {
        m.get("config.reloads") == 1
    })
    .await?;
    let pause = m.histogram("config.reload_seconds", sluice::metrics::FAST_BUCKETS);
    let first = pause.sum_seconds();
    let starts = |kind: &str, name: &str| m.get(&format!("{kind}.{name}.starts"));
    ensure!(
        generation(dir.path(), "mask") == 2,
        "mask reconfigured once"
    );

    // 3. Only the team's limits: a new version of its plugin, no restart.
    let before: BTreeMap<String, u64> = [
        "source.a",
        "source.c",
        "sink.lake",
        "sink.copy",
        "sink.csink",
        "sink.dlq",
    ]
    .iter()
    .map(|c| (c.to_string(), m.get(&format!("{c}.starts"))))
    .collect();
    deploy(&file, &config(&n, dir.path(), 3));
    until("the second reload", Duration::from_secs(60), || {
        m.get("config.reloads") == 2
    })
    .await?;
    ensure!(
        generation(dir.path(), "mask") == 3,
        "the team's new limits are a new version"
    );
    for (component, count) in &before {
        ensure!(
            m.get(&format!("{component}.starts")) == *count,
            "{component} restarted by a reload that changed only a team"
        );
    }

    eprintln!(
        "reload pauses: {:.3} s rebuilding lake, copy and a; {:.3} s swapping mask only",
        first,
        pause.sum_seconds() - first
    );
    a.finish().await?;
    c.finish().await?;
    let b_sent = b.sent();
    drop(b);
    let lake = dir.path().join("lake");
    let csink = dir.path().join("csink");
    until("every event in the lakes", Duration::from_secs(120), || {
        counts(&records(&lake)).len() == A_EVENTS && counts(&records(&csink)).len() == C_EVENTS
    })
    .await?;
    shutdown.cancel();
    run.await.context("run task")?.context("the run")?;

    // Zero lost, zero duplicated.
    for (name, dir, total) in [("lake", &lake, A_EVENTS), ("csink", &csink, C_EVENTS)] {
        let counts = counts(&records(dir));
        let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
        ensure!(twice.is_empty(), "{name}: ids written twice: {twice:?}");
        ensure!(
            counts.len() == total,
            "{name}: {} of {total} ids",
            counts.len()
        );
    }
    let b_counts = counts(&records(&dir.path().join("bsink")));
    ensure!(
        b_counts.values().all(|c| *c == 1),
        "bsink holds an id twice"
    );
    ensure!(
        !b_counts.is_empty() && b_counts.len() <= b_sent,
        "bsink: {}",
        b_counts.len()
    );

    // The new mask config: every event of `copy` (fed only after the
    // reload) is masked to its last 2 digits; the lake holds both.
    let masked = |value: &str, keep: usize| {
        value.len() == 11
            && value[3..11 - keep].bytes().all(|b| b == b'*')
            && value[11 - keep..].bytes().all(|b| b.is_ascii_digit())
    };
    let copy = records(&dir.path().join("copy"));
    ensure!(!copy.is_empty(), "the added sink received events");
    for (key, value) in &copy {
        ensure!(masked(value, 2), "copy: {key} → {value}: not the new mask");
    }
    let lake_records = records(&lake);
    ensure!(
        lake_records
            .iter()
            .all(|(_, v)| masked(v, 4) || masked(v, 2))
    );
    ensure!(
        lake_records.iter().any(|(_, v)| masked(v, 4))
            && lake_records.iter().any(|(_, v)| masked(v, 2))
    );

    // What was rebuilt, and what was not.
    for (kind, name) in [("source", "c"), ("channel", "cch"), ("sink", "csink")] {
        ensure!(
            starts(kind, name) == 1,
            "{kind} {name} restarted: {}",
            starts(kind, name)
        );
    }
    ensure!(
        starts("sink", "dlq") == 1 && starts("channel", "dlq") == 1,
        "the dead-letter sink restarted"
    );
    ensure!(
        starts("sink", "lake") == 2,
        "lake rebuilt once: {}",
        starts("sink", "lake")
    );
    ensure!(
        starts("source", "a") == 2,
        "a restarted once, with its exactly-once sink"
    );
    ensure!(starts("sink", "copy") == 1 && starts("source", "b") == 1);
    Ok(())
}
