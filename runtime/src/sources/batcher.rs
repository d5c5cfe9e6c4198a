//! The batching and acknowledgement bookkeeping every source that is not
//! Kafka shares: an open batch cut by count, bytes or time; batches handed
//! on with an [`Ack`] each; and the reports of those acks matched back to
//! what the source attached to each batch (a mark: the file positions the
//! batch ends at, the HTTP request waiting for it, or nothing).
//!
//! A source owns one [`Batcher`], pushes events into it, calls
//! [`Batcher::flush`] when [`Batcher::full`] or at [`Batcher::deadline`],
//! and takes [`Report`]s from [`Batcher::report`] in its select loop. While
//! a flush waits for room in the processing stage (backpressure), the
//! reports that arrive meanwhile are queued, never lost, and handed out by
//! the next [`Batcher::report`]. Reports come in the order acks are
//! *released*, which need not be the order batches were handed on: sources
//! that commit positions must only commit a prefix of delivered batches
//! ([`InOrder`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::SourceContext;
use crate::delivery::SourceLink;
use crate::event::{Ack, AckReport, Batch, BatchBuf, NewEvent};
use crate::metrics::{Counter, DELIVERY_BUCKETS, Histogram};
use crate::units::{ByteSize, HumanDuration};

/// When a batch is cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// As soon as it holds this many events.
    pub max_events: usize,
    /// ...or at least this many bytes (as the batch encodes them).
    pub max_bytes: ByteSize,
    /// ...or when this long has passed since its first event.
    pub max_wait: HumanDuration,
}

impl Limits {
    /// Checks the three keys (`batch_max_events`, `batch_max_bytes`,
    /// `batch_max_wait`); on error, the key and what to do.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_events == 0 {
            return Err(("batch_max_events", "must be at least 1".into()));
        }
        if self.max_wait.get().is_zero() {
            return Err(("batch_max_wait", "must be longer than 0ms".into()));
        }
        super::check_batch_max_bytes(self.max_bytes).map_err(|e| ("batch_max_bytes", e.0))
    }
}

/// Default `batch_max_events` of line sources: 1000.
pub(crate) fn default_max_events() -> usize {
    1000
}

/// Default `batch_max_wait` of line sources: 100 ms.
pub(crate) fn default_max_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

/// Default `max_line_bytes`: 1 MiB.
pub(crate) fn default_max_line_bytes() -> ByteSize {
    ByteSize(1 << 20)
}

/// Checks `max_line_bytes` (1 byte to 2 GiB).
pub(crate) fn check_max_line_bytes(value: ByteSize) -> Result<(), (&'static str, String)> {
    if value.get() == 0 || value.get() > u32::MAX as u64 / 2 {
        return Err(("max_line_bytes", "must be between 1 byte and 2GiB".into()));
    }
    Ok(())
}

/// What became of one batch handed on.
#[derive(Debug)]
pub(crate) struct Report<M> {
    /// What the source attached to the batch.
    pub mark: M,
    /// `false` if any holder failed it.
    pub delivered: bool,
}

/// The processing stage stopped receiving batches.
#[derive(Debug)]
pub(crate) struct OutputClosed;

/// The counters every source keeps: `events`, `bytes` (bodies), `batches`,
/// `undelivered_batches`, and the `delivery_seconds` histogram.
struct BatchMetrics {
    events: Counter,
    bytes: Counter,
    batches: Counter,
    undelivered: Counter,
    delivery: Arc<Histogram>,
}

/// The open batch and the batches handed on; see the module docs.
pub(crate) struct Batcher<M> {
    limits: Limits,
    output: Option<mpsc::Sender<Batch>>,
    acks_tx: Option<mpsc::UnboundedSender<AckReport>>,
    acks: mpsc::UnboundedReceiver<AckReport>,
    pending: HashMap<u64, M>,
    queued: VecDeque<Report<M>>,
    events: BatchBuf,
    first_read: Option<Instant>,
    deadline: Option<Instant>,
    next_id: u64,
    metrics: BatchMetrics,
    positional: bool,
    /// Stamps each batch with the link's epoch when its first event came.
    link: Option<Arc<SourceLink>>,
    epoch: u64,
}

