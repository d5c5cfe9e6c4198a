//! The `file` channel: a write-ahead log of batches on local disk, like
//! Flume's file channel. Use it behind sources that cannot replay (exec,
//! HTTP): a batch they send is theirs to forget once the channel holds it.
//!
//! ```toml
//! [channels.edge]
//! type = "file"
//! max_bytes = "1GiB"
//! fsync = "every_batch"
//! ```
//!
//! Keys are documented on [`FileChannelConfig`]; the record format in [`wal`].
//!
//! # Delivery
//!
//! - **Send**: a batch is appended to the current segment as one record;
//!   once durable per `fsync` (before the ack with `every_batch`, at the next
//!   group commit with `interval`, once written with `never`) its *incoming*
//!   ack is released: the source may commit or forget it.
//! - **Receive**: the sink reads records in log order, each with a *new*
//!   ack. The **checkpoint** is the position before the first record not yet
//!   delivered; it is persisted atomically ([`checkpoint`]) as acks report
//!   delivery, and segments wholly before it are deleted.
//! - **Undelivered** (a sink fails a batch): the checkpoint stops before that
//!   batch for the rest of the run (counted in `undelivered_batches`); later
//!   batches still flow, and after a restart everything from the failed batch
//!   on is read again. At-least-once: a restart may repeat batches delivered
//!   after the checkpoint was last persisted, never loses one.
//! - **Restart and crash**: on open, everything after the checkpoint is
//!   replayed first, in order ([`recover`](mod@recover) also quarantines a
//!   damaged tail left by a crash mid-append, and damaged records anywhere,
//!   keeping the good records after them). Appends then go to a new
//!   segment.
//! - **Reading**: an I/O error while reading (EMFILE, EIO, ENOMEM, …) is
//!   retried with backoff up to 5 s, counted in `read_errors`; nothing is
//!   skipped for it. Only a record whose checksum or framing is wrong is
//!   quarantined, and reading resumes at the next good record.
//! - **Positional sources** (`taildir`, `spooldir`): events the channel
//!   already holds, recognised by partition and offset, are dropped
//!   (`duplicates_dropped`) instead of appended again, so such a source
//!   re-reading its last batches after a crash adds nothing twice
//!   ([`highwater`]).
//! - **Size**: a batch whose record would exceed 4 GiB is refused (its ack
//!   fails, `write_errors` counts it); sources' `batch_max_bytes` keeps
//!   batches far below that.
//! - **Shutdown**: the receiver ends once every sender is dropped and
//!   everything written has been read; the checkpointer ends when the sink
//!   has reported every batch, after persisting the last checkpoint.
//!
//! # Bounded disk use
//!
//! When the log holds `max_bytes` of undelivered data, `send` waits (the
//! source stops reading) until the sink delivers; nothing is dropped. A batch
//! is always admitted into an empty log, however large. Several senders may
//! overshoot the bound by one batch each. A failed append — a full disk
//! (ENOSPC, counted in `disk_full`) or another I/O error (`write_errors`) —
//! is cut off and retried with backoff up to 5 s, holding the writer: intake
//! pauses until the disk has room again, nothing is dropped, nothing panics.
//!
//! # Metrics
//!
//! `channel.<name>.events_in`, `.events_out`, `.fsyncs`, `.disk_full`,
//! `.write_errors`, `.read_errors`, `.corrupt_records`, `.corrupt_bytes`, `.replayed_events`,
//! `.undelivered_batches`, `.duplicates_dropped`; gauge `.bytes_on_disk`.

pub mod checkpoint;
mod config;
pub mod error;
mod highwater;
mod receiver;
mod recover;
mod sender;
mod shared;
pub mod wal;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

