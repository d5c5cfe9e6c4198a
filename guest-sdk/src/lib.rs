//! Write Sluice plugins in Rust: one function per plugin.
//!
//! A plugin is a WebAssembly component that the Sluice host calls once per
//! batch of events (the contract is the package `sluice:plugin@0.1.0` in this
//! crate's `wit/`). With this crate you write
//! a function for *one* event and mark it with [`interceptor`], [`decoder`] or
//! [`router`]; the macro generates the component bindings and export, and the
//! SDK runs your function over each batch. Your crate depends only on
//! `sluice-guest` (plus `serde` if it has a configuration).
//!
//! ```
//! use sluice_guest::{Event, Outcome};
//!
//! /// Drops heartbeats and tags everything else.
//! #[sluice_guest::interceptor]
//! fn tag(event: &mut Event) -> Outcome {
//!     if event.body() == b"heartbeat" {
//!         return Outcome::Drop;
//!     }
//!     event.set_header("seen-by", "tag");
//!     Outcome::Keep
//! }
//!
//! // Native unit test through the real batch encoding, no wasm runtime:
//! use sluice_guest::testing::{self, TestEvent};
//! let out = testing::run(tag, &[TestEvent::new("heartbeat"), TestEvent::new("hi")]);
//! assert_eq!(out[0].outcome, Outcome::Drop);
//! assert_eq!(out[1].event.header_str("seen-by"), Some("tag"));
//! ```
//!
//! Build the component with
//! `cargo build --target wasm32-wasip2 --profile plugin` and a crate type of
//! `["cdylib", "rlib"]` (the `rlib` is for native tests).
//!
//! Depend on the crate like on any other (`sluice-guest = "0.1"`, or with a
//! `path` to a Sluice checkout's `guest-sdk/` as well): it carries the WIT
//! it generates its bindings from, so a packaged copy builds on its own, and
//! your crate never reads WIT itself.
//!
//! # The plugin function
//!
//! The function takes `&mut Event` and returns either [`Outcome`] or
//! `Result<Outcome, E>` with `E: Into<Error>` (any [`Handler`]). Per event:
//!
//! | returned | event not changed | event changed through a setter |
//! |---|---|---|
//! | [`Outcome::Keep`] | passed on as is, no copy | replacement passed on |
//! | [`Outcome::Drop`] | discarded | discarded |
//! | [`Outcome::RouteTo`] | sent to that channel | replacement sent there |
//! | [`Outcome::DeadLetter`] | original dead-lettered with the reason | original dead-lettered (changes ignored) |
//!
//! Dead-letter events you cannot handle, with a reason; never drop them
//! silently.
//!
//! # Configuration and failing a batch
//!
//! The plugin's `config` table from the Sluice configuration reaches the
//! plugin as JSON. [`config::<T>()`](config) deserializes it into your
//! `serde` type once and caches it (failures too); its error names the key
//! that is wrong. Returning `Err` fails the *whole batch*: the host receives a
//! `plugin-error` with the message and applies the plugin's failure policy to
//! every event. That is what an invalid configuration should do:
//!
//! ```
//! use serde::Deserialize;
//! use sluice_guest::{Error, Event, Outcome};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Largest body accepted, in bytes.
//!     max_bytes: usize,
//! }
//!
//! #[sluice_guest::interceptor]
//! fn limit(event: &mut Event) -> Result<Outcome, Error> {
//!     let config: &Config = sluice_guest::config()?;
//!     if event.body().len() > config.max_bytes {
//!         return Ok(Outcome::dead_letter("body too large"));
//!     }
//!     Ok(Outcome::Keep)
//! }
//!
//! use sluice_guest::testing::{self, TestEvent};
//! testing::set_config(r#"{"max_bytes": "ten"}"#);
//! let err = testing::try_run(limit, &[TestEvent::new("x")]).unwrap_err();
//! assert_eq!(
//!     err.message(),
//!     r#"invalid plugin config: max_bytes: invalid type: string "ten", expected usize"#
//! );
//! ```
//!
//! # Lookup tables and batch preparation
//!
//! [`lookup`] reads the tables the host keeps current (customers, stores,
//! ...), if the plugin's team is granted them. To look up the keys of a whole
//! batch with one host call, give the attribute a prepare function that runs
//! once per batch with all its events and [`lookup::prefetch`]es them:
//! `#[sluice_guest::interceptor(prepare = my_prepare)]`; see [`lookup`] and
//! [`Prepare`].
//!
//! # Native builds
//!
//! Outside wasm there is no host: [`log`] writes to stderr, the
//! configuration is what [`testing::set_config`] set on the current thread,
//! and the lookup tables what [`testing::set_lookup`] set.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
mod bindings;
mod driver;
mod event;
mod host;
pub mod lookup;
#[cfg(not(target_arch = "wasm32"))]
mod native_lookup;
mod outcome;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use event::{Event, Headers};
pub use host::{config, config_json, log, parse_config};
pub use outcome::{
    Error, Handler, IntoOutcome, IntoPrepared, Outcome, Prepare, WithPrepare, with_prepare,
};

/// Marks the function of an **interceptor** plugin (world `interceptor`):
/// enrich, mask, filter or dead-letter events between decoder and router.
///
/// The function must be a [`Handler`]: `fn(&mut Event) -> Outcome` or
/// `fn(&mut Event) -> Result<Outcome, E>` with `E: Into<Error>`. Use the
/// attribute once per crate.
///
/// Its one optional argument, `prepare = <function>`, names a [`Prepare`]
/// function (`fn(&[Event]) -> Result<(), Error>`) that runs once per batch,
/// with all its events, before the plugin function runs for each: the place
/// to [`lookup::prefetch`] the batch's lookup keys. Tests run the pair with
/// [`with_prepare`].
pub use sluice_guest_macros::interceptor;

/// Marks the function of a **decoder** plugin (world `decoder`): turn raw
/// bodies into structured events. Runs first in a source's chain.
/// Dead-letter malformed input with a reason rather than dropping it.
///
/// The function must be a [`Handler`], and `prepare = <function>` is
/// accepted, as for [`interceptor`].
pub use sluice_guest_macros::decoder;

/// Marks the function of a **router** plugin (world `router`): pick a
/// channel per event with [`Outcome::RouteTo`]; [`Outcome::Keep`] sends the
/// event to the source's default channels. Runs last in a source's chain.
///
/// The function must be a [`Handler`], and `prepare = <function>` is
/// accepted, as for [`interceptor`].
pub use sluice_guest_macros::router;

/// Used by the code the attribute macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{Handler, Prepare};

    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::sluice::plugin::{host, lookup, types};
    /// One module per plugin world: its `Guest` trait and `export!` macro.
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::{decoder, interceptor, router};

    /// Compile-time check that a plugin function has a usable signature.
    #[inline(always)]
    pub fn assert_handler<H: Handler>(_: H) {}

    /// Compile-time check that a prepare function has a usable signature.
    #[inline(always)]
    pub fn assert_prepare<P: Prepare>(_: P) {}

    /// Runs `handler` over a batch from the host.
    #[cfg(target_arch = "wasm32")]
    pub fn run<H: Handler>(
        batch: types::Batch,
        handler: H,
    ) -> Result<types::BatchResult, types::PluginError> {
        match crate::driver::process(&batch.data, &batch.index, handler) {
            Ok(result) => Ok(types::BatchResult {
                outcomes: result.outcomes,
                replacements: types::Batch {
                    data: result.replacements.data,
                    index: result.replacements.index,
                },
                labels: result.labels,
            }),
            Err(e) => Err(types::PluginError {
                message: e.into_message(),
            }),
        }
    }
}
