//! The receiving end of a file channel: read records in log order, hand them
//! out with new acks, and move the checkpoint as the sink delivers them.
//!
//! Reads are plain positioned reads of what the writer published as whole
//! records (usually still in the page cache), done inline: there is no await
//! between reading a record and returning it, so [`FileReceiver::recv`] is
//! cancel-safe. Acknowledgement reports are applied by the checkpointer, a
//! blocking task that persists the checkpoint and deletes delivered
//! segments off the async workers.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::{debug, error};

use super::checkpoint::{self, Position};
use super::error::{WalError, context};
use super::recover::quarantine;
use super::shared::{BACKOFF, Shared};
use super::wal::{self, HEADER_LEN, Read};
use crate::event::{Ack, AckReport, Batch};

/// The receiving side of a file channel, owned by one sink.
pub struct FileReceiver {
    shared: Arc<Shared>,
    /// The segment file being read, by id.
    file: Option<(u64, File)>,
    acks: mpsc::UnboundedSender<AckReport>,
    next_id: u64,
    /// Records before this position were in the log when it was opened.
    replay_until: Position,
    /// Wait before reading again after an I/O error.
    backoff: std::time::Duration,
}

impl FileReceiver {
    pub(super) fn new(
        shared: Arc<Shared>,
        acks: mpsc::UnboundedSender<AckReport>,
        replay_until: Position,
    ) -> Self {
        Self {
            shared,
            file: None,
            acks,
            next_id: 0,
            replay_until,
            backoff: BACKOFF.0,
        }
    }

    /// The next batch in log order, with a new ack; `None` once all senders
    /// are dropped and everything written was read.
    pub async fn recv(&mut self) -> Option<Batch> {
        loop {
            let shared = self.shared.clone();
            let notified = shared.data_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let closed = shared.senders_closed.load(Ordering::Acquire);
            match self.next() {
                Ok(Some(batch)) => {
                    self.backoff = BACKOFF.0;
                    return Some(batch);
                }
                Ok(None) => self.backoff = BACKOFF.0,
                Err(e) => {
                    // EMFILE, EIO, ENOMEM…: not damage. Nothing is skipped;
                    // the same record is read again after a pause.
                    shared.metrics.read_errors.fetch_add(1, Ordering::Relaxed);
                    error!(channel = %shared.name, error = %e, backoff = ?self.backoff,
                        "reading the write-ahead log failed; retrying (nothing is skipped)");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF.1);
                    continue;
                }
            }
            if closed {
                return None;
            }
            notified.await;
        }
    }

    /// Reads the next record, if one was written; an I/O error is returned
    /// (the caller retries), damage is quarantined and skipped.
    fn next(&mut self) -> Result<Option<Batch>, WalError> {
        loop {
            let (read, written, sealed_len, following) = {
                let st = self.shared.state();
                let following = st
                    .segments
                    .range(st.read.segment + 1..)
                    .next()
                    .map(|(id, _)| *id);
                (
                    st.read,
                    st.written,
                    st.segments.get(&st.read.segment).copied(),
                    following,
                )
            };
            if read >= written {
                return Ok(None);
            }
            let end = if read.segment == written.segment {
                written.offset
            } else {
                sealed_len.unwrap_or(0)
            };
            if read.offset >= end {
                // The segment is done: go on to the next one.
                let segment = following.unwrap_or(written.segment);
                debug!(channel = %self.shared.name, from = %read, end, to = segment, "segment read to its end");
                self.shared.state().read = Position {
                    segment,
                    offset: HEADER_LEN,
                };
                continue;
            }
            let path = wal::segment_path(&self.shared.dir, read.segment);
            let file = self.open(read.segment)?;
            let outcome =
                wal::read_record(file, read.offset, end).map_err(context("reading", &path))?;
            match outcome {
                Read::Record { batch, next } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let events = batch.len();
                    {
                        let mut st = self.shared.state();
                        st.read = Position {
                            segment: read.segment,
                            offset: next,
                        };
                        st.outstanding.insert(read);
                        st.by_ack.insert(id, read);
                        st.held_events = st.held_events.saturating_sub(events);
                    }
                    tracing::trace!(channel = %self.shared.name, id, at = %read, first_offset = batch.get(0).map(|e| e.offset()), "record handed out");
                    let m = &self.shared.metrics;
                    m.events_out.fetch_add(events as u64, Ordering::Relaxed);
                    if read < self.replay_until {
                        m.replayed_events
                            .fetch_add(events as u64, Ordering::Relaxed);
                    }
                    return Ok(Some(Batch::new(batch, Ack::new(id, self.acks.clone()))));
                }
                Read::End => self.skip(read, end, None),
                Read::Truncated => self.skip_damage(read, end, "record cut short".into())?,
                Read::Corrupt(why) => self.skip_damage(read, end, why)?,
            }
        }
    }

    fn open(&mut self, segment: u64) -> Result<&File, WalError> {
        if self.file.as_ref().is_none_or(|(id, _)| *id != segment) {
            let path = wal::segment_path(&self.shared.dir, segment);
            let file = File::open(&path).map_err(context("opening", &path))?;
            self.file = Some((segment, file));
        }
        Ok(&self.file.as_ref().expect("just opened").1)
    }

    /// Moves past a record damaged since it was written: to the next good
    /// record of the segment ([`wal::resync`]), or to its end.
    fn skip_damage(&mut self, at: Position, end: u64, why: String) -> Result<(), WalError> {
        let path = wal::segment_path(&self.shared.dir, at.segment);
        let file = self.open(at.segment)?;
        let next = wal::resync(file, at.offset, end).map_err(context("resynchronising", &path))?;
        self.skip(at, next.unwrap_or(end), Some(why));
        Ok(())
    }

    /// Moves past bytes `at..end` of a segment that cannot be read (damaged
    /// since they were written); they are quarantined and counted.
    fn skip(&mut self, at: Position, end: u64, why: Option<String>) {
        if let Some(why) = why {
            let shared = &self.shared;
            let path = wal::segment_path(&shared.dir, at.segment);
            let copied = File::open(&path)
                .map_err(context("opening", &path))
                .and_then(|f| {
                    quarantine(
                        &shared.dir,
                        &path,
                        &f,
                        at.segment,
                        at.offset,
                        end,
                        &why,
                        &shared.name,
                    )
                });
            if let Err(e) = copied {
                error!(channel = %shared.name, file = %path.display(), offset = at.offset,
                    "damaged record could not be quarantined: {e}");
            }
            shared
                .metrics
                .corrupt_records
                .fetch_add(1, Ordering::Relaxed);
            shared
                .metrics
                .corrupt_bytes
                .fetch_add(end - at.offset, Ordering::Relaxed);
        }
        self.shared.state().read = Position {
            segment: at.segment,
            offset: end,
        };
    }
}