pub use self::checkpoint::Position;
pub use self::config::{FileChannelConfig, FsyncPolicy, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
pub use self::receiver::FileReceiver;
pub use self::sender::FileSender;
use self::shared::{ChannelMetrics, Shared, State, Writer};
use super::{
    Channel, ChannelError, ChannelReceiver, ChannelSender, ChannelType, OpenChannel, OpenContext,
};
use crate::keys;
use crate::metrics::Metrics;

/// `type = "file"`.
pub const TYPE: ChannelType = ChannelType {
    name: "file",
    load: |table, ctx| {
        let mut config: FileChannelConfig = keys::deserialize(table)?;
        config.validate()?;
        config.dir = Some(match &config.dir {
            Some(dir) => ctx.base.join(dir),
            None => ctx.data_dir.join("channels").join(ctx.name),
        });
        Ok(Arc::new(config))
    },
};

impl Channel for FileChannelConfig {
    fn durable(&self) -> bool {
        true
    }

    fn own_dir(&self) -> Option<(&'static str, &Path)> {
        Some(("dir", self.dir.as_deref()?))
    }

    fn open(&self, name: &str, ctx: &OpenContext<'_>) -> Result<OpenChannel, ChannelError> {
        let fail = |message: String| ChannelError {
            channel: name.to_owned(),
            message,
        };
        let dir = self
            .dir
            .as_deref()
            .ok_or_else(|| fail("no `dir` (the loader sets it)".into()))?;
        let opened = open(name, self, dir, ctx.metrics).map_err(|e| fail(e.to_string()))?;
        Ok(OpenChannel {
            sender: ChannelSender::File(opened.sender),
            receiver: ChannelReceiver::File(opened.receiver),
            settle: Some(opened.checkpointer),
            health: None,
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A file channel's ends, and the checkpointer to await after the sink ends.
pub struct Opened {
    /// The sending end.
    pub sender: FileSender,
    /// The receiving end.
    pub receiver: FileReceiver,
    /// Applies acknowledgements; await it after the sink has stopped, so the
    /// last checkpoint is persisted before the process exits.
    pub checkpointer: tokio::task::JoinHandle<()>,
}

/// Opens (recovering) the log of channel `name` in `dir`. Blocking: it
/// checks every record after the checkpoint. Must run inside a tokio runtime.
pub fn open(
    name: &str,
    config: &FileChannelConfig,
    dir: &Path,
    metrics: &Metrics,
) -> Result<Opened, error::WalError> {
    let recovered = recover::recover(dir, name)?;
    let mut high = highwater::load(dir)?;
    highwater::scan(dir, &recovered.segments, recovered.start, &mut high)?;
    let m = ChannelMetrics::new(metrics, name);
    m.corrupt_records
        .fetch_add(recovered.corrupt_records, Ordering::Relaxed);
    m.corrupt_bytes
        .fetch_add(recovered.corrupt_bytes, Ordering::Relaxed);

    // Appends go to a fresh segment after every start.
    let last = recovered.segments.keys().next_back().copied();
    // Segments before the checkpoint's were deleted, so `last + 1` lies after it.
    let checkpoint_at = recovered.checkpoint;
    let id = match last {
        Some(last) => last + 1,
        None if checkpoint_at.offset > wal::HEADER_LEN => checkpoint_at.segment + 1,
        None => checkpoint_at.segment,
    };
    let path = wal::segment_path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|f| {
            f.write_all_at(wal::MAGIC, 0)?;
            f.sync_all()?;
            checkpoint::sync_dir(dir)?;
            Ok(f)
        })
        .map_err(error::context("creating", &path))?;
    let written = Position {
        segment: id,
        offset: wal::HEADER_LEN,
    };
    let mut segments = recovered.segments;
    segments.insert(id, wal::HEADER_LEN);
    let state = State {
        written,
        checkpoint: recovered.checkpoint,
        read: recovered.start.min(written),
        segments,
        outstanding: BTreeSet::new(),
        by_ack: HashMap::new(),
        failed: None,
        held_events: recovered.replay_events as usize,
        high,
    };
    m.bytes_on_disk
        .store(state.disk_bytes() as i64, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        name: name.to_owned(),
        dir: dir.to_owned(),
        fsync: config.fsync,
        segment_size: config.segment_size.get(),
        max_bytes: config.max_bytes.get(),
        writer: Mutex::new(Writer {
            file,
            segment: id,
            len: wal::HEADER_LEN,
            unsynced: Vec::new(),
            unsynced_marks: Vec::new(),
        }),
        state: Mutex::new(state),
        data_ready: Notify::new(),
        space: Notify::new(),
        senders_closed: AtomicBool::new(false),
        receiver_closed: AtomicBool::new(false),
        metrics: m,
        high_file: Mutex::new(()),
    });
    if config.fsync == FsyncPolicy::Interval {
        let weak = Arc::downgrade(&shared);
        let period = config.interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                if shared.senders_closed.load(Ordering::Acquire) {
                    return;
                }
                let _ = tokio::task::spawn_blocking(move || shared.sync_pending()).await;
            }
        });
    }
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let checkpointer = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || receiver::checkpointer(shared, acks_rx)
    });
    tracing::info!(channel = name, dir = %dir.display(), replay_events = recovered.replay_events,
        segment = id, "file channel open");
    Ok(Opened {
        sender: FileSender::new(shared.clone()),
        receiver: FileReceiver::new(shared, acks_tx, written),
        checkpointer,
    })
}