impl<M> Batcher<M> {
    /// A batcher handing batches to `output`, counting under the source's name.
    pub fn new(limits: Limits, output: mpsc::Sender<Batch>, ctx: &SourceContext) -> Self {
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Self {
            limits,
            output: Some(output),
            acks_tx: Some(acks_tx),
            acks,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            events: BatchBuf::default(),
            first_read: None,
            deadline: None,
            next_id: 0,
            metrics: BatchMetrics {
                events: ctx.counter("events"),
                bytes: ctx.counter("bytes"),
                batches: ctx.counter("batches"),
                undelivered: ctx.counter("undelivered_batches"),
                delivery: ctx.histogram("delivery_seconds", DELIVERY_BUCKETS),
            },
            positional: false,
            link: None,
            epoch: 0,
        }
    }

    /// Stamps every batch with the epoch of `link` current when its first
    /// event was pushed ([`Ack::in_epoch`]): a source that assigns
    /// partitions on its link (and flushes before each assignment) keeps
    /// every batch within one epoch.
    pub fn with_link(mut self, link: Arc<SourceLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// Marks every batch positional ([`Ack::mark_positional`]): the source
    /// numbers events by where they are in its input, so a durable channel
    /// can drop what it already holds when the source reads it again.
    pub fn positional(mut self) -> Self {
        self.positional = true;
        self
    }

    /// Appends an event to the open batch.
    pub fn push(&mut self, event: &NewEvent<'_>) {
        self.events.push(event);
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes
            .fetch_add(event.body.len() as u64, Ordering::Relaxed);
        if self.deadline.is_none() {
            if let Some(link) = &self.link {
                self.epoch = link.epoch();
            }
            let now = Instant::now();
            self.first_read = Some(now);
            self.deadline = Some(now + self.limits.max_wait.get());
        }
    }

    /// Whether the open batch is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the open batch is due by count or by size.
    pub fn full(&self) -> bool {
        self.events.len() >= self.limits.max_events
            || self.events.data_len() as u64 >= self.limits.max_bytes.get()
    }

    /// When the open batch is due by time (none while it is empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Batches handed on and not yet reported (queued reports excluded).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Hands the open batch on with `mark`, waiting for room (reports
    /// arriving meanwhile are queued for [`report`](Self::report)). An
    /// empty batch is not handed on: its mark is reported delivered at
    /// once. If the output is closed the batch is reported undelivered and
    /// `OutputClosed` returned.
    pub async fn flush(&mut self, mark: M) -> Result<(), OutputClosed> {
        self.flush_with(mark, &mut |_| None).await
    }

    /// [`flush`](Self::flush), handing each report that arrives while it
    /// waits for room to `on_report` at once (a source that commits
    /// positions keeps committing while backpressured); a report
    /// `on_report` gives back is queued.
    pub async fn flush_with(
        &mut self,
        mark: M,
        on_report: &mut (dyn FnMut(Report<M>) -> Option<Report<M>> + Send),
    ) -> Result<(), OutputClosed> {
        self.deadline = None;
        let read = self.first_read.take();
        if self.events.is_empty() {
            self.queued.push_back(Report {
                mark,
                delivered: true,
            });
            return Ok(());
        }
        let (Some(output), Some(acks_tx)) = (self.output.clone(), self.acks_tx.as_ref()) else {
            self.events = BatchBuf::default();
            self.queued.push_back(Report {
                mark,
                delivered: false,
            });
            return Err(OutputClosed);
        };
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, mark);
        let ack = Ack::in_epoch(id, self.epoch, acks_tx.clone());
        if self.positional {
            ack.mark_positional();
        }
        if let Some(read) = read {
            ack.time_delivery(read.into_std(), self.metrics.delivery.clone());
        }
        let batch = Batch::new(std::mem::take(&mut self.events), ack);
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        let send = output.send(batch);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => {
                    return match sent {
                        Ok(()) => Ok(()),
                        Err(mpsc::error::SendError(batch)) => {
                            batch.ack.fail();
                            drop(batch);
                            self.output = None;
                            Err(OutputClosed)
                        }
                    };
                }
                Some(report) = self.acks.recv() => {
                    self.on_ack(report);
                    while let Some(report) = self.queued.pop_front() {
                        if let Some(kept) = on_report(report) {
                            self.queued.push_front(kept);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Discards the open batch (its events were never handed on).
    pub fn discard(&mut self) {
        self.events = BatchBuf::default();
        self.deadline = None;
        self.first_read = None;
    }

    fn on_ack(&mut self, report: AckReport) {
        if let Some(mark) = self.pending.remove(&report.id) {
            if !report.delivered {
                self.metrics.undelivered.fetch_add(1, Ordering::Relaxed);
            }
            self.queued.push_back(Report {
                mark,
                delivered: report.delivered,
            });
        }
    }

    /// The next report: a queued one at once, else waits for an ack. Never
    /// ends while a batch is in flight; pending forever once nothing is
    /// (use it in a `select!` beside the source's other work).
    pub async fn report(&mut self) -> Report<M> {
        loop {
            if let Some(report) = self.queued.pop_front() {
                return report;
            }
            match self.acks.recv().await {
                Some(report) => self.on_ack(report),
                None => std::future::pending().await,
            }
        }
    }

    /// Whether no report is queued.
    pub fn ready_reports_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// The reports available without waiting.
    pub fn ready_reports(&mut self) -> Vec<Report<M>> {
        while let Ok(report) = self.acks.try_recv() {
            self.on_ack(report);
        }
        self.queued.drain(..).collect()
    }

    /// Stops handing on (the open batch must have been flushed or discarded)
    /// and waits until every batch handed on is reported; returns the
    /// reports not yet taken. Waits at most `limit` (then the reports
    /// gathered so far are returned, the rest left unreported).
    pub async fn drain(&mut self, limit: Duration) -> Vec<Report<M>> {
        self.output = None;
        self.acks_tx = None;
        let _ = tokio::time::timeout(limit, async {
            while !self.pending.is_empty() {
                match self.acks.recv().await {
                    Some(report) => self.on_ack(report),
                    None => break,
                }
            }
        })
        .await;
        self.queued.drain(..).collect()
    }
}

/// Releases marks in the order their batches were handed on: a mark is
/// committed only once it and every earlier one are delivered, so a
/// position committed never passes an undelivered batch.
#[derive(Debug)]
pub(crate) struct InOrder<M> {
    next_seq: u64,
    next_commit: u64,
    done: BTreeMap<u64, (M, bool)>,
    /// Set once a batch was not delivered: nothing after it commits in this run.
    blocked: bool,
}

impl<M> Default for InOrder<M> {
    fn default() -> Self {
        Self {
            next_seq: 0,
            next_commit: 0,
            done: BTreeMap::new(),
            blocked: false,
        }
    }
}

impl<M> InOrder<M> {
    /// The sequence number to attach to the next batch handed on.
    pub fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Records the report of batch `seq`; returns the marks that may now be
    /// committed, oldest first. An undelivered batch blocks every later one
    /// for the rest of the run (after a restart they are read again).
    pub fn report(&mut self, seq: u64, mark: M, delivered: bool) -> Vec<M> {
        if !delivered {
            self.blocked = true;
        }
        self.done.insert(seq, (mark, delivered));
        let mut ready = Vec::new();
        while !self.blocked {
            match self.done.remove(&self.next_commit) {
                Some((mark, true)) => {
                    ready.push(mark);
                    self.next_commit += 1;
                }
                Some((mark, false)) => {
                    self.done.insert(self.next_commit, (mark, false));
                    break;
                }
                None => break,
            }
        }
        ready
    }

    /// Whether an undelivered batch stopped commits for this run.
    pub fn blocked(&self) -> bool {
        self.blocked
    }
}

/// Splits a byte stream into lines of at most `max` bytes: a longer line
/// comes out as pieces of `max` bytes (the last holds the rest), numbered
/// from 0, so nothing is dropped.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    line: Vec<u8>,
    part: u32,
}

/// One line (or piece of a long line) out of a [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// The bytes, without the newline (a trailing `\r` is kept).
    pub bytes: &'a [u8],
    /// For a piece of a split line, its 0-based index.
    pub part: Option<u32>,
    /// Whether this ends a line (false for all but a split line's last piece).
    pub complete: bool,
    /// Bytes of the chunk fed taken up to this line's end (what
    /// [`LineSplitter::feed`] returns): the line ends there in the input.
    pub taken: usize,
}

impl LineSplitter {
    /// A splitter emitting lines of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            line: Vec::new(),
            part: 0,
        }
    }

