//! Host bindings generated from `wit/` — the only `bindgen!` call in the host.
//!
//! Generated for the `imports` world (the `types`, `host` and `lookup` interfaces every
//! plugin may import). The three processor worlds export functions of the same
//! shape, so the host looks their export up by interface name at load time
//! instead of generating three sets of bindings.

wasmtime::component::bindgen!({
    path: "../../guest-sdk/wit",
    world: "imports",
});

pub use self::sluice::plugin::host::{Host, Level};
pub use self::sluice::plugin::lookup::{Host as LookupHost, LookupError};
pub use self::sluice::plugin::types::{BatchResult, PluginError as GuestError};

/// The borrowed form of the WIT `batch` record, so a host batch is lowered into
/// the guest without first being copied into owned vectors.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct BatchRef<'a> {
    /// All variable-length bytes.
    pub data: &'a [u8],
    /// Thirteen words per event.
    pub index: &'a [u32],
}
