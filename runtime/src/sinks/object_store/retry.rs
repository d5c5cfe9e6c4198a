//! Retrying store operations: exponential backoff with jitter while the
//! pipeline runs, a bounded number of attempts once it is shutting down (as
//! told by the sink's [`Drain`]), and no retry for a permanent failure.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, warn};

use super::error::StoreError;
use super::intake::Drain;
use crate::metrics::{Counter, Gauge};

/// Retry policy and its metrics.
pub(crate) struct Retrier {
    initial: Duration,
    max: Duration,
    shutdown_attempts: u32,
    retries: Counter,
    write_errors: Counter,
    disk_full: Counter,
    /// 1 while the last attempt failed (the sink cannot write), 0 otherwise.
    failing: Gauge,
    rng: u64,
    sink: String,
    /// Raised once the sink's input has ended.
    drain: Drain,
    /// The first permanent failure: the sink stops.
    fatal: Option<StoreError>,
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
            failing: Gauge::default(),
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
    pub(crate) fn with_disk_full(mut self, counter: Counter) -> Self {
        self.disk_full = counter;
        self
    }

    /// Reports in `gauge` whether the sink is failing: 1 from a failed
    /// attempt until one succeeds (the admin endpoint's readiness).
    pub(crate) fn with_failing(mut self, gauge: Gauge) -> Self {
        self.failing = gauge;
        self
    }

    /// The first permanent failure seen, if any: the sink must stop.
    pub fn fatal(&self) -> Option<&StoreError> {
        self.fatal.as_ref()
    }

    /// Runs `op` until it succeeds: forever while the pipeline runs (with
    /// exponential backoff and jitter), `shutdown_attempts` times once it is
    /// shutting down, and not again after a permanent failure (which is
    /// kept for [`Retrier::fatal`]). `op` gets the attempt number (0 first).
    pub async fn run<T, E, Fut>(&mut self, mut op: impl FnMut(u32) -> Fut) -> Result<T, StoreError>
    where
        E: Into<StoreError>,
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
            let error = match op(attempt).await {
                Ok(value) => {
                    self.failing.store(0, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(error) => error.into(),
            };
            self.failing.store(1, Ordering::Relaxed);
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            if error.is_permanent() {
                error!(sink = %self.sink, "{error}: no retry can succeed; the sink stops");
                self.fatal = Some(error.clone());
                return Err(error);
            }
            if error.disk_full {
                self.disk_full.fetch_add(1, Ordering::Relaxed);
                warn!(sink = %self.sink, "local disk full: intake is paused until space is freed; nothing is dropped");
            }
            if closed_before || self.drain.raised() {
                attempts_in_shutdown += 1;
                if attempts_in_shutdown >= self.shutdown_attempts {
                    let gave_up = format!("gave up after {} attempts", attempt + 1);
                    return Err(StoreError {
                        message: format!("{} ({gave_up})", error.message),
                        ..error
                    });
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
                    0 => Err(StoreError::local(
                        "writing x",
                        &std::io::Error::from_raw_os_error(28),
                    )),
                    1 => Err(StoreError::transient("uploading: connection reset")),
                    _ => Ok(attempt),
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 2);
        assert_eq!(full.load(Ordering::Relaxed), 1);
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        let denied = StoreError::local("writing x", &std::io::Error::from_raw_os_error(13));
        assert!(!denied.disk_full && denied.is_permanent());
    }

    #[tokio::test]
    async fn retries_until_success_and_counts() {
        let (mut r, retries, errors) = retrier(1);
        let value = r
            .run(|attempt| async move {
                if attempt < 3 {
                    Err(StoreError::transient(format!("boom {attempt}")))
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
                async { Err::<(), _>(StoreError::transient("down")) }
            })
            .await
            .unwrap_err();
        assert!(
            err.message.contains("down") && err.message.contains("gave up"),
            "{err}"
        );
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
