//! Host imports linked by hand over the generated ones, where the generated
//! code would do something unbounded before the host could check it:
//!
//! - WASI's monotonic-clock subscriptions, the only host calls a sandboxed
//!   plugin can block in, are cut to the call's time budget;
//! - `lookup.get-many` checks its request before copying it out of the
//!   plugin's memory.
//!
//! Each is defined with the linker's shadowing on, replacing the generated
//! definition of the same name; the tests in `runtime/tests`
//! (`blocking_host_calls`, `output_amplification`) fail if a name stops
//! matching.

use super::bindings::LookupHost;
use super::host::HostState;

/// The WASI clocks interface as `wasmtime-wasi` links it (its WIT package
/// version); guests importing any 0.2.x version are served by it.
pub(crate) const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces WASI's `monotonic-clock.subscribe-duration` and
/// `subscribe-instant` (the only host calls a sandboxed plugin can block in:
/// it has no files, sockets or stdin) with ones whose pollables fire no later
/// than the call's time budget allows. Epoch interruption only stops wasm
/// code: a plugin sleeping an hour inside `poll` would otherwise hold its
/// source, and a self-test the watcher thread, for that hour. Cut short, the
/// sleep returns, the guest is back in wasm past its deadline and traps: the
/// batch fails as a timeout.
pub(crate) fn link_bounded_clocks(
    linker: &mut wasmtime::component::Linker<HostState>,
    interface: &str,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::clocks::WasiClocksView;
    use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as Monotonic;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(interface)?;
    let linked = clock
        .func_wrap(
            "subscribe-duration",
            |mut store: wasmtime::StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
                let wait = store
                    .data()
                    .bounded_wait(std::time::Duration::from_nanos(nanos));
                let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                Ok((Monotonic::subscribe_duration(
                    &mut store.data_mut().clocks(),
                    nanos,
                )?,))
            },
        )
        .and_then(|()| {
            clock.func_wrap(
                "subscribe-instant",
                |mut store: wasmtime::StoreContextMut<'_, HostState>, (when,): (u64,)| {
                    let now = Monotonic::now(&mut store.data_mut().clocks())?;
                    let wait = store
                        .data()
                        .bounded_wait(std::time::Duration::from_nanos(when.saturating_sub(now)));
                    let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    Ok((Monotonic::subscribe_duration(
                        &mut store.data_mut().clocks(),
                        nanos,
                    )?,))
                },
            )
        });
    linker.allow_shadowing(false);
    linked
}

/// Most keys one `get-many` call may ask for.
pub const MAX_LOOKUP_KEYS: usize = 10_000;
/// Longest key a `get-many` call may ask for, in bytes.
pub const MAX_LOOKUP_KEY_BYTES: usize = 4096;

/// Replaces the generated `lookup.get-many` import with one that checks the
/// request before copying it out of the plugin's memory: the generated one
/// lifts every key first, and a million keys may all point at the same
/// megabytes of guest memory. A request over [`MAX_LOOKUP_KEYS`] keys or with
/// a key over [`MAX_LOOKUP_KEY_BYTES`] traps: the batch fails, counted and
/// logged, and the failure policy applies.
pub(crate) fn link_bounded_get_many(
    linker: &mut wasmtime::component::Linker<HostState>,
    interface: &str,
) -> wasmtime::Result<()> {
    use wasmtime::component::{WasmList, WasmStr};
    linker.allow_shadowing(true);
    let linked = linker.instance(interface)?.func_wrap(
        "get-many",
        |mut store: wasmtime::StoreContextMut<'_, HostState>,
         (table, keys): (String, WasmList<WasmStr>)| {
            if keys.len() > MAX_LOOKUP_KEYS {
                wasmtime::bail!(
                    "lookup.get-many asked for {} keys; at most {MAX_LOOKUP_KEYS} per call",
                    keys.len()
                );
            }
            let handles = keys
                .iter(&mut store)?
                .collect::<wasmtime::Result<Vec<WasmStr>>>()?;
            let mut owned = Vec::with_capacity(handles.len());
            for key in &handles {
                let key = key.to_str(&store)?;
                if key.len() > MAX_LOOKUP_KEY_BYTES {
                    wasmtime::bail!(
                        "lookup.get-many asked for a key of {} bytes; at most {MAX_LOOKUP_KEY_BYTES}",
                        key.len()
                    );
                }
                owned.push(key.into_owned());
            }
            Ok((LookupHost::get_many(store.data_mut(), table, owned),))
        },
    );
    linker.allow_shadowing(false);
    linked
}
