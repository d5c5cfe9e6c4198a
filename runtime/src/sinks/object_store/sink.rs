//! The sink loop: route each event to its open file, roll files, release acks.
//!
//! Files are keyed by (rendered directory, topic, partition); the key is
//! built in a reusable `String`, so looking up the file of an event
//! allocates nothing. A file rolls (is completed) when
//!
//! - it reaches `roll_count` events or `roll_size` encoded bytes (checked
//!   after every event, so one large batch can fill several files);
//! - `roll_interval` has passed since it was opened, or `roll_idle` since it
//!   was last written: checked before writing to it, after every batch, and
//!   by a timer set to the earliest such deadline of all open files;
//! - an event arrives whose offset is lower than the file's last offset
//!   (a redelivery), so offsets in a file always ascend;
//! - the channel ends (shutdown): every open file is completed;
//! - a new file is due while `max_open_files` are open: the least recently
//!   written file is completed first (exactly-once: its partition commits).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::commit::{CommitLog, Created, Intent, Record};
use super::config::ObjectStoreSinkConfig;
use super::error::StoreError;
use super::format::Format;
use super::intake::{Drain, Intake, Next};
use super::journal::Journal;
use super::markers::Markers;
use super::path::{PathTemplate, RenderInputs, TimeCache};
use super::retry::Retrier;
use super::store::Destination;
use super::table::parquet::ParquetFile;
use super::table::{Table, TableOut};
use super::writer::{Encoder, FileSettings, OpenFile};
use crate::channels::ChannelReceiver;
use crate::delivery::{SourceLink, Tp};
use crate::event::{Batch, EventRef};
use crate::metrics::{Counter, Gauge};
use crate::sinks::{SinkContext, SinkError};

/// When files roll; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RollPolicy {
    /// Since the file was opened.
    pub interval: Option<Duration>,
    /// Encoded bytes, before compression.
    pub size: Option<u64>,
    /// Events.
    pub count: Option<u64>,
    /// Since the file was last written.
    pub idle: Option<Duration>,
}

impl RollPolicy {
    fn from_config(config: &ObjectStoreSinkConfig) -> Self {
        Self {
            interval: config.roll_interval.map(|d| d.get()),
            size: config.roll_size.map(|s| s.get()),
            count: config.roll_count,
            idle: config.roll_idle.map(|d| d.get()),
        }
    }

