//! The `syslog` source: receives syslog messages over TCP or UDP, RFC 5424
//! and RFC 3164 (BSD), like Flume's `syslogtcp`, `syslogudp` and
//! `multiport_syslogtcp` sources (one `syslog` source per port).
//!
//! ```toml
//! [sources.syslog]
//! type = "syslog"
//! protocol = "tcp"              # required: "tcp" or "udp"
//! listen = "0.0.0.0:514"        # default "127.0.0.1:5140"
//! format = "auto"               # or "rfc5424", "rfc3164"
//! max_message_bytes = "64KiB"   # longer messages are cut to this
//! max_connections = 1024        # TCP connections served at once
//! keep_unparsed = true          # unparsable messages become events too
//! batch_max_events = 1000
//! batch_max_bytes = "16MiB"
//! batch_max_wait = "100ms"
//! channels = ["edge"]           # a file channel: see below
//! ```
//!
//! **Keys**:
//!
//! - `protocol` (required): `"tcp"` or `"udp"`. Prefer TCP: see
//!   *Backpressure*.
//! - `listen`: the address and port to listen on, e.g. `"0.0.0.0:514"` or
//!   `"[::]:5140"`. Default `"127.0.0.1:5140"` (loopback only). Ports below
//!   1024 need privileges.
//! - `format`: `"auto"` (default) reads a message as RFC 5424 when it
//!   starts `<PRI>1 `, else as RFC 3164; `"rfc5424"` and `"rfc3164"` read
//!   every message one way. What each accepts: [`parse`].
//! - `max_message_bytes`: the longest message (480 bytes to 16 MiB; default
//!   `"64KiB"`). A longer TCP message is cut to this length and still
//!   becomes an event, counted in `messages_truncated`; the rest of it is
//!   skipped. A UDP datagram is at most 64 KiB anyway (a smaller limit cuts
//!   it the same way).
//! - `max_connections` (TCP; 1 to 65536, default 1024): connections served
//!   at once. One more is accepted and closed at once, with a warning, and
//!   counted in `connections_refused`.
//! - `keep_unparsed` (default `true`): a message that does not parse
//!   becomes an event whose body is the raw message and whose header
//!   `syslog.invalid` says why. With `false` it is dropped and logged (at
//!   most one warning per 10 s). Either way it is counted in
//!   `messages_invalid`.
//! - `batch_max_events` (default 1000), `batch_max_bytes` (1 KiB to 1 GiB,
//!   default 16 MiB), `batch_max_wait` (default `"100ms"`): a batch is
//!   handed on as soon as it holds that many events or bytes, or that long
//!   after its first event.
//!
//! **TCP framing** ([`framing`], RFC 6587), chosen per message by its first
//! byte: a digit means octet counting (`<len> <msg>`), anything else (`<`)
//! a message ending at `\n` or NUL. Senders may mix both on one connection.
//! While the pipeline pushes back, connections stop being read and new
//! ones wait in the accept queue (as long as the kernel allows).
//!
//! **Events**: body = the MSG part of the message, bytes as sent (an RFC
//! 5424 UTF-8 BOM removed; for RFC 3164 what follows `TAG[PID]: `); no
//! key; topic = the source's name, partition 0, offsets ascending across
//! restarts (from the start time in microseconds); timestamp = the
//! message's own when it parses (RFC 3339 for RFC 5424; RFC 3164's
//! `Mmm dd hh:mm:ss` in UTC, this year, or last year if that is more than
//! a day ahead), else the time it was received.
//! Headers, each only when the message has the field:
//!
//! | header | value |
//! |---|---|
//! | `syslog.facility` | PRI / 8, in decimal |
//! | `syslog.severity` | PRI % 8, in decimal |
//! | `syslog.version` | `1` (RFC 5424 only) |
//! | `syslog.timestamp` | the timestamp as sent |
//! | `syslog.hostname` | HOSTNAME |
//! | `syslog.app_name` | APP-NAME (RFC 3164: the tag) |
//! | `syslog.proc_id` | PROCID (RFC 3164: the `[pid]`) |
//! | `syslog.msg_id` | MSGID |
//! | `syslog.structured_data` | the structured data as sent, e.g. `[id@1 a="b"]` |
//! | `syslog.peer` | the sender's address, `ip:port` (always) |
//! | `syslog.invalid` | why the message did not parse (the body is then the raw message) |
//!
//! Trailing `\r`, `\n` and NUL are cut from every message; an empty message
//! is skipped.
//!
//! **Backpressure**: over TCP, when the pipeline has no room the source
//! stops reading its connections, so senders block (or buffer, as their
//! configuration says) and nothing is lost. Over UDP nothing can hold a
//! sender back: datagrams arriving while the pipeline is full pile up in
//! the kernel's socket buffer, and once it is full **the kernel drops them
//! without Sluice ever seeing them** (see `RcvbufErrors` in `netstat -su`
//! or the `drops` column of `/proc/net/udp`). `messages` counts only what
//! arrived. Use TCP wherever the sender supports it; for UDP, raise
//! `net.core.rmem_default` and keep the pipeline fast.
//!
//! **Reliability**: a sender cannot be asked to send again, so the source
//! cannot replay (it does not *reread*, and exactly-once sinks refuse it).
//! A batch not delivered is counted in `undelivered_batches` and logged:
//! its messages are lost. Put a `file` channel behind this source: a batch
//! is safe once the channel holds it, across crashes of Sluice.
//!
//! **Shutdown**: the source stops accepting connections, closes each
//! connection (a message it had only partly received is still handed on),
//! hands on everything read, and waits until it is acknowledged. Plain
//! syslog over TCP has no acknowledgements: what a sender wrote that the
//! source had not read yet when it closed the connection is lost to that
//! sender unless it sends it again on reconnecting.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`,
//! `.undelivered_batches`, `.messages` (every message received, valid or
//! not), `.messages_invalid`, `.messages_truncated`, `.connections` (TCP
//! connections served), `.connections_refused`, histogram
//! `.delivery_seconds`.

