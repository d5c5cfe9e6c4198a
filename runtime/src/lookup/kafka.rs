//! Following a compacted Kafka topic into a lookup table.
//!
//! A plain consumer (no group membership, nothing committed) is assigned every
//! partition from the beginning and polled on its own thread. Updates are
//! applied to a private map, which is published to readers at most every
//! [`PUBLISH_EVERY`] and whenever the consumer catches up, so a large topic
//! is not copied once per record.
//!
//! Metrics: `lookup.<table>.records` read, `.refused` (records skipped: no
//! key, or a value that is not UTF-8) and `.errors` (consumer errors, which
//! librdkafka retries).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::LookupTable;
use super::config::KafkaLookupConfig;
use crate::metrics::Metrics;

/// Longest time between two publications while records keep arriving.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Stops the follower thread when dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts following `config.topic` into `table`.
pub fn follow(
    config: &KafkaLookupConfig,
    bootstrap: &str,
    table: Arc<LookupTable>,
    metrics: &Metrics,
) -> Result<Follower, String> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-lookup-{}", table.name()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in &config.properties {
        client.set(k, v);
    }
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| format!("lookup `{}`: creating the consumer: {e}", table.name()))?;
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), Duration::from_secs(10))
        .map_err(|e| format!("lookup `{}`: reading topic metadata: {e}", table.name()))?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        for p in topic.partitions() {
            assignment
                .add_partition_offset(&config.topic, p.id(), Offset::Beginning)
                .map_err(|e| format!("lookup `{}`: {e}", table.name()))?;
        }
    }
    if assignment.count() == 0 {
        return Err(format!(
            "lookup `{}`: topic `{}` has no partitions (does it exist?)",
            table.name(),
            config.topic
        ));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("lookup `{}`: assigning partitions: {e}", table.name()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let records = metrics.counter(&format!("lookup.{}.records", table.name()));
    let refused = metrics.counter(&format!("lookup.{}.refused", table.name()));
    let errors = metrics.counter(&format!("lookup.{}.errors", table.name()));
    let name = table.name().to_owned();
    let thread = {
        let stop = stop.clone();
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
                            tracing::warn!(table = table.name(), "lookup topic: {e}");
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
            .map_err(|e| format!("lookup `{name}`: starting its thread: {e}"))?
    };
    Ok(Follower {
        stop,
        thread: Some(thread),
    })
}
