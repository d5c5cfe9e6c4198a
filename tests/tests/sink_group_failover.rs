//! A failover sink group against real services: events from a 3-partition
//! topic on Apache Kafka go to a group of two S3 sinks on moto; the
//! primary reaches S3 through a [`FaultProxy`] that refuses every
//! connection for a while mid-stream (its S3 server is gone, then back).
//! While it is down the standby takes the batches; once it is back the
//! primary takes them again. Nothing is lost: every event is in the union
//! of the two sinks' output.

use std::time::Duration;

use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::faults::{FaultPlan, FaultProxy};
use sluice_tests::stream::{Deadline, Producer, Tally};
use sluice_tests::{create_topic, s3, services, unique};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 30_000;
const PER_SECOND: usize = 3_000;

fn sink(name: &str, endpoint: &str, bucket: &str, prefix: &str) -> String {
    format!(
        r#"
[sinks.{name}]
type = "object_store"
channel = "lake"
url = "s3://{bucket}/{prefix}/{name}"
path = "%{{topic}}"
format = "jsonl"
roll_size = "32KiB"
roll_interval = "1s"
retry_backoff_initial = "50ms"
retry_backoff_max = "500ms"
s3 = {{ endpoint = "{endpoint}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_group_loses_nothing_while_the_primary_store_is_down() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("failover");
    let group = unique("failover");
    let prefix = unique("failover");
    create_topic(&services.kafka, &topic, 3).await?;
    let proxy = FaultProxy::start(&services.s3, FaultPlan::none(7)).await?;
    let text = format!(
        r#"
[sources.in]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 500
batch_max_wait = "50ms"
channels = ["lake"]

[channels.lake]
type = "memory"
{primary}{standby}
[sink_groups.lake]
sinks = ["primary", "standby"]
processor = "failover"
priorities = {{ primary = 10, standby = 1 }}
max_backoff = "2s"
"#,
        kafka = services.kafka,
        primary = sink("primary", &proxy.url(), &services.bucket, &prefix),
        standby = sink("standby", &services.s3, &services.bucket, &prefix),
    );
    let config = sluice::config::parse(std::path::Path::new("failover.toml"), &text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    let producer = Producer::spawn(&services.kafka, &topic, EVENTS, PER_SECOND, true)?;
    let store = s3(&services)?;
    let (mut all, mut primary, mut standby) =
        (Tally::default(), Tally::default(), Tally::default());
    let (primary_prefix, standby_prefix) =
        (format!("{prefix}/primary"), format!("{prefix}/standby"));

    let mut wait = Deadline::new("a fifth of the events in S3", Duration::from_secs(120));
    loop {
        primary.refresh(&store, &primary_prefix).await?;
        if primary.summary(EVENTS).present >= EVENTS / 5 {
            break;
        }
        wait.tick(Duration::from_millis(200)).await?;
    }
    standby.refresh(&store, &standby_prefix).await?;
    assert_eq!(
        standby.summary(EVENTS).records,
        0,
        "the standby idles while the primary works"
    );

    // The primary's store goes away: the standby takes over.
    proxy.outage(true);
    let mut wait = Deadline::new("the standby to take over", Duration::from_secs(60));
    loop {
        standby.refresh(&store, &standby_prefix).await?;
        if standby.summary(EVENTS).present > 0 {
            break;
        }
        wait.tick(Duration::from_millis(200)).await?;
    }
    primary.refresh(&store, &primary_prefix).await?;
    let primary_before = primary.summary(EVENTS).records;
    // It comes back: the primary takes the batches again.
    proxy.outage(false);
    let mut wait = Deadline::new("the primary to write again", Duration::from_secs(60));
    loop {
        primary.refresh(&store, &primary_prefix).await?;
        if primary.summary(EVENTS).records > primary_before {
            break;
        }
        wait.tick(Duration::from_millis(200)).await?;
    }

    producer.finish().await?;
    let mut wait = Deadline::new("every event in S3", Duration::from_secs(180));
    loop {
        all.refresh(&store, &prefix).await?;
        if all.summary(EVENTS).lost == 0 {
            break;
        }
        wait.tick(Duration::from_millis(500)).await?;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(120), run).await???;
    primary.refresh(&store, &primary_prefix).await?;
    standby.refresh(&store, &standby_prefix).await?;
    let (p, s, a) = (
        primary.summary(EVENTS),
        standby.summary(EVENTS),
        all.summary(EVENTS),
    );
    eprintln!(
        "failover: primary {} records, standby {} records, {} of {EVENTS} present, {} lost, {} written twice",
        p.records, s.records, a.present, a.lost, a.redelivered
    );
    assert_eq!(a.lost, 0);
    assert!(s.records > 0 && p.records > primary_before);
    Ok(())
}
