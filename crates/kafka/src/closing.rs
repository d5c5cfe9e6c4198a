//! Closing a Kafka client when its component stops, without letting the
//! close hold the stop.
//!
//! A consumer's close makes a final commit, revokes its assignment and
//! leaves the group; librdkafka blocks meanwhile, for as long as the
//! session timeout (45 s by default) when no broker answers, and the
//! client's drop waits in a loop until the close is done. A shutdown that
//! waited on that could outlast an orchestrator's grace period, and a
//! component stopped for a reload would hold the reload. So the close runs
//! on a blocking thread and is waited for at most [`CLOSE_LIMIT`]; past
//! that it goes on alone (the process exits without it). Nothing is lost by
//! that: what was not committed is read again on the next start, and the
//! group notices the member gone within its session timeout.

use std::time::Duration;

/// Longest a component waits for its Kafka client to close.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(15);

/// Why a close was not seen to finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// It was still running after the limit; it goes on alone.
    #[error("still closing after {0:?}; left to finish alone")]
    TooSlow(Duration),
    /// It panicked.
    #[error("closing panicked: {0}")]
    Panicked(String),
}

/// Runs `close` (a final commit, and dropping the client) on a blocking
/// thread, and waits for it at most `limit`.
pub async fn off_runtime<T: Send + 'static>(
    limit: Duration,
    close: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CloseError> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(close)).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(CloseError::Panicked(e.to_string())),
        Err(_) => Err(CloseError::TooSlow(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_close_that_finishes_gives_its_result() {
        assert_eq!(off_runtime(CLOSE_LIMIT, || 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_close_that_never_finishes_is_left_after_the_limit() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let limit = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let outcome = off_runtime(limit, move || wait.recv().is_ok()).await;
        assert_eq!(outcome, Err(CloseError::TooSlow(limit)));
        assert!(started.elapsed() >= limit);
        // Let the abandoned close end, so the test's runtime can stop.
        release.send(()).unwrap();
    }
}
