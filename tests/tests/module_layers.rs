//! The runtime's crates form layers (`sluice-core` ← `sluice-kafka` ←
//! `sluice-plugin-host` ← `sluice`), each using only the ones below it, and
//! the modules of each crate form layers: none depends on another in a
//! cycle. For the runtime (`runtime/src`, its top-level modules) also: the
//! component modules (sources, sinks, channels) share the Kafka client code
//! (`sluice-kafka`) instead of reaching into each other. That the plugin host
//! and the lookups do not use the configuration loader, Cargo enforces: their
//! crate is below it. For the Rust guest SDK
//! (`guest-sdk/src`) the check once found `driver` → `lookup` → `testing` →
//! `driver`.
//!
//! Checked on the source text: every `crate::` path outside comments and
//! unit tests is an edge to the module it names, or to the module whose item
//! the crate root re-exports under that name (`pub use a::{B, C as D}`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The identifiers `crate::` paths start with: `crate::a::b` gives `a`,
/// `crate::{a, b::c}` gives `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    fn ident(s: &str) -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
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

/// A file's code without comment lines and without its unit tests.
fn code(source: &str) -> String {
    let source = source
        .find("#[cfg(test)]\nmod tests")
        .map_or(source, |at| &source[..at]);
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code of every non-test `.rs` file under `path` (a file or a directory).
fn sources(path: &Path, out: &mut String) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
        return;
    }
    let name = path.file_name().unwrap().to_string_lossy();
    let test_file = name == "tests.rs" || name.ends_with("_tests.rs") || name == "test_store.rs";
    if name.ends_with(".rs") && !test_file {
        out.push_str(&code(&std::fs::read_to_string(path).unwrap()));
        out.push('\n');
    }
}

/// The top-level modules of the crate at `src` (its files and directories
/// but the roots), each with its code.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main" | "fuzz") {
            continue;
        }
        let mut code = String::new();
        sources(&path, &mut code);
        modules.insert(name, code);
    }
    modules
}

/// Module → the modules it uses, given the crate root's code (`lib`).
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
        .map(|(module, code)| {
            let uses = crate_paths(&self::code(code))
                .into_iter()
                .filter_map(|name| {
                    if modules.contains_key(&name) {
                        Some(name)
                    } else {
                        reexports.get(&name).cloned()
                    }
                })
                .filter(|used| used != module)
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// The names the crate root `lib` gives to other crates' modules, each a
/// layer below this crate: `pub use sluice_core::{event, keys};` gives
/// `event` and `keys`, `pub use sluice_kafka as kafka;` gives `kafka`.
fn lower_layers(lib: &str) -> Vec<String> {
    let lib = code(lib);
    let mut names = Vec::new();
    for (at, _) in lib.match_indices("pub use sluice_") {
        let statement = &lib[at + "pub use ".len()..];
        let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
        if let Some((_, alias)) = statement.split_once(" as ") {
            names.push(alias.trim().to_owned());
        } else if let Some((_, group)) = statement.split_once("::") {
            let group = group.trim_matches(['{', '}', ' ', '\n']);
            names.extend(group.split(',').map(|n| n.trim().to_owned()));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The graph of the crate whose `src` is `dir` (relative to the workspace).
/// Modules of lower crates the root re-exports are nodes too, using
/// nothing of this crate (Cargo refuses a cycle between crates).
fn crate_graph(dir: &str) -> Graph {
    let src = workspace().join(dir);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut modules = modules(&src);
    for layer in lower_layers(&lib) {
        modules.entry(layer).or_default();
    }
    graph(&lib, &modules)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sluice-*` crates the manifest at `dir` (relative to the workspace)
/// depends on, outside its dev-dependencies.
fn sluice_dependencies(dir: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(workspace().join(dir).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .into_iter()
        .flat_map(|d| d.keys())
        .filter(|name| name.starts_with("sluice"))
        .cloned()
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
fn the_runtime_modules_depend_on_each_other_without_a_cycle() {
    let graph = crate_graph("runtime/src");
    assert!(
        graph["topology"].contains("sinks") && graph["config"].contains("sources"),
        "the check sees the modules' uses: {graph:?}"
    );
    assert!(
        graph["sources"].contains("event") && graph["topology"].contains("plugin"),
        "the check sees the uses of lower crates' modules: {graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:?}");
}

#[test]
fn the_runtime_crates_are_layers() {
    // Each crate and the `sluice-*` crates it may use: the layers of the
    // README's "Code structure", lowest first.
    let layers = [
        ("crates/core", vec!["sluice-batch"]),
        ("crates/kafka", vec!["sluice-core"]),
        (
            "crates/plugin-host",
            vec!["sluice-core", "sluice-kafka", "sluice-batch"],
        ),
        (
            "runtime",
            vec![
                "sluice-core",
                "sluice-kafka",
                "sluice-plugin-host",
                "sluice-batch",
            ],
        ),
    ];
    for (dir, allowed) in layers {
        let used = sluice_dependencies(dir);
        let allowed: BTreeSet<String> = allowed.into_iter().map(str::to_owned).collect();
        assert!(
            used.is_subset(&allowed),
            "{dir} uses {:?} beyond its layer",
            used.difference(&allowed).collect::<Vec<_>>()
        );
    }
    assert!(
        sluice_dependencies("crates/kafka").contains("sluice-core"),
        "the check reads the manifests"
    );
    let host = crate_graph("crates/plugin-host/src");
    assert!(host["plugin"].contains("lookup"), "{host:?}");
    assert_eq!(cycle(&host), None, "{host:?}");
}

#[test]
fn runtime_components_share_the_kafka_client_code_not_each_other() {
    let graph = crate_graph("runtime/src");
    let components = ["sources", "sinks", "channels"];
    for component in components {
        assert!(graph[component].contains("kafka"), "{component}: {graph:?}");
        for other in components.iter().chain(&["config", "topology"]) {
            // A sink drains a channel: the one use allowed.
            let allowed = *other == component || (component == "sinks" && *other == "channels");
            assert!(
                allowed || !graph[component].contains(*other),
                "`{component}` uses `{other}`: {:?}",
                graph[component]
            );
        }
    }
    // The lookup tables live in the plugin host's crate, below every
    // component and the loader; they too use the shared Kafka client.
    let mut lookup = String::new();
    sources(
        &workspace().join("crates/plugin-host/src/lookup"),
        &mut lookup,
    );
    assert!(
        lookup.contains("sluice_kafka::"),
        "lookup uses the Kafka client crate"
    );
}

#[test]
fn the_guest_sdk_modules_depend_on_each_other_without_a_cycle() {
    let graph = crate_graph("guest-sdk/src");
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
