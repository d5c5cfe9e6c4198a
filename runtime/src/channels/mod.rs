//! Channels: the buffers between a source's processing stage and a sink.
//!
//! Every channel hands out a [`ChannelSender`] (many, cloned per source) and
//! one [`ChannelReceiver`] (its sink). Sending waits while the channel is full,
//! which stops the source from polling: backpressure, never loss. The receiver
//! sees `None` once every sender is dropped and the channel is drained, which
//! is how a sink learns to flush and stop.

pub mod memory;

pub use memory::{ChannelReceiver, ChannelSender};
