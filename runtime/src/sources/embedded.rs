//! The embedded demo broker: librdkafka's in-process mock cluster, so the
//! quickstart runs with no external services, plus an optional feed that
//! produces demo traffic into it.
//!
//! ```toml
//! [embedded_broker]
//! partitions = 3
//! topics = ["card-transactions", "flume.auths"]
//!
//! [embedded_broker.feed]
//! topic = "card-transactions"
//! scenario = "card-transactions"
//! count = 5000
//! rate = 1000
//! seed = 42
//! malformed_ratio = 0.01
//! ```
//!
//! The `card-transactions` scenario generates lines in the seed format
//! `uuid|card_number|2014-10-14 01:18:29|67.88|1433` (id, 16-digit Luhn-valid
//! card number drawn from a pool of recurring customers, time, amount, store
//! id), keyed by transaction id (never by card number, which would leak it
//! unmasked into every output's key), with a `type` header of `auth` (about 90%) or
//! `refund`. About `malformed_ratio` of the lines are deliberately broken (a
//! non-numeric amount, or a missing field) to exercise dead-lettering. The
//! `lines` scenario sends the lines of a file instead, cycling through them.
//! Everything is deterministic for a given `seed`.
//!
//! The mock broker speaks the real Kafka protocol but is slow and stalls at
//! volume (beyond roughly 20 000 messages), hence the modest defaults. It is
//! for demos and tests, never for data that matters: it keeps everything in
//! memory and is gone when the process exits.
//!
//! `MockCluster` is neither `Send` nor `Sync`, so it lives on a thread of its
//! own for as long as the [`EmbeddedBroker`] does; the broker handle itself is
//! `Send + Sync` and can be shared with the tasks that use it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::kafka::errors::ClientError;
use crate::keys::Invalid;
use crate::metrics::Metrics;
use crate::sources::SourceError;

/// Counter of feed events delivered to the embedded broker.
pub(crate) const FEED_EVENTS: &str = "embedded.feed.events";
/// Counter of deliberately malformed feed events among them.
pub(crate) const FEED_MALFORMED: &str = "embedded.feed.malformed";

/// Name used in errors (`SourceError::source_name`).
const NAME: &str = "embedded_broker";
/// Most feed messages awaiting delivery at once.
const MAX_IN_FLIGHT: usize = 10_000;

/// The top-level `[embedded_broker]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Partitions of every topic created here (`topics` and the feed's topic).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Topics to create at start, besides the feed's.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Demo traffic to produce; none if absent.
    #[serde(default)]
    pub feed: Option<FeedConfig>,
}

fn default_partitions() -> i32 {
    3
}

/// `[embedded_broker.feed]`: demo traffic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Topic to produce to (created with the broker).
    pub topic: String,
    /// What to produce: `"card-transactions"` (default) or `"lines"`.
    #[serde(default)]
    pub scenario: Scenario,
    /// File whose lines the `lines` scenario sends, cycling through them.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Events to produce in all. The mock broker stalls above ~20 000.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Events per second; 0 means as fast as the broker takes them.
    #[serde(default = "default_rate")]
    pub rate: u64,
    /// Seed of the generator: the same seed gives the same events.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Share of deliberately malformed card transactions, from 0 to 1.
    #[serde(default = "default_malformed_ratio")]
    pub malformed_ratio: f64,
}

fn default_count() -> u64 {
    5000
}
fn default_rate() -> u64 {
    1000
}
fn default_seed() -> u64 {
    42
}
fn default_malformed_ratio() -> f64 {
    0.01
}

/// What the feed produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Card transactions in the `uuid|card|time|amount|store` format.
    #[default]
    CardTransactions,
    /// The lines of the file `path`.
    Lines,
}

