//! Bounded runs of the `kafka` source on the reference broker (Apache
//! Kafka): a batch job over fixed offset ranges, as LinkedIn's Camus or
//! DataWorks' Kafka reader (`beginOffset`/`endOffset`) run them.
//!
//! - `offset_ranges_land_exactly_once_and_a_rerun_writes_nothing`: records
//!   in a 3-partition topic; `sluice run` (this test binary re-executed as
//!   the `sluice` command line, see [`agent_process`]) with a bounded source
//!   given start and end offsets per partition, into an `exactly_once =
//!   true` object-store sink on a real S3 server (moto) through a memory
//!   channel. The run exits 0 on its own and prints its summary; every
//!   record of the ranges is in the lake exactly once and none outside
//!   them. The same run again exits 0 and writes no object: the sink's
//!   commit log holds the whole range.
//! - `time_ranges_follow_record_timestamps`: the source alone, in process,
//!   with a start and an end time, against the broker's offset lookup by
//!   timestamp (which librdkafka's mock cluster does not implement).
//!
//! Run with the services up: `scripts/services.sh start; source
//! target/services.env; cargo test -p sluice-tests --test bounded_run`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_tests::{Services, create_topic, read_all, s3, services, unique};

const AGENT_ENV: &str = "SLUICE_TEST_BOUNDED_RUN_CONFIG";
const PARTITIONS: i32 = 3;
/// Records per partition.
const PER_PARTITION: usize = 200;
/// How long one `sluice run` may take.
const RUN_WITHIN: Duration = Duration::from_secs(180);

/// Not a test of its own: `sluice run CONFIG --no-status` in a child
/// process (this test binary re-executed), exiting with its status.
#[test]
fn agent_process() {
    sluice_tests::secure::run_cli_agent_if_asked(AGENT_ENV, "info,librdkafka=warn");
}

/// What one `sluice run` printed and how it ended.
struct RunOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `sluice run <config>` to its end (killed after [`RUN_WITHIN`]).
async fn sluice_run(config: &std::path::Path) -> Result<RunOutput> {
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "agent_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AGENT_ENV, config)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_WITHIN, child)
        .await
        .context("`sluice run` did not end on its own")?
        .context("running `sluice run`")?;
    Ok(RunOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Produces `PER_PARTITION` records to each partition, keys `id-<p>-<i>`;
/// returns where each key landed, from the delivery reports.
async fn produce(bootstrap: &str, topic: &str) -> Result<HashMap<String, (i32, i64)>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()?;
    let mut pending = Vec::new();
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            let key = format!("id-{p}-{i}");
            let record = FutureRecord::to(topic).partition(p).key(&key).payload(&key);
            pending.push((
                key.clone(),
                producer.send_result(record).map_err(|(e, _)| e)?,
            ));
        }
    }
    let mut placed = HashMap::new();
    for (key, delivery) in pending {
        let d = delivery.await?.map_err(|(e, _)| e)?;
        placed.insert(key, (d.partition, d.offset));
    }
    Ok(placed)
}

