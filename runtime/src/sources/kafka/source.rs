//! The running Kafka source: consume, batch, hand on, commit what is delivered.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance,
    RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, Statistics, Timestamp, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use super::bounded::{self, Admit, Change, Fetched, Hooks, PlannedStart, Progress};
use super::config::{KafkaSourceConfig, StartFrom};
use crate::delivery::SourceLink;
use crate::event::{Ack, AckReport, Batch, BatchBuf, NewEvent};
use crate::event::{DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON, is_host_header};
use crate::kafka::closing;
use crate::kafka::errors::ClientError;
use crate::kafka::errors::{Health, Role, describe_error};
use crate::kafka::offsets::{Reported, Tp, Tracker};
use crate::kafka::resolve_bootstrap;
use crate::metrics::{Counter, DELIVERY_BUCKETS, Gauge, Histogram};
use crate::sources::{SourceContext, SourceError};

/// How long a revocation waits for an exactly-once sink's commit in progress.
const REVOKE_WAIT: Duration = Duration::from_secs(30);

/// Runs a Kafka source until `ctx.shutdown` fires; see the module docs.
/// `config` was checked when it loaded and is not checked again.
/// `link` is shared with the exactly-once sinks it feeds ([`crate::delivery`]).
pub async fn run(
    config: KafkaSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
    link: Arc<SourceLink>,
) -> Result<(), SourceError> {
    let fail = |message: String| SourceError {
        source_name: ctx.name.clone(),
        message,
    };
    let bootstrap = resolve_bootstrap(&config.bootstrap_servers, ctx.embedded_bootstrap.as_deref())
        .map_err(|e| fail(e.0))?;
    let context = SourceKafkaContext::new(
        &ctx,
        link,
        &bootstrap,
        config.start_from,
        config.bounded.is_some(),
        !matches!(
            config.kafka.get("isolation.level"),
            Some(crate::kafka::KafkaValue::Str(level)) if level.trim() == "read_uncommitted"
        ),
    );
    let consumer: StreamConsumer<SourceKafkaContext> = config
        .client_config(&bootstrap, &format!("sluice-{}", ctx.name))
        .map_err(|e| fail(format!("configuring the consumer: {e}")))?
        .create_with_context(context)
        .map_err(|e| {
            fail(format!(
                "creating the consumer for `{bootstrap}`: {}",
                describe_error(&e)
            ))
        })?;
    let consumer = Arc::new(consumer);
    // A bounded run fixes its ranges before it joins the group: the
    // rebalance callback positions assigned partitions by the plan.
    let progress = match &config.bounded {
        Some(bounds) => {
            let (c, topics, bounds, name) = (
                consumer.clone(),
                config.topics.clone(),
                bounds.clone(),
                ctx.name.clone(),
            );
            let plan =
                tokio::task::spawn_blocking(move || bounded::plan(&*c, &topics, &bounds, &name))
                    .await
                    .map_err(|e| fail(format!("planning the bounded run: {e}")))?
                    .map_err(|e| fail(e.to_string()))?;
            let progress = Progress::new(&plan, ctx.gauge("bounded_partitions_left"));
            if let Some(hooks) = &consumer.context().bounded {
                hooks.set_plan(plan);
            }
            Some(progress)
        }
        None => None,
    };
    let subscription = config.subscription();
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| fail(format!("subscribing to {topics:?}: {}", describe_error(&e))))?;
    info!(source = %ctx.name, %bootstrap, group = %config.group_id, ?topics, "kafka source started");

    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let mut commit_tick = tokio::time::interval(config.commit_interval.get());
    commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let source = Source {
        consumer,
        bounded: progress,
        output: Some(output),
        ack_tx: Some(ack_tx),
        ack_rx,
        commit_tick,
        events: BatchBuf::default(),
        rejected: BatchBuf::default(),
        batch_epoch: 0,
        deadline: None,
        first_read: Instant::now(),
        next_id: 0,
        max_events: config.batch_max_events,
        max_bytes: config.batch_max_bytes.get(),
        max_wait: config.batch_max_wait.get(),
        flush_when_idle: config.flush_when_idle,
        metrics: SourceMetrics::new(&ctx),
        ctx,
    };
    source.run().await
}

/// Counters of one source, registered once.
struct SourceMetrics {
    events: Counter,
    bytes: Counter,
    batches: Counter,
    commits: Counter,
    errors: Counter,
    undelivered: Counter,
    /// Headers named like the host's (`sluice.*`) dropped from records.
    host_headers: Counter,
    /// Records sent to the dead-letter channel by the source itself.
    rejected: Counter,
    /// Time from a batch's first record read to every sink holding it durably.
    delivery: Arc<Histogram>,
}

impl SourceMetrics {
    fn new(ctx: &SourceContext) -> Self {
        Self {
            events: ctx.counter("events"),
            bytes: ctx.counter("bytes"),
            batches: ctx.counter("batches"),
            commits: ctx.counter("commits"),
            errors: ctx.counter("errors"),
            undelivered: ctx.counter("undelivered_batches"),
            rejected: ctx.counter("rejected"),
            host_headers: ctx.counter("host_headers_dropped"),
            delivery: ctx.histogram("delivery_seconds", DELIVERY_BUCKETS),
        }
    }
}

/// Why the consume loop stopped.
enum Stop {
    /// The shutdown token fired.
    Shutdown,
    /// The processing stage dropped its receiver.
    OutputClosed,
    /// librdkafka reported a fatal error; the consumer is unusable.
    Fatal(KafkaError),
    /// A permanent error (authentication, TLS, ACLs): see
    /// [`crate::kafka::errors`].
    Permanent(String),
    /// The committed positions of exactly-once sinks could not be read.
    Positions(String),
    /// Bounded: every partition reached its end and is delivered.
    Finished,
    /// Bounded: every partition reached its end, but some were not
    /// delivered up to it.
    Incomplete(String),
}

