//! The `sluice` binary: `run` of the quickstart, `validate` and `plugin test`.

mod util;

use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice plugin test` of the built plugin `name` on the events in `input`.
fn plugin_test(name: &str, input: &std::path::Path) -> Command {
    let mut command = sluice();
    command
        .args(["plugin", "test"])
        .arg(util::plugin(name))
        .arg("--input")
        .arg(input);
    command
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn validate_accepts_the_quickstart() {
    util::plugin("mask");
    let out = sluice()
        .arg("validate")
        .arg(repo().join("conf/quickstart.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 sources, 6 plugins"));
}

/// README's first command runs this: from a fresh directory (plugins
/// compiled cold, which outlasts the demo feed) every event of the feed is
/// read, and the lake holds committed files.
#[test]
fn the_quickstart_reads_every_event_from_a_fresh_start() {
    util::plugin("mask");
    let out_dir = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["run"])
        .arg(repo().join("conf/quickstart.toml"))
        .args(["--exit-when-idle", "3s"])
        .env("SLUICE_OUT", out_dir.path())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let raw_log = String::from_utf8_lossy(&out.stderr);
    let log = without_colours(&raw_log);
    assert!(out.status.success(), "{log}");
    assert!(
        !raw_log.contains('\u{1b}'),
        "colour escapes in a log written to a pipe: {raw_log}"
    );
    assert!(
        log.contains("events_in=5000"),
        "every feed event is read: {log}"
    );
    let commits = std::fs::read_dir(out_dir.path().join("lake/_sluice/commits"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(commits > 0, "the lake holds committed files: {log}");
    // No card number in clear anywhere: the lake (`mask`) and the dead
    // letters (`redact`, the source's dead_letter_interceptors), which hold
    // the lines the decoder rejected.
    let dead = files_text(&out_dir.path().join("dead-letter"));
    assert!(
        dead.contains("sluice.dead_letter.reason"),
        "the feed's malformed lines are dead-lettered: {log}"
    );
    for dir in ["lake", "dead-letter", "high-risk", "refunds"] {
        let text = files_text(&out_dir.path().join(dir));
        let cards = clear_card_numbers(&text);
        assert!(
            cards.is_empty(),
            "{dir} holds card numbers in clear: {cards:?}"
        );
    }
}

/// The text of every file under `dir`, recursively, but for Sluice's own
/// `_sluice` records.
fn files_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "_sluice" {
                text.push_str(&files_text(&path));
            }
        } else {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    text
}

/// The runs of exactly 16 digits in `text` that look like the feed's card
/// numbers: a leading 4 and a valid Luhn check digit.
fn clear_card_numbers(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 16 && run.starts_with('4'))
        .filter(|run| {
            let sum: u32 = run
                .bytes()
                .rev()
                .enumerate()
                .map(|(i, b)| {
                    let d = u32::from(b - b'0');
                    match (i % 2, d * 2) {
                        (0, _) => d,
                        (_, x) if x > 9 => x - 9,
                        (_, x) => x,
                    }
                })
                .sum();
            sum.is_multiple_of(10)
        })
        .collect()
}

/// `text` without its terminal colour sequences (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn validate_names_file_line_col_and_key_of_a_misspelling() {
    util::plugin("mask");
    let text = std::fs::read_to_string(repo().join("conf/quickstart.toml")).unwrap();
    let bad = text.replace(
        "roll_interval = \"10s\"\nroll_size",
        "roll_intervall = \"10s\"\nroll_size",
    );
    assert_ne!(bad, text);
    let line = bad
        .lines()
        .position(|l| l.starts_with("roll_intervall"))
        .unwrap()
        + 1;
    let path = repo().join("conf/.misspelled-test.toml");
    std::fs::write(&path, bad).unwrap();
    let out = sluice().arg("validate").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected =
        format!(".misspelled-test.toml:{line}:1: `sinks.lake.roll_intervall`: unknown key");
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn plugin_test_prints_masked_events() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"body":{"id":"t1","card":"4111111111111111"}}"#,
            "\n",
            r#"{"body":"no json here","key":"k"}"#,
            "\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("mask.toml");
    std::fs::write(&config, "fields = [\"card\"]\nkeep_last = 4\n").unwrap();
    let out = plugin_test("mask", &input)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["outcome"], "modify");
    let body: serde_json::Value =
        serde_json::from_str(lines[0]["event"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["card"], "************1111");
    // `fields` cannot read a body that is not JSON: mask fails closed.
    assert_eq!(lines[1]["outcome"], "dead-letter");
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("mask: body is not a JSON document"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["event"]["key"], "k");
}

#[test]
fn plugin_test_compares_with_a_golden_file_and_updates_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "{\"body\":\"a\"}\n{\"body\":\"b\"}\n").unwrap();
    let golden = dir.path().join("expected.jsonl");
    let run = |extra: &[&str]| {
        plugin_test("noop", &input)
            .arg("--expected")
            .arg(&golden)
            .args(extra)
            .output()
            .unwrap()
    };

    // No golden file yet: a clear error.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("create it with --update"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --update writes exactly what plain `plugin test` prints.
    let out = run(&["--update"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("updated "));
    let plain = sluice()
        .args(["plugin", "test"])
        .arg(util::plugin("noop"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(std::fs::read(&golden).unwrap(), plain.stdout);

    // A match prints one line.
    let out = run(&[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!("ok: 2 events match {}", golden.display())
    );

    // A mismatch: nothing on stdout, a diff with line numbers on stderr, exit 1.
    let text = std::fs::read_to_string(&golden).unwrap();
    std::fs::write(&golden, text.replace("\"body\":\"b\"", "\"body\":\"B\"")).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("@@ -1,2 +1,2 @@"), "{stderr}");
    assert!(stderr.contains("-{\"event\":{\"body\":\"B\""), "{stderr}");
    assert!(stderr.contains("+{\"event\":{\"body\":\"b\""), "{stderr}");
    assert!(stderr.contains("first difference: line 2"), "{stderr}");
}

#[test]
fn plugin_test_bounds_each_call_by_its_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "{\"body\":\"a\"}\n").unwrap();
    let config = dir.path().join("spin.toml");
    std::fs::write(&config, "mode = \"spin\"\n").unwrap();
    let run = |budget: &str| {
        plugin_test("misbehave", &input)
            .arg("--config")
            .arg(&config)
            .args(["--time-budget", budget])
            .output()
            .unwrap()
    };
    let out = run("100ms");
    assert_eq!(out.status.code(), Some(1), "a failed batch exits 1");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["outcome"], "failed");
    assert!(
        line.to_string().contains("exceeded its time budget"),
        "{line}"
    );

    let out = run("soon");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--time-budget"), "{stderr}");
}
