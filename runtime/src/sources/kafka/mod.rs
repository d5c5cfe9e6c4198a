//! The `kafka` source: a consumer-group member that hands records on in
//! batches and commits an offset only once everything up to it is delivered.
//!
//! Like Flume's Kafka source, but at-least-once end to end: librdkafka's
//! automatic commits and offset store are off. Records are batched by count
//! (`batch_max_events`) and by time (`batch_max_wait`, started by a batch's
//! first record) into the flat [`BatchBuf`](crate::event::BatchBuf), keeping
//! key, all headers (values as bytes), topic, partition, offset and timestamp
//! (create or log-append time in ms, else -1). Each batch carries an
//! [`Ack`](crate::event::Ack) with a sequential id; every `commit_interval`
//! the source commits, per partition, the offset after the longest prefix of
//! delivered batches (see `kafka::offsets`). A batch reported undelivered blocks
//! its partitions' commits for as long as this consumer owns them, so its
//! events are read again after a restart or rebalance.
//!
//! - **Backpressure**: while the output is full the consumer is not polled;
//!   librdkafka's prefetch is bounded by `queued.max.messages.kbytes`
//!   (16 MiB unless overridden) and `queued.min.messages`; when a queue is
//!   over them librdkafka fetches again after `fetch.queue.backoff.ms`, which
//!   Sluice sets to 10 ms instead of librdkafka's 1 s (see
//!   [`FETCH_QUEUE_BACKOFF_MS`](crate::kafka::FETCH_QUEUE_BACKOFF_MS)).
//! - **Rebalance**: on revocation the source commits what is delivered of the
//!   revoked partitions (best effort) and forgets their pending offsets, so it
//!   never commits for a partition it no longer owns. Batches of those
//!   partitions still in flight are read again by the next owner: after a
//!   rebalance, events may be duplicated, never lost. (Set
//!   `kafka."partition.assignment.strategy" = "cooperative-sticky"` to revoke
//!   only the partitions that move.)
//! - **Shutdown**: the partial batch is handed on, the output dropped, and the
//!   source waits until every batch handed on is reported, committing
//!   meanwhile; then it commits synchronously and leaves the group.
//! - **Errors**: broker and network errors are logged and counted;
//!   librdkafka reconnects. A permanent error — failed authentication, an
//!   untrusted broker certificate, a missing ACL ([`crate::kafka::errors`]) —
//!   or a fatal consumer error stops the source with an error naming the
//!   brokers and the cause.
//! - **Security**: TLS and SASL are librdkafka properties of the `kafka`
//!   table; secrets can be read from files or the environment and are never
//!   logged ([`properties`](crate::kafka::properties)).
//! - **Bounded runs** (`bounded`): each partition is read from a start to
//!   an end fixed when the source starts; records at or past the end are
//!   not handed on and the partition is paused; once every assigned
//!   partition is done and every batch is delivered, the source commits and
//!   ends with `Ok`, and reports each partition's range for the run's
//!   summary ([`bounded`]).
//! - **Records that cannot be events**: a header key that is not UTF-8 (any
//!   producer can send one) cannot be an event's header. Such a record goes,
//!   whole, to the source's dead-letter channel: every header kept, invalid
//!   key bytes written `\xNN`, the key's bytes in hex in
//!   `sluice.dead_letter.reason` ([`headers`]). Counted in `.rejected`.
//! - **Headers named like the host's** (`sluice.*`: lineage, dead-letter
//!   reasons, origins) are dropped from every record, so a producer cannot
//!   forge provenance ([`crate::event::HOST_HEADER_PREFIX`]). Counted in
//!   `.host_headers_dropped`.
//!
//! Metrics: `source.<name>.events`, `.bytes` (keys and bodies), `.batches`,
//! `.commits` (commit requests sent), `.errors`, `.undelivered_batches`,
//! `.rejected` (records sent to the dead-letter channel by the source),
//! `.host_headers_dropped`, the gauge `.bounded_partitions_left` (bounded
//! runs: assigned partitions not yet at their end), and
//! the gauge `.lag` (sum of the consumer lag of the assigned partitions, from
//! librdkafka's statistics every `statistics.interval.ms`, default 1 s) with
//! one gauge per partition, `.lag.<topic>.<partition>`: the partition's end
//! minus the group's committed offset, as Kafka's consumer-group tool counts.

mod bounded;
mod config;
mod headers;
mod source;
#[cfg(test)]
mod tests;

pub use config::{BoundEnd, BoundStart, Bounded, KafkaSourceConfig, PartitionOffsets, StartFrom};
pub use source::run;

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Source, SourceContext, SourceError, SourceType};
use crate::delivery::SourceLink;
use crate::event::Batch;
use crate::keys;

/// `type = "kafka"`.
pub const TYPE: SourceType = SourceType {
    name: "kafka",
    load: |table| {
        let config: KafkaSourceConfig = keys::deserialize(table)?;
        config.validate().map_err(|e| locate(&config, e))?;
        Ok(Arc::new(config))
    },
};

/// A validation message as a problem of the key it opens with: `bounded.start`,
/// `bounded.end`, `bounded`, or a property of the `kafka` table.
fn locate(config: &KafkaSourceConfig, e: keys::Invalid) -> keys::KeyError {
    const BOUNDED: [&[&str]; 3] = [&["bounded", "start"], &["bounded", "end"], &["bounded"]];
    for at in BOUNDED {
        if e.0.starts_with(&format!("`{}`", at.join("."))) {
            return keys::KeyError::Invalid {
                at: at.iter().map(|k| (*k).to_owned()).collect(),
                message: e.0,
            };
        }
    }
    config.kafka.invalid("kafka", e)
}

impl Source for KafkaSourceConfig {
    fn rereads(&self) -> bool {
        true
    }

    fn bounded(&self) -> bool {
        self.bounded.is_some()
    }

    fn may_read_topic(&self, name: &str) -> bool {
        self.topics.iter().any(|t| t == name)
            || self.topic_pattern.as_deref().is_some_and(|p| {
                let anchored = if p.starts_with('^') {
                    p.to_owned()
                } else {
                    format!("^{p}")
                };
                // A pattern the regex crate cannot read: assume it may match.
                regex::Regex::new(&anchored).map_or(true, |r| r.is_match(name))
            })
    }

    fn uses_embedded_broker(&self) -> bool {
        self.bootstrap_servers == crate::kafka::EMBEDDED
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        link: Arc<SourceLink>,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx, link))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
