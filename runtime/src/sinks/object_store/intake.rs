//! The sink's input, read by a task of its own, and the [`Drain`] signal
//! that tells a retrying store operation the pipeline is stopping.
//!
//! The sink has no shutdown token: the pipeline stops it by ending its
//! channel. A store operation that keeps failing must learn of that end
//! (it then gives up after `shutdown_attempts` instead of retrying forever),
//! but it must not read the channel itself, or every I/O function would
//! carry the channel along. So an intake task reads the channel and hands
//! batches to the sink loop one at a time ([`Intake::next`]), and raises the
//! [`Drain`] when the channel ends. Store I/O only sees the `Drain`.
//!
//! Normally the intake takes at most one batch off the channel beyond the
//! one being written (it waits in the hand-over queue).
//! While an operation is being retried ([`Drain::wait`]) the sink takes
//! nothing, so the intake reads ahead, parking up to [`MAX_PARKED`] batches
//! (after that, senders feel back-pressure), so that the channel's end is
//! noticed even then. Batches the intake holds when the sink goes away are
//! dropped unreleased, which fails them: nothing is reported delivered that
//! was not written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::channels::ChannelReceiver;
use crate::event::Batch;

/// Most batches read ahead while an operation is being retried.
pub(crate) const MAX_PARKED: usize = 8;

/// Whether the pipeline is stopping, as far as one sink's input tells, and
/// the sink's word to its intake that it is waiting to retry. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Drain {
    /// Raised by the intake when the channel ends.
    ended: Arc<watch::Sender<bool>>,
    /// Raised by the retrier while it waits between attempts.
    waiting: Arc<watch::Sender<bool>>,
}

impl Drain {
    /// A signal that is never raised unless [`Drain::raise`] is called:
    /// for code that retries without a channel (tests, tools).
    pub fn new() -> Self {
        Self {
            ended: Arc::new(watch::channel(false).0),
            waiting: Arc::new(watch::channel(false).0),
        }
    }

    /// Whether the input has ended: the pipeline is shutting down.
    pub fn raised(&self) -> bool {
        *self.ended.borrow()
    }

    /// Marks the input as ended.
    pub(crate) fn raise(&self) {
        self.ended.send_replace(true);
    }