struct Source {
    /// Cloned by the loops while they run; the last reference after `drain`,
    /// so `close` can drop (close) it off the async runtime.
    consumer: Arc<StreamConsumer<SourceKafkaContext>>,
    /// A bounded run's partitions (see [`bounded`]).
    bounded: Option<Progress>,
    output: Option<mpsc::Sender<Batch>>,
    ack_tx: Option<mpsc::UnboundedSender<AckReport>>,
    ack_rx: mpsc::UnboundedReceiver<AckReport>,
    commit_tick: Interval,
    /// The batch being filled.
    events: BatchBuf,
    /// Records of it that go to the dead-letter channel; see [`Batch::rejected`].
    rejected: BatchBuf,
    /// The ownership epoch its events were read in.
    batch_epoch: u64,
    /// When the batch being filled must be handed on.
    deadline: Option<Instant>,
    /// When the first record of the batch being filled was read.
    first_read: Instant,
    next_id: u64,
    max_events: usize,
    max_bytes: u64,
    max_wait: Duration,
    /// See [`KafkaSourceConfig::flush_when_idle`].
    flush_when_idle: bool,
    metrics: SourceMetrics,
    ctx: SourceContext,
}

impl Source {
    async fn run(mut self) -> Result<(), SourceError> {
        let stop = self.consume().await;
        match &stop {
            Stop::Shutdown => info!(source = %self.ctx.name, "kafka source stopping"),
            Stop::OutputClosed => {
                warn!(source = %self.ctx.name, "processing stage is gone; kafka source stopping")
            }
            Stop::Fatal(e) => {
                error!(source = %self.ctx.name, error = %describe_error(e), "fatal consumer error; kafka source stopping")
            }
            Stop::Permanent(e) => {
                error!(source = %self.ctx.name, error = %e, "kafka source stopping: it cannot work until its configuration or ACLs change")
            }
            Stop::Positions(e) => {
                error!(source = %self.ctx.name, error = %e, "kafka source stopping: it cannot tell where to resume")
            }
            Stop::Finished => {
                info!(source = %self.ctx.name, "bounded run done: every partition reached its end and everything read is delivered")
            }
            Stop::Incomplete(e) => {
                error!(source = %self.ctx.name, error = %e, "bounded run incomplete")
            }
        }
        self.drain().await;
        let Source {
            consumer,
            bounded,
            ctx,
            metrics,
            ..
        } = self;
        close(consumer, &ctx, &metrics).await;
        if let Some(progress) = bounded {
            for range in progress.ranges(&ctx.name) {
                info!(
                    source = %ctx.name,
                    topic = %range.topic,
                    partition = range.partition,
                    start = range.start,
                    end = range.end,
                    read_to = range.next,
                    events = range.events,
                    reached_end = range.complete,
                    "bounded partition"
                );
                ctx.metrics.ranges().record(range);
            }
        }
        let error = |message: String| SourceError {
            source_name: ctx.name.clone(),
            message,
        };
        match stop {
            Stop::Fatal(e) => Err(error(format!(
                "fatal consumer error: {}",
                describe_error(&e)
            ))),
            Stop::Permanent(e) => Err(error(e)),
            Stop::Positions(e) => Err(error(e)),
            Stop::Incomplete(e) => Err(error(e)),
            Stop::OutputClosed if !ctx.shutdown.is_cancelled() => Err(error(
                "the processing stage stopped receiving batches before shutdown".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The consume loop: until shutdown, a fatal error or a closed output.
    ///
    /// Records are read in bursts: once the `select!` below yields one,
    /// every record librdkafka already holds is taken without going back to
    /// it, up to a full batch ([`Self::burst`]). Each turn of the `select!`
    /// polls seven futures (shutdown, health, rewinds, acks, commits, the
    /// batch deadline, the consumer) and registers their wakers; taken per
    /// record, that was ~45% of the source's CPU in the `pipeline` bench.
    /// Shutdown, rewinds and acknowledgements are still seen between bursts,
    /// at most one batch later. One [`MessageStream`] serves the whole loop,
    /// so its waker slot is registered once, not once per record.
    async fn consume(&mut self) -> Stop {
        let consumer = self.consumer.clone();
        let mut stream = consumer.stream();
        let shutdown = self.ctx.shutdown.clone();
        let link = self.consumer.context().link.clone();
        let health = self.consumer.context().health.clone();
        let hooks = consumer.context().bounded.as_ref();
        loop {
            if self.bounded.is_some()
                && let Some(stop) = self.bounded_end().await
            {
                return stop;
            }
            let deadline = self.deadline;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                failure = health.failed() => return Stop::Permanent(failure.to_owned()),
                _ = link.rewind_requested() => self.rewind(&link).await,
                () = woken(hooks) => {}
                Some(report) = self.ack_rx.recv() => self.on_report(report),
                _ = self.commit_tick.tick() => self.commit(),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if !self.flush().await {
                        return Stop::OutputClosed;
                    }
                }
                Some(message) = stream.next() => {
                    if let Err(stop) = self.burst(message, &mut stream).await {
                        return stop;
                    }
                }
            }
        }
        // Hand on what was read before the shutdown.
        if !self.flush().await {
            return Stop::OutputClosed;
        }
        Stop::Shutdown
    }

    /// Takes `first` and then every record `stream` yields without waiting,
    /// until the batch is full (and handed on). When the stream has nothing
    /// more and the processing stage is idle, the partial batch is handed on
    /// too (`flush_when_idle`).
    async fn burst(
        &mut self,
        first: KafkaResult<BorrowedMessage<'_>>,
        stream: &mut MessageStream<'_, SourceKafkaContext>,
    ) -> Result<(), Stop> {
        let mut message = first;
        loop {
            if let Some(fatal) = self.consumer.context().take_fatal() {
                return Err(Stop::Positions(fatal));
            }
            // A rebalance inside the poll started a new epoch: cut the
            // batch so every batch is read within one epoch.
            if !(self.events.is_empty() && self.rejected.is_empty())
                && self.batch_epoch != self.consumer.context().link.epoch()
                && !self.flush().await
            {
                return Err(Stop::OutputClosed);
            }
            let full = match message {
                Ok(m) if self.bounded.is_some() => self.add_bounded(&m),
                Ok(m) => self.add(&m, m.topic()),
                Err(e) => {
                    if let Some(stop) = self.on_error(e) {
                        return Err(stop);
                    }
                    false
                }
            };
            if full {
                return if self.flush().await {
                    Ok(())
                } else {
                    Err(Stop::OutputClosed)
                };
            }
            match stream.next().now_or_never() {
                Some(Some(next)) => message = next,
                _ if self.flush_when_idle && self.processing_idle() => {
                    return if self.flush().await {
                        Ok(())
                    } else {
                        Err(Stop::OutputClosed)
                    };
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether the processing stage has taken every batch handed on: it is
    /// waiting for work (or busy with its last batch), so a partial batch
    /// costs it no throughput. While batches queue, the open one keeps
    /// filling.
    fn processing_idle(&self) -> bool {
        self.output
            .as_ref()
            .is_some_and(|output| output.capacity() == output.max_capacity())
    }

    /// Seeks partitions back to where a sink asked (see
    /// [`SourceLink::request_rewind`]); each gets a new epoch, so whatever
    /// was read of it before is stale downstream.
    async fn rewind(&mut self, link: &SourceLink) {
        for ((topic, partition), offset) in link.take_rewinds() {
            if link.owned_since(&topic, partition).is_none() {
                continue;
            }
            match self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                Ok(()) => {
                    link.assign(&[(topic.clone(), partition)]);
                    self.consumer
                        .context()
                        .tracker()
                        .revoke(&[(topic.clone(), partition)]);
                    if let Some(progress) = &mut self.bounded
                        && progress.rewound(&topic, partition, offset, bounded::unix_now())
                    {
                        self.resume(&[(topic.clone(), partition)]);
                    }
                    warn!(source = %self.ctx.name, topic, partition, offset, "partition rewound at a sink's request");
                }
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    error!(source = %self.ctx.name, topic, partition, offset, error = %e, "rewinding failed; trying again shortly");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    link.request_rewind((topic, partition), offset);
                }
            }
        }
    }

    /// Bounded: applies what the callbacks queued, then hands `m` on only
    /// if it is below its partition's end; pauses a partition that reached
    /// its end. `true` when the batch is full.
    fn add_bounded(&mut self, m: &BorrowedMessage<'_>) -> bool {
        self.bounded_news();
        // Read once: each call asks librdkafka and checks the name's UTF-8.
        let (topic, partition) = (m.topic(), m.partition());
        let Some(progress) = &mut self.bounded else {
            return self.add(m, topic);
        };
        match progress.admit(topic, partition, m.offset()) {
            Admit::Take => self.add(m, topic),
            Admit::Last => {
                let full = self.add(m, topic);
                self.pause(&[(topic.to_owned(), partition)]);
                full
            }
            Admit::Past => {
                self.pause(&[(topic.to_owned(), partition)]);
                false
            }
            Admit::Drop => false,
        }
    }

    /// Bounded: applies assignments and statistics the librdkafka callbacks
    /// queued since the last call (one atomic load when there are none).
    fn bounded_news(&mut self) {
        let (Some(hooks), Some(progress)) = (
            self.consumer.context().bounded.as_ref(),
            self.bounded.as_mut(),
        ) else {
            return;
        };
        let version = hooks.version();
        if version == progress.seen {
            return;
        }
        progress.seen = version;
        let (changes, fetched) = hooks.take();
        let now = bounded::unix_now();
        let mut pause = Vec::new();
        for change in changes {
            match change {
                Change::Assigned { tp, start } => {
                    if progress.assigned(&tp, start, now) {
                        pause.push(tp);
                    }
                }
                Change::Revoked(tp) => progress.revoked(&tp),
            }
        }
        if let Some(report) = fetched {
            let done = progress.fetched(&report);
            if !done.is_empty() {
                debug!(source = %self.ctx.name, partitions = ?done, "bounded: fetched to the end with nothing left to read");
            }
            pause.extend(done);
        }
        self.pause(&pause);
    }

    /// Bounded: once every assigned partition is done, hands the open batch
    /// on and, when every batch is reported, says how the run ends.
    async fn bounded_end(&mut self) -> Option<Stop> {
        self.bounded_news();
        if !self.bounded.as_ref().is_some_and(Progress::finished) {
            return None;
        }
        if !self.flush().await {
            return Some(Stop::OutputClosed);
        }
        let context = self.consumer.context();
        if !context.tracker().settled() {
            return None;
        }
        let progress = self.bounded.as_mut()?;
        let short = progress
            .undelivered(|topic, partition| context.tracker().delivered_up_to(topic, partition));
        if short.is_empty() {
            return Some(Stop::Finished);
        }
        let list: Vec<String> = short
            .iter()
            .map(|((topic, partition), delivered, read)| match delivered {
                Some(d) => format!("{topic}:{partition} delivered up to {d} of {read}"),
                None => {
                    format!("{topic}:{partition} delivered nothing of what was read up to {read}")
                }
            })
            .collect();
        Some(Stop::Incomplete(format!(
            "every partition reached its end, but some batches were not delivered ({}); their offsets were not committed, so a run with `start = \"committed\"` reads them again",
            list.join(", ")
        )))
    }

    /// Pauses fetching `tps` (bounded: done partitions).
    fn pause(&self, tps: &[Tp]) {
        if tps.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(tps.len());
        for (topic, partition) in tps {
            tpl.add_partition(topic, *partition);
        }
        if let Err(e) = self.consumer.pause(&tpl) {
            warn!(source = %self.ctx.name, partitions = ?tps, error = %e, "pausing done partitions failed; their further records are dropped");
        }
    }

    /// Resumes fetching `tps` (bounded: partitions rewound below their end).
    fn resume(&self, tps: &[Tp]) {
        let mut tpl = TopicPartitionList::with_capacity(tps.len());
        for (topic, partition) in tps {
            tpl.add_partition(topic, *partition);
        }
        if let Err(e) = self.consumer.resume(&tpl) {
            warn!(source = %self.ctx.name, partitions = ?tps, error = %e, "resuming a rewound partition failed");
        }
    }

    /// Appends a record of `topic` (its name, read once by the caller) to
    /// the open batch; `true` when the batch is full.
    fn add(&mut self, m: &BorrowedMessage<'_>, topic: &str) -> bool {
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        let mut unrepresentable = None;
        let mut host_headers = 0;
        super::headers::for_each(m, |key, value| match std::str::from_utf8(key) {
            // The host's headers are the host's: a producer cannot set them.
            Ok(key) if is_host_header(key) => host_headers += 1,
            Ok(key) => headers.push((key, value)),
            Err(_) => {
                unrepresentable.get_or_insert(key);
            }
        });
        if host_headers > 0 {
            self.metrics
                .host_headers
                .fetch_add(host_headers, Ordering::Relaxed);
        }
        let timestamp = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) if t >= 0 => t,
            _ => -1,
        };
        let key = m.key();
        let body = m.payload().unwrap_or(&[]);
        match unrepresentable {
            None => self.events.push(&NewEvent {
                key,
                body,
                headers: &headers,
                topic,
                partition: m.partition(),
                offset: m.offset(),
                timestamp,
            }),
            Some(bad) => {
                // Every header kept (bad keys escaped), the original bytes in
                // the reason; the record goes to the dead-letter channel.
                // Rare: the headers are read again, every key escaped.
                let mut escaped: Vec<(String, &[u8])> = Vec::new();
                super::headers::for_each(m, |k, v| {
                    let k = super::headers::escape_key(k);
                    if !is_host_header(&k) {
                        escaped.push((k, v));
                    }
                });
                let reason = format!(
                    "a header key is not UTF-8 (hex {}); keys are kept with invalid bytes as \\xNN",
                    hex::encode(bad)
                );
                let mut all: Vec<(&str, &[u8])> =
                    escaped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                all.push((DEAD_LETTER_REASON, reason.as_bytes()));
                all.push((DEAD_LETTER_PLUGIN, b"source"));
                self.rejected.push(&NewEvent {
                    key,
                    body,
                    headers: &all,
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp,
                });
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(source = %self.ctx.name, topic, partition = m.partition(), offset = m.offset(), "{reason}; the record goes to the dead-letter channel");
            }
        }
        self.consumer
            .context()
            .tracker()
            .observe(topic, m.partition(), m.offset());
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.metrics.bytes.fetch_add(
            (body.len() + key.map_or(0, <[u8]>::len)) as u64,
            Ordering::Relaxed,
        );
        if self.deadline.is_none() {
            self.first_read = Instant::now();
            self.deadline = Some(self.first_read + self.max_wait);
            self.batch_epoch = self.consumer.context().link.epoch();
        }
        self.events.len() + self.rejected.len() >= self.max_events
            || (self.events.data_len() + self.rejected.data_len()) as u64 >= self.max_bytes
    }

    /// Hands the open batch on (if it holds anything), handling
    /// acknowledgements and commits while the output is full. `false` if the
    /// output is closed; the batch is then failed, never counted delivered.
    async fn flush(&mut self) -> bool {
        self.deadline = None;
        if self.events.is_empty() && self.rejected.is_empty() {
            return true;
        }
        let (Some(output), Some(ack_tx)) = (self.output.clone(), self.ack_tx.as_ref()) else {
            return false;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.consumer.context().tracker().seal(id);
        let events = std::mem::take(&mut self.events);
        self.events = BatchBuf::with_capacity(events.len(), events.data_len());
        let mut batch = Batch::new(events, Ack::in_epoch(id, self.batch_epoch, ack_tx.clone()));
        batch
            .ack
            .time_delivery(self.first_read.into_std(), self.metrics.delivery.clone());
        batch.rejected = std::mem::take(&mut self.rejected);
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        // While blocked here the consumer is not polled: backpressure.
        let send = output.send(batch);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => {
                    return match sent {
                        Ok(()) => true,
                        Err(mpsc::error::SendError(batch)) => {
                            batch.ack.fail();
                            self.output = None;
                            false
                        }
                    };
                }
                Some(report) = self.ack_rx.recv() => self.on_report(report),
                _ = self.commit_tick.tick() => self.commit(),
            }
        }
    }

    fn on_report(&mut self, report: AckReport) {
        let outcome = self
            .consumer
            .context()
            .tracker()
            .report(report.id, report.delivered);
        if outcome == Reported::Failed {
            self.metrics.undelivered.fetch_add(1, Ordering::Relaxed);
            error!(
                source = %self.ctx.name,
                batch = report.id,
                "a batch was not delivered; its partitions will not commit past it, \
                 so its events are read again after a restart or rebalance"
            );
        }
    }

    /// Counts and logs a consumer error; returns why to stop if it is
    /// permanent or fatal. (The error callback has usually seen the same
    /// error first, with librdkafka's reason: its failure wins.)
    fn on_error(&self, e: KafkaError) -> Option<Stop> {
        if matches!(e, KafkaError::PartitionEOF(_)) {
            return None;
        }
        let health = &self.consumer.context().health;
        if let Some(failure) = health
            .failure()
            .map(str::to_owned)
            .or_else(|| health.check(&e))
        {
            return Some(Stop::Permanent(failure));
        }
        match e {
            KafkaError::MessageConsumptionFatal(_) => Some(Stop::Fatal(e)),
            e => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                warn!(source = %self.ctx.name, error = %describe_error(&e), "kafka consumer error; continuing");
                None
            }
        }
    }

