//! The `kafka` channel: a Kafka topic used as the channel, like Flume's
//! Kafka channel. Durable beyond the machine, and shared: agents with the
//! same `group_id` split the topic's partitions between their sinks.
//!
//! ```toml
//! [channels.buffer]
//! type = "kafka"
//! bootstrap_servers = "broker-1:9092"
//! topic = "sluice-buffer"
//! group_id = "sluice-buffer-lake"
//! [channels.buffer.properties]
//! "compression.type" = "zstd"
//! ```
//!
//! - **Send**: every event is produced to `topic` (idempotent producer,
//!   `acks=all`) with its key, body and headers; its origin — topic,
//!   partition, offset and timestamp — travels in the reserved headers
//!   [`ORIGIN_TOPIC`], [`ORIGIN_PARTITION`], [`ORIGIN_OFFSET`] and
//!   [`ORIGIN_TIMESTAMP`] (decimal text), and the timestamp is also the
//!   record's. The incoming ack is released once the brokers acknowledged
//!   every event of the batch, and failed if librdkafka gives up on one
//!   (after its own retries, bounded by `message.timeout.ms`): the source then
//!   does not commit it. Sending enqueues and returns; a full producer queue
//!   makes it wait (backpressure). Records are partitioned by key, so events
//!   with different keys may come out in another order than they went in.
//! - **Receive**: a consumer-group member on `topic` (starting from the
//!   earliest record when the group has no offsets, so nothing produced
//!   before it joined is missed) batches records by `batch_max_events` and
//!   `batch_max_wait`, restores each event's origin from the reserved headers
//!   (which are removed), and hands batches out with new acks. Offsets are
//!   committed every `commit_interval`, per partition only up to the longest
//!   prefix of delivered batches (the Kafka source's
//!   [`Tracker`](crate::sources::kafka)); a batch the sink fails stops its
//!   partitions' commits, so it is read again after a restart or rebalance.
//!   At-least-once.
//! - **Shutdown**: once every sender is dropped (their producer flushed), the
//!   receiver keeps reading until every partition assigned to it is read to
//!   its end (librdkafka's partition EOF; after 30 s without an assignment
//!   it ends anyway), then ends; whatever the topic still holds — other
//!   agents' events, say — stays there for the next run. After the sink stops, the committer makes a last
//!   synchronous commit of what was delivered.
//!
//! - **Errors**: broker and network errors are counted and retried by
//!   librdkafka. A permanent error of the producer or the consumer — failed
//!   authentication, an untrusted broker certificate, a missing ACL
//!   ([`crate::kafka::errors`]) — fails the channel: batches sent to it are
//!   failed, the receiver ends, and the agent stops with an error naming the
//!   channel, the brokers and the cause ([`Opened::health`]).
//! - **Security**: TLS and SASL settings go in `properties`; a value may be
//!   read from a file or the environment
//!   (`"sasl.password" = { env = "KAFKA_PASSWORD" }`), and secrets are never
//!   logged ([`crate::kafka::properties`]).
//!
//! Metrics: `channel.<name>.events_in` (acknowledged by the brokers),
//! `.events_out`, `.errors`, `.undelivered_batches`, `.commits`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, Timestamp, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::channels::{
    Channel, ChannelError, ChannelReceiver, ChannelSender, ChannelType, Closed, OpenChannel,
    OpenContext,
};
use crate::event::{Ack, AckReport, Batch, BatchBuf, NewEvent};
use crate::kafka::closing;
use crate::kafka::errors::ClientError;
use crate::kafka::errors::{Health, Role, describe_error};
use crate::kafka::offsets::{Reported, Tp, Tracker};
use crate::kafka::{KafkaProperties, PropertyError, check_properties, resolve_bootstrap};
use crate::keys::{self, KeyError};
use crate::metrics::{Counter, Metrics};
use crate::units::HumanDuration;