    /// When time alone will roll the file.
    pub fn deadline(&self, opened_at: Instant, last_write: Instant) -> Option<Instant> {
        let by_age = self.interval.map(|d| opened_at + d);
        let by_idle = self.idle.map(|d| last_write + d);
        match (by_age, by_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn expired(&self, file: &OpenFile, now: Instant) -> bool {
        self.deadline(file.opened_at, file.last_write)
            .is_some_and(|d| d <= now)
    }

    fn full(&self, file: &OpenFile) -> bool {
        self.count.is_some_and(|c| file.events >= c)
            || self.size.is_some_and(|s| file.raw_bytes >= s)
    }

    fn timed(&self) -> bool {
        self.interval.is_some() || self.idle.is_some()
    }
}

struct Metrics {
    events: Counter,
    bytes: Counter,
    files_written: Counter,
    /// Unix time (s) a file last became visible.
    last_commit: Gauge,
    open_files: Gauge,
    /// Files completed early to stay within `max_open_files`.
    rolled_for_room: Counter,
}

/// Exactly-once state: the source's ownership link, the commit log, and
/// per partition what is open (see `commit.rs`). In this mode all open files
/// of a partition roll together, in one commit record, whenever any of them
/// is due (like Kafka Connect's S3 sink, which rotates all files of a
/// topic-partition at once): a record covers a contiguous range of offsets,
/// so the committed position is one number per partition.
struct Exactly {
    link: Arc<SourceLink>,
    log: Arc<CommitLog>,
    parts: HashMap<Tp, PartState>,
    /// The partition of the previous event of this batch and its ownership:
    /// events of a partition come in runs, so the link's lock and the key's
    /// allocation are paid once per run, not per event. Cleared with every
    /// batch. Ownership read once per run is enough: a revocation later in
    /// the batch is caught by the commit fence (`SourceLink::begin_commit`).
    memo: Option<Memo>,
    commits: Counter,
    stale: Counter,
    skipped: Counter,
    conflicts: Counter,
}

/// See [`Exactly::memo`].
struct Memo {
    tp: Tp,
    /// `SourceLink::owned_since` for the batch's epoch; `None`: stale.
    since: Option<u64>,
}

#[derive(Debug, Default)]
struct PartState {
    /// Epoch the state belongs to.
    since: u64,
    /// Committed position: events below it are already in committed files.
    next: Option<i64>,
    /// Offset of the last event written into the open files (-1: none).
    last: i64,
    /// Start of the next record.
    start: Option<i64>,
    /// Keys of the open files.
    keys: Vec<String>,
    /// A write failed for good: nothing of it may be committed until the
    /// source reads the partition again (a new epoch).
    broken: bool,
}

/// What to do with one event in exactly-once mode.
enum Admit {
    Write,
    /// Stale, of a broken partition, or already written in this run.
    Skip,
    /// Below the committed position: already in committed files (or, if
    /// it can never be written, dead-lettered before).
    Committed,
    /// The partition was reassigned since its files were opened: drop them first.
    Reset(Vec<String>),
}

impl Exactly {
    fn admit(&mut self, topic: &str, partition: i32, offset: i64, epoch: u64) -> Admit {
        let memo = match self.memo.take() {
            Some(m) if m.tp.1 == partition && m.tp.0 == topic => m,
            _ => {
                // A new run: the only place a key is allocated. States are
                // never removed, so every later lookup of the run finds it.
                let tp = (topic.to_owned(), partition);
                self.parts.entry(tp.clone()).or_default();
                Memo {
                    tp,
                    since: self
                        .link
                        .owned_since(topic, partition)
                        .filter(|&s| epoch >= s),
                }
            }
        };
        let memo = self.memo.insert(memo);
        let Some(since) = memo.since else {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return Admit::Skip;
        };
        let tp = &memo.tp;
        let state = self.parts.get_mut(tp).expect("inserted with the memo");
        if state.since != since {
            let keys = std::mem::take(&mut state.keys);
            *state = PartState {
                since,
                next: self.log.position(tp),
                last: -1,
                start: None,
                keys: Vec::new(),
                broken: false,
            };
            if !keys.is_empty() {
                return Admit::Reset(keys);
            }
        }
        if state.broken || offset <= state.last {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Admit::Skip;
        }
        if state.next.is_some_and(|n| offset < n) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Admit::Committed;
        }
        Admit::Write
    }
}

/// What [`Sink::admit`] decided for one event.
enum Verdict {
    Write,
    Skip,
    /// Exactly-once: below the committed position (see [`Admit::Committed`]).
    Committed,
}

/// How opening a file for an event went.
enum Opened {
    Yes,
    /// Its path is over the store's limits: the event can never be written.
    Unwritable(String),
    /// Failed for good (already recorded): the batch fails.
    Failed,
}

/// Events and encoded bytes written from one batch.
#[derive(Default)]
struct Written {
    events: u64,
    bytes: u64,
}

/// How a sink's events become file bytes. One per sink, reached for every
/// event: kept inline rather than boxed, whatever its variants' sizes.
#[allow(clippy::large_enum_variant)]
enum Encoding {
    /// `text` or `jsonl` records.
    Record(Format),
    /// The rows of a table format (parquet, csv, tsv).
    Table(Table),
}

/// The last file key rendered and what it was rendered from; see
/// [`Sink::render_key`].
#[derive(Default)]
struct LastKey {
    /// `None`: nothing to reuse (the template reads headers, or nothing was
    /// rendered yet).
    inputs: Option<RenderInputs>,
    topic: String,
    key: String,
    dir_len: usize,
}

/// The state of a running sink.
pub struct Sink {
    name: String,
    settings: FileSettings,
    policy: RollPolicy,
    template: PathTemplate,
    dest: Arc<Destination>,
    /// Open files by key (see [`Sink::render_key`]), looked up several
    /// times per event: hashed with foldhash (seeded per process), not
    /// SipHash, which cost ~6% of the pipeline's CPU.
    files: HashMap<String, OpenFile, foldhash::fast::RandomState>,
    eo: Option<Exactly>,
    max_open_files: usize,
    /// Where events that can never be written go.
    dead_letter: crate::sinks::dead_letter::DeadLetter,
    /// How events become file bytes.
    encoding: Encoding,
    /// `_SUCCESS` markers, if asked for.
    markers: Option<Markers>,
    /// Why the sink must stop (an event that can never be written, and no
    /// `dead_letter`).
    fatal: Option<String>,
    /// At-least-once into a local directory: the in-progress files open.
    journal: Option<Journal>,
    retrier: Retrier,
    metrics: Metrics,
    // Hot-path scratch space, reused for every event.
    key: String,
    last_key: LastKey,
    encoded: Vec<u8>,
    time: TimeCache,
    batch_seq: u64,
    failures: u64,
    last_error: Option<String>,
}

/// Runs the sink on `dest` until `input` ends; the config must be validated
/// except for the part-size bounds (tests use small parts).
pub async fn run(
    config: ObjectStoreSinkConfig,
    dest: Destination,
    input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let (mut intake, drain) = Intake::spawn(input);
    let mut sink = Sink::new(&config, dest, &ctx, drain)?;
    if let Some(eo) = &sink.eo {
        eo.log
            .probe_conditional_create()
            .await
            .map_err(|e| SinkError {
                sink: ctx.name.clone(),
                message: e.message,
            })?;
    }
    if sink.eo.is_some() {
        info!(sink = %ctx.name, url = %config.url, "exactly-once: files become visible only with their commit record");
    }
    if let Some(markers) = &mut sink.markers {
        let dest = &sink.dest;
        let state = markers.state();
        let loaded = sink.retrier.run(|_| dest.get_meta(state)).await;
        let restored = loaded.and_then(|body| match body {
            Some(body) => markers.restore(&body),
            None => Ok(()),
        });
        restored.map_err(|e| SinkError {
            sink: ctx.name.clone(),
            message: format!("reading the `_SUCCESS` marker state: {e}"),
        })?;
    }
    loop {
        let deadline = sink.next_deadline();
        match intake.next(deadline).await {
            Next::Batch(batch) => sink.write_batch(batch).await,
            Next::Tick => sink.roll_due(Instant::now()).await,
            Next::Closed => break,
        }
        sink.mark_complete().await;
        let fatal = sink.retrier.fatal().map(|e| e.message.as_str());
        if let Some(fatal) = fatal.or(sink.fatal.as_deref()) {
            // Access denied, a missing bucket, a read-only file system: no
            // retry can succeed. Stop loudly; what the open files and the
            // intake hold fails as they are dropped, so nothing is committed.
            return Err(SinkError {
                sink: ctx.name.clone(),
                message: format!(
                    "{fatal}; the sink stopped, as no retry can succeed until the store, its permissions or the configuration change"
                ),
            });
        }
    }
    sink.finish_all().await;
    sink.mark_complete().await;
    sink.result()
}

impl Sink {
    fn new(
        config: &ObjectStoreSinkConfig,
        dest: Destination,
        ctx: &SinkContext,
        drain: Drain,
    ) -> Result<Self, SinkError> {
        let dest = Arc::new(dest);
        let eo = if config.exactly_once {
            let link = ctx.link.clone().ok_or_else(|| SinkError {
                sink: ctx.name.clone(),
                message: "`exactly_once` needs its channel fed by exactly one kafka source".into(),
            })?;
            let log = Arc::new(CommitLog::new(&ctx.name, dest.clone()));
            link.register(log.clone());
            Some(Exactly {
                link,
                log,
                parts: HashMap::new(),
                memo: None,
                commits: ctx.counter("commits"),
                stale: ctx.counter("stale_events"),
                skipped: ctx.counter("skipped_committed_events"),
                conflicts: ctx.counter("commit_conflicts"),
            })
        } else {
            None
        };
        let journal = match (&*dest, &ctx.state_dir) {
            (Destination::Local(_), Some(state)) if !config.exactly_once => {
                let error = |e: StoreError| SinkError {
                    sink: ctx.name.clone(),
                    message: e.message,
                };
                let journal = Journal::open(state.join("in-progress")).map_err(error)?;
                let removed = journal.sweep().map_err(error)?;
                if !removed.is_empty() {
                    info!(sink = %ctx.name, files = removed.len(), "removed in-progress files a previous run left; their events are read again");
                }
                ctx.counter("orphans_removed")
                    .fetch_add(removed.len() as u64, Ordering::Relaxed);
                Some(journal)
            }
            _ => None,
        };
        let template =
            PathTemplate::parse(&config.path, &config.missing_header_value).map_err(|e| {
                SinkError {
                    sink: ctx.name.clone(),
                    message: format!("`path`: {e}"),
                }
            })?;
        let encoding = match config.format.record() {
            Some(format) => Encoding::Record(format),
            None => Encoding::Table(
                Table::from_config(config, ctx.counter("type_mismatches")).map_err(|e| {
                    SinkError {
                        sink: ctx.name.clone(),
                        message: e.0,
                    }
                })?,
            ),
        };
        let markers = match (config.success_markers, template.period()) {
            (true, Some(period)) => Some(Markers::new(
                &ctx.name,
                period,
                config.allowed_lateness.get(),
                config.marker_idle_timeout.get(),
                ctx.link.clone(),
                ctx.counter("success_markers"),
            )),
            _ => None,
        };
        Ok(Self {
            name: ctx.name.clone(),
            encoding,
            markers,
            settings: FileSettings {
                format: config.format,
                compression: config.compression(),
                level: config.compression_level,
                part_size: usize::try_from(config.upload_part_size.get())
                    .unwrap_or(usize::MAX)
                    .max(1),
                exactly_once: config.exactly_once,
            },
            policy: RollPolicy::from_config(config),
            template,
            eo,
            max_open_files: config.max_open_files,
            dead_letter: crate::sinks::dead_letter::DeadLetter::new(ctx),
            fatal: None,
            journal,
            dest,
            files: HashMap::default(),
            retrier: Retrier::new(
                config.retry_backoff_initial.get(),
                config.retry_backoff_max.get(),
                config.shutdown_attempts,
                ctx.counter("retries"),
                ctx.counter("write_errors"),
                ctx.name.clone(),
                drain,
            )
            .with_disk_full(ctx.counter("disk_full"))
            .with_failing(ctx.gauge("failing")),
            metrics: Metrics {
                events: ctx.counter("events"),
                bytes: ctx.counter("bytes"),
                files_written: ctx.counter("files_written"),
                last_commit: ctx.gauge("last_commit_timestamp_seconds"),
                open_files: ctx.metrics.gauge(&format!("sink.{}.open_files", ctx.name)),
                rolled_for_room: ctx.counter("rolled_for_max_open_files"),
            },
            key: String::with_capacity(256),
            last_key: LastKey::default(),
            encoded: Vec::with_capacity(4096),
            time: TimeCache::default(),
            batch_seq: 0,
            failures: 0,
            last_error: None,
        })
    }

