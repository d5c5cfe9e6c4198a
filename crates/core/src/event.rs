//! Batches as they travel through the host, and their acknowledgements.
//!
//! A [`Batch`] is the flat plugin-contract encoding ([`BatchBuf`]) plus an
//! [`Ack`]: the finalizer shared by every piece cut from one source batch.
//! Each holder of a clone of the `Ack` (the processing stage, a channel, a
//! sink, an open file) must say what became of its part: [`Ack::release`]
//! once the events it received are durable (file visible, producer
//! acknowledged), [`Ack::fail`] if they cannot be. A clone dropped without
//! either counts as a failure: a panic, an aborted task or a forgotten path
//! in code holding one can never let its offsets be committed. When the last
//! clone is gone the source learns whether the batch is delivered (every
//! clone released) and may commit its offsets; otherwise the source never
//! commits past that batch and the events are read again after a restart
//! (at-least-once), never lost.
//!
//! A source may [time](Ack::time_delivery) a batch: when its last clone is
//! gone and every holder released, the time since the batch's first event
//! was read goes into a histogram (the end-to-end latency an operator
//! alerts on).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::metrics::Histogram;

pub use sluice_batch::{BatchBuf, EventRef, NewEvent, STRIDE};

/// Headers whose names start with this are the host's: provenance
/// (`sluice.lineage`, `sluice.dead_letter.*`, `sluice.origin.*`) and the
/// sources' own (`sluice.exec.part`). Nobody else may set them: sources drop
/// them from what they read, and a plugin's replacement event carries the
/// host headers of the event it replaces, whatever the plugin returned, so
/// a producer or a plugin can neither forge provenance nor erase it.
pub const HOST_HEADER_PREFIX: &str = "sluice.";

/// Whether header `name` is one of the host's ([`HOST_HEADER_PREFIX`]).
pub fn is_host_header(name: &str) -> bool {
    name.starts_with(HOST_HEADER_PREFIX)
}

/// Header naming why an event was dead-lettered (by a plugin, a source, a
/// router or a sink).
pub const DEAD_LETTER_REASON: &str = "sluice.dead_letter.reason";
/// Header naming the plugin (or `router`) that dead-lettered the event.
pub const DEAD_LETTER_PLUGIN: &str = "sluice.dead_letter.plugin";
use tokio::sync::{Notify, mpsc};

/// A batch of events in flight, with its acknowledgement.
#[derive(Debug)]
pub struct Batch {
    /// The events, in the plugin-contract encoding.
    pub events: BatchBuf,
    /// Released by whoever makes the events durable.
    pub ack: Ack,
    /// Records the source could not hand on as events (a header key that is
    /// not UTF-8, …), already carrying the dead-letter headers that say why;
    /// the processing stage sends them to the dead-letter channel. Always
    /// empty past that stage.
    pub rejected: BatchBuf,
}

impl Batch {
    /// A batch of `events` whose delivery `ack` reports.
    pub fn new(events: BatchBuf, ack: Ack) -> Self {
        Self {
            events,
            ack,
            rejected: BatchBuf::default(),
        }
    }

    /// A batch whose delivery nobody waits for (tests, tools).
    pub fn unacked(events: BatchBuf) -> Self {
        Self::new(events, Ack::none())
    }