/// Header holding the event's original topic.
pub(crate) const ORIGIN_TOPIC: &str = "sluice.origin.topic";
/// Header holding the event's original partition.
pub(crate) const ORIGIN_PARTITION: &str = "sluice.origin.partition";
/// Header holding the event's original offset.
pub(crate) const ORIGIN_OFFSET: &str = "sluice.origin.offset";
/// Header holding the event's original timestamp (ms, or -1).
pub(crate) const ORIGIN_TIMESTAMP: &str = "sluice.origin.timestamp";
/// How often the receiver checks, after the senders are gone, whether it
/// has read every assigned partition to its end.
const DRAIN_CHECK: Duration = Duration::from_millis(100);
/// Longest wait, after the senders are gone, for a partition assignment
/// before the receiver ends anyway (more agents than partitions).
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the producer to flush when the last sender is dropped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// `[channels.<name>]` with `type = "kafka"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaChannelConfig {
    /// Comma-separated `host:port` list of brokers, or `"embedded"` for the
    /// embedded demo broker.
    pub bootstrap_servers: String,
    /// The topic that holds the channel's events. Give each channel its own.
    pub topic: String,
    /// Consumer group of the receiving side; agents sharing it share the work.
    pub group_id: String,
    /// A batch is handed to the sink as soon as it holds this many events.
    /// Default 1000.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// ...or when this long has passed since its first event. Default `"100ms"`.
    #[serde(default = "default_batch_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// How often delivered offsets are committed. Default `"1s"`.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// librdkafka properties for both the producer and the consumer
    /// (`"compression.type" = "zstd"`, `"security.protocol" = "ssl"`, ...),
    /// overriding Sluice's defaults (`acks = "all"`,
    /// `enable.idempotence = true`, `auto.offset.reset = "earliest"`).
    /// `bootstrap.servers` and `group.id` have their own keys, and offsets
    /// cannot be committed automatically. A value may be read from a file,
    /// `{ file = "/run/secrets/kafka-password" }`, or an environment
    /// variable, `{ env = "KAFKA_PASSWORD" }` (checked when the configuration
    /// is loaded); secret values are never logged.
    #[serde(default)]
    pub properties: KafkaProperties,
}

fn default_batch_max_events() -> usize {
    1000
}

fn default_batch_max_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

