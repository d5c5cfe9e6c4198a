//! The `spooldir` source: ingests completed files dropped into a directory,
//! line by line, then renames them (`<name>.COMPLETED`) or deletes them,
//! like Flume's spooling directory source.
//!
//! ```toml
//! [sources.drops]
//! type = "spooldir"
//! dir = "/var/spool/app"
//! completed_suffix = ".COMPLETED"
//! delete_policy = "never"         # or "immediate"
//! include_pattern = '\.log$'
//! file_header = "file"            # absolute path in this header
//! channels = ["edge"]             # a file channel: see below
//! ```
//!
//! **Which files**: regular files directly in `dir` whose name does not
//! start with `.`, does not end in `completed_suffix`, matches
//! `include_pattern` and not `ignore_pattern`, and has not been modified for
//! `min_age`. One file is ingested at a time, in `consume_order` (oldest
//! modification time first by default).
//!
//! **Files still being written are never completed half-read**: a file is
//! taken only once unchanged for `min_age`; at its end the source checks it
//! again and keeps reading while it grows, completing it only once it has
//! been unchanged for `min_age` after the last byte was read. Writers should
//! still write elsewhere (or under a name starting with `.`) and rename into
//! the directory: a rename is atomic, a quiet period is a heuristic.
//!
//! **Events**: body = a line without its `\n` (a last line without one is
//! still a line); headers `file_header` (absolute path) and
//! `basename_header` (file name) when set; topic = the source's name,
//! partition 0, offsets ascending across files and restarts (from the start
//! time in microseconds); timestamp = the time it was read. A line longer
//! than `max_line_bytes` is split into numbered pieces (header
//! `sluice.exec.part`).
//!
//! **Positions and crashes**: the position file
//! (`data_dir/sources/<name>/spooldir.json`) names the file in progress (by
//! path, device and inode) and the byte offset up to which its lines are
//! acknowledged, in order. It is replaced atomically after every
//! acknowledged batch, and a restart resumes the file there. A file is
//! renamed or deleted only once every batch of it is acknowledged.
//!
//! **Exactly once**: events are *positional*: partition 0, offset = the
//! file's base (recorded when it is started; each file's lies past the
//! previous file's last offset) plus the byte offset its line ends at, so
//! a line read again after a crash gets the same offset. Through a
//! `memory` channel into an object-store sink with `exactly_once = true`
//! the sink skips what it already committed (the source assigns partition
//! 0 on its link; a sink's request to re-read makes it read the file again
//! from the acknowledged position); into a `file` channel the channel drops
//! what it already holds. Either way a `kill -9` mid-file repeats nothing.
//!
//! **Failures**: a batch not delivered makes the source read the file
//! again from the last acknowledged position (counted in
//! `undelivered_batches`; later batches already delivered may repeat). A
//! file that cannot be read, shrinks while read, or cannot be renamed is
//! left in place, logged and counted in `file_errors`, and skipped for the
//! rest of the run.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`,
//! `.undelivered_batches`, `.files_completed`, `.file_errors`,
//! `.lines_split`, histogram `.delivery_seconds`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::batcher::{self, Batcher, InOrder, Limits, LineSplitter};
use super::position_file;
use super::{SourceContext, SourceError};
use crate::event::{Batch, NewEvent};
use crate::metrics::Counter;
use crate::units::{ByteSize, HumanDuration};

