//! The process-wide wasmtime engine, its linker, and loading plugin files.
//!
//! Loading reads the file, hashes it (the digest identifies the plugin version
//! in logs and in output lineage), compiles it and checks that it exports the
//! interface of the expected world before anything runs it.
//!
//! Compiled code is cached by content digest in the data directory
//! (`cache/<sha256>-<engine>.cwasm`, where `<engine>` identifies the wasmtime
//! version and settings), so a restart loads machine code instead of running
//! Cranelift again; entries are signed and checked ([`super::compile_cache`]).
//! Compiling is bounded in time ([`EngineOptions::compile_timeout`]).

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
use super::compile_cache::{CacheKey, CompileCache};
use super::guarded_imports;
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
    /// The key cache entries are signed with; `None`: a key for this
    /// process only (entries of earlier runs are compiled again).
    pub cache_key: Option<CacheKey>,
    /// Longest a plugin may take to compile; a file that takes longer (a
    /// compile bomb) is refused. Cranelift cannot be interrupted: the
    /// compile goes on in the background until it ends, its result unused.
    pub compile_timeout: Duration,
    /// Interrupt calls that exceed their time budget. Only benchmarks turn
    /// this off, to measure what it costs.
    pub epoch_interruption: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_key: None,
            compile_timeout: Duration::from_secs(60),
            epoch_interruption: true,
        }
    }
}

