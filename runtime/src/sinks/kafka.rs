//! The `kafka` sink: produces every event to a Kafka topic and releases a
//! batch's acknowledgement only once the broker has acknowledged all of it.
//!
//! ```toml
//! [sinks.auths]
//! type = "kafka"
//! bootstrap_servers = "broker-1:9092"
//! topic = "flume.auths"        # fixed topic, and the fallback of topic_header
//! topic_header = "topic"       # optional: the header that names the topic
//! key_header = "card"          # optional: the header used as key
//! headers = "all"              # forward the event's headers ("all" | "none")
//! [sinks.auths.kafka]
//! "linger.ms" = 10
//! ```
//!
//! Like Flume's Kafka sink (including its `topic` header), with the producer
//! idempotent and `acks=all` by default. Events of a batch are all in flight
//! at once, and so are up to 64 batches or 50 000 events together
//! ([`MAX_IN_FLIGHT_BATCHES`], [`MAX_IN_FLIGHT_EVENTS`]). The event's key is
//! the record key (or the `key_header` value when that header is present), its
//! timestamp the record timestamp when known, and its headers are forwarded
//! unless `headers = "none"`.
//!
//! Nothing is dropped: a record that librdkafka fails to deliver (after its
//! own retries, bounded by `message.timeout.ms`) is produced again with a
//! growing backoff, counted in `sink.<name>.retries`, for as long as the
//! channel is open. Once the channel has ended (shutdown), a record gets
//! [`SHUTDOWN_ATTEMPTS`] more tries; if it still fails its batch is failed
//! ([`Ack::fail`](crate::event::Ack::fail)) so the source never commits it.
//! A full producer queue makes the sink wait for deliveries, not fail. An
//! event with no topic (`topic_header` absent and no `topic`) cannot be
//! produced: it is counted in `errors` and fails its batch.
//!
//! A permanent error — failed authentication, an untrusted broker
//! certificate, a missing ACL (a delivery report with
//! `TOPIC_AUTHORIZATION_FAILED`, say) — is not retried: the sink stops with
//! an error naming the brokers and the cause ([`crate::kafka::errors`]), and
//! the batches in flight are failed. TLS and SASL are properties of the
//! `kafka` table; secrets can be read from files or the environment
//! (`"sasl.password" = { file = "/run/secrets/kafka-password" }`) and are
//! never logged ([`crate::kafka::properties`]).
//!
//! Metrics: `sink.<name>.events` and `.bytes` (bodies) delivered, `.errors`,
//! `.retries`.
//!
//! With `exactly_once = true` the sink is transactional instead (Kafka →
//! Kafka exactly-once): see [`transactional`].

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::channels::ChannelReceiver;
use crate::event::{Batch, EventRef};
use crate::kafka::errors::{Health, Role, describe_error};
use crate::kafka::{KafkaProperties, PropertyError, check_properties, resolve_bootstrap};
use crate::keys;
use crate::keys::Invalid;
use crate::metrics::Counter;
use crate::sinks::dead_letter::DeadLetter;
use crate::sinks::{Guarantee, Sink, SinkContext, SinkError, SinkType};
use crate::units::HumanDuration;

pub mod transactional;

