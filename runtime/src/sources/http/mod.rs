//! The `http` source: clients POST events, like Flume's HTTP source; a
//! request is answered `200` only once every event of it is accepted by
//! the source's channels (durably, with a `file` channel).
//!
//! ```toml
//! [sources.intake]
//! type = "http"
//! listen = "127.0.0.1:8080"     # default; another address needs a token
//! path = "/events"              # default "/"
//! format = "auto"               # or "ndjson", "json" (Flume's handler), "lines"
//! max_body_bytes = "10MiB"
//! token_env = "INTAKE_TOKEN"    # or token_file: `Authorization: Bearer ...`
//! tls_cert = "/etc/sluice/intake.crt"   # PEM, with tls_key
//! tls_key = "/etc/sluice/intake.key"
//! channels = ["edge"]           # a file channel: see below
//! ```
//!
//! **Bodies** ([`decode`]): `ndjson` takes one JSON value per line (each
//! line, as sent, becomes an event body); `json` is Flume's JSON handler,
//! an array of `{"headers": {"k": "v"}, "body": "text"}`; `lines` makes
//! each line an event. `auto` picks by `Content-Type`
//! (`application/json` → `json`, `application/x-ndjson` → `ndjson`, else
//! `lines`). Topic = the source's name, partition 0, offsets ascending
//! across restarts, timestamp = when received.
//!
//! **Answers**: `200` with `{"accepted": n}` once the request's batch is
//! delivered to every channel it goes to; `400` with the reason for a body
//! that does not parse (nothing of it is taken); `401` without the token;
//! `404` for another path; `405` for a method other than POST; `413` over
//! `max_body_bytes`; `503` with `Retry-After` when the pipeline has had no
//! room for `backpressure_wait` (nothing taken: the client sends again);
//! `500` if a channel refused the batch (nothing may be assumed: send
//! again).
//!
//! A request is one batch: its events are delivered together or not at
//! all. An HTTP client's retry after a lost answer may repeat a request:
//! the source cannot tell (at-least-once). Use a `file` channel behind it:
//! with a memory channel, events answered `200` are lost if Sluice dies
//! before the sink wrote them.
//!
//! **Bounds**: `max_connections` served at once (more wait to be
//! accepted, in an accept queue as long as the kernel allows: Linux's
//! `net.core.somaxconn`), 10 s for a TLS handshake and for a request head,
//! `max_body_bytes` per body. The server is `http_server`, shared with the
//! admin endpoint.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`,
//! `.undelivered_batches`, `.requests`, `.requests_rejected` (every 4xx),
//! `.requests_throttled` (503), histogram `.delivery_seconds`.

pub mod decode;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::info;

use self::decode::Format;
use super::batcher;
use super::{SourceContext, SourceError};
use crate::event::{Ack, Batch, BatchBuf, NewEvent};
use crate::http_server::{self, OnStop, Serving};
use crate::keys::Token;
use crate::metrics::{Counter, DELIVERY_BUCKETS, Histogram};
use crate::units::{ByteSize, HumanDuration};

/// `[sources.<name>]` with `type = "http"`; see the module docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address to listen on. Default `"127.0.0.1:8080"`; an address other
    /// than loopback needs a token.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The path events are POSTed to. Default `"/"`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How bodies are read: `"auto"` (default), `"ndjson"`, `"json"`, `"lines"`.
    #[serde(default)]
    pub format: Format,
    /// Largest request body; larger ones are answered 413. Default `"10MiB"`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// How long a request waits for room in the pipeline before it is
    /// answered 503. Default `"1s"`.
    #[serde(default = "default_backpressure_wait")]
    pub backpressure_wait: HumanDuration,
    /// The `Retry-After` of a 503, in whole seconds. Default `"1s"`.
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    /// Most connections served at once. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A file holding the bearer token clients must send (relative to the
    /// working directory).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The token, read when the configuration is loaded.
    #[serde(skip)]
    token: Option<Token>,
}

