//! Retrying store operations: exponential backoff with jitter while the
//! pipeline runs, a bounded number of attempts once it is shutting down (as
//! told by the sink's [`Drain`]), and no retry for a permanent failure.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, warn};

use super::intake::Drain;
use crate::metrics::Counter;

/// Retry policy and its metrics.
pub struct Retrier {
    initial: Duration,
    max: Duration,
    shutdown_attempts: u32,
    retries: Counter,
    write_errors: Counter,
    disk_full: Counter,
    rng: u64,
    sink: String,
    /// Raised once the sink's input has ended.
    drain: Drain,
    /// The first permanent failure: the sink stops.
    fatal: Option<String>,
}

/// An error the retrier may see: transient unless it says otherwise.
pub trait Failure: std::fmt::Display {
    /// No retry can succeed: access denied, a missing bucket, a read-only
    /// file system. The sink stops (see [`Retrier::fatal`]).
    fn permanent(&self) -> bool {
        false
    }
}

impl Failure for String {}

/// A store operation's error, telling whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// What was being done and what went wrong.
    pub message: String,
    /// See [`Failure::permanent`].
    pub permanent: bool,
}

impl StoreError {
    /// The error of `what` on an object store.
    pub fn remote(what: String, e: &object_store::Error) -> Self {
        // A PUT answered "not found" names a bucket that does not exist.
        let permanent = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }
        );
        Self {
            message: format!("{what}: {e}"),
            permanent,
        }
    }

    /// The error of `what` on the local file system.
    pub fn local(what: String, e: &std::io::Error) -> Self {
        let permanent = matches!(
            e.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        );
        Self {
            message: format!("{what}: {e}"),
            permanent,
        }
    }
}

impl From<String> for StoreError {
    fn from(message: String) -> Self {
        Self {
            message,
            permanent: false,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure for StoreError {
    fn permanent(&self) -> bool {
        self.permanent
    }
}

/// Whether an error says the local disk (or the user's quota) is full.
pub fn is_disk_full(error: &str) -> bool {
    error.contains("os error 28") // ENOSPC
        || error.contains("os error 122") // EDQUOT
        || error.contains("No space left on device")
}

impl Retrier {
    /// A policy doubling from `initial` to `max`; `shutdown_attempts` attempts
    /// once `drain` is raised.
    pub fn new(
        initial: Duration,
        max: Duration,
        shutdown_attempts: u32,
        retries: Counter,
        write_errors: Counter,
        sink: String,
        drain: Drain,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self {
            initial,
            max,
            shutdown_attempts: shutdown_attempts.max(1),
            retries,
            write_errors,
            disk_full: Counter::default(),
            rng: seed | 1,
            sink,
            drain,
            fatal: None,
        }
    }

    /// Counts failures caused by a full local disk in `counter` too. The
    /// sink keeps retrying them like any other failure, so a full disk stops
    /// intake (the channel fills, the source stops reading) instead of
    /// dropping anything, and resumes by itself once space is freed.
    pub fn with_disk_full(mut self, counter: Counter) -> Self {
        self.disk_full = counter;
        self
    }

    /// The first permanent failure seen, if any: the sink must stop.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Runs `op` until it succeeds: forever while the pipeline runs (with
    /// exponential backoff and jitter), `shutdown_attempts` times once it is
    /// shutting down, and not again after a permanent failure (which is
    /// kept for [`Retrier::fatal`]). `op` gets the attempt number (0 first).
    pub async fn run<T, E, Fut>(&mut self, mut op: impl FnMut(u32) -> Fut) -> Result<T, String>
    where
        E: Failure,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(fatal) = &self.fatal {
            return Err(fatal.clone());
        }
        let mut backoff = self.initial;
        let mut attempt = 0u32;
        let mut attempts_in_shutdown = 0u32;
        loop {
            let closed_before = self.drain.raised();
            let result = op(attempt).await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) if error.permanent() => {
                    self.write_errors.fetch_add(1, Ordering::Relaxed);
                    let message = error.to_string();
                    error!(sink = %self.sink, "{message}: no retry can succeed; the sink stops");
                    self.fatal = Some(message.clone());
                    return Err(message);
                }
                Err(error) => error.to_string(),
            };
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            if is_disk_full(&error) {
                self.disk_full.fetch_add(1, Ordering::Relaxed);
                warn!(sink = %self.sink, "local disk full: intake is paused until space is freed; nothing is dropped");
            }
            if closed_before || self.drain.raised() {
                attempts_in_shutdown += 1;
                if attempts_in_shutdown >= self.shutdown_attempts {
                    return Err(format!("{error} (gave up after {} attempts)", attempt + 1));
                }
            }
            let delay = self.jitter(backoff);
            warn!(
                sink = %self.sink,
                attempt = attempt + 1,
                retry_in_ms = delay.as_millis() as u64,
                "{error}"
            );
            self.drain.wait(delay).await;
            self.retries.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            backoff = (backoff * 2).min(self.max);
        }
    }

