//! The process-wide wasmtime engine, its linker, and loading plugin files.
//!
//! Loading reads the file, hashes it (the digest identifies the plugin version
//! in logs and in output lineage), compiles it and checks that it exports the
//! interface of the expected world before anything runs it.
//!
//! Compiled code is cached by content digest in the data directory
//! (`cache/<sha256>-<engine>.cwasm`, where `<engine>` identifies the wasmtime
//! version and settings), so a restart loads machine code instead of running
//! Cranelift again. The cache directory is trusted like the binary itself:
//! wasmtime checks that an artifact was made by a compatible engine, not that
//! nobody tampered with it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use super::PluginError;
use super::bindings::Imports;
use super::host::HostState;
use super::limits::EPOCH_TICK;
use super::policy::PluginKind;

/// The WIT package every plugin is built against.
pub(crate) const PACKAGE: &str = "sluice:plugin";
/// Version of the WIT package this host implements.
pub(crate) const PACKAGE_VERSION: &str = "0.1.0";

/// Export interface and function name of each plugin kind.
pub(crate) fn export_of(kind: PluginKind) -> (String, &'static str) {
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

/// How to build a [`PluginEngine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Interrupt calls that exceed their time budget. Only benchmarks turn
    /// this off, to measure what it costs.
    pub epoch_interruption: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_interruption: true,
        }
    }
}

struct EngineInner {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    /// Identifies the engine's code format in cache file names.
    compat: String,
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
    /// Whether the code came from the compile cache.
    pub cached: bool,
    /// Time spent compiling or loading the cached code.
    pub compile_time: Duration,
}

impl LoadedPlugin {
    /// The first 16 hex digits of the digest: enough to tell versions apart
    /// in headers and logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..16.min(self.digest.len())]
    }
}

impl PluginEngine {
    /// Creates the engine (no compile cache) and starts its epoch ticker thread.
    pub fn new() -> Result<Self, PluginError> {
        Self::with_options(EngineOptions::default())
    }

    /// Creates an engine as `options` say.
    pub fn with_options(options: EngineOptions) -> Result<Self, PluginError> {
        let invalid = |message: String| PluginError::Invalid {
            path: "<engine>".into(),
            message,
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(options.epoch_interruption);
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
        let compat = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
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
                cache_dir: options.cache_dir,
                compat,
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
        let digest = digest(bytes);
        let started = Instant::now();
        let (component, cached) = self
            .compile_cached(bytes, &digest)
            .map_err(|e| invalid(format!("not a valid WebAssembly component: {e:#}")))?;
        let compile_time = started.elapsed();
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
            cached,
            compile_time,
        })
    }

    /// The cache file of a component with `digest`, if caching is on.
    pub(crate) fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        self.inner
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.inner.compat)))
    }

    /// Compiles `bytes`, or loads the cached machine code of the same digest.
    /// A cache that cannot be read or written only costs a compile.
    fn compile_cached(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<(Component, bool)> {
        let engine = &self.inner.engine;
        let Some(path) = self.cache_path(digest) else {
            return Ok((Component::new(engine, bytes)?, false));
        };
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name), in
            // the operator's data directory; wasmtime re-checks the header.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable compile cache entry: {e:#}")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = write_atomically(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), "could not write the compile cache: {e}");
        }
        Ok((component, false))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Hex SHA-256 of a plugin file: its version identity.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `component` with a custom section named `sluice-build` holding `tag`
/// appended: a file that behaves exactly the same and has another digest,
/// i.e. a new version. Swap tests and benchmarks deploy these.
pub fn tagged_build(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"sluice-build";
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}
