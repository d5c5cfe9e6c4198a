//! The WebAssembly plugin host.
//!
//! One wasmtime [`Engine`](wasmtime::Engine) per process ([`PluginEngine`]), one
//! [`Store`](wasmtime::Store) per plugin instance ([`PluginInstance`]), and a
//! per-source [`Chain`] that runs decoder → interceptors → router once per
//! batch and applies their outcomes.
//!
//! - [`bindings`]: the only `bindgen!` call; the rest of the host never names
//!   generated types except through it.
//! - [`host`]: the store data, the `host` and `lookup` imports, and the
//!   deny-by-default WASI context with a team's grants ([`Sandbox`]).
//! - [`limits`]: memory cap and per-batch time budget.
//! - [`log_gate`]: the rate, size and escaping of what a plugin logs.
//! - [`policy`]: plugin kinds, failure policies and the circuit breaker's settings.
//! - [`engine`]: compiling components and checking which world they implement.
//! - [`guarded_imports`]: host imports that check before they copy or block.
//! - [`compile_cache`]: signed machine code of compiled plugins across restarts.
//! - [`input`]: the JSON-lines test events of `plugin test` and self-tests.
//! - [`instance`]: calling a plugin on a batch, recovering from traps.
//! - [`chain`]: applying per-event outcomes across the plugins of a source,
//!   failure policies, circuit breaker, lineage.
//! - [`registry`]: the current version of every plugin; checking and
//!   publishing new ones.
//! - [`reload`]: the file watcher that drives reloads (plugins, lookup files,
//!   resume requests).

pub mod bindings;
pub mod chain;
pub mod compile_cache;
pub mod engine;
pub mod guarded_imports;
pub mod host;
pub mod input;
pub mod instance;
pub mod limits;
pub mod log_gate;
pub mod policy;
pub mod registry;
pub mod reload;

pub use chain::{Chain, ChainOutput, Stage, StagePolicy};
pub use compile_cache::CacheKey;
pub use engine::{EngineOptions, LoadedPlugin, PluginEngine};
pub use host::Sandbox;
pub use instance::{PluginFailure, PluginInstance, PluginOutput};
pub use limits::Limits;
pub use log_gate::LogGate;
pub use policy::{BreakerConfig, FailurePolicy, PluginKind};
pub use registry::{PluginSlot, Registry, ReloadOutcome, SlotSpec};

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