    fn link(&self) -> &SourceLink {
        &self.consumer.context().link
    }

    /// Sends an asynchronous commit of everything newly committable.
    fn commit(&mut self) {
        if self.link().offsets_in_transactions() {
            return; // SourceLink: a transactional sink commits them.
        }
        let mut tracker = self.consumer.context().tracker();
        let offsets = tracker.committable();
        if offsets.is_empty() {
            return;
        }
        match commit(&*self.consumer, &offsets, CommitMode::Async) {
            Ok(()) => {
                tracker.mark_committed(&offsets);
                self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                debug!(source = %self.ctx.name, ?offsets, "commit sent");
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                warn!(source = %self.ctx.name, error = %e, "sending a commit failed; retrying next interval");
            }
        }
    }

    /// After the consume loop: stop handing on, and wait until every batch
    /// handed on is reported, committing meanwhile.
    async fn drain(&mut self) {
        self.output = None;
        self.ack_tx = None;
        // Keep serving the group (heartbeats are librdkafka's; rebalances and
        // errors are ours) without fetching more records.
        let consumer = self.consumer.clone();
        if let Ok(assignment) = consumer.assignment()
            && assignment.count() > 0
            && let Err(e) = consumer.pause(&assignment)
        {
            debug!(source = %self.ctx.name, error = %e, "pausing partitions for shutdown");
        }
        loop {
            tokio::select! {
                biased;
                report = self.ack_rx.recv() => match report {
                    Some(report) => self.on_report(report),
                    None => break,
                },
                _ = self.commit_tick.tick() => self.commit(),
                message = consumer.recv() => {
                    // Not handed on, so never committed: read again next time.
                    if let Err(e) = message
                        && self.on_error(e).is_some()
                    {
                        break;
                    }
                }
            }
        }
    }
}

