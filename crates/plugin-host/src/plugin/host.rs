//! Store data of a plugin instance and the host side of the `host` interface.
//!
//! WASI p2 is linked (Python and Go guests import all of it) with a
//! deny-by-default context: no preopened directories, no environment, no
//! arguments, no sockets or name lookups, and a wall clock stuck at the Unix
//! epoch. A team's [`Sandbox`] grants more: named environment variables, the
//! real wall clock, lookup tables. Guest stdout and stderr are captured line
//! by line into the host log, tagged with the plugin's name; they and
//! `host.log` share the plugin's [`LogGate`] (rate, size, escaping).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{Host, Level, LookupError, LookupHost};
use super::limits::{Limits, StoreCaps};
use super::log_gate::{Admit, LOG_LINES_PER_SECOND, LogGate, clean};
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
    /// Its log budget, shared by every instance of the plugin.
    pub log: LogGate,
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

/// Most WASI resources (streams, pollables, …) one plugin instance may hold
/// at once; wasmtime's default is about a million, each kept across batches
/// for as long as the instance lives. A plugin needs a handful; a push past
/// this fails the host call, and with it the batch (the failure policy
/// applies and the next call runs on a fresh instance).
pub const MAX_WASI_RESOURCES: usize = 4096;

/// Everything a plugin's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Resource limiter of this instance.
    pub limits: StoreCaps,
    plugin: Arc<str>,
    config_json: Arc<str>,
    grants: Grants,
    log: LogGate,
    /// When the call in progress must end (its time budget), if one is.
    deadline: Option<std::time::Instant>,
}

impl HostState {
    /// State for an instance of plugin `plugin` with its config as JSON.
    pub fn new(plugin: Arc<str>, config_json: Arc<str>, sandbox: &Sandbox) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(
            plugin.clone(),
            "stdout",
            sandbox.log.clone(),
        ))
        .stderr(LogStream::new(
            plugin.clone(),
            "stderr",
            sandbox.log.clone(),
        ))
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_WASI_RESOURCES);
        Self {
            wasi,
            table,
            limits: StoreCaps::new(limits),
            plugin,
            config_json,
            grants,
            log: sandbox.log.clone(),
            deadline: None,
        }
    }

    /// Starts a call (or an instantiation) that must end by `deadline`.
    pub(crate) fn set_deadline(&mut self, deadline: std::time::Instant) {
        self.deadline = Some(deadline);
    }

    /// `wait` cut to what is left of the call's time budget (plus one epoch
    /// tick, so the guest is back in wasm code, where the epoch check traps
    /// it, when the budget has run out).
    pub(crate) fn bounded_wait(&self, wait: std::time::Duration) -> std::time::Duration {
        match self.deadline {
            Some(deadline) => wait.min(
                deadline.saturating_duration_since(std::time::Instant::now())
                    + super::limits::EPOCH_TICK,
            ),
            None => wait,
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
        plugin_log(&self.log, &self.plugin, level, "host.log", &message);
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

/// Writes one line a plugin logged (through `host.log` or a captured
/// `stream`), if its [`LogGate`] lets it: escaped, bounded, and preceded by
/// a warning when lines were dropped before it.
fn plugin_log(gate: &LogGate, plugin: &str, level: Level, stream: &str, message: &str) {
    let Admit::Yes { suppressed_before } = gate.admit() else {
        return;
    };
    if suppressed_before > 0 {
        tracing::warn!(
            plugin,
            suppressed = suppressed_before,
            "plugin log lines dropped: over the rate of {LOG_LINES_PER_SECOND} lines/s (plugin.{plugin}.log_suppressed)"
        );
    }
    let message = clean(message);
    match level {
        Level::Trace => tracing::trace!(plugin, stream, "{message}"),
        Level::Debug => tracing::debug!(plugin, stream, "{message}"),
        Level::Info => tracing::info!(plugin, stream, "{message}"),
        Level::Warn => tracing::warn!(plugin, stream, "{message}"),
        Level::Error => tracing::error!(plugin, stream, "{message}"),
    }
}

/// Guest stdout/stderr forwarded to the log one line at a time.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
    gate: LogGate,
}

/// A line longer than this is logged in pieces rather than buffered without bound.
const MAX_LINE: usize = 8 << 10;

impl LogStream {
    fn new(plugin: Arc<str>, stream: &'static str, gate: LogGate) -> Self {
        Self {
            plugin,
            stream,
            pending: Arc::default(),
            gate,
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        plugin_log(
            &self.gate,
            &self.plugin,
            Level::Info,
            self.stream,
            line.trim_end(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_holds_at_most_max_wasi_resources() {
        let mut state = HostState::new("p".into(), "{}".into(), &Sandbox::default());
        for i in 0..MAX_WASI_RESOURCES {
            assert!(state.table.push(i).is_ok(), "resource {i}");
        }
        assert!(state.table.push(0usize).is_err(), "one past the cap");
    }
}
