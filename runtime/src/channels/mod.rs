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
//! The ends are small enums over the kinds, so processors and sinks never
//! know which kind they talk to. Each kind acknowledges the batches it is
//! sent in its own way (memory: when the sink does; file and kafka: once the
//! channel holds them durably) and gives the batches it hands out new
//! acknowledgements of its own when it is durable itself.

pub mod file;
pub mod kafka;
pub mod memory;

use crate::event::Batch;

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
