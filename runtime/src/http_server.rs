//! The HTTP/1.1 server under the admin endpoint and the `http` source: one
//! accept loop with a bound on the connections served at once, 10 s for a
//! TLS handshake and for a request head, and an orderly stop.
//!
//! A connection past the bound is not refused: it waits in the kernel's
//! accept queue until a slot frees, as a busy server's clients expect,
//! which is why servers bind with [`crate::listener::listen`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Longest a client may take for a TLS handshake or a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What becomes of requests in progress when the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Each is answered first (the `http` source: its batch may be on its
    /// way to a channel, and the client should learn how that went).
    Answer,
    /// They are closed at once (the admin endpoint: a `/tap` stream never
    /// ends by itself).
    Close,
}

/// How [`serve`] serves.
pub(crate) struct Serving {
    /// What logs call the server (`admin`, `source intake`).
    pub label: String,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Serve HTTPS with this.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether requests in progress are answered when it stops.
    pub on_stop: OnStop,
}

/// Serves `listener` with `handle` until `stop` fires; with
/// [`OnStop::Answer`], returns once every request in progress is answered.
pub(crate) async fn serve<H, F, B>(
    listener: TcpListener,
    serving: Serving,
    stop: CancellationToken,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let serving = Arc::new(serving);
    let slots = Arc::new(Semaphore::new(serving.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, mostly: wait for some to close.
                    warn!(server = %serving.label, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (serving, stop, handle) = (serving.clone(), stop.clone(), handle.clone());
        connections.spawn(async move {
            let _permit = permit;
            let Some(tls) = &serving.tls else {
                return connection(stream, peer, &serving, stop, handle).await;
            };
            match tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => connection(stream, peer, &serving, stop, handle).await,
                Ok(Err(e)) => {
                    debug!(server = %serving.label, %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => debug!(server = %serving.label, %peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    connections.close();
    if serving.on_stop == OnStop::Answer {
        connections.wait().await;
    }
}

/// Serves one connection until it closes, or until `stop`.
async fn connection<S, H, F, B>(
    stream: S,
    peer: SocketAddr,
    serving: &Serving,
    stop: CancellationToken,
    handle: H,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = service_fn(move |req| {
        let answer = handle(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => if let Err(e) = result {
            debug!(server = %serving.label, %peer, error = %e, "connection ended");
        },
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if serving.on_stop == OnStop::Answer {
                let _ = conn.await;
            }
        }
    }
}
