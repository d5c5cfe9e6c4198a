//! The `file` sink: appends every event to one local file — for debugging
//! a pipeline, for a host's log shipper to pick up, or for a small local
//! archive (Flume's `file_roll` sink without the rolling, Vector's `file`
//! sink with a fixed path).
//!
//! ```toml
//! [sinks.debug]
//! type = "file"
//! channel = "out"
//! path = "/var/log/sluice/out.jsonl"  # required; its directory must exist
//! format = "jsonl"                    # or "text" (default): as object_store
//! fsync = true                        # default: durable before acknowledged
//! ```
//!
//! **Delivery: at-least-once.** Each channel batch is encoded whole, appended
//! with one write, and (with `fsync = true`) synced before its ack is
//! released. After a crash the batches not yet acknowledged are appended
//! again; a write the crash cut short is cut back to its last newline when
//! the sink starts, so the file holds whole lines only (a `text` body that
//! itself holds newlines may leave its first lines behind). With
//! `fsync = false` an ack is released once the bytes are in the page cache:
//! an operating-system crash may lose them.
//!
//! **Errors.** A failed write (a full disk, an I/O error) is cut back to the
//! length before it, counted in `write_errors`, and tried again with backoff
//! up to 5 s (`retries`); intake waits meanwhile. After the channel ends a
//! batch still failing gets [`SHUTDOWN_ATTEMPTS`] more tries, then its ack
//! is failed (the source reads it again after a restart) and the sink
//! stops with the error. A file that cannot be opened stops the sink at
//! start.
//!
//! Metrics: `sink.<name>.events`, `.bytes`, `.write_errors`, `.retries`.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::object_store::Format;
use super::{Guarantee, Sink, SinkContext, SinkError, SinkType};
use crate::channels::ChannelReceiver;
use crate::event::Batch;
use crate::keys::{self, KeyError};

/// Tries of a failing batch after the channel has ended.
pub(crate) const SHUTDOWN_ATTEMPTS: u32 = 3;
/// First and longest wait between tries of a failed write.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// `type = "file"`.
pub const TYPE: SinkType = SinkType {
    name: "file",
    takes_dead_letter: false,
    load: |table| {
        let config: FileSinkConfig = keys::deserialize(table)?;
        config.validate()?;
        Ok(Arc::new(config))
    },
};

/// `[sinks.<name>]` with `type = "file"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file appended to (created if missing; its directory must exist).
    pub path: PathBuf,
    /// How each event is written: `text` (the body and a newline) or
    /// `jsonl` (one JSON object per event, with its Kafka metadata).
    #[serde(default)]
    pub format: Format,
    /// Sync each batch to disk before acknowledging it. Default `true`.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
}

fn default_fsync() -> bool {
    true
}

impl FileSinkConfig {
    fn validate(&self) -> Result<(), KeyError> {
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            return Err(KeyError::Invalid {
                at: vec!["path".into()],
                message: format!("`path` must name a file, not `{}`", self.path.display()),
            });
        }
        Ok(())
    }
}

