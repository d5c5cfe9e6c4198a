//! Following a compacted Kafka topic into a lookup table.
//!
//! A plain consumer (no group membership, nothing committed) is assigned every
//! partition from the beginning and polled on its own thread. Updates are
//! applied to a private map, which is published to readers at most every
//! [`PUBLISH_EVERY`] and whenever the consumer catches up, so a large topic
//! is not copied once per record.
//!
//! Errors are counted and retried by librdkafka, except permanent ones
//! ([`sluice_kafka::errors`]: failed authentication, an untrusted broker
//! certificate, a missing ACL): at start they fail [`follow`] at once, with
//! the table, the brokers and the cause; later they stop the follower and
//! are reported through [`Follower::health`], which the topology watches to
//! stop the agent.
//!
//! Metrics: `lookup.<table>.records` read, `.refused` (records skipped: no
//! key, or a value that is not UTF-8) and `.errors` (consumer errors).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use super::config::KafkaLookupConfig;
use super::{Lookup, LookupTable, LookupType, OpenContext, OpenLookup};
use sluice_core::error::BoxError;
use sluice_core::keys::{self, KeyError};
use sluice_core::metrics::Metrics;
use sluice_kafka::errors::ClientError;
use sluice_kafka::errors::{Health, Role, describe_error};

/// Longest time between two publications while records keep arriving.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// How long [`follow`] waits for the topic's metadata...
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// ...asking in requests of at most this long, so that a permanent error
/// reported meanwhile ends the wait early.
const METADATA_STEP: Duration = Duration::from_millis(500);

/// Stops the follower thread when dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    health: Arc<Health>,
}

impl Follower {
    /// The consumer's permanent error, once it hits one (the follower then
    /// stops; the table keeps what it held).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }
}

/// librdkafka callbacks of a table's consumer: logs and errors.
struct LookupKafkaContext {
    name: String,
    health: Arc<Health>,
}

impl ClientContext for LookupKafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        sluice_kafka::log_librdkafka(&self.name, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.client_error(&error, reason);
    }
}

impl ConsumerContext for LookupKafkaContext {}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `type = "kafka"`.
pub const TYPE: LookupType = LookupType {
    name: "kafka",
    load: |table, _base| {
        let config: KafkaLookupConfig = keys::deserialize(table)?;
        config.validate().map_err(|(key, message)| {
            let at = match key {
                "properties" => config.properties.key_of("properties", &message),
                key => vec![key.to_owned()],
            };
            KeyError::Invalid { at, message }
        })?;
        Ok(Arc::new(config))
    },
};

impl Lookup for KafkaLookupConfig {
    fn uses_embedded_broker(&self) -> bool {
        self.bootstrap_servers.trim() == sluice_kafka::EMBEDDED
    }

