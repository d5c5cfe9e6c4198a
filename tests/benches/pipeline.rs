//! Pipeline benchmark: broker → Sluice → files, against a raw rdkafka
//! consume-only loop on the same broker and data.
//!
//! Needs a broker (`scripts/services.sh start; source target/services.env`)
//! and the plugins (`scripts/build-plugins.sh`); run with
//! `cargo bench -p sluice-tests --bench pipeline`. Prints events/s of each
//! variant and its ratio to the raw consumer; the exactly-once variant
//! also writes a commit record per roll (4 MiB files instead of 64 MiB). `SLUICE_BENCH_EVENTS` sets the
//! event count (default 200 000), `SLUICE_BENCH_ONLY` runs the variants
//! whose label contains it (e.g. `mask`, under a profiler), and
//! `SLUICE_BENCH_SOURCE_EXTRA` is appended to the source's section (e.g.
//! `kafka = { "fetch.queue.backoff.ms" = 1000 }` to compare a property).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::{create_topic, plugin, unique};

fn main() -> anyhow::Result<()> {
    let Ok(kafka) = std::env::var("SLUICE_TEST_KAFKA") else {
        eprintln!("set SLUICE_TEST_KAFKA (scripts/services.sh start) to run this benchmark");
        return Ok(());
    };
    let events: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let topic = unique("bench");
        create_topic(&kafka, &topic, 3).await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "500000")
            .create()?;
        let mut pending = Vec::with_capacity(events);
        for i in 0..events {
            // ~100-byte JSON bodies with a card number to mask.
            let body = format!(
                r#"{{"id":"{i:010}","card":"4111111111{:06}","amount":12.50,"note":"xxxxxxxxxxxxxx"}}"#,
                i % 1_000_000
            );
            let key = i.to_string();
            pending.push(
                producer
                    .send_result(FutureRecord::to(&topic).key(&key).payload(&body))
                    .map_err(|(e, _)| e)?,
            );
        }
        for d in pending {
            d.await?.map_err(|(e, _)| e)?;
        }

        let raw = raw_consume(&kafka, &topic, events)?;
        println!("raw rdkafka consumer: {:.0} events/s", events as f64 / raw.as_secs_f64());
        // `SLUICE_BENCH_ONLY=mask` runs one variant (e.g. under a profiler).
        let only = std::env::var("SLUICE_BENCH_ONLY").ok();
        for (label, plugin, exactly_once) in [
            ("no plugin", None, false),
            ("no plugin, exactly-once", None, true),
            ("noop plugin", Some("noop"), false),
            ("mask plugin", Some("mask"), false),
        ]
        .into_iter()
        .filter(|(label, ..)| only.as_deref().is_none_or(|only| label.contains(only)))
        {
            let took = sluice_run(&kafka, &topic, events, plugin, exactly_once).await?;
            println!(
                "sluice {label} → files: {:.0} events/s, ratio to raw {:.2}",
                events as f64 / took.as_secs_f64(),
                raw.as_secs_f64() / took.as_secs_f64()
            );
        }
        Ok(())
    })
}

fn raw_consume(kafka: &str, topic: &str, events: usize) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let mut seen = 0;
    let mut bytes = 0usize;
    while seen < events {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "raw consumer timed out"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            bytes += rdkafka::Message::payload(&m?).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed())
}

async fn sluice_run(
    kafka: &str,
    topic: &str,
    events: usize,
    interceptor: Option<&str>,
    exactly_once: bool,
) -> anyhow::Result<Duration> {
    let out = tempfile::tempdir()?;
    let chain = match interceptor {
        Some(name) => {
            let config = if name == "mask" {
                "config = { fields = [\"card\"] }"
            } else {
                ""
            };
            format!(
                "interceptors = [\"p\"]\ndead_letter = \"dead\"\n\n[plugins.p]\ntype = \"interceptor\"\npath = \"{}\"\n{config}\n\n[channels.dead]\ntype = \"memory\"\n\n[sinks.dead]\ntype = \"null\"\nchannel = \"dead\"\n",
                plugin(name).display()
            )
        }
        None => String::new(),
    };
    let text = format!(
        r#"
[sinks.files]
type = "object_store"
channel = "files"
url = "file://{out}"
path = "%{{topic}}/%Y-%m-%d"
format = "text"
roll_size = "{roll_size}"
roll_interval = "10s"
exactly_once = {exactly_once}

[channels.files]
type = "memory"

[sources.bench]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 1000
channels = ["files"]
{extra}
{chain}"#,
        extra = std::env::var("SLUICE_BENCH_SOURCE_EXTRA").unwrap_or_default(),
        out = out.path().display(),
        group = unique("sluice"),
        // Exactly-once commits every roll: roll often enough to pay for it.
        roll_size = if exactly_once { "4MiB" } else { "64MiB" },
    );
    let config = sluice::config::parse(std::path::Path::new("bench.toml"), &text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = std::sync::Arc::new(Metrics::default());
    let options = RunOptions {
        metrics: metrics.clone(),
        ..Default::default()
    };
    let shutdown = options.shutdown.clone();
    let started = Instant::now();
    let run = tokio::spawn(topology::run(config, options));
    while metrics.get("sink.files.events") < events as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "sluice run timed out"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Written to files: stop, which also completes (renames) the open files.
    shutdown.cancel();
    run.await??;
    Ok(started.elapsed())
}