/// `{ "<topic>:0" = a, "<topic>:1" = b, ... }`.
fn table(topic: &str, offsets: &[i64]) -> String {
    let entries: Vec<String> = offsets
        .iter()
        .enumerate()
        .map(|(p, o)| format!("\"{topic}:{p}\" = {o}"))
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

fn config_text(
    s: &Services,
    dir: &std::path::Path,
    topic: &str,
    group: &str,
    prefix: &str,
    start: &[i64],
    end: &[i64],
) -> String {
    format!(
        r#"
data_dir = "{data}"

[sources.tx]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 50
channels = ["lake"]
[sources.tx.bounded]
start = {start}
end = {end}

[channels.lake]
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
"#,
        data = dir.join("data").display(),
        kafka = s.kafka,
        start = table(topic, start),
        end = table(topic, end),
        bucket = s.bucket,
        s3 = s.s3,
    )
}

/// The group's committed offset of each partition (-1: none).
fn committed(bootstrap: &str, group: &str, topic: &str) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok((0..PARTITIONS)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_ranges_land_exactly_once_and_a_rerun_writes_nothing() -> Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("bounded");
    let group = unique("bounded-run");
    let prefix = unique("bounded-lake");
    create_topic(&services.kafka, &topic, PARTITIONS).await?;
    let placed = produce(&services.kafka, &topic).await?;
    // Partition 0 from its middle, partition 1 whole, partition 2 a single
    // record; nothing before a start or from an end on may land.
    let (start, end) = ([10, 0, 50], [150, PER_PARTITION as i64, 51]);
    let expected: BTreeSet<&str> = placed
        .iter()
        .filter(|(_, (p, o))| (start[*p as usize]..end[*p as usize]).contains(o))
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(expected.len(), 140 + PER_PARTITION + 1);

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("bounded.toml");
    std::fs::write(
        &config,
        config_text(&services, dir.path(), &topic, &group, &prefix, &start, &end),
    )?;
    let run = sluice_run(&config).await?;
    ensure!(
        run.code == Some(0),
        "`sluice run` exited {:?}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let n = expected.len();
    for line in [
        format!("run ended: {n} events read, {n} written, "),
        format!("bounded source `tx`: {topic}:0 offsets 10..150 (140 events)"),
        format!("bounded source `tx`: {topic}:1 offsets 0..200 (200 events)"),
        format!("bounded source `tx`: {topic}:2 offsets 50..51 (1 events)"),
    ] {
        ensure!(
            run.stdout.contains(&line),
            "no `{line}` in the summary:\n{}",
            run.stdout
        );
    }
    ensure!(run.stdout.contains(" 0 dead-lettered"), "{}", run.stdout);

    // Every record of the ranges exactly once, none outside them.
    let store = s3(&services)?;
    let objects = read_all(&store, &prefix).await?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (path, bytes) in objects.iter().filter(|(p, _)| !p.contains("/_sluice/")) {
        for line in std::str::from_utf8(bytes)?.lines() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let key = record["key"]
                .as_str()
                .with_context(|| format!("{path}: no key"))?;
            let (p, o) = (record["partition"].as_i64(), record["offset"].as_i64());
            ensure!(
                placed.get(key).map(|&(pp, oo)| (Some(pp as i64), Some(oo))) == Some((p, o)),
                "{path}: {key} at {p:?}/{o:?}, produced at {:?}",
                placed.get(key)
            );
            *seen.entry(key.to_owned()).or_default() += 1;
        }
    }
    let outside: Vec<&String> = seen
        .keys()
        .filter(|k| !expected.contains(k.as_str()))
        .collect();
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let missing = expected.iter().filter(|k| !seen.contains_key(**k)).count();
    ensure!(
        outside.is_empty(),
        "records outside the ranges: {outside:?}"
    );
    ensure!(twice.is_empty(), "records written twice: {twice:?}");
    ensure!(missing == 0, "{missing} records of the ranges missing");
    assert_eq!(committed(&services.kafka, &group, &topic)?, end.to_vec());

    // The same run again: it reads the ranges, the sink skips them all.
    let before: BTreeSet<String> = objects.into_iter().map(|(p, _)| p).collect();
    let again = sluice_run(&config).await?;
    ensure!(
        again.code == Some(0),
        "the rerun exited {:?}\nstdout:\n{}\nstderr:\n{}",
        again.code,
        again.stdout,
        again.stderr
    );
    ensure!(
        again.stdout.contains(&format!(
            "run ended: {n} events read, 0 written, 0 files completed"
        )),
        "rerun summary:\n{}",
        again.stdout
    );
    let after: BTreeSet<String> = read_all(&store, &prefix)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let new: Vec<&String> = after.difference(&before).collect();
    ensure!(new.is_empty(), "the rerun wrote {new:?}");
    ensure!(after == before, "the rerun removed objects");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_follow_record_timestamps() -> Result<()> {
    use sluice::delivery::SourceLink;
    use sluice::sources::SourceContext;
    use sluice::sources::kafka::KafkaSourceConfig;

    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("bounded-time");
    create_topic(&services.kafka, &topic, PARTITIONS).await?;
    // Record i carries the time base + i s; the run reads 30 s of them.
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .create()?;
    for i in 0..90i64 {
        let key = format!("t{i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition((i % PARTITIONS as i64) as i32)
                    .key(&key)
                    .payload(&key)
                    .timestamp(base + i * 1000),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let rfc3339 = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let config: KafkaSourceConfig = toml::from_str(&format!(
        r#"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
[bounded]
start = "{start}"
end = "{end}"
"#,
        kafka = services.kafka,
        group = unique("bounded-time"),
        start = rfc3339(base + 30_000),
        end = rfc3339(base + 60_000),
    ))?;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = sluice::metrics::Metrics::new();
    let ctx = SourceContext {
        name: "times".into(),
        metrics: metrics.clone(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        embedded_bootstrap: None,
        state_dir: std::env::temp_dir().join("sluice-bounded-time"),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let source = tokio::spawn(sluice::sources::kafka::run(
        config,
        tx,
        ctx,
        SourceLink::new("times"),
    ));
    let mut keys = BTreeSet::new();
    tokio::time::timeout(RUN_WITHIN, async {
        while let Some(batch) = rx.recv().await {
            keys.extend(
                batch
                    .events
                    .iter()
                    .map(|e| String::from_utf8_lossy(e.key().unwrap_or_default()).into_owned()),
            );
            batch.release();
        }
    })
    .await
    .context("the bounded source did not end")?;
    tokio::time::timeout(RUN_WITHIN, source)
        .await
        .context("the bounded source did not end")??
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let expected: BTreeSet<String> = (30..60).map(|i| format!("t{i}")).collect();
    ensure!(keys == expected, "read {keys:?}");
    let ranges = metrics.ranges().all();
    ensure!(ranges.len() == PARTITIONS as usize, "{ranges:?}");
    for r in &ranges {
        // Partition p holds records p, p + 3, ...: offsets 10..20 in range.
        ensure!(
            (r.start, r.end, r.events, r.complete) == (10, 20, 10, true),
            "{r:?}"
        );
    }
    Ok(())
}