    fn open(&self, table: Arc<LookupTable>, ctx: &OpenContext<'_>) -> Result<OpenLookup, BoxError> {
        let bootstrap =
            sluice_kafka::resolve_bootstrap(&self.bootstrap_servers, ctx.embedded_bootstrap)?;
        let follower =
            tokio::task::block_in_place(|| follow(self, &bootstrap, table, ctx.metrics))?;
        Ok(OpenLookup {
            health: Some(follower.health().clone()),
            follower: Some(Box::new(follower)),
            ..OpenLookup::default()
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Starts following `config.topic` into `table`.
pub fn follow(
    config: &KafkaLookupConfig,
    bootstrap: &str,
    table: Arc<LookupTable>,
    metrics: &Metrics,
) -> Result<Follower, ClientError> {
    let fail = |m: String| ClientError(format!("lookup `{}`: {m}", table.name()));
    let errors = metrics.counter(&format!("lookup.{}.errors", table.name()));
    let health = Health::new(Role::Lookup, table.name(), bootstrap, errors.clone());
    let mut client = ClientConfig::new();
    sluice_kafka::consumer_defaults(&mut client)
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-lookup-{}", table.name()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    config
        .properties
        .apply(&mut client)
        .map_err(|e| fail(format!("configuring the consumer: {e}")))?;
    let consumer: BaseConsumer<LookupKafkaContext> = client
        .create_with_context(LookupKafkaContext {
            name: table.name().to_owned(),
            health: health.clone(),
        })
        .map_err(|e| fail(format!("creating the consumer: {}", describe_error(&e))))?;
    let metadata = read_metadata(&consumer, &config.topic, &health)
        .map_err(|e| e.context(format!("lookup `{}`", table.name())))?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        if let Some(err) = topic.error() {
            let e = KafkaError::MetadataFetch(err.into());
            if let Some(failure) = health.check(&e) {
                return Err(fail(failure));
            }
        }
        for p in topic.partitions() {
            assignment
                .add_partition_offset(&config.topic, p.id(), Offset::Beginning)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    if assignment.count() == 0 {
        return Err(fail(format!(
            "topic `{}` has no partitions (does it exist?)",
            config.topic
        )));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| fail(format!("assigning partitions: {}", describe_error(&e))))?;
    let stop = Arc::new(AtomicBool::new(false));
    let records = metrics.counter(&format!("lookup.{}.records", table.name()));
    let refused = metrics.counter(&format!("lookup.{}.refused", table.name()));
    let name = table.name().to_owned();
    let thread = {
        let stop = stop.clone();
        let health = health.clone();
        std::thread::Builder::new()
            .name(format!("lookup-{}", table.name()))
            .spawn(move || {
                let mut map: HashMap<String, String> = HashMap::new();
                let mut dirty = false;
                let mut published = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            records.fetch_add(1, Ordering::Relaxed);
                            let key = m.key().map(String::from_utf8_lossy);
                            let value = m.payload().and_then(|v| std::str::from_utf8(v).ok());
                            match (key, value) {
                                (Some(k), Some(v)) if !v.is_empty() => {
                                    map.insert(k.into_owned(), v.to_owned());
                                }
                                (Some(k), None) if m.payload().is_some_and(|v| !v.is_empty()) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(table = table.name(), key = %k, "lookup record value is not UTF-8; skipped");
                                }
                                (Some(k), _) => {
                                    map.remove(k.as_ref());
                                }
                                (None, _) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(table = table.name(), "lookup record without a key; skipped");
                                }
                            }
                            dirty = true;
                            if published.elapsed() >= PUBLISH_EVERY {
                                table.replace(map.clone());
                                dirty = false;
                                published = Instant::now();
                            }
                        }
                        Some(Err(e)) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            if health.failure().is_some() || health.check(&e).is_some() {
                                // Logged by `health`; the topology stops the agent.
                                break;
                            }
                            tracing::warn!(table = table.name(), "lookup topic: {}", describe_error(&e));
                        }
                        None => {
                            if dirty {
                                table.replace(map.clone());
                                dirty = false;
                                published = Instant::now();
                            }
                        }
                    }
                }
            })
            .map_err(|e| ClientError(format!("lookup `{name}`: starting its thread: {e}")))?
    };
    Ok(Follower {
        stop,
        thread: Some(thread),
        health,
    })
}

/// The metadata of `topic`, asked for until [`METADATA_TIMEOUT`]; a
/// permanent error (the client's callbacks are served between requests)
/// ends the wait at once.
fn read_metadata(
    consumer: &BaseConsumer<LookupKafkaContext>,
    topic: &str,
    health: &Health,
) -> Result<Metadata, ClientError> {
    let deadline = Instant::now() + METADATA_TIMEOUT;
    loop {
        let result = consumer.fetch_metadata(Some(topic), METADATA_STEP);
        // Nothing is assigned yet: polling only serves errors and logs.
        for _ in 0..100 {
            if consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        if let Some(failure) = health.failure() {
            return Err(ClientError(failure.to_owned()));
        }
        match result {
            Ok(metadata) => return Ok(metadata),
            Err(e) => {
                if let Some(failure) = health.check(&e) {
                    return Err(ClientError(failure));
                }
                if Instant::now() >= deadline {
                    return Err(ClientError(format!(
                        "reading the metadata of topic `{topic}` from `{}`: {}",
                        health.brokers(),
                        describe_error(&e)
                    )));
                }
            }
        }
    }
}
