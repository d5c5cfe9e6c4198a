//! The `taildir` source: follows the files of one or more file groups as
//! they grow, like Flume's TAILDIR source, remembering how far each is
//! delivered in a position file, and following rotation by inode.
//!
//! ```toml
//! [sources.app]
//! type = "taildir"
//! filegroups = { app = "/var/log/app/*.log", audit = "/var/log/audit/audit.log" }
//! file_header = "file"              # the file's path in this header
//! group_header = "filegroup"        # the group's name in this header
//! group_headers = { audit = { kind = "audit" } }   # static headers per group
//! multiline_start = '^\d{4}-\d{2}-\d{2} '          # a line matching starts an event
//! channels = ["edge"]               # a file channel: see below
//! ```
//!
//! **Files**: each `filegroups` entry is an absolute path whose file name
//! may be a glob (`*`, `?`, `[a-z]`, `[!a]`); the directory is listed every
//! `poll_interval` and each regular file whose name matches belongs to the
//! group (the first group listing it, in name order). Files are told apart
//! by device and inode, not by name.
//!
//! **Rotation**: a file renamed away (`app.log` → `app.log.1`, no longer
//! matching) keeps being read through its open descriptor to its end, then
//! is closed once it has not grown for `idle_timeout`; the new `app.log`
//! is a new inode, read from its start. A file rotated by copy and truncate
//! is noticed by shrinking below the position read: what was read is kept,
//! and reading starts again at offset 0 (lines written between the copy
//! and the truncation are in the copy only — a limit of copy-truncate
//! itself; prefer rename rotation). A file rotated while Sluice was stopped
//! is found again by its inode in the directory it was in and read to its
//! end. **A file created *and* rotated away while Sluice was stopped** can
//! only be found if the group's pattern matches rotated names too
//! (`/var/log/app/app.log*`): make it so. Files are told apart by inode,
//! so a renamed file is never read twice.
//!
//! **Idle files**: a file that has not grown for `idle_timeout`, with all
//! it held acknowledged, is closed (its position kept) and opened again
//! when it grows: rotated files matching the pattern cost no descriptor.
//!
//! **Positions**: the position file (`position_file`, default
//! `data_dir/sources/<name>/taildir.json`) lists every file followed, by
//! device, inode and path, with the byte offset up to which its lines are
//! acknowledged, in order; it is replaced atomically after every
//! acknowledged batch. A restart resumes each file there: a line is never
//! skipped. A line is read again only if it was handed on but not yet
//! acknowledged when Sluice stopped. Files with no recorded position start at
//! their beginning, or at their end with `skip_to_end` (only files present
//! at the first start; a file appearing later is always read whole).
//!
//! **Lines and events**: a line ends at `\n`; an unterminated last line is
//! held until its newline comes, or the file is closed after rotation.
//! With `multiline_start`, a line matching it starts a new event and the
//! lines that do not match are appended to the open event (joined by
//! `\n`); the open event is handed on when the next one starts, or
//! `multiline_timeout` after its last line. An event longer than
//! `max_line_bytes` is split into numbered pieces (header
//! `sluice.exec.part`), never dropped. Topic = the source's name,
//! partition 0, offsets ascending across restarts, timestamp = when read.
//!
//! **Exactly once**: events are *positional*: each file is a partition
//! of its own (numbers never reused), and an event's offset is the byte
//! offset its line ends at, so a line read again gets the same partition
//! and offset. A restart (even after `kill -9`) reads again at most what
//! was handed on and not yet acknowledged, and that is never added twice:
//!
//! - through a `memory` channel into an object-store sink with
//!   `exactly_once = true`: the source assigns its partitions on its link,
//!   the sink keeps its committed offsets beside its output and skips what
//!   it holds (as for Kafka);
//! - into a `file` channel: the channel drops events it already holds
//!   (`duplicates_dropped`).
//!
//! A batch not delivered, or a sink asking to re-read a partition (it lost
//! a commit race), makes the source read every file again from its
//! acknowledged position (`rereads`), in a new epoch.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`,
//! `.undelivered_batches`, `.rotations`, `.truncations`, `.rereads`, `.lines_split`,
//! gauge `.files_tracked`, histogram `.delivery_seconds`.