/// Commits synchronously what is not yet known committed, and closes the
/// consumer, off the async runtime (closing leaves the group and may run a
/// last rebalance callback), waiting for that at most
/// [`closing::CLOSE_LIMIT`] (a broker that does not answer must not hold
/// the stop). A failed final commit (typically "rebalance in
/// progress" when members of a group stop together) is logged and counted,
/// not returned: the events after the last successful commit are read again
/// next time, which at-least-once allows.
async fn close(
    consumer: Arc<StreamConsumer<SourceKafkaContext>>,
    ctx: &SourceContext,
    metrics: &SourceMetrics,
) {
    let offsets = if consumer.context().link.offsets_in_transactions() {
        Vec::new() // SourceLink: a transactional sink commits them.
    } else {
        consumer.context().tracker().unconfirmed()
    };
    let commits = metrics.commits.clone();
    let closed = closing::off_runtime(closing::CLOSE_LIMIT, move || {
        let result = if offsets.is_empty() {
            Ok(())
        } else {
            commit(&*consumer, &offsets, CommitMode::Sync)
                .map(|()| {
                    commits.fetch_add(1, Ordering::Relaxed);
                    let mut tracker = consumer.context().tracker();
                    tracker.mark_committed(&offsets);
                    tracker.confirm(&offsets);
                })
                .map_err(|e| format!("final commit of {offsets:?} failed: {e}"))
        };
        drop(consumer);
        result
    })
    .await
    .unwrap_or_else(|e| Err(format!("closing the consumer: {e}")));
    match closed {
        Ok(()) => info!(source = %ctx.name, "kafka source stopped"),
        Err(message) => {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            warn!(source = %ctx.name, %message, "kafka source stopped; events after the last commit will be read again");
        }
    }
}