    /// The earliest time-based roll of any open file.
    fn next_deadline(&self) -> Option<Instant> {
        // Waiting `_SUCCESS` markers are checked again as partitions go idle.
        let markers = self
            .markers
            .as_ref()
            .filter(|m| m.waiting())
            .map(|m| Instant::now() + m.recheck());
        if !self.policy.timed() {
            return markers;
        }
        self.files
            .values()
            .filter_map(|f| self.policy.deadline(f.opened_at, f.last_write))
            .chain(markers)
            .min()
    }

    /// Writes the `_SUCCESS` markers of directories now complete: due by
    /// the watermark ([`Markers::due`]) and with no file open.
    async fn mark_complete(&mut self) {
        let Some(markers) = &mut self.markers else {
            return;
        };
        if !markers.waiting() {
            return;
        }
        let mut due = markers.due(Instant::now());
        due.retain(|dir| {
            !self.files.keys().any(|k| {
                k.strip_prefix(dir.as_str())
                    .is_some_and(|r| r.starts_with('\0'))
            })
        });
        if due.is_empty() {
            return;
        }
        due.sort_unstable();
        let Some(markers) = &mut self.markers else {
            return;
        };
        let mut marked = false;
        for dir in &due {
            let dest = &self.dest;
            match self.retrier.run(|_| Markers::mark(dest, dir)).await {
                Ok(()) => {
                    markers.marked(dir);
                    marked = true;
                }
                Err(e) => {
                    self.last_error = Some(format!("writing the `_SUCCESS` marker of {dir}: {e}"));
                    break;
                }
            }
        }
        if marked && let Err(e) = self.retrier.run(|_| markers.save(&self.dest)).await {
            self.last_error = Some(format!("saving the `_SUCCESS` marker state: {e}"));
        }
    }