impl EmbeddedBrokerConfig {
    /// Checks what serde cannot; the message names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=1000).contains(&self.partitions) {
            return Err(Invalid(format!(
                "`partitions` is {}; use 1 to 1000",
                self.partitions
            )));
        }
        if let Some(t) = self.topics.iter().find(|t| t.trim().is_empty()) {
            return Err(Invalid(format!("`topics` holds an empty name ({t:?})")));
        }
        let Some(feed) = &self.feed else {
            return Ok(());
        };
        if feed.topic.trim().is_empty() {
            return Err(Invalid("`feed.topic` is empty".into()));
        }
        if feed.scenario == Scenario::Lines && feed.path.is_none() {
            return Err("`feed.scenario = \"lines\"` needs `feed.path`, the file to send".into());
        }
        if feed.scenario == Scenario::CardTransactions && feed.path.is_some() {
            return Err("`feed.path` is only read by `scenario = \"lines\"`; remove it".into());
        }
        if !(0.0..=1.0).contains(&feed.malformed_ratio) {
            return Err(Invalid(format!(
                "`feed.malformed_ratio` is {}; use a share from 0 to 1",
                feed.malformed_ratio
            )));
        }
        Ok(())
    }

    fn all_topics(&self) -> Vec<String> {
        let mut topics = self.topics.clone();
        if let Some(feed) = &self.feed {
            topics.push(feed.topic.clone());
        }
        topics.sort();
        topics.dedup();
        topics
    }
}