/// Resolves when a bounded source's callbacks have news (never without one).
async fn woken(hooks: Option<&Hooks>) {
    match hooks {
        Some(hooks) => hooks.woken().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

fn commit<C: Consumer<SourceKafkaContext> + ?Sized>(
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

/// librdkafka callbacks of a source: statistics (lag), rebalances, commit
/// results, errors and logs. Holds the offset [`Tracker`], which rebalance
/// callbacks need; they run inside `recv()` on the source's own task, so the
/// lock is never contended.
pub(crate) struct SourceKafkaContext {
    name: String,
    /// Where a partition without a committed offset starts.
    start_from: StartFrom,
    link: Arc<SourceLink>,
    /// Counts client errors and keeps the first permanent one.
    health: Arc<Health>,
    /// Set by a rebalance callback that could not read committed positions.
    fatal: Mutex<Option<String>>,
    tracker: Mutex<Tracker>,
    metrics: Arc<crate::metrics::Metrics>,
    lag: Gauge,
    errors: Counter,
    commits: Counter,
    /// Partitions assigned now; -1 until the source first joined its group.
    assigned: Gauge,
    /// Unix time (s) of the last offset commit the broker confirmed.
    last_commit: Gauge,
    /// A bounded run's plan and what the callbacks tell its consume loop.
    pub(super) bounded: Option<Hooks>,
    /// `isolation.level` is `read_committed` (librdkafka's default): a
    /// partition ends at its last stable offset, not its high watermark.
    read_committed: bool,
}

impl SourceKafkaContext {
    fn new(
        ctx: &SourceContext,
        link: Arc<SourceLink>,
        bootstrap: &str,
        start_from: StartFrom,
        bounded: bool,
        read_committed: bool,
    ) -> Self {
        Self {
            read_committed,
            name: ctx.name.clone(),
            start_from,
            link,
            health: Health::new(Role::Source, &ctx.name, bootstrap, ctx.counter("errors")),
            fatal: Mutex::new(None),
            tracker: Mutex::new(Tracker::default()),
            metrics: ctx.metrics.clone(),
            lag: ctx.metrics.gauge(&format!("source.{}.lag", ctx.name)),
            errors: ctx.counter("errors"),
            commits: ctx.counter("commits"),
            assigned: {
                let g = ctx
                    .metrics
                    .gauge(&format!("source.{}.assigned_partitions", ctx.name));
                g.store(-1, Ordering::Relaxed);
                g
            },
            last_commit: ctx.metrics.gauge(&format!(
                "source.{}.last_commit_timestamp_seconds",
                ctx.name
            )),
            bounded: bounded.then(Hooks::default),
        }
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Sets each newly assigned partition's start to where the committed
    /// output of the exactly-once sinks ends (the lowest of their positions;
    /// each sink skips what it already holds). A partition some sink has no
    /// record of keeps the group's committed offset, which never runs ahead
    /// of any sink (it is committed only after every sink acknowledged).
    ///
    /// When the source also feeds sinks without positions of their own
    /// ([`SourceLink::co_fed`]), the start is no later than the group's
    /// committed offset either: what those sinks had not made durable lies
    /// below the exactly-once positions. A partition the group never
    /// committed then starts where `start_from` says if that is `earliest`
    /// (everything is read again), and at the exactly-once position if it is
    /// `latest` (so the exactly-once output never skips ahead).
    fn start_at_committed_output(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), ClientError> {
        let stores = self.link.stores();
        if stores.is_empty() {
            return Ok(());
        }
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let t0 = std::time::Instant::now();
        let answers = block_on(futures::future::join_all(
            stores.iter().map(|store| store.recover(&tps)),
        ))?;
        let mut positions = Vec::with_capacity(stores.len());
        for (store, answer) in stores.iter().zip(answers) {
            positions.push(answer.map_err(|e| {
                format!(
                    "reading committed positions of sink `{}`: {e}",
                    store.name()
                )
            })?);
        }
        let group = if self.link.co_fed() {
            Some(group_committed(consumer, tpl)?)
        } else {
            None
        };
        for tp in &tps {
            let Some(offset) = resume_at(tp, &positions, group.as_ref(), self.start_from) else {
                continue;
            };
            let (topic, partition) = (&tp.0, tp.1);
            tpl.set_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| {
                    ClientError(format!("setting the start of {topic}/{partition}: {e}"))
                })?;
            info!(source = %self.name, topic, partition, offset, "resuming where the committed output ends");
        }
        debug!(source = %self.name, ms = t0.elapsed().as_millis() as u64, "committed positions read");
        Ok(())
    }
}

impl SourceKafkaContext {
    /// Bounded: positions each newly assigned partition at its planned
    /// start (`committed`: where the exactly-once sinks' output or the group
    /// left off, else `start_from`; the exactly-once sinks recover every
    /// partition either way), and returns the assignments for the
    /// consume loop with the offset each starts at. A partition that did not
    /// exist when the run started is assigned with no start (it is paused).
    fn start_bounded(
        &self,
        hooks: &Hooks,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<Vec<Change>, ClientError> {
        let plan = hooks
            .plan()
            .ok_or_else(|| ClientError("bounded: partitions assigned before the plan".into()))?;
        // Every exactly-once sink recovers the partitions and learns where
        // its committed output ends (it skips what it holds, whatever the
        // start); only `committed` starts there.
        self.start_at_committed_output(consumer, tpl)?;
        // Partitions of `committed` no sink knows: the group's offset.
        let mut unknown = TopicPartitionList::new();
        for e in tpl.elements() {
            if let Some(p) = plan.get(e.topic(), e.partition())
                && p.start == PlannedStart::Committed
                && !matches!(e.offset(), Offset::Offset(_))
            {
                unknown.add_partition(e.topic(), e.partition());
            }
        }
        let group = if unknown.count() > 0 {
            group_committed(consumer, &unknown)?
        } else {
            HashMap::new()
        };
        let mut changes = Vec::with_capacity(tpl.count());
        let tps: Vec<(Tp, Offset)> = tpl
            .elements()
            .iter()
            .map(|e| ((e.topic().to_owned(), e.partition()), e.offset()))
            .collect();
        for (tp, offset) in tps {
            let (topic, partition) = (&tp.0, tp.1);
            let Some(p) = plan.get(topic, partition) else {
                warn!(source = %self.name, topic, partition, "bounded: a partition created after the run started is not read");
                changes.push(Change::Assigned { tp, start: None });
                continue;
            };
            let (position, start) = match p.start {
                PlannedStart::At(o) => (Offset::Offset(o), o),
                PlannedStart::Beginning => (Offset::Beginning, p.low),
                PlannedStart::Committed => match (offset, group.get(&tp)) {
                    (Offset::Offset(o), _) => (Offset::Offset(o), o),
                    (_, Some(&o)) => (Offset::Offset(o), o),
                    (_, None) => match self.start_from {
                        StartFrom::Earliest => (Offset::Beginning, p.low),
                        StartFrom::Latest => (Offset::End, p.high),
                    },
                },
            };
            tpl.set_partition_offset(topic, partition, position)
                .map_err(|e| {
                    ClientError(format!("setting the start of {topic}/{partition}: {e}"))
                })?;
            info!(source = %self.name, topic, partition, start, end = p.end, "bounded: reading partition");
            changes.push(Change::Assigned {
                tp,
                start: Some(start),
            });
        }
        Ok(changes)
    }
}

/// The consumer group's committed offsets of the partitions in `tpl` (those
/// without one are absent).
fn group_committed(
    consumer: &BaseConsumer<SourceKafkaContext>,
    tpl: &TopicPartitionList,
) -> Result<HashMap<Tp, i64>, ClientError> {
    let committed = consumer
        .committed_offsets(tpl.clone(), Duration::from_secs(30))
        .map_err(|e| ClientError(format!("reading the group's committed offsets: {e}")))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Where partition `tp` starts, given each exactly-once sink's committed
/// position and (for a co-fed source) the group's committed offsets; `None`
/// leaves the group's committed offset (or `start_from`) in charge. See
/// [`SourceKafkaContext::start_at_committed_output`].
fn resume_at(
    tp: &Tp,
    positions: &[HashMap<Tp, i64>],
    group: Option<&HashMap<Tp, i64>>,
    start_from: StartFrom,
) -> Option<i64> {
    let mut lowest: Option<i64> = None;
    for store in positions {
        // A sink without a record of the partition: the group's offset applies.
        let p = *store.get(tp)?;
        lowest = Some(lowest.map_or(p, |q| q.min(p)));
    }
    let lowest = lowest?;
    match group {
        None => Some(lowest),
        Some(group) => match group.get(tp) {
            Some(&committed) => Some(lowest.min(committed)),
            None if start_from == StartFrom::Earliest => None,
            None => Some(lowest),
        },
    }
}

/// Runs `wait` (a blocking wait inside a librdkafka callback, which runs
/// inside `recv()` on a runtime worker) with the worker's other tasks handed
/// to another thread meanwhile: a task queued on this worker may be what
/// the wait waits for. Runs it as is off a multi-threaded runtime (the
/// consumer's close, on a blocking thread).
fn off_worker<T>(wait: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// Runs `future` to completion from a synchronous librdkafka callback, which
/// runs inside `recv()` on a runtime worker.
fn block_on<F: std::future::Future + Send>(future: F) -> Result<F::Output, ClientError>
where
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| handle.block_on(future)))
        }
        _ => std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(future))
                    .map_err(|e| ClientError(format!("starting a runtime to read positions: {e}")))
            })
            .join()
            .map_err(|_| ClientError("reading positions panicked".to_string()))?
        }),
    }
}