/// Batches being produced at once, at most. Bounded by count and by their
/// events together: a source that hands on small batches when its pipeline
/// is idle (`flush_when_idle`) must not be held to a few events per broker
/// round trip (4 batches, the old bound, held the fraud scenario at 10 000
/// events/s to a 2.5 s backlog), and large batches must not queue more than
/// the producer's own buffer (`queue.buffering.max.messages`, 100 000).
const MAX_IN_FLIGHT_BATCHES: usize = 64;
/// Events being produced at once, at most (a batch is let in while fewer
/// are in flight, so the bound may be passed by one batch).
const MAX_IN_FLIGHT_EVENTS: usize = 50_000;
/// Tries per record after the channel has ended, before its batch is failed.
pub(crate) const SHUTDOWN_ATTEMPTS: u32 = 3;
/// First and longest wait between tries of a failed record.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));
/// Longest wait for the producer to flush when the channel ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// `[sinks.<name>]` with `type = "kafka"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Comma-separated `host:port` list of brokers, or `"embedded"` for the
    /// embedded demo broker.
    pub bootstrap_servers: String,
    /// Topic to produce to; with `topic_header`, the topic of events without
    /// that header. At least one of `topic` and `topic_header`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Header whose value names each event's topic (Flume's `topic` header).
    #[serde(default)]
    pub topic_header: Option<String>,
    /// Header whose value becomes the record key; events without it keep
    /// their own key.
    #[serde(default)]
    pub key_header: Option<String>,
    /// Which event headers become record headers: `"all"` (default) or `"none"`.
    #[serde(default)]
    pub headers: HeadersMode,
    /// Exactly-once Kafka → Kafka: produce with transactions that also
    /// commit the consumer offsets of the (single) Kafka source feeding this
    /// sink's channel; see [`transactional`]. Readers of the output must use
    /// `isolation.level = "read_committed"`. Needs `topic` (the topic of
    /// events without a `topic_header`). Default `false`: at-least-once.
    #[serde(default)]
    pub exactly_once: bool,
    /// With `exactly_once`: the producer's `transactional.id`. Default
    /// `sluice-<sink name>-<hostname>`. It must stay the same across restarts
    /// of one agent (a restarted producer aborts what its killed predecessor
    /// left open, at once) and differ between agents (a second live producer
    /// with the same id fences the first, which then stops): set it, e.g.
    /// `"sluice-auths-${AGENT_ID}"`, when several agents share a host.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// With `exactly_once`: how long the broker lets a transaction stay open
    /// before aborting it (`transaction.timeout.ms`). Default `"60s"`.
    #[serde(default)]
    pub transaction_timeout: Option<HumanDuration>,
    /// With `exactly_once`: a transaction is committed once it holds this
    /// many events (whole channel batches are added). Default 10000.
    #[serde(default)]
    pub transaction_max_events: Option<usize>,
    /// With `exactly_once`: ...or this long after its first batch. Default
    /// `"100ms"`; it bounds the latency added before readers see the events.
    #[serde(default)]
    pub transaction_max_wait: Option<HumanDuration>,
    /// Extra librdkafka producer properties (`"linger.ms" = 10`,
    /// `"compression.type" = "zstd"`, `"security.protocol" = "sasl_ssl"`,
    /// ...), overriding Sluice's defaults (`enable.idempotence = true`,
    /// `acks = "all"`). As in the `kafka` source, a value may be read from a
    /// file (`{ file = "/run/secrets/kafka-password" }`) or an environment
    /// variable (`{ env = "KAFKA_PASSWORD" }`), and secrets are never logged.
    #[serde(default)]
    pub kafka: KafkaProperties,
}

/// Which event headers are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadersMode {
    /// Every header, in order.
    #[default]
    All,
    /// None.
    None,
}

impl KafkaSinkConfig {
    /// Checks what serde cannot; the message names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("`bootstrap_servers` is empty; list brokers as \"host:port,host:port\" or write \"embedded\"".into());
        }
        if self.topic.is_none() && self.topic_header.is_none() {
            return Err(Invalid("set `topic` (a fixed topic) or `topic_header` (a header naming the topic), or both".into()));
        }
        for (key, value) in [
            ("topic", &self.topic),
            ("topic_header", &self.topic_header),
            ("key_header", &self.key_header),
            ("transactional_id", &self.transactional_id),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(Invalid(format!("`{key}` is empty")));
            }
        }
        self.validate_transactions()?;
        check_properties("kafka", &self.kafka).map_err(|e| Invalid(e.to_string()))
    }

    fn validate_transactions(&self) -> Result<(), Invalid> {
        let set = [
            ("transactional_id", self.transactional_id.is_some()),
            ("transaction_timeout", self.transaction_timeout.is_some()),
            (
                "transaction_max_events",
                self.transaction_max_events.is_some(),
            ),
            ("transaction_max_wait", self.transaction_max_wait.is_some()),
        ];
        if !self.exactly_once {
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err(Invalid(format!(
                    "`{key}` applies only to transactions; add `exactly_once = true` or remove it"
                )));
            }
            return Ok(());
        }
        if self.topic.is_none() {
            return Err(Invalid("`exactly_once = true` needs `topic`: an event without a `topic_header` could not be produced, yet the transaction would commit its offset".into()));
        }
        for key in ["transactional.id", "transaction.timeout.ms"] {
            if self.kafka.contains_key(key) {
                return Err(Invalid(format!(
                    "`kafka.\"{key}\"` is set by Sluice with `exactly_once`; use `{}` instead",
                    if key == "transactional.id" {
                        "transactional_id"
                    } else {
                        "transaction_timeout"
                    }
                )));
            }
        }
        let timeout = self.transaction_timeout().as_millis();
        if !(1_000..=i32::MAX as u128).contains(&timeout) {
            return Err("`transaction_timeout` must be at least \"1s\"".into());
        }
        if self.transaction_max_events() == 0 {
            return Err(Invalid(
                "`transaction_max_events` must be at least 1".into(),
            ));
        }
        if self.transaction_max_wait() >= self.transaction_timeout() {
            return Err(Invalid(
                "`transaction_max_wait` must be shorter than `transaction_timeout`".into(),
            ));
        }
        Ok(())
    }

    /// `transaction_timeout` or its default.
    pub(crate) fn transaction_timeout(&self) -> Duration {
        self.transaction_timeout
            .map_or(Duration::from_secs(60), HumanDuration::get)
    }

    /// `transaction_max_events` or its default.
    pub fn transaction_max_events(&self) -> usize {
        self.transaction_max_events.unwrap_or(10_000)
    }

    /// `transaction_max_wait` or its default.
    pub fn transaction_max_wait(&self) -> Duration {
        self.transaction_max_wait
            .map_or(Duration::from_millis(100), HumanDuration::get)
    }

    /// `transactional_id`, or `sluice-<sink>-<hostname>`.
    pub fn transactional_id(&self, sink: &str) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{sink}-{}", transactional::agent_id()))
    }

    /// The producer configuration: Sluice's defaults, then the `kafka` table
    /// (`file` and `env` values read now).
    pub fn client_config(
        &self,
        bootstrap: &str,
        client_id: &str,
    ) -> Result<ClientConfig, PropertyError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        self.kafka.apply(&mut config)?;
        Ok(config)
    }

    /// [`Self::client_config`] plus the transactional settings.
    pub(crate) fn transactional_config(
        &self,
        bootstrap: &str,
        sink: &str,
    ) -> Result<ClientConfig, PropertyError> {
        let mut config = self.client_config(bootstrap, &format!("sluice-{sink}"))?;
        config
            .set("transactional.id", self.transactional_id(sink))
            .set(
                "transaction.timeout.ms",
                self.transaction_timeout().as_millis().to_string(),
            );
        Ok(config)
    }
}

