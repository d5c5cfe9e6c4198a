//! Sources: where events enter Sluice.
//!
//! Each source type is one module, named after its `type`, and one line in
//! [`TYPES`]; its config implements [`Source`], through which the loader
//! and the topology know it.
//!
//! A source turns what it reads into [`crate::event::Batch`]es (batched by count
//! and by time), each with an [`crate::event::Ack`] whose reports tell the source
//! what it may commit. It sends batches to its processing stage until the
//! shutdown token fires, then stops reading, waits for outstanding batches to
//! be acknowledged, commits, and returns.

pub(crate) mod batcher;
pub mod embedded;
pub mod exec;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod position_file;
pub(crate) mod regex_key;
pub mod spooldir;
pub mod stdin;
pub mod syslog;
pub mod taildir;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::SourceLink;
use crate::event::Batch;
use crate::keys::Invalid;
use crate::keys::KeyError;
use crate::metrics::Metrics;

/// Every source type: its `type` name and how its keys are read.
#[rustfmt::skip] // one line per type
pub const TYPES: &[SourceType] = &[
    kafka::TYPE,
    exec::TYPE,
    stdin::TYPE,
    generator::TYPE,
    spooldir::TYPE,
    taildir::TYPE,
    http::TYPE,
    syslog::TYPE,
];

/// One source type.
pub struct SourceType {
    /// The value of `type`.
    pub name: &'static str,
    /// Reads the keys of a `[sources.<name>]` table (less the wiring keys
    /// `type`, `decoder`, `interceptors`, `router`, `channels`,
    /// `dead_letter` and `team`) into a checked configuration.
    pub load: fn(toml::Value) -> Result<Arc<dyn Source>, KeyError>,
}

/// A source type's checked configuration: what the wiring needs to know of
/// the source, and how to run it.
pub trait Source: Debug + Send + Sync + Any {
    /// Whether it can read again from a committed position after a crash
    /// (a Kafka consumer can; a command's output cannot). Exactly-once
    /// sinks accept only such sources.
    fn rereads(&self) -> bool;
    /// Whether it numbers events by where they are in its input (a file
    /// source: partition per file, offset = byte offset): it resumes from
    /// its own acknowledged positions, which never pass an exactly-once
    /// sink's, and that sink skips what it already committed. Such a source
    /// may feed an exactly-once object-store sink (not a transactional Kafka
    /// sink, which commits consumer offsets). It assigns its partitions on
    /// its link and honours rewinds ([`crate::delivery`]).
    fn positional(&self) -> bool {
        false
    }
    /// Whether events it reads may carry topic `name` (a Kafka source
    /// reading such a topic). Positional sources use their own name as
    /// topic; the loader refuses a durable channel shared by both.
    fn may_read_topic(&self, _name: &str) -> bool {
        false
    }
    /// Whether it connects to the embedded demo broker.
    fn uses_embedded_broker(&self) -> bool {
        false
    }
    /// Whether it ends on its own, once everything it read is delivered (a
    /// `kafka` source with `bounded`, a `generator` with `count`, `stdin`):
    /// the sinks it feeds must release what they hold without waiting for
    /// more events, or the run would never end.
    fn bounded(&self) -> bool {
        false
    }
    /// Runs the source, sending its batches to `output`, until
    /// `ctx.shutdown` fires and what it sent is acknowledged. `link` is its
    /// delivery link with the sinks it feeds ([`crate::delivery`]).
    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        link: Arc<SourceLink>,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
    /// For tools and tests that need one type's own keys.
    fn as_any(&self) -> &dyn Any;
}

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
    /// Where the source may keep state across restarts (position files):
    /// `data_dir/sources/<name>`, created by the source when it needs it.
    pub state_dir: std::path::PathBuf,
}

impl SourceContext {
    /// The source's counter `source.<name>.<what>`.
    pub fn counter(&self, what: &str) -> crate::metrics::Counter {
        self.metrics
            .counter(&format!("source.{}.{what}", self.name))
    }

    /// The source's gauge `source.<name>.<what>`.
    pub fn gauge(&self, what: &str) -> crate::metrics::Gauge {
        self.metrics.gauge(&format!("source.{}.{what}", self.name))
    }

    /// The source's histogram `source.<name>.<what>` (bounds in seconds).
    pub fn histogram(&self, what: &str, bounds: &'static [f64]) -> Arc<crate::metrics::Histogram> {
        self.metrics
            .histogram(&format!("source.{}.{what}", self.name), bounds)
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
pub(crate) fn default_batch_max_bytes() -> crate::units::ByteSize {
    crate::units::ByteSize(16 << 20)
}

/// Bounds of `batch_max_bytes`: at least 1 KiB, at most 1 GiB (a batch's
/// encoding addresses at most 4 GiB, and one oversized event may come on top).
pub(crate) fn check_batch_max_bytes(value: crate::units::ByteSize) -> Result<(), Invalid> {
    const MIN: u64 = 1 << 10;
    const MAX: u64 = 1 << 30;
    if (MIN..=MAX).contains(&value.get()) {
        Ok(())
    } else {
        Err(Invalid(format!(
            "must be between 1KiB and 1GiB (is {} bytes)",
            value.get()
        )))
    }
}
