//! One open file: its encoder, where its bytes go, and the acks it holds.
//!
//! Bytes flow: encoded event → [`Compressor`] → output buffer → destination.
//! The output buffer is drained as it grows, which bounds memory per file:
//!
//! - local directory: appended to the hidden `.<name>.inprogress` file once
//!   it holds [`LOCAL_FLUSH_BYTES`], and at completion; completion fsyncs,
//!   renames to `<name>` and fsyncs the directory;
//! - object store: kept in memory until it reaches `upload_part_size`; a
//!   file that completes below that is uploaded with one PUT, a larger one
//!   becomes a multipart upload whose parts (all exactly `upload_part_size`
//!   but the last) are sent as they fill and which is completed at roll.
//!   Either way the object appears whole, at once.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use object_store::MultipartId;
use object_store::multipart::PartId;
use object_store::path::Path;
use tokio::time::Instant;
use tracing::warn;

use super::commit::{Sealed, Staged};
use super::error::StoreError;
use super::format::{Compression, Compressor, FileFormat};
use super::journal::Entry;
use super::retry::Retrier;
use super::store::{Destination, LocalPaths};
use super::table::Row;
use super::table::parquet::ParquetFile;
use crate::event::Ack;

/// Output buffered before it is appended to a local in-progress file.
pub(crate) const LOCAL_FLUSH_BYTES: usize = 1 << 20;

/// What every file of a sink is written with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileSettings {
    /// File format.
    pub format: FileFormat,
    /// Whole-file compression.
    pub compression: Compression,
    /// Compression level, if not the codec's default.
    pub level: Option<i32>,
    /// Multipart part size (object stores).
    pub part_size: usize,
    /// Exactly-once mode: files are sealed and published by the commit log
    /// (see `commit.rs`); objects are always multipart uploads, so they can
    /// wait, invisible, for their commit record.
    pub exactly_once: bool,
}

impl FileSettings {
    /// `<topic>+<partition>+<first offset, 20 digits>.<ext>[.gz|.zst]`.
    pub fn file_name(
        &self,
        topic: &str,
        partition: i32,
        first_offset: i64,
        missing: &str,
    ) -> String {
        let mut name = String::with_capacity(topic.len() + 40);
        super::path::push_sanitized(&mut name, topic.as_bytes(), missing);
        // Parquet compresses pages inside the file, keeping its name.
        let suffix = match self.format {
            FileFormat::Parquet => "",
            _ => self.compression.suffix(),
        };
        name.push_str(&format!(
            "+{partition}+{first_offset:020}.{}{suffix}",
            self.format.extension(),
        ));
        name
    }
}

/// Acknowledgements of the batches with events in one file. Released (as
/// delivered) only by [`HeldAcks::release`]; dropped any other way (the file
/// was given up, the sink's task was aborted) each [`Ack`] fails its batch,
/// so a source never commits data that did not become visible.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks(Vec<Ack>);

impl HeldAcks {
    /// Holds one more batch's ack.
    pub fn push(&mut self, ack: Ack) {
        self.0.push(ack);
    }

    /// Number of acks held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The file is visible: report its batches (as far as it is concerned)
    /// delivered. Dropped instead, the acks fail their batches.
    pub fn release(self) {
        for ack in self.0 {
            ack.release();
        }
    }
}

enum Target {
    Local {
        file: Arc<std::fs::File>,
        paths: LocalPaths,
    },
    Remote {
        path: Path,
        upload: Option<Upload>,
    },
}

/// What turns a file's events into its bytes.
pub(crate) enum Encoder {
    /// Encoded records (or delimited rows) through whole-file compression.
    Stream(Compressor),
    /// A Parquet writer. The writer is `Send` but not `Sync`, and the sink's
    /// futures hold `&OpenFile`s across awaits; a `Mutex` makes it `Sync`
    /// and costs nothing here: it is only ever reached through `&mut`
    /// ([`Mutex::get_mut`] does not lock).
    Parquet(Box<Mutex<ParquetFile>>),
}

impl Encoder {
    /// Bytes produced and not taken yet (see [`Compressor::output`]).
    #[inline]
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Stream(c) => c.output(),
            Self::Parquet(p) => p.get_mut().unwrap_or_else(PoisonError::into_inner).output(),
        }
    }

    /// Ends the file's encoding; returns the bytes not taken yet.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Stream(c) => c.finish(),
            Self::Parquet(p) => p
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .finish()
                .map_err(std::io::Error::other),
        }
    }
}

