//! One Kafka source feeding four sinks of different guarantees, killed
//! (`kill -9`) again and again mid-stream, on Apache Kafka and moto: the
//! shape of `conf/quickstart.toml`, where data used to be lost.
//!
//! The source decodes `id|n` lines (the `delimited` plugin) and feeds
//!
//! - `lake`: an exactly-once object-store sink on S3;
//! - `copy`: an at-least-once object-store sink in a local directory;
//! - `out`: an at-least-once Kafka sink;
//! - `rejects`: the dead-letter sink (a local directory), which receives the
//!   malformed lines (one in [`MALFORMED_EVERY`]).
//!
//! After [`KILLS`] kills, each 1–4 s after the agent served again (completed
//! a file) and while the producer still sends, and
//! a final clean stop (SIGTERM, as Kubernetes sends): every well-formed id is in the lake exactly
//! once and at least once in `copy` and `out`; every malformed one is in
//! `rejects` at least once; and no in-progress file is left in either local
//! directory.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::TryStreamExt;
use object_store::ObjectStore;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, TopicPartitionList};
use sluice_tests::stream::{Record, produce_paced};
use sluice_tests::{create_topic, files_under, plugin, s3, services, unique};

const EVENTS: usize = 40_000;
const PARTITIONS: i32 = 4;
/// How long the events take to produce; a kill cycle takes ~8–14 s (the
/// group waits for the killed member's session to time out).
const STREAM: Duration = Duration::from_secs(100);
const KILLS: usize = 5;
/// Every this many ids, one line is malformed (no `n` field).
const MALFORMED_EVERY: usize = 50;
const AGENT_ENV: &str = "SLUICE_TEST_CO_FED_AGENT_CONFIG";

/// Not a test of its own: the body of an agent process.
#[test]
fn agent_process() {
    sluice_tests::run_agent_if_asked(AGENT_ENV);
}

fn malformed(i: usize) -> bool {
    i % MALFORMED_EVERY == 7
}

struct Setup<'a> {
    kafka: &'a str,
    s3: &'a str,
    bucket: &'a str,
    topic: &'a str,
    out_topic: &'a str,
    group: &'a str,
    prefix: &'a str,
    dir: &'a Path,
}

fn config_text(s: &Setup<'_>) -> String {
    let decoder = plugin("delimited");
    let plugin_dir = decoder.parent().expect("plugin dir");
    let dir = s.dir.display();
    format!(
        r#"
data_dir = "{dir}/state"

[teams.t]
plugin_dir = "{plugin_dir}"
on_failure = "dead-letter"

[sources.tx]
type = "kafka"
team = "t"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 500
batch_max_wait = "100ms"
kafka = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000 }}
decoder = "decode"
channels = ["lake", "copy", "out"]
dead_letter = "rejects"

[plugins.decode]
type = "decoder"
team = "t"
path = "delimited.wasm"
config = {{ delimiter = "|", fields = [ {{ name = "id", type = "string" }}, {{ name = "n", type = "int" }} ] }}

[channels.lake]
type = "memory"
[channels.copy]
type = "memory"
[channels.out]
type = "memory"
[channels.rejects]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
exactly_once = true
url = "s3://{bucket}/{prefix}"
path = "%{{topic}}"
format = "jsonl"
roll_interval = "1s"
s3 = {{ endpoint = "{s3}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}

[sinks.copy]
type = "object_store"
channel = "copy"
url = "file://{dir}/copy"
path = "%{{topic}}"
format = "jsonl"
roll_interval = "1500ms"

[sinks.out]
type = "kafka"
channel = "out"
bootstrap_servers = "{kafka}"
topic = "{out_topic}"

[sinks.rejects]
type = "object_store"
channel = "rejects"
url = "file://{dir}/rejects"
path = "%{{topic}}"
format = "jsonl"
roll_interval = "1s"
"#,
        plugin_dir = plugin_dir.display(),
        kafka = s.kafka,
        group = s.group,
        topic = s.topic,
        out_topic = s.out_topic,
        bucket = s.bucket,
        prefix = s.prefix,
        s3 = s.s3,
    )
}