/// `type = "kafka"`.
pub const TYPE: SinkType = SinkType {
    name: "kafka",
    takes_dead_letter: true,
    load: |table| {
        let config: KafkaSinkConfig = keys::deserialize(table)?;
        config
            .validate()
            .map_err(|e| config.kafka.invalid("kafka", e))?;
        Ok(Arc::new(config))
    },
};

impl Sink for KafkaSinkConfig {
    fn guarantee(&self) -> Guarantee {
        if self.exactly_once {
            Guarantee::Transactional
        } else {
            Guarantee::AtLeastOnce
        }
    }

    fn uses_embedded_broker(&self) -> bool {
        self.bootstrap_servers == "embedded"
    }

    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(run(self.clone(), input, ctx))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs the sink until its channel ends; see the module docs. `config` was
/// checked when it loaded ([`TYPE`]) and is not checked again.
pub async fn run(
    config: KafkaSinkConfig,
    mut input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let fail = |message: String| SinkError {
        sink: ctx.name.clone(),
        message,
    };
    let bootstrap = resolve_bootstrap(&config.bootstrap_servers, ctx.embedded_bootstrap.as_deref())
        .map_err(|e| fail(e.0))?;
    if config.exactly_once {
        return transactional::run(config, input, ctx, &bootstrap).await;
    }
    let health = Health::new(Role::Sink, &ctx.name, &bootstrap, ctx.counter("errors"));
    let producer = create_producer(
        config.client_config(&bootstrap, &format!("sluice-{}", ctx.name)),
        &ctx.name,
        &health,
        &bootstrap,
    )?;
    info!(sink = %ctx.name, %bootstrap, "kafka sink started");
    let shared = Arc::new(Shared {
        producer,
        health: health.clone(),
        route: Route {
            topic: config.topic,
            topic_header: config.topic_header,
            key_header: config.key_header,
            headers: config.headers,
        },
        closing: AtomicBool::new(false),
        name: ctx.name.clone(),
        events: ctx.counter("events"),
        bytes: ctx.counter("bytes"),
        errors: ctx.counter("errors"),
        retries: ctx.counter("retries"),
        dead_letter: DeadLetter::new(&ctx),
    });

    let mut in_flight = FuturesUnordered::new();
    let mut in_flight_events = 0;
    let mut open = true;
    loop {
        let room =
            in_flight.len() < MAX_IN_FLIGHT_BATCHES && in_flight_events < MAX_IN_FLIGHT_EVENTS;
        tokio::select! {
            batch = input.recv(), if open && room => match batch {
                Some(batch) => {
                    let events = batch.len();
                    in_flight_events += events;
                    in_flight.push(deliver(shared.clone(), batch).map(move |()| events));
                }
                None => {
                    open = false;
                    shared.closing.store(true, Ordering::Release);
                }
            },
            Some(events) = in_flight.next(), if !in_flight.is_empty() => in_flight_events -= events,
            failure = health.failed(), if open || !in_flight.is_empty() => {
                // No retry can succeed. Dropping the deliveries fails their
                // batches; dropping `input` fails those still queued.
                drop(in_flight);
                return Err(fail(failure.to_owned()));
            }
            else => break,
        }
        if let Some((code, reason)) = shared.producer.client().fatal_error() {
            // The producer is unusable. Dropping the deliveries fails their
            // batches; dropping `input` fails those still queued.
            drop(in_flight);
            return Err(fail(format!(
                "the producer failed fatally: {}",
                health.fatal(code, &reason)
            )));
        }
    }

    // Every batch is settled; flush anything else librdkafka still holds.
    let flusher = shared.clone();
    let flushed = tokio::task::spawn_blocking(move || flusher.producer.flush(FLUSH_TIMEOUT)).await;
    match flushed {
        Ok(Ok(())) => {
            info!(sink = %ctx.name, "kafka sink stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(fail(format!(
            "flushing the producer: {}",
            describe_error(&e)
        ))),
        Err(e) => Err(fail(format!("flushing the producer: {e}"))),
    }
}

