//! Latency benchmark: the fraud scenario Kafka → decode → travel-score →
//! mask → Kafka at a steady rate, beside the broker's own two hops measured
//! in the same run.
//!
//! Needs a broker (`scripts/services.sh start; source target/services.env`)
//! and the plugins (`scripts/build-plugins.sh`); run with
//! `cargo bench -p sluice-tests --bench latency`.
//!
//! Both variants get the same input: card transactions in the quickstart's
//! `id|card|time|amount|store` form at `SLUICE_BENCH_RATE` events/s (default
//! 10 000) for `SLUICE_BENCH_SECONDS` (default 20) on 2 partitions, each
//! carrying the moment it was handed to the producer in its `id` field. A
//! consumer at the far end reads the output topic and takes, per event, the
//! time from that moment to its arrival:
//!
//! - **broker, two hops**: a relay (a librdkafka consumer that produces each
//!   record on, with the producer properties of Sluice's `kafka` sink) sits
//!   where Sluice would; no processing. This is what the broker and the
//!   client library cost for two hops on this machine.
//! - **Sluice**: the `kafka` source with its default batching, the
//!   `delimited` decoder, `travel-score` (with the quickstart's lookup
//!   tables), `mask`, and the `kafka` sink.
//!
//! `SLUICE_BENCH_SOURCE_EXTRA` is appended to the source's section (e.g.
//! `flush_when_idle = false` to compare a setting).
//!
//! Before timing, each variant is warmed until an event makes it through
//! (group joins, plugin compiles), and those events are not counted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::{create_topic, plugin, repo_root, unique};
use tokio_util::sync::CancellationToken;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// End-to-end latencies of one variant, sorted.
struct Latencies {
    label: &'static str,
    sorted: Vec<Duration>,
    sent: usize,
}

impl Latencies {
    fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.sorted.len() - 1) as f64 * q).round() as usize;
        self.sorted[i]
    }

    fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| {} | {} of {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.label,
            self.sorted.len(),
            self.sent,
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
        )
    }
}

fn main() -> anyhow::Result<()> {
    let Ok(kafka) = std::env::var("SLUICE_TEST_KAFKA") else {
        eprintln!("set SLUICE_TEST_KAFKA (scripts/services.sh start) to run this benchmark");
        return Ok(());
    };
    let rate = env_number("SLUICE_BENCH_RATE", 10_000);
    let seconds = env_number("SLUICE_BENCH_SECONDS", 20);
    let cards = cards()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let clock = Instant::now();
        let load = Load {
            kafka: &kafka,
            rate,
            seconds,
            cards: &cards,
            clock,
        };

        let (input, middle) = (unique("hop-in"), unique("hop-out"));
        create_topic(&kafka, &input, 2).await?;
        create_topic(&kafka, &middle, 2).await?;
        let stop = CancellationToken::new();
        let relay = tokio::spawn(relay(kafka.clone(), input.clone(), middle.clone(), stop.clone()));
        let broker = load.measure("broker, two hops (relay, no processing)", &input, &middle).await?;
        stop.cancel();
        relay.await??;
        println!("{}", broker.row());

        let (input, output) = (unique("fraud-in"), unique("fraud-out"));
        create_topic(&kafka, &input, 2).await?;
        create_topic(&kafka, &output, 2).await?;
        let config = sluice_config(&kafka, &input, &output);
        let config = sluice::config::parse(&repo_root().join("bench.toml"), &config, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let options = RunOptions {
            metrics: Arc::new(Metrics::default()),
            ..Default::default()
        };
        let shutdown = options.shutdown.clone();
        let run = tokio::spawn(topology::run(config, options));
        let sluice = load
            .measure("Sluice: decode → travel-score → mask → kafka", &input, &output)
            .await?;
        shutdown.cancel();
        run.await??;
        println!("{}", sluice.row());

        println!(
            "\n{rate} events/s for {seconds} s, 2 partitions; end-to-end milliseconds\n\n| pipeline | events measured | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n{}\n{}\n\np99 Sluice − p99 broker: {:.1} ms",
            broker.row(),
            sluice.row(),
            (sluice.quantile(0.99).as_secs_f64() - broker.quantile(0.99).as_secs_f64()) * 1e3
        );
        Ok(())
    })
}

/// The quickstart's card holders, so travel-score finds them.
fn cards() -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("conf/data/customers.csv"))?;
    let cards: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').next().map(str::to_owned))
        .collect();
    anyhow::ensure!(!cards.is_empty(), "conf/data/customers.csv has no cards");
    Ok(cards)
}

/// The fraud pipeline between `input` and `output`.
fn sluice_config(kafka: &str, input: &str, output: &str) -> String {
    let plugins = plugin("mask");
    let plugin_dir = plugins
        .parent()
        .expect("plugins have a directory")
        .display();
    let data = repo_root().join("conf/data");
    let data = data.display();
    format!(
        r#"
[teams.fraud]
plugin_dir = "{plugin_dir}"
lookups = ["customers", "stores"]

[lookups.customers]
type = "file"
path = "{data}/customers.csv"
key = "card"

[lookups.stores]
type = "file"
path = "{data}/stores.jsonl"
key = "store"

[sources.transactions]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{input}"]
team = "fraud"
decoder = "decode"
interceptors = ["travel-score", "mask"]
channels = ["auths", "high-risk"]
dead_letter = "rejects"
{extra}

[plugins.decode]
type = "decoder"
team = "fraud"
path = "delimited.wasm"
config = {{ delimiter = "|", fields = [
    {{ name = "id", type = "string" }},
    {{ name = "card", type = "string" }},
    {{ name = "time", type = "string" }},
    {{ name = "amount", type = "float" }},
    {{ name = "store", type = "int" }},
] }}

[plugins.travel-score]
type = "interceptor"
team = "fraud"
path = "travel_score.wasm"
config = {{ threshold = 70 }}

[plugins.mask]
type = "interceptor"
team = "fraud"
path = "mask.wasm"
config = {{ fields = ["card"], keep_last = 4 }}

[channels.auths]
type = "memory"

[channels.high-risk]
type = "memory"

[channels.rejects]
type = "memory"

# High scores go to their own channel and sink, here to the same topic.
[sinks.high-risk]
type = "kafka"
channel = "high-risk"
bootstrap_servers = "{kafka}"
topic = "{output}"

[sinks.auths]
type = "kafka"
channel = "auths"
bootstrap_servers = "{kafka}"
topic = "{output}"

[sinks.rejects]
type = "null"
channel = "rejects"
"#,
        group = unique("fraud"),
        extra = std::env::var("SLUICE_BENCH_SOURCE_EXTRA").unwrap_or_default(),
    )
}