struct EngineInner {
    /// For components of the synchronous component model: every
    /// first-party plugin, in every language.
    plain: Flavour,
    /// With wasmtime's component-model async support, which wasmtime calls
    /// very incomplete: only for components that cannot be compiled without
    /// it (ones using the async model's intrinsics, as some componentize-js
    /// versions emit even for synchronous exports).
    with_async: Flavour,
    compile_timeout: Duration,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// One wasmtime engine configuration with its linker and compile cache.
struct Flavour {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
}

impl Flavour {
    fn new(options: &EngineOptions, with_async: bool, key: &CacheKey) -> Result<Self, PluginError> {
        let invalid = |what: &str, e: wasmtime::Error| PluginError::Invalid {
            path: "<engine>".into(),
            message: format!("{what}: {e:#}"),
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(options.epoch_interruption);
        config.wasm_component_model_async(with_async);
        let engine = Engine::new(&config).map_err(|e| invalid("creating engine", e))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| invalid("linking WASI", e))?;
        Imports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| invalid("linking the host interface", e))?;
        guarded_imports::link_bounded_clocks(&mut linker, guarded_imports::MONOTONIC_CLOCK)
            .map_err(|e| invalid("linking WASI clocks", e))?;
        guarded_imports::link_bounded_get_many(
            &mut linker,
            &format!("{PACKAGE}/lookup@{PACKAGE_VERSION}"),
        )
        .map_err(|e| invalid("linking the host interface", e))?;
        // The engine's settings change its code format: each flavour has
        // its own cache entries (named apart even if wasmtime's hash did
        // not tell them apart).
        let compat = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            let flavour = if with_async { "-async" } else { "" };
            format!("{:016x}{flavour}", h.finish())
        };
        let cache = options
            .cache_dir
            .clone()
            .and_then(|dir| CompileCache::open(dir, key.clone(), compat));
        Ok(Self {
            engine,
            linker,
            cache,
        })
    }
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
    /// Whether it needs the component model's async support (compiled for
    /// the engine that has it).
    pub uses_async: bool,
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
        let key = options
            .cache_key
            .clone()
            .unwrap_or_else(CacheKey::ephemeral);
        let plain = Flavour::new(&options, false, &key)?;
        let with_async = Flavour::new(&options, true, &key)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engines = [plain.engine.clone(), with_async.engine.clone()];
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        for engine in &engines {
                            engine.increment_epoch();
                        }
                    }
                })
                .map_err(|e| invalid(format!("starting the epoch ticker: {e}")))?
        };
        Ok(Self {
            inner: Arc::new(EngineInner {
                plain,
                with_async,
                compile_timeout: options.compile_timeout,
                stop,
                ticker: Some(ticker),
            }),
        })
    }

    /// The engine with (`true`) or without the component model's async support.
    fn flavour(&self, uses_async: bool) -> &Flavour {
        if uses_async {
            &self.inner.with_async
        } else {
            &self.inner.plain
        }
    }

    /// The wasmtime engine `loaded` was compiled with.
    pub fn engine(&self, loaded: &LoadedPlugin) -> &Engine {
        &self.flavour(loaded.uses_async).engine
    }

    /// The linker instances of `loaded` are created with.
    pub fn linker(&self, loaded: &LoadedPlugin) -> &Linker<HostState> {
        &self.flavour(loaded.uses_async).linker
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
        // The plain engine first; the async one only for what needs it.
        let (component, cached, uses_async) = match self.compile_cached(false, bytes, &digest) {
            Ok((component, cached)) => (component, cached, false),
            // A compile bomb is not given a second compile.
            Err(plain) if plain.downcast_ref::<CompileTimeout>().is_some() => {
                return Err(invalid(format!("{plain:#}")));
            }
            Err(plain) => match self.compile_cached(true, bytes, &digest) {
                Ok((component, cached)) => {
                    tracing::info!(
                        plugin = name,
                        "the component needs the component model's async support: compiled for the engine that has it"
                    );
                    (component, cached, true)
                }
                Err(_) => {
                    return Err(invalid(format!(
                        "not a valid WebAssembly component: {plain:#}"
                    )));
                }
            },
        };
        let engine = &self.flavour(uses_async).engine;
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
            ty.exports(engine).any(|(name, item)| {
                name == iface
                    && matches!(&item.ty, ComponentItem::ComponentInstance(i)
                            if i.exports(engine).any(|(n, _)| n == func))
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
        self.flavour(uses_async)
            .linker
            .instantiate_pre(&component)
            .map_err(|e| {
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
            uses_async,
        })
    }

    /// Writes the machine code of `loaded` to the compile cache, unless it
    /// came from there or caching is off. Called only for a plugin that
    /// passed every check, so a refused candidate is never cached.
    pub fn remember(&self, loaded: &LoadedPlugin) {
        if let (Some(cache), false) = (&self.flavour(loaded.uses_async).cache, loaded.cached) {
            cache.put(&loaded.digest, &loaded.component);
        }
    }

    /// The cached machine code of `digest` if the cache holds a valid entry,
    /// else `bytes` compiled (within the compile timeout).
    fn compile_cached(
        &self,
        uses_async: bool,
        bytes: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, bool)> {
        let flavour = self.flavour(uses_async);
        let engine = &flavour.engine;
        if let Some(component) = flavour.cache.as_ref().and_then(|c| c.get(engine, digest)) {
            return Ok((component, true));
        }
        Ok((self.compile(engine, bytes)?, false))
    }

    /// Compiles `bytes` on a thread of its own, waiting at most the compile
    /// timeout.
    fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let (tx, rx) = std::sync::mpsc::channel();
        let engine = engine.clone();
        let bytes = bytes.to_vec();
        std::thread::Builder::new()
            .name("sluice-compile".into())
            .spawn(move || {
                let _ = tx.send(Component::new(&engine, &bytes));
            })?;
        let limit = self.inner.compile_timeout;
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| Err(wasmtime::Error::new(CompileTimeout(limit))))
    }
}

/// A compile that ran past [`EngineOptions::compile_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("compiling it took longer than {0:?} (the compile timeout); refused")]
struct CompileTimeout(Duration);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A component using an intrinsic of the async component model.
    const ASYNC_COMPONENT: &str = "(component (core func (canon backpressure.inc)))";
    const PLAIN_COMPONENT: &str = "(component (core module))";

    #[test]
    fn only_a_component_that_needs_it_is_compiled_with_async_support() {
        let engine = PluginEngine::new().unwrap();
        let digest = |text: &str| super::digest(text.as_bytes());
        assert!(
            engine
                .compile_cached(false, PLAIN_COMPONENT.as_bytes(), &digest(PLAIN_COMPONENT))
                .is_ok()
        );
        let refused = engine
            .compile_cached(false, ASYNC_COMPONENT.as_bytes(), &digest(ASYNC_COMPONENT))
            .map(drop)
            .unwrap_err();
        assert!(format!("{refused:#}").contains("async"), "{refused:#}");
        engine
            .compile_cached(true, ASYNC_COMPONENT.as_bytes(), &digest(ASYNC_COMPONENT))
            .unwrap();
    }
}
