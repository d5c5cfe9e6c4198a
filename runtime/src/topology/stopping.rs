//! Waiting for a component to stop at shutdown, and saying so while it
//! takes long.
//!
//! A graceful stop waits for each source, processor and sink in turn, and
//! some waits are long by design (a source waits until its sinks hold what
//! it read; a file sink until its roll). An agent that does not exit after
//! SIGTERM must say what it is waiting for: after [`PATIENCE`], and every
//! [`PATIENCE`] after that, the component still stopping is logged with how
//! long it has taken. Nothing is cut short: the orchestrator's kill (or a
//! second SIGTERM) decides when waiting is over.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a component may take to stop before it is named in the log.
const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `stop`, the stopping of `kind` `name`, logging every [`PATIENCE`]
/// while it has not finished.
pub(super) async fn watched<F: Future>(kind: &str, name: &str, stop: F) -> F::Output {
    let started = Instant::now();
    tokio::pin!(stop);
    loop {
        match tokio::time::timeout(PATIENCE, &mut stop).await {
            Ok(out) => return out,
            Err(_) => tracing::warn!(
                component = %name,
                kind,
                waited_s = started.elapsed().as_secs(),
                "shutting down: still waiting for this {kind} to stop"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_stop_is_awaited_to_its_end() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let waiting = tokio::spawn(watched("sink", "lake", rx));
        tokio::time::sleep(PATIENCE * 3).await;
        assert!(!waiting.is_finished(), "nothing is cut short");
        tx.send(7).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 7);
    }
}