impl KafkaChannelConfig {
    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("bootstrap_servers", &self.bootstrap_servers),
            ("topic", &self.topic),
            ("group_id", &self.group_id),
        ] {
            if value.trim().is_empty() {
                return Err((key, "is empty".into()));
            }
        }
        if self.batch_max_events == 0 {
            return Err(("batch_max_events", "must be at least 1".into()));
        }
        if self.batch_max_wait.get().is_zero() {
            return Err(("batch_max_wait", "must be longer than 0ms".into()));
        }
        if self.commit_interval.get().is_zero() {
            return Err(("commit_interval", "must be longer than 0ms".into()));
        }
        check_properties("properties", &self.properties)
            .map_err(|e| ("properties", e.to_string()))?;
        for key in ["enable.auto.commit", "enable.auto.offset.store"] {
            if self.properties.get(key).is_some_and(|v| !v.is_false()) {
                return Err((
                    "properties",
                    format!(
                        "`\"{key}\"` cannot be enabled: offsets are committed only after the sink delivered"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn producer_config(
        &self,
        bootstrap: &str,
        client_id: &str,
    ) -> Result<ClientConfig, PropertyError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        self.properties.apply(&mut c)?;
        Ok(c)
    }

    fn consumer_config(
        &self,
        bootstrap: &str,
        client_id: &str,
    ) -> Result<ClientConfig, PropertyError> {
        let mut c = ClientConfig::new();
        crate::kafka::consumer_defaults(&mut c)
            .set("bootstrap.servers", bootstrap)
            .set("client.id", client_id)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Tells the receiver when it has read everything (shutdown).
            .set("enable.partition.eof", "true");
        self.properties.apply(&mut c)?;
        Ok(c)
    }
}

/// A kafka channel's ends, and the committer to await after the sink ends.
pub struct Opened {
    /// The sending end.
    pub sender: KafkaSender,
    /// The receiving end.
    pub receiver: KafkaReceiver,
    /// Applies acknowledgements and commits; await it after the sink stopped.
    pub committer: tokio::task::JoinHandle<()>,
    /// The channel's permanent error, if its clients hit one; the topology
    /// stops the agent with it ([`Health::failed`]).
    pub health: Arc<Health>,
}

struct Counters {
    events_in: Counter,
    events_out: Counter,
    errors: Counter,
    undelivered: Counter,
    commits: Counter,
}

/// `type = "kafka"`.
pub const TYPE: ChannelType = ChannelType {
    name: "kafka",
    load: |table, _| {
        let config: KafkaChannelConfig = keys::deserialize(table)?;
        config
            .validate()
            .map_err(|(key, message)| KeyError::Invalid {
                at: match key {
                    "properties" => config.properties.key_of(key, &message),
                    key => vec![key.to_owned()],
                },
                message,
            })?;
        Ok(Arc::new(config))
    },
};

impl Channel for KafkaChannelConfig {
    fn durable(&self) -> bool {
        true
    }

    fn uses_embedded_broker(&self) -> bool {
        self.bootstrap_servers == crate::kafka::EMBEDDED
    }

    fn open(&self, name: &str, ctx: &OpenContext<'_>) -> Result<OpenChannel, ChannelError> {
        let opened =
            open(name, self, ctx.embedded_bootstrap, ctx.metrics).map_err(|e| ChannelError {
                channel: name.to_owned(),
                message: e.0,
            })?;
        Ok(OpenChannel {
            sender: ChannelSender::Kafka(opened.sender),
            receiver: ChannelReceiver::Kafka(opened.receiver),
            settle: Some(opened.committer),
            health: Some(opened.health),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Connects channel `name`: creates its producer and consumer and
/// subscribes. Must run inside a tokio runtime.
pub fn open(
    name: &str,
    config: &KafkaChannelConfig,
    embedded_bootstrap: Option<&str>,
    metrics: &Metrics,
) -> Result<Opened, ClientError> {
    let bootstrap =
        resolve_bootstrap(&config.bootstrap_servers, embedded_bootstrap).map_err(|e| e.0)?;
    let c = |what: &str| metrics.counter(&format!("channel.{name}.{what}"));
    let counters = Arc::new(Counters {
        events_in: c("events_in"),
        events_out: c("events_out"),
        errors: c("errors"),
        undelivered: c("undelivered_batches"),
        commits: c("commits"),
    });
    let health = Health::new(Role::Channel, name, &bootstrap, counters.errors.clone());
    let context = || ChannelKafkaContext {
        name: name.to_owned(),
        tracker: Mutex::new(Tracker::default()),
        counters: counters.clone(),
        health: health.clone(),
    };
    let producer: FutureProducer<ChannelKafkaContext> = config
        .producer_config(&bootstrap, &format!("sluice-channel-{name}"))
        .map_err(|e| ClientError(format!("configuring the producer: {e}")))?
        .create_with_context(context())
        .map_err(|e| {
            format!(
                "creating the producer for `{bootstrap}`: {}",
                describe_error(&e)
            )
        })?;
    let consumer: StreamConsumer<ChannelKafkaContext> = config
        .consumer_config(&bootstrap, &format!("sluice-channel-{name}"))
        .map_err(|e| ClientError(format!("configuring the consumer: {e}")))?
        .create_with_context(context())
        .map_err(|e| {
            format!(
                "creating the consumer for `{bootstrap}`: {}",
                describe_error(&e)
            )
        })?;
    consumer.subscribe(&[&config.topic]).map_err(|e| {
        ClientError(format!(
            "subscribing to `{}`: {}",
            config.topic,
            describe_error(&e)
        ))
    })?;
    let consumer = Arc::new(consumer);
    let closed = tokio_util::sync::CancellationToken::new();
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let committer = tokio::spawn(commit_loop(
        consumer.clone(),
        acks_rx,
        config.commit_interval.get(),
        name.to_owned(),
    ));
    info!(channel = name, %bootstrap, topic = %config.topic, group = %config.group_id, "kafka channel open");
    Ok(Opened {
        sender: KafkaSender {
            handle: Arc::new(SenderHandle {
                producer,
                health: health.clone(),
                topic: config.topic.clone(),
                counters,
                closed: closed.clone(),
            }),
        },
        receiver: KafkaReceiver {
            consumer,
            acks: acks_tx,
            closed,
            events: BatchBuf::default(),
            deadline: None,
            closing_since: None,
            at_end: Default::default(),
            next_id: 0,
            max_events: config.batch_max_events,
            max_wait: config.batch_max_wait.get(),
        },
        committer,
        health,
    })
}

/// The sending side of a kafka channel; clone it per producer.
#[derive(Clone)]
pub struct KafkaSender {
    handle: Arc<SenderHandle>,
}

struct SenderHandle {
    producer: FutureProducer<ChannelKafkaContext>,
    /// The channel's, shared with the producer's context.
    health: Arc<Health>,
    topic: String,
    counters: Arc<Counters>,
    /// Cancelled when the last sender is dropped.
    closed: tokio_util::sync::CancellationToken,
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        // After a permanent error nothing queued can be delivered: drop it
        // rather than wait for it.
        if self.health.failure().is_some() {
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
        }
        // Deliveries already waited for by their tasks; this only bounds the
        // wait for whatever librdkafka still holds.
        if let Err(e) = self.producer.flush(FLUSH_TIMEOUT) {
            warn!(topic = %self.topic, error = %e, "flushing the kafka channel's producer");
        }
        self.closed.cancel();
    }
}

type Delivery = rdkafka::producer::DeliveryFuture;

impl KafkaSender {
    /// Produces every event of `batch` and returns once all are enqueued; the
    /// batch's ack is released when the brokers acknowledged them all, and
    /// failed if any could not be delivered.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let h = &self.handle;
        let health = h.health.clone();
        if health.failure().is_some() {
            // The channel failed (the agent is stopping): nothing is stored.
            batch.ack.fail();
            return Ok(());
        }
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(batch.len());
        for event in batch.events.iter() {
            let partition = event.partition().to_string();
            let offset = event.offset().to_string();
            let timestamp = event.timestamp().to_string();
            let mut headers = OwnedHeaders::new_with_capacity(event.headers().count() + 4);
            for (key, value) in event.headers().map_while(Result::ok) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            for (key, value) in [
                (ORIGIN_TOPIC, event.topic()),
                (ORIGIN_PARTITION, partition.as_str()),
                (ORIGIN_OFFSET, offset.as_str()),
                (ORIGIN_TIMESTAMP, timestamp.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let mut record = FutureRecord::to(&h.topic)
                .payload(event.body())
                .headers(headers);
            record.key = event.key();
            if event.timestamp() >= 0 {
                record.timestamp = Some(event.timestamp());
            }
            loop {
                match h.producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Backpressure: wait for librdkafka to make room.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        h.counters.errors.fetch_add(1, Ordering::Relaxed);
                        health.check(&e);
                        error!(topic = %h.topic, error = %describe_error(&e), "producing to the kafka channel failed; failing the batch");
                        batch.ack.fail();
                        break;
                    }
                }
            }
        }
        let Batch { events, ack, .. } = batch;
        let n = events.len() as u64;
        drop(events);
        let counters = h.counters.clone();
        let topic = h.topic.clone();
        tokio::spawn(async move {
            let mut pending: FuturesUnordered<Delivery> = deliveries.into_iter().collect();
            let mut failed = 0u64;
            loop {
                let result = tokio::select! {
                    result = pending.next() => match result {
                        Some(result) => result,
                        None => break,
                    },
                    // No delivery can succeed now; don't wait for them.
                    _ = health.failed() => {
                        failed += pending.len() as u64;
                        break;
                    }
                };
                if let Err(e) = result
                    .map_err(|_| KafkaError::Canceled)
                    .and_then(|r| r.map_err(|(e, _)| e))
                {
                    failed += 1;
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if health.check(&e).is_none() {
                        warn!(%topic, error = %describe_error(&e), "the kafka channel could not store an event");
                    }
                }
            }
            if failed > 0 {
                ack.fail();
            } else {
                counters.events_in.fetch_add(n, Ordering::Relaxed);
            }
            ack.release();
        });
        Ok(())
    }
}

/// The receiving side of a kafka channel, owned by one sink.
pub struct KafkaReceiver {
    consumer: Arc<StreamConsumer<ChannelKafkaContext>>,
    acks: mpsc::UnboundedSender<AckReport>,
    closed: tokio_util::sync::CancellationToken,
    /// The batch being filled; kept here so a cancelled `recv` loses nothing.
    events: BatchBuf,
    deadline: Option<Instant>,
    /// When the receiver first saw the senders gone.
    closing_since: Option<Instant>,
    /// Partitions read to their end (librdkafka's partition EOF) since
    /// their last record.
    at_end: std::collections::HashSet<i32>,
    next_id: u64,
    max_events: usize,
    max_wait: Duration,
}

impl KafkaReceiver {
    /// The next batch; `None` once the senders are gone and every assigned
    /// partition was read to its end. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Batch> {
        let consumer = self.consumer.clone();
        let health = consumer.context().health.clone();
        loop {
            let closing = self.closed.is_cancelled();
            if closing && self.closing_since.is_none() {
                self.closing_since = Some(Instant::now());
            }
            let deadline = self.deadline;
            tokio::select! {
                biased;
                // The channel failed: the agent stops; what was read and not
                // handed out is read again next time.
                _ = health.failed() => return None,
                _ = sleep_until(deadline), if deadline.is_some() => return self.seal(),
                _ = self.closed.cancelled(), if !closing => continue,
                _ = tokio::time::sleep(DRAIN_CHECK), if closing => {
                    let drained = consumer.assignment().is_ok_and(|a| {
                        a.count() > 0 && a.elements().iter().all(|e| self.at_end.contains(&e.partition()))
                    });
                    let waited = self.closing_since.is_some_and(|t| t.elapsed() >= DRAIN_MAX);
                    if drained || waited || !self.events.is_empty() {
                        return self.seal();
                    }
                }
                message = consumer.recv() => match message {
                    Ok(m) => {
                        self.at_end.remove(&m.partition());
                        if self.add(&m) {
                            return self.seal();
                        }
                    }
                    Err(KafkaError::PartitionEOF(p)) => {
                        self.at_end.insert(p);
                    }
                    Err(e) => {
                        consumer.context().counters.errors.fetch_add(1, Ordering::Relaxed);
                        if health.failure().is_none() && health.check(&e).is_none() {
                            warn!(channel = %consumer.context().name, error = %describe_error(&e), "kafka channel consumer error; continuing");
                        }
                    }
                },
            }
        }
    }

    /// Appends a record, restoring its origin; `true` when the batch is full.
    fn add(&mut self, m: &BorrowedMessage<'_>) -> bool {
        let mut origin_topic = None;
        let mut origin = [None::<i64>; 3];
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                let value = h.value.unwrap_or(&[]);
                let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                match h.key {
                    ORIGIN_TOPIC => origin_topic = std::str::from_utf8(value).ok(),
                    ORIGIN_PARTITION => origin[0] = number(),
                    ORIGIN_OFFSET => origin[1] = number(),
                    ORIGIN_TIMESTAMP => origin[2] = number(),
                    key => headers.push((key, value)),
                }
            }
        }
        let record_ts = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) if t >= 0 => t,
            _ => -1,
        };
        self.events.push(&NewEvent {
            key: m.key(),
            body: m.payload().unwrap_or(&[]),
            headers: &headers,
            topic: origin_topic.unwrap_or(m.topic()),
            partition: origin[0].map_or(m.partition(), |p| p as i32),
            offset: origin[1].unwrap_or(m.offset()),
            timestamp: origin[2].unwrap_or(record_ts),
        });
        self.consumer
            .context()
            .tracker()
            .observe(m.topic(), m.partition(), m.offset());
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.max_wait);
        }
        self.events.len() >= self.max_events
    }

    /// Hands the open batch out with a new ack; `None` if it is empty.
    fn seal(&mut self) -> Option<Batch> {
        self.deadline = None;
        if self.events.is_empty() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.consumer.context().tracker().seal(id);
        let events = std::mem::take(&mut self.events);
        self.consumer
            .context()
            .counters
            .events_out
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Some(Batch::new(events, Ack::new(id, self.acks.clone())))
    }
}

