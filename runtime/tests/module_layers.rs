//! The runtime's top-level modules form layers: none depends on another in
//! a cycle, and the component modules (sources, sinks, channels, lookups)
//! use the shared Kafka client code (`kafka`) rather than each other, and
//! the plugin host does not use the configuration loader.
//!
//! Checked on the source text: every `crate::` path outside comments and
//! outside test code is an edge to the top-level module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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

/// Every non-test `.rs` file under `path` (a file or a directory).
fn sources(path: &Path, out: &mut Vec<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
        return;
    }
    let name = path.file_name().unwrap().to_string_lossy();
    let test_file = name == "tests.rs" || name.ends_with("_tests.rs") || name == "test_store.rs";
    if name.ends_with(".rs") && !test_file {
        out.push(code(&std::fs::read_to_string(path).unwrap()));
    }
}

/// Top-level module → the top-level modules it uses.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main" | "fuzz") {
            continue;
        }
        let mut code = Vec::new();
        sources(&path, &mut code);
        files.insert(name, code);
    }
    files
        .iter()
        .map(|(module, code)| {
            let uses = code
                .iter()
                .flat_map(|c| crate_paths(c))
                .filter(|used| used != module && files.contains_key(used))
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
fn top_level_modules_depend_on_each_other_without_a_cycle() {
    let graph = graph();
    assert!(
        graph["topology"].contains("sinks") && graph["config"].contains("sources"),
        "the check sees the modules' uses: {graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:?}");
}

#[test]
fn components_share_the_kafka_client_code_not_each_other() {
    let graph = graph();
    for component in ["sources", "sinks", "channels", "lookup"] {
        assert!(graph[component].contains("kafka"), "{component}: {graph:?}");
        for other in [
            "sources", "sinks", "channels", "lookup", "config", "topology",
        ] {
            assert!(
                other == component
                    || !graph[component].contains(other)
                    || component == "sinks" && other == "channels",
                "`{component}` uses `{other}`: {:?}",
                graph[component]
            );
        }
    }
    assert!(!graph["plugin"].contains("config"), "{:?}", graph["plugin"]);
    assert!(!graph["kafka"].contains("sources"), "{:?}", graph["kafka"]);
}

#[test]
fn the_check_finds_a_cycle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["a".to_owned()].into());
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
