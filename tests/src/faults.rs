//! An S3 fault-injecting HTTP proxy for the fault tests.
//!
//! [`FaultProxy`] listens on `127.0.0.1:0` in front of an S3 server (moto)
//! and decides *per HTTP request*, with a seeded deterministic RNG, whether
//! to forward it or to inject a fault:
//!
//! | kind            | what the client sees                                         |
//! |-----------------|--------------------------------------------------------------|
//! | `slow_down`     | `503 Slow Down` with an S3 XML error body                     |
//! | `internal_error`| `500 Internal Server Error` with an S3 XML error body         |
//! | `reset`         | the request is read, then the connection is reset (no answer) |
//! | `lost_response` | the request *is* forwarded and executed, then the connection is reset before the answer: the ambiguous failure that makes naive retries duplicate data |
//! | `stall`         | the request is held for a while, then forwarded               |
//!
//! [`FaultProxy::outage`] switches every request to failing: new connections
//! are closed as soon as they are accepted and requests on kept-alive
//! connections get their connection closed (connection-refused style).
//! [`FaultProxy::counts`] says how many requests were seen and how many of
//! each fault were injected; the tests assert on them so that a run in which
//! the faults never happened cannot pass as a fault test.
//!
//! The proxy speaks just enough HTTP/1.1 for S3 clients: a request line,
//! headers and a `Content-Length` or chunked body; keep-alive connections
//! carry many requests; `Expect: 100-continue` is answered by the proxy.
//! Responses are relayed byte for byte, their end found from
//! `Content-Length`, chunked encoding or the connection closing. Each client
//! connection gets its own upstream connection, opened lazily and reopened
//! when the server closes it.
//!
//! Dropping the proxy aborts its tasks: the listener and every connection.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use sluice_tests::faults::{FaultPlan, FaultProxy};
//! let proxy = FaultProxy::start("http://127.0.0.1:5000", FaultPlan::mixed(7, 0.15)).await?;
//! println!("point the S3 client at {}", proxy.url());
//! proxy.outage(true);
//! proxy.outage(false);
//! println!("{}", proxy.counts());
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 << 10;

/// Fractions of requests that get each fault (the rest are forwarded).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// RNG seed: the same seed gives the same sequence of decisions.
    pub seed: u64,
    /// Fraction answered `503 SlowDown`.
    pub slow_down: f64,
    /// Fraction answered `500 InternalError`.
    pub internal_error: f64,
    /// Fraction whose connection is reset after the request is read.
    pub reset: f64,
    /// Fraction forwarded, then reset before the response reaches the client.
    pub lost_response: f64,
    /// Fraction held for [`FaultPlan::stall_for`] before being forwarded.
    pub stall: f64,
    /// How long a stalled request is held.
    pub stall_for: Duration,
}

impl FaultPlan {
    /// Forwards everything.
    pub fn none(seed: u64) -> Self {
        Self {
            seed,
            slow_down: 0.0,
            internal_error: 0.0,
            reset: 0.0,
            lost_response: 0.0,
            stall: 0.0,
            stall_for: Duration::from_secs(1),
        }
    }

    /// `total` of the requests fail, spread over every kind: 30% `503`,
    /// 20% `500`, 20% reset, 10% lost response, 20% stalled for 1.5 s.
    pub fn mixed(seed: u64, total: f64) -> Self {
        Self {
            seed,
            slow_down: total * 0.3,
            internal_error: total * 0.2,
            reset: total * 0.2,
            lost_response: total * 0.1,
            stall: total * 0.2,
            stall_for: Duration::from_millis(1500),
        }
    }
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Forward,
    /// Answer `503 Slow Down`.
    SlowDown,
    /// Answer `500 Internal Error`.
    InternalError,
    /// Reset the connection without an answer.
    Reset,
    /// Forward it, then reset the connection instead of answering.
    LostResponse,
    /// Hold it, then forward it.
    Stall,
}

/// SplitMix64: small, seedable, good enough to pick faults.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The decision sequence of a plan: deterministic for a seed.
#[derive(Debug)]
struct Decider {
    plan: FaultPlan,
    rng: Rng,
}

impl Decider {
    fn new(plan: FaultPlan) -> Self {
        Self {
            rng: Rng(plan.seed),
            plan,
        }
    }