struct Upload {
    id: MultipartId,
    parts: Vec<PartId>,
}

/// A file being written.
pub(crate) struct OpenFile {
    /// Where it appears, for logs (`s3://bucket/prefix/dir/name`, `/abs/dir/name`).
    pub display: String,
    /// Offset of its first event.
    pub first_offset: i64,
    /// Offset of its last event.
    pub last_offset: i64,
    /// Events written.
    pub events: u64,
    /// Encoded bytes written, before compression.
    pub raw_bytes: u64,
    /// When it was opened.
    pub opened_at: Instant,
    /// When an event was last written to it.
    pub last_write: Instant,
    /// Acks of the batches it holds events of.
    pub acks: HeldAcks,
    /// The sink's sequence number of the last batch whose ack is in `acks`.
    pub batch_seq: u64,
    /// Its entry in the sink's journal of in-progress files, if it has one.
    pub journal: Option<Entry>,
    enc: Encoder,
    stored: u64,
    target: Target,
}

impl OpenFile {
    /// Opens file `name` in rendered directory `dir`, to be encoded by
    /// `enc`: creates the hidden local file (retrying) or prepares an upload.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        dest: &Destination,
        settings: &FileSettings,
        dir: &str,
        name: &str,
        first_offset: i64,
        now: Instant,
        retrier: &mut Retrier,
        enc: Encoder,
    ) -> Result<Self, StoreError> {
        let (target, display) = match dest {
            Destination::Local(local) => {
                let paths = local.paths(dir, name);
                let file = retrier.run(|_| local.create(&paths)).await?;
                let display = paths.visible.display().to_string();
                (Target::Local { file, paths }, display)
            }
            Destination::Remote(remote) => {
                let (path, display) = remote.path(dir, name);
                let upload = if settings.exactly_once {
                    let id = retrier.run(|_| remote.create_multipart(&path)).await?;
                    Some(Upload {
                        id,
                        parts: Vec::new(),
                    })
                } else {
                    None
                };
                (Target::Remote { path, upload }, display)
            }
        };
        Ok(Self {
            display,
            first_offset,
            last_offset: first_offset,
            events: 0,
            raw_bytes: 0,
            opened_at: now,
            last_write: now,
            acks: HeldAcks::default(),
            batch_seq: 0,
            journal: None,
            enc,
            stored: 0,
            target,
        })
    }

    /// Appends one encoded event.
    #[inline]
    pub fn append(&mut self, encoded: &[u8], offset: i64, now: Instant) -> Result<(), StoreError> {
        self.write(encoded)?;
        self.events += 1;
        self.raw_bytes += encoded.len() as u64;
        self.last_offset = offset;
        self.last_write = now;
        Ok(())
    }

    /// Appends one event's row to a Parquet file.
    #[inline]
    pub fn append_row(&mut self, row: &Row, offset: i64, now: Instant) -> Result<(), StoreError> {
        let Encoder::Parquet(file) = &mut self.enc else {
            return Err(StoreError::permanent(
                "internal error: a row for a file that is not Parquet",
            ));
        };
        let file = file.get_mut().unwrap_or_else(PoisonError::into_inner);
        file.push(row).map_err(|e| {
            StoreError::local(
                format!("encoding Parquet into {}", self.display),
                &std::io::Error::other(e),
            )
        })?;
        self.events += 1;
        self.raw_bytes += row.size();
        self.last_offset = offset;
        self.last_write = now;
        Ok(())
    }

    /// Writes bytes that are no event (a header row) into a stream file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let Encoder::Stream(c) = &mut self.enc else {
            return Err(StoreError::permanent(
                "internal error: bytes for a Parquet file",
            ));
        };
        c.write(bytes)
            .map_err(|e| StoreError::local(format!("compressing into {}", self.display), &e))
    }

    /// Whether enough output is buffered to hand some to the destination.
    #[inline]
    pub(crate) fn wants_flush(&mut self, settings: &FileSettings) -> bool {
        let threshold = match self.target {
            Target::Local { .. } => LOCAL_FLUSH_BYTES,
            Target::Remote { .. } => settings.part_size,
        };
        self.enc.output().len() >= threshold
    }

    /// Hands buffered output to the destination: all of it to a local file,
    /// whole parts to an object store.
    pub async fn flush(
        &mut self,
        dest: &Destination,
        settings: &FileSettings,
        retrier: &mut Retrier,
    ) -> Result<(), StoreError> {
        match (dest, &mut self.target) {
            (Destination::Local(local), Target::Local { file, paths }) => {
                let out = self.enc.output();
                if out.is_empty() {
                    return Ok(());
                }
                let data = Bytes::from(std::mem::take(out));
                let offset = self.stored;
                retrier
                    .run(|_| local.write_at(file, &paths.hidden, data.clone(), offset))
                    .await?;
                self.stored += data.len() as u64;
                Ok(())
            }
            (Destination::Remote(remote), Target::Remote { path, upload }) => {
                while self.enc.output().len() >= settings.part_size {
                    let out = self.enc.output();
                    let rest = out.split_off(settings.part_size);
                    let part = Bytes::from(std::mem::replace(out, rest));
                    upload_part(remote, path, upload, part, retrier).await?;
                    self.stored += settings.part_size as u64;
                }
                Ok(())
            }
            _ => Err(StoreError::permanent(
                "internal error: file and destination kinds differ",
            )),
        }
    }

    /// Ends the compressed stream; its tail joins the buffered output.
    fn finish_compression(&mut self) -> Result<(), StoreError> {
        let enc = std::mem::replace(&mut self.enc, Encoder::Stream(Compressor::None(Vec::new())));
        let tail = enc
            .finish()
            .map_err(|e| StoreError::local(format!("finishing {}", self.display), &e))?;
        self.enc = Encoder::Stream(Compressor::None(tail));
        Ok(())
    }

    /// Finishes the file and makes it visible; returns its stored size.
    /// On error (only once the pipeline is shutting down and attempts ran
    /// out) the caller gives the file up with [`OpenFile::abandon`].
    pub async fn complete(
        &mut self,
        dest: &Destination,
        settings: &FileSettings,
        retrier: &mut Retrier,
    ) -> Result<u64, StoreError> {
        self.finish_compression()?;
        match dest {
            Destination::Local(local) => {
                self.flush(dest, settings, retrier).await?;
                let Target::Local { file, paths } = &self.target else {
                    return Err(StoreError::permanent(
                        "internal error: file and destination kinds differ",
                    ));
                };
                let size = self.stored;
                retrier.run(|_| local.commit(file, paths, size)).await?;
            }
            Destination::Remote(remote) => {
                let single = matches!(&self.target, Target::Remote { upload: None, .. })
                    && self.enc.output().len() <= settings.part_size;
                if single {
                    let Target::Remote { path, .. } = &self.target else {
                        return Err(StoreError::permanent(
                            "internal error: file and destination kinds differ",
                        ));
                    };
                    let data = Bytes::from(std::mem::take(self.enc.output()));
                    retrier.run(|_| remote.put(path, data.clone())).await?;
                    self.stored += data.len() as u64;
                    return Ok(self.stored);
                }
                self.flush(dest, settings, retrier).await?;
                let Target::Remote { path, upload } = &mut self.target else {
                    return Err(StoreError::permanent(
                        "internal error: file and destination kinds differ",
                    ));
                };
                let last = std::mem::take(self.enc.output());
                if !last.is_empty() {
                    let len = last.len() as u64;
                    upload_part(remote, path, upload, Bytes::from(last), retrier).await?;
                    self.stored += len;
                }
                let Some(upload) = upload else {
                    return Err(StoreError::permanent(
                        "internal error: multipart upload missing",
                    ));
                };
                let size = self.stored;
                let (path, upload) = (&*path, &*upload);
                retrier
                    .run(|attempt| {
                        remote.complete(path, &upload.id, &upload.parts, size, attempt > 0)
                    })
                    .await?;
            }
        }
        Ok(self.stored)
    }

    /// Where the file is being written (exactly-once staging intents).
    pub(crate) fn staged(&self) -> Option<Staged> {
        match &self.target {
            Target::Local { paths, .. } => Some(Staged::Local {
                hidden: paths.hidden.clone(),
                visible: paths.visible.clone(),
            }),
            Target::Remote {
                path,
                upload: Some(upload),
            } => Some(Staged::Remote {
                path: path.to_string(),
                upload_id: upload.id.clone(),
            }),
            Target::Remote { upload: None, .. } => None,
        }
    }

    /// Exactly-once mode: stores every byte of the file durably without
    /// making it visible (the local file is fsynced under its hidden name;
    /// every part is uploaded) and says how to publish it.
    pub async fn seal(
        &mut self,
        dest: &Destination,
        settings: &FileSettings,
        retrier: &mut Retrier,
    ) -> Result<Sealed, StoreError> {
        self.finish_compression()?;
        let staged = self.staged().ok_or_else(|| {
            StoreError::permanent("internal error: exactly-once file without an upload")
        })?;
        let mut parts = Vec::new();
        match dest {
            Destination::Local(_) => {
                self.flush(dest, settings, retrier).await?;
                let Target::Local { file, paths } = &self.target else {
                    return Err(StoreError::permanent(
                        "internal error: file and destination kinds differ",
                    ));
                };
                let (file, hidden) = (file.clone(), paths.hidden.clone());
                retrier
                    .run(|_| {
                        let (file, hidden) = (file.clone(), hidden.clone());
                        async move {
                            tokio::task::spawn_blocking(move || {
                                file.sync_all().map_err(|e| {
                                    StoreError::local(format!("syncing {}", hidden.display()), &e)
                                })
                            })
                            .await
                            .map_err(|e| StoreError::transient(format!("blocking task: {e}")))?
                        }
                    })
                    .await?;
            }
            Destination::Remote(remote) => {
                self.flush(dest, settings, retrier).await?;
                let Target::Remote { path, upload } = &mut self.target else {
                    return Err(StoreError::permanent(
                        "internal error: file and destination kinds differ",
                    ));
                };
                let last = std::mem::take(self.enc.output());
                if !last.is_empty() {
                    let len = last.len() as u64;
                    upload_part(remote, path, upload, Bytes::from(last), retrier).await?;
                    self.stored += len;
                }
                if let Some(upload) = upload {
                    parts = upload.parts.iter().map(|p| p.content_id.clone()).collect();
                }
            }
        }
        Ok(Sealed {
            staged,
            parts,
            size: self.stored,
            events: self.events,
            offsets: (self.first_offset, self.last_offset),
        })
    }

    /// Gives the file up: its acks are failed (by [`HeldAcks`]' drop) and
    /// what was stored of it is removed, best effort.
    pub(crate) async fn abandon(self, dest: &Destination) {
        match (dest, &self.target) {
            (
                Destination::Remote(remote),
                Target::Remote {
                    path,
                    upload: Some(upload),
                },
            ) => {
                if let Err(e) = remote.abort(path, &upload.id).await {
                    warn!("{e}");
                }
            }
            (Destination::Local(_), Target::Local { paths, .. }) => {
                let hidden = paths.hidden.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(hidden)).await;
            }
            _ => {}
        }
        drop(self);
    }
}

