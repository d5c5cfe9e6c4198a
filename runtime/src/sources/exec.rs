//! The `exec` source: runs a command and turns each line of its standard
//! output into an event, like Flume's exec source (`tail -F app.log`,
//! `vmstat 1`).
//!
//! ```toml
//! [sources.vmstat]
//! type = "exec"
//! command = ["vmstat", "1"]
//! restart = true
//! restart_backoff = "1s"
//! channels = ["edge"]          # a file channel: see below
//!
//! [channels.edge]
//! type = "file"
//! ```
//!
//! Each line (without its `\n`) becomes an event body with no key and no
//! headers; topic = the source's name, partition 0, timestamp = the time it
//! was read (ms). The offset counts lines, starting at the source's start
//! time in microseconds rather than at 0, so offsets keep ascending across
//! restarts of the command *and of Sluice* (sinks name files after the first
//! offset they hold: restarting at 0 would overwrite earlier files). The
//! counter only stays below the next start's if the command prints fewer
//! than a million lines a second on average.
//!
//! **A command cannot replay**: what it printed is gone once read. The
//! source counts the acknowledgements it gets back (`undelivered_batches`
//! when a batch could not be delivered) but cannot read anything again, so
//! events in a memory channel are lost if Sluice dies. Use it with a `file`
//! channel, which acknowledges a batch once it is on disk and delivers it
//! after a crash; the events still at risk are those read and not yet
//! appended (at most one batch, plus the pipe's buffer).
//!
//! - **Long lines** (`max_line_bytes`): a longer line is split, never
//!   dropped: it becomes events of `max_line_bytes` bytes each (the last
//!   holds the rest), in order; every piece carries the header
//!   `sluice.exec.part` with its 0-based index, and `lines_split` counts
//!   such lines.
//! - **Exit**: when the command ends (its standard output closes), the
//!   partial batch is handed on and its exit status logged; with `restart`
//!   it is started again after `restart_backoff`, otherwise the source ends
//!   (and the pipeline shuts down once everything is delivered).
//! - **Shutdown**: stop reading, send SIGTERM to the command (SIGKILL if it
//!   has not exited 5 s later), hand on the partial batch, and wait for the
//!   acknowledgements of everything handed on.
//! - **stderr**: `"log"` (default) logs each line at warn level;
//!   `"ignore"` discards it.
//!
//! Metrics: `source.<name>.events`, `.bytes` (bodies), `.batches`,
//! `.restarts`, `.lines_split`, `.undelivered_batches`.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{SourceContext, SourceError};
use crate::event::{Ack, AckReport, Batch, BatchBuf, NewEvent};
use crate::metrics::Counter;
use crate::units::{ByteSize, HumanDuration};

/// Header on each piece of a split line: its 0-based index.
pub(crate) const PART_HEADER: &str = "sluice.exec.part";
/// How long the command gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// `[sources.<name>]` with `type = "exec"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSourceConfig {
    /// The program and its arguments, run without a shell:
    /// `["tail", "-F", "/var/log/app.log"]`. For shell syntax write
    /// `["sh", "-c", "..."]`. Required.
    pub command: Vec<String>,
    /// Start the command again when it exits. Default `true`.
    #[serde(default = "default_true")]
    pub restart: bool,
    /// Wait between an exit and the restart. Default `"1s"`.
    #[serde(default = "default_restart_backoff")]
    pub restart_backoff: HumanDuration,
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// ...or as soon as its events hold at least this many bytes (keys,
    /// bodies, headers and topic names, as the batch encodes them; the event
    /// that crosses the bound is the batch's last). Bounds a batch's memory,
    /// whatever the record sizes, to this plus one event (1 KiB to 1 GiB;
    /// default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first line. Default `"100ms"`.
    #[serde(default = "default_batch_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// Longest event body; longer lines are split into several events (see
    /// the module docs). Default `"1MiB"`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// What happens to the command's standard error: `"log"` (default) or `"ignore"`.
    #[serde(default)]
    pub stderr: StderrMode,
}

