//! Sources: where events enter Sluice.
//!
//! A source turns what it reads into [`crate::event::Batch`]es (batched by count
//! and by time), each with an [`crate::event::Ack`] whose reports tell the source
//! what it may commit. It sends batches to its processing stage until the
//! shutdown token fires, then stops reading, waits for outstanding batches to
//! be acknowledged, commits, and returns.

pub mod embedded;
pub mod exec;
pub mod kafka;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What every source gets from the topology.
#[derive(Clone)]
pub struct SourceContext {
    /// The source's name in the configuration (`[sources.<name>]`).
    pub name: String,
    /// Process-wide metrics; source counters are named `source.<name>.<what>`.
    pub metrics: Arc<Metrics>,
    /// Fires when the runtime shuts down.
    pub shutdown: CancellationToken,
    /// Bootstrap servers of the embedded demo broker, if one runs.
    pub embedded_bootstrap: Option<String>,
}

impl SourceContext {
    /// The source's counter `source.<name>.<what>`.
    pub fn counter(&self, what: &str) -> crate::metrics::Counter {
        self.metrics
            .counter(&format!("source.{}.{what}", self.name))
    }
}

/// A source failed in a way it cannot recover from.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}`: {message}")]
pub struct SourceError {
    /// The source's name.
    pub source_name: String,
    /// What was being done and what went wrong.
    pub message: String,
}

/// Default `batch_max_bytes` of every source.
pub fn default_batch_max_bytes() -> crate::units::ByteSize {
    crate::units::ByteSize(16 << 20)
}

/// Bounds of `batch_max_bytes`: at least 1 KiB, at most 1 GiB (a batch's
/// encoding addresses at most 4 GiB, and one oversized event may come on top).
pub fn check_batch_max_bytes(value: crate::units::ByteSize) -> Result<(), String> {
    const MIN: u64 = 1 << 10;
    const MAX: u64 = 1 << 30;
    if (MIN..=MAX).contains(&value.get()) {
        Ok(())
    } else {
        Err(format!(
            "must be between 1KiB and 1GiB (is {} bytes)",
            value.get()
        ))
    }
}