pub mod framing;
pub mod parse;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use self::framing::{Frame, Framer};
pub use self::parse::Format;
use super::batcher::{self, Batcher, Limits, OutputClosed, Report};
use super::{SourceContext, SourceError};
use crate::event::{Batch, NewEvent};
use crate::metrics::Counter;
use crate::units::{ByteSize, HumanDuration};

/// Header: PRI / 8.
pub const FACILITY: &str = "syslog.facility";
/// Header: PRI % 8.
pub const SEVERITY: &str = "syslog.severity";
/// Header: the RFC 5424 VERSION.
pub const VERSION: &str = "syslog.version";
/// Header: the timestamp as sent.
pub const TIMESTAMP: &str = "syslog.timestamp";
/// Header: HOSTNAME.
pub const HOSTNAME: &str = "syslog.hostname";
/// Header: APP-NAME, or the RFC 3164 tag.
pub const APP_NAME: &str = "syslog.app_name";
/// Header: PROCID, or the RFC 3164 pid.
pub const PROC_ID: &str = "syslog.proc_id";
/// Header: MSGID.
pub const MSG_ID: &str = "syslog.msg_id";
/// Header: the structured data as sent.
pub const STRUCTURED_DATA: &str = "syslog.structured_data";
/// Header: the sender's `ip:port`.
pub const PEER: &str = "syslog.peer";
/// Header: why the message did not parse.
pub const INVALID: &str = "syslog.invalid";

/// Bytes read from a connection at a time.
const READ_BYTES: usize = 64 << 10;
/// Reads (with their messages) queued from the connections to the batching
/// task; when full, connections wait, and stop reading.
const CHUNKS_QUEUED: usize = 64;
/// The largest UDP payload.
const DATAGRAM_BYTES: usize = 65_536;
/// At most one warning of a kind this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// `[sources.<name>]` with `type = "syslog"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// `"tcp"` or `"udp"`. Required.
    pub protocol: Protocol,
    /// Address and port to listen on. Default `"127.0.0.1:5140"`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `"auto"` (default), `"rfc5424"` or `"rfc3164"`.
    #[serde(default)]
    pub format: Format,
    /// Longest message; longer ones are cut (480 bytes to 16 MiB; default
    /// `"64KiB"`).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: ByteSize,
    /// TCP connections served at once; more are closed. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Whether a message that does not parse becomes an event (with header
    /// `syslog.invalid`) rather than being dropped. Default `true`.
    #[serde(default = "default_keep_unparsed")]
    pub keep_unparsed: bool,
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "batcher::default_max_events")]
    pub batch_max_events: usize,
    /// ...or this many bytes (1 KiB to 1 GiB; default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first message. Default `"100ms"`.
    #[serde(default = "batcher::default_max_wait")]
    pub batch_max_wait: HumanDuration,
}

