//! What a plugin may write to the host's log: a rate per plugin and a size
//! per line, with control characters escaped.
//!
//! A plugin logs through `host.log` and through its stdout and stderr
//! (captured line by line). Unchecked, one plugin could fill the disk with
//! log lines, drown every other team's, or forge lines: a message holding a
//! newline followed by a timestamp and `ERROR` reads like a line of the
//! host's own. So every line a plugin writes, whichever way:
//!
//! - passes a token bucket per plugin (all its instances and versions
//!   together): a burst of [`LOG_BURST`] lines, then [`LOG_LINES_PER_SECOND`]
//!   lines per second. Lines over the rate are dropped and counted in
//!   `plugin.<name>.log_suppressed`; the next line that passes is preceded
//!   by a warning saying how many were suppressed;
//! - is cut to [`MAX_LOG_MESSAGE`] bytes (the cut is said, with its size);
//! - has its control characters escaped (`\n`, `\r`, `\t`, others as
//!   `\u{1b}`), so it stays one line of the log whatever it holds.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_core::metrics::Counter;

/// Lines a plugin may log at once before the rate applies.
pub const LOG_BURST: u32 = 200;
/// Lines per second a plugin may log once its burst is spent.
pub const LOG_LINES_PER_SECOND: u32 = 50;
/// Longest message kept from one plugin log line, in bytes.
pub const MAX_LOG_MESSAGE: usize = 2048;

/// The log budget of one plugin, shared by its instances (clones share it).
#[derive(Clone)]
pub struct LogGate {
    inner: Arc<Inner>,
}

struct Inner {
    suppressed: Counter,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last one that passed.
    pending_summary: u64,
}

impl std::fmt::Debug for LogGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGate")
            .field("suppressed", &self.suppressed())
            .finish()
    }
}

impl Default for LogGate {
    fn default() -> Self {
        Self::new(Arc::new(AtomicU64::new(0)))
    }
}

/// Whether a line may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Write it; `suppressed_before` lines were dropped since the last one
    /// written (say so first when it is not 0).
    Yes { suppressed_before: u64 },
    /// Drop it (counted).
    No,
}

impl LogGate {
    /// A full budget; dropped lines are counted in `suppressed`.
    pub fn new(suppressed: Counter) -> Self {
        Self {
            inner: Arc::new(Inner {
                suppressed,
                bucket: Mutex::new(Bucket {
                    tokens: LOG_BURST as f64,
                    refilled: Instant::now(),
                    pending_summary: 0,
                }),
            }),
        }
    }

    /// Lines dropped so far.
    pub fn suppressed(&self) -> u64 {
        self.inner.suppressed.load(Ordering::Relaxed)
    }

    /// Takes one line's token, if there is one.
    pub(crate) fn admit(&self) -> Admit {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admit {
        let mut bucket = self.inner.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = now.max(bucket.refilled);
        let refill =
            now.duration_since(bucket.refilled).as_secs_f64() * LOG_LINES_PER_SECOND as f64;
        bucket.tokens = (bucket.tokens + refill).min(LOG_BURST as f64);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admit::Yes {
                suppressed_before: std::mem::take(&mut bucket.pending_summary),
            }
        } else {
            bucket.pending_summary += 1;
            self.inner.suppressed.fetch_add(1, Ordering::Relaxed);
            Admit::No
        }
    }
}

/// `message` as one bounded log line: control characters escaped, cut to
/// [`MAX_LOG_MESSAGE`] bytes (at a character boundary) with the cut said.
pub(crate) fn clean(message: &str) -> Cow<'_, str> {
    let needs_escape = message.chars().any(char::is_control);
    if !needs_escape && message.len() <= MAX_LOG_MESSAGE {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(MAX_LOG_MESSAGE) + 32);
    let mut taken = 0;
    for c in message.chars() {
        if out.len() >= MAX_LOG_MESSAGE {
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        taken += c.len_utf8();
    }
    if taken < message.len() {
        let _ = write!(out, "… ({} more bytes cut)", message.len() - taken);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        let forged = "ok\n2026-12-03T00:00:00Z ERROR sluice: broker lost\r\x1b[31m";
        let line = clean(forged);
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
        assert_eq!(
            line,
            "ok\\n2026-12-03T00:00:00Z ERROR sluice: broker lost\\r\\u{1b}[31m"
        );
        assert!(matches!(clean("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn long_messages_are_cut_and_say_so() {
        let long = "é".repeat(MAX_LOG_MESSAGE);
        let line = clean(&long);
        assert!(line.len() < MAX_LOG_MESSAGE + 64, "{}", line.len());
        assert!(line.ends_with(&format!(
            "… ({} more bytes cut)",
            long.len() - MAX_LOG_MESSAGE
        )));
    }

    #[test]
    fn a_burst_then_the_rate_and_every_drop_counted() {
        let gate = LogGate::default();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert!(matches!(gate.admit_at(t0), Admit::Yes { .. }));
        }
        for _ in 0..1000 {
            assert_eq!(gate.admit_at(t0), Admit::No);
        }
        assert_eq!(gate.suppressed(), 1000);
        // A clone (another instance of the plugin, or the one recreated
        // after a trap) shares the budget: one second later it has the
        // rate's lines, the first preceded by the count of dropped ones.
        let clone = gate.clone();
        let t1 = t0 + std::time::Duration::from_secs(1);
        assert_eq!(
            clone.admit_at(t1),
            Admit::Yes {
                suppressed_before: 1000
            }
        );
        for _ in 1..LOG_LINES_PER_SECOND {
            assert_eq!(
                clone.admit_at(t1),
                Admit::Yes {
                    suppressed_before: 0
                }
            );
        }
        assert_eq!(gate.admit_at(t1), Admit::No);
        assert_eq!(gate.suppressed(), 1001);
    }
}