/// Produces the lines, paced over [`STREAM`].
async fn produce(bootstrap: &str, topic: &str) -> Result<()> {
    produce_paced(bootstrap, topic, EVENTS, STREAM, 500, |i| Record {
        key: Some(i.to_string()),
        payload: if malformed(i) {
            format!("id-{i:07}")
        } else {
            format!("id-{i:07}|{i}")
        },
        ..Record::default()
    })
    .await?;
    Ok(())
}

/// Visible (complete) files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    files_under(dir)
        .iter()
        .filter(|path| !path.to_string_lossy().ends_with(".inprogress"))
        .count()
}

/// The id of each line of `text` that holds one (its first `id-NNNNNNN`).
fn ids_in(text: &[u8]) -> Vec<usize> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let at = line.windows(3).position(|w| w == b"id-")?;
            let digits = line.get(at + 3..at + 10)?;
            std::str::from_utf8(digits).ok()?.parse().ok()
        })
        .collect()
}

/// Ids counted per visible file; a file, once visible, never changes, so
/// each is read once.
#[derive(Default)]
struct Tally {
    read: HashSet<String>,
    count: HashMap<usize, usize>,
}

impl Tally {
    fn add(&mut self, name: String, bytes: &[u8]) {
        if self.read.insert(name) {
            for id in ids_in(bytes) {
                *self.count.entry(id).or_default() += 1;
            }
        }
    }

    /// Ids of `wanted` not seen yet.
    fn missing(&self, wanted: &[usize]) -> usize {
        wanted
            .iter()
            .filter(|i| !self.count.contains_key(i))
            .count()
    }

    fn duplicated(&self) -> usize {
        self.count.values().map(|&n| n - 1).sum()
    }

    /// Reads the visible files under `dir`; returns in-progress ones.
    fn scan_dir(&mut self, dir: &Path) -> Result<Vec<String>> {
        let mut in_progress = Vec::new();
        for path in files_under(dir) {
            let name = path.display().to_string();
            if name.ends_with(".inprogress") {
                in_progress.push(name);
            } else if !self.read.contains(&name) {
                let bytes = std::fs::read(&path)?;
                self.add(name, &bytes);
            }
        }
        Ok(in_progress)
    }

    /// Reads the visible objects under `prefix` (outside `_sluice/`).
    async fn scan_store(&mut self, store: &dyn ObjectStore, prefix: &str) -> Result<()> {
        let p = object_store::path::Path::from(prefix);
        let metas: Vec<_> = store.list(Some(&p)).try_collect().await?;
        for meta in metas {
            let key = meta.location.to_string();
            if key.contains("/_sluice/") || self.read.contains(&key) {
                continue;
            }
            let bytes = store.get(&meta.location).await?.bytes().await?;
            self.add(key, &bytes);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_fed_sinks_lose_nothing_across_kills() -> Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("cofed");
    let out_topic = unique("cofed-out");
    let group = unique("cofed");
    let prefix = unique("cofed");
    create_topic(&services.kafka, &topic, PARTITIONS).await?;
    create_topic(&services.kafka, &out_topic, PARTITIONS).await?;
    let dir = tempfile::tempdir()?;
    let setup = Setup {
        kafka: &services.kafka,
        s3: &services.s3,
        bucket: &services.bucket,
        topic: &topic,
        out_topic: &out_topic,
        group: &group,
        prefix: &prefix,
        dir: dir.path(),
    };
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_text(&setup))?;
    let log = dir.path().join("agent.log");
    let spawn = || sluice_tests::spawn_agent(AGENT_ENV, &config, &log);
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };

    let producer = tokio::spawn({
        let (bootstrap, topic) = (services.kafka.clone(), topic.clone());
        async move { produce(&bootstrap, &topic).await }
    });
    let copy_dir = dir.path().join("copy");
    let mut agent = spawn()?;
    // A fixed pseudo-random schedule: each kill 1–4 s after the agent (re)started
    // serving, i.e. completed a file of its own.
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    for kill in 0..KILLS {
        let before = count_files(&copy_dir);
        let serving = Instant::now() + Duration::from_secs(60);
        while count_files(&copy_dir) <= before {
            if let Some(status) = agent.try_wait()? {
                bail!("the agent stopped by itself ({status}); log:\n{}", tail());
            }
            ensure!(
                Instant::now() < serving,
                "the agent completed no file within 60 s of its start; log:\n{}",
                tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(1000 + rng % 3000)).await;
        ensure!(
            !producer.is_finished(),
            "kill {kill} came after the last event was produced: not mid-stream"
        );
        if let Some(status) = agent.try_wait()? {
            bail!("the agent stopped by itself ({status}); log:\n{}", tail());
        }
        agent.kill().context("SIGKILL")?;
        agent.wait()?;
        agent = spawn()?;
    }
    producer.await??;

    let well_formed: Vec<usize> = (0..EVENTS).filter(|&i| !malformed(i)).collect();
    let rejected: Vec<usize> = (0..EVENTS).filter(|&i| malformed(i)).collect();
    let store = s3(&services)?;
    let (mut lake, mut copy, mut out, mut rejects) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("group.id", unique("cofed-check"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&out_topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out_seen = 0usize;

    // Everything arrives everywhere (bounded), then the agent stops cleanly.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        lake.scan_store(&store, &prefix).await?;
        copy.scan_dir(&dir.path().join("copy"))?;
        rejects.scan_dir(&dir.path().join("rejects"))?;
        let until = Instant::now() + Duration::from_millis(500);
        while let Some(m) = consumer.poll(until.saturating_duration_since(Instant::now())) {
            let m = m?;
            out_seen += 1;
            out.add(
                format!("{}/{}", m.partition(), m.offset()),
                m.payload().unwrap_or(&[]),
            );
        }
        let missing = [
            lake.missing(&well_formed),
            copy.missing(&well_formed),
            out.missing(&well_formed),
            rejects.missing(&rejected),
        ];
        if missing == [0; 4] {
            break;
        }
        if let Some(status) = agent.try_wait()? {
            bail!("the agent stopped by itself ({status}); log:\n{}", tail());
        }
        if Instant::now() > deadline {
            let _ = agent.kill();
            bail!(
                "ids still missing (lake, copy, out, rejects): {missing:?}; log:\n{}",
                tail()
            );
        }
    }
    let status = sluice_tests::secure::terminate(&mut agent, Duration::from_secs(60))?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "the agent did not stop cleanly ({status:?}); log:\n{}",
        tail()
    );

    lake.scan_store(&store, &prefix).await?;
    let copy_left = copy.scan_dir(&dir.path().join("copy"))?;
    let rejects_left = rejects.scan_dir(&dir.path().join("rejects"))?;
    eprintln!(
        "co_fed_sinks: {KILLS} kills; lake {} ids, {} duplicated; copy {} duplicated; \
         out {out_seen} records, {} duplicated; rejects {} duplicated",
        lake.count.len(),
        lake.duplicated(),
        copy.duplicated(),
        out.duplicated(),
        rejects.duplicated()
    );
    assert_eq!(lake.missing(&well_formed), 0, "ids lost in the lake");
    assert_eq!(lake.duplicated(), 0, "ids duplicated in the lake");
    assert_eq!(
        lake.count.len(),
        well_formed.len(),
        "the lake holds only well-formed ids"
    );
    assert_eq!(copy.missing(&well_formed), 0, "ids lost in the copy");
    assert_eq!(out.missing(&well_formed), 0, "ids lost in the Kafka sink");
    assert_eq!(rejects.missing(&rejected), 0, "rejects lost");
    assert!(
        copy_left.is_empty() && rejects_left.is_empty(),
        "in-progress files left after the clean stop: {copy_left:?} {rejects_left:?}"
    );
    Ok(())
}
