//! `sluice import flume` on the corpus of Flume agent configurations in
//! `tests/flume/corpus/` (modelled on the examples of the Flume user guide):
//! each imports with exit 0, its report lists what its header says cannot
//! be carried over (`--strict` then exits 1, otherwise 0), the output
//! passes `sluice validate`, and every plugin configuration it writes is
//! accepted by the plugin itself. Files that cannot be imported exit 2
//! with the file and line.
//!
//! Each corpus file says in its header what to expect:
//!
//! ```text
//! # sluice-import-test: agent=a1
//! # sluice-import-test: unmapped=hdfs.path zookeeperConnect
//! ```
//!
//! `unmapped` lists fragments of the keys that must be reported as not
//! carried over (none: nothing may be). The plugins must be built first
//! (`scripts/build-plugins.sh`).

mod util;

use std::path::PathBuf;
use std::process::{Command, Output};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory of the built plugins the imports reference.
fn plugin_dir() -> PathBuf {
    for name in ["flume_interceptors", "timestamp", "header_router"] {
        util::plugin(name);
    }
    util::plugin("timestamp")
        .parent()
        .expect("plugin directory")
        .canonicalize()
        .expect("plugin directory exists")
}

/// One corpus file and what its header expects.
#[derive(Debug)]
struct Case {
    file: PathBuf,
    agent: String,
    unmapped: Vec<String>,
}

