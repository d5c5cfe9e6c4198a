//! Channels: the buffers between a source's processing stage and a sink.
//!
//! Every channel hands out a [`ChannelSender`] (many, cloned per source) and
//! one [`ChannelReceiver`] (its sink). Sending waits while the channel is full,
//! which stops the source from polling: backpressure, never loss. The receiver
//! sees `None` once every sender is dropped and the channel is drained, which
//! is how a sink learns to flush and stop.
//!
//! Three kinds, chosen per channel with `type`:
//!
//! - [`memory`]: a bounded queue in memory. Fastest; what it holds is lost if
//!   the process dies, which is harmless for sources that can replay (Kafka):
//!   they commit only what sinks delivered.
//! - [`file`]: a write-ahead log on local disk (Flume's file channel). A
//!   batch is acknowledged to its source once it is durable in the log, so
//!   sources that cannot replay (exec, HTTP) survive a crash; the sink reads
//!   the log, and a checkpoint records what it delivered. At-least-once.
//! - [`kafka`]: a Kafka topic used as the channel (Flume's Kafka channel). A
//!   batch is acknowledged to its source once the brokers have it; the sink
//!   side is a consumer group that commits only what the sink delivered.
//!   Survives the loss of the machine. At-least-once.
//!
//! Each kind is one module and one line in [`TYPES`]; its config implements
//! [`Channel`], through which the loader and the topology know it. The ends
//! are small enums over the kinds (a match per batch, not a virtual call),
//! so processors and sinks never know which kind they talk to. Each kind acknowledges the batches it is
//! sent in its own way (memory: when the sink does; file and kafka: once the
//! channel holds them durably) and gives the batches it hands out new
//! acknowledgements of its own when it is durable itself.

pub mod file;
pub mod kafka;
pub mod memory;

use std::any::Any;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use crate::event::Batch;
use crate::kafka::errors::Health;
use crate::keys::KeyError;
use crate::metrics::Metrics;

/// Every channel type: its `type` name and how its keys are read.
#[rustfmt::skip] // one line per type
pub const TYPES: &[ChannelType] = &[
    memory::TYPE,
    file::TYPE,
    kafka::TYPE,
];

/// One channel type.
pub struct ChannelType {
    /// The value of `type`.
    pub name: &'static str,
    /// Reads the keys of a `[channels.<name>]` table (less `type`) into a
    /// checked configuration.
    pub load: LoadChannel,
}

/// How a channel type reads its keys.
pub(crate) type LoadChannel =
    fn(toml::Value, &LoadContext<'_>) -> Result<Arc<dyn Channel>, KeyError>;

/// What reading a channel's keys may need besides them.
pub struct LoadContext<'a> {
    /// The channel's name.
    pub name: &'a str,
    /// Where relative paths start (the configuration file's directory).
    pub base: &'a Path,
    /// The agent's `data_dir`.
    pub data_dir: &'a Path,
}

/// What opening a channel may need.
pub struct OpenContext<'a> {
    /// Process-wide metrics; channel counters are `channel.<name>.<what>`.
    pub metrics: &'a Metrics,
    /// Bootstrap servers of the embedded demo broker, if one runs.
    pub embedded_bootstrap: Option<&'a str>,
}

/// A channel type's checked configuration: what the wiring needs to know of
/// the channel, and how to open it.
pub trait Channel: Debug + Send + Sync + Any {
    /// Whether it keeps what it is sent itself, durably, and so releases a
    /// batch's ack once it holds it (file, kafka) rather than when its sink
    /// is done (memory). Exactly-once sinks need a channel that is not:
    /// they must see the source's own batches.
    fn durable(&self) -> bool;
    /// Whether it connects to the embedded demo broker.
    fn uses_embedded_broker(&self) -> bool {
        false
    }
    /// A local directory it needs for itself alone, and the key naming it.
    fn own_dir(&self) -> Option<(&'static str, &Path)> {
        None
    }
    /// Opens channel `name`. Blocking (recovery, clients); call it inside a
    /// tokio runtime.
    fn open(&self, name: &str, ctx: &OpenContext<'_>) -> Result<OpenChannel, ChannelError>;
    /// For tools and tests that need one type's own keys.
    fn as_any(&self) -> &dyn Any;
}

/// An open channel.
pub struct OpenChannel {
    /// The sending end, cloned per source.
    pub sender: ChannelSender,
    /// The receiving end, for its sink.
    pub receiver: ChannelReceiver,
    /// A task that records the sink's acknowledgements (checkpoints,
    /// commits); await it after the sink has stopped.
    pub settle: Option<tokio::task::JoinHandle<()>>,
    /// The health of its Kafka clients, if any: a permanent error stops the
    /// agent.
    pub health: Option<Arc<Health>>,
}

/// A channel could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("channel `{channel}`: {message}")]
pub struct ChannelError {
    /// The channel's name.
    pub channel: String,
    /// What went wrong.
    pub message: String,
}

/// The receiver is gone (its sink stopped); the batch was not taken.
#[derive(Debug)]
pub struct Closed(pub Batch);

/// The sending side of a channel; clone it per producer.
#[derive(Clone)]
pub enum ChannelSender {
    /// A [`memory`] channel.
    Memory(memory::MemorySender),
    /// A [`file`] channel.
    File(file::FileSender),
    /// A [`kafka`] channel.
    Kafka(kafka::KafkaSender),
}

/// The receiving side of a channel, owned by one sink.
pub enum ChannelReceiver {
    /// A [`memory`] channel.
    Memory(memory::MemoryReceiver),
    /// A [`file`] channel.
    File(file::FileReceiver),
    /// A [`kafka`] channel.
    Kafka(kafka::KafkaReceiver),
}

impl ChannelSender {
    /// Hands a batch to the channel, waiting while it is full. The batch's
    /// ack is released when the channel (memory: the sink) is done with it.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        match self {
            Self::Memory(tx) => tx.send(batch).await,
            Self::File(tx) => tx.send(batch).await,
            Self::Kafka(tx) => tx.send(batch).await,
        }
    }

    /// Events sent and not yet taken by the receiver (0 where unknown: kafka).
    pub fn held_events(&self) -> usize {
        match self {
            Self::Memory(tx) => tx.held_events(),
            Self::File(tx) => tx.held_events(),
            Self::Kafka(_) => 0,
        }
    }
}

impl ChannelReceiver {
    /// The next batch; `None` once all senders are dropped and the channel is
    /// drained. Cancel-safe: dropping the future loses no batch.
    pub async fn recv(&mut self) -> Option<Batch> {
        match self {
            Self::Memory(rx) => rx.recv().await,
            Self::File(rx) => rx.recv().await,
            Self::Kafka(rx) => rx.recv().await,
        }
    }
}