    async fn write_batch(&mut self, batch: Batch) {
        self.batch_seq += 1;
        let now = Instant::now();
        let wall_ms = chrono::Utc::now().timestamp_millis();
        let mut written = Written::default();
        if let Some(eo) = &mut self.eo {
            eo.memo = None;
        }
        // Events no file here can hold (a path over the store's limits).
        let mut unwritable: Vec<(usize, String)> = Vec::new();
        for (index, event) in batch.events.iter().enumerate() {
            let dir_len = self.render_key(&event, wall_ms);
            let offset = event.offset();
            // At-least-once writes every event: no call (and no future) per event.
            let verdict = match self.eo {
                Some(_) => self.admit(&event, batch.ack.epoch()).await,
                None => Verdict::Write,
            };
            match verdict {
                Verdict::Write => {}
                Verdict::Skip => continue,
                Verdict::Committed => {
                    if let Some(why) = self.unwritable_committed(&event, dir_len) {
                        unwritable.push((index, why));
                    }
                    continue;
                }
            }
            // A table's row, before any file is opened for it: a value that
            // does not fit (`on_type_mismatch = "dead_letter"`) keeps the
            // event out of every file.
            if let Encoding::Table(table) = &mut self.encoding
                && let Err(mismatch) = table.fill(&event)
            {
                unwritable.push((index, mismatch.to_string()));
                continue;
            }
            // The event goes into its directory: its time counts for the
            // directory's `_SUCCESS` marker.
            if let Some(markers) = &mut self.markers {
                let time = super::path::event_time_ms(&event, wall_ms);
                if markers.observe(
                    &self.key[..dir_len],
                    event.topic(),
                    event.partition(),
                    time,
                    now,
                ) && let Err(e) = self.retrier.run(|_| markers.save(&self.dest)).await
                {
                    self.record_failure(format!("saving the `_SUCCESS` marker state: {e}"));
                    batch.ack.fail();
                    continue;
                }
            }
            // One lookup decides: no file, a file to roll first, or a file
            // to append to.
            let (open, roll_first) = match self.files.get(self.key.as_str()) {
                None => (false, false),
                Some(f) => (
                    true,
                    self.eo.is_none() && (offset < f.last_offset || self.policy.expired(f, now)),
                ),
            };
            if roll_first && let Some(file) = self.take_file() {
                self.finish(file).await;
            }
            if !open || roll_first {
                match self.open_file(&event, dir_len, now).await {
                    Opened::Yes => {}
                    Opened::Unwritable(why) => {
                        unwritable.push((index, why));
                        continue;
                    }
                    Opened::Failed => {
                        batch.ack.fail();
                        continue;
                    }
                }
            }
            self.append(&event, now, &batch, &mut written).await;
        }

        if !unwritable.is_empty() {
            self.divert(&batch, &unwritable).await;
        }
        self.metrics
            .events
            .fetch_add(written.events, Ordering::Relaxed);
        self.metrics
            .bytes
            .fetch_add(written.bytes, Ordering::Relaxed);
        // The files hold their own clones of the ack now (a return or panic
        // before here drops the batch unreleased, which fails it).
        batch.release();

        let now = Instant::now();
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.roll_due(now).await;
        }
    }

    /// Renders the file key of `event` into `self.key`
    /// (`<dir>\0<topic>\0<partition>`) and returns the directory's length,
    /// the key's prefix.
    ///
    /// Consecutive events mostly share their file: when the template reads
    /// no header and the event's topic, partition and time fields are those
    /// of the last rendering, the last key is reused ([`LastKey`]).
    fn render_key(&mut self, event: &EventRef<'_>, wall_ms: i64) -> usize {
        let inputs = self.template.inputs(event, wall_ms, &mut self.time);
        let last = &mut self.last_key;
        if inputs.is_some() && last.inputs == inputs && last.topic.as_bytes() == event.topic_bytes()
        {
            self.key.clear();
            self.key.push_str(&last.key);
            return last.dir_len;
        }
        self.key.clear();
        self.template
            .render(event, wall_ms, &mut self.time, &mut self.key);
        let dir_len = self.key.len();
        self.key.push('\0');
        self.key.push_str(event.topic());
        self.key.push('\0');
        let _ = write!(self.key, "{}", event.partition());
        last.inputs = inputs;
        last.topic.clear();
        last.topic.push_str(event.topic());
        last.key.clear();
        last.key.push_str(&self.key);
        last.dir_len = dir_len;
        dir_len
    }