mod glob;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use self::glob::FilePattern;
use super::batcher::{self, Batcher, InOrder, Limits, LineSplitter, Report};
use super::position_file;
use super::{SourceContext, SourceError};
use crate::delivery::SourceLink;
use crate::event::{Batch, NewEvent};
use crate::metrics::{Counter, Gauge};
use crate::units::{ByteSize, HumanDuration};

/// The pause before reading again after a batch was not delivered.
const REREAD_PAUSE: Duration = Duration::from_millis(500);

/// `[sources.<name>]` with `type = "taildir"`; see the module docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailDirSourceConfig {
    /// Group name → absolute path, the file name possibly a glob. Required.
    pub filegroups: BTreeMap<String, String>,
    /// Where positions are kept. Default `data_dir/sources/<name>/taildir.json`.
    #[serde(default)]
    pub position_file: Option<PathBuf>,
    /// Files present at the first start (no position recorded) are read
    /// from their end instead of their beginning. Default `false`.
    #[serde(default)]
    pub skip_to_end: bool,
    /// Header holding the file's path; none if unset.
    #[serde(default)]
    pub file_header: Option<String>,
    /// Header holding the file group's name; none if unset.
    #[serde(default)]
    pub group_header: Option<String>,
    /// Group name → static headers added to its events.
    #[serde(default)]
    pub group_headers: BTreeMap<String, BTreeMap<String, String>>,
    /// How often directories are listed and idle files checked. Default `"250ms"`.
    #[serde(default = "default_poll")]
    pub poll_interval: HumanDuration,
    /// A file that has not grown for this long is closed (a file no longer
    /// matched, rotated away or deleted, for good; a matched one until it
    /// grows). Default `"2m"`.
    #[serde(default = "default_idle")]
    pub idle_timeout: HumanDuration,
    /// A line matching this regular expression starts a new event; others
    /// are appended to the open one. Unset: every line is an event.
    #[serde(default, with = "super::regex_key")]
    pub multiline_start: Option<Regex>,
    /// The open multi-line event is handed on this long after its last
    /// line. Default `"1s"`.
    #[serde(default = "default_multiline_timeout")]
    pub multiline_timeout: HumanDuration,
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "batcher::default_max_events")]
    pub batch_max_events: usize,
    /// ...or this many bytes (1 KiB to 1 GiB; default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first line. Default `"100ms"`.
    #[serde(default = "batcher::default_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// Longest event body; longer ones are split. Default `"1MiB"`.
    #[serde(default = "batcher::default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
}

impl PartialEq for TailDirSourceConfig {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}

fn default_idle() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

fn default_multiline_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

impl TailDirSourceConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            max_wait: self.batch_max_wait,
        }
    }

    fn patterns(&self) -> Result<Vec<(String, FilePattern)>, (&'static str, String)> {
        if self.filegroups.is_empty() {
            return Err((
                "filegroups",
                "is empty; give at least one group, e.g. { app = \"/var/log/app/*.log\" }".into(),
            ));
        }
        self.filegroups
            .iter()
            .map(|(group, path)| {
                FilePattern::parse(path)
                    .map(|p| (group.clone(), p))
                    .map_err(|e| ("filegroups", format!("group `{group}`: {e}")))
            })
            .collect()
    }

    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.patterns()?;
        if let Some(group) = self
            .group_headers
            .keys()
            .find(|g| !self.filegroups.contains_key(*g))
        {
            return Err((
                "group_headers",
                format!("names group `{group}`, which is not in `filegroups`"),
            ));
        }
        let statics = self.group_headers.values().flat_map(|h| h.keys());
        for header in [&self.file_header, &self.group_header]
            .into_iter()
            .flatten()
            .chain(statics)
        {
            if header.is_empty() || crate::event::is_host_header(header) {
                return Err((
                    "file_header",
                    format!("header name `{header}` must be non-empty and outside `sluice.`"),
                ));
            }
        }
        for (key, d) in [
            ("poll_interval", self.poll_interval),
            ("idle_timeout", self.idle_timeout),
            ("multiline_timeout", self.multiline_timeout),
        ] {
            if d.get().is_zero() {
                return Err((key, "must be longer than 0ms".into()));
            }
        }
        self.limits().check()?;
        batcher::check_max_line_bytes(self.max_line_bytes)
    }
}