/// `[sources.<name>]` with `type = "spooldir"`; see the module docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolDirSourceConfig {
    /// The directory files are dropped into. Required; must exist.
    pub dir: PathBuf,
    /// Appended to a file's name once ingested (with `delete_policy =
    /// "never"`). Default `".COMPLETED"`.
    #[serde(default = "default_suffix")]
    pub completed_suffix: String,
    /// `"never"` (default: rename with `completed_suffix`) or `"immediate"`
    /// (delete once ingested).
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// Only files whose name matches this regular expression. Default: all.
    #[serde(default, with = "super::regex_key")]
    pub include_pattern: Option<Regex>,
    /// Never files whose name matches this regular expression.
    #[serde(default, with = "super::regex_key")]
    pub ignore_pattern: Option<Regex>,
    /// Header holding the file's absolute path; none if unset.
    #[serde(default)]
    pub file_header: Option<String>,
    /// Header holding the file's name; none if unset.
    #[serde(default)]
    pub basename_header: Option<String>,
    /// `"oldest"` (default), `"youngest"` (by modification time) or `"random"`.
    #[serde(default)]
    pub consume_order: ConsumeOrder,
    /// A file is taken (and completed) only once unchanged this long.
    /// Default `"1s"`.
    #[serde(default = "default_min_age")]
    pub min_age: HumanDuration,
    /// How often the directory is listed when idle. Default `"500ms"`.
    #[serde(default = "default_poll")]
    pub poll_interval: HumanDuration,
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "batcher::default_max_events")]
    pub batch_max_events: usize,
    /// ...or this many bytes (1 KiB to 1 GiB; default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first line. Default `"100ms"`.
    #[serde(default = "batcher::default_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// Longest event body; longer lines are split. Default `"1MiB"`.
    #[serde(default = "batcher::default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
}

impl PartialEq for SpoolDirSourceConfig {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// What happens to an ingested file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletePolicy {
    /// Renamed with `completed_suffix`.
    #[default]
    Never,
    /// Deleted.
    Immediate,
}

/// Which waiting file is taken next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeOrder {
    /// The least recently modified.
    #[default]
    Oldest,
    /// The most recently modified.
    Youngest,
    /// Any.
    Random,
}

fn default_suffix() -> String {
    ".COMPLETED".into()
}

fn default_min_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

impl SpoolDirSourceConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            max_wait: self.batch_max_wait,
        }
    }

    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.dir.as_os_str().is_empty() {
            return Err(("dir", "is empty; give the spool directory".into()));
        }
        if self.completed_suffix.is_empty() || self.completed_suffix.contains('/') {
            return Err((
                "completed_suffix",
                "must be a non-empty file name suffix without `/`".into(),
            ));
        }
        for (key, header) in [
            ("file_header", &self.file_header),
            ("basename_header", &self.basename_header),
        ] {
            if header
                .as_deref()
                .is_some_and(|h| h.is_empty() || crate::event::is_host_header(h))
            {
                return Err((
                    key,
                    "must be a non-empty header name outside `sluice.`".into(),
                ));
            }
        }
        if self.poll_interval.get().is_zero() {
            return Err(("poll_interval", "must be longer than 0ms".into()));
        }
        self.limits().check()?;
        batcher::check_max_line_bytes(self.max_line_bytes)
    }
}

/// `type = "spooldir"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "spooldir",
    load: |table| {
        let config: SpoolDirSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(std::sync::Arc::new(config))
    },
};

impl super::Source for SpoolDirSourceConfig {
    fn rereads(&self) -> bool {
        false
    }

    fn positional(&self) -> bool {
        true
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        link: std::sync::Arc<crate::delivery::SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx, link))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The position file's content.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// The file being ingested, if any.
    file: Option<InProgress>,
    /// The offset base of the next file (see [`InProgress::base`]).
    #[serde(default)]
    next_base: Option<i64>,
}

/// A file being ingested and how far its lines are acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InProgress {
    path: PathBuf,
    dev: u64,
    ino: u64,
    position: u64,
    /// Its events' offsets are `base` plus the byte offset their line ends
    /// at: the same line read again gets the same offset (the events are
    /// positional: a file channel drops what it already holds). The next
    /// file's base lies past this file's last offset.
    base: i64,
}

/// How ingesting a file ended.
enum Ingested {
    /// Every line read and acknowledged.
    Done,
    /// A batch was not delivered: read again from the acknowledged position.
    Again,
    /// Shutdown (or the output closed).
    Stopped,
}

struct Spool {
    config: SpoolDirSourceConfig,
    ctx: SourceContext,
    batcher: Batcher<(u64, u64)>,
    state_path: PathBuf,
    state: State,
    /// Files that failed this run: not tried again until a restart.
    failed: HashSet<(u64, u64)>,
    files_completed: Counter,
    file_errors: Counter,
    lines_split: Counter,
    output_closed: bool,
    link: std::sync::Arc<crate::delivery::SourceLink>,
}