    /// Its events are durable: releases its ack (see [`Ack::release`]).
    pub fn release(self) {
        self.ack.release();
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What the last clone of an [`Ack`] reports to its source when dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReport {
    /// The source's batch id.
    pub id: u64,
    /// `false` if any holder called [`Ack::fail`].
    pub delivered: bool,
}

/// Shared finalizer of one source batch; see the module docs. Each clone is
/// a holder that must be [released](Ack::release); dropping it unreleased
/// fails the batch.
#[derive(Debug)]
#[must_use = "an Ack dropped without `release` fails its batch"]
pub struct Ack {
    inner: Arc<AckInner>,
    released: bool,
}

impl Clone for Ack {
    /// Another holder of the same batch, not yet released.
    fn clone(&self) -> Self {
        self.inner.holders.fetch_add(1, Ordering::AcqRel);
        Self {
            inner: self.inner.clone(),
            released: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.released {
            self.inner.failed.store(true, Ordering::Release);
        }
        self.inner.holders.fetch_sub(1, Ordering::AcqRel);
        self.inner.gone.notify_waiters();
    }
}

#[derive(Debug)]
struct AckInner {
    id: u64,
    epoch: u64,
    failed: AtomicBool,
    /// Clones alive.
    holders: AtomicUsize,
    /// Woken whenever a clone is released or dropped.
    gone: Notify,
    to: Option<mpsc::UnboundedSender<AckReport>>,
    /// When the batch's first event was read, and where its delivery time goes.
    timer: OnceLock<(Instant, Arc<Histogram>)>,
    /// See [`Ack::mark_positional`].
    positional: AtomicBool,
}

impl Ack {
    /// A finalizer that reports batch `id` to `to` when its last clone drops.
    pub fn new(id: u64, to: mpsc::UnboundedSender<AckReport>) -> Self {
        Self::in_epoch(id, 0, to)
    }

    /// Like [`Ack::new`], for a batch read in ownership epoch `epoch`
    /// (see `sluice::delivery`).
    pub fn in_epoch(id: u64, epoch: u64, to: mpsc::UnboundedSender<AckReport>) -> Self {
        Self::with(AckInner {
            id,
            epoch,
            failed: AtomicBool::new(false),
            holders: AtomicUsize::new(1),
            gone: Notify::new(),
            to: Some(to),
            timer: OnceLock::new(),
            positional: AtomicBool::new(false),
        })
    }

    /// A finalizer nobody listens to.
    pub fn none() -> Self {
        Self::with(AckInner {
            id: 0,
            epoch: 0,
            failed: AtomicBool::new(false),
            holders: AtomicUsize::new(1),
            gone: Notify::new(),
            to: None,
            timer: OnceLock::new(),
            positional: AtomicBool::new(false),
        })
    }

    fn with(inner: AckInner) -> Self {
        Self {
            inner: Arc::new(inner),
            released: false,
        }
    }

    /// This holder's part is durable: it no longer stands in the way of the
    /// batch counting as delivered.
    pub fn release(mut self) {
        self.released = true;
    }

    /// Once the batch is delivered (every holder released), records the
    /// time since `read` into `into`. A failed batch records nothing: it is
    /// read again and timed then. Only the first call counts.
    pub fn time_delivery(&self, read: Instant, into: Arc<Histogram>) {
        let _ = self.inner.timer.set((read, into));
    }

    /// Declares that the batch's events carry *positional* offsets: the
    /// same input read again (after a crash, from a stale position) gets
    /// the same topic, partition and offset, and offsets ascend within a
    /// partition. A durable channel may then drop an event whose offset it
    /// already holds, which makes re-reading exact (see the file channel's
    /// `highwater` module). Sources reading files set it; Kafka sources do
    /// not (a re-created topic starts its offsets again).
    pub fn mark_positional(&self) {
        self.inner.positional.store(true, Ordering::Release);
    }

    /// Whether [`mark_positional`](Self::mark_positional) was called.
    pub fn is_positional(&self) -> bool {
        self.inner.positional.load(Ordering::Acquire)
    }

    /// Marks the batch as not delivered: its source will not commit past it.
    pub fn fail(&self) {
        self.inner.failed.store(true, Ordering::Release);
    }

    /// The source's id of the batch.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The ownership epoch the batch was read in (0 for sources without one).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// Whether `other` is a holder of the same source batch.
    pub fn same_batch(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Holders of the batch alive now (this one included).
    pub fn holders(&self) -> usize {
        self.inner.holders.load(Ordering::Acquire)
    }

    /// Waits until at most `n` holders of the batch are left: the others
    /// have released (or failed) their parts. A transactional sink waits so
    /// for the other sinks fed from the same source batch before its
    /// transaction commits the batch's offsets.
    pub async fn until_holders_at_most(&self, n: usize) {
        loop {
            let gone = self.inner.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.holders() <= n {
                return;
            }
            gone.await;
        }
    }

    /// Whether any holder so far has failed the batch.
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }
}

impl Drop for AckInner {
    fn drop(&mut self) {
        let delivered = !self.failed.load(Ordering::Acquire);
        if let Some((read, histogram)) = self.timer.get()
            && delivered
        {
            histogram.observe(read.elapsed());
        }
        if let Some(to) = &self.to {
            // The source may already be gone (shutdown); nothing to tell then.
            let _ = to.send(AckReport {
                id: self.id,
                delivered,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_other_holders_are_gone() {
        let a = Ack::none();
        let b = a.clone();
        let c = b.clone();
        assert_eq!(a.holders(), 3);
        assert!(a.same_batch(&c) && !a.same_batch(&Ack::none()));
        let waiter = tokio::spawn(async move {
            a.until_holders_at_most(1).await;
            let failed = a.is_failed();
            a.release();
            failed
        });
        b.release();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(c); // unreleased
        assert!(waiter.await.unwrap(), "the dropped holder failed the batch");
    }

    #[test]
    fn reports_once_when_last_clone_is_released() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(7, tx);
        let b = a.clone();
        a.release();
        assert!(rx.try_recv().is_err());
        b.release();
        assert_eq!(
            rx.try_recv().unwrap(),
            AckReport {
                id: 7,
                delivered: true
            }
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_failed_clone_fails_the_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(1, tx);
        let b = a.clone();
        b.fail();
        b.release();
        a.release();
        assert!(!rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn a_clone_dropped_unreleased_fails_the_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(2, tx);
        drop(a.clone());
        a.release();
        assert!(!rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn a_panic_while_holding_an_ack_fails_the_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(3, tx);
        let held = a.clone();
        let _ = std::thread::spawn(move || {
            let _held = held;
            panic!("a bug in code holding an ack");
        })
        .join();
        a.release();
        assert!(!rx.try_recv().unwrap().delivered);
    }

    #[test]
    fn a_timed_batch_records_its_delivery_only_when_delivered() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let latency = Arc::new(Histogram::new(crate::metrics::FAST_BUCKETS));
        let read = Instant::now() - std::time::Duration::from_millis(20);
        let a = Ack::new(4, tx.clone());
        a.time_delivery(read, latency.clone());
        let b = a.clone();
        a.release();
        assert_eq!(latency.count(), 0, "a holder is left");
        b.release();
        assert_eq!(latency.count(), 1);
        assert!(latency.sum_seconds() >= 0.02);
        let failed = Ack::new(5, tx);
        failed.time_delivery(read, latency.clone());
        failed.fail();
        failed.release();
        assert_eq!(latency.count(), 1, "a failed batch is not timed");
    }
}
