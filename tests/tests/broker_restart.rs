//! Broker restarts mid-stream: 50 000 events with unique ids are produced at
//! a steady rate to a 3-partition topic on an Apache Kafka broker of the
//! test's own ([`Broker`], its log on disk) while a Sluice pipeline
//! (kafka source → memory channel → object_store sink to moto) consumes
//! them. Three times, when another quarter of the events has been
//! produced (the producer keeps producing through the outage), the broker is killed with SIGKILL, left down for a few seconds
//! and started again on the same port.
//!
//! The producer is idempotent, so its retries across a restart store each
//! id once: an id at two offsets (*reproduced*) would be the broker's or the
//! producer's fault, and is asserted absent, apart from the records the
//! pipeline itself wrote twice (*redelivered*). If ids are missing, the test
//! reads the topic back and says whether the broker lost them or the
//! pipeline did.
//!
//! Asserts: zero lost; zero reproduced; zero redelivered when the sink runs
//! exactly-once ([`sluice_tests::stream::EXACTLY_ONCE`]), otherwise
//! duplicates are reported; the pipeline recovers after every restart (the source reads
//! again and new ids reach the output) within a deadline; the group's final
//! committed offsets are the produced end offsets. Prints one summary line
//! with the source's `errors` counter and the recovery times.

use std::time::{Duration, Instant};

use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::broker::Broker;
use sluice_tests::stream::{
    Deadline, LakeRoute, Producer, Tally, committed_offsets, exactly_once, lake_config, parse_id,
    read_topic,
};
use sluice_tests::{create_topic, s3, services, unique};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 50_000;
const PARTITIONS: i32 = 3;
/// Produced over about 50 s, so every restart hits a running stream and
/// each restart has recovered before the next.
const PER_SECOND: usize = 1_000;
const RESTARTS: usize = 3;
/// How long the broker stays down each time.
const DOWN: Duration = Duration::from_secs(3);
/// Longest a recovery may take before the test fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);

/// No progress at all for this long once everything is produced: stuck.
const STALLED: Duration = Duration::from_secs(45);