/// What every batch delivery needs.
struct Shared {
    producer: FutureProducer<SinkKafkaContext>,
    /// Shared with the producer's context.
    health: Arc<Health>,
    route: Route,
    /// The channel has ended: retries become bounded.
    closing: AtomicBool,
    name: String,
    events: Counter,
    bytes: Counter,
    errors: Counter,
    retries: Counter,
    /// Where events that can never be produced go.
    dead_letter: DeadLetter,
}

/// Where and how an event is produced.
struct Route {
    topic: Option<String>,
    topic_header: Option<String>,
    key_header: Option<String>,
    headers: HeadersMode,
}

impl Route {
    fn topic<'a>(&'a self, event: &EventRef<'a>) -> Option<&'a str> {
        self.topic_header
            .as_deref()
            .and_then(|h| event.header(h))
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|t| !t.is_empty())
            .or(self.topic.as_deref())
    }

    fn key<'a>(&self, event: &EventRef<'a>) -> Option<&'a [u8]> {
        self.key_header
            .as_deref()
            .and_then(|h| event.header(h))
            .or_else(|| event.key())
    }

    fn headers(&self, event: &EventRef<'_>) -> Option<OwnedHeaders> {
        if self.headers == HeadersMode::None || event.header_block().is_empty() {
            return None;
        }
        let mut out = OwnedHeaders::new();
        for (key, value) in event.headers().map_while(Result::ok) {
            out = out.insert(Header {
                key,
                value: Some(value),
            });
        }
        Some(out)
    }
}

/// Result of one try of one record.
type Outcome = (usize, Result<(), KafkaError>);

