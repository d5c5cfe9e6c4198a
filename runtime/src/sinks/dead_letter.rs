//! A sink's own dead-letter channel (`dead_letter` on a `kafka` or
//! `object_store` sink): where an event goes that the sink can never deliver
//! — a permanent error of that event alone, such as a record larger than
//! the broker accepts, a topic name the broker refuses, or a path longer
//! than the store allows. Retrying such an event would stall the sink
//! forever; dropping it would lose it. It is sent, whole, to the channel
//! with headers `sluice.dead_letter.reason` (why) and
//! `sluice.dead_letter.sink` (which sink), under the batch's own
//! acknowledgement: its offsets are committed once the dead-letter sink has
//! it. Counted in `sink.<name>.dead_lettered`.
//!
//! Without `dead_letter` the sink stops with an error naming the event and
//! the reason instead (see each sink).

use std::sync::atomic::Ordering;

use crate::channels::ChannelSender;
use crate::event::DEAD_LETTER_REASON;
use crate::event::{Ack, Batch, BatchBuf, EventRef};
use crate::metrics::Counter;

/// Header naming the sink that dead-lettered an event.
pub(crate) const DEAD_LETTER_SINK: &str = "sluice.dead_letter.sink";

/// The dead-letter channel of one sink, if it has one.
pub struct DeadLetter {
    tx: Option<ChannelSender>,
    sink: String,
    count: Counter,
}

impl DeadLetter {
    /// The dead-letter channel of the sink of `ctx`.
    pub fn new(ctx: &super::SinkContext) -> Self {
        Self {
            tx: ctx.dead_letter.clone(),
            sink: ctx.name.clone(),
            count: ctx.counter("dead_lettered"),
        }
    }

    /// Whether the sink has a dead-letter channel.
    pub fn configured(&self) -> bool {
        self.tx.is_some()
    }

    /// Sends `events`, each with its reason, as part of the batch acknowledged
    /// by `ack`. An error if there is no channel or it is closed (the batch
    /// then counts as not delivered).
    pub async fn send(
        &self,
        events: &[(EventRef<'_>, String)],
        ack: &Ack,
    ) -> Result<(), DeadLetterError> {
        let Some(tx) = &self.tx else {
            return Err(DeadLetterError::NoChannel);
        };
        let mut buf = BatchBuf::default();
        for (event, reason) in events {
            buf.push_with_headers(
                event,
                &[
                    (DEAD_LETTER_REASON, reason.as_bytes()),
                    (DEAD_LETTER_SINK, self.sink.as_bytes()),
                ],
            );
        }
        tx.send(Batch::new(buf, ack.clone()))
            .await
            .map_err(|_| DeadLetterError::Closed)?;
        self.count.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Why events could not be dead-lettered; the batch then counts as not
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    /// The sink has no `dead_letter` channel.
    #[error("the sink has no `dead_letter` channel")]
    NoChannel,
    /// The channel is closed: its own sink has stopped.
    #[error("the dead-letter channel is closed")]
    Closed,
}
