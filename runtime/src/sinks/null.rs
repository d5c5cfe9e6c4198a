//! The `null` sink: acknowledges and discards every event (benchmarks, tests).
//! Discarded events are counted in `sink.<name>.events`, never silently.

use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::{SinkContext, SinkError};
use crate::channels::ChannelReceiver;

/// `type = "null"` has no keys of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

/// Drains `input` until it ends.
pub async fn run(
    _config: NullSinkConfig,
    mut input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let events = ctx.counter("events");
    while let Some(batch) = input.recv().await {
        events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.release();
    }
    Ok(())
}
