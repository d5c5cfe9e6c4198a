//! The `null` sink: acknowledges and discards every event (benchmarks, tests).
//! Discarded events are counted in `sink.<name>.events`, never silently.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Guarantee, Sink, SinkContext, SinkError, SinkType};
use crate::channels::ChannelReceiver;
use crate::keys;

/// `type = "null"`.
pub const TYPE: SinkType = SinkType {
    name: "null",
    takes_dead_letter: false,
    load: |table| Ok(Arc::new(keys::deserialize::<NullSinkConfig>(table)?)),
};

/// `type = "null"` has no keys of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

impl Sink for NullSinkConfig {
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(run(self.clone(), input, ctx))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

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