    /// Takes bytes from `chunk` until one line (or piece) is complete and
    /// hands it to `emit`; returns how many bytes were consumed. Call again
    /// with the rest. Returns the whole length when the chunk ends inside a
    /// line (kept until more comes or [`finish`](Self::finish)).
    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Line<'_>)) -> usize {
        let room = self.max - self.line.len();
        match chunk.iter().take(room + 1).position(|b| *b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&chunk[..i]);
                self.emit_line(true, i + 1, emit);
                i + 1
            }
            None if chunk.len() > room => {
                self.line.extend_from_slice(&chunk[..room]);
                self.emit_line(false, room, emit);
                room
            }
            None => {
                self.line.extend_from_slice(chunk);
                chunk.len()
            }
        }
    }

    /// Emits the unterminated rest, if any (the input ended).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Line<'_>)) {
        if !self.line.is_empty() {
            self.emit_line(true, 0, emit);
        }
    }

    /// Bytes held of an unterminated line.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    fn emit_line(&mut self, complete: bool, taken: usize, emit: &mut dyn FnMut(Line<'_>)) {
        let part = if complete {
            (self.part > 0).then_some(self.part)
        } else {
            Some(self.part)
        };
        emit(Line {
            bytes: &self.line,
            part,
            complete,
            taken,
        });
        self.line.clear();
        self.part = if complete { 0 } else { self.part + 1 };
    }
}

