//! The WebAssembly plugin host.
//!
//! One wasmtime [`Engine`](wasmtime::Engine) per process ([`PluginEngine`]), one
//! [`Store`](wasmtime::Store) per plugin instance ([`PluginInstance`]), and a
//! per-source [`Chain`] that runs decoder → interceptors → router once per
//! batch and applies their outcomes.
//!
//! - [`bindings`]: the only `bindgen!` call; the rest of the host never names
//!   generated types except through it.
//! - [`host`]: the store data, the `host` import (log, config) and the
//!   deny-by-default WASI context.
//! - [`limits`]: memory cap and per-batch time budget.
//! - [`engine`]: compiling components and checking which world they implement.
//! - [`instance`]: calling a plugin on a batch, recovering from traps.
//! - [`chain`]: applying per-event outcomes across the plugins of a source.
//!
//! Hot reload and per-team policies build on these pieces: a reload swaps the
//! [`PluginInstance`] a chain holds between two batches.

pub mod bindings;
pub mod chain;
pub mod engine;
pub mod host;
pub mod instance;
pub mod limits;

pub use chain::{Chain, ChainOutput, Stage};
pub use engine::{LoadedPlugin, PluginEngine};
pub use instance::{PluginFailure, PluginInstance, PluginOutput};
pub use limits::Limits;

/// Errors from loading a plugin (the file, not a batch).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("reading plugin {path}: {source}")]
    Read {
        /// The plugin file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid component, or does not match the contract.
    #[error("loading plugin {path}: {message}")]
    Invalid {
        /// The plugin file.
        path: String,
        /// What is wrong.
        message: String,
    },
}