/// Whether a partition's statistics show records the source has not read:
/// some fetched and not handed on yet, or its fetch position short of the
/// partition's end (the last stable offset under `read_committed`, the
/// high watermark otherwise). Unknown offsets (-1) show none. The fetch
/// position, not the last record handed on, is compared: it steps over
/// transaction markers, which no record follows.
fn has_unread(p: &rdkafka::statistics::Partition, read_committed: bool) -> bool {
    let end = if read_committed {
        p.ls_offset
    } else {
        p.hi_offset
    };
    p.fetchq_cnt > 0 || (p.next_offset >= 0 && end >= 0 && p.next_offset < end)
}

impl ClientContext for SourceKafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_librdkafka(&self.name, level, fac, message);
    }

    /// Consumer lag, in total and per partition: librdkafka's
    /// `consumer_lag`, the partition's end (the last stable offset under
    /// `read_committed`, the high watermark otherwise) minus the group's
    /// committed offset, i.e. the figure Kafka's consumer-group tool shows
    /// as LAG. Unknown (-1, e.g. nothing committed yet) counts as 0.
    ///
    /// Unbounded: tells the link which assigned partitions still have
    /// records not read ([`has_unread`]), for `_SUCCESS` markers.
    ///
    /// Bounded: also hands the consume loop the partitions whose fetch
    /// position librdkafka reports with its queue empty (see
    /// [`bounded`](super::bounded)).
    fn stats(&self, statistics: Statistics) {
        let mut lag = 0;
        let mut fetched = Vec::new();
        let mut behind = Vec::new();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let value = p.consumer_lag.max(0);
                lag += value;
                self.metrics
                    .gauge(&format!("source.{}.lag.{topic}.{}", self.name, p.partition))
                    .store(value, Ordering::Relaxed);
                if self.bounded.is_some() && p.fetchq_cnt == 0 && p.next_offset >= 0 {
                    fetched.push(((topic.clone(), p.partition), p.next_offset));
                }
                if p.desired && has_unread(p, self.read_committed) {
                    behind.push((topic.clone(), p.partition));
                }
            }
        }
        self.lag.store(lag, Ordering::Relaxed);
        // A bounded run's partitions stop at their ends, short of the
        // partitions' own: they are never caught up, yet end.
        if self.bounded.is_none() {
            self.link.set_behind(behind);
        }
        if let Some(hooks) = &self.bounded
            && !fetched.is_empty()
        {
            hooks.set_fetched(Fetched {
                time: statistics.time,
                parts: fetched,
            });
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.client_error(&error, reason);
    }
}

