//! State shared by the ends of a file channel: the appending writer, the log
//! positions, and the disk accounting behind backpressure.
//!
//! Appending (and fsyncing, and retrying a full disk) is blocking file I/O,
//! run on tokio's blocking pool by the sender; one writer lock serialises
//! appends, so records never interleave.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{error, warn};

use super::checkpoint::{Position, sync_dir};
use super::config::FsyncPolicy;
use super::highwater::{self, HighWater};
use super::wal::{self, HEADER_LEN};
use crate::event::{Ack, Batch, BatchBuf};
use crate::metrics::{Counter, Gauge, Metrics};

/// First and longest wait between tries of a failed disk operation.
pub(super) const BACKOFF: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(5));

/// Counters and gauges `channel.<name>.<what>`.
pub(super) struct ChannelMetrics {
    pub events_in: Counter,
    pub events_out: Counter,
    pub bytes_on_disk: Gauge,
    pub fsyncs: Counter,
    pub disk_full: Counter,
    pub write_errors: Counter,
    pub read_errors: Counter,
    pub corrupt_records: Counter,
    pub corrupt_bytes: Counter,
    pub replayed_events: Counter,
    pub undelivered_batches: Counter,
    pub duplicates_dropped: Counter,
}

impl ChannelMetrics {
    pub(super) fn new(metrics: &Metrics, name: &str) -> Self {
        let c = |what: &str| metrics.counter(&format!("channel.{name}.{what}"));
        Self {
            events_in: c("events_in"),
            events_out: c("events_out"),
            bytes_on_disk: metrics.gauge(&format!("channel.{name}.bytes_on_disk")),
            fsyncs: c("fsyncs"),
            disk_full: c("disk_full"),
            write_errors: c("write_errors"),
            read_errors: c("read_errors"),
            corrupt_records: c("corrupt_records"),
            corrupt_bytes: c("corrupt_bytes"),
            replayed_events: c("replayed_events"),
            undelivered_batches: c("undelivered_batches"),
            duplicates_dropped: c("duplicates_dropped"),
        }
    }
}

/// The segment being appended to.
pub(super) struct Writer {
    pub file: File,
    pub segment: u64,
    pub len: u64,
    /// Acks of batches written since the last fsync (`fsync = "interval"`).
    pub unsynced: Vec<Ack>,
    /// The offsets of positional batches among them: marks raised at the fsync.
    pub unsynced_marks: Vec<BatchBuf>,
}

/// Positions and bookkeeping, under one lock.
#[derive(Debug)]
pub(super) struct State {
    /// End of the last whole record appended.
    pub written: Position,
    /// The persisted checkpoint: everything before it is delivered.
    pub checkpoint: Position,
    /// Where the receiver reads next.
    pub read: Position,
    /// Segment ids and their lengths.
    pub segments: BTreeMap<u64, u64>,
    /// Starts of records handed to the sink and not yet reported.
    pub outstanding: BTreeSet<Position>,
    /// Record start of each ack id handed out.
    pub by_ack: HashMap<u64, Position>,
    /// Start of the first record reported undelivered: the checkpoint stays
    /// before it for the rest of the run.
    pub failed: Option<Position>,
    /// Events written and not yet read.
    pub held_events: usize,
    /// What positional sources' partitions hold ([`highwater`](super::highwater)).
    pub high: HighWater,
}

impl State {
    /// Bytes written and not yet delivered.
    pub(crate) fn undelivered_bytes(&self) -> u64 {
        let from_checkpoint: u64 = self
            .segments
            .range(self.checkpoint.segment..)
            .map(|(_, len)| len)
            .sum();
        from_checkpoint.saturating_sub(self.checkpoint.offset)
    }

    /// Bytes of all segments.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// Where the checkpoint may move: before the first record handed out
    /// and not delivered, or the read position.
    pub(crate) fn deliverable(&self) -> Position {
        let mut pos = self.read;
        if let Some(first) = self.outstanding.first() {
            pos = pos.min(*first);
        }
        if let Some(failed) = self.failed {
            pos = pos.min(failed);
        }
        pos
    }
}