    /// Between half and all of `backoff` ("equal jitter").
    fn jitter(&mut self, backoff: Duration) -> Duration {
        // xorshift64: plenty to spread retries of many agents.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = backoff / 2;
        let nanos = half.as_nanos().min(u64::MAX as u128) as u64;
        half + Duration::from_nanos(self.rng % nanos.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_batch::BatchBuf;

    use super::*;
    use crate::channels::memory::{Capacity, channel};
    use crate::event::Batch;
    use crate::sinks::object_store::intake::{Intake, Next};

    fn retrier_with(shutdown_attempts: u32, drain: Drain) -> (Retrier, Counter, Counter) {
        let retries = Counter::default();
        let errors = Counter::default();
        let r = Retrier::new(
            Duration::from_millis(1),
            Duration::from_millis(4),
            shutdown_attempts,
            retries.clone(),
            errors.clone(),
            "t".into(),
            drain,
        );
        (r, retries, errors)
    }

    fn retrier(shutdown_attempts: u32) -> (Retrier, Counter, Counter) {
        retrier_with(shutdown_attempts, Drain::new())
    }

    #[tokio::test]
    async fn a_full_disk_is_counted_and_retried() {
        let (r, retries, _errors) = retrier(1);
        let full = Counter::default();
        let mut r = r.with_disk_full(full.clone());
        let value = r
            .run(|attempt| async move {
                match attempt {
                    0 => Err("writing x: No space left on device (os error 28)".to_string()),
                    1 => Err("uploading: connection reset".to_string()),
                    _ => Ok(attempt),
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 2);
        assert_eq!(full.load(Ordering::Relaxed), 1);
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        assert!(!is_disk_full("permission denied (os error 13)"));
    }

    #[tokio::test]
    async fn retries_until_success_and_counts() {
        let (mut r, retries, errors) = retrier(1);
        let value = r
            .run(|attempt| async move {
                if attempt < 3 {
                    Err(format!("boom {attempt}"))
                } else {
                    Ok(attempt)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
        assert_eq!(retries.load(Ordering::Relaxed), 3);
        assert_eq!(errors.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn parks_a_batch_and_gives_up_after_shutdown() {
        let (tx, rx) = channel(Capacity {
            events: 10,
            bytes: 1000,
        });
        let (mut intake, drain) = Intake::spawn(rx);
        tx.send(Batch::unacked(BatchBuf::default())).await.unwrap();
        drop(tx);
        let (mut r, _, errors) = retrier_with(3, drain.clone());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let err = r
            .run(|_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("down".to_string()) }
            })
            .await
            .unwrap_err();
        assert!(err.contains("down") && err.contains("gave up"), "{err}");
        assert!(drain.raised());
        // The first failure saw the channel open; three more in shutdown.
        assert!(calls.load(Ordering::Relaxed) >= 3);
        assert_eq!(
            errors.load(Ordering::Relaxed),
            u64::from(calls.load(Ordering::Relaxed))
        );
        assert!(matches!(intake.next(None).await, Next::Batch(_)));
        assert!(matches!(intake.next(None).await, Next::Closed));
    }

    #[test]
    fn jitter_stays_within_half_and_full_backoff() {
        let (mut r, _, _) = retrier(1);
        for _ in 0..1000 {
            let d = r.jitter(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }
}