impl PartialEq for HttpSourceConfig {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_path() -> String {
    "/".into()
}

fn default_max_body() -> ByteSize {
    ByteSize(10 << 20)
}

fn default_backpressure_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_retry_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_max_connections() -> usize {
    256
}

impl HttpSourceConfig {
    /// Checks the keys and reads the token; on error, the key and what to do.
    pub fn validate(&mut self) -> Result<(), (&'static str, String)> {
        let addr: SocketAddr = self.listen.parse().map_err(|e| {
            (
                "listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080: {e}",
                    self.listen
                ),
            )
        })?;
        if !self.path.starts_with('/') {
            return Err(("path", "must start with `/`".into()));
        }
        if self.max_body_bytes.get() == 0 || self.max_body_bytes.get() > 1 << 30 {
            return Err(("max_body_bytes", "must be from 1 byte to 1GiB".into()));
        }
        if self.max_connections == 0 || self.max_connections > 100_000 {
            return Err(("max_connections", "must be from 1 to 100000".into()));
        }
        if self.retry_after.get().as_secs() == 0 {
            return Err(("retry_after", "must be at least 1s".into()));
        }
        self.token = match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err((
                    "token_env",
                    "give `token_file` or `token_env`, not both".into(),
                ));
            }
            (Some(file), None) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| ("token_file", format!("reading {}: {e}", file.display())))?;
                Some(
                    Token::new(&text)
                        .ok_or(("token_file", format!("{} is empty", file.display())))?,
                )
            }
            (None, Some(var)) => {
                Some(Token::new(&std::env::var(var).unwrap_or_default()).ok_or((
                    "token_env",
                    format!("environment variable `{var}` is unset or empty"),
                ))?)
            }
            (None, None) => None,
        };
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err((
                "listen",
                format!(
                    "{addr} is reachable from other hosts: set `token_file` or `token_env` too"
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(("tls_key", "`tls_cert` needs `tls_key`".into())),
            (None, Some(_)) => return Err(("tls_cert", "`tls_key` needs `tls_cert`".into())),
            (Some(cert), Some(key)) => {
                tls_acceptor(cert, key).map_err(|e| ("tls_cert", e.to_string()))?;
            }
            (None, None) => {}
        }
        Ok(())
    }
}

/// Why the PEM files of `tls_cert`/`tls_key` cannot serve HTTPS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        what: String,
    },
    /// rustls refuses the pair (a key not matching the certificate, ...).
    #[error("{cert} and {key}: {source}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's error.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
}

