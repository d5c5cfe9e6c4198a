//! `GET /tap?point=P&sample=R&limit=N&seconds=S`: a live NDJSON stream of
//! the events passing a point (see [`crate::tap`]), ended after `limit`
//! events (default 100, at most 100 000) or `seconds` (default 60, at most
//! 3600), or when the client goes away. `sample` (default 1) is the
//! fraction of events copied. `point` is `source:<name>`, `plugin:<name>`,
//! `channel:<name>`, or `sink:<name>` (its channel: the sink's input).
//! Without `point`, the answer lists the points.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::State;
use super::server::{Body, json};
use crate::tap::TapRequest;

/// Lines queued per subscriber before lines are skipped for it.
const QUEUE: usize = 4096;

/// The query of a `/tap` request.
#[derive(Debug, PartialEq)]
struct Query {
    point: Option<String>,
    sample: f64,
    limit: u64,
    seconds: u64,
}

fn parse(query: &str) -> Result<Query, String> {
    let mut q = Query {
        point: None,
        sample: 1.0,
        limit: 100,
        seconds: 60,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("`{k}`: bad percent-encoding"))?;
        match k {
            "point" => q.point = Some(v),
            "sample" => {
                q.sample = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
                    .ok_or("`sample` must be a number in (0, 1]")?
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or("`limit` must be from 1 to 100000")?
            }
            "seconds" => {
                q.seconds = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=3600).contains(n))
                    .ok_or("`seconds` must be from 1 to 3600")?
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; expected point, sample, limit, seconds"
                ));
            }
        }
    }
    Ok(q)
}

fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Answers `/tap`.
pub(super) fn respond(state: &State, query: &str) -> Response<Body> {
    let q = match parse(query) {
        Ok(q) => q,
        Err(message) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": message }),
            );
        }
    };
    let points = state.metrics.taps().names();
    let Some(point) = q.point else {
        return json(StatusCode::OK, &serde_json::json!({ "points": points }));
    };
    let resolved = match point.strip_prefix("sink:") {
        Some(sink) => match state.view.load().sink_channels.get(sink) {
            Some(channel) => format!("channel:{channel}"),
            None => point.clone(),
        },
        None => point.clone(),
    };
    let request = TapRequest {
        sample: q.sample,
        limit: q.limit,
        queue: QUEUE,
    };
    let Some(mut rx) = state.metrics.taps().subscribe(&resolved, request) else {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no tap point `{point}`"), "points": points }),
        );
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.seconds);
    let (tx, frames) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    // Forwards the tap's lines until its limit, the deadline, or the
    // client's going away; dropping `rx` then ends the subscription.
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                _ = tokio::time::sleep_until(deadline) => None,
                _ = tx.closed() => None,
            };
            let Some(line) = line else { break };
            if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream(frames)).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-ndjson".parse().expect("static"),
    );
    r
}

/// A receiver as a `Stream`, without another dependency.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_and_checked() {
        let q = parse("point=plugin%3Amask&sample=0.5&limit=7&seconds=3").unwrap();
        assert_eq!(
            q,
            Query {
                point: Some("plugin:mask".into()),
                sample: 0.5,
                limit: 7,
                seconds: 3
            }
        );
        assert_eq!(parse("").unwrap().limit, 100);
        assert!(parse("sample=0").unwrap_err().contains("sample"));
        assert!(parse("sample=1.5").is_err());
        assert!(parse("limit=0").is_err());
        assert!(parse("seconds=99999").is_err());
        assert!(
            parse("colour=red")
                .unwrap_err()
                .contains("unknown parameter")
        );
        assert!(parse("point=%zz").is_err());
    }
}
