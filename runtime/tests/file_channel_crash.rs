//! Scenario: an exec source feeds a file channel drained by an object-store
//! sink, and the `sluice` process is killed with SIGKILL mid-stream, several
//! times, then run to the end. Every line the channel acknowledged must end
//! up in the output: none lost (duplicates are allowed: at-least-once).
//!
//! What is provable from outside: the exec source logs (at debug level)
//! the offset range of every batch whose acknowledgement came back
//! delivered, and with `fsync = "every_batch"` the file channel releases
//! that acknowledgement only after the batch is fsynced in its log. The log
//! line is written to stderr (a file here, unbuffered) before anything else
//! can happen to the batch, so every range in the logs of the killed runs
//! was durable in the channel at the moment of the kill. Offsets are unique
//! across runs (the exec source starts counting at its start time in µs),
//! so an offset from a killed run can only reach the output through the
//! channel's replay. The output is `jsonl`, which records each event's
//! offset; only complete (visible) files are read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod util;
use util::wait_until;

const LINES: u32 = 50_000;
/// Killed runs, and how many acknowledged batches each waits for first.
const KILL_AFTER_ACKS: [usize; 3] = [5, 40, 90];

/// Prints `LINES` numbered lines, 250 at a time, about 5 s in all.
const GENERATOR: &str = "import sys, time\nn = int(sys.argv[1])\nfor i in range(n):\n    sys.stdout.write(f'{i}\\n')\n    if i % 250 == 249:\n        sys.stdout.flush()\n        time.sleep(0.025)\nsys.stdout.flush()\n";

fn config(dir: &Path) -> String {
    format!(
        r#"data_dir = "{state}"

[sources.gen]
type = "exec"
command = ["python3", "-c", '''{GENERATOR}''', "{LINES}"]
restart = false
batch_max_events = 200
batch_max_wait = "50ms"
stderr = "ignore"
channels = ["wal"]

[channels.wal]
type = "file"
segment_size = "256KiB"
max_bytes = "64MiB"
fsync = "every_batch"

[sinks.out]
type = "object_store"
channel = "wal"
url = "file://{out}"
format = "jsonl"
roll_count = 2000
roll_interval = "300ms"
"#,
        state = dir.join("state").display(),
        out = dir.join("out").display(),
    )
}

fn start(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg("--no-status")
        .arg(config)
        .env(
            "RUST_LOG",
            "info,sluice::sources::exec=debug,sluice::channels::file=debug",
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting sluice")
}

/// Removes terminal colour sequences, in case the logger adds them.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<i64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// Offset ranges the exec source logged as acknowledged.
fn acknowledged(log: &Path) -> Vec<(i64, i64)> {
    let text = plain(&std::fs::read_to_string(log).unwrap_or_default());
    text.lines()
        .filter(|l| l.contains("batch acknowledged"))
        .filter_map(|l| Some((field(l, "first_offset")?, field(l, "last_offset")?)))
        .collect()
}

/// Events the file channel said it replays at startup.
fn replayed(log: &Path) -> i64 {
    let text = plain(&std::fs::read_to_string(log).unwrap_or_default());
    text.lines()
        .filter(|l| l.contains("file channel open"))
        .filter_map(|l| field(l, "replay_events"))
        .sum()
}

/// Offsets in the complete output files (in-progress files start with `.`).
fn output_offsets(dir: &Path) -> (Vec<i64>, usize) {
    let mut offsets = Vec::new();
    let mut files = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.') && name.ends_with(".jsonl") {
                files += 1;
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display()));
                    offsets.push(v["offset"].as_i64().expect("offset field"));
                }
            }
        }
    }
    (offsets, files)
}

#[test]
fn acknowledged_lines_survive_repeated_sigkill() {
    if Command::new("python3").arg("--version").output().is_err() {
        panic!("python3 is needed to generate the input lines");
    }
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(dir.path())).unwrap();

    let mut logs = Vec::new();
    for (run, acks) in KILL_AFTER_ACKS.iter().enumerate() {
        let log = dir.path().join(format!("run{run}.log"));
        let mut child = start(&config_path, &log);
        wait_until(
            &format!("{acks} acknowledged batches in run {run}"),
            Duration::from_secs(60),
            || acknowledged(&log).len() >= *acks,
        );
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().unwrap();
        let acked: i64 = acknowledged(&log).iter().map(|(a, b)| b - a + 1).sum();
        assert!(
            acked < LINES as i64,
            "run {run} finished before it was killed; nothing was tested"
        );
        eprintln!("run {run}: killed after {acked} acknowledged lines");
        logs.push(log);
    }

    let log = dir.path().join("final.log");
    let mut child = start(&config_path, &log);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the final run did not finish:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "final run failed: {status}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let final_acked: i64 = acknowledged(&log).iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(
        final_acked, LINES as i64,
        "the final run acknowledges every line"
    );
    logs.push(log);

    let mut acked = BTreeSet::new();
    for log in &logs {
        for (first, last) in acknowledged(log) {
            acked.extend(first..=last);
        }
    }
    let (offsets, files) = output_offsets(&dir.path().join("out"));
    let delivered: BTreeSet<i64> = offsets.iter().copied().collect();
    let lost: Vec<i64> = acked.difference(&delivered).copied().collect();
    let replays: Vec<i64> = logs.iter().map(|l| replayed(l)).collect();
    eprintln!(
        "kills: {}, acknowledged events: {}, output events: {} in {files} files ({} distinct, {} duplicates), replayed at each start: {replays:?}, lost: {}",
        KILL_AFTER_ACKS.len(),
        acked.len(),
        offsets.len(),
        delivered.len(),
        offsets.len() - delivered.len(),
        lost.len()
    );
    if !lost.is_empty() {
        // Keep the logs, output and channel directory for a post-mortem.
        let kept = dir.keep();
        let which: Vec<String> = logs
            .iter()
            .filter(|log| {
                acknowledged(log)
                    .iter()
                    .any(|(a, b)| (*a..=*b).contains(&lost[0]))
            })
            .map(|log| log.display().to_string())
            .collect();
        panic!(
            "{} acknowledged events are missing from the output, e.g. {:?} (acknowledged in {which:?}); files kept in {}",
            lost.len(),
            &lost[..lost.len().min(10)],
            kept.display()
        );
    }
    assert!(
        replays[1..].iter().any(|r| *r > 0),
        "no start replayed anything: the kills never left undelivered data in the channel"
    );
}
