//! Batches as they travel through the host, and their acknowledgements.
//!
//! A [`Batch`] is the flat plugin-contract encoding ([`BatchBuf`]) plus an
//! [`Ack`]: the finalizer shared by every piece cut from one source batch.
//! Each sink keeps its clone of the `Ack` until the events it received are
//! durable (file visible, producer acknowledged) and then drops it; when the
//! last clone is dropped the source learns the batch is delivered and may
//! commit its offsets. A sink that cannot make data durable calls
//! [`Ack::fail`] first, and the source then never commits past that batch:
//! the events are redelivered after a restart (at-least-once), never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use sluice_batch::{BatchBuf, EventRef, NewEvent, STRIDE};
use tokio::sync::mpsc;

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

/// Shared finalizer of one source batch; see the module docs.
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckInner>);

#[derive(Debug)]
struct AckInner {
    id: u64,
    epoch: u64,
    failed: AtomicBool,
    to: Option<mpsc::UnboundedSender<AckReport>>,
}

impl Ack {
    /// A finalizer that reports batch `id` to `to` when its last clone drops.
    pub fn new(id: u64, to: mpsc::UnboundedSender<AckReport>) -> Self {
        Self::in_epoch(id, 0, to)
    }

    /// Like [`Ack::new`], for a batch read in ownership epoch `epoch`
    /// (see [`crate::delivery`]).
    pub fn in_epoch(id: u64, epoch: u64, to: mpsc::UnboundedSender<AckReport>) -> Self {
        Self(Arc::new(AckInner {
            id,
            epoch,
            failed: AtomicBool::new(false),
            to: Some(to),
        }))
    }

    /// A finalizer nobody listens to.
    pub fn none() -> Self {
        Self(Arc::new(AckInner {
            id: 0,
            epoch: 0,
            failed: AtomicBool::new(false),
            to: None,
        }))
    }

    /// Marks the batch as not delivered: its source will not commit past it.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }

    /// The source's id of the batch.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The ownership epoch the batch was read in (0 for sources without one).
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(to) = &self.to {
            // The source may already be gone (shutdown); nothing to tell then.
            let _ = to.send(AckReport {
                id: self.id,
                delivered: !self.failed.load(Ordering::Acquire),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_when_last_clone_drops() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = Ack::new(7, tx);
        let b = a.clone();
        drop(a);
        assert!(rx.try_recv().is_err());
        drop(b);
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
        a.clone().fail();
        drop(a);
        assert!(!rx.try_recv().unwrap().delivered);
    }
}