    /// Whether `event` is to be written now. Exactly-once: see [`Admit`];
    /// files of a partition reassigned since they were opened are dropped
    /// first (the current key is kept).
    async fn admit(&mut self, event: &EventRef<'_>, epoch: u64) -> Verdict {
        let Some(eo) = &mut self.eo else {
            return Verdict::Write;
        };
        match eo.admit(event.topic(), event.partition(), event.offset(), epoch) {
            Admit::Write => Verdict::Write,
            Admit::Skip => Verdict::Skip,
            Admit::Committed => Verdict::Committed,
            Admit::Reset(keys) => {
                let key = std::mem::take(&mut self.key);
                self.drop_files(keys).await;
                self.key = key;
                Verdict::Write
            }
        }
    }

    /// Exactly-once, for an event below the committed position: why it can
    /// never be written, if its path is over the store's limits and a
    /// `dead_letter` channel is set. Such an event is in no commit: it went
    /// to the dead-letter channel, maybe without reaching its sink before a
    /// crash, so it is sent there again (at-least-once, like that sink).
    fn unwritable_committed(&mut self, event: &EventRef<'_>, dir_len: usize) -> Option<String> {
        if !self.dead_letter.configured() {
            return None;
        }
        if let Encoding::Table(table) = &mut self.encoding
            && let Err(mismatch) = table.fill(event)
        {
            return Some(mismatch.to_string());
        }
        let name = self.settings.file_name(
            event.topic(),
            event.partition(),
            event.offset(),
            self.template.missing(),
        );
        self.dest
            .check_length(&self.key[..dir_len], &name)
            .err()
            .map(|e| e.message)
    }