/// What happens to the command's standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StderrMode {
    /// Each line is logged at warn level with the source's name.
    #[default]
    Log,
    /// Discarded.
    Ignore,
}

fn default_true() -> bool {
    true
}

fn default_restart_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_batch_max_events() -> usize {
    1000
}

fn default_batch_max_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(1 << 20)
}

impl ExecSourceConfig {
    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.command.first() {
            None => {
                return Err((
                    "command",
                    "is empty; give the program and its arguments, e.g. [\"vmstat\", \"1\"]".into(),
                ));
            }
            Some(p) if p.trim().is_empty() => {
                return Err((
                    "command",
                    "the program name (first element) is empty".into(),
                ));
            }
            _ => {}
        }
        if self.batch_max_events == 0 {
            return Err(("batch_max_events", "must be at least 1".into()));
        }
        if self.batch_max_wait.get().is_zero() {
            return Err(("batch_max_wait", "must be longer than 0ms".into()));
        }
        crate::sources::check_batch_max_bytes(self.batch_max_bytes)
            .map_err(|e| ("batch_max_bytes", e.0))?;
        if self.max_line_bytes.get() == 0 || self.max_line_bytes.get() > u32::MAX as u64 / 2 {
            return Err(("max_line_bytes", "must be between 1 byte and 2GiB".into()));
        }
        Ok(())
    }
}

/// Counters of one source, registered once.
struct ExecMetrics {
    events: Counter,
    bytes: Counter,
    batches: Counter,
    restarts: Counter,
    lines_split: Counter,
    undelivered: Counter,
}

/// Why reading stopped.
enum Stop {
    /// The command closed its output.
    Exited,
    /// The shutdown token fired.
    Shutdown,
    /// The processing stage is gone.
    OutputClosed,
}

struct Exec {
    config: ExecSourceConfig,
    ctx: SourceContext,
    output: Option<mpsc::Sender<Batch>>,
    acks_tx: Option<mpsc::UnboundedSender<AckReport>>,
    acks: mpsc::UnboundedReceiver<AckReport>,
    /// First and last offset of each batch handed on and not yet reported.
    pending: HashMap<u64, (i64, i64)>,
    events: BatchBuf,
    first_offset: Option<i64>,
    deadline: Option<Instant>,
    next_offset: i64,
    next_id: u64,
    /// The line being read, until its newline.
    line: Vec<u8>,
    /// Pieces of the current line already emitted.
    part: u32,
    metrics: ExecMetrics,
}

/// `type = "exec"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "exec",
    load: |table| {
        let config: ExecSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(std::sync::Arc::new(config))
    },
};