impl ConsumerContext for SourceKafkaContext {
    /// librdkafka's default rebalance, plus: assigned partitions start where
    /// the exactly-once sinks' committed output ends, and the
    /// [`SourceLink`] learns every assignment and revocation (a revocation
    /// waits for a commit in progress, so once it returns this agent never
    /// commits those partitions again).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let started = match &self.bounded {
                    Some(hooks) => self.start_bounded(hooks, consumer, tpl),
                    None => self
                        .start_at_committed_output(consumer, tpl)
                        .map(|()| Vec::new()),
                };
                let changes = match started {
                    Ok(changes) => changes,
                    Err(e) => {
                        // Reading from anywhere else could duplicate or skip
                        // output: take nothing, and stop the source.
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.0);
                        return;
                    }
                };
                self.link.assign(&tps);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl).map(|_| ())
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(source = %self.name, error = %e, "assigning partitions failed");
                }
                self.link.set_group_metadata(consumer.group_metadata());
                if let Some(hooks) = &self.bounded {
                    hooks.push(changes);
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                if let Some(hooks) = &self.bounded {
                    hooks.push(tps.iter().cloned().map(Change::Revoked));
                }
                // A sink's commit in progress ends on a runtime worker: this
                // worker's queued tasks (a sink's among them) must move on.
                let busy = off_worker(|| self.link.revoke(&tps, REVOKE_WAIT));
                if !busy.is_empty() {
                    warn!(source = %self.name, partitions = ?busy, "revoking while a sink is still committing; the next owner's store check settles it");
                }
                // What is left is counted before unassigning: when the
                // consumer closes, librdkafka may end the group as soon as
                // the last partition is unassigned, and a request to the
                // group served after that gets no answer (`assignment()`
                // would wait for good, and the close with it).
                let left = consumer.assignment().map(|a| {
                    if cooperative {
                        a.count().saturating_sub(tps.len())
                    } else {
                        0
                    }
                });
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl).map(|_| ())
                } else {
                    consumer.unassign()
                };
                match unassigned {
                    Ok(()) => {
                        if let Ok(left) = left {
                            self.assigned.store(left as i64, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        warn!(source = %self.name, error = %e, "unassigning partitions failed");
                    }
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let e = KafkaError::Rebalance(other.into());
                self.post_rebalance(consumer, &Rebalance::Error(e));
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let tps: Vec<Tp> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        // Best effort: commit what is delivered before another member takes
        // over; in-flight batches of these partitions are re-read by it.
        let offsets = self.tracker().committable_of(&tps);
        if !offsets.is_empty() && !self.link.offsets_in_transactions() {
            match commit(consumer, &offsets, CommitMode::Sync) {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    let mut tracker = self.tracker();
                    tracker.mark_committed(&offsets);
                    tracker.confirm(&offsets);
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(source = %self.name, error = %e, "commit on revocation failed");
                }
            }
        }
        self.tracker().revoke(&tps);
        info!(source = %self.name, partitions = ?tps, "partitions revoked");
    }

    /// After a rebalance: the assigned-partitions gauge (counted by
    /// [`Self::rebalance`] itself for a revocation, which must not ask the
    /// consumer once it unassigned), and the log.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Revoke(_))
            && let Ok(assignment) = consumer.assignment()
        {
            self.assigned
                .store(assignment.count() as i64, Ordering::Relaxed);
        }
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tps: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                info!(source = %self.name, partitions = ?tps, "partitions assigned");
            }
            Rebalance::Error(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                warn!(source = %self.name, error = %e, "rebalance error");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if result.is_ok() {
            self.last_commit
                .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
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
        if let Err(e) = result {
            // Send everything again at the next interval.
            self.tracker().forget_committed();
            self.errors.fetch_add(1, Ordering::Relaxed);
            // A group authorization failure stops the source (see `consume`).
            self.health.check(&e);
            warn!(source = %self.name, error = %e, offsets = ?offsets.to_topic_map(), "offset commit failed");
        }
    }
}