/// How long after a restart the pipeline read and wrote again.
#[derive(Debug)]
struct Recovery {
    /// Restart → the source reads records again.
    reading: Duration,
    /// Restart → new ids in the output.
    output: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_nothing() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sluice::sources=info".into()),
        )
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let mut broker = Broker::start().await?;
    let topic = unique("restart");
    let group = unique("restart");
    let prefix = unique("restart");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS).await?;

    let bootstrap = broker.bootstrap();
    let config_text = lake_config(
        &LakeRoute {
            kafka: &bootstrap,
            group: &group,
            topic: &topic,
            s3: &services.s3,
            bucket: &services.bucket,
            prefix: &prefix,
        },
        "roll_size = \"64KiB\"\nroll_interval = \"1s\"",
    );
    let config = sluice::config::parse(
        std::path::Path::new("broker_restart.toml"),
        &config_text,
        |_| None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let mut run = tokio::spawn(topology::run(
        config,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    let producer = Producer::spawn(&broker.bootstrap(), &topic, EVENTS, PER_SECOND, true)?;
    // Restart k comes once k quarters are sent; the producer may not pass
    // the next restart's mark before this restart has recovered, so the
    // stream is still running at every restart however slow a recovery is.
    let mark = |k: usize| EVENTS * k / (RESTARTS + 1);
    producer.limit(mark(2));
    let store = s3(&services)?;
    let mut tally = Tally::default();
    let read = || metrics.get("source.in.events") as usize;

    let mut recoveries = Vec::new();
    for k in 1..=RESTARTS {
        // Kill once another quarter of the events is produced: the rest
        // is still to come, so the stream is running when the broker dies
        // and there is new data to recover with after the restart.
        let mut wait = Deadline::new("the producer to go on", Duration::from_secs(120));
        while producer.sent() < mark(k) {
            anyhow::ensure!(
                !run.is_finished(),
                "pipeline stopped: {:?}",
                (&mut run).await
            );
            wait.tick(Duration::from_millis(50)).await?;
        }
        anyhow::ensure!(
            producer.sent() < EVENTS,
            "restart {k} comes after the last event was produced"
        );
        broker.kill();
        // The outage itself (not a synchronisation): the broker is down this long.
        tokio::time::sleep(DOWN).await;
        tally.refresh(&store, &prefix).await?;
        let (read_before, present_before) = (read(), tally.summary(EVENTS).present);
        broker.restart().await?;
        let restarted = Instant::now();
        let mut reading = None;
        let mut wait = Deadline::new("the pipeline to recover", RECOVERY_LIMIT);
        let output = loop {
            anyhow::ensure!(
                !run.is_finished(),
                "pipeline stopped: {:?}",
                (&mut run).await
            );
            if reading.is_none() && read() > read_before {
                reading = Some(restarted.elapsed());
            }
            tally.refresh(&store, &prefix).await?;
            if tally.summary(EVENTS).present > present_before {
                break restarted.elapsed();
            }
            if let Err(e) = wait.tick(Duration::from_millis(100)).await {
                return Err(e.context(format!(
                    "restart {k}: {} read (before restart {read_before}), {} ids in the output \
                     (before restart {present_before}), {} sent, {} acked; broker log:\n{}",
                    read(),
                    tally.summary(EVENTS).present,
                    producer.sent(),
                    producer.acked(),
                    broker.log_tail(30)
                )));
            }
        };
        producer.limit(mark(k + 2));
        recoveries.push(Recovery {
            reading: reading.unwrap_or(output),
            output,
        });
    }

    let produced = producer.finish().await?;
    let mut wait = Deadline::new("every event in S3", Duration::from_secs(240));
    let mut progress = (0, 0, Instant::now());
    let outcome = loop {
        tally.refresh(&store, &prefix).await?;
        let present = tally.summary(EVENTS).present;
        if present == EVENTS {
            break Ok(());
        }
        if (present, read()) != (progress.0, progress.1) {
            progress = (present, read(), Instant::now());
        } else if progress.2.elapsed() > STALLED {
            break Err(anyhow::anyhow!(
                "no progress for {STALLED:?}: {present} ids in the output, {} read",
                read()
            ));
        }
        if run.is_finished() {
            break Err(anyhow::anyhow!("pipeline stopped early"));
        }
        if let Err(e) = wait.tick(Duration::from_millis(500)).await {
            break Err(e);
        }
    };
    shutdown.cancel();
    let final_metrics = tokio::time::timeout(Duration::from_secs(120), run).await???;

    let mut tally = Tally::default();
    tally.refresh(&store, &prefix).await?;
    let s = tally.summary(EVENTS);
    let source_errors = final_metrics.get("source.in.errors");
    let undelivered = final_metrics.get("source.in.undelivered_batches");
    let read_total = final_metrics.get("source.in.events");
    let recovery_text: Vec<String> = recoveries
        .iter()
        .map(|r| format!("read {:.1?}/output {:.1?}", r.reading, r.output))
        .collect();
    println!(
        "broker_restart: events={EVENTS} restarts={RESTARTS} down={DOWN:?} objects={} records={} lost={} redelivered={} reproduced={} \
         exactly_once={} source[events_read={read_total} errors={source_errors} undelivered_batches={undelivered}] \
         recovery[{}] elapsed={:.1?}",
        s.objects,
        s.records,
        s.lost,
        s.redelivered,
        s.reproduced,
        exactly_once(),
        recovery_text.join(", "),
        started.elapsed(),
    );

    assert_eq!(produced.acked, EVENTS);
    if s.lost > 0 {
        // Whose fault: is the record in Kafka at all?
        let stored = read_topic(
            &broker.bootstrap(),
            &topic,
            PARTITIONS,
            EVENTS,
            Duration::from_secs(10),
        )
        .await?;
        let lost = tally.some_lost(EVENTS, usize::MAX);
        let in_kafka: Vec<String> = lost
            .iter()
            .filter_map(|id| {
                let i = parse_id(id)?;
                stored.get(&i).map(|at| format!("{id}@{at:?}"))
            })
            .collect();
        println!(
            "broker_restart: {} of {} lost ids are stored in the topic (the pipeline skipped them), \
             {} are not (the broker lost acknowledged records); topic holds {} distinct ids. In Kafka: {:?}\n\
             broker log:\n{}",
            in_kafka.len(),
            lost.len(),
            lost.len() - in_kafka.len(),
            stored.len(),
            &in_kafka[..in_kafka.len().min(10)],
            broker.log_tail(40),
        );
    }
    assert_eq!(
        s.lost,
        0,
        "{} events lost, e.g. {:?} ({outcome:?})",
        s.lost,
        tally.some_lost(EVENTS, 10)
    );
    outcome?;
    assert_eq!(s.reproduced, 0, "the idempotent producer stored ids twice");
    if exactly_once() {
        assert_eq!(s.redelivered, 0, "exactly-once: records written twice");
    }
    assert_eq!(recoveries.len(), RESTARTS);
    let committed = committed_offsets(&broker.bootstrap(), &group, &topic, PARTITIONS)?;
    for (p, end) in &produced.end_offsets {
        assert_eq!(
            committed.get(p).copied().flatten(),
            Some(*end),
            "partition {p}: committed offset"
        );
    }
    Ok(())
}