    /// Waits `delay` before the next attempt of a failing operation; the
    /// intake meanwhile reads ahead so that the input's end is seen.
    pub async fn wait(&self, delay: Duration) {
        self.waiting.send_replace(true);
        tokio::time::sleep(delay).await;
        self.waiting.send_replace(false);
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

/// What the sink loop does next.
pub(crate) enum Next {
    /// Write this batch.
    Batch(Batch),
    /// A roll deadline passed.
    Tick,
    /// The channel ended: complete everything and stop.
    Closed,
}

/// The sink loop's end of its input; aborts the intake task when dropped.
pub(crate) struct Intake {
    rx: mpsc::Receiver<Batch>,
    task: JoinHandle<()>,
}

impl Intake {
    /// Starts reading `input`; the returned [`Drain`] is raised when it ends.
    pub fn spawn(input: ChannelReceiver) -> (Self, Drain) {
        let drain = Drain::new();
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(read(input, tx, drain.clone()));
        (Self { rx, task }, drain)
    }

    /// The next batch, or `Tick` once `deadline` passes, or `Closed`.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Next {
        let received = match deadline {
            Some(deadline) => tokio::select! {
                batch = self.rx.recv() => batch,
                () = tokio::time::sleep_until(deadline) => return Next::Tick,
            },
            None => self.rx.recv().await,
        };
        match received {
            Some(batch) => Next::Batch(batch),
            None => Next::Closed,
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The intake task: see the module docs. Ends (dropping `tx`, which closes
/// the sink's side) once the input has ended and everything is handed on,
/// or when the sink's side is gone.
async fn read(mut input: ChannelReceiver, tx: mpsc::Sender<Batch>, drain: Drain) {
    let mut waiting = drain.waiting.subscribe();
    let mut parked: VecDeque<Batch> = VecDeque::new();
    let mut ended = false;
    loop {
        if ended && parked.is_empty() {
            return;
        }
        let read_ahead = !ended && parked.len() < MAX_PARKED && *waiting.borrow_and_update();
        tokio::select! {
            biased;
            () = tx.closed() => return,
            permit = tx.reserve() => {
                let Ok(permit) = permit else { return };
                if let Some(batch) = parked.pop_front() {
                    permit.send(batch);
                    continue;
                }
                // Room for one batch and none parked: wait for the next
                // (holding the room), or for the input's end.
                tokio::select! {
                    () = tx.closed() => return,
                    received = input.recv() => match received {
                        Some(batch) => permit.send(batch),
                        None => {
                            ended = true;
                            drain.raise();
                        }
                    },
                }
            }
            received = input.recv(), if read_ahead => match received {
                Some(batch) => parked.push_back(batch),
                None => {
                    ended = true;
                    drain.raise();
                }
            },
            changed = waiting.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_batch::BatchBuf;

    use super::*;
    use crate::channels::memory::{Capacity, channel};
    use crate::event::Ack;

    fn capacity() -> Capacity {
        Capacity {
            events: 100,
            bytes: 100_000,
        }
    }

    #[tokio::test]
    async fn hands_on_every_batch_then_raises_the_drain() {
        let (tx, rx) = channel(capacity());
        let (mut intake, drain) = Intake::spawn(rx);
        for _ in 0..3 {
            tx.send(Batch::unacked(BatchBuf::default())).await.unwrap();
        }
        drop(tx);
        for _ in 0..3 {
            assert!(matches!(intake.next(None).await, Next::Batch(_)));
        }
        assert!(matches!(intake.next(None).await, Next::Closed));
        assert!(drain.raised());
    }

    #[tokio::test]
    async fn reads_ahead_while_the_sink_waits_so_the_end_is_seen() {
        let (tx, rx) = channel(capacity());
        let (mut intake, drain) = Intake::spawn(rx);
        // More batches than the intake holds without reading ahead.
        for _ in 0..5 {
            tx.send(Batch::unacked(BatchBuf::default())).await.unwrap();
        }
        drop(tx);
        // The sink takes nothing and retries: the end is seen by waiting.
        let mut waits = 0;
        while !drain.raised() {
            assert!(waits < 1000, "the input's end was never seen");
            drain.wait(Duration::from_millis(1)).await;
            waits += 1;
        }
        for _ in 0..5 {
            assert!(matches!(intake.next(None).await, Next::Batch(_)));
        }
        assert!(matches!(intake.next(None).await, Next::Closed));
    }

    #[tokio::test]
    async fn does_not_read_ahead_unless_the_sink_waits() {
        let (tx, rx) = channel(capacity());
        let (_intake, drain) = Intake::spawn(rx);
        for _ in 0..4 {
            tx.send(Batch::unacked(BatchBuf::default())).await.unwrap();
        }
        drop(tx);
        // Give the intake every chance to run: unless the sink waits, it
        // takes one batch off the channel (handed on), so the end stays unseen.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!drain.raised());
    }

    #[tokio::test]
    async fn dropping_the_intake_fails_what_it_holds() {
        let (tx, rx) = channel(capacity());
        let (intake, drain) = Intake::spawn(rx);
        let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
        for id in 0..3 {
            tx.send(Batch::new(
                BatchBuf::default(),
                Ack::new(id, acks_tx.clone()),
            ))
            .await
            .unwrap();
        }
        drop(tx);
        while !drain.raised() {
            drain.wait(Duration::from_millis(1)).await;
        }
        assert!(
            acks.try_recv().is_err(),
            "nothing is reported before the drop"
        );
        drop(intake);
        let mut failed = Vec::new();
        while failed.len() < 3 {
            let report = acks.recv().await.unwrap();
            assert!(!report.delivered);
            failed.push(report.id);
        }
        failed.sort_unstable();
        assert_eq!(failed, vec![0, 1, 2]);
    }
}