/// Uploads the next part, starting the multipart upload first if needed.
async fn upload_part(
    remote: &super::store::RemoteStore,
    path: &Path,
    upload: &mut Option<Upload>,
    data: Bytes,
    retrier: &mut Retrier,
) -> Result<(), StoreError> {
    if upload.is_none() {
        let id = retrier.run(|_| remote.create_multipart(path)).await?;
        *upload = Some(Upload {
            id,
            parts: Vec::new(),
        });
    }
    let Some(upload) = upload else {
        return Err(StoreError::permanent(
            "internal error: multipart upload missing",
        ));
    };
    let idx = upload.parts.len();
    let id = &upload.id;
    let part = retrier
        .run(|_| remote.put_part(path, id, idx, data.clone()))
        .await?;
    upload.parts.push(part);
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::event::AckReport;

    #[test]
    fn file_names_are_deterministic() {
        let s = FileSettings {
            format: FileFormat::Jsonl,
            compression: Compression::Gzip,
            level: None,
            part_size: 8 << 20,
            exactly_once: false,
        };
        assert_eq!(
            s.file_name("logs", 3, 42, "unknown"),
            "logs+3+00000000000000000042.jsonl.gz"
        );
        let s = FileSettings {
            format: FileFormat::Text,
            compression: Compression::None,
            ..s
        };
        assert_eq!(
            s.file_name("a/b", 0, 0, "unknown"),
            "a_b+0+00000000000000000000.txt"
        );
        assert_eq!(
            s.file_name("", 1, 7, "none"),
            "none+1+00000000000000000007.txt"
        );
    }

    #[test]
    fn held_acks_fail_unless_released() {
        let (tx, mut rx) = mpsc::unbounded_channel::<AckReport>();
        let mut held = HeldAcks::default();
        held.push(Ack::new(1, tx.clone()));
        drop(held);
        assert_eq!(
            rx.try_recv().unwrap(),
            AckReport {
                id: 1,
                delivered: false
            }
        );

        let mut held = HeldAcks::default();
        held.push(Ack::new(2, tx));
        assert_eq!(held.len(), 1);
        held.release();
        assert_eq!(
            rx.try_recv().unwrap(),
            AckReport {
                id: 2,
                delivered: true
            }
        );
    }
}
