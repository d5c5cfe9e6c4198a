//! Store data of a plugin instance and the host side of the `host` interface.
//!
//! WASI p2 is linked (Python and Go guests import all of it) with a
//! deny-by-default context: no preopened directories, no environment, no
//! arguments, no sockets or name lookups, and a wall clock stuck at the Unix
//! epoch. A team's [`Sandbox`] grants more: named environment variables, the
//! real wall clock, lookup tables. Guest stdout and stderr are captured line
//! by line into the host log, tagged with the plugin's name.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{Host, Level, LookupError, LookupHost};
use super::limits::Limits;
use crate::lookup::Grants;

/// What one plugin instance may reach: its limits and its team's grants.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Memory cap and time budget.
    pub limits: Limits,
    /// Lookup tables it may read.
    pub grants: Grants,
    /// Environment variables it sees (name, value).
    pub env: Arc<[(String, String)]>,
    /// Whether it sees the real wall clock.
    pub clock: bool,
}

/// The wall clock of a plugin without the `clock` grant: always the epoch.
struct EpochClock;

impl HostWallClock for EpochClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Everything a plugin's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limiter of this instance.
    pub limits: StoreLimits,
    plugin: Arc<str>,
    config_json: Arc<str>,
    grants: Grants,
}

impl HostState {
    /// State for an instance of plugin `plugin` with its config as JSON.
    pub fn new(plugin: Arc<str>, config_json: Arc<str>, sandbox: &Sandbox) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(plugin.clone(), "stdout"))
            .stderr(LogStream::new(plugin.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .envs(&sandbox.env);
        if !sandbox.clock {
            wasi.wall_clock(EpochClock);
        }
        let limits = &sandbox.limits;
        let grants = sandbox.grants.clone();
        let wasi = wasi.build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            config_json,
            grants,
        }
    }

    fn denied(&self, table: &str) -> LookupError {
        tracing::warn!(
            plugin = &*self.plugin,
            table,
            "lookup denied: no table of this name is granted to the plugin's team"
        );
        LookupError::Denied
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }
}

impl super::bindings::sluice::plugin::types::Host for HostState {}

impl LookupHost for HostState {
    fn get_many(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> Result<Vec<Option<String>>, LookupError> {
        match self.grants.table(&table) {
            Some(t) => Ok(t.get_many(&keys)),
            None => Err(self.denied(&table)),
        }
    }

    fn get(&mut self, table: String, key: String) -> Result<Option<String>, LookupError> {
        match self.grants.table(&table) {
            Some(t) => Ok(t.get(&key)),
            None => Err(self.denied(&table)),
        }
    }
}

/// Guest stdout/stderr forwarded to the log one line at a time.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

/// A line longer than this is logged in pieces rather than buffered without bound.
const MAX_LINE: usize = 8 << 10;

impl LogStream {
    fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        Self {
            plugin,
            stream,
            pending: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(
            plugin = &*self.plugin,
            stream = self.stream,
            "{}",
            line.trim_end()
        );
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(buf);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            self.emit(&line);
        }
        if pending.len() > MAX_LINE {
            let line = std::mem::take(&mut *pending);
            self.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            let line = std::mem::take(&mut *pending);
            self.emit(&line);
        }
        Poll::Ready(Ok(()))
    }
}