    /// Opens the file of the current key for `event`, its first event:
    /// checks the path's length, makes room under `max_open_files`, journals
    /// it (local at-least-once) and records its staging (exactly-once).
    async fn open_file(&mut self, event: &EventRef<'_>, dir_len: usize, now: Instant) -> Opened {
        let (topic, partition, offset) = (event.topic(), event.partition(), event.offset());
        let dir = self.key[..dir_len].to_owned();
        let name = self
            .settings
            .file_name(topic, partition, offset, self.template.missing());
        if let Err(why) = self.dest.check_length(&dir, &name) {
            return Opened::Unwritable(why.message);
        }
        if self.files.len() >= self.max_open_files {
            self.roll_least_recent().await;
        }
        let entry = match (&self.journal, &*self.dest) {
            (Some(journal), Destination::Local(local)) => {
                let hidden = local.paths(&dir, &name).hidden;
                match self.retrier.run(|_| journal.record(&hidden)).await {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        self.record_failure(format!("journaling {name}: {e}"));
                        return Opened::Failed;
                    }
                }
            }
            _ => None,
        };
        let opened = match self.encoder() {
            Ok(enc) => {
                OpenFile::open(
                    &self.dest,
                    &self.settings,
                    &dir,
                    &name,
                    offset,
                    now,
                    &mut self.retrier,
                    enc,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let header = match &self.encoding {
            Encoding::Table(Table {
                out: TableOut::Delimited { header, .. },
                ..
            }) => header.as_slice(),
            _ => &[],
        };
        let opened = opened.and_then(|mut file| {
            if !header.is_empty() {
                file.write(header)?;
            }
            Ok(file)
        });
        let mut file = match opened {
            Ok(file) => file,
            Err(e) => {
                self.record_failure(format!("opening {name}: {e}"));
                self.break_partition(topic, partition, offset).await;
                return Opened::Failed;
            }
        };
        file.journal = entry;
        if self.eo.is_some() && !self.record_staging(&file, topic, partition, &name).await {
            file.abandon(&self.dest).await;
            self.break_partition(topic, partition, offset).await;
            return Opened::Failed;
        }
        self.files.insert(self.key.clone(), file);
        self.metrics.open_files.fetch_add(1, Ordering::Relaxed);
        Opened::Yes
    }

    /// Exactly-once: writes the intent of a newly opened `file` (so recovery
    /// can clean it up) and adds it to its partition's open files.
    async fn record_staging(
        &mut self,
        file: &OpenFile,
        topic: &str,
        partition: i32,
        name: &str,
    ) -> bool {
        let Some(eo) = &mut self.eo else { return true };
        let intent = Intent {
            staged: file.staged().expect("exactly-once files are staged"),
            first_offset: file.first_offset,
        };
        let log = eo.log.clone();
        let written = self
            .retrier
            .run(|_| log.write_intent(topic, partition, &intent))
            .await;
        if let Err(e) = written {
            self.record_failure(format!("recording staging of {name}: {e}"));
            return false;
        }
        if let Some(eo) = &mut self.eo {
            let state = eo.parts.entry((topic.to_owned(), partition)).or_default();
            state.keys.push(self.key.clone());
            if state.start.is_none() {
                state.start = Some(state.next.unwrap_or(file.first_offset));
            }
        }
        true
    }

    /// Appends `event` to the open file of the current key, then rolls,
    /// commits or flushes that file as due.
    async fn append(
        &mut self,
        event: &EventRef<'_>,
        now: Instant,
        batch: &Batch,
        written: &mut Written,
    ) {
        let (topic, partition, offset) = (event.topic(), event.partition(), event.offset());
        let Some(file) = self.files.get_mut(self.key.as_str()) else {
            batch.ack.fail();
            self.record_failure("internal error: open file vanished".into());
            return;
        };
        if file.batch_seq != self.batch_seq {
            file.acks.push(batch.ack.clone());
            file.batch_seq = self.batch_seq;
        }
        // Appended, with the bytes it counts for.
        let encoded = &mut self.encoded;
        let appended = match &self.encoding {
            Encoding::Table(Table {
                out: TableOut::Parquet(_),
                row,
                ..
            }) => file.append_row(row, offset, now).map(|()| row.size()),
            Encoding::Table(Table {
                out: TableOut::Delimited { dialect, .. },
                columns,
                row,
                ..
            }) => {
                encoded.clear();
                dialect.encode(columns, row, encoded);
                file.append(encoded, offset, now)
                    .map(|()| encoded.len() as u64)
            }
            Encoding::Record(format) => {
                encoded.clear();
                format.encode(event, encoded);
                file.append(encoded, offset, now)
                    .map(|()| encoded.len() as u64)
            }
        };
        let size = match appended {
            Ok(size) => size,
            Err(e) => {
                if let Some(file) = self.take_file() {
                    self.abandon(file, e).await;
                }
                self.break_partition(topic, partition, offset).await;
                return;
            }
        };
        written.events += 1;
        written.bytes += size;
        let full = self.policy.full(file);
        if let Some(eo) = &mut self.eo
            && let Some(state) = eo.parts.get_mut(&(topic.to_owned(), partition))
        {
            state.last = offset;
        }

        if full && self.eo.is_some() {
            self.commit_partition(&(topic.to_owned(), partition)).await;
        } else if full {
            if let Some(file) = self.take_file() {
                self.finish(file).await;
            }
        } else if file.wants_flush(&self.settings)
            && let Err(e) = file
                .flush(&self.dest, &self.settings, &mut self.retrier)
                .await
            && let Some(file) = self.take_file()
        {
            self.abandon(file, e).await;
            self.break_partition(topic, partition, offset).await;
        }
    }

    /// Sends the events at `reasons` (index, why) of `batch` to the sink's
    /// dead-letter channel; without one, the sink stops with an error naming
    /// the first (see [`Sink::fatal`]).
    async fn divert(&mut self, batch: &Batch, reasons: &[(usize, String)]) {
        let events: Vec<(crate::event::EventRef<'_>, String)> = reasons
            .iter()
            .filter_map(|(i, why)| Some((batch.events.get(*i)?, why.clone())))
            .collect();
        if !self.dead_letter.configured() {
            batch.ack.fail();
            if let Some((event, why)) = events.first() {
                self.fatal.get_or_insert(format!(
                    "event {}/{}/{} can never be written: {why}; set `dead_letter` on the sink to send such events to a channel of their own",
                    event.topic(),
                    event.partition(),
                    event.offset()
                ));
            }
            return;
        }
        match self.dead_letter.send(&events, &batch.ack).await {
            Ok(()) => {
                warn!(sink = %self.name, events = events.len(), reason = %events[0].1, "events dead-lettered: they can never be written");
            }
            Err(e) => {
                batch.ack.fail();
                self.record_failure(format!("dead-lettering failed: {e}"));
            }
        }
    }

    /// A new file's encoder: a Parquet writer, or the file compression.
    fn encoder(&self) -> Result<Encoder, StoreError> {
        if let Encoding::Table(Table {
            out: TableOut::Parquet(properties),
            columns,
            ..
        }) = &self.encoding
        {
            return ParquetFile::new(columns, (**properties).clone())
                .map(|p| Encoder::Parquet(Box::new(std::sync::Mutex::new(p))))
                .map_err(|e| {
                    StoreError::local("starting a Parquet file", &std::io::Error::other(e))
                });
        }
        self.settings
            .compression
            .compressor(self.settings.level)
            .map(Encoder::Stream)
            .map_err(|e| {
                StoreError::local(
                    format!("starting {:?} compression", self.settings.compression),
                    &e,
                )
            })
    }

    /// Removes the file of the current key from the open set.
    fn take_file(&mut self) -> Option<OpenFile> {
        let file = self.files.remove(self.key.as_str())?;
        self.metrics.open_files.fetch_sub(1, Ordering::Relaxed);
        Some(file)
    }

    /// Makes room for one more open file: completes the least recently
    /// written one (exactly-once: commits its partition). Keeps the current
    /// key.
    async fn roll_least_recent(&mut self) {
        let Some(oldest) = self
            .files
            .iter()
            .min_by(|a, b| {
                a.1.last_write
                    .cmp(&b.1.last_write)
                    .then_with(|| a.0.cmp(b.0))
            })
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        self.metrics.rolled_for_room.fetch_add(1, Ordering::Relaxed);
        let current = std::mem::take(&mut self.key);
        if self.eo.is_some() {
            self.commit_keys(vec![oldest]).await;
        } else {
            self.finish_keys(vec![oldest]).await;
        }
        self.key = current;
    }

    /// Completes every file whose time is up.
    async fn roll_due(&mut self, now: Instant) {
        let mut due: Vec<String> = self
            .files
            .iter()
            .filter(|(_, f)| self.policy.expired(f, now))
            .map(|(k, _)| k.clone())
            .collect();
        due.sort_unstable();
        if self.eo.is_some() {
            return self.commit_keys(due).await;
        }
        self.finish_keys(due).await;
    }

    /// Completes every open file (shutdown).
    async fn finish_all(&mut self) {
        let mut all: Vec<String> = self.files.keys().cloned().collect();
        all.sort_unstable();
        if self.eo.is_some() {
            return self.commit_keys(all).await;
        }
        self.finish_keys(all).await;
    }

    /// Exactly-once: commits the partitions the files of `keys` belong to.
    async fn commit_keys(&mut self, keys: Vec<String>) {
        let mut tps: Vec<Tp> = Vec::new();
        for key in keys {
            if let Some(tp) = key_tp(&key)
                && !tps.contains(&tp)
            {
                tps.push(tp);
            }
        }
        for tp in tps {
            self.commit_partition(&tp).await;
        }
    }

    /// Exactly-once: drops open files whose data will be read again (their
    /// partition was revoked or rewound); their batches count as not
    /// delivered, which only keeps the group's mirror commit behind them.
    async fn drop_files(&mut self, keys: Vec<String>) {
        for key in keys {
            self.key = key;
            if let Some(file) = self.take_file() {
                if let Some(staged) = file.staged() {
                    self.dest.discard(&staged).await;
                }
                let OpenFile { acks, .. } = file;
                // Dropped unreleased: the batches count as not delivered, so the
                // consumer group's mirror commit never passes data no file holds.
                drop(acks);
            }
        }
    }

    /// Exactly-once: a write of the partition failed for good (only possible
    /// once the pipeline shuts down: writes are retried while it runs), so
    /// its open files have a hole and none of them may be committed. They are
    /// dropped, the partition's events are skipped from now on, and the
    /// source is asked to read it again from the committed position.
    async fn break_partition(&mut self, topic: &str, partition: i32, offset: i64) {
        let Some(eo) = &mut self.eo else { return };
        let tp = (topic.to_owned(), partition);
        let Some(state) = eo.parts.get_mut(&tp) else {
            return;
        };
        let keys = std::mem::take(&mut state.keys);
        state.broken = true;
        state.start = None;
        let first = keys
            .iter()
            .filter_map(|k| self.files.get(k))
            .map(|f| f.first_offset)
            .min()
            .unwrap_or(offset)
            .min(offset);
        let from = state.next.unwrap_or(first);
        let link = eo.link.clone();
        let key = std::mem::take(&mut self.key);
        self.drop_files(keys).await;
        self.key = key;
        link.request_rewind(tp, from);
    }

    /// Exactly-once: a commit of `tp` from `start` failed for good and its
    /// files were given up; skip the partition until the source reads it
    /// again from `start`.
    fn read_again(&mut self, tp: &Tp, start: i64) {
        let Some(eo) = &mut self.eo else { return };
        if let Some(state) = eo.parts.get_mut(tp) {
            state.broken = true;
        }
        eo.link.request_rewind(tp.clone(), start);
    }

    /// Exactly-once: seals every open file of `tp`, creates the commit
    /// record, publishes the files and releases their batches.
    async fn commit_partition(&mut self, tp: &Tp) {
        let Some(eo) = &mut self.eo else { return };
        let Some(state) = eo.parts.get_mut(tp) else {
            return;
        };
        let keys = std::mem::take(&mut state.keys);
        let (since, start, end) = (state.since, state.start.take(), state.last + 1);
        let link = eo.link.clone();
        let log = eo.log.clone();
        let mut files = Vec::with_capacity(keys.len());
        for key in &keys {
            if let Some(file) = self.files.remove(key) {
                self.metrics.open_files.fetch_sub(1, Ordering::Relaxed);
                files.push(file);
            }
        }
        let Some(start) = start.filter(|_| !files.is_empty()) else {
            return;
        };
        let Some(guard) = link.begin_commit(tp, since) else {
            // Revoked or rewound since: whoever reads it next writes it.
            for file in files {
                if let Some(staged) = file.staged() {
                    self.dest.discard(&staged).await;
                }
                let OpenFile { acks, .. } = file;
                // Dropped unreleased: the batches count as not delivered, so the
                // consumer group's mirror commit never passes data no file holds.
                drop(acks);
            }
            return;
        };
        let mut sealed = Vec::with_capacity(files.len());
        for file in &mut files {
            match file
                .seal(&self.dest, &self.settings, &mut self.retrier)
                .await
            {
                Ok(s) => sealed.push(s),
                Err(e) => {
                    drop(guard);
                    for file in files {
                        self.abandon(file, e.clone()).await;
                    }
                    return self.read_again(tp, start);
                }
            }
        }
        let record = Record {
            topic: tp.0.clone(),
            partition: tp.1,
            start,
            end,
            files: sealed,
            agent: log.agent().to_owned(),
            checksum: None,
        };
        let created = self.retrier.run(|_| log.create(&record)).await;
        drop(guard);
        match created {
            Ok(Created::Yes) => {}
            Ok(Created::Conflict) => return self.lost_race(tp, files).await,
            Err(e) => {
                for file in files {
                    self.abandon(file, e.clone()).await;
                }
                return self.read_again(tp, start);
            }
        }
        // Committed: from here on, recovery would publish these files too.
        for file in &record.files {
            let dest = self.dest.clone();
            if let Err(e) = self.retrier.run(|_| dest.publish(file)).await {
                // The record exists, so the next owner's recovery publishes it.
                error!(sink = %self.name, "{e}; the commit record stands and recovery will publish it");
            }
        }
        if let Err(e) = self.retrier.run(|_| log.after_publish(&record)).await {
            warn!(sink = %self.name, "tidying after a commit: {e}");
        }
        if let Some(eo) = &mut self.eo {
            eo.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(state) = eo.parts.get_mut(tp) {
                state.next = Some(end);
            }
        }
        for file in files {
            self.metrics.files_written.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .last_commit
                .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
            info!(
                sink = %self.name,
                path = %file.display,
                events = file.events,
                first_offset = file.first_offset,
                last_offset = file.last_offset,
                "file committed"
            );
            let OpenFile { acks, .. } = file;
            acks.release();
        }
    }

    /// Another writer committed this partition from the same start: ours is
    /// discarded, theirs published, and the source rewound to the new end.
    async fn lost_race(&mut self, tp: &Tp, files: Vec<OpenFile>) {
        let Some(eo) = &mut self.eo else { return };
        eo.conflicts.fetch_add(1, Ordering::Relaxed);
        let (log, link) = (eo.log.clone(), eo.link.clone());
        error!(sink = %self.name, topic = %tp.0, partition = tp.1, "another agent committed this partition first; discarding ours and reading on from its end");
        for file in files {
            if let Some(staged) = file.staged() {
                self.dest.discard(&staged).await;
            }
            let OpenFile { acks, .. } = file;
            // Dropped unreleased: the batches count as not delivered, so the
            // consumer group's mirror commit never passes data no file holds.
            drop(acks);
        }
        // Skip the partition until the source has rewound (a new epoch).
        if let Some(state) = self.eo.as_mut().and_then(|eo| eo.parts.get_mut(tp)) {
            state.broken = true;
        }
        match self.retrier.run(|_| log.recover_tp(tp)).await {
            Ok(Some(end)) => link.request_rewind(tp.clone(), end),
            Ok(None) => {}
            Err(e) => {
                error!(sink = %self.name, "reading the committed chain after a conflict: {e}")
            }
        }
    }

    async fn finish_keys(&mut self, keys: Vec<String>) {
        for key in keys {
            self.key = key;
            if let Some(file) = self.take_file() {
                self.finish(file).await;
            }
        }
    }

    /// Completes a file taken out of the open set; releases its acks once visible.
    async fn finish(&mut self, mut file: OpenFile) {
        match file
            .complete(&self.dest, &self.settings, &mut self.retrier)
            .await
        {
            Ok(size) => {
                self.metrics.files_written.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .last_commit
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                info!(
                    sink = %self.name,
                    path = %file.display,
                    events = file.events,
                    bytes = size,
                    raw_bytes = file.raw_bytes,
                    first_offset = file.first_offset,
                    last_offset = file.last_offset,
                    "file completed"
                );
                if let (Some(journal), Some(entry)) = (&self.journal, file.journal.take()) {
                    journal.forget(entry).await;
                }
                std::mem::take(&mut file.acks).release();
            }
            Err(e) => self.abandon(file, e).await,
        }
    }

    /// Gives a file up: its batches are reported as not delivered.
    async fn abandon(&mut self, mut file: OpenFile, error: StoreError) {
        error!(
            sink = %self.name,
            path = %file.display,
            events = file.events,
            batches = file.acks.len(),
            "giving up the file; its batches are reported as not delivered and will be read again after a restart: {error}"
        );
        self.failures += 1;
        self.last_error = Some(format!("{}: {error}", file.display));
        let entry = file.journal.take();
        file.abandon(&self.dest).await;
        if let (Some(journal), Some(entry)) = (&self.journal, entry) {
            journal.forget(entry).await;
        }
    }

    fn record_failure(&mut self, error: String) {
        error!(sink = %self.name, "{error}; the batch is reported as not delivered");
        self.failures += 1;
        self.last_error = Some(error);
    }

    fn result(&self) -> Result<(), SinkError> {
        match &self.last_error {
            None => Ok(()),
            Some(last) => Err(SinkError {
                sink: self.name.clone(),
                message: format!(
                    "{} write(s) failed for good; their batches were reported as not delivered, \
                     so the source will read them again. Last error: {last}",
                    self.failures
                ),
            }),
        }
    }
}

/// The topic and partition in a file key (`<dir>\0<topic>\0<partition>`).
fn key_tp(key: &str) -> Option<Tp> {
    let mut it = key.rsplitn(3, '\0');
    let partition = it.next()?.parse().ok()?;
    let topic = it.next()?;
    Some((topic.to_owned(), partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_earliest_time_trigger() {
        let t0 = Instant::now();
        let p = RollPolicy {
            interval: Some(Duration::from_secs(10)),
            idle: Some(Duration::from_secs(3)),
            ..RollPolicy::default()
        };
        // Written recently: the interval comes first.
        assert_eq!(
            p.deadline(t0, t0 + Duration::from_secs(8)),
            Some(t0 + Duration::from_secs(10))
        );
        // Idle since opening: idle comes first.
        assert_eq!(p.deadline(t0, t0), Some(t0 + Duration::from_secs(3)));
        let count_only = RollPolicy {
            count: Some(5),
            ..RollPolicy::default()
        };
        assert_eq!(count_only.deadline(t0, t0), None);
        assert!(!count_only.timed());
    }
}