/// The transport syslog messages come over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, framed by octet counting or by newlines (RFC 6587).
    Tcp,
    /// UDP, one message per datagram (RFC 5426).
    Udp,
}

fn default_listen() -> String {
    "127.0.0.1:5140".into()
}

fn default_max_message_bytes() -> ByteSize {
    ByteSize(64 << 10)
}

fn default_max_connections() -> usize {
    1024
}

fn default_keep_unparsed() -> bool {
    true
}

impl SyslogSourceConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            max_wait: self.batch_max_wait,
        }
    }

    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err((
                "listen",
                format!(
                    "`{}` is not an IP address and port, such as \"0.0.0.0:514\" or \"[::]:5140\"",
                    self.listen
                ),
            ));
        }
        let bytes = self.max_message_bytes.get();
        if !(480..=16 << 20).contains(&bytes) {
            return Err((
                "max_message_bytes",
                format!("must be between 480 bytes and 16MiB (is {bytes} bytes)"),
            ));
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(("max_connections", "must be between 1 and 65536".into()));
        }
        self.limits().check()
    }
}

/// `type = "syslog"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "syslog",
    load: |table| {
        let config: SyslogSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(Arc::new(config))
    },
};

impl super::Source for SyslogSourceConfig {
    fn rereads(&self) -> bool {
        false
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        _link: Arc<crate::delivery::SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx, None))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Receives until shutdown; `bound` learns the address listened on (for
/// `listen` with port 0).
pub(crate) async fn run(
    config: SyslogSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), SourceError> {
    let err = |message: String| SourceError {
        source_name: ctx.name.clone(),
        message,
    };
    let addr: SocketAddr = config
        .listen
        .parse()
        .map_err(|e| err(format!("listen `{}`: {e}", config.listen)))?;
    let mut ingest = Ingest::new(&config, output, &ctx);
    let closed = match config.protocol {
        Protocol::Tcp => {
            let listener = crate::listener::listen(addr)
                .map_err(|e| err(format!("listening on {addr} (tcp): {e}")))?;
            let local = listener.local_addr().map_err(|e| err(e.to_string()))?;
            if let Some(bound) = bound {
                let _ = bound.send(local);
            }
            info!(source = %ctx.name, addr = %local, "syslog source listening (tcp)");
            tcp(listener, &config, &mut ingest, &ctx).await
        }
        Protocol::Udp => {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|e| err(format!("listening on {addr} (udp): {e}")))?;
            let local = socket.local_addr().map_err(|e| err(e.to_string()))?;
            if let Some(bound) = bound {
                let _ = bound.send(local);
            }
            info!(source = %ctx.name, addr = %local, "syslog source listening (udp)");
            udp(socket, &config, &mut ingest, &ctx).await
        }
    };
    let flushed: Result<(), OutputClosed> = ingest.batcher.flush(()).await;
    for report in ingest.batcher.drain(Duration::MAX).await {
        log_report(&ctx, report);
    }
    info!(source = %ctx.name, "syslog source stopped");
    if (closed || flushed.is_err()) && !ctx.shutdown.is_cancelled() {
        return Err(err(
            "the processing stage stopped receiving batches before shutdown".into(),
        ));
    }
    Ok(())
}