impl Case {
    fn name(&self) -> String {
        self.file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

fn corpus() -> Vec<Case> {
    let dir = repo().join("tests/flume/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "properties"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut agent = None;
            let mut unmapped = Vec::new();
            for line in text.lines() {
                let Some(spec) = line
                    .trim_start_matches(['#', '!', ' '])
                    .strip_prefix("sluice-import-test:")
                else {
                    continue;
                };
                let spec = spec.trim();
                if let Some(a) = spec.strip_prefix("agent=") {
                    agent = Some(a.trim().to_owned());
                } else if let Some(u) = spec.strip_prefix("unmapped=") {
                    unmapped = u.split_whitespace().map(str::to_owned).collect();
                }
            }
            let agent = agent.unwrap_or_else(|| {
                panic!("{}: no `sluice-import-test: agent=` line", file.display())
            });
            Case {
                file,
                agent,
                unmapped,
            }
        })
        .collect()
}

/// `sluice import flume` of `case` with `args`.
fn import(case: &Case, args: &[&std::ffi::OsStr]) -> Output {
    sluice()
        .args(["import", "flume"])
        .arg(&case.file)
        .args(["--agent", &case.agent])
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(args)
        .output()
        .unwrap()
}

/// The report's lines under its "not carried over" heading.
fn unmapped_lines(stderr: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in stderr.lines() {
        if !line.starts_with(' ') {
            inside = line.contains("not carried over");
            continue;
        }
        if inside {
            lines.push(line);
        }
    }
    lines
}

/// The environment variables an output reads (`${VAR}` references,
/// `token_env` and `{ env = ... }` values), each with a value of the kind
/// its name suggests (a port, an address, a word).
fn env_of(toml: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(
        r#"\$\{([A-Za-z0-9_]+)\}|\benv = "([A-Za-z0-9_]+)"|token_env = "([A-Za-z0-9_]+)""#,
    )
    .unwrap();
    let mut vars: Vec<(String, String)> = re
        .captures_iter(toml)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| {
            let name = m.as_str();
            let value = if name.contains("PORT") {
                "5514".to_owned()
            } else if name.contains("BIND") || name.contains("_IP") || name.contains("ADDR") {
                "127.0.0.1".to_owned()
            } else {
                format!("value-of-{}", name.to_ascii_lowercase())
            };
            (name.to_owned(), value)
        })
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

#[test]
fn the_corpus_covers_a_dozen_agents() {
    let cases = corpus();
    assert!(cases.len() >= 12, "only {} corpus files", cases.len());
}

#[test]
fn every_corpus_file_imports_reports_and_validates() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case.name();
        let output = out_dir.path().join(format!("{name}.toml"));
        let run = import(&case, &["--output".as_ref(), output.as_os_str()]);
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(0), "{name}: {stderr}");
        assert!(
            run.stdout.is_empty(),
            "{name}: the configuration goes to --output"
        );
        assert!(
            stderr.starts_with(&format!("imported agent `{}` of ", case.agent)),
            "{name}: {stderr}"
        );
        // The report lists what the header expects, each with file:line.
        let unmapped = unmapped_lines(&stderr);
        for key in &case.unmapped {
            assert!(
                unmapped.iter().any(|l| l.contains(key.as_str())),
                "{name}: `{key}` is not reported as unmapped:\n{stderr}"
            );
        }
        if case.unmapped.is_empty() {
            assert!(
                unmapped.is_empty(),
                "{name}: unexpected unmapped items:\n{stderr}"
            );
        }
        let file = case.file.display().to_string();
        assert!(
            unmapped.iter().all(|l| l.trim_start().starts_with(&file)),
            "{name}: every item names the file: {unmapped:?}"
        );
        // --strict fails exactly when something is unmapped.
        let strict = import(
            &case,
            &[
                "--strict".as_ref(),
                "--output".as_ref(),
                out_dir.path().join("strict.toml").as_os_str(),
            ],
        );
        let want = if case.unmapped.is_empty() { 0 } else { 1 };
        assert_eq!(
            strict.status.code(),
            Some(want),
            "{name}: --strict: {}",
            String::from_utf8_lossy(&strict.stderr)
        );
        // The output is a valid Sluice configuration.
        let text = std::fs::read_to_string(&output).unwrap();
        let validate = sluice()
            .arg("validate")
            .arg(&output)
            .envs(env_of(&text))
            .output()
            .unwrap();
        if !validate.status.success() {
            failures.push(format!(
                "{name}: sluice validate failed:\n{}",
                String::from_utf8_lossy(&validate.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn generated_plugin_configs_are_accepted_by_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"body\":\"2012-10-18 18:47 INFO 1234567812345678 hello\",\"headers\":{\"state\":\"CZ\",\"password\":\"x\"},\"timestamp\":1350586020000}\n",
    )
    .unwrap();
    let mut checked = 0;
    for case in corpus() {
        let run = import(&case, &[]);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        // `$$` is Sluice's escape of `$` (the file is read through `${VAR}` interpolation).
        let text = String::from_utf8(run.stdout).unwrap().replace("$$", "$");
        let config: toml::Table = toml::from_str(&text).unwrap();
        let Some(plugins) = config.get("plugins").and_then(|p| p.as_table()) else {
            continue;
        };
        for (name, plugin) in plugins {
            let table = plugin["config"].as_table().unwrap();
            let config_file = dir.path().join(format!("{}-{name}.toml", case.name()));
            std::fs::write(&config_file, toml::to_string(table).unwrap()).unwrap();
            let out = sluice()
                .args(["plugin", "test"])
                .arg(plugin_dir().join(plugin["path"].as_str().unwrap()))
                .arg("--config")
                .arg(&config_file)
                .arg("--input")
                .arg(&input)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            // `plugin test` has no team to pass HOSTNAME: the host mode's
            // config is read, then the variable is missing.
            let env_missing = stdout.contains("is not passed to the plugin");
            assert!(
                !stdout.contains("invalid plugin config") || env_missing,
                "{}: plugin `{name}` refuses its config {table:?}: {stdout}{}",
                case.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} plugin configurations checked"
    );
}

#[test]
fn without_output_the_configuration_goes_to_stdout() {
    let case = &corpus()[0];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.toml");
    let to_file = import(case, &["--output".as_ref(), file.as_os_str()]);
    assert!(to_file.status.success());
    let to_stdout = import(case, &[]);
    assert!(to_stdout.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), to_stdout.stdout);
    let stderr = String::from_utf8_lossy(&to_stdout.stderr);
    assert!(stderr.contains("into stdout"), "{stderr}");
}

/// Runs the import of `text` (written to `name` in a temporary directory).
fn import_text(
    name: &str,
    text: &[u8],
    agent: &str,
) -> (Option<i32>, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    let out = sluice()
        .args(["import", "flume"])
        .arg(&file)
        .args(["--agent", agent])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
        dir,
    )
}

#[test]
fn unreadable_input_exits_2_naming_the_file_and_line() {
    let missing = sluice()
        .args([
            "import",
            "flume",
            "/nonexistent/flume.conf",
            "--agent",
            "a1",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("reading /nonexistent/flume.conf"),
        "{stderr}"
    );

    let (code, stderr, file, _dir) = import_text(
        "bad.properties",
        b"a1.sources = r1\na1.channels = c1\na1.sources.r1.command = caf\\u00G9\n",
        "a1",
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("{}:3: malformed", file.display())),
        "{stderr}"
    );

    let (code, stderr, file, _dir) =
        import_text("latin1.properties", b"a1.sources = r1\n# caf\xe9\n", "a1");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("{}:2: not valid UTF-8", file.display())),
        "{stderr}"
    );
}