/// Applies acknowledgement reports and commits what is delivered, until the
/// receiver and every ack it handed out are gone; then commits synchronously
/// and closes the consumer.
async fn commit_loop(
    consumer: Arc<StreamConsumer<ChannelKafkaContext>>,
    mut acks: mpsc::UnboundedReceiver<AckReport>,
    interval: Duration,
    name: String,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            report = acks.recv() => match report {
                Some(r) => on_report(&consumer, r),
                None => break,
            },
            _ = tick.tick() => {
                let offsets = consumer.context().tracker().committable();
                if !offsets.is_empty() {
                    match commit(&*consumer, &offsets, CommitMode::Async) {
                        Ok(()) => {
                            consumer.context().tracker().mark_committed(&offsets);
                            consumer.context().counters.commits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => warn!(channel = %name, error = %e, "commit failed; retrying next interval"),
                    }
                }
            }
        }
    }
    let closed = closing::off_runtime(closing::CLOSE_LIMIT, move || {
        let offsets = consumer.context().tracker().unconfirmed();
        let result = if offsets.is_empty() {
            Ok(())
        } else {
            commit(&*consumer, &offsets, CommitMode::Sync).map(|()| {
                consumer
                    .context()
                    .counters
                    .commits
                    .fetch_add(1, Ordering::Relaxed);
            })
        };
        drop(consumer);
        result
    })
    .await;
    match closed {
        Ok(Ok(())) => info!(channel = %name, "kafka channel closed"),
        Ok(Err(e)) => {
            warn!(channel = %name, error = %e, "final commit failed; events after the last commit are read again")
        }
        Err(e) => warn!(channel = %name, "closing the consumer: {e}"),
    }
}

