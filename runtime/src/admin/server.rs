//! The admin endpoint's routes and bearer token, served by the shared
//! [`crate::http_server`] (which bounds connections at once and the time
//! to send a request head).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_server::{OnStop, Serving};

use super::State;
use super::exposition;

/// A response body: whole, or streamed (`/tap`).
pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// Serves `listener` until `stop` fires; requests in progress then end.
pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    stop: CancellationToken,
) {
    let serving = Serving {
        label: "admin".into(),
        max_connections,
        tls: None,
        on_stop: OnStop::Close,
    };
    crate::http_server::serve(listener, serving, stop, move |req| {
        let state = state.clone();
        async move { route(&state, req).await }
    })
    .await;
}

/// Answers one request.
async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let head = req.method() == Method::HEAD;
    let response = match path.as_str() {
        "/health" => json(
            StatusCode::OK,
            &state.view.load().probes.health(state.phase.get()),
        ),
        "/ready" => {
            let r = state
                .view
                .load()
                .probes
                .readiness(state.phase.get(), &state.metrics);
            let code = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &r)
        }
        "/metrics" | "/tap" if !authorized(state, &req) => {
            let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            r
        }
        "/metrics" => {
            let body = exposition::render(
                &state.metrics,
                &state.view.load().catalog,
                state.phase.get() == super::Phase::Running,
            );
            let mut r = Response::new(full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8"
                    .parse()
                    .expect("static"),
            );
            r
        }
        "/tap" => super::tap::respond(state, req.uri().query().unwrap_or("")),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /health, /ready, /metrics or /tap\n",
        ),
    };
    if head {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, full(Vec::new()));
    }
    response
}

/// Whether the request carries the token (or none is set).
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| token.matches(presented))
}

pub(super) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(super) fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

pub(super) fn json(code: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    r
}
