//! The `kafka` sink with `exactly_once = true`: Kafka → Kafka exactly-once
//! with producer transactions (KIP-98) that carry the consumer's offsets
//! (KIP-447), for outputs like the fraud scenario's `flume.auths`.
//!
//! ```toml
//! [sinks.auths]
//! type = "kafka"
//! channel = "auths"             # fed by exactly one `kafka` source
//! bootstrap_servers = "broker-1:9092"
//! topic = "flume.auths"
//! exactly_once = true
//! transactional_id = "sluice-auths-${AGENT_ID}"  # default sluice-<sink>-<hostname>
//! transaction_timeout = "60s"
//! transaction_max_events = 10000
//! transaction_max_wait = "100ms"
//! ```
//!
//! **How.** At start the producer calls `init_transactions` with its
//! `transactional.id`: the broker fences any older producer with that id and
//! aborts what it left open (a killed agent's transaction disappears the
//! moment its successor starts, not after `transaction_timeout`). Then, for
//! each unit of work: `begin_transaction`; produce the events of several
//! channel batches (up to `transaction_max_events`, or `transaction_max_wait`
//! after the first); `send_offsets_to_transaction` with, per source
//! partition, the highest offset in the transaction + 1 and the consumer's
//! group metadata ([`SourceLink::group_metadata`]); `commit_transaction`.
//! The output records and the consumer group's committed offsets become
//! visible together or not at all, so after a crash the source resumes
//! exactly after the last committed transaction and readers with
//! `isolation.level = "read_committed"` never see a record twice. The
//! batches' acks are released only after the commit. The source does not
//! commit offsets itself ([`SourceLink::offsets_in_transactions`]).
//!
//! **Rebalances.** Events read in an epoch that is no longer current for
//! their partition (the partition was revoked; its next owner re-reads them
//! from the committed offsets) are dropped and counted in `stale_events`.
//! The commit itself runs under [`SourceLink::begin_commit`] guards, so a
//! revocation waits for it to finish; a partition revoked before that makes
//! the transaction abort and go again without it. The broker fences too: the
//! offsets carry the consumer's generation, and a commit from an older
//! generation is refused.
//!
//! **Errors.** An abortable error (a delivery failure, a timeout, a
//! coordinator change, a refused generation) aborts the transaction; the
//! same events, still held in memory, are produced again in a new one after
//! a backoff with jitter (`retries`, `transactions_aborted`). Once the
//! channel has ended (shutdown) a transaction gets
//! [`SHUTDOWN_ATTEMPTS`](super::SHUTDOWN_ATTEMPTS) tries, then its batches are
//! failed: nothing was committed, so they are read again after a restart. A
//! fatal error — typically the producer fenced by a newer one with the same
//! `transactional.id` — stops the sink with an error; its batches are failed.
//! So does a permanent error ([`crate::kafka::errors`]): failed
//! authentication, an untrusted broker certificate, a missing ACL (on the
//! transactional id at start, on the topic when a partition is added to a
//! transaction); it is not aborted and retried.
//!
//! **Events that can never be produced** (larger than the broker accepts, an
//! invalid record): with a `dead_letter` channel the transaction is aborted,
//! those events are sent there, and once the dead-letter sink has made them
//! durable the rest goes again in a new transaction, whose offsets then
//! cover the dead-lettered events too (`dead_lettered`). Waiting for the
//! dead-letter sink is what keeps them: committing the offsets first would
//! lose them in a crash before that sink wrote them. A crash between the two
//! sends them to the dead-letter channel again after the restart (the
//! dead-letter sink is at-least-once). If the dead-letter sink fails them,
//! the sink stops and its batches are read again after a restart. Without
//! `dead_letter` the sink stops with an error naming the event, rather than
//! abort and retry its transaction forever.
//!
//! **Other sinks fed by the same source.** Every event reaching this sink
//! must come from the one Kafka source feeding its channel (checked when the
//! configuration is loaded), but that source may feed other channels too
//! (another sink, the dead-letter channel of its plugins). Its batches' acks
//! are shared with those sinks, and a transaction commits the consumer
//! group's offsets past its batches; so before committing it waits until
//! every other holder of those acks has made its part durable
//! ([`Ack::until_holders_at_most`]; `sibling_waits` counts the waits). A
//! crash then never leaves another sink short of what the group has moved
//! past. The cost: a transaction commits no sooner than those sinks make
//! their parts durable, so object-store sinks beside it must roll by time
//! (`roll_interval` or `roll_idle`, checked at load), and a slower roll
//! means bigger transactions. A batch another holder failed stops the sink
//! without committing it.
//!
//! Metrics: `sink.<name>.events` and `.bytes` (committed), `.errors`,
//! `.retries`, `.transactions_committed`, `.transactions_aborted`,
//! `.stale_events`, `.dead_lettered`, `.sibling_waits`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::{BACKOFF, KafkaSinkConfig, Route, SHUTDOWN_ATTEMPTS, SinkKafkaContext};
use crate::channels::ChannelReceiver;
use crate::delivery::{SourceLink, Tp};
use crate::event::{Ack, Batch, EventRef};
use crate::kafka::errors::{Health, Role, describe_error};
use crate::metrics::Counter;
use crate::sinks::dead_letter::DeadLetter;
use crate::sinks::{SinkContext, SinkError};

/// Tries of a blocking transaction call that failed with a retriable error.
const CALL_ATTEMPTS: u32 = 5;
/// `init_transactions` waits at most this long per call, and is called
/// again (librdkafka resumes it) until its timeout: a permanent error
/// recorded meanwhile (a wrong password, say) ends the wait this soon.
const INIT_STEP: Duration = Duration::from_secs(1);

/// This agent's id for default transactional ids: the host name.
pub(crate) fn agent_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}