async fn run(
    config: SpoolDirSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
    link: std::sync::Arc<crate::delivery::SourceLink>,
) -> Result<(), SourceError> {
    let err = |message: String| SourceError {
        source_name: ctx.name.clone(),
        message,
    };
    if !config.dir.is_dir() {
        return Err(err(format!(
            "spool directory {} does not exist or is not a directory",
            config.dir.display()
        )));
    }
    let state_path = ctx.state_dir.join("spooldir.json");
    let state: State = position_file::load(&state_path)
        .map_err(|e| err(e.to_string()))?
        .unwrap_or_default();
    let mut spool = Spool {
        batcher: Batcher::new(config.limits(), output, &ctx)
            .positional()
            .with_link(link.clone()),
        link,
        files_completed: ctx.counter("files_completed"),
        file_errors: ctx.counter("file_errors"),
        lines_split: ctx.counter("lines_split"),
        config,
        state_path,
        state,
        failed: HashSet::new(),
        output_closed: false,
        ctx,
    };
    let result = spool.run().await;
    info!(source = %spool.ctx.name, "spooldir source stopped");
    result
}

impl Spool {
    async fn run(&mut self) -> Result<(), SourceError> {
        let shutdown = self.ctx.shutdown.clone();
        while !shutdown.is_cancelled() && !self.output_closed {
            let Some((path, start)) = self.next_file() else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.config.poll_interval.get()) => continue,
                }
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            let base = match &self.state.file {
                Some(f) if (f.dev, f.ino) == id => f.base,
                _ => self.state.next_base.unwrap_or_else(batcher::now_us),
            };
            self.state.file = Some(InProgress {
                path: path.clone(),
                dev: id.0,
                ino: id.1,
                position: start,
                base,
            });
            self.save()?;
            info!(source = %self.ctx.name, file = %path.display(), from = start, "ingesting file");
            loop {
                let start = self.state.file.as_ref().map_or(0, |f| f.position);
                // Every (re)start of a file is a new epoch of partition 0.
                let tp = [(self.ctx.name.clone(), 0)];
                batcher::assign(&self.link, &tp, &self.ctx).await;
                match self.ingest(&path, start).await {
                    Ok(Ingested::Done) => {
                        self.complete(&path, id)?;
                        break;
                    }
                    Ok(Ingested::Again) => {
                        warn!(source = %self.ctx.name, file = %path.display(), from = start, "a batch was not delivered; reading the file again from the acknowledged position");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(self.config.poll_interval.get()) => {}
                        }
                    }
                    Ok(Ingested::Stopped) => break,
                    Err(e) => {
                        error!(source = %self.ctx.name, file = %path.display(), error = %e, "cannot ingest the file; leaving it in place until a restart");
                        self.file_errors.fetch_add(1, Ordering::Relaxed);
                        self.failed.insert(id);
                        break;
                    }
                }
            }
        }
        // Whatever is still in flight is reported before we return.
        self.batcher.discard();
        let reports = self.batcher.drain(Duration::MAX).await;
        drop(reports);
        if self.output_closed && !shutdown.is_cancelled() {
            return Err(SourceError {
                source_name: self.ctx.name.clone(),
                message: "the processing stage stopped receiving batches before shutdown".into(),
            });
        }
        Ok(())
    }

    fn save(&self) -> Result<(), SourceError> {
        position_file::store(&self.state_path, &self.state).map_err(|e| SourceError {
            source_name: self.ctx.name.clone(),
            message: e.to_string(),
        })
    }

    /// The file to ingest next and the offset to start at: the one in
    /// progress at the last stop if it is still there, else a waiting file.
    fn next_file(&mut self) -> Option<(PathBuf, u64)> {
        if let Some(f) = self.state.file.clone() {
            match std::fs::metadata(&f.path) {
                Ok(m)
                    if (m.dev(), m.ino()) == (f.dev, f.ino)
                        && !self.failed.contains(&(f.dev, f.ino)) =>
                {
                    return Some((f.path, f.position));
                }
                _ => self.state.file = None,
            }
        }
        let entries = match std::fs::read_dir(&self.config.dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(source = %self.ctx.name, dir = %self.config.dir.display(), error = %e, "cannot list the spool directory");
                return None;
            }
        };
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if !self.wanted(&name) {
                    return None;
                }
                let meta = entry.metadata().ok()?;
                let modified = meta.modified().ok()?;
                let quiet =
                    now.duration_since(modified).unwrap_or_default() >= self.config.min_age.get();
                (meta.is_file() && quiet && !self.failed.contains(&(meta.dev(), meta.ino())))
                    .then(|| (modified, entry.path()))
            })
            .collect();
        candidates.sort();
        let pick = match self.config.consume_order {
            ConsumeOrder::Oldest => candidates.into_iter().next(),
            ConsumeOrder::Youngest => candidates.pop(),
            ConsumeOrder::Random if candidates.is_empty() => None,
            ConsumeOrder::Random => {
                let i = (batcher::now_us() as usize) % candidates.len();
                Some(candidates.swap_remove(i))
            }
        };
        pick.map(|(_, path)| (path, 0))
    }

    /// Whether a directory entry named `name` is for ingesting.
    fn wanted(&self, name: &str) -> bool {
        !name.starts_with('.')
            && !name.ends_with(&self.config.completed_suffix)
            && self
                .config
                .include_pattern
                .as_ref()
                .is_none_or(|r| r.is_match(name))
            && !self
                .config
                .ignore_pattern
                .as_ref()
                .is_some_and(|r| r.is_match(name))
    }

    /// Reads the file from `start` to its quiet end, handing on batches and
    /// committing positions as they are acknowledged.
    async fn ingest(&mut self, path: &Path, start: u64) -> Result<Ingested, std::io::Error> {
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let mut splitter = LineSplitter::new(self.config.max_line_bytes.get() as usize);
        let mut order = InOrder::default();
        let mut pos = start;
        let mut last_growth = tokio::time::Instant::now();
        let shutdown = self.ctx.shutdown.clone();
        let path_text = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let link = self.link.clone();
        loop {
            let deadline = self.batcher.deadline();
            let chunk = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Ingested::Stopped),
                _ = link.rewind_requested() => {
                    if link.take_rewinds().is_empty() {
                        continue;
                    }
                    // A sink dropped what it held: read again from the
                    // acknowledged position, once what is in flight settled.
                    self.batcher.discard();
                    return Ok(match self.settle(&mut order).await {
                        Ingested::Stopped => Ingested::Stopped,
                        _ => Ingested::Again,
                    });
                }
                report = self.batcher.report() => {
                    let (seq, end) = report.mark;
                    if let Some(&committed) = order.report(seq, end, report.delivered).last() {
                        self.commit(committed).map_err(|e| std::io::Error::other(e.to_string()))?;
                    }
                    if order.blocked() {
                        self.batcher.discard();
                        return Ok(self.settle(&mut order).await);
                    }
                    continue;
                }
                _ = batcher::sleep_until(deadline) => {
                    if !self.flush(&mut order, pos).await {
                        return Ok(Ingested::Stopped);
                    }
                    continue;
                }
                buf = reader.fill_buf() => buf?.to_vec(),
            };
            if chunk.is_empty() {
                // At the end for now: complete only once quiet.
                let len = tokio::fs::metadata(path).await?.len();
                if len < pos {
                    return Err(std::io::Error::other(format!(
                        "the file shrank from {pos} to {len} bytes while being read"
                    )));
                }
                if len > pos {
                    last_growth = tokio::time::Instant::now();
                } else if last_growth.elapsed() >= self.config.min_age.get() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(Ingested::Stopped),
                    _ = tokio::time::sleep(self.config.poll_interval.get().min(self.config.min_age.get())) => {}
                }
                continue;
            }
            last_growth = tokio::time::Instant::now();
            reader.consume(chunk.len());
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = self.feed(&mut splitter, rest, pos, &path_text, &name);
                pos += n as u64;
                rest = &rest[n..];
                if self.batcher.full()
                    && !self
                        .flush(&mut order, pos - splitter.buffered() as u64)
                        .await
                {
                    return Ok(Ingested::Stopped);
                }
            }
        }
        // A last line without its newline is still a line.
        let offset = self.base() + pos as i64;
        let (batcher, config, topic) = (&mut self.batcher, &self.config, &self.ctx.name);
        splitter.finish(&mut |l| {
            let event = Line {
                body: l.bytes,
                part: l.part,
                offset,
            };
            push(batcher, config, topic, &event, &path_text, &name);
        });
        if !self.flush(&mut order, pos).await {
            return Ok(Ingested::Stopped);
        }
        Ok(self.settle(&mut order).await)
    }

    /// Waits for every batch of the file to be reported, committing positions.
    async fn settle(&mut self, order: &mut InOrder<u64>) -> Ingested {
        let shutdown = self.ctx.shutdown.clone();
        while self.batcher.in_flight() > 0 || !self.batcher.ready_reports_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ingested::Stopped,
                report = self.batcher.report() => {
                    let (seq, end) = report.mark;
                    if let Some(&committed) = order.report(seq, end, report.delivered).last()
                        && self.commit(committed).is_err()
                    {
                        return Ingested::Again;
                    }
                }
            }
        }
        if order.blocked() {
            Ingested::Again
        } else {
            Ingested::Done
        }
    }

    /// Hands the open batch on, marked with the offset its lines end at.
    async fn flush(&mut self, order: &mut InOrder<u64>, end: u64) -> bool {
        if self.batcher.is_empty() {
            return true;
        }
        let seq = order.next();
        let (state, state_path) = (&mut self.state, &self.state_path);
        let mut commit = |report: batcher::Report<(u64, u64)>| {
            let (seq, end) = report.mark;
            if let Some(&position) = order.report(seq, end, report.delivered).last() {
                if let Some(f) = state.file.as_mut() {
                    f.position = position;
                }
                // A failure shows at the next commit outside the wait.
                let _ = position_file::store(state_path, &*state);
            }
            None
        };
        if self
            .batcher
            .flush_with((seq, end), &mut commit)
            .await
            .is_err()
        {
            self.output_closed = true;
            return false;
        }
        true
    }

    fn commit(&mut self, position: u64) -> Result<(), SourceError> {
        if let Some(f) = self.state.file.as_mut() {
            f.position = position;
        }
        self.save()
    }

    /// Feeds `chunk`, which starts at byte `at` of the file, to the
    /// splitter, appending the line it completes (if any) straight from the
    /// splitter's buffer; returns the bytes taken.
    fn feed(
        &mut self,
        splitter: &mut LineSplitter,
        chunk: &[u8],
        at: u64,
        path: &str,
        name: &str,
    ) -> usize {
        let base = self.base();
        let (batcher, config, topic) = (&mut self.batcher, &self.config, &self.ctx.name);
        let lines_split = &self.lines_split;
        splitter.feed(chunk, &mut |l| {
            if l.part == Some(0) {
                lines_split.fetch_add(1, Ordering::Relaxed);
            }
            let end = at + l.taken as u64;
            let event = Line {
                body: l.bytes,
                part: l.part,
                offset: base + end as i64,
            };
            push(batcher, config, topic, &event, path, name);
        })
    }

    /// The offset base of the file in progress.
    fn base(&self) -> i64 {
        self.state.file.as_ref().map_or(0, |f| f.base)
    }

    /// Renames or deletes an ingested file, then forgets it.
    fn complete(&mut self, path: &Path, id: (u64, u64)) -> Result<(), SourceError> {
        let done = match self.config.delete_policy {
            DeletePolicy::Immediate => std::fs::remove_file(path),
            DeletePolicy::Never => {
                let mut target = path.as_os_str().to_owned();
                target.push(&self.config.completed_suffix);
                let target = PathBuf::from(target);
                if target.exists() {
                    Err(std::io::Error::other(format!(
                        "{} already exists",
                        target.display()
                    )))
                } else {
                    std::fs::rename(path, &target)
                }
            }
        };
        match done {
            Ok(()) => {
                self.files_completed.fetch_add(1, Ordering::Relaxed);
                info!(source = %self.ctx.name, file = %path.display(), "file ingested");
            }
            Err(e) => {
                error!(source = %self.ctx.name, file = %path.display(), error = %e, "the file was ingested but cannot be completed; leaving it in place until a restart");
                self.file_errors.fetch_add(1, Ordering::Relaxed);
                self.failed.insert(id);
            }
        }
        if let Some(f) = self.state.file.take() {
            self.state.next_base = Some(f.base + f.position as i64 + 1);
        }
        self.save()
    }
}