impl Sink for FileSinkConfig {
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(run(self.clone(), input, ctx))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Appends every batch of `input` to the file until the channel ends.
pub async fn run(
    config: FileSinkConfig,
    mut input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let fail = |what: &str, e: io::Error| SinkError {
        sink: ctx.name.clone(),
        message: format!("{what} `{}`: {e}", config.path.display()),
    };
    let file = open(&config.path).map_err(|e| fail("opening", e))?;
    let mut out = Appender {
        file,
        fsync: config.fsync,
    };
    let events = ctx.counter("events");
    let bytes = ctx.counter("bytes");
    let errors = ctx.counter("write_errors");
    let retries = ctx.counter("retries");
    let mut buf = Vec::new();
    // A batch received while retrying the one before, and whether the
    // channel has ended (then failing writes get only a few more tries).
    let mut next: Option<Batch> = None;
    let mut ended = false;
    loop {
        let batch = match next.take() {
            Some(batch) => batch,
            None if ended => break,
            None => match input.recv().await {
                Some(batch) => batch,
                None => break,
            },
        };
        buf.clear();
        for event in batch.events.iter() {
            config.format.encode(&event, &mut buf);
        }
        let mut backoff = BACKOFF.0;
        let mut late_tries = 0;
        loop {
            let result = tokio::task::block_in_place(|| out.append(&buf));
            let Err(e) = result else { break };
            errors.fetch_add(1, Ordering::Relaxed);
            if ended {
                late_tries += 1;
                if late_tries > SHUTDOWN_ATTEMPTS {
                    // Dropping the batches unreleased fails their acks.
                    return Err(fail("appending to", e));
                }
            }
            tracing::warn!(sink = %ctx.name, path = %config.path.display(), error = %e, ?backoff, "append failed; retrying");
            retries.fetch_add(1, Ordering::Relaxed);
            let pause = tokio::time::sleep(backoff);
            if next.is_none() && !ended {
                tokio::select! {
                    () = pause => {}
                    received = input.recv() => match received {
                        Some(batch) => next = Some(batch),
                        None => ended = true,
                    },
                }
            } else {
                pause.await;
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        batch.release();
    }
    Ok(())
}

/// Opens `path` for appending, cutting a torn last line (a write a crash cut
/// short) back to the last newline.
fn open(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let whole = whole_lines_length(&mut file)?;
    if whole < file.metadata()?.len() {
        tracing::warn!(path = %path.display(), "cutting a torn last line left by a crash");
        file.set_len(whole)?;
        file.sync_data()?;
    }
    Ok(file)
}

/// The length of `file` up to and including its last newline.
fn whole_lines_length(file: &mut File) -> io::Result<u64> {
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The open file.
struct Appender {
    file: File,
    fsync: bool,
}

impl Appender {
    /// Appends `data` whole, or leaves the file as it was.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let before = self.file.metadata()?.len();
        let written = self.file.write_all(data).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if written.is_err() {
            // Best effort: a file that cannot even be cut back fails again
            // on the next try, and its batch is never acknowledged.
            let _ = self.file.set_len(before);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::channels::memory::{Capacity, channel};
    use crate::event::{Ack, AckReport, BatchBuf, NewEvent};
    use crate::metrics::Metrics;

    fn ctx(metrics: &Arc<Metrics>) -> SinkContext {
        SinkContext {
            name: "debug".into(),
            metrics: metrics.clone(),
            embedded_bootstrap: None,
            link: None,
            state_dir: None,
            dead_letter: None,
        }
    }

    fn batch(id: u64, bodies: &[&str], acks: &mpsc::UnboundedSender<AckReport>) -> Batch {
        let mut buf = BatchBuf::default();
        for (i, body) in bodies.iter().enumerate() {
            buf.push(&NewEvent {
                key: None,
                body: body.as_bytes(),
                headers: &[],
                topic: "t",
                partition: 0,
                offset: i as i64,
                timestamp: -1,
            });
        }
        Batch::new(buf, Ack::new(id, acks.clone()))
    }

    fn config(path: &Path) -> FileSinkConfig {
        toml::from_str(&format!("path = {:?}", path.display().to_string())).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_batches_in_order_after_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old 1\nold 2\ntorn wri").unwrap();
        let metrics = Metrics::new();
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let (acks, mut reports) = mpsc::unbounded_channel();
        let sink = tokio::spawn(run(config(&path), rx, ctx(&metrics)));
        tx.send(batch(1, &["a", "b"], &acks)).await.unwrap();
        tx.send(batch(2, &["c"], &acks)).await.unwrap();
        drop(tx);
        sink.await.unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old 1\nold 2\na\nb\nc\n"
        );
        for id in [1, 2] {
            assert_eq!(
                reports.recv().await.unwrap(),
                AckReport {
                    id,
                    delivered: true
                }
            );
        }
        assert_eq!(metrics.get("sink.debug.events"), 3);
        assert_eq!(metrics.get("sink.debug.bytes"), 6);
    }

    /// `/dev/full` refuses every write with ENOSPC, as a full disk does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_is_retried_then_fails_the_batch_at_shutdown() {
        let metrics = Metrics::new();
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let (acks, mut reports) = mpsc::unbounded_channel();
        let sink = tokio::spawn(run(config(Path::new("/dev/full")), rx, ctx(&metrics)));
        tx.send(batch(1, &["a"], &acks)).await.unwrap();
        while metrics.get("sink.debug.retries") < 2 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(reports.try_recv().is_err(), "acknowledged while failing");
        drop(tx);
        let err = sink.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert_eq!(
            reports.recv().await.unwrap(),
            AckReport {
                id: 1,
                delivered: false
            }
        );
        assert_eq!(metrics.get("sink.debug.events"), 0);
        assert!(metrics.get("sink.debug.write_errors") >= 3);
    }

    #[test]
    fn a_path_that_names_no_file_is_refused_at_its_key() {
        let config: FileSinkConfig = toml::from_str("path = \"/tmp/..\"").unwrap();
        let Err(KeyError::Invalid { at, message }) = config.validate() else {
            panic!("refused")
        };
        assert_eq!(at, ["path"]);
        assert!(message.contains("must name a file"), "{message}");
    }
}
