//! Sinks: where batches leave Sluice.
//!
//! Each sink type is one module, named after its `type`, holding its config
//! struct and its run loop, and one line in [`TYPES`]. Its config implements
//! [`Sink`]: what the rest of the runtime needs to know of it (its delivery
//! [`Guarantee`], whether it takes a `dead_letter` channel, …) and how it
//! runs. The configuration loader and the topology know sinks only through
//! that trait, so a new sink type touches nothing else.
//!
//! A sink consumes its channel until the channel ends, makes everything
//! durable, and returns. It releases a batch's [`crate::event::Ack`] only
//! once the batch's events are durable (object visible, producer acked);
//! that is what lets sources commit offsets safely.

pub mod dead_letter;
pub mod file;
pub mod kafka;
pub mod logger;
pub mod null;
pub mod object_store;

use std::any::Any;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::channels::ChannelReceiver;
use crate::delivery::SourceLink;
use crate::keys::KeyError;
use crate::metrics::Metrics;

/// Every sink type: its `type` name and how its keys are read.
#[rustfmt::skip] // one line per type
pub const TYPES: &[SinkType] = &[
    object_store::TYPE,
    kafka::TYPE,
    logger::TYPE,
    null::TYPE,
    file::TYPE,
];

/// One sink type.
pub struct SinkType {
    /// The value of `type`.
    pub name: &'static str,
    /// Whether it can send events it can never deliver to a `dead_letter`
    /// channel (see [`dead_letter`]).
    pub takes_dead_letter: bool,
    /// Reads the keys of a `[sinks.<name>]` table (less the wiring keys
    /// `type`, `channel` and `dead_letter`) into a checked configuration.
    pub load: fn(toml::Value) -> Result<Arc<dyn Sink>, KeyError>,
}

/// What a sink promises about each event it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Durable once its ack is released; after a crash the source reads
    /// again what was not, so an event may arrive twice.
    AtLeastOnce,
    /// Keeps its own committed positions beside its output and skips what
    /// it already holds: every offset of its one `kafka` source exactly
    /// once (`object_store` with `exactly_once = true`).
    ExactlyOnce,
    /// Commits its one `kafka` source's consumer offsets in its own
    /// transactions, together with its output (`kafka` with
    /// `exactly_once = true`).
    Transactional,
}

/// A sink type's checked configuration: what the wiring needs to know of
/// the sink, and how to run it.
pub trait Sink: Debug + Send + Sync + Any {
    /// What the sink promises.
    fn guarantee(&self) -> Guarantee;
    /// Whether it connects to the embedded demo broker.
    fn uses_embedded_broker(&self) -> bool {
        false
    }
    /// Whether it releases every ack it holds within bounded time even when
    /// no further events arrive (a file that rolls only by size does not).
    /// A transactional sink sharing its source waits for such releases.
    fn releases_without_more_input(&self) -> bool {
        true
    }
    /// Why it needs a `dead_letter` channel, if its configuration sends
    /// events there (checked when the config loads).
    fn needs_dead_letter(&self) -> Option<&'static str> {
        None
    }
    /// Runs the sink on `input` until the channel ends.
    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>>;
    /// For tools that need one type's own keys (`sluice lake verify`).
    fn as_any(&self) -> &dyn Any;
}

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

    /// The sink's gauge `sink.<name>.<what>`.
    pub fn gauge(&self, what: &str) -> crate::metrics::Gauge {
        self.metrics.gauge(&format!("sink.{}.{what}", self.name))
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