    fn next(&mut self) -> Decision {
        let x = self.rng.next_f64();
        let p = &self.plan;
        let mut edge = 0.0;
        for (fraction, decision) in [
            (p.slow_down, Decision::SlowDown),
            (p.internal_error, Decision::InternalError),
            (p.reset, Decision::Reset),
            (p.lost_response, Decision::LostResponse),
            (p.stall, Decision::Stall),
        ] {
            edge += fraction;
            if x < edge {
                return decision;
            }
        }
        Decision::Forward
    }
}

/// Counts of what the proxy saw and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Client connections accepted (including those refused in an outage).
    pub connections: u64,
    /// Requests read completely from clients.
    pub requests: u64,
    /// Requests forwarded to the server whose answer reached the client.
    pub forwarded: u64,
    /// `503 Slow Down` answers.
    pub slow_down: u64,
    /// `500 Internal Error` answers.
    pub internal_error: u64,
    /// Connections reset after reading a request.
    pub reset: u64,
    /// Requests forwarded and executed whose answer was replaced by a reset.
    pub lost_response: u64,
    /// Requests held before forwarding.
    pub stalled: u64,
    /// Connections or requests closed because of an outage.
    pub refused: u64,
    /// Requests that failed because the server could not be reached or
    /// answered garbage.
    pub upstream_errors: u64,
}

impl FaultCounts {
    /// Every injected failure the client saw (stalls only delay).
    pub fn failures(&self) -> u64 {
        self.slow_down + self.internal_error + self.reset + self.lost_response + self.refused
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} forwarded={} 503={} 500={} reset={} lost_response={} stalled={} refused={} upstream_errors={}",
            self.requests,
            self.forwarded,
            self.slow_down,
            self.internal_error,
            self.reset,
            self.lost_response,
            self.stalled,
            self.refused,
            self.upstream_errors
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    forwarded: AtomicU64,
    slow_down: AtomicU64,
    internal_error: AtomicU64,
    reset: AtomicU64,
    lost_response: AtomicU64,
    stalled: AtomicU64,
    refused: AtomicU64,
    upstream_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    decider: Mutex<Decider>,
    outage: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn decide(&self) -> Decision {
        self.decider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next()
    }
}