/// A running mock cluster (see the module docs). Dropping it stops the broker;
/// keep it alive as long as any client uses it.
pub(crate) struct EmbeddedBroker {
    bootstrap: String,
    config: EmbeddedBrokerConfig,
    /// Dropping it tells the owner thread to destroy the cluster.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster and creates the configured topics;
    /// `config` was checked when the configuration loaded.
    pub fn start(config: &EmbeddedBrokerConfig) -> Result<Self, SourceError> {
        let topics = config.all_topics();
        let partitions = config.partitions;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, ClientError>>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-embedded-broker".into())
            .spawn(move || {
                let cluster = match start_cluster(&topics, partitions) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Blocks until the EmbeddedBroker drops its sender.
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| error(format!("starting the broker thread: {e}")))?;
        let bootstrap = match ready_rx.recv() {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(error(e.0));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(error("the broker thread died while starting".into()));
            }
        };
        info!(%bootstrap, topics = ?config.all_topics(), "embedded broker started");
        Ok(Self {
            bootstrap,
            config: config.clone(),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` of the mock cluster (`127.0.0.1:port`).
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap.clone()
    }

    /// Produces the configured feed (nothing without `[embedded_broker.feed]`)
    /// at its rate until `count` events are delivered or `shutdown` fires;
    /// returns how many were delivered. Each delivery bumps [`FEED_EVENTS`]
    /// (and [`FEED_MALFORMED`] for broken lines).
    pub(crate) async fn run_feed(
        &self,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<u64, SourceError> {
        let Some(feed) = &self.config.feed else {
            return Ok(0);
        };
        let mut generator = Generator::new(feed)?;
        let producer: FutureProducer<FeedContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "sluice-embedded-feed")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(FeedContext)
            .map_err(|e| error(format!("creating the feed producer: {e}")))?;
        let delivered = metrics.counter(FEED_EVENTS);
        let malformed = metrics.counter(FEED_MALFORMED);
        let started = tokio::time::Instant::now();
        let mut in_flight = FuturesUnordered::new();
        let mut produced = 0u64;
        let mut failed = 0u64;
        let mut handle = |r: Option<(bool, Result<bool, KafkaError>)>| match r {
            Some((was_malformed, Ok(true))) => {
                produced += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
                if was_malformed {
                    malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => failed += 1,
        };
        let mut sent = 0u64;
        'feed: while sent < feed.count {
            if feed.rate > 0 {
                // Keep to the rate: event n goes out at n / rate seconds.
                // Meanwhile, count deliveries as they come.
                let due = started + Duration::from_secs_f64(sent as f64 / feed.rate as f64);
                loop {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break 'feed,
                        Some(done) = in_flight.next(), if !in_flight.is_empty() => handle(Some(done)),
                        _ = tokio::time::sleep_until(due) => break,
                    }
                }
            } else if shutdown.is_cancelled() {
                break;
            }
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                handle(Some(done));
            }
            while in_flight.len() >= MAX_IN_FLIGHT {
                handle(in_flight.next().await);
            }
            let event = generator.next_event();
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: "type",
                value: Some(event.kind),
            });
            let mut record = FutureRecord::to(&feed.topic)
                .payload(&event.line)
                .headers(headers);
            if let Some(key) = &event.key {
                record = record.key(key);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        let was_malformed = event.malformed;
                        in_flight.push(async move {
                            let ok = match delivery.await {
                                Ok(Ok(_)) => Ok(true),
                                Ok(Err((e, _))) => Err(e),
                                Err(_) => Err(KafkaError::Canceled),
                            };
                            (was_malformed, ok)
                        });
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        match in_flight.next().await {
                            Some(done) => handle(Some(done)),
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        return Err(error(format!("producing to `{}`: {e}", feed.topic)));
                    }
                }
            }
            sent += 1;
        }
        while let Some(done) = in_flight.next().await {
            handle(Some(done));
        }
        if failed > 0 {
            warn!(failed, "embedded feed: some events were not delivered");
        }
        info!(produced, topic = %feed.topic, "embedded feed done");
        Ok(produced)
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(message: String) -> SourceError {
    SourceError {
        source_name: NAME.to_owned(),
        message,
    }
}

fn start_cluster(
    topics: &[String],
    partitions: i32,
) -> Result<MockCluster<'static, rdkafka::producer::DefaultProducerContext>, ClientError> {
    let cluster =
        MockCluster::new(1).map_err(|e| ClientError(format!("starting the mock cluster: {e}")))?;
    for topic in topics {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| ClientError(format!("creating topic `{topic}`: {e}")))?;
    }
    Ok(cluster)
}

/// Routes the feed producer's librdkafka logs to `tracing`.
struct FeedContext;

impl rdkafka::ClientContext for FeedContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_librdkafka("embedded-feed", level, fac, message);
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedEvent {
    key: Option<String>,
    line: String,
    kind: &'static str,
    malformed: bool,
}

/// Deterministic event source for the feed.
struct Generator {
    rng: XorShift,
    scenario: Scenario,
    malformed_ratio: f64,
    cards: Vec<String>,
    lines: Vec<String>,
    next_line: usize,
    /// Seconds since the first transaction's time.
    clock: i64,
}

/// Customers in the card pool: transactions repeat cards, as real ones do.
const CARDS: usize = 500;

impl Generator {
    fn new(feed: &FeedConfig) -> Result<Self, SourceError> {
        let mut rng = XorShift::new(feed.seed);
        let lines = match (&feed.scenario, &feed.path) {
            (Scenario::Lines, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| error(format!("reading feed.path `{}`: {e}", path.display())))?;
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect();
                if lines.is_empty() {
                    return Err(error(format!(
                        "feed.path `{}` has no lines",
                        path.display()
                    )));
                }
                lines
            }
            _ => Vec::new(),
        };
        let cards = (0..CARDS).map(|_| card_number(&mut rng)).collect();
        Ok(Self {
            rng,
            scenario: feed.scenario,
            malformed_ratio: feed.malformed_ratio,
            cards,
            lines,
            next_line: 0,
            clock: 0,
        })
    }

    fn next_event(&mut self) -> FeedEvent {
        let kind = if self.rng.below(10) == 0 {
            "refund"
        } else {
            "auth"
        };
        match self.scenario {
            Scenario::Lines => {
                let line = self.lines[self.next_line % self.lines.len()].clone();
                self.next_line += 1;
                FeedEvent {
                    key: None,
                    line,
                    kind,
                    malformed: false,
                }
            }
            Scenario::CardTransactions => {
                let id = uuid(&mut self.rng);
                let card = self.cards[self.rng.below(CARDS as u64) as usize].clone();
                self.clock += self.rng.below(3) as i64;
                let time = transaction_time(self.clock);
                let cents = 50 + self.rng.below(50_000);
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                let store = 1000 + self.rng.below(9000);
                let malformed = self.rng.unit() < self.malformed_ratio;
                let line = if !malformed {
                    format!("{id}|{card}|{time}|{amount}|{store}")
                } else if self.rng.below(2) == 0 {
                    // An amount that does not parse as a number.
                    format!("{id}|{card}|{time}|{}O{}|{store}", cents / 100, cents % 100)
                } else {
                    // A missing field.
                    format!("{id}|{card}|{time}|{amount}")
                };
                FeedEvent {
                    // Keyed by transaction id, not card number: a key is
                    // written beside the data, and masking covers the body.
                    key: Some(id.clone()),
                    line,
                    kind,
                    malformed,
                }
            }
        }
    }
}

/// `2014-10-14 01:18:29` plus `seconds`.
fn transaction_time(seconds: i64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2014, 10, 14)
        .and_then(|d| d.and_hms_opt(1, 18, 29))
        .unwrap_or_default();
    (base + chrono::TimeDelta::seconds(seconds))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A random version-4 UUID (`8-4-4-4-12` lowercase hex).
fn uuid(rng: &mut XorShift) -> String {
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    let hi = (hi & !0xf000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// A 16-digit card number starting with 4, with a valid Luhn check digit.
fn card_number(rng: &mut XorShift) -> String {
    let mut digits = vec![4u8];
    digits.extend((0..14).map(|_| rng.below(10) as u8));
    // Luhn: double every second digit from the right, counting the check digit.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = d as u32;
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// xorshift64* — tiny, fast, deterministic; not for anything secret.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // A zero state would stay zero; mix the seed (splitmix64 step).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Feed events delivered so far (the [`FEED_EVENTS`] counter).
#[cfg(test)]
pub(crate) fn feed_events(metrics: &Metrics) -> u64 {
    metrics.get(FEED_EVENTS)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, TopicPartitionList};

    use super::*;

    fn feed(count: u64, rate: u64) -> FeedConfig {
        FeedConfig {
            topic: "card-transactions".into(),
            scenario: Scenario::CardTransactions,
            path: None,
            count,
            rate,
            seed: 7,
            malformed_ratio: 0.01,
        }
    }

    fn luhn_ok(card: &str) -> bool {
        let sum: u32 = card
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = (b - b'0') as u32;
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }

    /// Whether `line` is a well-formed transaction.
    fn well_formed(line: &str) -> bool {
        let f: Vec<&str> = line.split('|').collect();
        f.len() == 5
            && f[0].len() == 36
            && f[0].chars().filter(|c| *c == '-').count() == 4
            && f[1].len() == 16
            && f[1].bytes().all(|b| b.is_ascii_digit())
            && luhn_ok(f[1])
            && chrono::NaiveDateTime::parse_from_str(f[2], "%Y-%m-%d %H:%M:%S").is_ok()
            && f[3].parse::<f64>().is_ok_and(|a| a > 0.0)
            && f[4].parse::<u32>().is_ok()
    }

    #[test]
    fn parses_the_example() {
        let doc: toml::Table = toml::from_str(
            r#"
            [embedded_broker]
            partitions = 3
            topics = ["card-transactions", "flume.auths"]
            [embedded_broker.feed]
            topic = "card-transactions"
            scenario = "card-transactions"
            count = 5000
            rate = 1000
            seed = 42
            malformed_ratio = 0.01
            "#,
        )
        .unwrap();
        let c: EmbeddedBrokerConfig = doc["embedded_broker"].clone().try_into().unwrap();
        c.validate().unwrap();
        assert_eq!(c.feed.as_ref().unwrap().count, 5000);
        let d: EmbeddedBrokerConfig = toml::from_str("").unwrap();
        assert_eq!((d.partitions, d.feed), (3, None));
        let lines: EmbeddedBrokerConfig =
            toml::from_str("[feed]\ntopic = \"t\"\nscenario = \"lines\"").unwrap();
        assert!(lines.validate().unwrap_err().0.contains("feed.path"));
        assert!(toml::from_str::<EmbeddedBrokerConfig>("bogus = 1").is_err());
    }

    #[test]
    fn generates_deterministic_card_transactions() {
        let mut a = Generator::new(&feed(0, 0)).unwrap();
        let mut b = Generator::new(&feed(0, 0)).unwrap();
        let events: Vec<FeedEvent> = (0..10_000).map(|_| a.next_event()).collect();
        assert!(
            events.iter().all(|e| *e == b.next_event()),
            "same seed, same events"
        );

        let malformed = events.iter().filter(|e| e.malformed).count();
        assert!(
            (50..=150).contains(&malformed),
            "about 1% malformed: {malformed}"
        );
        for e in &events {
            assert_eq!(well_formed(&e.line), !e.malformed, "{}", e.line);
            assert_eq!(e.key.as_deref(), e.line.split('|').next());
        }
        let refunds = events.iter().filter(|e| e.kind == "refund").count();
        assert!(
            (700..=1300).contains(&refunds),
            "about 10% refunds: {refunds}"
        );
        let cards: std::collections::HashSet<_> =
            events.iter().map(|e| e.line.split('|').nth(1)).collect();
        assert!(cards.len() <= CARDS, "cards recur");
        assert!(events[0].line.contains("|2014-10-14 01:18:"));

        let mut other = feed(0, 0);
        other.seed = 8;
        assert_ne!(Generator::new(&other).unwrap().next_event(), events[0]);
        other.malformed_ratio = 0.0;
        let mut clean = Generator::new(&other).unwrap();
        assert!((0..2000).all(|_| !clean.next_event().malformed));
    }

    #[test]
    fn cycles_through_the_lines_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        std::fs::write(&path, "one\n\ntwo\n").unwrap();
        let mut config = feed(0, 0);
        config.scenario = Scenario::Lines;
        config.path = Some(path);
        let mut g = Generator::new(&config).unwrap();
        let lines: Vec<String> = (0..5).map(|_| g.next_event().line).collect();
        assert_eq!(lines, ["one", "two", "one", "two", "one"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_the_embedded_broker() {
        let config = EmbeddedBrokerConfig {
            partitions: 3,
            topics: vec!["flume.auths".into()],
            feed: Some(feed(300, 0)),
        };
        let broker = EmbeddedBroker::start(&config).unwrap();
        let metrics = Metrics::new();
        fn shareable<T: Send + Sync>(_: &T) {}
        fn sendable<T: Send>(_: T) {}
        shareable(&broker);
        sendable(broker.run_feed(metrics.clone(), CancellationToken::new()));
        let produced = tokio::time::timeout(
            Duration::from_secs(60),
            broker.run_feed(metrics.clone(), CancellationToken::new()),
        )
        .await
        .expect("feed finishes")
        .unwrap();
        assert_eq!(produced, 300);
        assert_eq!(feed_events(&metrics), 300);

        // Read everything back: 300 lines over 3 partitions, with type headers.
        let bootstrap = broker.bootstrap_servers();
        let lines = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "sluice-test-reader")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            let mut end = HashMap::new();
            for p in 0..3 {
                tpl.add_partition_offset("card-transactions", p, rdkafka::Offset::Beginning)
                    .unwrap();
                let (_, high) = consumer
                    .fetch_watermarks("card-transactions", p, Duration::from_secs(10))
                    .unwrap();
                end.insert(p, high);
            }
            assert_eq!(end.values().sum::<i64>(), 300);
            assert!(end.values().all(|n| *n > 0), "keys spread over partitions");
            consumer.assign(&tpl).unwrap();
            let mut lines = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while lines.len() < 300 && std::time::Instant::now() < deadline {
                if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                    let m = m.unwrap();
                    let kind = m.headers().and_then(|h| h.iter().find(|h| h.key == "type"));
                    let kind = kind.and_then(|h| h.value).unwrap();
                    assert!(kind == b"auth" || kind == b"refund");
                    lines.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                }
            }
            lines
        })
        .await
        .unwrap();
        assert_eq!(lines.len(), 300);
        let malformed = lines.iter().filter(|l| !well_formed(l)).count() as u64;
        assert_eq!(malformed, metrics.get(FEED_MALFORMED));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feed_stops_on_shutdown() {
        let config = EmbeddedBrokerConfig {
            partitions: 1,
            topics: vec![],
            feed: Some(feed(1_000_000, 100)),
        };
        let broker = EmbeddedBroker::start(&config).unwrap();
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let run = broker.run_feed(metrics.clone(), shutdown.clone());
        tokio::pin!(run);
        // Let some events out, then stop.
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                tokio::select! {
                    r = &mut run => panic!("feed ended early: {r:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                if feed_events(&metrics) >= 5 {
                    break;
                }
            }
        })
        .await
        .expect("events flow");
        shutdown.cancel();
        let produced = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("feed stops")
            .unwrap();
        assert!((5..1_000_000).contains(&produced));
        assert_eq!(produced, feed_events(&metrics));
    }
}