/// Assigns `tps` on a positional source's link (a new epoch: flush the
/// open batch first) and has every exactly-once sink complete what a crash
/// left of them, retrying until it can or shutdown.
pub(crate) async fn assign(link: &SourceLink, tps: &[(String, i32)], ctx: &SourceContext) {
    link.assign(tps);
    for store in link.stores() {
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = store.recover(tps).await {
            tracing::warn!(source = %ctx.name, sink = store.name(), error = %e, "a sink cannot recover its committed positions yet; retrying");
            if ctx.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Milliseconds since the epoch now (`-1` if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(-1, |d| d.as_millis() as i64)
}

/// Microseconds since the epoch now: the first offset of sources that
/// number events themselves, so offsets keep ascending across restarts.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Sleeps until `deadline`, or forever if there is none.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, input: &[&[u8]]) -> Vec<(String, Option<u32>)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit =
            |l: Line<'_>| out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.part));
        for chunk in input {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let n = s.feed(rest, &mut emit);
                rest = &rest[n..];
            }
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn splits_lines_across_chunks_and_long_lines_into_parts() {
        assert_eq!(
            lines(4, &[b"abcdefghij\nx", b"y\n0123", b"\n45"]),
            vec![
                ("abcd".into(), Some(0)),
                ("efgh".into(), Some(1)),
                ("ij".into(), Some(2)),
                ("xy".into(), None),
                ("0123".into(), None),
                ("45".into(), None),
            ]
        );
        assert_eq!(
            lines(10, &[b"\n\n"]),
            vec![("".into(), None), ("".into(), None)]
        );
    }

    #[test]
    fn in_order_commits_only_a_delivered_prefix() {
        let mut o = InOrder::default();
        let (a, b, c) = (o.next(), o.next(), o.next());
        assert!(o.report(b, "b", true).is_empty());
        assert_eq!(o.report(a, "a", true), vec!["a", "b"]);
        assert_eq!(o.report(c, "c", true), vec!["c"]);
        let (d, e) = (o.next(), o.next());
        assert!(o.report(d, "d", false).is_empty());
        assert!(o.report(e, "e", true).is_empty());
        assert!(o.blocked());
    }
}
