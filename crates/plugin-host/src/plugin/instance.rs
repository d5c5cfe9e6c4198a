//! One live plugin instance and the per-batch call into it.
//!
//! The instance is created lazily and recreated after any trap: a component
//! instance that trapped may hold broken state and wasmtime refuses to enter it
//! again, while instantiating a compiled component costs well under a
//! millisecond. The plugin's output is checked before the host uses it:
//! malformed output fails the batch exactly like a trap.

use std::sync::Arc;

use sluice_batch::{BatchBuf, OutcomeEntry, STRIDE, decode_outcomes};
use wasmtime::component::{Func, WasmStr};
use wasmtime::{Store, Trap};

use super::bindings::{BatchRef, BatchResult, GuestError};
use super::engine::{LoadedPlugin, PluginEngine, export_of};
use super::guarded_imports::{MAX_LOOKUP_KEY_BYTES, MAX_LOOKUP_KEYS};
use super::host::{HostState, Sandbox};
use super::limits::{EPOCH_TICK, EXTRA_LABELS, Limits, MAX_ERROR_MESSAGE, MAX_LABEL_BYTES};

/// Why a batch could not be processed by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    /// The plugin ran past its time budget and was interrupted.
    #[error("exceeded its time budget of {0:?}")]
    Timeout(std::time::Duration),
    /// The plugin trapped (panic, out-of-bounds access, memory cap...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin returned `plugin-error` for the whole batch.
    #[error("failed the batch: {0}")]
    Returned(String),
    /// The plugin returned a result that breaks the contract.
    #[error("returned malformed output: {0}")]
    Malformed(String),
    /// A fresh instance could not be created.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl PluginFailure {
    /// Short stable name, for metrics and headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Trap(_) => "trap",
            Self::Returned(_) => "error",
            Self::Malformed(_) => "malformed",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// A plugin's checked answer for one batch.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    /// One entry per input event.
    pub outcomes: Vec<OutcomeEntry>,
    /// Replacement events referenced by `outcomes`.
    pub replacements: BatchBuf,
    /// Route names and dead-letter reasons referenced by `outcomes`.
    pub labels: Vec<String>,
}

struct Live {
    store: Store<HostState>,
    func: Func,
}

/// A named plugin with its limits and (lazily) a live instance.
pub struct PluginInstance {
    engine: PluginEngine,
    plugin: LoadedPlugin,
    name: Arc<str>,
    config_json: Arc<str>,
    sandbox: Sandbox,
    live: Option<Live>,
}

impl PluginInstance {
    /// Prepares plugin `name` from a loaded file; `config_json` is what its
    /// `host.config` import returns.
    pub fn new(
        engine: PluginEngine,
        plugin: LoadedPlugin,
        name: &str,
        config_json: String,
        limits: Limits,
    ) -> Self {
        Self {
            engine,
            plugin,
            name: name.into(),
            config_json: config_json.into(),
            sandbox: Sandbox {
                limits,
                ..Sandbox::default()
            },
            live: None,
        }
    }

    /// Prepares plugin `name` to run in `sandbox` (limits and grants).
    pub fn sandboxed(
        engine: PluginEngine,
        plugin: LoadedPlugin,
        name: &str,
        config_json: String,
        sandbox: Sandbox,
    ) -> Self {
        Self::new(engine, plugin, name, config_json, sandbox.limits).with_sandbox(sandbox)
    }