fn on_report(consumer: &StreamConsumer<ChannelKafkaContext>, report: AckReport) {
    let outcome = consumer
        .context()
        .tracker()
        .report(report.id, report.delivered);
    if outcome == Reported::Failed {
        consumer
            .context()
            .counters
            .undelivered
            .fetch_add(1, Ordering::Relaxed);
        error!(channel = %consumer.context().name, batch = report.id,
            "the sink did not deliver a batch; its partitions are not committed past it, so it is read again after a restart or rebalance");
    } else {
        debug!(channel = %consumer.context().name, batch = report.id, "batch delivered");
    }
}

fn commit<C: Consumer<ChannelKafkaContext> + ?Sized>(
    consumer: &C,
    offsets: &[(Tp, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    consumer.commit(&tpl, mode)
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// librdkafka callbacks: logs, errors, rebalances, commit results. Holds the
/// offset tracker the rebalance callbacks need.
struct ChannelKafkaContext {
    name: String,
    tracker: Mutex<Tracker>,
    counters: Arc<Counters>,
    /// Shared by the channel's producer and consumer.
    health: Arc<Health>,
}

impl ChannelKafkaContext {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for ChannelKafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_librdkafka(&self.name, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.client_error(&error, reason);
    }
}

impl ConsumerContext for ChannelKafkaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let tps: Vec<Tp> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let offsets = self.tracker().committable_of(&tps);
        if !offsets.is_empty() {
            match commit(consumer, &offsets, CommitMode::Sync) {
                Ok(()) => {
                    let mut t = self.tracker();
                    t.mark_committed(&offsets);
                    t.confirm(&offsets);
                }
                Err(e) => warn!(channel = %self.name, error = %e, "commit on revocation failed"),
            }
        }
        self.tracker().revoke(&tps);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let confirmed: Vec<(Tp, i64)> = offsets
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                        _ => None,
                    })
                    .collect();
                self.tracker().confirm(&confirmed);
            }
            Err(e) => {
                self.tracker().forget_committed();
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.health.check(&e);
                warn!(channel = %self.name, error = %e, "offset commit failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::mocking::MockCluster;
    use tokio::time::timeout;

    use super::*;
    use crate::event::EventRef;
    use crate::kafka::KafkaValue;

    const WAIT: Duration = Duration::from_secs(60);

    /// An event's origin as sinks see it.
    fn origin(e: &EventRef<'_>) -> (String, i32, i64, i64) {
        (
            e.topic().to_owned(),
            e.partition(),
            e.offset(),
            e.timestamp(),
        )
    }

    fn config(bootstrap: &str, group: &str) -> KafkaChannelConfig {
        let mut c: KafkaChannelConfig = toml::from_str(&format!(
            "bootstrap_servers = \"{bootstrap}\"\ntopic = \"chan\"\ngroup_id = \"{group}\"\nbatch_max_events = 10\nbatch_max_wait = \"20ms\"\ncommit_interval = \"20ms\""
        ))
        .unwrap();
        c.validate().unwrap();
        // The mock coordinator waits up to a session timeout for a member
        // that left to be gone before the next one is assigned partitions.
        for (k, v) in [
            ("topic.metadata.refresh.interval.ms", 500),
            ("session.timeout.ms", 6000),
            ("heartbeat.interval.ms", 500),
        ] {
            c.properties.insert(k.into(), KafkaValue::Int(v));
        }
        c
    }

    fn batch(first: i64, n: usize, ack: Ack) -> Batch {
        let mut b = BatchBuf::default();
        for i in 0..n {
            let offset = first + i as i64;
            let body = format!("body-{offset}");
            let key = format!("k{}", offset % 3);
            b.push(&NewEvent {
                key: Some(key.as_bytes()),
                body: body.as_bytes(),
                headers: &[("h", b"1"), ("h", b"2")],
                topic: "orders",
                partition: 7,
                offset,
                timestamp: 1_600_000_000_000 + offset,
            });
        }
        Batch::new(b, ack)
    }

    /// Receives until `n` events arrived; returns the batches.
    async fn receive(rx: &mut KafkaReceiver, n: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        let mut got = 0;
        while got < n {
            let b = timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .expect("channel ended early");
            got += b.len();
            out.push(b);
        }
        out
    }

    #[test]
    fn config_is_validated_with_the_key() {
        let base = "bootstrap_servers = \"b:9092\"\ntopic = \"t\"\ngroup_id = \"g\"\n";
        let check = |extra: &str| {
            toml::from_str::<KafkaChannelConfig>(&format!("{base}{extra}"))
                .unwrap()
                .validate()
                .map_err(|(k, _)| k)
        };
        assert_eq!(check(""), Ok(()));
        assert_eq!(check("batch_max_events = 0"), Err("batch_max_events"));
        assert_eq!(
            check("[properties]\n\"group.id\" = \"x\""),
            Err("properties")
        );
        assert_eq!(
            check("[properties]\n\"enable.auto.commit\" = true"),
            Err("properties")
        );
        assert!(toml::from_str::<KafkaChannelConfig>("topic = \"t\"").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_pass_with_their_origin_and_undelivered_batches_are_read_again() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("chan", 2, 1).expect("topic");
        let bootstrap = mock.bootstrap_servers();
        let metrics = Metrics::new();
        let opened = open("buf", &config(&bootstrap, "g1"), None, &metrics).unwrap();

        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        for i in 0..3 {
            opened
                .sender
                .send(batch(i * 10, 10, Ack::new(i as u64, ack_tx.clone())))
                .await
                .unwrap();
        }
        let mut reports = HashMap::new();
        while reports.len() < 3 {
            let r = timeout(WAIT, ack_rx.recv()).await.unwrap().unwrap();
            reports.insert(r.id, r.delivered);
        }
        assert!(reports.values().all(|d| *d), "{reports:?}");
        assert_eq!(metrics.get("channel.buf.events_in"), 30);

        let mut rx = opened.receiver;
        let batches = receive(&mut rx, 30).await;
        let mut seen: Vec<(String, i32, i64, i64)> = Vec::new();
        for b in &batches {
            for e in b.events.iter() {
                let offset = e.offset();
                assert_eq!(e.body(), format!("body-{offset}").as_bytes());
                assert_eq!(e.key(), Some(format!("k{}", offset % 3).as_bytes()));
                let headers: Vec<(&str, &[u8])> = e.headers().map(Result::unwrap).collect();
                assert_eq!(
                    headers,
                    vec![("h", &b"1"[..]), ("h", &b"2"[..])],
                    "reserved headers removed"
                );
                seen.push(origin(&e));
            }
        }
        seen.sort();
        let want: Vec<_> = (0..30)
            .map(|o| ("orders".to_owned(), 7, o, 1_600_000_000_000 + o))
            .collect();
        assert_eq!(seen, want);

        // The sink fails one batch and delivers the others.
        let failed: Vec<i64> = batches[0].events.iter().map(|e| e.offset()).collect();
        batches[0].ack.fail();
        for b in batches {
            b.release();
        }
        drop(opened.sender);
        assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
        drop(rx);
        timeout(WAIT, opened.committer).await.unwrap().unwrap();
        assert_eq!(metrics.get("channel.buf.undelivered_batches"), 1);

        // After a restart the failed batch's events come again.
        let again = open("buf", &config(&bootstrap, "g1"), None, &Metrics::new()).unwrap();
        let mut rx = again.receiver;
        let mut offsets = Vec::new();
        timeout(WAIT, async {
            while !failed.iter().all(|o| offsets.contains(o)) {
                let b = rx.recv().await.expect("the channel is open");
                offsets.extend(b.events.iter().map(|e| e.offset()));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the failed batch {failed:?} was not read again: {offsets:?}"));
        drop(again.sender);
        while timeout(WAIT, rx.recv()).await.unwrap().is_some() {}
        drop(rx);
        timeout(WAIT, again.committer).await.unwrap().unwrap();
    }
}
