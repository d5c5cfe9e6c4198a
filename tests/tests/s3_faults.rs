//! S3 faults mid-stream: 50 000 events with unique ids go from a 3-partition
//! topic on a real broker (Apache Kafka) through a Sluice pipeline (kafka source →
//! memory channel → object_store sink, small rolls) to a real S3 server
//! (moto) reached through [`FaultProxy`], which fails ~15% of the requests
//! (503 SlowDown, 500 InternalError, connection resets, responses lost after
//! the request was executed, stalls) and, once a third of the events are in
//! the output, refuses every connection for a few seconds (an outage).
//!
//! Asserts: zero lost; zero redelivered when the sink runs exactly-once
//! ([`sluice_tests::stream::EXACTLY_ONCE`]), otherwise duplicates are
//! reported; the faults really happened (proxy counters, and the sink's
//! `write_errors`/`retries` counters, which only move when a failure got past
//! the S3 client's own short retries); the group committed exactly the
//! produced end offsets. Prints one summary line.

use std::time::{Duration, Instant};

use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::faults::{FaultPlan, FaultProxy};
use sluice_tests::stream::{
    Deadline, LakeRoute, Producer, Tally, committed_offsets, exactly_once, lake_config,
};
use sluice_tests::{create_topic, s3, services, unique};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 50_000;
const PARTITIONS: i32 = 3;
/// Produced over about 12 s, so the faults hit a running stream.
const PER_SECOND: usize = 4_000;
/// Share of requests that fail (or stall), spread over every fault kind.
const FAULT_RATE: f64 = 0.15;
/// The decisions are a fixed sequence for a seed: with this one every fault
/// kind occurs within the first 117 requests (a run makes over 250), so the
/// "every kind injected" assertion cannot fail by chance.
const SEED: u64 = 0x5eed_0004;
/// How long the S3 outage lasts.
const OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_an_outage_lose_nothing() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let started = Instant::now();
    let topic = unique("s3-faults");
    let group = unique("s3-faults");
    let prefix = unique("s3-faults");
    create_topic(&services.kafka, &topic, PARTITIONS).await?;
    let proxy = FaultProxy::start(&services.s3, FaultPlan::mixed(SEED, FAULT_RATE)).await?;

    // Exactly-once costs about eight requests per file (multipart upload,
    // staging intent, commit record) where at-least-once sends one PUT:
    // fewer, larger files keep the run short.
    let (roll_size, roll_interval) = if exactly_once() {
        ("128KiB", "3s")
    } else {
        ("32KiB", "1s")
    };
    let config_text = lake_config(
        &LakeRoute {
            kafka: &services.kafka,
            group: &group,
            topic: &topic,
            s3: &proxy.url(),
            bucket: &services.bucket,
            prefix: &prefix,
        },
        &format!(
            "roll_size = \"{roll_size}\"\nroll_interval = \"{roll_interval}\"\n\
             retry_backoff_initial = \"50ms\"\nretry_backoff_max = \"1s\""
        ),
    );
    let config =
        sluice::config::parse(std::path::Path::new("s3_faults.toml"), &config_text, |_| {
            None
        })
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

    // The output is read straight from moto, not through the proxy.
    let store = s3(&services)?;
    let mut tally = Tally::default();

    // Outage once a third of the events are out.
    let mut wait = Deadline::new("a third of the events in S3", Duration::from_secs(120));
    loop {
        tally.refresh(&store, &prefix).await?;
        if tally.summary(EVENTS).present >= EVENTS / 3 {
            break;
        }
        wait.tick(Duration::from_millis(200)).await?;
    }
    let errors_before = metrics.get("sink.lake.write_errors");
    let produced_at_outage = producer.sent();
    proxy.outage(true);
    // The outage window itself (not a synchronisation): S3 is down this long.
    tokio::time::sleep(OUTAGE).await;
    let errors_in_outage = metrics.get("sink.lake.write_errors") - errors_before;
    proxy.outage(false);
    let present_after_outage = tally.summary(EVENTS).present;
    let outage_ended = Instant::now();
    let mut wait = Deadline::new(
        "output to progress after the outage",
        Duration::from_secs(60),
    );
    loop {
        tally.refresh(&store, &prefix).await?;
        if tally.summary(EVENTS).present > present_after_outage {
            break;
        }
        wait.tick(Duration::from_millis(100)).await?;
    }
    let recovery = outage_ended.elapsed();

    // Everything out, then a graceful stop.
    let produced = producer.finish().await?;
    let mut wait = Deadline::new("every event in S3", Duration::from_secs(240));
    let outcome = loop {
        tally.refresh(&store, &prefix).await?;
        if tally.summary(EVENTS).lost == 0 {
            break Ok(());
        }
        if let Err(e) = wait.tick(Duration::from_millis(500)).await {
            break Err(e);
        }
    };
    shutdown.cancel();
    let final_metrics = tokio::time::timeout(Duration::from_secs(120), run).await???;
    let faults = proxy.counts();
    drop(proxy);

    let mut tally = Tally::default();
    tally.refresh(&store, &prefix).await?;
    let s = tally.summary(EVENTS);
    let retries = final_metrics.get("sink.lake.retries");
    let write_errors = final_metrics.get("sink.lake.write_errors");
    println!(
        "s3_faults: events={EVENTS} objects={} records={} lost={} redelivered={} reproduced={} exactly_once={} \
         faults[{faults}] sink[write_errors={write_errors} retries={retries} write_errors_in_outage={errors_in_outage}] \
         outage={OUTAGE:?} at_produced={produced_at_outage} recovery_after_outage={recovery:.1?} elapsed={:.1?}",
        s.objects,
        s.records,
        s.lost,
        s.redelivered,
        s.reproduced,
        exactly_once(),
        started.elapsed(),
    );

    assert_eq!(produced.acked, EVENTS);
    assert_eq!(
        s.lost,
        0,
        "{} events lost, e.g. {:?} ({outcome:?})",
        s.lost,
        tally.some_lost(EVENTS, 10)
    );
    outcome?;
    if exactly_once() {
        assert_eq!(s.redelivered, 0, "exactly-once: records written twice");
    }
    assert_eq!(
        s.reproduced, 0,
        "no broker restart here, so no producer duplicates"
    );
    // The faults were really exercised, end to end.
    for (kind, n) in [
        ("503", faults.slow_down),
        ("500", faults.internal_error),
        ("reset", faults.reset),
        ("lost response", faults.lost_response),
        ("stall", faults.stalled),
        ("outage refusal", faults.refused),
    ] {
        assert!(n > 0, "no {kind} injected: {faults}");
    }
    assert!(
        errors_in_outage > 0,
        "the outage did not fail a sink operation"
    );
    assert!(retries > 0 && write_errors > 0, "sink never retried");
    // Offsets were committed only for delivered events, and all of them.
    let committed = committed_offsets(&services.kafka, &group, &topic, PARTITIONS)?;
    for (p, end) in &produced.end_offsets {
        assert_eq!(
            committed.get(p).copied().flatten(),
            Some(*end),
            "partition {p}: committed offset"
        );
    }
    Ok(())
}