impl super::Source for ExecSourceConfig {
    fn rereads(&self) -> bool {
        false
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        _link: std::sync::Arc<crate::delivery::SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Runs the source until shutdown (or, without `restart`, until the command
/// exits); see the module docs.
pub async fn run(
    config: ExecSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    let start_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let metrics = ExecMetrics {
        events: ctx.counter("events"),
        bytes: ctx.counter("bytes"),
        batches: ctx.counter("batches"),
        restarts: ctx.counter("restarts"),
        lines_split: ctx.counter("lines_split"),
        undelivered: ctx.counter("undelivered_batches"),
    };
    let exec = Exec {
        line: Vec::new(),
        part: 0,
        config,
        ctx,
        output: Some(output),
        acks_tx: Some(acks_tx),
        acks,
        pending: HashMap::new(),
        events: BatchBuf::default(),
        first_offset: None,
        deadline: None,
        next_offset: start_us,
        next_id: 0,
        metrics,
    };
    exec.run().await
}

impl Exec {
    async fn run(mut self) -> Result<(), SourceError> {
        let shutdown = self.ctx.shutdown.clone();
        let mut result = Ok(());
        let mut first = true;
        loop {
            if !first {
                self.metrics.restarts.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.config.restart_backoff.get()) => {}
                }
            }
            first = false;
            let mut child = match self.spawn() {
                Ok(child) => child,
                Err(message) if self.config.restart => {
                    error!(source = %self.ctx.name, "{message}; trying again after restart_backoff");
                    continue;
                }
                Err(message) => {
                    result = Err(self.error(message.to_string()));
                    break;
                }
            };
            let stop = match child.stdout.take() {
                Some(stdout) => self.read(stdout).await,
                None => Stop::Exited,
            };
            // A line without its final newline is still a line.
            if !self.line.is_empty() {
                self.end_line();
            }
            let flushed = self.flush().await;
            match stop {
                Stop::Exited => {
                    let status = wait(&mut child).await;
                    info!(source = %self.ctx.name, %status, restart = self.config.restart, "command exited");
                    if !flushed {
                        break;
                    }
                    if !self.config.restart {
                        break;
                    }
                }
                Stop::Shutdown | Stop::OutputClosed => {
                    terminate(&mut child, &self.ctx.name).await;
                    if matches!(stop, Stop::OutputClosed) && !shutdown.is_cancelled() {
                        result = Err(self.error(
                            "the processing stage stopped receiving batches before shutdown".into(),
                        ));
                    }
                    break;
                }
            }
            if !flushed {
                break;
            }
        }
        self.drain().await;
        info!(source = %self.ctx.name, "exec source stopped");
        result
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.ctx.name.clone(),
            message,
        }
    }

