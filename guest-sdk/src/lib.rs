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

#[cfg(test)]
mod tests {
    //! The modules of `src/` must not depend on each other in a cycle (once
    //! they did: `driver` → `lookup` → `testing` → `driver`). Checked on the
    //! source text: every `crate::` path outside comments, including in test
    //! code, is an edge to the module it names, or to the module whose item
    //! the crate root re-exports under that name.

    use std::collections::{BTreeMap, BTreeSet};

    type Graph = BTreeMap<String, BTreeSet<String>>;

    /// The identifiers a `crate::` path starts with: `crate::a::b` gives `a`,
    /// `crate::{a, b::c}` gives `a` and `b`.
    fn crate_paths(code: &str) -> Vec<&str> {
        fn ident(s: &str) -> &str {
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            &s[..end]
        }
        let mut names = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let Some(group) = rest.strip_prefix('{') else {
                names.push(ident(rest));
                continue;
            };
            let (mut depth, mut item_start) = (0, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        names.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        }
        names
    }

    /// Source without comment lines (docs name modules without using them).
    fn code(source: &str) -> String {
        source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Module → the modules it uses, from `lib.rs` and the other files.
    fn graph(lib: &str, modules: &BTreeMap<String, String>) -> Graph {
        // `pub use module::{A, B as C}` at the root: name → module.
        let mut reexports = BTreeMap::new();
        let lib = code(lib);
        for (at, _) in lib.match_indices("pub use ") {
            let statement = &lib[at + "pub use ".len()..];
            let statement = statement[..statement.find(';').unwrap_or(statement.len())]
                .trim_start_matches("crate::");
            let Some((module, names)) = statement.split_once("::") else {
                continue;
            };
            if !modules.contains_key(module) {
                continue;
            }
            for name in names.trim_matches(['{', '}', ' ', '\n']).split(',') {
                let name = name.rsplit(" as ").next().unwrap_or(name).trim();
                if !name.is_empty() {
                    reexports.insert(name.to_owned(), module.to_owned());
                }
            }
        }
        modules
            .iter()
            .map(|(module, source)| {
                let uses = crate_paths(&code(source))
                    .into_iter()
                    .filter_map(|name| {
                        if modules.contains_key(name) {
                            Some(name.to_owned())
                        } else {
                            reexports.get(name).cloned()
                        }
                    })
                    .filter(|used| used != module)
                    .collect();
                (module.clone(), uses)
            })
            .collect()
    }

    /// A cycle of `graph` as the modules along it, if there is one.
    fn cycle(graph: &Graph) -> Option<Vec<String>> {
        fn visit(
            graph: &Graph,
            module: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|m| m == module) {
                let mut cycle = path[at..].to_vec();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            if done.contains(module) {
                return None;
            }
            path.push(module.to_owned());
            for used in graph.get(module).into_iter().flatten() {
                if let Some(cycle) = visit(graph, used, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            done.insert(module.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_modules_depend_on_each_other_without_a_cycle() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut modules = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.extension().is_some_and(|e| e == "rs") && stem != "lib" {
                modules.insert(stem, std::fs::read_to_string(&path).unwrap());
            }
        }
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let graph = graph(&lib, &modules);
        assert!(
            graph["driver"].contains("lookup") && graph["testing"].contains("driver"),
            "the check sees the modules' uses: {graph:?}"
        );
        assert_eq!(cycle(&graph), None, "{graph:?}");
    }

    #[test]
    fn a_cycle_through_a_reexport_is_found() {
        let modules = BTreeMap::from([
            ("a".to_owned(), "use crate::{b::f, Outcome};".to_owned()),
            (
                "b".to_owned(),
                "// crate::c\nfn f() -> crate::Thing {}".to_owned(),
            ),
            ("c".to_owned(), "use crate::a;".to_owned()),
        ]);
        let lib = "pub use a::{\n    Thing,\n    Other as Outcome,\n};";
        assert_eq!(
            graph(lib, &modules)["b"],
            BTreeSet::from(["a".to_owned()]),
            "`crate::Thing` is `a::Thing`; comments do not count"
        );
        assert_eq!(
            cycle(&graph(lib, &modules)),
            Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
        );
    }
}
