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
//!
//! **Scope.** Every event reaching this sink must come from the one Kafka
//! source feeding its channel (checked when the configuration is loaded).
//! The transactions commit that source's offsets, so other sinks fed by the
//! same source no longer hold its commits back: give them their own
//! exactly-once positions (object-store sinks) or accept that they may miss
//! events after a crash.
//!
//! Metrics: `sink.<name>.events` and `.bytes` (committed), `.errors`,
//! `.retries`, `.transactions_committed`, `.transactions_aborted`,
//! `.stale_events`.

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

use super::{BACKOFF, Guard, KafkaSinkConfig, Route, SHUTDOWN_ATTEMPTS, SinkKafkaContext};
use crate::channels::ChannelReceiver;
use crate::delivery::{SourceLink, Tp};
use crate::event::Batch;
use crate::metrics::Counter;
use crate::sinks::{SinkContext, SinkError};

/// Tries of a blocking transaction call that failed with a retriable error.
const CALL_ATTEMPTS: u32 = 5;

/// This agent's id for default transactional ids: the host name.
pub fn agent_id() -> String {
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
    let producer: FutureProducer<SinkKafkaContext> = config
        .transactional_config(bootstrap, &ctx.name)
        .create_with_context(SinkKafkaContext {
            name: ctx.name.clone(),
            errors: ctx.counter("errors"),
        })
        .map_err(|e| fail(format!("creating the producer for `{bootstrap}`: {e}")))?;
    let sink = Txn {
        producer: Arc::new(producer),
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
        metrics: TxnMetrics {
            events: ctx.counter("events"),
            bytes: ctx.counter("bytes"),
            errors: ctx.counter("errors"),
            retries: ctx.counter("retries"),
            committed: ctx.counter("transactions_committed"),
            aborted: ctx.counter("transactions_aborted"),
            stale: ctx.counter("stale_events"),
        },
    };
    sink.init().await.map_err(fail)?;
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
            sink.settle(o, !input_open).await.map_err(fail)?;
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
                            sink.begin().map_err(fail)?;
                            open.insert(Open::new(Instant::now() + max_wait))
                        }
                    };
                    sink.add(o, batch).await;
                }
                None => input_open = false,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {}
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
}

/// The sink's producer and what its transactions need.
struct Txn {
    producer: Arc<FutureProducer<SinkKafkaContext>>,
    link: Arc<SourceLink>,
    route: Route,
    name: String,
    transactional_id: String,
    timeout: Duration,
    metrics: TxnMetrics,
}

/// A channel batch in the open transaction.
struct Held {
    /// Fails the ack unless released after the commit.
    guard: Guard,
    /// The source partitions of the batch, with their highest offset.
    parts: Vec<(Tp, i64)>,
    /// Partitions whose events are stale: dropped, not produced.
    stale: Vec<Tp>,
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
            guard: Guard::new(batch),
            parts,
            stale: Vec::new(),
        }
    }

    fn batch(&self) -> &Batch {
        &self.guard.batch
    }

    fn is_stale(&self, topic: &str, partition: i32) -> bool {
        self.stale
            .iter()
            .any(|(t, p)| *p == partition && t == topic)
    }

    /// Events not dropped as stale.
    fn live(&self) -> impl Iterator<Item = crate::event::EventRef<'_>> {
        self.batch()
            .events
            .iter()
            .filter(|e| !self.is_stale(e.topic(), e.partition()))
    }
}

/// The transaction being filled: its batches and the deliveries of what was
/// produced in it.
struct Open {
    held: Vec<Held>,
    /// Live events held.
    events: usize,
    /// When it must be committed.
    deadline: Instant,
    deliveries: FuturesUnordered<BoxFuture<'static, Result<(), KafkaError>>>,
    /// The first delivery that failed.
    failed: Option<KafkaError>,
}

impl Open {
    fn new(deadline: Instant) -> Self {
        Self {
            held: Vec::new(),
            events: 0,
            deadline,
            deliveries: FuturesUnordered::new(),
            failed: None,
        }
    }