    fn spawn(&self) -> Result<Child, SpawnError> {
        let (program, args) = self
            .config
            .command
            .split_first()
            .ok_or(SpawnError::EmptyCommand)?;
        let stderr = match self.config.stderr {
            StderrMode::Log => Stdio::piped(),
            StderrMode::Ignore => Stdio::null(),
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SpawnError::Start {
                command: self.config.command.clone(),
                source,
            })?;
        info!(source = %self.ctx.name, command = ?self.config.command, pid = child.id(), first_offset = self.next_offset, "command started");
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_lines(stderr, self.ctx.name.clone()));
        }
        Ok(child)
    }

    /// Reads lines until the command closes its output, shutdown, or the
    /// output closes; acknowledgements are handled meanwhile.
    async fn read(&mut self, stdout: impl AsyncRead + Unpin) -> Stop {
        let mut reader = BufReader::with_capacity(64 << 10, stdout);
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let deadline = self.deadline;
            let chunk = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Stop::Shutdown,
                Some(report) = self.acks.recv() => {
                    self.on_report(report);
                    continue;
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if !self.flush().await {
                        return Stop::OutputClosed;
                    }
                    continue;
                }
                buf = reader.fill_buf() => match buf {
                    Ok([]) => return Stop::Exited,
                    Ok(bytes) => bytes.to_vec(),
                    Err(e) => {
                        warn!(source = %self.ctx.name, error = %e, "reading the command's output failed; treating it as exited");
                        return Stop::Exited;
                    }
                },
            };
            reader.consume(chunk.len());
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let taken = self.take_lines(rest);
                rest = &rest[taken..];
                if self.full() && !self.flush().await {
                    return Stop::OutputClosed;
                }
            }
        }
    }

    /// Appends the lines (and pieces of long lines) of `chunk` to the batch
    /// until it is full; returns how many bytes were taken.
    fn take_lines(&mut self, chunk: &[u8]) -> usize {
        let max = self.config.max_line_bytes.get() as usize;
        let mut rest = chunk;
        while !rest.is_empty() && !self.full() {
            let room = max - self.line.len();
            let newline = rest.iter().take(room + 1).position(|b| *b == b'\n');
            match newline {
                Some(i) => {
                    self.line.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    self.end_line();
                }
                None if rest.len() > room => {
                    // The line is longer than `max_line_bytes`: emit a piece.
                    self.line.extend_from_slice(&rest[..room]);
                    rest = &rest[room..];
                    if self.part == 0 {
                        self.metrics.lines_split.fetch_add(1, Ordering::Relaxed);
                    }
                    let part = self.part;
                    self.push(Some(part));
                    self.part += 1;
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        chunk.len() - rest.len()
    }

    /// Whether the open batch is due by count or by size.
    fn full(&self) -> bool {
        self.events.len() >= self.config.batch_max_events
            || self.events.data_len() as u64 >= self.config.batch_max_bytes.get()
    }

    /// Ends the current line: appends it (or its last piece) as an event.
    fn end_line(&mut self) {
        let part = (self.part > 0).then_some(self.part);
        self.push(part);
        self.part = 0;
    }

    /// Appends the buffered line as an event.
    fn push(&mut self, part: Option<u32>) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(-1, |d| d.as_millis() as i64);
        let part_text = part.map(|p| p.to_string());
        let headers: Vec<(&str, &[u8])> = part_text
            .iter()
            .map(|p| (PART_HEADER, p.as_bytes()))
            .collect();
        let offset = self.next_offset;
        self.next_offset += 1;
        self.events.push(&NewEvent {
            key: None,
            body: &self.line,
            headers: &headers,
            topic: &self.ctx.name,
            partition: 0,
            offset,
            timestamp: now_ms,
        });
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes
            .fetch_add(self.line.len() as u64, Ordering::Relaxed);
        self.line.clear();
        self.first_offset.get_or_insert(offset);
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.config.batch_max_wait.get());
        }
    }

    /// Hands the open batch on (if it holds anything), handling
    /// acknowledgements while the output is full. `false` if the output is
    /// closed; the batch is then failed.
    async fn flush(&mut self) -> bool {
        self.deadline = None;
        if self.events.is_empty() {
            return true;
        }
        let (Some(output), Some(acks_tx)) = (self.output.clone(), self.acks_tx.as_ref()) else {
            return false;
        };
        let id = self.next_id;
        self.next_id += 1;
        let events = std::mem::take(&mut self.events);
        let first = self.first_offset.take().unwrap_or(self.next_offset);
        self.pending.insert(id, (first, self.next_offset - 1));
        let batch = Batch::new(events, Ack::new(id, acks_tx.clone()));
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        let send = output.send(batch);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => {
                    return match sent {
                        Ok(()) => true,
                        Err(mpsc::error::SendError(batch)) => {
                            batch.ack.fail();
                            self.output = None;
                            false
                        }
                    };
                }
                Some(report) = self.acks.recv() => self.on_report(report),
            }
        }
    }

    fn on_report(&mut self, report: AckReport) {
        let (first, last) = self.pending.remove(&report.id).unwrap_or((-1, -1));
        if report.delivered {
            // Tests and operators can tell from this line which offsets the
            // channel has taken over.
            debug!(source = %self.ctx.name, batch = report.id, first_offset = first, last_offset = last, "batch acknowledged");
        } else {
            self.metrics.undelivered.fetch_add(1, Ordering::Relaxed);
            error!(
                source = %self.ctx.name,
                batch = report.id,
                first_offset = first,
                last_offset = last,
                "a batch was not delivered and an exec source cannot read it again; use a file channel"
            );
        }
    }

    /// Stops handing on and waits for every batch handed on to be reported.
    async fn drain(&mut self) {
        self.output = None;
        self.acks_tx = None;
        while let Some(report) = self.acks.recv().await {
            self.on_report(report);
        }
    }
}