/// Runs the transactional sink until its channel ends; see the module docs.
pub async fn run(
    config: KafkaSinkConfig,
    mut input: ChannelReceiver,
    ctx: SinkContext,
    bootstrap: &str,
) -> Result<(), SinkError> {
    let fail = |message: String| SinkError {
        sink: ctx.name.clone(),
        message,
    };
    let link = ctx.link.clone().ok_or_else(|| {
        fail("`exactly_once = true` needs the sink's channel fed by exactly one `kafka` source, whose offsets the transactions commit".into())
    })?;
    let transactional_id = config.transactional_id(&ctx.name);
    let health = Health::new(Role::Sink, &ctx.name, bootstrap, ctx.counter("errors"));
    let producer = super::create_producer(
        config.transactional_config(bootstrap, &ctx.name),
        &ctx.name,
        &health,
        bootstrap,
    )?;
    let sink = Txn {
        producer: Arc::new(producer),
        health,
        link,
        route: Route {
            topic: config.topic.clone(),
            topic_header: config.topic_header.clone(),
            key_header: config.key_header.clone(),
            headers: config.headers,
        },
        name: ctx.name.clone(),
        transactional_id: transactional_id.clone(),
        timeout: config.transaction_timeout(),
        dead_letter: DeadLetter::new(&ctx),
        metrics: TxnMetrics {
            events: ctx.counter("events"),
            bytes: ctx.counter("bytes"),
            errors: ctx.counter("errors"),
            retries: ctx.counter("retries"),
            committed: ctx.counter("transactions_committed"),
            aborted: ctx.counter("transactions_aborted"),
            stale: ctx.counter("stale_events"),
            sibling_waits: ctx.counter("sibling_waits"),
        },
    };
    sink.init().await.map_err(|e| fail(e.0))?;
    info!(sink = %ctx.name, %bootstrap, %transactional_id, "transactional kafka sink started");

    let max_events = config.transaction_max_events();
    let max_wait = config.transaction_max_wait();
    let mut open: Option<Open> = None;
    let mut input_open = true;
    loop {
        let due = open
            .as_ref()
            .is_some_and(|o| !input_open || o.events >= max_events || Instant::now() >= o.deadline);
        if due && let Some(o) = open.take() {
            sink.settle(o, !input_open).await.map_err(|e| fail(e.0))?;
            continue;
        }
        if !input_open {
            break;
        }
        let deadline = open.as_ref().map(|o| o.deadline);
        tokio::select! {
            batch = input.recv() => match batch {
                Some(batch) => {
                    let o = match open.as_mut() {
                        Some(o) => o,
                        None => {
                            sink.begin().map_err(|e| fail(e.0))?;
                            open.insert(Open::new(Instant::now() + max_wait))
                        }
                    };
                    sink.add(o, batch).await;
                }
                None => input_open = false,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {}
            failure = sink.health.failed() => {
                error!(sink = %ctx.name, error = %failure, "stopping; the open transaction's batches are failed");
                return Err(fail(failure.to_owned())); // dropping `open` fails the acks
            }
        }
    }
    info!(sink = %ctx.name, "transactional kafka sink stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

struct TxnMetrics {
    events: Counter,
    bytes: Counter,
    errors: Counter,
    retries: Counter,
    committed: Counter,
    aborted: Counter,
    stale: Counter,
    sibling_waits: Counter,
}

/// The sink's producer and what its transactions need.
struct Txn {
    producer: Arc<FutureProducer<SinkKafkaContext>>,
    /// Shared with the producer's context.
    health: Arc<Health>,
    link: Arc<SourceLink>,
    route: Route,
    name: String,
    transactional_id: String,
    timeout: Duration,
    dead_letter: DeadLetter,
    metrics: TxnMetrics,
}

/// A channel batch in the open transaction.
struct Held {
    /// Released after the commit; dropped (unreleased) it fails its ack.
    batch: Batch,
    /// The source partitions of the batch, with their highest offset.
    parts: Vec<(Tp, i64)>,
    /// Partitions whose events are stale: dropped, not produced.
    stale: Vec<Tp>,
    /// Indexes of events sent to the dead-letter channel: not produced, but
    /// their offsets are committed.
    dead: Vec<usize>,
}

impl Held {
    fn new(batch: Batch) -> Self {
        let mut parts: Vec<(Tp, i64)> = Vec::new();
        for e in batch.events.iter() {
            match parts
                .iter_mut()
                .find(|((t, p), _)| *p == e.partition() && t == e.topic())
            {
                Some((_, max)) => *max = (*max).max(e.offset()),
                None => parts.push(((e.topic().to_owned(), e.partition()), e.offset())),
            }
        }
        Self {
            batch,
            parts,
            stale: Vec::new(),
            dead: Vec::new(),
        }
    }

    fn batch(&self) -> &Batch {
        &self.batch
    }

    fn is_stale(&self, topic: &str, partition: i32) -> bool {
        self.stale
            .iter()
            .any(|(t, p)| *p == partition && t == topic)
    }

    /// Events to produce, with their index in the batch: neither stale nor
    /// dead-lettered.
    fn live(&self) -> impl Iterator<Item = (usize, EventRef<'_>)> {
        self.batch()
            .events
            .iter()
            .enumerate()
            .filter(|(i, e)| !self.is_stale(e.topic(), e.partition()) && !self.dead.contains(i))
    }
}

/// Where an event is in the open transaction: the index of its batch in
/// [`Open::held`], and its index in that batch.
type At = (usize, usize);

/// The transaction being filled: its batches and the deliveries of what was
/// produced in it.
struct Open {
    held: Vec<Held>,
    /// Live events held.
    events: usize,
    /// When it must be committed.
    deadline: Instant,
    deliveries: FuturesUnordered<BoxFuture<'static, (At, Result<(), KafkaError>)>>,
    /// The first delivery that failed, for a reason that may pass.
    failed: Option<KafkaError>,
    /// Events that can never be produced, and why.
    unproducible: Vec<(At, String)>,
}

impl Open {
    fn new(deadline: Instant) -> Self {
        Self {
            held: Vec::new(),
            events: 0,
            deadline,
            deliveries: FuturesUnordered::new(),
            failed: None,
            unproducible: Vec::new(),
        }
    }

    fn settle_delivery(&mut self, (at, r): (At, Result<(), KafkaError>)) {
        match r {
            Ok(()) => {}
            Err(e) if super::permanent_for_the_event(&e) => {
                self.unproducible.push((at, describe_error(&e)));
            }
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(e);
                }
            }
        }
    }
}

/// Why a transaction did not commit.
#[derive(Debug)]
enum TxnError {
    /// Abort, and try the same events again in a new transaction.
    Abortable(String),
    /// The producer is unusable: stop the sink.
    Fatal(String),
    /// These events can never be produced: abort, dead-letter them, and
    /// try the rest again.
    Unproducible(Vec<(At, String)>),
}

/// Why the sink stops: the producer is unusable, or a batch must not be
/// committed. Its transaction's batches fail, and are read again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Stop(String);

impl From<TxnError> for Stop {
    fn from(e: TxnError) -> Self {
        Stop(e.into_message())
    }
}

impl TxnError {
    fn into_message(self) -> String {
        match self {
            TxnError::Abortable(m) | TxnError::Fatal(m) => m,
            TxnError::Unproducible(events) => format!(
                "{} event(s) can never be produced (first: {})",
                events.len(),
                events.first().map_or("", |(_, why)| why.as_str())
            ),
        }
    }
}

/// What a blocking commit found.
enum Commit {
    Done,
    /// A partition was revoked before its commit could start.
    Stale(Tp),
    /// The source has not published its group metadata (yet).
    NoGroup,
}

impl Txn {
    fn fatal_message(&self, what: &str, e: &KafkaError) -> String {
        let fenced_code = |c: RDKafkaErrorCode| {
            matches!(
                c,
                RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch
            )
        };
        // The client's fatal error names the cause; `e` may be a symptom
        // (a purged record).
        let cause = match self.producer.client().fatal_error() {
            Some((code, reason)) => (Some(code), format!("{reason} ({code:?})")),
            None => match e {
                KafkaError::Transaction(rd) => (Some(rd.code()), e.to_string()),
                _ => (None, e.to_string()),
            },
        };
        if cause.0.is_some_and(fenced_code) {
            format!(
                "{what}: the producer was fenced: another producer started with transactional.id `{}`; each agent needs its own `transactional_id` (a restarted agent replaces its predecessor): {}",
                self.transactional_id, cause.1
            )
        } else if let Some((code, reason)) = self.producer.client().fatal_error() {
            format!("{what}: {}", self.health.fatal(code, &reason))
        } else {
            format!("{what}: fatal producer error: {}", describe_error(e))
        }
    }

    fn classify(&self, what: &str, e: KafkaError) -> TxnError {
        // A permanent error is not aborted and retried: it would fail again.
        if let Some(failure) = self
            .health
            .failure()
            .map(str::to_owned)
            .or_else(|| self.health.check(&e))
        {
            return TxnError::Fatal(format!("{what}: {failure}"));
        }
        let fatal = matches!(&e, KafkaError::Transaction(rd) if rd.is_fatal())
            || self.producer.client().fatal_error().is_some();
        if fatal {
            TxnError::Fatal(self.fatal_message(what, &e))
        } else {
            TxnError::Abortable(format!("{what}: {}", describe_error(&e)))
        }
    }

    /// Runs a blocking transaction call, again while it fails retriably;
    /// returns at once when a permanent error is recorded (the call itself
    /// then ends within its timeout, off the async runtime).
    async fn call(
        &self,
        what: &'static str,
        f: impl Fn(&FutureProducer<SinkKafkaContext>, Duration) -> Result<(), KafkaError>
        + Send
        + Sync
        + 'static,
    ) -> Result<(), TxnError> {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let health = self.health.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                tries += 1;
                match f(&producer, timeout) {
                    Err(KafkaError::Transaction(rd))
                        if rd.is_retriable()
                            && !rd.is_fatal()
                            && tries < CALL_ATTEMPTS
                            && health.failure().is_none() =>
                    {
                        std::thread::sleep(Duration::from_millis(100 * u64::from(tries)));
                    }
                    other => return other,
                }
            }
        });
        let result = tokio::select! {
            result = blocking => result.map_err(|e| TxnError::Fatal(format!("{what}: {e}")))?,
            failure = self.health.failed() => {
                return Err(TxnError::Fatal(format!("{what}: {failure}")));
            }
        };
        result.map_err(|e| self.classify(what, e))
    }

    /// `init_transactions`, retried with backoff while the broker is away.
    async fn init(&self) -> Result<(), Stop> {
        let mut backoff = BACKOFF.0;
        let mut tries = 0;
        loop {
            tries += 1;
            let health = self.health.clone();
            match self
                .call("initializing transactions", move |p, t| {
                    init_in_steps(p, t, &health)
                })
                .await
            {
                Ok(()) => return Ok(()),
                Err(TxnError::Abortable(m)) if tries < 10 => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(sink = %self.name, error = %m, ?backoff, "retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn begin(&self) -> Result<(), Stop> {
        self.producer
            .begin_transaction()
            .map_err(|e| Stop(self.fatal_message("beginning a transaction", &e)))
    }

    /// Adds a channel batch to the open transaction and produces its events.
    async fn add(&self, open: &mut Open, batch: Batch) {
        let mut held = Held::new(batch);
        self.drop_stale(&mut held);
        open.events += self.produce(open.held.len(), &held, open).await;
        open.held.push(held);
    }

    /// Marks the partitions of `held` that are no longer current; `true` if
    /// any was newly found stale.
    fn drop_stale(&self, held: &mut Held) -> bool {
        let epoch = held.batch().ack.epoch();
        let newly: Vec<Tp> = held
            .parts
            .iter()
            .map(|(tp, _)| tp)
            .filter(|(t, p)| !held.is_stale(t, *p) && !self.link.is_current(t, *p, epoch))
            .cloned()
            .collect();
        if newly.is_empty() {
            return false;
        }
        let n = held
            .batch()
            .events
            .iter()
            .filter(|e| {
                newly
                    .iter()
                    .any(|(t, p)| *p == e.partition() && t == e.topic())
            })
            .count();
        self.metrics.stale.fetch_add(n as u64, Ordering::Relaxed);
        warn!(sink = %self.name, partitions = ?newly, events = n, "dropping events of revoked partitions; their next owner reads them again");
        held.stale.extend(newly);
        true
    }

    /// Produces the live events of `held`, batch `h` of the open
    /// transaction; returns how many.
    async fn produce(&self, h: usize, held: &Held, open: &mut Open) -> usize {
        let mut n = 0;
        for (i, event) in held.live() {
            n += 1;
            let at = (h, i);
            // `topic` is required with exactly_once, so every event has one.
            let Some(topic) = self.route.topic(&event) else {
                continue;
            };
            let mut record = FutureRecord::to(topic).payload(event.body());
            record.key = self.route.key(&event);
            record.headers = self.route.headers(&event);
            if event.timestamp() >= 0 {
                record.timestamp = Some(event.timestamp());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        open.deliveries.push(Box::pin(async move {
                            let r = match delivery.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(e),
                                Err(_) => Err(KafkaError::Canceled),
                            };
                            (at, r)
                        }));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Wait for a delivery to make room, then try again.
                        record = r;
                        match open.deliveries.next().await {
                            Some(r) => open.settle_delivery(r),
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        open.settle_delivery((at, Err(e)));
                        break;
                    }
                }
            }
        }
        n
    }

    /// Commits the open transaction, aborting and retrying it on abortable
    /// errors; releases its batches' acks once committed.
    async fn settle(&self, mut open: Open, closing: bool) -> Result<(), Stop> {
        self.await_siblings(&open.held).await?;
        let mut backoff = BACKOFF.0;
        let mut tries = 0;
        loop {
            tries += 1;
            let message = match self.try_commit(&mut open).await {
                Ok(()) => {
                    self.release(open);
                    return Ok(());
                }
                Err(TxnError::Fatal(m)) => {
                    error!(sink = %self.name, error = %m, "stopping; the transaction's batches are failed");
                    return Err(Stop(m)); // dropping `open` fails the acks
                }
                Err(TxnError::Unproducible(events)) => {
                    warn!(sink = %self.name, events = events.len(), reason = %events[0].1, "aborting the transaction to dead-letter events that can never be produced");
                    self.abort(&mut open).await?;
                    self.dead_letter(&mut open, events).await?;
                    self.reproduce(&mut open).await?;
                    continue;
                }
                Err(TxnError::Abortable(m)) => m,
            };
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            warn!(sink = %self.name, error = %message, "aborting the transaction");
            self.abort(&mut open).await?;
            if closing && tries >= SHUTDOWN_ATTEMPTS {
                error!(sink = %self.name, batches = open.held.len(), "transaction still failing at shutdown; failing its batches so they are read again");
                return Ok(()); // dropping `open` fails the acks
            }
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF.1);
            self.reproduce(&mut open).await?;
        }
    }

    /// Waits until every other holder of the open transaction's source
    /// batches — another sink fed by the same source, the dead-letter sink of
    /// the source's plugins — has made its part durable: the commit moves
    /// the consumer group past those batches, so after a crash nothing would
    /// read them again for the others. A batch another holder failed stops
    /// the sink instead (its offsets must not be committed; the transaction
    /// is left to abort and the batches are read again after a restart).
    async fn await_siblings(&self, held: &[Held]) -> Result<(), Stop> {
        for (i, h) in held.iter().enumerate() {
            let ack = &h.batch.ack;
            if held[..i].iter().any(|h| h.batch.ack.same_batch(ack)) {
                continue;
            }
            let mine = held[i..]
                .iter()
                .filter(|h| h.batch.ack.same_batch(ack))
                .count();
            if ack.holders() > mine {
                self.metrics.sibling_waits.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = ack.until_holders_at_most(mine) => {}
                failure = self.health.failed() => return Err(Stop(failure.to_owned())),
            }
            if ack.is_failed() {
                return Err(Stop(
                    "another sink fed by the same source failed part of a batch in this transaction; stopping without committing it, so the batch is read again after a restart"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Produces the events of the aborted `open` again in a new transaction,
    /// less what went stale or was dead-lettered.
    async fn reproduce(&self, open: &mut Open) -> Result<(), Stop> {
        self.begin()?;
        let held = std::mem::take(&mut open.held);
        open.events = 0;
        for mut h in held {
            self.drop_stale(&mut h);
            open.events += self.produce(open.held.len(), &h, open).await;
            open.held.push(h);
        }
        Ok(())
    }

    /// Sends `events` of the aborted `open` to the dead-letter channel and
    /// waits until its sink has them durable: the next transaction commits
    /// the offsets past them, so they must not depend on anything later.
    /// Marks them dead-lettered in their batches.
    async fn dead_letter(&self, open: &mut Open, events: Vec<(At, String)>) -> Result<(), Stop> {
        let (to, mut report) = tokio::sync::mpsc::unbounded_channel();
        let ack = Ack::new(0, to);
        let refs: Vec<(EventRef<'_>, String)> = events
            .iter()
            .filter_map(|((h, i), why)| {
                Some((open.held.get(*h)?.batch.events.get(*i)?, why.clone()))
            })
            .collect();
        let sent = self.dead_letter.send(&refs, &ack).await;
        ack.release();
        sent.map_err(|e| {
            Stop(format!(
                "dead-lettering {} event(s) that can never be produced: {e}",
                refs.len()
            ))
        })?;
        drop(refs);
        let delivered = report.recv().await.is_some_and(|r| r.delivered);
        if !delivered {
            return Err(Stop(format!(
                "the dead-letter sink did not take {} event(s) that can never be produced (first: {}); the transaction's batches are failed and read again after a restart",
                events.len(),
                events[0].1
            )));
        }
        for ((h, i), _) in events {
            open.held[h].dead.push(i);
        }
        Ok(())
    }

    async fn abort(&self, open: &mut Open) -> Result<(), TxnError> {
        // Purges what is still queued; those deliveries fail, as expected.
        let result = self
            .call("aborting a transaction", |p, t| p.abort_transaction(t))
            .await;
        open.deliveries.clear();
        open.failed = None;
        open.unproducible.clear();
        self.metrics.aborted.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => Ok(()),
            Err(TxnError::Abortable(m)) => Err(TxnError::Fatal(m)),
            Err(e) => Err(e),
        }
    }

    async fn try_commit(&self, open: &mut Open) -> Result<(), TxnError> {
        while let Some(r) = open.deliveries.next().await {
            open.settle_delivery(r);
        }
        if !open.unproducible.is_empty() {
            let events = std::mem::take(&mut open.unproducible);
            if self.dead_letter.configured() {
                return Err(TxnError::Unproducible(events));
            }
            // Aborting and retrying would fail the same way, forever.
            let ((h, i), why) = &events[0];
            let event = open.held[*h].batch.events.get(*i);
            return Err(TxnError::Fatal(format!(
                "event {} can never be produced ({why}); the exactly-once sink stops rather than retry its transaction forever; set `dead_letter` on sink `{}` to send such events to a channel of their own",
                event.map_or_else(String::new, |e| format!(
                    "{}/{}/{}",
                    e.topic(),
                    e.partition(),
                    e.offset()
                )),
                self.name
            )));
        }
        if let Some(e) = open.failed.take() {
            return Err(self.classify("producing a record", e));
        }
        let mut revoked = false;
        for held in &mut open.held {
            revoked |= self.drop_stale(held);
        }
        if revoked {
            return Err(TxnError::Abortable(
                "partitions were revoked; the transaction goes again without their events".into(),
            ));
        }
        // Per source partition: the next offset, and the oldest epoch its
        // events were read in.
        let mut offsets: BTreeMap<Tp, (i64, u64)> = BTreeMap::new();
        for held in &open.held {
            let epoch = held.batch().ack.epoch();
            for (tp, max) in &held.parts {
                if held.is_stale(&tp.0, tp.1) {
                    continue;
                }
                let slot = offsets.entry(tp.clone()).or_insert((max + 1, epoch));
                slot.0 = slot.0.max(max + 1);
                slot.1 = slot.1.min(epoch);
            }
        }
        let producer = self.producer.clone();
        let link = self.link.clone();
        let timeout = self.timeout;
        let committed =
            tokio::task::spawn_blocking(move || commit(&producer, &link, &offsets, timeout))
                .await
                .map_err(|e| TxnError::Fatal(format!("committing a transaction: {e}")))?;
        match committed {
            Ok(Commit::Done) => Ok(()),
            Ok(Commit::Stale(tp)) => Err(TxnError::Abortable(format!(
                "partition {}/{} was revoked before the commit",
                tp.0, tp.1
            ))),
            Ok(Commit::NoGroup) => Err(TxnError::Abortable(
                "the source has no consumer group metadata yet".into(),
            )),
            Err((what, e)) => Err(self.classify(what, e)),
        }
    }

    /// Counts the committed transaction, then releases its acks: whoever
    /// learns of a delivery finds it already in the metrics.
    fn release(&self, open: Open) {
        let bytes: u64 = open
            .held
            .iter()
            .map(|held| held.live().map(|(_, e)| e.body().len() as u64).sum::<u64>())
            .sum();
        self.metrics
            .events
            .fetch_add(open.events as u64, Ordering::Relaxed);
        self.metrics.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.metrics.committed.fetch_add(1, Ordering::Relaxed);
        for held in open.held {
            held.batch.release();
        }
    }
}

/// Sends the offsets to the transaction and commits it, under commit guards
/// of every partition (a revocation waits for them). Blocking.
fn commit(
    producer: &FutureProducer<SinkKafkaContext>,
    link: &SourceLink,
    offsets: &BTreeMap<Tp, (i64, u64)>,
    timeout: Duration,
) -> Result<Commit, (&'static str, KafkaError)> {
    let mut guards = Vec::with_capacity(offsets.len());
    for (tp, (_, epoch)) in offsets {
        match link.begin_commit(tp, *epoch) {
            Some(g) => guards.push(g),
            None => return Ok(Commit::Stale(tp.clone())),
        }
    }
    if !offsets.is_empty() {
        let what = "sending offsets to the transaction";
        let Some(group) = link.group_metadata() else {
            return Ok(Commit::NoGroup);
        };
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for ((topic, partition), (next, _)) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| (what, e))?;
        }
        retry(|| producer.send_offsets_to_transaction(&tpl, &group, timeout))
            .map_err(|e| (what, e))?;
    }
    retry(|| producer.commit_transaction(timeout)).map_err(|e| ("committing a transaction", e))?;
    drop(guards);
    Ok(Commit::Done)
}

/// `init_transactions` with timeout `timeout`, in calls of at most
/// [`INIT_STEP`] (librdkafka resumes a timed-out call), so that it returns
/// soon after `health` records a permanent error.
fn init_in_steps(
    producer: &FutureProducer<SinkKafkaContext>,
    timeout: Duration,
    health: &Health,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match producer.init_transactions(left.min(INIT_STEP)) {
            Err(KafkaError::Transaction(rd))
                if rd.is_retriable()
                    && !rd.is_fatal()
                    && Instant::now() < deadline
                    && health.failure().is_none() => {}
            other => return other,
        }
    }
}

/// Calls `f` again while it fails retriably (librdkafka's contract for
/// `send_offsets_to_transaction` and `commit_transaction` timeouts).
fn retry(mut f: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match f() {
            Err(KafkaError::Transaction(rd))
                if rd.is_retriable() && !rd.is_fatal() && tries < CALL_ATTEMPTS =>
            {
                std::thread::sleep(Duration::from_millis(100 * u64::from(tries)));
            }
            other => return other,
        }
    }
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

#[cfg(test)]
mod tests {
    //! On librdkafka's mock cluster, which speaks the transactional protocol
    //! (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
    //! EndTxn, fencing by producer epoch) but keeps no transaction state: it
    //! neither stores offsets sent to a transaction nor hides aborted records
    //! from `read_committed` readers. The tests therefore check what the sink
    //! does (acks, retries, what it produces in which attempt), and the
    //! end-to-end test `kafka_to_kafka_exactly_once` checks the outcome on a
    //! real broker.

    use std::collections::HashMap;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;
    use crate::channels::ChannelSender;
    use crate::channels::memory::{Capacity, channel};
    use crate::event::{Ack, AckReport, BatchBuf, NewEvent};
    use crate::metrics::Metrics;

    const WAIT: Duration = Duration::from_secs(60);
    type Mock = MockCluster<'static, DefaultProducerContext>;

    fn mock() -> Mock {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("in", 3, 1).unwrap();
        mock.create_topic("out", 1, 1).unwrap();
        mock
    }

    /// A member of group `g` on `in`, for real group metadata.
    async fn member(bootstrap: &str) -> (BaseConsumer, ConsumerGroupMetadata) {
        let bootstrap = bootstrap.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "g")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            consumer.subscribe(&["in"]).unwrap();
            let deadline = Instant::now() + WAIT;
            while consumer.assignment().unwrap().count() == 0 {
                assert!(Instant::now() < deadline, "no assignment");
                let _ = consumer.poll(Duration::from_millis(50));
            }
            let metadata = consumer.group_metadata().unwrap();
            (consumer, metadata)
        })
        .await
        .unwrap()
    }

    struct Setup {
        mock: Mock,
        link: Arc<SourceLink>,
        epoch: u64,
        metrics: Arc<Metrics>,
        tx: ChannelSender,
        sink: tokio::task::JoinHandle<Result<(), SinkError>>,
        acks: mpsc::UnboundedSender<AckReport>,
        reports: mpsc::UnboundedReceiver<AckReport>,
        _member: BaseConsumer,
    }

    async fn setup(mock: Mock, extra: &str) -> Setup {
        setup_with(mock, extra, None).await
    }

    async fn setup_with(mock: Mock, extra: &str, dead_letter: Option<ChannelSender>) -> Setup {
        let (member, metadata) = member(&mock.bootstrap_servers()).await;
        let link = SourceLink::new("src");
        let epoch = link.assign(&[tp(0), tp(1), tp(2)]);
        link.set_group_metadata(Some(metadata));
        link.set_offsets_in_transactions();
        let metrics = Metrics::new();
        let ctx = SinkContext {
            name: "auths".into(),
            metrics: metrics.clone(),
            embedded_bootstrap: Some(mock.bootstrap_servers()),
            link: Some(link.clone()),
            state_dir: None,
            dead_letter,
        };
        let config: KafkaSinkConfig = toml::from_str(&format!(
            "bootstrap_servers = \"embedded\"\ntopic = \"out\"\nexactly_once = true\ntransactional_id = \"t-1\"\n{extra}"
        ))
        .unwrap();
        config.validate().unwrap();
        let (tx, rx) = channel(Capacity {
            events: 10_000,
            bytes: 1 << 24,
        });
        let sink = tokio::spawn(super::super::run(config, rx, ctx));
        let (acks, reports) = mpsc::unbounded_channel();
        Setup {
            mock,
            link,
            epoch,
            metrics,
            tx,
            sink,
            acks,
            reports,
            _member: member,
        }
    }

    fn tp(p: i32) -> Tp {
        ("in".into(), p)
    }

    /// Batch `id` read in `epoch`: events `(partition, offset)` with body
    /// `p<partition>-<offset>`.
    fn batch(s: &Setup, id: u64, epoch: u64, events: &[(i32, i64)]) -> Batch {
        let mut buf = BatchBuf::default();
        for (p, o) in events {
            let body = format!("p{p}-{o}");
            buf.push(&NewEvent {
                key: None,
                body: body.as_bytes(),
                headers: &[],
                topic: "in",
                partition: *p,
                offset: *o,
                timestamp: -1,
            });
        }
        Batch::new(buf, Ack::in_epoch(id, epoch, s.acks.clone()))
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

    /// Bodies of every record in `out` (committed or not: the mock keeps no
    /// transaction markers).
    async fn output(mock: &Mock) -> Vec<String> {
        let bootstrap = mock.bootstrap_servers();
        tokio::task::spawn_blocking(move || {
            let reader: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "reader")
                .set("enable.partition.eof", "true")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("out", 0, Offset::Beginning)
                .unwrap();
            reader.assign(&tpl).unwrap();
            let mut out = Vec::new();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                match reader.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        out.push(String::from_utf8_lossy(m.payload().unwrap_or(&[])).into_owned())
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    _ => {}
                }
            }
            out
        })
        .await
        .unwrap()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_are_released_once_the_transaction_commits() {
        let mut s = setup(mock(), "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        s.tx.send(batch(&s, 1, e, &[(0, 0), (1, 0), (0, 1)]))
            .await
            .unwrap();
        s.tx.send(batch(&s, 2, e, &[(2, 5), (1, 1)])).await.unwrap();
        assert_eq!(
            reports(&mut s.reports, 2).await,
            HashMap::from([(1, true), (2, true)])
        );
        assert!(s.metrics.get("sink.auths.transactions_committed") >= 1);
        // The end of the channel commits what is open.
        s.tx.send(batch(&s, 3, e, &[(0, 2)])).await.unwrap();
        drop(s.tx);
        let r = timeout(WAIT, s.reports.recv()).await.unwrap().unwrap();
        assert_eq!((r.id, r.delivered), (3, true));
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
        assert_eq!(s.metrics.get("sink.auths.events"), 6);
        assert_eq!(s.metrics.get("sink.auths.transactions_aborted"), 0);
        assert_eq!(
            sorted(output(&s.mock).await),
            ["p0-0", "p0-1", "p0-2", "p1-0", "p1-1", "p2-5"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_can_never_be_produced_stops_the_sink() {
        let mut s = setup(
            mock(),
            "transaction_max_wait = \"50ms\"\n[kafka]\n\"message.max.bytes\" = 2000",
        )
        .await;
        let mut buf = BatchBuf::default();
        buf.push(&NewEvent {
            key: None,
            body: &[b'x'; 5000],
            headers: &[],
            topic: "in",
            partition: 0,
            offset: 0,
            timestamp: -1,
        });
        s.tx.send(Batch::new(buf, Ack::in_epoch(1, s.epoch, s.acks.clone())))
            .await
            .unwrap();
        let e = timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap_err();
        assert!(e.to_string().contains("can never be produced"), "{e}");
        assert_eq!(
            reports(&mut s.reports, 1).await,
            HashMap::from([(1, false)])
        );
        assert_eq!(
            s.metrics.get("sink.auths.transactions_aborted"),
            0,
            "not retried"
        );
    }

    /// With `dead_letter`, the transaction is aborted, the unproducible
    /// event is dead-lettered, and only once the dead-letter sink has it does
    /// a new transaction commit the rest with the offsets past it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_can_never_be_produced_is_dead_lettered_before_the_commit() {
        let (dl_tx, mut dl_rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 24,
        });
        let mut s = setup_with(
            mock(),
            "transaction_max_wait = \"50ms\"\n[kafka]\n\"message.max.bytes\" = 2000",
            Some(dl_tx),
        )
        .await;
        let big = vec![b'x'; 5000];
        let mut buf = BatchBuf::default();
        for (p, o, body) in [(0, 0, &b"p0-0"[..]), (0, 1, &big[..]), (1, 0, &b"p1-0"[..])] {
            buf.push(&NewEvent {
                key: None,
                body,
                headers: &[],
                topic: "in",
                partition: p,
                offset: o,
                timestamp: -1,
            });
        }
        s.tx.send(Batch::new(buf, Ack::in_epoch(1, s.epoch, s.acks.clone())))
            .await
            .unwrap();
        let dead = timeout(WAIT, dl_rx.recv()).await.unwrap().unwrap();
        assert_eq!(dead.len(), 1);
        let event = dead.events.get(0).unwrap();
        assert_eq!((event.partition(), event.offset()), (0, 1));
        assert_eq!(event.body(), &big[..]);
        let reason = event
            .header(crate::event::DEAD_LETTER_REASON)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap();
        assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
        // Nothing is committed while the dead-letter sink does not have it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            s.reports.try_recv().is_err(),
            "released before dead-lettered"
        );
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 0);
        dead.release();
        assert_eq!(reports(&mut s.reports, 1).await, HashMap::from([(1, true)]));
        assert_eq!(s.metrics.get("sink.auths.dead_lettered"), 1);
        assert_eq!(s.metrics.get("sink.auths.events"), 2);
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 1);
        drop(s.tx);
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
        let out = output(&s.mock).await;
        assert!(out.iter().all(|b| b.len() < 100), "{out:?}");
        assert!(out.contains(&"p0-0".to_owned()) && out.contains(&"p1-0".to_owned()));
    }

    /// The dead-letter sink failing the event fails the batch (it is read
    /// again after a restart) and stops the sink: nothing past it commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_letter_that_fails_stops_the_sink_without_committing() {
        let (dl_tx, mut dl_rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 24,
        });
        let mut s = setup_with(
            mock(),
            "transaction_max_wait = \"50ms\"\n[kafka]\n\"message.max.bytes\" = 2000",
            Some(dl_tx),
        )
        .await;
        let mut buf = BatchBuf::default();
        buf.push(&NewEvent {
            key: None,
            body: &[b'x'; 5000],
            headers: &[],
            topic: "in",
            partition: 0,
            offset: 0,
            timestamp: -1,
        });
        s.tx.send(Batch::new(buf, Ack::in_epoch(1, s.epoch, s.acks.clone())))
            .await
            .unwrap();
        let dead = timeout(WAIT, dl_rx.recv()).await.unwrap().unwrap();
        drop(dead); // unreleased: the dead-letter sink failed it
        let e = timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap_err();
        assert!(e.to_string().contains("dead-letter"), "{e}");
        assert_eq!(
            reports(&mut s.reports, 1).await,
            HashMap::from([(1, false)])
        );
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 0);
    }

    /// Another sink fed by the same source batch (here: a clone of its ack)
    /// must have made its part durable before the transaction moves the
    /// group's offsets past the batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_waits_for_the_other_sinks_of_its_batches() {
        let mut s = setup(mock(), "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        let ours = batch(&s, 1, e, &[(0, 0), (1, 0)]);
        let sibling = ours.ack.clone();
        s.tx.send(ours).await.unwrap();
        // The transaction is due after 50 ms; it then waits for the sibling.
        timeout(WAIT, async {
            while s.metrics.get("sink.auths.sibling_waits") == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the commit waits for the other holder");
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 0);
        assert_eq!(s.metrics.get("sink.auths.sibling_waits"), 1);
        sibling.release();
        assert_eq!(reports(&mut s.reports, 1).await, HashMap::from([(1, true)]));
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 1);
        drop(s.tx);
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
    }

    /// A batch another sink failed is not committed: its offsets would skip
    /// what that sink never wrote.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_another_sink_failed_is_not_committed() {
        let mut s = setup(mock(), "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        let ours = batch(&s, 1, e, &[(0, 0)]);
        let sibling = ours.ack.clone();
        s.tx.send(ours).await.unwrap();
        drop(sibling); // unreleased: that sink failed its part
        let err = timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap_err();
        assert!(err.to_string().contains("another sink"), "{err}");
        assert_eq!(
            reports(&mut s.reports, 1).await,
            HashMap::from([(1, false)])
        );
        assert_eq!(s.metrics.get("sink.auths.transactions_committed"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_stays_open_until_max_wait() {
        let mut s = setup(mock(), "transaction_max_wait = \"2s\"").await;
        let e = s.epoch;
        let sent = Instant::now();
        s.tx.send(batch(&s, 1, e, &[(0, 0)])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(s.reports.try_recv().is_err(), "released before the commit");
        let r = timeout(WAIT, s.reports.recv()).await.unwrap().unwrap();
        assert!(r.delivered);
        assert!(sent.elapsed() >= Duration::from_secs(2));
        drop(s.tx);
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abortable_error_aborts_and_retries_without_duplicates() {
        let mock = mock();
        // AddPartitionsToTxn refused (a broker's disk error): nothing
        // reaches the log, the transaction must be aborted, and the retry
        // writes everything once.
        mock.request_errors(
            RDKafkaApiKey::AddPartitionsToTxn,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR],
        );
        let mut s = setup(mock, "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        s.tx.send(batch(&s, 1, e, &[(0, 0), (1, 0), (2, 0)]))
            .await
            .unwrap();
        assert!(reports(&mut s.reports, 1).await[&1]);
        drop(s.tx);
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
        assert_eq!(s.metrics.get("sink.auths.transactions_aborted"), 1);
        assert_eq!(s.metrics.get("sink.auths.retries"), 1);
        assert_eq!(sorted(output(&s.mock).await), ["p0-0", "p1-0", "p2-0"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebalance_error_on_the_offsets_aborts_and_retries() {
        let mock = mock();
        // The group moved on (KIP-447 fencing): the offsets are refused.
        mock.request_errors(
            RDKafkaApiKey::TxnOffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
        );
        let mut s = setup(mock, "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        s.tx.send(batch(&s, 1, e, &[(0, 0), (1, 0)])).await.unwrap();
        assert!(
            reports(&mut s.reports, 1).await[&1],
            "acked once, after the retry"
        );
        drop(s.tx);
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
        assert_eq!(s.metrics.get("sink.auths.transactions_aborted"), 1);
        assert_eq!(s.metrics.get("sink.auths.retries"), 1);
        assert_eq!(s.metrics.get("sink.auths.events"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_of_revoked_partitions_are_dropped() {
        let mut s = setup(mock(), "transaction_max_wait = \"30s\"").await;
        let e1 = s.epoch;
        s.tx.send(batch(&s, 1, e1, &[(0, 0), (1, 0), (1, 1)]))
            .await
            .unwrap();
        // Produced into the open transaction (the mock shows uncommitted records).
        let deadline = Instant::now() + WAIT;
        loop {
            let out = output(&s.mock).await;
            if ["p1-0", "p1-1"].iter().all(|b| out.iter().any(|o| o == b)) {
                break;
            }
            assert!(Instant::now() < deadline, "batch 1 never produced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Partition 1 moves away and comes back: what was read before is stale.
        s.link.revoke(&[tp(1)], Duration::ZERO);
        let e2 = s.link.assign(&[tp(1)]);
        s.tx.send(batch(&s, 2, e1, &[(1, 2)])).await.unwrap(); // stale on arrival
        s.tx.send(batch(&s, 3, e2, &[(1, 0), (0, 1)]))
            .await
            .unwrap();
        drop(s.tx); // commit now
        let got = reports(&mut s.reports, 3).await;
        assert_eq!(got, HashMap::from([(1, true), (2, true), (3, true)]));
        timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap();
        assert_eq!(s.metrics.get("sink.auths.stale_events"), 3);
        // Batch 1's partition-1 events were in the open transaction: it was
        // aborted and went again without them.
        assert_eq!(s.metrics.get("sink.auths.transactions_aborted"), 1);
        assert_eq!(s.metrics.get("sink.auths.events"), 3);
        let out = output(&s.mock).await;
        assert!(!out.contains(&"p1-2".to_owned()), "never produced: {out:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_topic_acl_stops_the_sink_instead_of_retrying() {
        let mock = mock();
        mock.request_errors(
            RDKafkaApiKey::AddPartitionsToTxn,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
        );
        let mut s = setup(mock, "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        s.tx.send(batch(&s, 1, e, &[(0, 0), (1, 0)])).await.unwrap();
        let err = timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("sink `auths`: ")
                && message.contains("topic authorization failed at `")
                && message.contains("grant the client's principal"),
            "{message}"
        );
        assert!(
            !reports(&mut s.reports, 1).await[&1],
            "not counted delivered"
        );
        assert_eq!(s.metrics.get("sink.auths.retries"), 0, "not retried");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_producer_stops_the_sink_and_fails_its_batches() {
        let mut s = setup(mock(), "transaction_max_wait = \"50ms\"").await;
        let e = s.epoch;
        s.tx.send(batch(&s, 1, e, &[(0, 0)])).await.unwrap();
        assert!(reports(&mut s.reports, 1).await[&1]);
        // A newer instance with the same transactional.id fences this one.
        // (The mock hands a second producer a new producer id rather than
        // bumping the epoch, so the broker's answer is injected.)
        s.mock.request_errors(
            RDKafkaApiKey::AddPartitionsToTxn,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
        );
        s.tx.send(batch(&s, 2, e, &[(0, 1)])).await.unwrap();
        let err = timeout(WAIT, s.sink).await.unwrap().unwrap().unwrap_err();
        assert!(err.to_string().contains("fenced"), "{err}");
        assert!(
            !reports(&mut s.reports, 1).await[&2],
            "not counted delivered"
        );
    }
}