    /// Runs the plugin in `sandbox` (limits and grants) instead of the
    /// default one (no grants).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self.live = None;
        self
    }

    /// The sandbox the plugin runs in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The loaded plugin version.
    pub fn loaded(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The plugin's configuration as JSON.
    pub fn config_json(&self) -> &Arc<str> {
        &self.config_json
    }

    /// The plugin's name in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the plugin file this instance runs.
    pub fn digest(&self) -> &str {
        &self.plugin.digest
    }

    /// Creates the live instance now (normally done by the first call), so a
    /// plugin that traps while starting is reported at startup.
    pub(crate) fn warm_up(&mut self) -> Result<(), PluginFailure> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        Ok(())
    }

    fn instantiate(&self) -> Result<Live, PluginFailure> {
        let fail = |e: wasmtime::Error| PluginFailure::Instantiate(format!("{e:#}"));
        let mut store = Store::new(
            self.engine.engine(&self.plugin),
            HostState::new(self.name.clone(), self.config_json.clone(), &self.sandbox),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.sandbox.limits.budget_ticks());
        let deadline = std::time::Instant::now() + self.sandbox.limits.time_budget;
        store.data_mut().set_deadline(deadline);
        let instance = self
            .engine
            .linker(&self.plugin)
            .instantiate(&mut store, &self.plugin.component)
            .map_err(fail)?;
        // As in `call`: a start that outlived its budget (a cut sleep)
        // before the epoch caught up.
        if std::time::Instant::now() >= deadline + EPOCH_TICK {
            return Err(PluginFailure::Timeout(self.sandbox.limits.time_budget));
        }
        let (iface, func_name) = export_of(self.plugin.kind);
        let func = instance
            .get_export_index(&mut store, None, &iface)
            .and_then(|i| instance.get_export_index(&mut store, Some(&i), func_name))
            .and_then(|f| instance.get_func(&mut store, f))
            .ok_or_else(|| {
                PluginFailure::Instantiate(format!("no export `{iface}#{func_name}`"))
            })?;
        Ok(Live { store, func })
    }

    /// Runs the plugin on `batch`. On any failure the instance is discarded
    /// and the next call starts from a fresh one.
    pub fn call(&mut self, batch: &BatchBuf) -> Result<PluginOutput, PluginFailure> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        let Some(live) = self.live.as_mut() else {
            unreachable!("instance was just created");
        };
        live.store
            .set_epoch_deadline(self.sandbox.limits.budget_ticks());
        let deadline = std::time::Instant::now() + self.sandbox.limits.time_budget;
        live.store.data_mut().set_deadline(deadline);
        let fuel = lift_fuel(batch, &self.sandbox.limits);
        live.store.set_hostcall_fuel(fuel);
        let typed = live
            .func
            .typed::<(BatchRef<'_>,), (Result<BatchResult, GuestError>,)>(&live.store)
            .map_err(|e| {
                PluginFailure::Instantiate(format!("export has the wrong signature: {e:#}"))
            })?;
        let arg = BatchRef {
            data: &batch.data,
            index: &batch.index,
        };
        let result = typed.call(&mut live.store, (arg,));
        // The epoch ticker can run slow against the wall clock (a loaded
        // machine: 1% slow is 300 ms over a 30 s budget), and a plugin whose
        // sleep was cut to the budget may return before the epoch catches
        // up: a call that ends a tick past its deadline failed its budget.
        if result.is_ok() && std::time::Instant::now() >= deadline + EPOCH_TICK {
            self.live = None;
            return Err(PluginFailure::Timeout(self.sandbox.limits.time_budget));
        }
        let raw = match result {
            Ok((Ok(raw),)) => raw,
            Ok((Err(e),)) => {
                return Err(PluginFailure::Returned(cut(&e.message, MAX_ERROR_MESSAGE)));
            }
            Err(e) => {
                self.live = None;
                return Err(match e.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => {
                        PluginFailure::Timeout(self.sandbox.limits.time_budget)
                    }
                    // wasmtime's own words for running out of lift fuel (its
                    // error type is private): the output was refused before
                    // it was copied.
                    _ if format!("{e:#}").contains("fuel allocated for hostcalls") => {
                        PluginFailure::Malformed(format!(
                            "output over its limits: more than {fuel} bytes to copy out of the plugin at once (its output, or one host call's arguments; replacements and labels at most {} bytes, a label at most {MAX_LABEL_BYTES})",
                            self.sandbox.limits.output_bytes(batch.data.len())
                        ))
                    }
                    _ => PluginFailure::Trap(format!("{e:#}")),
                });
            }
        };
        let (outcomes, replacements, labels) = check_output(raw, batch, &self.sandbox.limits)?;
        let outcomes = decode_outcomes(&outcomes, batch.len(), replacements.len(), labels.len())
            .map_err(|e| PluginFailure::Malformed(e.to_string()))?;
        Ok(PluginOutput {
            outcomes,
            replacements,
            labels,
        })
    }
}

