//! Sinks: where batches leave Sluice.
//!
//! Each sink is a module named after its `type` with a config struct and an
//! async `run` function that consumes its channel until the channel ends, makes
//! everything durable, and returns. A sink releases a batch's [`crate::event::Ack`]
//! only once the batch's events are durable (object visible, producer acked);
//! that is what lets sources commit offsets safely.

pub mod dead_letter;
pub mod kafka;
pub mod logger;
pub mod null;
pub mod object_store;

use std::path::PathBuf;
use std::sync::Arc;

use crate::delivery::SourceLink;
use crate::metrics::Metrics;

/// What every sink gets from the topology.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink's name in the configuration (`[sinks.<name>]`).
    pub name: String,
    /// Process-wide metrics; sink counters are named `sink.<name>.<what>`.
    pub metrics: Arc<Metrics>,
    /// Bootstrap servers of the embedded demo broker, if one runs.
    pub embedded_bootstrap: Option<String>,
    /// The link of the Kafka source feeding this sink's channel, when
    /// exactly one Kafka source feeds it (see [`crate::delivery`]).
    pub link: Option<Arc<SourceLink>>,
    /// Where the sink keeps state between runs (`<data_dir>/sinks/<name>`);
    /// `None` keeps none (tests of a single run).
    pub state_dir: Option<PathBuf>,
    /// The sink's `dead_letter` channel, if it has one (see [`dead_letter`]).
    pub dead_letter: Option<crate::channels::ChannelSender>,
}

impl SinkContext {
    /// The sink's counter `sink.<name>.<what>`.
    pub fn counter(&self, what: &str) -> crate::metrics::Counter {
        self.metrics.counter(&format!("sink.{}.{what}", self.name))
    }
}

/// A sink failed in a way it cannot recover from by retrying.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}`: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What was being done and what went wrong.
    pub message: String,
}
