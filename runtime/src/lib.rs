//! Sluice: an ingestion runtime that moves events from Kafka (and other
//! sources) into object stores and back into Kafka, running each team's
//! processing as sandboxed WebAssembly components invoked once per batch.
//!
//! The pieces, in the order events flow through them:
//!
//! - [`sources`]: Kafka consumer, command output (`exec`) and the embedded demo broker, producing [`event::Batch`]es;
//! - [`plugin`]: the wasmtime host running decoder → interceptors → router per batch;
//! - [`channels`]: buffers with backpressure between processing and sinks: memory, file (write-ahead log) and Kafka;
//! - [`sinks`]: rolling object-store files, Kafka producer, a local file, logger, null;
//! - [`lookup`]: tables plugins read, from files or compacted topics;
//! - [`topology`]: builds the graph from [`config`], runs it, shuts it down.
//!
//! [`event`], [`keys`], [`units`], [`metrics`] and [`error`] are the crate
//! `sluice-core`; [`kafka`] is `sluice-kafka`; [`plugin`] and [`lookup`] are
//! `sluice-plugin-host`. Each of those crates uses only the ones listed
//! before it, never this one, so the compiler keeps the layers.
//!
//! Each role (source, channel, sink, lookup) has one trait and one registry
//! (`TYPES`) of its types; a type is one module and one registry line. The
//! loader ([`config`]) and the [`topology`] know components only through
//! those. The top-level modules form layers without cycles (checked by
//! `tests/tests/module_layers.rs`, which checks the guest SDK too; the
//! README draws them).
//!
//! Every Kafka client (source, sinks, channel, lookup tables) works over TLS
//! and SASL, reads secrets from files or the environment without logging
//! them ([`kafka::properties`]), and stops on errors no retry can cure
//! ([`kafka::errors`]).
//!
//! For plugin authors: [`scaffold`] (`sluice plugin new`) and [`golden`]
//! (`sluice plugin test --expected`).
//!
//! Delivery is at-least-once end to end: a source commits an offset only after
//! every sink that received an event up to it has made it durable (see [`event`]).

pub mod admin;
pub mod channels;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod golden;
pub mod import;
pub mod remote;
pub mod scaffold;
pub mod sinks;
pub mod sources;
pub mod top;
pub mod topology;

// The layers below, under the names the rest of the runtime (and its users)
// know them by: `crate::event` is `sluice_core::event`.
pub use sluice_core::{durable, error, event, keys, metrics, ranges, tap, units};
pub use sluice_kafka as kafka;
pub use sluice_plugin_host::{lookup, plugin};

#[cfg(test)]
mod fuzz;
mod http_server;
mod listener;
#[cfg(test)]
mod wait;