impl Drop for FileReceiver {
    fn drop(&mut self) {
        self.shared.receiver_closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
    }
}

/// Applies acknowledgement reports until every ack handed out is reported
/// and the receiver is gone: persists the checkpoint, deletes delivered
/// segments, and wakes senders waiting for room. Blocking.
pub(super) fn checkpointer(shared: Arc<Shared>, mut reports: mpsc::UnboundedReceiver<AckReport>) {
    while let Some(first) = reports.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = reports.try_recv() {
            batch.push(more);
        }
        apply(&shared, &batch);
    }
    // Everything handed out is settled: record how far reading got.
    apply(&shared, &[]);
}

/// Applies `reports` and moves the checkpoint as far as they allow.
pub(super) fn apply(shared: &Shared, reports: &[AckReport]) {
    let target = {
        let mut st = shared.state();
        for report in reports {
            let Some(start) = st.by_ack.remove(&report.id) else {
                continue;
            };
            tracing::trace!(channel = %shared.name, id = report.id, at = %start, delivered = report.delivered, "reported");
            st.outstanding.remove(&start);
            if !report.delivered {
                shared
                    .metrics
                    .undelivered_batches
                    .fetch_add(1, Ordering::Relaxed);
                error!(channel = %shared.name, at = %start,
                    "the sink did not deliver a batch; the checkpoint stays before it, so it is read again after a restart");
                st.failed = Some(st.failed.map_or(start, |f| f.min(start)));
            }
        }
        let target = st.deliverable();
        if target <= st.checkpoint {
            return;
        }
        target
    };
    // The marks of what lies behind the checkpoint go first: its records may
    // be deleted once it is stored.
    let has_marks = !shared.state().high.is_empty();
    if has_marks && let Err(e) = shared.store_marks() {
        shared.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
        error!(channel = %shared.name, dir = %shared.dir.display(), error = %e,
            "writing the highwater marks failed; the checkpoint waits for the next acknowledgement");
        return;
    }
    if let Err(e) = checkpoint::store(&shared.dir, target) {
        shared.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
        error!(channel = %shared.name, dir = %shared.dir.display(), error = %e,
            "writing the checkpoint failed; retried with the next acknowledgement");
        return;
    }
    debug!(channel = %shared.name, checkpoint = %target, reports = reports.len(), "checkpoint advanced");
    let delivered: Vec<u64> = {
        let mut st = shared.state();
        st.checkpoint = target;
        let old: Vec<u64> = st
            .segments
            .range(..target.segment)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            st.segments.remove(id);
        }
        shared
            .metrics
            .bytes_on_disk
            .store(st.disk_bytes() as i64, Ordering::Relaxed);
        old
    };
    for id in delivered {
        let path = wal::segment_path(&shared.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                debug!(channel = %shared.name, file = %path.display(), "delivered segment deleted")
            }
            Err(e) => {
                error!(channel = %shared.name, file = %path.display(), error = %e, "deleting a delivered segment")
            }
        }
    }
    shared.space.notify_waiters();
}