#[cfg(test)]
mod unread_tests {
    use rdkafka::statistics::{Partition, Topic};

    use super::*;
    use crate::metrics::Metrics;

    fn partition(next: i64, fetched: i64, ls: i64, hi: i64) -> Partition {
        Partition {
            desired: true,
            next_offset: next,
            fetchq_cnt: fetched,
            ls_offset: ls,
            hi_offset: hi,
            ..Partition::default()
        }
    }

    #[test]
    fn statistics_tell_the_link_which_assigned_partitions_are_behind() {
        let ctx = SourceContext {
            name: "s".into(),
            metrics: Metrics::new(),
            shutdown: Default::default(),
            embedded_bootstrap: None,
            state_dir: std::env::temp_dir(),
        };
        let mut topic = Topic::default();
        for (id, mut p) in [
            (0, partition(90, 0, 100, 100)),
            (1, partition(100, 0, 100, 100)),
            // Known to the client but not assigned to it.
            (
                2,
                Partition {
                    desired: false,
                    ..partition(5, 0, 100, 100)
                },
            ),
            // librdkafka's internal partition of unassigned messages.
            (-1, partition(0, 3, 100, 100)),
        ] {
            p.partition = id;
            topic.partitions.insert(id, p);
        }
        let mut statistics = Statistics::default();
        statistics.topics.insert("t".into(), topic);
        let link = SourceLink::new("s");
        let context =
            SourceKafkaContext::new(&ctx, link.clone(), "x:1", StartFrom::Earliest, false, true);
        context.stats(statistics.clone());
        assert_eq!(link.behind(), [("t".to_owned(), 0)]);
        // A bounded run's partitions stop short of their ends: none reported.
        let link = SourceLink::new("b");
        let context =
            SourceKafkaContext::new(&ctx, link.clone(), "x:1", StartFrom::Earliest, true, true);
        context.stats(statistics);
        assert!(link.behind().is_empty());
    }

    #[test]
    fn a_partition_is_behind_while_records_wait_to_be_fetched_or_handed_on() {
        // Fetched up to its end, nothing waiting: caught up.
        assert!(!has_unread(&partition(100, 0, 100, 100), true));
        // Records short of the end, or fetched and not handed on yet.
        assert!(has_unread(&partition(90, 0, 100, 100), true));
        assert!(has_unread(&partition(100, 5, 100, 100), true));
        // An open transaction: read_committed ends at the last stable
        // offset, read_uncommitted at the high watermark.
        assert!(!has_unread(&partition(100, 0, 100, 120), true));
        assert!(has_unread(&partition(100, 0, 100, 120), false));
        // Offsets not known yet tell nothing.
        assert!(!has_unread(&partition(-1001, 0, 100, 100), true));
        assert!(!has_unread(&partition(100, 0, -1, -1), true));
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    fn map(entries: &[(i32, i64)]) -> HashMap<Tp, i64> {
        entries.iter().map(|&(p, o)| (tp(p), o)).collect()
    }

    #[test]
    fn exactly_once_sinks_alone_resume_at_their_lowest_position() {
        let positions = [map(&[(0, 50), (1, 7)]), map(&[(0, 40), (1, 9)])];
        assert_eq!(
            resume_at(&tp(0), &positions, None, StartFrom::Earliest),
            Some(40)
        );
        assert_eq!(
            resume_at(&tp(1), &positions, None, StartFrom::Earliest),
            Some(7)
        );
        // A sink without a record of the partition: the group's offset applies.
        assert_eq!(
            resume_at(&tp(2), &positions, None, StartFrom::Earliest),
            None
        );
    }

    #[test]
    fn a_co_fed_source_resumes_no_later_than_the_group_commit() {
        let positions = [map(&[(0, 500), (1, 30)])];
        let group = map(&[(0, 120), (1, 90)]);
        // The other sinks acknowledged only up to 120: read from there.
        assert_eq!(
            resume_at(&tp(0), &positions, Some(&group), StartFrom::Earliest),
            Some(120)
        );
        // The group ran ahead of the lake (its commits are not the lake's).
        assert_eq!(
            resume_at(&tp(1), &positions, Some(&group), StartFrom::Earliest),
            Some(30)
        );
    }

    #[test]
    fn a_partition_the_group_never_committed_follows_start_from() {
        let positions = [map(&[(0, 500)])];
        let group = map(&[]);
        assert_eq!(
            resume_at(&tp(0), &positions, Some(&group), StartFrom::Earliest),
            None,
            "earliest: everything is read again"
        );
        assert_eq!(
            resume_at(&tp(0), &positions, Some(&group), StartFrom::Latest),
            Some(500),
            "latest: the lake never skips ahead"
        );
    }
}