/// Passes every record of `input` on to `output` unchanged, with the
/// producer properties of Sluice's `kafka` sink, until `stop`.
async fn relay(
    kafka: String,
    input: String,
    output: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = reader(&kafka)?;
    consumer.subscribe(&[&input])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let mut stream = consumer.stream();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            Some(message) = stream.next() => {
                let message = message?;
                let record = FutureRecord::to(&output)
                    .payload(message.payload().unwrap_or_default())
                    .key(message.key().unwrap_or_default());
                // Delivery is awaited by the far end's consumer, not here.
                drop(producer.send_result(record).map_err(|(e, _)| e)?);
            }
        }
    }
}

/// A consumer of a new group reading from the earliest offset.
fn reader(kafka: &str) -> anyhow::Result<StreamConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", unique("latency"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?)
}

/// The input side of a run: the rate, the cards, the clock ids count from.
struct Load<'a> {
    kafka: &'a str,
    rate: usize,
    seconds: usize,
    cards: &'a [String],
    clock: Instant,
}

impl Load<'_> {
    /// One record: `id` is `t<µs since clock>-<n>` (timed) or `w<n>` (warm-up).
    fn line(&self, id: &str, n: usize) -> String {
        format!(
            "{id}|{}|2026-12-03 10:{:02}:{:02}|{}.{:02}|{}",
            self.cards[n % self.cards.len()],
            n / 60 % 60,
            n % 60,
            n % 500 + 1,
            n % 100,
            1000 + n % 9000,
        )
    }

    /// Warms the path from `input` to `output`, then sends the timed load
    /// and collects every timed event's latency at `output`.
    async fn measure(
        &self,
        label: &'static str,
        input: &str,
        output: &str,
    ) -> anyhow::Result<Latencies> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.kafka)
            .set("linger.ms", "1")
            .create()?;
        let consumer = reader(self.kafka)?;
        consumer.subscribe(&[output])?;
        let mut arrivals = consumer.stream();

        // Warm-up: one event every 50 ms until one arrives.
        let started = Instant::now();
        let mut n = 0;
        loop {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "{label}: nothing came through in 120 s"
            );
            let line = self.line(&format!("w{n}"), n);
            drop(
                producer
                    .send_result(FutureRecord::to(input).key(&n.to_string()).payload(&line))
                    .map_err(|(e, _)| e)?,
            );
            n += 1;
            let wait = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = wait => {}
                Some(arrived) = arrivals.next() => {
                    arrived?;
                    eprintln!("{label}: warm after {n} events, {:?}", started.elapsed());
                    break;
                }
            }
        }

        // The timed load, paced by the clock; arrivals are read meanwhile.
        let total = self.rate * self.seconds;
        let mut seen = HashSet::with_capacity(total);
        let mut latencies = Vec::with_capacity(total);
        let began = Instant::now();
        let mut sent = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let deadline = began + Duration::from_secs(self.seconds as u64 + 60);
        while latencies.len() < total {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => anyhow::bail!(
                    "{label}: {} of {total} events arrived",
                    latencies.len()
                ),
                _ = tick.tick(), if sent < total => {
                    let due = ((began.elapsed().as_secs_f64() * self.rate as f64) as usize).min(total);
                    while sent < due {
                        let id = format!("t{}-{sent}", self.clock.elapsed().as_micros());
                        let line = self.line(&id, sent);
                        drop(
                            producer
                                .send_result(FutureRecord::to(input).key(&sent.to_string()).payload(&line))
                                .map_err(|(e, _)| e)?,
                        );
                        sent += 1;
                    }
                }
                Some(arrived) = arrivals.next() => {
                    let arrived = arrived?;
                    let now = self.clock.elapsed();
                    if let Some((micros, n)) = timed_id(arrived.payload().unwrap_or_default())
                        && seen.insert(n)
                    {
                        latencies.push(now.saturating_sub(Duration::from_micros(micros)));
                    }
                }
            }
        }
        latencies.sort_unstable();
        Ok(Latencies {
            label,
            sorted: latencies,
            sent: total,
        })
    }
}

/// The send time in µs and the sequence number of a timed event, from a
/// raw line (`t123-7|…`) or Sluice's JSON (`{"id":"t123-7",…}`).
fn timed_id(payload: &[u8]) -> Option<(u64, usize)> {
    let text = std::str::from_utf8(payload).ok()?;
    let id = if text.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        value.get("id")?.as_str()?.to_owned()
    } else {
        text.split('|').next()?.to_owned()
    };
    let (micros, n) = id.strip_prefix('t')?.split_once('-')?;
    Some((micros.parse().ok()?, n.parse().ok()?))
}