/// `type = "taildir"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "taildir",
    load: |table| {
        let config: TailDirSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(Arc::new(config))
    },
};

impl super::Source for TailDirSourceConfig {
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
        link: Arc<SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx, link))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// The position file's content.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Positions {
    files: Vec<Recorded>,
    /// The partition the next file followed gets.
    next_partition: i32,
}

/// One followed file and how far it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded {
    dev: u64,
    ino: u64,
    path: PathBuf,
    group: String,
    pos: u64,
    /// The file's partition: its events are numbered by the byte offset
    /// their line ends at, within this partition (positional events: a file
    /// channel drops what it already holds). A truncated file starts a new
    /// partition.
    partition: i32,
}

/// What a batch covers: per file (and its partition), the offset its last
/// event ends at.
/// Also: the commit generation and sequence number of the batch.
type Mark = (u64, u64, HashMap<FileId, (i32, u64)>);

/// The acknowledged positions and the position file.
struct Commits {
    path: PathBuf,
    order: InOrder<HashMap<FileId, (i32, u64)>>,
    /// Per file: path, group, partition, acknowledged offset.
    records: BTreeMap<FileId, Recorded>,
    next_partition: i32,
    /// Bumped when reading restarts from the acknowledged positions:
    /// reports of batches handed on before are ignored.
    generation: u64,
    /// A position file write failed; retried at the next commit.
    failing: bool,
    source: String,
}

impl Commits {
    /// Takes one batch's report; writes the position file if it advanced.
    fn report(&mut self, report: Report<Mark>) {
        let (generation, seq, ends) = report.mark;
        if generation != self.generation {
            return;
        }
        let ready = self.order.report(seq, ends, report.delivered);
        if ready.is_empty() {
            return;
        }
        for ends in ready {
            for (id, (partition, pos)) in ends {
                if let Some(rec) = self.records.get_mut(&id)
                    && rec.partition == partition
                {
                    rec.pos = rec.pos.max(pos);
                }
            }
        }
        self.save();
    }

    /// Forgets the batches in flight: reading restarts from the
    /// acknowledged positions.
    fn restart(&mut self) {
        self.generation += 1;
        self.order = InOrder::default();
    }

    /// A partition no file had yet.
    fn new_partition(&mut self) -> i32 {
        self.next_partition += 1;
        self.next_partition - 1
    }

    fn save(&mut self) {
        let positions = Positions {
            files: self.records.values().cloned().collect(),
            next_partition: self.next_partition,
        };
        match position_file::store(&self.path, &positions) {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    error!(source = %self.source, error = %e, "cannot write the position file; retrying at the next batch");
                }
                self.failing = true;
            }
        }
    }
}

/// The open multi-line event of a file.
struct Pending {
    body: Vec<u8>,
    end: u64,
    last_line: Instant,
}

/// A file being followed.
struct Tailed {
    id: FileId,
    path: PathBuf,
    group: String,
    file: Arc<std::fs::File>,
    /// See [`Recorded::partition`]; changes at each truncation, and marks
    /// of an older one no longer apply.
    partition: i32,
    /// The next byte to read.
    read_pos: u64,
    splitter: LineSplitter,
    pending: Option<Pending>,
    /// Listed by the last scan under its group's pattern.
    matched: bool,
    last_data: Instant,
}