/// Accepts connections and batches what they read until shutdown, then
/// closes them and takes what they still hand on. Returns whether the
/// output closed.
async fn tcp(
    listener: TcpListener,
    config: &SyslogSourceConfig,
    ingest: &mut Ingest,
    ctx: &SourceContext,
) -> bool {
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let close = CancellationToken::new();
    // Closes the connections however this ends (also if it is dropped).
    let _close_on_drop = close.clone().drop_guard();
    let connections = ctx.counter("connections");
    let refused = ctx.counter("connections_refused");
    let (mut refused_log, mut accept_log) = (Throttle::default(), Throttle::default());
    let max = config.max_message_bytes.get() as usize;
    let shutdown = ctx.shutdown.clone();
    let mut closed = false;
    loop {
        let deadline = ingest.batcher.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            report = ingest.batcher.report() => log_report(ctx, report),
            _ = batcher::sleep_until(deadline) => {
                if ingest.batcher.flush(()).await.is_err() {
                    closed = true;
                    break;
                }
            }
            Some(chunk) = rx.recv() => {
                // While this waits for room, connections wait on `tx`
                // and stop reading: backpressure reaches the senders.
                if ingest.take(chunk).await.is_err() {
                    closed = true;
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        debug!(source = %ctx.name, %peer, "syslog connection accepted");
                        tokio::spawn(serve(stream, peer, max, tx.clone(), close.clone(), slot));
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(suppressed) = refused_log.allow() {
                            warn!(source = %ctx.name, %peer, max_connections = config.max_connections, suppressed, "closing a syslog connection: max_connections are open");
                        }
                        drop(stream);
                    }
                },
                Err(e) => {
                    if let Some(suppressed) = accept_log.allow() {
                        warn!(source = %ctx.name, error = %e, suppressed, "accepting a syslog connection failed");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Stop accepting and close every connection; what they read is still taken.
    drop(listener);
    close.cancel();
    drop(tx);
    while let Some(chunk) = rx.recv().await {
        if !closed && ingest.take(chunk).await.is_err() {
            closed = true;
        }
    }
    closed
}

/// Reads one connection into the batching task until it ends or is closed.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    max: usize,
    tx: mpsc::Sender<Chunk>,
    close: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let mut framer = Framer::new(max);
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let read = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            read = stream.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                debug!(%peer, error = %e, "reading a syslog connection failed");
                break;
            }
        };
        let mut chunk = Chunk::new(peer);
        framer.feed(&buf[..n], &mut |frame| chunk.add(frame));
        if !chunk.frames.is_empty() && tx.send(chunk).await.is_err() {
            return;
        }
    }
    drop(stream);
    let mut chunk = Chunk::new(peer);
    framer.finish(&mut |frame| chunk.add(frame));
    if !chunk.frames.is_empty() {
        let _ = tx.send(chunk).await;
    }
    debug!(%peer, "syslog connection closed");
}

/// Receives datagrams until shutdown. Returns whether the output closed.
async fn udp(
    socket: UdpSocket,
    config: &SyslogSourceConfig,
    ingest: &mut Ingest,
    ctx: &SourceContext,
) -> bool {
    let max = config.max_message_bytes.get() as usize;
    let mut buf = vec![0u8; DATAGRAM_BYTES];
    let mut recv_log = Throttle::default();
    let shutdown = ctx.shutdown.clone();
    loop {
        let deadline = ingest.batcher.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            report = ingest.batcher.report() => log_report(ctx, report),
            _ = batcher::sleep_until(deadline) => {
                if ingest.batcher.flush(()).await.is_err() {
                    return true;
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => {
                    // While a flush waits, datagrams queue in the kernel
                    // (and are dropped there once its buffer is full).
                    let frame = Frame { bytes: &buf[..n.min(max)], truncated: n > max };
                    ingest.push(frame, &peer.to_string(), Utc::now());
                    if ingest.batcher.full() && ingest.batcher.flush(()).await.is_err() {
                        return true;
                    }
                }
                Err(e) => {
                    if let Some(suppressed) = recv_log.allow() {
                        warn!(source = %ctx.name, error = %e, suppressed, "receiving a syslog datagram failed");
                    }
                }
            },
        }
    }
}

/// The messages of one read of a connection.
struct Chunk {
    peer: SocketAddr,
    data: Vec<u8>,
    /// `(start, end, truncated)` of each message in `data`.
    frames: Vec<(usize, usize, bool)>,
}

impl Chunk {
    fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            data: Vec::new(),
            frames: Vec::new(),
        }
    }

    fn add(&mut self, frame: Frame<'_>) {
        let start = self.data.len();
        self.data.extend_from_slice(frame.bytes);
        self.frames.push((start, self.data.len(), frame.truncated));
    }
}

/// Turns messages into events: the batcher and the counters of messages.
struct Ingest {
    batcher: Batcher<()>,
    topic: String,
    format: Format,
    keep_unparsed: bool,
    next_offset: i64,
    messages: Counter,
    invalid: Counter,
    truncated: Counter,
    invalid_log: Throttle,
}

/// Decimal text of 0 to 23 (facilities and severities).
const NUMBERS: [&str; 24] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23",
];