/// A line of the file in progress, as an event: its body, its piece number
/// if it is part of a split line, and its positional offset.
struct Line<'a> {
    body: &'a [u8],
    part: Option<u32>,
    offset: i64,
}

/// Appends `line` to the open batch, with the path and file-name headers.
fn push(
    batcher: &mut Batcher<(u64, u64)>,
    config: &SpoolDirSourceConfig,
    topic: &str,
    line: &Line<'_>,
    path: &str,
    name: &str,
) {
    let part = line.part.map(|p| p.to_string());
    let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(3);
    if let Some(h) = &config.file_header {
        headers.push((h, path.as_bytes()));
    }
    if let Some(h) = &config.basename_header {
        headers.push((h, name.as_bytes()));
    }
    if let Some(p) = &part {
        headers.push((super::exec::PART_HEADER, p.as_bytes()));
    }
    batcher.push(&NewEvent {
        key: None,
        body: line.body,
        headers: &headers,
        topic,
        partition: 0,
        offset: line.offset,
        timestamp: batcher::now_ms(),
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::timeout;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;
    use crate::wait::until;

    const WAIT: Duration = Duration::from_secs(30);

    fn link() -> Arc<crate::delivery::SourceLink> {
        crate::delivery::SourceLink::new("spool")
    }

    fn config(dir: &Path, extra: &str) -> SpoolDirSourceConfig {
        // Test defaults, which `extra` may override.
        let mut table: toml::Table = toml::from_str(&format!(
            "dir = {:?}\nmin_age = \"200ms\"\npoll_interval = \"20ms\"\nbatch_max_wait = \"20ms\"",
            dir.display().to_string()
        ))
        .unwrap();
        table.extend(toml::from_str::<toml::Table>(extra).unwrap());
        let c: SpoolDirSourceConfig = toml::Value::Table(table).try_into().unwrap();
        c.validate().unwrap();
        c
    }

    fn context(state: &Path) -> (SourceContext, Arc<Metrics>) {
        let metrics = Metrics::new();
        (
            SourceContext {
                name: "spool".into(),
                metrics: metrics.clone(),
                shutdown: CancellationToken::new(),
                embedded_bootstrap: None,
                state_dir: state.to_owned(),
            },
            metrics,
        )
    }

    /// Receives batches, releasing them, until `n` events came; returns
    /// (body, file header) pairs.
    async fn receive(rx: &mut mpsc::Receiver<Batch>, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            let batch = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            for e in batch.events.iter() {
                out.push((
                    String::from_utf8_lossy(e.body()).into_owned(),
                    e.header("file")
                        .map(|h| String::from_utf8_lossy(h).into_owned())
                        .unwrap_or_default(),
                ));
            }
            batch.release();
        }
        out
    }

    #[tokio::test]
    async fn ingests_quiet_files_in_order_then_renames_them() {
        let spool = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let a = spool.path().join("a.log");
        let b = spool.path().join("b.log");
        std::fs::write(&a, "a1\na2\n").unwrap();
        std::fs::write(&b, "b1\nb2 without newline").unwrap();
        std::fs::write(spool.path().join(".hidden"), "x\n").unwrap();
        std::fs::write(spool.path().join("skip.tmp"), "x\n").unwrap();
        // a is older than b.
        let old = std::fs::File::options().write(true).open(&a).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let (ctx, metrics) = context(state.path());
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            config(
                spool.path(),
                "file_header = \"file\"\nignore_pattern = '\\.tmp$'",
            ),
            tx,
            ctx,
            link(),
        ));
        let got = receive(&mut rx, 4).await;
        let a_text = a.display().to_string();
        let b_text = b.display().to_string();
        assert_eq!(
            got,
            vec![
                ("a1".into(), a_text.clone()),
                ("a2".into(), a_text),
                ("b1".into(), b_text.clone()),
                ("b2 without newline".into(), b_text),
            ]
        );
        until("two files completed", WAIT, || {
            metrics.get("source.spool.files_completed") == 2
        })
        .await;
        assert!(spool.path().join("a.log.COMPLETED").exists());
        assert!(spool.path().join("b.log.COMPLETED").exists());
        assert!(spool.path().join("skip.tmp").exists() && spool.path().join(".hidden").exists());
        shutdown.cancel();
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        let state: State = position_file::load(&state.path().join("spooldir.json"))
            .unwrap()
            .unwrap();
        assert_eq!(state.file, None);
    }

    #[tokio::test]
    async fn a_file_still_growing_is_read_to_its_quiet_end_before_completion() {
        let spool = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let path = spool.path().join("grow.log");
        std::fs::write(&path, "1\n").unwrap();
        let (ctx, metrics) = context(state.path());
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            config(
                spool.path(),
                "delete_policy = \"immediate\"\nmin_age = \"500ms\"",
            ),
            tx,
            ctx,
            link(),
        ));
        let mut got = receive(&mut rx, 1).await;
        // Appended while the source waits at its end: read, not completed early.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2\n3").unwrap();
        drop(f);
        got.extend(receive(&mut rx, 2).await);
        until("a file completed", WAIT, || {
            metrics.get("source.spool.files_completed") == 1
        })
        .await;
        assert_eq!(
            got.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        assert!(!path.exists(), "deleted once ingested");
        shutdown.cancel();
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_stopped_source_resumes_the_file_at_the_acknowledged_line() {
        let spool = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let path = spool.path().join("big.log");
        let lines: Vec<String> = (0..5000).map(|i| format!("line {i}")).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let extra = "batch_max_events = 100\nbatch_max_wait = \"1h\"";
        // First run: acknowledge 12 batches, hold the 13th, fail the 14th,
        // then the process "dies": the task is aborted, nothing shuts down.
        let (ctx, _) = context(state.path());
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(run(config(spool.path(), extra), tx, ctx, link()));
        let mut delivered = Vec::new();
        for _ in 0..12 {
            let batch = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            delivered.extend(
                batch
                    .events
                    .iter()
                    .map(|e| String::from_utf8_lossy(e.body()).into_owned()),
            );
            batch.release();
        }
        let held = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        let failed = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        failed.ack.fail();
        drop(failed);
        let position = || -> u64 {
            position_file::load::<State>(&state.path().join("spooldir.json"))
                .unwrap()
                .and_then(|s| s.file)
                .map_or(0, |f| f.position)
        };
        let after_12 = lines[..1200]
            .iter()
            .map(|l| l.len() as u64 + 1)
            .sum::<u64>();
        until("the position after 12 lines", WAIT, || {
            position() == after_12
        })
        .await;
        task.abort();
        let _ = task.await;
        drop(held);
        drop(rx);
        // Second run: starts at line 1200, exactly.
        let (ctx, metrics) = context(state.path());
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(config(spool.path(), extra), tx, ctx, link()));
        let rest = receive(&mut rx, 3800).await;
        delivered.extend(rest.into_iter().map(|(b, _)| b));
        assert_eq!(delivered, lines);
        until("a file completed", WAIT, || {
            metrics.get("source.spool.files_completed") == 1
        })
        .await;
        shutdown.cancel();
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    }

    #[test]
    fn keys_are_checked() {
        let bad = |t: &str| {
            toml::from_str::<SpoolDirSourceConfig>(&format!("dir = \"/x\"\n{t}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert_eq!(bad("completed_suffix = \"\""), "completed_suffix");
        assert_eq!(bad("file_header = \"sluice.x\""), "file_header");
        assert_eq!(bad("batch_max_events = 0"), "batch_max_events");
        let e = toml::from_str::<SpoolDirSourceConfig>("dir = \"/x\"\ninclude_pattern = \"(\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular expression"), "{e}");
        assert!(toml::from_str::<SpoolDirSourceConfig>("dir = \"/x\"\nspoolDir = \"/y\"").is_err());
    }
}