/// The running proxy; see the module docs. Stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The listener task owns the connections' JoinSet: aborting it drops
        // the set, which aborts every connection task.
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<Self> {
        let hostport = upstream
            .strip_prefix("http://")
            .with_context(|| format!("upstream {upstream:?} is not an http:// URL"))?
            .trim_end_matches('/');
        let upstream = tokio::net::lookup_host(hostport)
            .await
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .with_context(|| format!("{hostport} resolves to nothing"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            decider: Mutex::new(Decider::new(plan)),
            outage: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`, the endpoint to give the S3 client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts (`true`) or ends (`false`) an outage: while on, every
    /// connection and request is closed without an answer.
    pub fn outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::SeqCst);
    }

    /// Replaces the fault plan (and reseeds the RNG).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self
            .shared
            .decider
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Decider::new(plan);
    }

    /// What the proxy has seen and injected so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            connections: get(&c.connections),
            requests: get(&c.requests),
            forwarded: get(&c.forwarded),
            slow_down: get(&c.slow_down),
            internal_error: get(&c.internal_error),
            reset: get(&c.reset),
            lost_response: get(&c.lost_response),
            stalled: get(&c.stalled),
            refused: get(&c.refused),
            upstream_errors: get(&c.upstream_errors),
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                bump(&shared.counters.connections);
                if shared.outage.load(Ordering::SeqCst) {
                    bump(&shared.counters.refused);
                    reset(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, shared.clone()));
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Closes `stream` with a TCP reset rather than an orderly shutdown.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// A byte stream with a read buffer, for parsing HTTP messages.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(16 << 10),
        }
    }

    /// Reads more bytes into the buffer; `false` at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next message head (through the blank line), or `None` at a
    /// clean end of stream before any byte of it.
    async fn read_head(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(Some(head));
            }
            if self.buf.len() > MAX_HEAD {
                bail!("message head longer than {MAX_HEAD} bytes");
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("connection closed in the middle of a message head");
            }
        }
    }

    /// Exactly `n` more bytes.
    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                bail!("connection closed in the middle of a body");
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One line including its CRLF.
    async fn read_line(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..end + 2).collect());
            }
            if self.buf.len() > MAX_HEAD {
                bail!("chunk line longer than {MAX_HEAD} bytes");
            }
            if !self.fill().await? {
                bail!("connection closed in the middle of a chunked body");
            }
        }
    }

    /// A chunked body, raw (sizes, data, trailers), as it came.
    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_text = std::str::from_utf8(&line)?
                .trim()
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            let size = usize::from_str_radix(&size_text, 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            raw.extend_from_slice(&line);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let line = self.read_line().await?;
                    raw.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok(raw);
                    }
                }
            }
            raw.extend_from_slice(&self.read_exact(size + 2).await?);
        }
    }

    /// Everything until the peer closes.
    async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed message head.
#[derive(Debug)]
struct Head {
    /// The first line's words: method, target, version (request) or
    /// version, status, reason (response).
    start: Vec<String>,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(raw).context("message head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let start = lines
            .next()
            .unwrap_or_default()
            .splitn(3, ' ')
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if start.len() < 2 {
            bail!("bad start line {:?}", text.lines().next());
        }
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, value) = l
                    .split_once(':')
                    .with_context(|| format!("bad header line {l:?}"))?;
                Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { start, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn content_length(&self) -> Result<Option<usize>> {
        self.header("content-length")
            .map(|v| {
                v.parse()
                    .with_context(|| format!("bad content-length {v:?}"))
            })
            .transpose()
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }
}

/// A request read from the client, ready to forward.
struct Request {
    method: String,
    /// Head to send upstream (without `Expect`).
    head: Vec<u8>,
    body: Vec<u8>,
    close: bool,
}

/// Reads one request; `None` when the client closed the connection.
async fn read_request(client: &mut Conn) -> Result<Option<Request>> {
    let Some(raw) = client.read_head().await? else {
        return Ok(None);
    };
    let head = Head::parse(&raw)?;
    let expect = head.header("expect").is_some();
    if expect && head.has_token("expect", "100-continue") {
        client
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let body = if head.chunked() {
        client.read_chunked().await?
    } else {
        client
            .read_exact(head.content_length()?.unwrap_or(0))
            .await?
    };
    let head_bytes = if expect {
        // Answered here already; the server must not answer it again.
        let text = std::str::from_utf8(&raw)?;
        text.split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("expect:"))
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes()
    } else {
        raw
    };
    Ok(Some(Request {
        method: head.start[0].clone(),
        close: head.has_token("connection", "close")
            || head.start.get(2).is_some_and(|v| v.trim() == "HTTP/1.0"),
        head: head_bytes,
        body,
    }))
}

/// A response read from the server, raw.
struct Response {
    bytes: Vec<u8>,
    /// The server closes the connection after it.
    close: bool,
}

async fn read_response(server: &mut Conn, method: &str) -> Result<Response> {
    loop {
        let raw = server
            .read_head()
            .await?
            .context("server closed the connection before answering")?;
        let head = Head::parse(&raw)?;
        let status: u16 = head.start[1]
            .parse()
            .with_context(|| format!("bad status {:?}", head.start[1]))?;
        if (100..200).contains(&status) {
            // Interim answer (we never forward `Expect`); skip it.
            continue;
        }
        let mut close = head.has_token("connection", "close");
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if head.chunked() {
            server.read_chunked().await?
        } else if let Some(len) = head.content_length()? {
            server.read_exact(len).await?
        } else {
            close = true;
            server.read_to_end().await?
        };
        let mut bytes = raw;
        bytes.extend_from_slice(&body);
        return Ok(Response { bytes, close });
    }
}

/// An S3 error answer.
fn error_response(status: u16, reason: &str, code: &str, message: &str, id: u64) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-{id}</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: fault-{id}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one client connection until it closes or a fault ends it.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let c = &shared.counters;
    let mut client = Conn::new(client);
    let mut server: Option<Conn> = None;
    loop {
        if shared.outage.load(Ordering::SeqCst) {
            bump(&c.refused);
            return reset(client.stream);
        }
        let request = match read_request(&mut client).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let n = c.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if shared.outage.load(Ordering::SeqCst) {
            bump(&c.refused);
            return reset(client.stream);
        }
        let decision = shared.decide();
        let answer = match decision {
            Decision::SlowDown => {
                bump(&c.slow_down);
                Some(error_response(
                    503,
                    "Slow Down",
                    "SlowDown",
                    "Please reduce your request rate.",
                    n,
                ))
            }
            Decision::InternalError => {
                bump(&c.internal_error);
                Some(error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    n,
                ))
            }
            Decision::Reset => {
                bump(&c.reset);
                return reset(client.stream);
            }
            Decision::Forward | Decision::LostResponse | Decision::Stall => None,
        };
        if let Some(answer) = answer {
            if client.stream.write_all(&answer).await.is_err() {
                return;
            }
            if request.close {
                return;
            }
            continue;
        }
        if decision == Decision::Stall {
            bump(&c.stalled);
            let stall_for = shared
                .decider
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .plan
                .stall_for;
            tokio::time::sleep(stall_for).await;
        }
        let response = match forward(&shared, &mut server, &request).await {
            Ok(r) => r,
            Err(_) => {
                bump(&c.upstream_errors);
                return reset(client.stream);
            }
        };
        if response.close {
            server = None;
        }
        if decision == Decision::LostResponse {
            bump(&c.lost_response);
            return reset(client.stream);
        }
        if client.stream.write_all(&response.bytes).await.is_err() {
            return;
        }
        bump(&c.forwarded);
        if request.close || response.close {
            let _ = client.stream.shutdown().await;
            return;
        }
    }
}

/// Sends `request` upstream (reconnecting once if a kept-alive connection
/// turns out closed) and reads the answer.
async fn forward(
    shared: &Shared,
    server: &mut Option<Conn>,
    request: &Request,
) -> Result<Response> {
    for attempt in 0..2 {
        let reused = server.is_some();
        let conn = match server {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect(shared.upstream).await?;
                stream.set_nodelay(true)?;
                server.insert(Conn::new(stream))
            }
        };
        let sent = async {
            let mut bytes = Vec::with_capacity(request.head.len() + request.body.len());
            bytes.extend_from_slice(&request.head);
            bytes.extend_from_slice(&request.body);
            conn.stream.write_all(&bytes).await?;
            read_response(conn, &request.method).await
        }
        .await;
        match sent {
            Ok(response) => return Ok(response),
            // A kept-alive connection the server had closed: once more, fresh.
            Err(_) if reused && attempt == 0 => *server = None,
            Err(e) => {
                *server = None;
                return Err(e);
            }
        }
    }
    bail!("unreachable: forward loop ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny keep-alive HTTP server answering every request with its method,
    /// target and body length; counts requests.
    async fn echo_server() -> (SocketAddr, Arc<AtomicU64>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                conns.spawn(async move {
                    let mut conn = Conn::new(stream);
                    while let Ok(Some(req)) = read_request(&mut conn).await {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let head = Head::parse(&req.head).unwrap();
                        let chunked = head.start[1].contains("chunked");
                        let text = format!("{} {} {}", req.method, head.start[1], req.body.len());
                        let answer = if chunked {
                            let (a, b) = text.split_at(text.len() / 2);
                            format!(
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                a.len(),
                                b.len()
                            )
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                                text.len()
                            )
                        };
                        if conn.stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen, task)
    }

    /// Sends `body` to `target` on a kept-alive client connection; returns
    /// the status and body, or `None` if the connection was closed.
    async fn call(conn: &mut Conn, target: &str, body: &str) -> Option<(u16, String)> {
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.stream.write_all(request.as_bytes()).await.ok()?;
        let response = read_response(conn, "PUT").await.ok()?;
        let text = String::from_utf8(response.bytes).unwrap();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    #[test]
    fn decisions_are_deterministic_and_follow_the_fractions() {
        let plan = FaultPlan::mixed(42, 0.5);
        let a: Vec<_> = {
            let mut d = Decider::new(plan.clone());
            (0..20_000).map(|_| d.next()).collect()
        };
        let mut d = Decider::new(plan);
        let b: Vec<_> = (0..20_000).map(|_| d.next()).collect();
        assert_eq!(a, b);
        let share = |k| a.iter().filter(|&&x| x == k).count() as f64 / a.len() as f64;
        assert!((share(Decision::Forward) - 0.5).abs() < 0.02);
        assert!((share(Decision::SlowDown) - 0.15).abs() < 0.02);
        assert!((share(Decision::InternalError) - 0.10).abs() < 0.02);
        assert!((share(Decision::Reset) - 0.10).abs() < 0.02);
        assert!((share(Decision::LostResponse) - 0.05).abs() < 0.02);
        assert!((share(Decision::Stall) - 0.10).abs() < 0.02);
    }

    #[tokio::test]
    async fn forwards_many_requests_on_one_keep_alive_connection() {
        let (upstream, seen, _server) = echo_server().await;
        let proxy = FaultProxy::start(&format!("http://{upstream}"), FaultPlan::none(1))
            .await
            .unwrap();
        let mut conn = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
        for i in 0..50 {
            let body = "x".repeat(i * 1000);
            let (status, text) = call(&mut conn, &format!("/k{i}"), &body).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(text, format!("PUT /k{i} {}", i * 1000));
        }
        // A chunked answer is relayed whole, as it came.
        let (status, text) = call(&mut conn, "/chunked", "abc").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(text, "7\r\nPUT /ch\r\n7\r\nunked 3\r\n0\r\n\r\n");
        assert_eq!(seen.load(Ordering::Relaxed), 51);
        let counts = proxy.counts();
        assert_eq!((counts.requests, counts.forwarded), (51, 51));
        assert_eq!(counts.connections, 1);
        assert_eq!(counts.failures(), 0);
    }

    #[tokio::test]
    async fn injects_every_kind_and_counts_it() {
        let (upstream, seen, _server) = echo_server().await;
        let mut plan = FaultPlan::mixed(7, 0.6);
        plan.stall_for = Duration::from_millis(20);
        let proxy = FaultProxy::start(&format!("http://{upstream}"), plan.clone())
            .await
            .unwrap();
        let mut expected = Decider::new(plan);
        let mut conn = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
        let mut reconnects = 0;
        for i in 0..300 {
            let decision = expected.next();
            let got = call(&mut conn, &format!("/k{i}"), "body").await;
            match decision {
                Decision::Forward | Decision::Stall => {
                    assert_eq!(got.unwrap(), (200, format!("PUT /k{i} 4")));
                }
                Decision::SlowDown => {
                    let (status, body) = got.unwrap();
                    assert_eq!(status, 503);
                    assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
                }
                Decision::InternalError => {
                    let (status, body) = got.unwrap();
                    assert_eq!(status, 500);
                    assert!(body.contains("<Code>InternalError</Code>"), "{body}");
                }
                Decision::Reset | Decision::LostResponse => {
                    assert!(got.is_none(), "request {i}: {decision:?} answered");
                    conn = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
                    reconnects += 1;
                }
            }
        }
        let c = proxy.counts();
        assert_eq!(c.requests, 300);
        assert!(c.slow_down > 0 && c.internal_error > 0 && c.reset > 0);
        assert!(c.lost_response > 0 && c.stalled > 0);
        assert_eq!(c.reset + c.lost_response, reconnects);
        // The last reconnection may not be accepted yet.
        assert!(
            (reconnects..=reconnects + 1).contains(&c.connections),
            "{c}"
        );
        // Forwarded ones and lost responses reached the server.
        assert_eq!(
            seen.load(Ordering::Relaxed),
            c.forwarded + c.lost_response,
            "{c}"
        );
        assert_eq!(
            c.forwarded + c.slow_down + c.internal_error + c.reset + c.lost_response,
            300
        );
    }

    #[tokio::test]
    async fn an_outage_closes_new_and_kept_alive_connections() {
        let (upstream, seen, _server) = echo_server().await;
        let proxy = FaultProxy::start(&format!("http://{upstream}"), FaultPlan::none(1))
            .await
            .unwrap();
        let mut kept = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
        assert_eq!(call(&mut kept, "/a", "").await.unwrap().0, 200);
        proxy.outage(true);
        assert!(call(&mut kept, "/b", "").await.is_none());
        for _ in 0..3 {
            let mut fresh = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
            assert!(call(&mut fresh, "/c", "").await.is_none());
        }
        proxy.outage(false);
        let mut conn = Conn::new(TcpStream::connect(proxy.addr()).await.unwrap());
        assert_eq!(call(&mut conn, "/d", "").await.unwrap().0, 200);
        let c = proxy.counts();
        assert_eq!(c.refused, 4, "{c}");
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn dropping_the_proxy_stops_it() {
        let (upstream, _seen, _server) = echo_server().await;
        let proxy = FaultProxy::start(&format!("http://{upstream}"), FaultPlan::none(1))
            .await
            .unwrap();
        let addr = proxy.addr();
        let mut kept = Conn::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(call(&mut kept, "/a", "").await.unwrap().0, 200);
        drop(proxy);
        // The kept connection is closed and nobody listens any more.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let closed = call(&mut kept, "/b", "").await.is_none();
            let refused = TcpStream::connect(addr).await.is_err();
            if closed && refused {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy still serving"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