/// Waits for the command to exit, returning its status for the log.
async fn wait(child: &mut Child) -> String {
    match child.wait().await {
        Ok(status) => describe(status),
        Err(e) => format!("unknown ({e})"),
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// SIGTERM, then SIGKILL after [`TERM_GRACE`].
async fn terminate(child: &mut Child, source: &str) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet
        // reaped: `child` has not been waited for).
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if sent != 0 {
            debug!(
                source,
                pid,
                "SIGTERM failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
        Ok(status) => {
            let status = status.map_or_else(|e| format!("unknown ({e})"), describe);
            info!(source, %status, "command stopped");
        }
        Err(_) => {
            warn!(
                source,
                "command ignored SIGTERM for {TERM_GRACE:?}; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

/// Logs each line of the command's standard error.
async fn log_lines(stderr: impl AsyncRead + Unpin, source: String) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        warn!(source = %source, "command stderr: {line}");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// Why the command could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// `command` names no program.
    #[error("`command` is empty")]
    EmptyCommand,
    /// The OS refused to start it (not found, not executable, …).
    #[error("starting {command:?}: {source}")]
    Start {
        /// The configured command.
        command: Vec<String>,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::timeout;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;

    const WAIT: Duration = Duration::from_secs(30);

    fn config(text: &str) -> ExecSourceConfig {
        let c: ExecSourceConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        c
    }

    fn context() -> (SourceContext, Arc<Metrics>) {
        let metrics = Metrics::new();
        (
            SourceContext {
                name: "cmd".into(),
                metrics: metrics.clone(),
                shutdown: CancellationToken::new(),
                embedded_bootstrap: None,
                state_dir: std::env::temp_dir().join("sluice-test-state"),
            },
            metrics,
        )
    }

    /// Collects bodies (and part headers) until the source ends.
    async fn collect(
        config: ExecSourceConfig,
    ) -> (Vec<(String, Option<String>, i64)>, Arc<Metrics>) {
        let (ctx, metrics) = context();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(config, tx, ctx));
        let mut out = Vec::new();
        while let Some(batch) = timeout(WAIT, rx.recv()).await.unwrap() {
            for e in batch.events.iter() {
                assert_eq!((e.topic(), e.partition()), ("cmd", 0));
                assert!(e.timestamp() > 0);
                out.push((
                    String::from_utf8_lossy(e.body()).into_owned(),
                    e.header(PART_HEADER)
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    e.offset(),
                ));
            }
        }
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        (out, metrics)
    }

    #[test]
    fn parses_and_validates() {
        let c = config("command = [\"vmstat\", \"1\"]");
        assert!(c.restart);
        assert_eq!(c.batch_max_events, 1000);
        assert_eq!(c.max_line_bytes.get(), 1 << 20);
        assert_eq!(c.stderr, StderrMode::Log);
        let bad = |t: &str| {
            toml::from_str::<ExecSourceConfig>(t)
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert_eq!(bad("command = []"), "command");
        assert_eq!(bad("command = [\"\"]"), "command");
        assert_eq!(
            bad("command = [\"x\"]\nbatch_max_events = 0"),
            "batch_max_events"
        );
        assert_eq!(
            bad("command = [\"x\"]\nmax_line_bytes = 0"),
            "max_line_bytes"
        );
        assert_eq!(
            bad("command = [\"x\"]\nbatch_max_bytes = \"1B\""),
            "batch_max_bytes"
        );
        assert!(toml::from_str::<ExecSourceConfig>("restart = true").is_err());
        assert!(
            toml::from_str::<ExecSourceConfig>("command = [\"x\"]\nstderr = \"file\"").is_err()
        );
    }

    #[tokio::test]
    async fn batches_are_cut_by_bytes_too() {
        // 1000 lines of 100 bytes (plus topic) against a 4 KiB bound: batches
        // of 40 or 41 events (the event crossing the bound is the last).
        let (ctx, metrics) = context();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            config(
                "command = [\"sh\", \"-c\", \"for i in $(seq 1000); do printf '%0100d\\\\n' $i; done\"]\n\
                 restart = false\nbatch_max_bytes = \"4KiB\"\nbatch_max_wait = \"1h\"",
            ),
            tx,
            ctx,
        ));
        let mut sizes = Vec::new();
        while let Some(batch) = timeout(WAIT, rx.recv()).await.unwrap() {
            assert!(
                batch.events.data_len() < 4096 + 104,
                "{}",
                batch.events.data_len()
            );
            sizes.push(batch.len());
        }
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert_eq!(metrics.get("source.cmd.events"), 1000);
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|&n| n == 40 || n == 41), "{sizes:?}");
        assert!(*last <= 41);
    }

    #[tokio::test]
    async fn every_line_becomes_an_event_in_order_with_ascending_offsets() {
        let (out, metrics) = collect(config(
            // Batches cut by count only: a pause of the command between
            // pipe writes must not cut a short one by time.
            "command = [\"seq\", \"1\", \"2500\"]\nrestart = false\nbatch_max_events = 100\nbatch_max_wait = \"1h\"",
        ))
        .await;
        let bodies: Vec<String> = out.iter().map(|(b, _, _)| b.clone()).collect();
        assert_eq!(
            bodies,
            (1..=2500).map(|i| i.to_string()).collect::<Vec<_>>()
        );
        assert!(out.windows(2).all(|w| w[1].2 == w[0].2 + 1));
        assert_eq!(metrics.get("source.cmd.events"), 2500);
        assert_eq!(metrics.get("source.cmd.batches"), 25);
    }

    #[tokio::test]
    async fn long_lines_are_split_into_numbered_parts() {
        let (out, metrics) = collect(config(
            "command = [\"printf\", \"abcdefghij\\nxy\\n0123\"]\nrestart = false\nmax_line_bytes = 4",
        ))
        .await;
        let got: Vec<(&str, Option<&str>)> = out
            .iter()
            .map(|(b, p, _)| (b.as_str(), p.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("abcd", Some("0")),
                ("efgh", Some("1")),
                ("ij", Some("2")),
                ("xy", None),
                ("0123", None),
            ]
        );
        assert_eq!(metrics.get("source.cmd.lines_split"), 1);
    }

    #[tokio::test]
    async fn restarts_the_command_and_offsets_keep_ascending() {
        let (ctx, metrics) = context();
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            config(
                "command = [\"echo\", \"hi\"]\nrestart_backoff = \"10ms\"\nbatch_max_wait = \"5ms\"",
            ),
            tx,
            ctx,
        ));
        let mut offsets = Vec::new();
        while offsets.len() < 3 {
            let batch = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            offsets.extend(batch.events.iter().map(|e| e.offset()));
        }
        shutdown.cancel();
        while timeout(WAIT, rx.recv()).await.unwrap().is_some() {}
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        assert!(offsets.windows(2).all(|w| w[1] > w[0]), "{offsets:?}");
        assert!(metrics.get("source.cmd.restarts") >= 2);
    }

    #[tokio::test]
    async fn shutdown_terminates_the_command_and_flushes_the_partial_batch() {
        let (ctx, metrics) = context();
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel(4);
        // Prints one line, then would run for a minute.
        let task = tokio::spawn(run(
            config(
                "command = [\"sh\", \"-c\", \"echo first; exec sleep 60\"]\nbatch_max_wait = \"1h\"",
            ),
            tx,
            ctx,
        ));
        timeout(WAIT, async {
            while metrics.get("source.cmd.events") < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        shutdown.cancel();
        let batch = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        assert_eq!(batch.events.get(0).unwrap().body(), b"first");
        drop(batch);
        assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
        // Ended well before the 60 s sleep would have.
        timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn undelivered_batches_are_counted() {
        let (ctx, metrics) = context();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            config("command = [\"seq\", \"3\"]\nrestart = false"),
            tx,
            ctx,
        ));
        while let Some(batch) = timeout(WAIT, rx.recv()).await.unwrap() {
            batch.ack.fail();
        }
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        assert_eq!(metrics.get("source.cmd.undelivered_batches"), 1);
    }
}
