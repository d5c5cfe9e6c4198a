//! The WebAssembly plugin host of Sluice ([`plugin`]: engine, per-batch
//! chain, sandbox limits, checked hot reload) and the lookup tables plugins
//! read ([`lookup`]: from files or compacted Kafka topics).
//!
//! Built on `sluice-core` (batches, metrics, keys) and `sluice-kafka` (the
//! lookup tables' consumer); the configuration loader and the components
//! that run plugins live above it, in `sluice`.

pub mod lookup;
pub mod plugin;