/// Produces every event of a batch, retrying failures; releases the ack when
/// all are acknowledged, fails it otherwise.
async fn deliver(shared: Arc<Shared>, batch: Batch) {
    let mut todo: Vec<usize> = Vec::with_capacity(batch.len());
    let mut unroutable = Vec::new();
    for (i, event) in batch.events.iter().enumerate() {
        if shared.route.topic(&event).is_some() {
            todo.push(i);
        } else {
            unroutable.push((
                i,
                format!(
                    "no topic: the event has no `{}` header and the sink no `topic` to fall back to",
                    shared.route.topic_header.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    if !unroutable.is_empty() {
        shared
            .errors
            .fetch_add(unroutable.len() as u64, Ordering::Relaxed);
        if !divert(&shared, &batch, &unroutable).await {
            return; // dropping the batch fails its ack
        }
    }

    let mut backoff = BACKOFF.0;
    let mut closing_tries = 0u32;
    loop {
        let (permanent, failed): (Vec<_>, Vec<_>) = produce_all(&shared, &batch, &todo)
            .await
            .into_iter()
            .partition(|(_, e)| permanent_for_the_event(e));
        if !permanent.is_empty() {
            let reasons: Vec<(usize, String)> = permanent
                .into_iter()
                .map(|(i, e)| (i, describe_error(&e)))
                .collect();
            if !divert(&shared, &batch, &reasons).await {
                return; // dropping the batch fails its ack
            }
        }
        let failed: Vec<usize> = failed.into_iter().map(|(i, _)| i).collect();
        if failed.is_empty() {
            break;
        }
        if shared.producer.client().fatal_error().is_some() || shared.health.failure().is_some() {
            return; // no retry can succeed; dropping the batch fails its ack
        }
        if shared.closing.load(Ordering::Acquire) {
            closing_tries += 1;
            if closing_tries >= SHUTDOWN_ATTEMPTS {
                error!(
                    sink = %shared.name,
                    events = failed.len(),
                    "records still undelivered at shutdown; failing the batch so its offsets are not committed"
                );
                return; // dropping the batch fails its ack
            }
        }
        shared
            .retries
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        warn!(sink = %shared.name, events = failed.len(), ?backoff, "retrying undelivered records");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
        todo = failed;
    }

    let bytes: usize = batch.events.iter().map(|e| e.body().len()).sum();
    shared
        .events
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    shared.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    batch.release();
}

/// Whether `e` is about the record itself, so that no retry can deliver
/// it: too large for the broker, a topic name the broker refuses.
pub(super) fn permanent_for_the_event(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Sends the events at `reasons` (index, why) of `batch` to the sink's
/// dead-letter channel; without one, stops the sink with an error naming
/// the first. `false` if the batch cannot count as delivered.
async fn divert(shared: &Shared, batch: &Batch, reasons: &[(usize, String)]) -> bool {
    let events: Vec<(EventRef<'_>, String)> = reasons
        .iter()
        .filter_map(|(i, why)| Some((batch.events.get(*i)?, why.clone())))
        .collect();
    if !shared.dead_letter.configured() {
        if let Some((event, why)) = events.first() {
            shared.health.fail(format!(
                "event {}/{}/{} can never be produced ({why}); set `dead_letter` on sink `{}` to send such events to a channel of their own",
                event.topic(),
                event.partition(),
                event.offset(),
                shared.name
            ));
        }
        return false;
    }
    match shared.dead_letter.send(&events, &batch.ack).await {
        Ok(()) => {
            warn!(sink = %shared.name, events = events.len(), reason = %events[0].1, "events dead-lettered: they can never be produced");
            true
        }
        Err(e) => {
            error!(sink = %shared.name, "dead-lettering failed: {e}; the batch is reported as not delivered");
            false
        }
    }
}

/// One try of the records `todo`, all in flight together; returns those
/// that failed, with why.
async fn produce_all(shared: &Shared, batch: &Batch, todo: &[usize]) -> Vec<(usize, KafkaError)> {
    let mut pending = FuturesUnordered::new();
    let mut failed = Vec::new();
    let settle = |(i, r): Outcome, failed: &mut Vec<(usize, KafkaError)>| {
        if let Err(e) = r {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            // A permanent error (a missing ACL) stops the sink; see `run`.
            if shared.health.check(&e).is_none() && !permanent_for_the_event(&e) {
                warn!(sink = %shared.name, error = %describe_error(&e), "record not delivered");
            }
            failed.push((i, e));
        }
    };
    for &i in todo {
        let Some(event) = batch.events.get(i) else {
            continue;
        };
        let Some(topic) = shared.route.topic(&event) else {
            continue;
        };
        let mut record = FutureRecord::to(topic).payload(event.body());
        record.key = shared.route.key(&event);
        record.headers = shared.route.headers(&event);
        if event.timestamp() >= 0 {
            record.timestamp = Some(event.timestamp());
        }
        loop {
            match shared.producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(async move {
                        let r = match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(e),
                            Err(_) => Err(KafkaError::Canceled),
                        };
                        (i, r)
                    });
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Wait for a delivery to make room, then try again.
                    record = r;
                    match pending.next().await {
                        Some(outcome) => settle(outcome, &mut failed),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    settle((i, Err(e)), &mut failed);
                    break;
                }
            }
        }
    }
    while let Some(outcome) = pending.next().await {
        settle(outcome, &mut failed);
    }
    failed
}

/// The producer of a Kafka sink (plain or transactional) from its
/// configuration, with the sink's client context; the error says which
/// step failed and names the brokers.
fn create_producer(
    config: Result<ClientConfig, PropertyError>,
    sink: &str,
    health: &Arc<Health>,
    bootstrap: &str,
) -> Result<FutureProducer<SinkKafkaContext>, SinkError> {
    let fail = |message: String| SinkError {
        sink: sink.to_owned(),
        message,
    };
    config
        .map_err(|e| fail(format!("configuring the producer: {e}")))?
        .create_with_context(SinkKafkaContext {
            name: sink.to_owned(),
            health: health.clone(),
        })
        .map_err(|e| {
            fail(format!(
                "creating the producer for `{bootstrap}`: {}",
                describe_error(&e)
            ))
        })
}

/// Routes the producer's logs to `tracing` and its errors to the sink's
/// [`Health`].
struct SinkKafkaContext {
    name: String,
    health: Arc<Health>,
}

impl rdkafka::ClientContext for SinkKafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_librdkafka(&self.name, level, fac, message);
        // librdkafka only logs why a transaction became abortable (its
        // records are purged); the cause may be permanent (a missing ACL).
        if fac == "TXNERR" {
            self.health.logged_error(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.client_error(&error, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::{Message, Offset, TopicPartitionList};
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;
    use crate::channels::memory::{Capacity, channel};
    use crate::event::{Ack, AckReport, BatchBuf, NewEvent};
    use crate::metrics::Metrics;

    const WAIT: Duration = Duration::from_secs(60);

    fn event<'a>(
        key: Option<&'a [u8]>,
        body: &'a [u8],
        headers: &'a [(&'a str, &'a [u8])],
    ) -> NewEvent<'a> {
        NewEvent {
            key,
            body,
            headers,
            topic: "origin",
            partition: 0,
            offset: 0,
            timestamp: 1_700_000_000_000,
        }
    }

    /// A record as read back.
    #[derive(Debug, PartialEq)]
    struct Record {
        key: Option<Vec<u8>>,
        body: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
        timestamp: Option<i64>,
    }

    /// Reads `n` records of a one-partition topic from the beginning.
    fn read_back(bootstrap: &str, topic: &str, n: usize) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "sluice-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                out.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    body: m.payload().unwrap_or(&[]).to_vec(),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or(&[]).to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
        out
    }

    fn context(name: &str, embedded: &str) -> (SinkContext, Arc<Metrics>) {
        let metrics = Metrics::new();
        let ctx = SinkContext {
            name: name.to_owned(),
            metrics: metrics.clone(),
            embedded_bootstrap: Some(embedded.to_owned()),
            link: None,
            state_dir: None,
            dead_letter: None,
        };
        (ctx, metrics)
    }

    fn config(toml_text: &str) -> KafkaSinkConfig {
        let c: KafkaSinkConfig = toml::from_str(toml_text).unwrap();
        c.validate().unwrap();
        c
    }

    async fn reports(rx: &mut mpsc::UnboundedReceiver<AckReport>, n: usize) -> HashMap<u64, bool> {
        let mut out = HashMap::new();
        timeout(WAIT, async {
            while out.len() < n {
                let r = rx.recv().await.expect("ack report");
                out.insert(r.id, r.delivered);
            }
        })
        .await
        .expect("every batch is reported");
        out
    }

    #[test]
    fn parses_the_example() {
        let c = config(
            r#"
            bootstrap_servers = "broker-1:9092"
            topic = "flume.auths"
            topic_header = "topic"
            key_header = "card"
            headers = "all"
            [kafka]
            "linger.ms" = 10
            "#,
        );
        let cc = c.client_config("b:1", "id").unwrap();
        assert_eq!(cc.get("linger.ms"), Some("10"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("acks"), Some("all"));
        let bad = |t: &str| {
            toml::from_str::<KafkaSinkConfig>(t)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.0))
        };
        assert!(
            bad("bootstrap_servers = \"b\"")
                .unwrap_err()
                .contains("topic_header")
        );
        assert!(bad("bootstrap_servers = \"b\"\ntopic = \"t\"\nheaders = \"some\"").is_err());
        assert!(bad("bootstrap_servers = \"b\"\ntopic = \"t\"\nnope = 1").is_err());
        assert!(bad("bootstrap_servers = \"b\"\ntopic_header = \"h\"").is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn produces_batches_and_acknowledges_them() {
        let mock = MockCluster::new(1).unwrap();
        for t in ["out", "auths", "refunds"] {
            mock.create_topic(t, 1, 1).unwrap();
        }
        let (ctx, metrics) = context("auths", &mock.bootstrap_servers());
        let sink_config = config(
            "bootstrap_servers = \"embedded\"\ntopic = \"out\"\ntopic_header = \"route\"\n[kafka]\n\"linger.ms\" = 1",
        );
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));

        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let mut expected_out = Vec::new();
        for id in 0..3u64 {
            let mut events = BatchBuf::default();
            for i in 0..30 {
                let n = id * 100 + i;
                let body = format!("event {n}");
                let key = format!("key {n}");
                let route: &[u8] = match i % 3 {
                    0 => b"auths",
                    1 => b"refunds",
                    _ => b"",
                };
                let headers: Vec<(&str, &[u8])> = if route.is_empty() {
                    vec![("n", body.as_bytes())]
                } else {
                    vec![("route", route), ("n", body.as_bytes())]
                };
                events.push(&event(Some(key.as_bytes()), body.as_bytes(), &headers));
                if route.is_empty() {
                    expected_out.push(Record {
                        key: Some(key.clone().into_bytes()),
                        body: body.clone().into_bytes(),
                        headers: vec![("n".into(), body.clone().into_bytes())],
                        timestamp: Some(1_700_000_000_000),
                    });
                }
            }
            tx.send(Batch::new(events, Ack::new(id, ack_tx.clone())))
                .await
                .unwrap();
        }
        drop(tx);
        let reported = reports(&mut ack_rx, 3).await;
        assert_eq!(reported, HashMap::from([(0, true), (1, true), (2, true)]));
        timeout(WAIT, sink).await.unwrap().unwrap().unwrap();

        let bootstrap = mock.bootstrap_servers();
        let (out, auths, refunds) = tokio::task::spawn_blocking(move || {
            (
                read_back(&bootstrap, "out", 30),
                read_back(&bootstrap, "auths", 30),
                read_back(&bootstrap, "refunds", 30),
            )
        })
        .await
        .unwrap();
        assert_eq!(
            out, expected_out,
            "fallback topic: bodies, keys, headers in order"
        );
        assert_eq!((auths.len(), refunds.len()), (30, 30));
        assert!(
            auths
                .iter()
                .all(|r| r.headers[0] == ("route".to_owned(), b"auths".to_vec()))
        );
        assert!(
            refunds
                .iter()
                .all(|r| r.headers[0] == ("route".to_owned(), b"refunds".to_vec()))
        );
        assert_eq!(metrics.get("sink.auths.events"), 90);
        assert!(metrics.get("sink.auths.bytes") > 0);
        assert_eq!(metrics.get("sink.auths.errors"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_from_a_header_and_headers_dropped() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("keyed", 1, 1).unwrap();
        let (ctx, _metrics) = context("keyed", &mock.bootstrap_servers());
        let sink_config = config(
            "bootstrap_servers = \"embedded\"\ntopic = \"keyed\"\nkey_header = \"card\"\nheaders = \"none\"",
        );
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let mut events = BatchBuf::default();
        events.push(&event(Some(b"own"), b"a", &[("card", b"4111")]));
        events.push(&event(Some(b"own"), b"b", &[]));
        events.push(&event(None, b"c", &[]));
        tx.send(Batch::new(events, Ack::new(7, ack_tx)))
            .await
            .unwrap();
        drop(tx);
        assert!(reports(&mut ack_rx, 1).await[&7]);
        timeout(WAIT, sink).await.unwrap().unwrap().unwrap();
        let bootstrap = mock.bootstrap_servers();
        let got = tokio::task::spawn_blocking(move || read_back(&bootstrap, "keyed", 3))
            .await
            .unwrap();
        let keys: Vec<Option<&[u8]>> = got.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(keys, vec![Some(&b"4111"[..]), Some(&b"own"[..]), None]);
        assert!(got.iter().all(|r| r.headers.is_empty()));
    }

    /// Without `dead_letter`, an event that can never be produced stops the
    /// sink loudly (it used to fail its batch, which was read again and
    /// failed again, forever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_without_a_topic_stops_a_sink_without_dead_letter() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("routed", 1, 1).unwrap();
        let (ctx, metrics) = context("routed", &mock.bootstrap_servers());
        let sink_config = config("bootstrap_servers = \"embedded\"\ntopic_header = \"to\"");
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let mut good = BatchBuf::default();
        good.push(&event(None, b"x", &[("to", b"routed")]));
        let mut bad = BatchBuf::default();
        bad.push(&event(None, b"y", &[("to", b"routed")]));
        bad.push(&event(None, b"z", &[]));
        // The good batch is delivered before the bad one arrives.
        tx.send(Batch::new(good, Ack::new(1, ack_tx.clone())))
            .await
            .unwrap();
        assert_eq!(reports(&mut ack_rx, 1).await, HashMap::from([(1, true)]));
        tx.send(Batch::new(bad, Ack::new(2, ack_tx.clone())))
            .await
            .unwrap();
        let e = timeout(WAIT, sink).await.unwrap().unwrap().unwrap_err();
        assert!(
            e.to_string().contains("can never be produced")
                && e.to_string().contains("dead_letter"),
            "{e}"
        );
        assert_eq!(reports(&mut ack_rx, 1).await, HashMap::from([(2, false)]));
        assert_eq!(metrics.get("sink.routed.errors"), 1);
        drop(tx);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_that_can_never_be_produced_are_dead_lettered() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("small", 1, 1).unwrap();
        let (dl_tx, mut dl_rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let (mut ctx, metrics) = context("small", &mock.bootstrap_servers());
        ctx.dead_letter = Some(dl_tx);
        let sink_config = config(
            "bootstrap_servers = \"embedded\"\ntopic_header = \"to\"\n[kafka]\n\"message.max.bytes\" = 2000",
        );
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let big = vec![b'x'; 5000];
        let mut events = BatchBuf::default();
        events.push(&event(None, b"fits", &[("to", b"small")]));
        events.push(&event(None, &big, &[("to", b"small")]));
        events.push(&event(None, b"nowhere", &[]));
        tx.send(Batch::new(events, Ack::new(1, ack_tx)))
            .await
            .unwrap();
        drop(tx);
        // The dead-letter sink gets both, with reasons; once it has them the
        // batch is delivered.
        let mut reasons: Vec<(usize, String, String)> = Vec::new();
        while reasons.len() < 2 {
            let dead = timeout(WAIT, dl_rx.recv()).await.unwrap().unwrap();
            reasons.extend(dead.events.iter().map(|e| {
                (
                    e.body().len(),
                    String::from_utf8_lossy(e.header("sluice.dead_letter.reason").unwrap())
                        .into_owned(),
                    String::from_utf8_lossy(e.header("sluice.dead_letter.sink").unwrap())
                        .into_owned(),
                )
            }));
            dead.release();
        }
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|(n, why, _)| *n == 7 && why.contains("no topic")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(n, why, _)| *n == 5000 && why.to_lowercase().contains("too large")),
            "{reasons:?}"
        );
        assert!(reasons.iter().all(|(_, _, sink)| sink == "small"));
        assert!(
            reports(&mut ack_rx, 1).await[&1],
            "delivered: produced or dead-lettered"
        );
        timeout(WAIT, sink).await.unwrap().unwrap().unwrap();
        assert_eq!(metrics.get("sink.small.dead_lettered"), 2);
        let bootstrap = mock.bootstrap_servers();
        let got = tokio::task::spawn_blocking(move || read_back(&bootstrap, "small", 1))
            .await
            .unwrap();
        assert_eq!(got[0].body, b"fits");
    }

    /// A sink on a one-partition topic whose records time out after 1 s.
    fn flaky_sink(
        mock: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        name: &str,
    ) -> (SinkContext, Arc<Metrics>, KafkaSinkConfig) {
        mock.create_topic(name, 1, 1).unwrap();
        let (ctx, metrics) = context(name, &mock.bootstrap_servers());
        let config = config(&format!(
            "bootstrap_servers = \"embedded\"\ntopic = \"{name}\"\n[kafka]\n\"message.timeout.ms\" = 1000"
        ));
        (ctx, metrics, config)
    }

    fn one_event_batch(id: u64, ack_tx: &mpsc::UnboundedSender<AckReport>) -> Batch {
        let mut events = BatchBuf::default();
        events.push(&event(Some(b"k"), b"survives", &[]));
        Batch::new(events, Ack::new(id, ack_tx.clone()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_until_the_broker_is_back() {
        let mock = MockCluster::new(1).unwrap();
        let (ctx, metrics, sink_config) = flaky_sink(&mock, "flaky");
        mock.broker_down(1).unwrap();
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        tx.send(one_event_batch(1, &ack_tx)).await.unwrap();

        // librdkafka gives up after message.timeout.ms; the sink tries again.
        crate::wait::until("a retry", WAIT, || metrics.get("sink.flaky.retries") >= 1).await;
        assert!(
            ack_rx.try_recv().is_err(),
            "not acknowledged while undelivered"
        );
        mock.broker_up(1).unwrap();
        assert!(reports(&mut ack_rx, 1).await[&1]);
        drop(tx);
        timeout(WAIT, sink).await.unwrap().unwrap().unwrap();
        assert!(metrics.get("sink.flaky.errors") >= 1);
        assert_eq!(metrics.get("sink.flaky.events"), 1);
        let bootstrap = mock.bootstrap_servers();
        let got = tokio::task::spawn_blocking(move || read_back(&bootstrap, "flaky", 1))
            .await
            .unwrap();
        assert_eq!(got[0].body, b"survives");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fails_the_batch_after_bounded_retries_at_shutdown() {
        let mock = MockCluster::new(1).unwrap();
        let (ctx, metrics, sink_config) = flaky_sink(&mock, "down");
        mock.broker_down(1).unwrap();
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let sink = tokio::spawn(run(sink_config, rx, ctx));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        tx.send(one_event_batch(2, &ack_tx)).await.unwrap();
        drop(tx); // shutdown: the channel ends
        assert!(!reports(&mut ack_rx, 1).await[&2]);
        timeout(WAIT, sink).await.unwrap().unwrap().unwrap();
        assert_eq!(metrics.get("sink.down.events"), 0);
        // Tried SHUTDOWN_ATTEMPTS times in all; connection errors count too.
        assert_eq!(
            metrics.get("sink.down.retries"),
            u64::from(SHUTDOWN_ATTEMPTS - 1)
        );
        assert!(metrics.get("sink.down.errors") >= u64::from(SHUTDOWN_ATTEMPTS));
    }
}