impl Ingest {
    fn new(config: &SyslogSourceConfig, output: mpsc::Sender<Batch>, ctx: &SourceContext) -> Self {
        Self {
            batcher: Batcher::new(config.limits(), output, ctx),
            topic: ctx.name.clone(),
            format: config.format,
            keep_unparsed: config.keep_unparsed,
            next_offset: batcher::now_us(),
            messages: ctx.counter("messages"),
            invalid: ctx.counter("messages_invalid"),
            truncated: ctx.counter("messages_truncated"),
            invalid_log: Throttle::default(),
        }
    }

    /// Pushes the messages of `chunk`, handing batches on as they fill.
    async fn take(&mut self, chunk: Chunk) -> Result<(), OutputClosed> {
        let peer = chunk.peer.to_string();
        let now = Utc::now();
        for &(start, end, truncated) in &chunk.frames {
            let frame = Frame {
                bytes: &chunk.data[start..end],
                truncated,
            };
            self.push(frame, &peer, now);
            if self.batcher.full() {
                self.batcher.flush(()).await?;
            }
        }
        Ok(())
    }

    /// Parses one message into the open batch (or counts it invalid);
    /// `now` is when it was received.
    fn push(&mut self, frame: Frame<'_>, peer: &str, now: DateTime<Utc>) {
        let raw = parse::trim_end(frame.bytes);
        if raw.is_empty() {
            return;
        }
        self.messages.fetch_add(1, Ordering::Relaxed);
        if frame.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        let received = now.timestamp_millis();
        let mut headers = Headers::default();
        match parse::parse(raw, self.format, now) {
            Ok(m) => {
                headers.add(FACILITY, NUMBERS[usize::from(m.facility)].as_bytes());
                headers.add(SEVERITY, NUMBERS[usize::from(m.severity)].as_bytes());
                for (name, value) in [
                    (VERSION, m.version),
                    (TIMESTAMP, m.timestamp),
                    (HOSTNAME, m.hostname),
                    (APP_NAME, m.app_name),
                    (PROC_ID, m.proc_id),
                    (MSG_ID, m.msg_id),
                    (STRUCTURED_DATA, m.structured_data),
                ] {
                    if let Some(value) = value {
                        headers.add(name, value);
                    }
                }
                headers.add(PEER, peer.as_bytes());
                let timestamp = m.timestamp_ms.unwrap_or(received);
                self.push_event(m.msg, headers.as_slice(), timestamp);
            }
            Err(e) => {
                self.invalid.fetch_add(1, Ordering::Relaxed);
                if !self.keep_unparsed {
                    if let Some(suppressed) = self.invalid_log.allow() {
                        warn!(source = %self.topic, %peer, reason = %e, suppressed, "dropping a syslog message that does not parse (keep_unparsed = false)");
                    }
                    return;
                }
                debug!(source = %self.topic, %peer, reason = %e, "a syslog message does not parse; keeping it raw");
                headers.add(PEER, peer.as_bytes());
                headers.add(INVALID, e.0.as_bytes());
                self.push_event(raw, headers.as_slice(), received);
            }
        }
    }

    fn push_event(&mut self, body: &[u8], headers: &[(&str, &[u8])], timestamp: i64) {
        self.batcher.push(&NewEvent {
            key: None,
            body,
            headers,
            topic: &self.topic,
            partition: 0,
            offset: self.next_offset,
            timestamp,
        });
        self.next_offset += 1;
    }
}

/// An event's headers, without allocating: at most one of each.
#[derive(Default)]
struct Headers<'a> {
    items: [(&'static str, &'a [u8]); 11],
    len: usize,
}

impl<'a> Headers<'a> {
    fn add(&mut self, name: &'static str, value: &'a [u8]) {
        self.items[self.len] = (name, value);
        self.len += 1;
    }

    fn as_slice(&self) -> &[(&'static str, &'a [u8])] {
        &self.items[..self.len]
    }
}

/// Lets a warning through at most once per [`LOG_EVERY`], counting those
/// held back.
#[derive(Debug, Default)]
struct Throttle {
    next: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(held back since the last one)` if a warning may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + LOG_EVERY);
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn log_report(ctx: &SourceContext, report: Report<()>) {
    if !report.delivered {
        error!(source = %ctx.name, "a batch was not delivered and syslog senders cannot send it again: its messages are lost; put a file channel behind this source");
    }
}
