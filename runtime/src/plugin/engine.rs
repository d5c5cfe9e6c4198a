//! The process-wide wasmtime engine, its linker, and loading plugin files.
//!
//! Loading reads the file, hashes it (the digest identifies the plugin version
//! in logs and, later, in output lineage), compiles it and checks that it
//! exports the interface of the expected world before anything runs it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use super::PluginError;
use super::bindings::Imports;
use super::host::HostState;
use super::limits::EPOCH_TICK;
use crate::config::PluginKind;

/// The WIT package every plugin is built against.
pub const PACKAGE: &str = "sluice:plugin";
/// Version of the WIT package this host implements.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// Export interface and function name of each plugin kind.
pub fn export_of(kind: PluginKind) -> (String, &'static str) {
    let (iface, func) = match kind {
        PluginKind::Decoder => ("decode", "process"),
        PluginKind::Interceptor => ("intercept", "process"),
        PluginKind::Router => ("route", "process"),
    };
    (format!("{PACKAGE}/{iface}@{PACKAGE_VERSION}"), func)
}

/// One wasmtime engine with epoch interruption and a linker offering WASI p2
/// (deny-by-default) and the `host` interface.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<HostState>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// A compiled plugin file.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The compiled component.
    pub component: Component,
    /// The world it implements.
    pub kind: PluginKind,
    /// Hex SHA-256 of the file's bytes.
    pub digest: String,
}

impl PluginEngine {
    /// Creates the engine and starts its epoch ticker thread.
    pub fn new() -> Result<Self, PluginError> {
        let invalid = |message: String| PluginError::Invalid {
            path: "<engine>".into(),
            message,
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Components built by componentize-js use `task.*` intrinsics of the
        // async component model even for synchronous exports.
        config.wasm_component_model_async(true);
        let engine =
            Engine::new(&config).map_err(|e| invalid(format!("creating engine: {e:#}")))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| invalid(format!("linking WASI: {e:#}")))?;
        Imports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| invalid(format!("linking the host interface: {e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| invalid(format!("starting the epoch ticker: {e}")))?
        };
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                stop,
                ticker: Some(ticker),
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker every instance is created with.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Reads and compiles the plugin at `path`, checking it implements `expected`
    /// (or, with `None`, detecting which world it implements).
    pub fn load(
        &self,
        path: &Path,
        expected: Option<PluginKind>,
    ) -> Result<LoadedPlugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&path.display().to_string(), &bytes, expected)
    }

    /// Like [`load`](Self::load), from bytes; `name` is used in errors.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Option<PluginKind>,
    ) -> Result<LoadedPlugin, PluginError> {
        let invalid = |message: String| PluginError::Invalid {
            path: name.to_owned(),
            message,
        };
        let digest = hex::encode(Sha256::digest(bytes));
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| invalid(format!("not a valid WebAssembly component: {e:#}")))?;
        let ty = component.component_type();
        let exported: Vec<PluginKind> = [
            PluginKind::Decoder,
            PluginKind::Interceptor,
            PluginKind::Router,
        ]
        .into_iter()
        .filter(|k| {
            let (iface, func) = export_of(*k);
            ty.exports(&self.inner.engine).any(|(name, item)| {
                name == iface
                    && matches!(&item.ty, ComponentItem::ComponentInstance(i)
                            if i.exports(&self.inner.engine).any(|(n, _)| n == func))
            })
        })
        .collect();
        let kind = match (expected, exported.as_slice()) {
            (Some(want), found) if found.contains(&want) => want,
            (Some(want), found) => {
                let (iface, _) = export_of(want);
                return Err(invalid(format!(
                    "it does not implement the `{}` world: no export `{iface}` (it exports {})",
                    want.as_str(),
                    if found.is_empty() {
                        "no Sluice plugin interface".to_string()
                    } else {
                        found
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )));
            }
            (None, [one]) => *one,
            (None, []) => {
                return Err(invalid(format!(
                    "it exports no Sluice plugin interface ({PACKAGE}/intercept, decode or route @{PACKAGE_VERSION})"
                )));
            }
            (None, _) => {
                return Err(invalid(
                    "it exports more than one plugin interface; name its type explicitly".into(),
                ));
            }
        };
        // Fail now, not at the first batch, if an import cannot be satisfied.
        self.inner.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "its imports cannot be satisfied by this host: {e:#}"
            ))
        })?;
        Ok(LoadedPlugin {
            component,
            kind,
            digest,
        })
    }
}