/// Everything both ends of one channel use.
pub(super) struct Shared {
    pub name: String,
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub segment_size: u64,
    pub max_bytes: u64,
    pub writer: Mutex<Writer>,
    pub state: Mutex<State>,
    /// Records were appended, or the senders are gone.
    pub data_ready: Notify,
    /// The checkpoint advanced, or the receiver is gone.
    pub space: Notify,
    pub senders_closed: AtomicBool,
    pub receiver_closed: AtomicBool,
    pub metrics: ChannelMetrics,
    /// Serialises writes of the `highwater` file (each writes a snapshot
    /// taken under it, so a later write never holds older marks).
    pub high_file: Mutex<()>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` until it succeeds, waiting with backoff between failures;
    /// a full disk is counted in `disk_full`, other errors in
    /// `write_errors`. `None` if the receiver went away meanwhile (nobody
    /// will read what is written: give up rather than wait forever).
    fn retry<T>(&self, what: &str, mut op: impl FnMut() -> io::Result<T>) -> Option<T> {
        let mut backoff = BACKOFF.0;
        loop {
            match op() {
                Ok(v) => return Some(v),
                Err(e) if crate::error::is_disk_full(&e) => {
                    self.metrics.disk_full.fetch_add(1, Ordering::Relaxed);
                    warn!(channel = %self.name, dir = %self.dir.display(), error = %e, ?backoff,
                        "disk full {what}; intake paused, retrying (nothing is dropped)");
                }
                Err(e) => {
                    self.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
                    error!(channel = %self.name, dir = %self.dir.display(), error = %e, ?backoff,
                        "failed {what}; retrying (nothing is dropped)");
                }
            }
            if self.receiver_closed.load(Ordering::Acquire) {
                return None;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Appends `record` (the encoding of `batch`) durably per the fsync
    /// policy, then releases (or, with `interval`, parks) the batch's ack.
    /// Blocking. Gives the batch back if the receiver went away while the
    /// disk failed.
    pub fn append(&self, batch: Batch, record: &[u8]) -> Result<(), Batch> {
        let mut w = self.writer();
        if w.len > HEADER_LEN
            && w.len + record.len() as u64 > self.segment_size
            && self.rotate(&mut w).is_none()
        {
            return Err(batch);
        }
        let at = w.len;
        let path = wal::segment_path(&self.dir, w.segment);
        let written = self.retry(&format!("appending to {}", path.display()), || {
            w.file.write_all_at(record, at).inspect_err(|_| {
                // Cut a partial write off, so the next try starts clean.
                let _ = w.file.set_len(at);
            })
        });
        if written.is_none() {
            return Err(batch);
        }
        w.len += record.len() as u64;
        if self.fsync == FsyncPolicy::EveryBatch && !self.sync(&mut w) {
            return Err(batch);
        }
        let events = batch.len();
        let positional = batch.ack.is_positional();
        {
            let mut st = self.state();
            if positional && self.fsync != FsyncPolicy::Interval {
                highwater::raise(&mut st.high, &batch.events, true);
            }
            st.written = Position {
                segment: w.segment,
                offset: w.len,
            };
            st.segments.insert(w.segment, w.len);
            st.held_events += events;
            self.metrics
                .bytes_on_disk
                .store(st.disk_bytes() as i64, Ordering::Relaxed);
        }
        self.metrics
            .events_in
            .fetch_add(events as u64, Ordering::Relaxed);
        self.data_ready.notify_waiters();
        let Batch { events, ack, .. } = batch;
        match self.fsync {
            FsyncPolicy::Interval => {
                if positional {
                    w.unsynced_marks.push(events);
                }
                w.unsynced.push(ack);
            }
            FsyncPolicy::EveryBatch | FsyncPolicy::Never => {
                drop(w);
                ack.release(); // durable: the source may forget the batch
            }
        }
        Ok(())
    }

    /// Fsyncs the current segment and releases the acks waiting for it.
    /// `false` if the receiver went away while fsync failed.
    fn sync(&self, w: &mut Writer) -> bool {
        let file = &w.file;
        let path = wal::segment_path(&self.dir, w.segment);
        if self
            .retry(&format!("syncing {}", path.display()), || file.sync_data())
            .is_none()
        {
            for ack in w.unsynced.drain(..) {
                ack.fail();
            }
            w.unsynced_marks.clear();
            return false;
        }
        self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
        if !w.unsynced_marks.is_empty() {
            let mut st = self.state();
            for events in w.unsynced_marks.drain(..) {
                highwater::raise(&mut st.high, &events, true);
            }
        }
        for ack in w.unsynced.drain(..) {
            ack.release();
        }
        true
    }

    /// Persists the marks ([`highwater`]): a snapshot taken under the
    /// file's lock. Blocking.
    pub fn store_marks(&self) -> io::Result<()> {
        let _file = self.high_file.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.state().high.clone();
        highwater::store(&self.dir, &snapshot)
    }

    /// Group commit (`fsync = "interval"`): fsyncs if batches wait for it.
    pub(crate) fn sync_pending(&self) {
        let mut w = self.writer();
        if !w.unsynced.is_empty() {
            self.sync(&mut w);
        }
    }

    /// Closes the current segment and starts the next. `None` if the
    /// receiver went away while the disk failed.
    fn rotate(&self, w: &mut Writer) -> Option<()> {
        if self.fsync != FsyncPolicy::Never && !self.sync(w) {
            return None;
        }
        let id = w.segment + 1;
        let path = wal::segment_path(&self.dir, id);
        let file = self.retry(&format!("creating {}", path.display()), || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all_at(wal::MAGIC, 0)?;
            if self.fsync != FsyncPolicy::Never {
                file.sync_all()?;
                sync_dir(&self.dir)?;
            }
            Ok(file)
        })?;
        *w = Writer {
            file,
            segment: id,
            len: HEADER_LEN,
            unsynced: std::mem::take(&mut w.unsynced),
            unsynced_marks: std::mem::take(&mut w.unsynced_marks),
        };
        let mut st = self.state();
        st.segments.insert(id, HEADER_LEN);
        st.written = Position {
            segment: id,
            offset: HEADER_LEN,
        };
        Some(())
    }
}