struct Tail {
    config: TailDirSourceConfig,
    ctx: SourceContext,
    patterns: Vec<(String, FilePattern)>,
    batcher: Batcher<Mark>,
    commits: Commits,
    files: BTreeMap<FileId, Tailed>,
    /// Ends of the files' events in the open batch.
    open_mark: HashMap<FileId, (i32, u64)>,
    /// Positions read from the position file, used at the first scan.
    recorded: HashMap<FileId, Recorded>,
    first_scan: bool,
    rotations: Counter,
    truncations: Counter,
    lines_split: Counter,
    tracked: Gauge,
    rereads: Counter,
    output_closed: bool,
    link: Arc<SourceLink>,
    /// Partitions opened and not yet assigned on the link.
    to_assign: Vec<i32>,
}

/// Reads up to 64 KiB of `file` at `pos` off the async threads.
async fn read_at(file: Arc<std::fs::File>, pos: u64) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; 64 << 10];
        let n = file.read_at(&mut buf, pos)?;
        buf.truncate(n);
        Ok(buf)
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn run(
    config: TailDirSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
    link: Arc<SourceLink>,
) -> Result<(), SourceError> {
    let err = |message: String| SourceError {
        source_name: ctx.name.clone(),
        message,
    };
    let patterns = config
        .patterns()
        .map_err(|(k, m)| err(format!("`{k}`: {m}")))?;
    let path = config
        .position_file
        .clone()
        .unwrap_or_else(|| ctx.state_dir.join("taildir.json"));
    let loaded: Positions = position_file::load(&path)
        .map_err(|e| err(e.to_string()))?
        .unwrap_or_default();
    let first_start = !path.exists();
    // Partitions are never reused, even if the position file is lost (a
    // channel or sink holding an old partition's offsets would skip a new
    // file's lines): the first start numbers from the seconds since 2024.
    let next_partition = if first_start {
        ((batcher::now_us() / 1_000_000 - 1_704_067_200).max(0) as i32) & 0x3fff_ffff
    } else {
        loaded.next_partition
    };
    let mut tail = Tail {
        batcher: Batcher::new(config.limits(), output, &ctx)
            .positional()
            .with_link(link.clone()),
        link,
        to_assign: Vec::new(),
        rereads: ctx.counter("rereads"),
        commits: Commits {
            path,
            order: InOrder::default(),
            records: BTreeMap::new(),
            next_partition,
            generation: 0,
            failing: false,
            source: ctx.name.clone(),
        },
        recorded: loaded
            .files
            .into_iter()
            .map(|r| ((r.dev, r.ino), r))
            .collect(),
        first_scan: first_start,
        rotations: ctx.counter("rotations"),
        truncations: ctx.counter("truncations"),
        lines_split: ctx.counter("lines_split"),
        tracked: ctx
            .metrics
            .gauge(&format!("source.{}.files_tracked", ctx.name)),
        patterns,
        config,
        files: BTreeMap::new(),
        open_mark: HashMap::new(),
        output_closed: false,
        ctx,
    };
    tail.find_recorded();
    let result = tail.run().await;
    info!(source = %tail.ctx.name, "taildir source stopped");
    result
}