    fn settle_delivery(&mut self, r: Result<(), KafkaError>) {
        if let Err(e) = r
            && self.failed.is_none()
        {
            self.failed = Some(e);
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
        let fenced = matches!(e, KafkaError::Transaction(rd) if matches!(rd.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch))
            || matches!(
                self.producer.client().fatal_error(),
                Some((
                    RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch,
                    _
                ))
            );
        if fenced {
            format!(
                "{what}: the producer was fenced: another producer started with transactional.id `{}`; each agent needs its own `transactional_id`, and a restarted agent replaces its predecessor ({e})",
                self.transactional_id
            )
        } else {
            format!("{what}: fatal producer error: {e}")
        }
    }

    fn classify(&self, what: &str, e: KafkaError) -> TxnError {
        let fatal = matches!(&e, KafkaError::Transaction(rd) if rd.is_fatal())
            || self.producer.client().fatal_error().is_some();
        if fatal {
            TxnError::Fatal(self.fatal_message(what, &e))
        } else {
            TxnError::Abortable(format!("{what}: {e}"))
        }
    }

    /// Runs a blocking transaction call, again while it fails retriably.
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
        let result = tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                tries += 1;
                match f(&producer, timeout) {
                    Err(KafkaError::Transaction(rd))
                        if rd.is_retriable() && !rd.is_fatal() && tries < CALL_ATTEMPTS =>
                    {
                        std::thread::sleep(Duration::from_millis(100 * u64::from(tries)));
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| TxnError::Fatal(format!("{what}: {e}")))?;
        result.map_err(|e| self.classify(what, e))
    }

    /// `init_transactions`, retried with backoff while the broker is away.
    async fn init(&self) -> Result<(), String> {
        let mut backoff = BACKOFF.0;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .call("initializing transactions", |p, t| p.init_transactions(t))
                .await
            {
                Ok(()) => return Ok(()),
                Err(TxnError::Fatal(m)) => return Err(m),
                Err(TxnError::Abortable(m)) if tries >= 10 => return Err(m),
                Err(TxnError::Abortable(m)) => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(sink = %self.name, error = %m, ?backoff, "retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }

    fn begin(&self) -> Result<(), String> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.fatal_message("beginning a transaction", &e))
    }

    /// Adds a channel batch to the open transaction and produces its events.
    async fn add(&self, open: &mut Open, batch: Batch) {
        let mut held = Held::new(batch);
        self.drop_stale(&mut held);
        open.events += self.produce(&held, open).await;
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

    /// Produces the live events of `held` in the open transaction; returns
    /// how many.
    async fn produce(&self, held: &Held, open: &mut Open) -> usize {
        let mut n = 0;
        for event in held.live() {
            n += 1;
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
                            match delivery.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(e),
                                Err(_) => Err(KafkaError::Canceled),
                            }
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
                        open.settle_delivery(Err(e));
                        break;
                    }
                }
            }
        }
        n
    }

    /// Commits the open transaction, aborting and retrying it on abortable
    /// errors; releases its batches' acks once committed.
    async fn settle(&self, mut open: Open, closing: bool) -> Result<(), String> {
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
                    return Err(m); // dropping `open` fails the acks
                }
                Err(TxnError::Abortable(m)) => m,
            };
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            warn!(sink = %self.name, error = %message, "aborting the transaction");
            self.abort(&mut open).await.map_err(|e| match e {
                TxnError::Abortable(m) | TxnError::Fatal(m) => m,
            })?;
            if closing && tries >= SHUTDOWN_ATTEMPTS {
                error!(sink = %self.name, batches = open.held.len(), "transaction still failing at shutdown; failing its batches so they are read again");
                return Ok(()); // dropping `open` fails the acks
            }
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF.1);
            // The same events in a new transaction, less what went stale.
            self.begin()?;
            let held = std::mem::take(&mut open.held);
            open.events = 0;
            for mut h in held {
                self.drop_stale(&mut h);
                open.events += self.produce(&h, &mut open).await;
                open.held.push(h);
            }
        }
    }

    async fn abort(&self, open: &mut Open) -> Result<(), TxnError> {
        // Purges what is still queued; those deliveries fail, as expected.
        let result = self
            .call("aborting a transaction", |p, t| p.abort_transaction(t))
            .await;
        open.deliveries.clear();
        open.failed = None;
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

    fn release(&self, open: Open) {
        let mut bytes = 0;
        for held in open.held {
            bytes += held.live().map(|e| e.body().len() as u64).sum::<u64>();
            held.guard.delivered();
        }
        self.metrics
            .events
            .fetch_add(open.events as u64, Ordering::Relaxed);
        self.metrics.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.metrics.committed.fetch_add(1, Ordering::Relaxed);
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
