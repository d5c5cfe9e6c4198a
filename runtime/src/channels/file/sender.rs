//! The sending end of a file channel: wait for room, append, acknowledge.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::shared::Shared;
use super::wal;
use crate::channels::Closed;
use crate::event::Batch;

/// The sending side of a file channel; clone it per producer.
#[derive(Clone)]
pub struct FileSender {
    handle: Arc<SenderHandle>,
}

/// Dropped with the last sender clone: tells the receiver no more data comes.
struct SenderHandle {
    shared: Arc<Shared>,
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        // Batches parked for the next group commit are made durable now.
        self.shared.sync_pending();
        self.shared.senders_closed.store(true, Ordering::Release);
        self.shared.data_ready.notify_waiters();
    }
}

impl FileSender {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            handle: Arc::new(SenderHandle { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Appends a batch to the log, waiting while the log holds `max_bytes`
    /// of undelivered data (a batch is admitted alone into an empty log,
    /// however large). Its ack is released once the batch is durable per the
    /// fsync policy: from then on the channel owns the events.
    pub async fn send(&self, mut batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            batch.release();
            return Ok(());
        }
        let shared = self.shared().clone();
        if batch.ack.is_positional() {
            match dedupe(&shared, batch).await {
                Some(kept) => batch = kept,
                None => return Ok(()),
            }
        }
        let mut record = Vec::new();
        if let Err(e) = wal::encode(&batch.events, &mut record) {
            // Not written, so not delivered: the source reads it again. A
            // source's `batch_max_bytes` (at most 1 GiB) keeps batches far
            // below this.
            shared.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(channel = %shared.name, "{e}; the batch is reported as not delivered");
            batch.ack.fail();
            return Ok(());
        }
        // Held until the batch is durable: a send abandoned half-way (its
        // future dropped) drops it unreleased, which fails the batch.
        let held = batch.ack.clone();
        loop {
            let notified = shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.receiver_closed.load(Ordering::Acquire) {
                drop(held);
                return Err(Closed(batch));
            }
            {
                let st = shared.state();
                let undelivered = st.undelivered_bytes();
                if st.checkpoint >= st.written
                    || undelivered + record.len() as u64 <= shared.max_bytes
                {
                    break;
                }
            }
            notified.await;
        }
        let appended = tokio::task::spawn_blocking({
            let shared = shared.clone();
            move || shared.append(batch, &record)
        })
        .await;
        match appended {
            Ok(Ok(())) => {
                held.release();
                Ok(())
            }
            Ok(Err(batch)) => Err(Closed(batch)),
            // The blocking task panicked or was cancelled: `held` fails the batch.
            Err(e) => {
                tracing::error!(channel = %shared.name, "appending to the log failed: {e}");
                Err(Closed(Batch::unacked(Default::default())))
            }
        }
    }

    /// Events written and not yet read by the sink.
    pub fn held_events(&self) -> usize {
        self.shared().state().held_events
    }
}

/// Lists the batch's new partitions durably, then leaves out the events
/// the channel already holds ([`highwater`](super::highwater)). `None` if
/// nothing is left to append (the batch is then settled: released if all
/// was held, failed if the marks could not be written).
async fn dedupe(shared: &Arc<Shared>, mut batch: Batch) -> Option<Batch> {
    let unlisted = super::highwater::unlisted(&shared.state().high, &batch.events);
    if !unlisted.is_empty() {
        {
            let mut st = shared.state();
            for key in unlisted {
                st.high.entry(key).or_insert(-1);
            }
        }
        let stored = tokio::task::spawn_blocking({
            let shared = shared.clone();
            move || shared.store_marks()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = stored {
            shared.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(channel = %shared.name, error = %e, "cannot record a new partition of a positional source; the batch is reported as not delivered");
            batch.ack.fail();
            return None;
        }
    }
    let without = super::highwater::without_held(&shared.state().high, &batch.events);
    if let Some((kept, dropped)) = without {
        shared
            .metrics
            .duplicates_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        tracing::info!(channel = %shared.name, dropped, "events the channel already holds were read again (a source restarted); dropped");
        if kept.is_empty() {
            batch.release();
            return None;
        }
        batch.events = kept;
    }
    Some(batch)
}

#[cfg(test)]
impl FileSender {
    /// The shared state, for tests.
    pub(super) fn handle_state(&self) -> std::sync::MutexGuard<'_, super::shared::State> {
        self.shared().state()
    }
}