impl Tail {
    async fn run(&mut self) -> Result<(), SourceError> {
        let shutdown = self.ctx.shutdown.clone();
        let mut last_scan: Option<Instant> = None;
        while !shutdown.is_cancelled() && !self.output_closed {
            if last_scan.is_none_or(|t| t.elapsed() >= self.config.poll_interval.get()) {
                self.scan();
                self.first_scan = false;
                last_scan = Some(Instant::now());
            }
            self.assign_new().await;
            let progressed = self.read_all().await;
            self.timeouts().await;
            for report in self.batcher.ready_reports() {
                self.commits.report(report);
            }
            let rewinds = self.link.take_rewinds();
            if !rewinds.is_empty() || self.commits.order.blocked() {
                self.reread(&rewinds).await;
                continue;
            }
            if progressed {
                continue;
            }
            let deadline = self.batcher.deadline();
            let link = self.link.clone();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                report = self.batcher.report() => self.commits.report(report),
                _ = link.rewind_requested() => {}
                _ = batcher::sleep_until(deadline) => { self.flush().await; }
                _ = tokio::time::sleep(self.config.poll_interval.get()) => {}
            }
        }
        // Hand on what is complete; lines held (an unterminated line, an
        // open multi-line event) are not acknowledged and are read again.
        self.flush().await;
        for report in self.batcher.drain(Duration::MAX).await {
            self.commits.report(report);
        }
        self.commits.save();
        if self.output_closed && !shutdown.is_cancelled() {
            return Err(SourceError {
                source_name: self.ctx.name.clone(),
                message: "the processing stage stopped receiving batches before shutdown".into(),
            });
        }
        Ok(())
    }

    /// Assigns the partitions of newly followed files on the link (after
    /// handing on the open batch, so each batch lies within one epoch), and
    /// has every exactly-once sink complete what a crash left of them.
    async fn assign_new(&mut self) {
        if self.to_assign.is_empty() {
            return;
        }
        self.flush().await;
        let tps: Vec<(String, i32)> = self
            .to_assign
            .drain(..)
            .map(|p| (self.ctx.name.clone(), p))
            .collect();
        batcher::assign(&self.link, &tps, &self.ctx).await;
    }

    /// Reads every file again from its acknowledged position: a batch was
    /// not delivered, or an exactly-once sink asked to re-read a partition.
    /// What was handed on since is forgotten (its reports ignored; a new
    /// epoch makes it stale downstream); what is read again and already
    /// held is skipped by the sink or the file channel.
    async fn reread(&mut self, rewinds: &[((String, i32), i64)]) {
        warn!(source = %self.ctx.name, rewinds = ?rewinds, "reading the files again from their acknowledged positions");
        self.rereads.fetch_add(1, Ordering::Relaxed);
        if rewinds.is_empty() {
            // A sink failed a batch: give it a moment before the same data
            // comes again, rather than spin against a failing store.
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => {}
                _ = tokio::time::sleep(REREAD_PAUSE) => {}
            }
        }
        self.batcher.discard();
        self.open_mark.clear();
        self.commits.restart();
        let max = self.config.max_line_bytes.get() as usize;
        for t in self.files.values_mut() {
            if let Some(rec) = self.commits.records.get(&t.id) {
                t.read_pos = rec.pos;
            }
            t.splitter = LineSplitter::new(max);
            t.pending = None;
            self.to_assign.push(t.partition);
        }
        self.assign_new().await;
    }

    /// Finds the files of the position file by inode where they were
    /// (renamed while Sluice was stopped: searched in their directory).
    fn find_recorded(&mut self) {
        let recorded: Vec<Recorded> = self.recorded.values().cloned().collect();
        for rec in recorded {
            let id = (rec.dev, rec.ino);
            let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id);
            let found = if same(&rec.path) {
                Some(rec.path.clone())
            } else {
                rec.path
                    .parent()
                    .and_then(|dir| std::fs::read_dir(dir).ok())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| same(p))
            };
            match found {
                Some(path) => {
                    if path != rec.path {
                        info!(source = %self.ctx.name, from = %rec.path.display(), to = %path.display(), "a file was renamed while stopped; reading it to its end");
                    }
                    self.open(id, path, rec.group.clone(), rec.pos, Some(rec.partition));
                }
                None => {
                    warn!(source = %self.ctx.name, file = %rec.path.display(), position = rec.pos, "a followed file is gone (deleted while stopped); whatever it held after the position is lost");
                    self.recorded.remove(&id);
                }
            }
        }
        self.commits.save();
    }

    /// Lists the groups' directories: new files start being followed,
    /// renamed ones get their new path, vanished ones are marked unmatched.
    fn scan(&mut self) {
        let mut found: BTreeMap<FileId, (PathBuf, String, u64)> = BTreeMap::new();
        for (group, pattern) in &self.patterns {
            let Ok(entries) = std::fs::read_dir(&pattern.dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !pattern.matches(&name) {
                    continue;
                }
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_file() {
                    found.entry((meta.dev(), meta.ino())).or_insert((
                        path,
                        group.clone(),
                        meta.len(),
                    ));
                }
            }
        }
        for t in self.files.values_mut() {
            t.matched = false;
        }
        let mut opened = false;
        let mut dormant_seen: Vec<FileId> = Vec::new();
        for (id, (path, group, len)) in found {
            if let Some(t) = self.files.get_mut(&id) {
                if t.path != path {
                    info!(source = %self.ctx.name, from = %t.path.display(), to = %path.display(), "file renamed");
                    t.path = path.clone();
                    if let Some(rec) = self.commits.records.get_mut(&id) {
                        rec.path = path;
                    }
                }
                t.matched = true;
                continue;
            }
            // A file closed while idle: opened again once it has grown.
            if let Some(rec) = self.commits.records.get(&id) {
                if len != rec.pos {
                    let (pos, partition) = (rec.pos, rec.partition);
                    self.open(id, path, group, pos, Some(partition));
                    if let Some(t) = self.files.get_mut(&id) {
                        t.matched = true;
                    }
                }
                dormant_seen.push(id);
                continue;
            }
            let start = if self.first_scan && self.config.skip_to_end {
                len
            } else {
                0
            };
            self.open(id, path, group, start, None);
            if let Some(t) = self.files.get_mut(&id) {
                t.matched = true;
                opened = true;
            }
        }
        // Records of idle-closed files no longer listed: gone (deleted, or
        // renamed to a name no group matches).
        let gone: Vec<FileId> = self
            .commits
            .records
            .keys()
            .filter(|id| !self.files.contains_key(id) && !dormant_seen.contains(id))
            .copied()
            .collect();
        for id in &gone {
            self.commits.records.remove(id);
        }
        // New files' partitions are on disk before any of their events.
        if opened || !gone.is_empty() {
            self.commits.save();
        }
        self.tracked
            .store(self.files.len() as i64, Ordering::Relaxed);
    }

    /// Starts following a file at `pos`, in `partition` (a new one if none).
    fn open(&mut self, id: FileId, path: PathBuf, group: String, pos: u64, partition: Option<i32>) {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                warn!(source = %self.ctx.name, file = %path.display(), error = %e, "cannot open a file to follow; trying again at the next scan");
                return;
            }
        };
        // Opened by name: make sure it is still the inode we listed.
        if file.metadata().map(|m| (m.dev(), m.ino())).ok() != Some(id) {
            return;
        }
        info!(source = %self.ctx.name, file = %path.display(), group, from = pos, "following file");
        let partition = partition.unwrap_or_else(|| self.commits.new_partition());
        self.to_assign.push(partition);
        self.commits.records.insert(
            id,
            Recorded {
                dev: id.0,
                ino: id.1,
                path: path.clone(),
                group: group.clone(),
                pos,
                partition,
            },
        );
        self.files.insert(
            id,
            Tailed {
                id,
                path,
                group,
                file: Arc::new(file),
                partition,
                read_pos: pos,
                splitter: LineSplitter::new(self.config.max_line_bytes.get() as usize),
                pending: None,
                matched: false,
                last_data: Instant::now(),
            },
        );
    }

    /// Reads one chunk of every file with new data; `true` if any had some.
    async fn read_all(&mut self) -> bool {
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        let mut progressed = false;
        for id in ids {
            if self.output_closed {
                break;
            }
            let Some(t) = self.files.get_mut(&id) else {
                continue;
            };
            let len = match t.file.metadata() {
                Ok(m) => m.len(),
                Err(e) => {
                    warn!(source = %self.ctx.name, file = %t.path.display(), error = %e, "cannot stat a followed file");
                    continue;
                }
            };
            if len < t.read_pos {
                self.truncated(id);
                progressed = true;
                continue;
            }
            if len == t.read_pos || self.to_assign.contains(&t.partition) {
                continue;
            }
            let chunk = match read_at(t.file.clone(), t.read_pos).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    warn!(source = %self.ctx.name, file = %t.path.display(), error = %e, "reading a followed file failed; trying again");
                    continue;
                }
            };
            if chunk.is_empty() {
                continue;
            }
            progressed = true;
            self.take(id, &chunk).await;
        }
        progressed
    }

    /// Splits a chunk of file `id` into lines and events.
    async fn take(&mut self, id: FileId, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(t) = self.files.get_mut(&id) else {
                return;
            };
            let mut line = None;
            let n = t.splitter.feed(rest, &mut |l| {
                line = Some((l.bytes.to_vec(), l.part, l.complete))
            });
            t.read_pos += n as u64;
            t.last_data = Instant::now();
            let end = t.read_pos;
            rest = &rest[n..];
            if let Some((bytes, part, complete)) = line {
                if part == Some(0) {
                    self.lines_split.fetch_add(1, Ordering::Relaxed);
                }
                self.line(id, bytes, part, complete, end);
            }
            if self.batcher.full() {
                self.flush().await;
            }
        }
    }

    /// One line (or piece) of file `id` ending at offset `end`.
    fn line(&mut self, id: FileId, bytes: Vec<u8>, part: Option<u32>, complete: bool, end: u64) {
        let Some(start) = self.config.multiline_start.clone() else {
            self.emit(id, &bytes, part, end);
            return;
        };
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        let max = self.config.max_line_bytes.get() as usize;
        let starts =
            part.is_none_or(|p| p == 0) && start.is_match(&String::from_utf8_lossy(&bytes));
        let fits = t
            .pending
            .as_ref()
            .is_some_and(|p| p.body.len() + 1 + bytes.len() <= max);
        if part.is_none() && !starts && fits {
            let p = t.pending.as_mut().expect("fits implies pending");
            p.body.push(b'\n');
            p.body.extend_from_slice(&bytes);
            p.end = end;
            p.last_line = Instant::now();
            return;
        }
        // The open event is complete: hand it on first.
        if let Some(p) = t.pending.take() {
            self.emit(id, &p.body, None, p.end);
        }
        if part.is_some() || !complete {
            // A piece of an over-long line is an event of its own.
            self.emit(id, &bytes, part, end);
            return;
        }
        if let Some(t) = self.files.get_mut(&id) {
            t.pending = Some(Pending {
                body: bytes,
                end,
                last_line: Instant::now(),
            });
        }
    }

    /// Appends an event of file `id` ending at offset `end`.
    fn emit(&mut self, id: FileId, body: &[u8], part: Option<u32>, end: u64) {
        let Some(t) = self.files.get(&id) else {
            return;
        };
        let part = part.map(|p| p.to_string());
        let path = t.path.to_string_lossy();
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        if let Some(h) = &self.config.file_header {
            headers.push((h, path.as_bytes()));
        }
        if let Some(h) = &self.config.group_header {
            headers.push((h, t.group.as_bytes()));
        }
        if let Some(statics) = self.config.group_headers.get(&t.group) {
            headers.extend(statics.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        }
        if let Some(p) = &part {
            headers.push((super::exec::PART_HEADER, p.as_bytes()));
        }
        self.batcher.push(&NewEvent {
            key: None,
            body,
            headers: &headers,
            topic: &self.ctx.name,
            partition: t.partition,
            offset: end as i64,
            timestamp: batcher::now_ms(),
        });
        self.open_mark.insert(id, (t.partition, end));
    }

    /// Hands on the open batch, committing positions while it waits.
    async fn flush(&mut self) {
        if self.batcher.is_empty() || self.output_closed {
            return;
        }
        let seq = self.commits.order.next();
        let mark = (
            self.commits.generation,
            seq,
            std::mem::take(&mut self.open_mark),
        );
        let commits = &mut self.commits;
        let mut on_report = |report: Report<Mark>| {
            commits.report(report);
            None
        };
        if self.batcher.flush_with(mark, &mut on_report).await.is_err() {
            self.output_closed = true;
        }
    }

    /// File `id` shrank below what was read: copy-truncate rotation.
    fn truncated(&mut self, id: FileId) {
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        warn!(source = %self.ctx.name, file = %t.path.display(), read = t.read_pos, "file truncated (copy-truncate rotation?); reading it again from the start");
        self.truncations.fetch_add(1, Ordering::Relaxed);
        self.rotations.fetch_add(1, Ordering::Relaxed);
        self.finish_file(id);
        let partition = self.commits.new_partition();
        self.to_assign.push(partition);
        if let Some(t) = self.files.get_mut(&id) {
            t.partition = partition;
            t.read_pos = 0;
            if let Some(rec) = self.commits.records.get_mut(&id) {
                rec.partition = partition;
                rec.pos = 0;
            }
        }
        self.commits.save();
    }

    /// Hands on what file `id` holds back (an unterminated line, an open
    /// multi-line event): the file will not grow any more as it is.
    fn finish_file(&mut self, id: FileId) {
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        let end = t.read_pos;
        let mut rest = None;
        t.splitter.finish(&mut |l| rest = Some(l.bytes.to_vec()));
        let pending = t.pending.take();
        if let Some(p) = pending {
            self.emit(id, &p.body, None, p.end);
        }
        if let Some(bytes) = rest {
            self.emit(id, &bytes, None, end);
        }
    }

    /// Hands on multi-line events whose time is up, and closes rotated
    /// files that stopped growing once everything of them is acknowledged.
    async fn timeouts(&mut self) {
        let timeout = self.config.multiline_timeout.get();
        let due: Vec<FileId> = self
            .files
            .values()
            .filter(|t| {
                t.pending
                    .as_ref()
                    .is_some_and(|p| p.last_line.elapsed() >= timeout)
            })
            .map(|t| t.id)
            .collect();
        for id in due {
            if let Some(p) = self.files.get_mut(&id).and_then(|t| t.pending.take()) {
                self.emit(id, &p.body, None, p.end);
            }
        }
        let idle = self.config.idle_timeout.get();
        let done: Vec<FileId> = self
            .files
            .values()
            .filter(|t| t.last_data.elapsed() >= idle)
            .map(|t| t.id)
            .collect();
        for id in done {
            if self.files[&id].matched {
                // Still listed: close it if everything read is acknowledged
                // and no line is half-written; it opens again when it grows.
                let t = &self.files[&id];
                let settled = t.pending.is_none()
                    && t.splitter.buffered() == 0
                    && !self.open_mark.contains_key(&id)
                    && self
                        .commits
                        .records
                        .get(&id)
                        .is_some_and(|r| r.pos >= t.read_pos && r.partition == t.partition);
                if settled {
                    let t = self.files.remove(&id).expect("listed");
                    debug!(source = %self.ctx.name, file = %t.path.display(), "closed an idle file");
                }
                continue;
            }
            let len = self.files[&id].file.metadata().map_or(0, |m| m.len());
            if len > self.files[&id].read_pos {
                continue;
            }
            if self.files[&id].pending.is_some() || self.files[&id].splitter.buffered() > 0 {
                self.finish_file(id);
                self.flush().await;
                continue;
            }
            let acknowledged = self
                .commits
                .records
                .get(&id)
                .is_some_and(|r| r.pos >= self.files[&id].read_pos);
            if acknowledged && !self.open_mark.contains_key(&id) {
                let t = self.files.remove(&id).expect("listed");
                info!(source = %self.ctx.name, file = %t.path.display(), "closed a rotated file read to its end");
                self.rotations.fetch_add(1, Ordering::Relaxed);
                self.commits.records.remove(&id);
                self.commits.save();
            }
        }
        self.tracked
            .store(self.files.len() as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
