//! The consumer lag Sluice reports is the lag Kafka's own consumer-group
//! tool (`kafka-consumer-groups --describe`) reports for the group.
//!
//! A first run of a kafka source → memory channel → null sink pipeline reads
//! 200 records per partition of a 3-partition topic and commits them, then
//! stops. More records are produced (a different number per partition), and
//! a second run reads them all but commits nothing (`commit_interval` of an
//! hour), so the group's lag stays where the broker sees it: the new records.
//! While it runs, the test compares Sluice's per-partition gauges
//! (`source.<n>.lag.<topic>.<partition>`) and their sum (`source.<n>.lag`)
//! with the LAG column of the tool, run from the broker's own jars
//! (`scripts/kafka.sh tool`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::broker::kafka_script;
use sluice_tests::stream::{Deadline, committed_offsets};
use sluice_tests::{create_topic, services, unique};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;
const FIRST: i64 = 200;
/// Records produced after the first run, per partition.
const MORE: [i64; 3] = [50, 120, 7];

async fn produce(bootstrap: &str, topic: &str, per_partition: &[i64]) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let mut pending = Vec::new();
    for (p, &n) in per_partition.iter().enumerate() {
        for i in 0..n {
            let body = format!("p{p}-{i}");
            let record = FutureRecord::<(), _>::to(topic)
                .partition(p as i32)
                .payload(&body);
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn config(
    bootstrap: &str,
    group: &str,
    topic: &str,
    commit_interval: &str,
) -> Result<sluice::config::Config> {
    let text = format!(
        r#"
[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topics = ["{topic}"]
commit_interval = "{commit_interval}"
channels = ["out"]

[channels.out]
type = "memory"

[sinks.out]
type = "null"
channel = "out"
"#
    );
    sluice::config::parse(std::path::Path::new("consumer_lag.toml"), &text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The LAG column of `kafka-consumer-groups --describe`, per partition of
/// `topic` (`None` where the tool prints `-`).
fn tool_lag(bootstrap: &str, group: &str, topic: &str) -> Result<BTreeMap<i32, Option<i64>>> {
    let out = Command::new("bash")
        .arg(kafka_script())
        .args([
            "tool",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ])
        .output()
        .context("running kafka-consumer-groups")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "kafka-consumer-groups failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID ...
    let mut lag = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 6 && cols[0] == group && cols[1] == topic {
            let partition: i32 = cols[2].parse().context("PARTITION column")?;
            lag.insert(partition, cols[5].parse().ok());
        }
    }
    Ok(lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_matches_the_consumer_group_tool() -> Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let bootstrap = services.kafka.clone();
    let topic = unique("lag");
    let group = unique("lag");
    create_topic(&bootstrap, &topic, PARTITIONS).await?;
    produce(&bootstrap, &topic, &[FIRST; 3]).await?;

    // First run: read and commit everything.
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config(&bootstrap, &group, &topic, "100ms")?,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    let mut wait = Deadline::new("the first run to commit", Duration::from_secs(60));
    loop {
        let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
        // A failed query (the group's coordinator still loading) is "not yet".
        let committed =
            tokio::task::spawn_blocking(move || committed_offsets(&b, &g, &t, PARTITIONS))
                .await?
                .unwrap_or_default();
        if committed.len() == PARTITIONS as usize && committed.values().all(|o| *o == Some(FIRST)) {
            break;
        }
        wait.tick(Duration::from_millis(200)).await?;
    }
    shutdown.cancel();
    run.await??;

    // Second run: everything new is read, nothing is committed.
    produce(&bootstrap, &topic, &MORE).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config(&bootstrap, &group, &topic, "1h")?,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    let expected: BTreeMap<i32, Option<i64>> = (0..PARTITIONS)
        .map(|p| (p, Some(MORE[p as usize])))
        .collect();
    let sluice_lag = |m: &Metrics| -> BTreeMap<i32, Option<i64>> {
        (0..PARTITIONS)
            .map(|p| {
                (
                    p,
                    Some(m.gauge_value(&format!("source.in.lag.{topic}.{p}"))),
                )
            })
            .collect()
    };
    let mut wait = Deadline::new("Sluice to read the new records", Duration::from_secs(60));
    while metrics.get("source.in.events") < MORE.iter().sum::<i64>() as u64
        || sluice_lag(&metrics) != expected
    {
        wait.tick(Duration::from_millis(200)).await?;
    }
    let tool = {
        let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || tool_lag(&b, &g, &t)).await??
    };
    let reported = sluice_lag(&metrics);
    let total = metrics.gauge_value("source.in.lag");
    println!("consumer_lag: sluice {reported:?} (total {total}), kafka-consumer-groups {tool:?}");
    shutdown.cancel();
    run.await??;

    assert_eq!(tool, expected, "the broker's view of the group's lag");
    assert_eq!(
        reported, tool,
        "Sluice's lag per partition against the tool's"
    );
    assert_eq!(total, MORE.iter().sum::<i64>(), "Sluice's total lag");
    Ok(())
}
