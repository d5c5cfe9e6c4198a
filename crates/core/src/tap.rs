//! Live copies of events at named points of the running pipelines, for
//! `sluice tap` (through the admin endpoint).
//!
//! A point is `source:<name>` (what a source read, before its plugins),
//! `plugin:<name>` (what a plugin kept or produced, passed on to the next
//! stage), or `channel:<name>` (what is sent into a channel: its sinks'
//! input). Pipelines [`offer`](TapPoint::offer) every batch at every point
//! they pass; with nobody tapping, that is one relaxed atomic load. A
//! subscriber gets NDJSON lines through a bounded queue: when it cannot keep
//! up, lines are skipped for it (and counted in its last line), never
//! waited for. A tap only copies: nothing it does can hold up, lose or
//! change an event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sluice_batch::{BatchBuf, EventRef};
use tokio::sync::mpsc;

/// The tap points of a process, by name.
#[derive(Debug, Default)]
pub struct Taps {
    points: Mutex<BTreeMap<String, Arc<TapPoint>>>,
}

/// One place events can be watched at.
#[derive(Debug, Default)]
pub struct TapPoint {
    name: String,
    /// Subscribers now; the fast path reads only this.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<String>,
    /// Fraction of events wanted, (0, 1].
    rate: f64,
    /// Accumulated fraction: an event is sent each time it reaches 1.
    credit: f64,
    /// Events still to send.
    remaining: u64,
    /// Lines skipped because the queue was full.
    skipped: u64,
}

/// What a subscriber asks for.
#[derive(Debug, Clone, Copy)]
pub struct TapRequest {
    /// Fraction of the events to copy, in (0, 1]: 0.01 is every hundredth.
    pub sample: f64,
    /// Events to copy before the tap ends.
    pub limit: u64,
    /// Lines queued for the subscriber at most.
    pub queue: usize,
}

/// One tapped event, as an NDJSON line.
#[derive(Debug, Serialize)]
struct Line<'a> {
    point: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    headers: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl Taps {
    /// The point called `name`, created on first use.
    pub fn point(&self, name: &str) -> Arc<TapPoint> {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(TapPoint {
                    name: name.to_owned(),
                    ..TapPoint::default()
                })
            })
            .clone()
    }

    /// Every point the pipelines pass, by name.
    pub fn names(&self) -> Vec<String> {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.keys().cloned().collect()
    }

    /// Subscribes to an existing point; `None` if no pipeline passes it.
    pub fn subscribe(&self, name: &str, request: TapRequest) -> Option<mpsc::Receiver<String>> {
        let point = {
            let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
            points.get(name)?.clone()
        };
        let (tx, rx) = mpsc::channel(request.queue.max(1));
        let mut subs = point.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(Subscriber {
            tx,
            rate: request.sample.clamp(f64::MIN_POSITIVE, 1.0),
            credit: 0.0,
            remaining: request.limit,
            skipped: 0,
        });
        point.active.store(subs.len(), Ordering::Release);
        Some(rx)
    }
}

impl TapPoint {
    /// Offers a batch passing this point to its subscribers, if any.
    #[inline]
    pub fn offer(&self, batch: &BatchBuf) {
        if self.active.load(Ordering::Relaxed) == 0 || batch.is_empty() {
            return;
        }
        self.offer_to_subscribers(batch);
    }

    #[cold]
    fn offer_to_subscribers(&self, batch: &BatchBuf) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for sub in subs.iter_mut() {
            for event in batch.iter() {
                if sub.remaining == 0 {
                    break;
                }
                sub.credit += sub.rate;
                if sub.credit < 1.0 {
                    continue;
                }
                sub.credit -= 1.0;
                match sub.tx.try_send(render(&self.name, &event)) {
                    Ok(()) => sub.remaining -= 1,
                    Err(mpsc::error::TrySendError::Full(_)) => sub.skipped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => sub.remaining = 0,
                }
            }
        }
        subs.retain(|s| {
            if s.remaining > 0 && !s.tx.is_closed() {
                return true;
            }
            if s.skipped > 0 {
                let _ = s.tx.try_send(format!(
                    "{{\"point\":{},\"skipped\":{}}}\n",
                    serde_json::to_string(&self.name).unwrap_or_default(),
                    s.skipped
                ));
            }
            false
        });
        self.active.store(subs.len(), Ordering::Release);
    }
}

/// One event as a JSON line: text as strings, other bytes as base64.
fn render(point: &str, e: &EventRef<'_>) -> String {
    let text_or_base64 = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(base64(b))),
    };
    let (key, key_base64) = e.key().map_or((None, None), text_or_base64);
    let body = e.body();
    let (body, body_base64) = match std::str::from_utf8(body) {
        Ok(s) => (Some(s), None),
        Err(_) => (None, Some(base64(body))),
    };
    let line = Line {
        point,
        topic: e.topic(),
        partition: e.partition(),
        offset: e.offset(),
        timestamp: e.timestamp(),
        key,
        key_base64,
        headers: e
            .headers()
            .map_while(Result::ok)
            .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
            .collect(),
        body,
        body_base64,
    };
    let mut out = serde_json::to_string(&line).unwrap_or_default();
    out.push('\n');
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_batch::NewEvent;

    fn batch(n: usize) -> BatchBuf {
        let mut b = BatchBuf::default();
        for i in 0..n {
            let body = format!("event-{i}");
            b.push(&NewEvent {
                key: Some(b"\xff\x00"),
                body: body.as_bytes(),
                headers: &[("h", b"v")],
                topic: "t",
                partition: 1,
                offset: i as i64,
                timestamp: 7,
            });
        }
        b
    }

    #[test]
    fn nobody_tapping_costs_nothing_and_copies_nothing() {
        let taps = Taps::default();
        let p = taps.point("source:in");
        p.offer(&batch(3));
        assert!(
            taps.subscribe(
                "source:nope",
                TapRequest {
                    sample: 1.0,
                    limit: 1,
                    queue: 1
                }
            )
            .is_none()
        );
    }

    #[test]
    fn a_subscriber_gets_a_sample_up_to_its_limit() {
        let taps = Taps::default();
        let p = taps.point("plugin:mask");
        let mut rx = taps
            .subscribe(
                "plugin:mask",
                TapRequest {
                    sample: 0.5,
                    limit: 3,
                    queue: 16,
                },
            )
            .unwrap();
        p.offer(&batch(10));
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        let offsets: Vec<i64> = lines
            .iter()
            .map(|l| l["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(offsets, vec![1, 3, 5], "every second event");
        assert_eq!(lines[0]["point"], "plugin:mask");
        assert_eq!(lines[0]["body"], "event-1");
        assert_eq!(lines[0]["key_base64"], "/wA=");
        assert_eq!(lines[0]["headers"]["h"], "v");
        assert_eq!(p.active.load(Ordering::Relaxed), 0, "done at its limit");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_slow_subscriber_is_skipped_not_waited_for() {
        let taps = Taps::default();
        let p = taps.point("channel:lake");
        let mut rx = taps
            .subscribe(
                "channel:lake",
                TapRequest {
                    sample: 1.0,
                    limit: 100,
                    queue: 2,
                },
            )
            .unwrap();
        p.offer(&batch(5));
        assert!(rx.try_recv().unwrap().contains("\"offset\":0"));
        assert!(rx.try_recv().unwrap().contains("\"offset\":1"));
        assert!(rx.try_recv().is_err(), "three were skipped");
        drop(rx);
        p.offer(&batch(1));
        assert_eq!(
            p.active.load(Ordering::Relaxed),
            0,
            "a gone subscriber is removed"
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
