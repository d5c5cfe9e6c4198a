//! Bounded waits for the runtime's unit tests: poll for a condition the
//! code under test makes true, instead of sleeping a fixed time.

use std::time::Duration;

/// Polls `cond` every 5 ms until it holds; panics naming `what` once
/// `limit` has passed.
pub(crate) async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(limit, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"));
}