/// What wasmtime may copy out of the plugin's memory for one call: its
/// result (outcome words, replacement events and labels within the bounds
/// [`check_output`] then checks) and, on its own, each host call the plugin
/// makes during it. wasmtime counts this "hostcall fuel" before it copies
/// each string and list, so many labels pointing at the same guest bytes
/// (lifted one copy each) cost the host no more than this (at least the
/// ~41 MB of the largest allowed `get-many`), instead of up to the 128 MiB
/// wasmtime allows by default, or far more.
fn lift_fuel(input: &BatchBuf, limits: &Limits) -> usize {
    let outcome_words = input.len() * sluice_batch::OUTCOME_STRIDE;
    let index_words = limits.output_events(input.len()) * STRIDE;
    // A lifted `list<string>` is charged per element at the host's size of
    // one unlifted string, then per byte of each string.
    let label_entries = (input.len() + EXTRA_LABELS) * std::mem::size_of::<WasmStr>();
    let result =
        (outcome_words + index_words) * 4 + label_entries + limits.output_bytes(input.data.len());
    // The same fuel serves each host call: room for the largest `get-many`
    // its own check allows, so that an oversized request is refused by that
    // check, with its own words, before its keys are copied.
    let lookup = MAX_LOOKUP_KEYS * (std::mem::size_of::<WasmStr>() + MAX_LOOKUP_KEY_BYTES);
    result.max(lookup)
}

/// The first `max` bytes of `message` (at a character boundary), saying
/// how much was cut.
fn cut(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes cut)",
        &message[..end],
        message.len() - end
    )
}

/// A call's output once its sizes are within `limits` for the `input`
/// batch: outcome words for exactly the input's events, replacements and
/// labels within the output bound ([`Limits::output_bytes`],
/// [`Limits::output_events`]), at most one label per input event plus
/// [`EXTRA_LABELS`], none over [`MAX_LABEL_BYTES`]. What the host then
/// builds from it (a reason header per dead-lettered event, the next stage's
/// batch) is bounded by these, not by what the plugin asked for.
///
/// The checks run on the lifted output: wasmtime runs the guest's
/// post-return (which frees the output in its memory) inside the call, so
/// the unlifted `WasmList`/`WasmStr` forms would point at freed memory.
/// Lifting itself is bounded by [`lift_fuel`], which wasmtime checks before
/// it copies each piece.
fn check_output(
    raw: BatchResult,
    input: &BatchBuf,
    limits: &Limits,
) -> Result<(Vec<u32>, BatchBuf, Vec<String>), PluginFailure> {
    let over = |what: String| PluginFailure::Malformed(format!("output over its limits: {what}"));
    let expected = input.len() * sluice_batch::OUTCOME_STRIDE;
    if raw.outcomes.len() != expected {
        return Err(PluginFailure::Malformed(format!(
            "{} outcome words for {} events; expected {expected}",
            raw.outcomes.len(),
            input.len()
        )));
    }
    let max_bytes = limits.output_bytes(input.data.len());
    let max_words = limits.output_events(input.len()) * STRIDE;
    if raw.replacements.index.len() > max_words {
        return Err(over(format!(
            "{} replacement events for {} input events; at most {}",
            raw.replacements.index.len() / STRIDE,
            input.len(),
            max_words / STRIDE
        )));
    }
    let max_labels = input.len() + EXTRA_LABELS;
    if raw.labels.len() > max_labels {
        return Err(over(format!(
            "{} labels for {} events; at most {max_labels}",
            raw.labels.len(),
            input.len()
        )));
    }
    if let Some(long) = raw.labels.iter().find(|l| l.len() > MAX_LABEL_BYTES) {
        return Err(over(format!(
            "a label (route or dead-letter reason) of {} bytes; at most {MAX_LABEL_BYTES}",
            long.len()
        )));
    }
    let total = raw.replacements.data.len() + raw.labels.iter().map(String::len).sum::<usize>();
    if total > max_bytes {
        return Err(over(format!(
            "{total} bytes of replacements and labels for {} bytes of input; at most {max_bytes} (output_ratio {})",
            input.data.len(),
            limits.output_ratio
        )));
    }
    let replacements = BatchBuf::from_parts(raw.replacements.data, raw.replacements.index)
        .map_err(|e| PluginFailure::Malformed(format!("replacements: {e}")))?;
    Ok((raw.outcomes, replacements, raw.labels))
}