/// A TLS acceptor for the PEM files.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem = |path: &std::path::Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let certs = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(cert, "holds no PEM certificate".into()));
    }
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| pem(key, e.to_string()))?
        .ok_or_else(|| pem(key, "holds no PEM private key".into()))?;
    let refused = |source| TlsError::Refused {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(refused)?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(refused)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `type = "http"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "http",
    load: |table| {
        let mut config: HttpSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(Arc::new(config))
    },
};

impl super::Source for HttpSourceConfig {
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

/// What every request handler shares.
struct Intake {
    config: HttpSourceConfig,
    name: String,
    output: mpsc::Sender<Batch>,
    next_offset: AtomicI64,
    next_id: std::sync::atomic::AtomicU64,
    events: Counter,
    bytes: Counter,
    batches: Counter,
    undelivered: Counter,
    requests: Counter,
    rejected: Counter,
    throttled: Counter,
    delivery: Arc<Histogram>,
}

/// Serves until shutdown; `bound` learns the listening address (port 0).
pub(crate) async fn run(
    config: HttpSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), SourceError> {
    let err = |message: String| SourceError {
        source_name: ctx.name.clone(),
        message,
    };
    let addr: SocketAddr = config
        .listen
        .parse()
        .map_err(|e| err(format!("listen `{}`: {e}", config.listen)))?;
    let listener = crate::listener::listen(addr)
        .map_err(|e| err(format!("listening on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| err(e.to_string()))?;
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(|e| err(e.to_string()))?),
        _ => None,
    };
    info!(source = %ctx.name, %addr, tls = tls.is_some(), path = %config.path, "http source listening");
    let intake = Arc::new(Intake {
        name: ctx.name.clone(),
        output,
        next_offset: AtomicI64::new(batcher::now_us()),
        next_id: Default::default(),
        events: ctx.counter("events"),
        bytes: ctx.counter("bytes"),
        batches: ctx.counter("batches"),
        undelivered: ctx.counter("undelivered_batches"),
        requests: ctx.counter("requests"),
        rejected: ctx.counter("requests_rejected"),
        throttled: ctx.counter("requests_throttled"),
        delivery: ctx.histogram("delivery_seconds", DELIVERY_BUCKETS),
        config,
    });
    let serving = Serving {
        label: format!("source {}", ctx.name),
        max_connections: intake.config.max_connections,
        tls,
        // Requests in progress are answered; their batches are delivered first.
        on_stop: OnStop::Answer,
    };
    http_server::serve(listener, serving, ctx.shutdown.clone(), move |req| {
        let intake = intake.clone();
        async move { handle(&intake, req).await }
    })
    .await;
    info!(source = %ctx.name, "http source stopped");
    Ok(())
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers one request; see the module docs.
async fn handle(intake: &Intake, req: Request<Incoming>) -> Response<Full<Bytes>> {
    intake.requests.fetch_add(1, Ordering::Relaxed);
    let config = &intake.config;
    let reject = |status: StatusCode, why: String| {
        intake.rejected.fetch_add(1, Ordering::Relaxed);
        answer(status, why + "\n")
    };
    if req.uri().path() != config.path {
        return reject(
            StatusCode::NOT_FOUND,
            format!("events go to {}", config.path),
        );
    }
    if req.method() != Method::POST {
        return reject(StatusCode::METHOD_NOT_ALLOWED, "only POST".into());
    }
    if let Some(token) = &config.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|p| token.matches(p)) {
            return reject(StatusCode::UNAUTHORIZED, "a bearer token is needed".into());
        }
    }
    let limit = config.max_body_bytes.get() as usize;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {limit} bytes"),
        );
    }
    let format = config.format.resolve(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit} bytes"),
            );
        }
        Err(e) => return reject(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let events = match decode::decode(format, &body) {
        Ok(events) => events,
        Err(why) => return reject(StatusCode::BAD_REQUEST, why.to_string()),
    };
    if events.is_empty() {
        return answer(StatusCode::OK, "{\"accepted\":0}\n".into());
    }
    let received = std::time::Instant::now();
    let now = batcher::now_ms();
    let first = intake
        .next_offset
        .fetch_add(events.len() as i64, Ordering::Relaxed);
    let mut buf = BatchBuf::default();
    let mut bytes = 0u64;
    for (i, e) in events.iter().enumerate() {
        let headers: Vec<(&str, &[u8])> = e
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        bytes += e.body.len() as u64;
        buf.push(&NewEvent {
            key: None,
            body: &e.body,
            headers: &headers,
            topic: &intake.name,
            partition: 0,
            offset: first + i as i64,
            timestamp: now,
        });
    }
    // Room in the pipeline, or 503: nothing is taken then.
    let permit =
        match tokio::time::timeout(config.backpressure_wait.get(), intake.output.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
            Err(_) => {
                intake.throttled.fetch_add(1, Ordering::Relaxed);
                let mut response = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pipeline is full; send again later\n".into(),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(config.retry_after.get().as_secs()),
                );
                return response;
            }
        };
    let (tx, mut report) = mpsc::unbounded_channel();
    let id = intake.next_id.fetch_add(1, Ordering::Relaxed);
    let ack = Ack::new(id, tx);
    ack.time_delivery(received, intake.delivery.clone());
    let n = events.len();
    permit.send(Batch::new(buf, ack));
    intake.batches.fetch_add(1, Ordering::Relaxed);
    intake.events.fetch_add(n as u64, Ordering::Relaxed);
    intake.bytes.fetch_add(bytes, Ordering::Relaxed);
    match report.recv().await {
        Some(r) if r.delivered => answer(StatusCode::OK, format!("{{\"accepted\":{n}}}\n")),
        _ => {
            intake.undelivered.fetch_add(1, Ordering::Relaxed);
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the events could not be delivered; send them again\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