#[test]
fn an_agent_without_components_exits_2_listing_the_agents() {
    let (code, stderr, file, _dir) = import_text(
        "flume.conf",
        b"# two agents\nedge.sources = r1\nedge.sources.r1.type = seq\ncore.channels = c1\n",
        "a1",
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("agent `a1` has no components"), "{stderr}");
    assert!(stderr.contains("`edge` (from line 2)"), "{stderr}");
    assert!(stderr.contains("`core` (from line 4)"), "{stderr}");
}

#[test]
fn the_default_plugin_dir_is_a_placeholder_beside_the_output() {
    let case = corpus()
        .into_iter()
        .find(|c| c.name().starts_with("10-"))
        .expect("the interceptors corpus file");
    let out = sluice()
        .args(["import", "flume"])
        .arg(&case.file)
        .args(["--agent", &case.agent])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plugin_dir = \"plugins\""), "{text}");
    assert!(text.contains("# Where the plugin files are"), "{text}");
}

/// Reads every line of the files under `dir`.
fn lines_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "_sluice" {
                    stack.push(path);
                }
            } else if !name.starts_with('.') {
                let text = std::fs::read_to_string(&path).unwrap();
                out.extend(text.lines().map(str::to_owned));
            }
        }
    }
    out
}

#[test]
fn imported_agents_of_local_parts_run_end_to_end() {
    // Two agents Flume's guide describes with local parts only: a sequence
    // generator stamped by the timestamp interceptor, and an exec source,
    // each into a file_roll sink.
    let dir = tempfile::tempdir().unwrap();
    let (seq_out, exec_out) = (dir.path().join("seq"), dir.path().join("exec"));
    std::fs::create_dir_all(&seq_out).unwrap();
    std::fs::create_dir_all(&exec_out).unwrap();
    let flume = format!(
        "seq.sources = r1\nseq.channels = c1\nseq.sinks = k1\n\
         seq.sources.r1.type = seq\nseq.sources.r1.totalEvents = 5000\nseq.sources.r1.channels = c1\n\
         seq.sources.r1.interceptors = i1\nseq.sources.r1.interceptors.i1.type = timestamp\n\
         seq.channels.c1.type = memory\n\
         seq.sinks.k1.type = file_roll\nseq.sinks.k1.channel = c1\nseq.sinks.k1.sink.directory = {}\nseq.sinks.k1.sink.rollInterval = 1\n\
         exe.sources = r1\nexe.channels = c1\nexe.sinks = k1\n\
         exe.sources.r1.type = exec\nexe.sources.r1.command = seq 1 3000\nexe.sources.r1.restart = false\nexe.sources.r1.channels = c1\n\
         exe.channels.c1.type = file\nexe.channels.c1.checkpointDir = {}/ckpt\nexe.channels.c1.dataDirs = {}/data\n\
         exe.sinks.k1.type = file_roll\nexe.sinks.k1.channel = c1\nexe.sinks.k1.sink.directory = {}\nexe.sinks.k1.sink.rollInterval = 1\n",
        seq_out.display(),
        dir.path().display(),
        dir.path().display(),
        exec_out.display(),
    );
    let file = dir.path().join("agents.properties");
    std::fs::write(&file, flume).unwrap();
    for (agent, out, expected) in [
        (
            "seq",
            &seq_out,
            (0..5000).map(|i| i.to_string()).collect::<Vec<_>>(),
        ),
        (
            "exe",
            &exec_out,
            (1..=3000).map(|i| i.to_string()).collect::<Vec<_>>(),
        ),
    ] {
        let toml = dir.path().join(format!("{agent}.toml"));
        let imported = sluice()
            .args(["import", "flume"])
            .arg(&file)
            .args(["--agent", agent, "--output"])
            .arg(&toml)
            .arg("--plugin-dir")
            .arg(plugin_dir())
            .output()
            .unwrap();
        assert!(
            imported.status.success(),
            "{}",
            String::from_utf8_lossy(&imported.stderr)
        );
        let text = std::fs::read_to_string(&toml).unwrap();
        let run = sluice()
            .args(["run", "--no-status", "--exit-when-idle", "2s"])
            .arg(&toml)
            .envs(env_of(&text))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{agent}: {log}\n{text}");
        let mut got = lines_under(out);
        got.sort_by_key(|l| l.parse::<u64>().unwrap_or(u64::MAX));
        assert_eq!(
            got, expected,
            "{agent}: every event once in the file_roll output\n{text}"
        );
    }
}
