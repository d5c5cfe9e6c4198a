//! Scenarios: a file source feeds an exactly-once object-store sink
//! through a memory channel, and the `sluice` process is killed with
//! SIGKILL several times mid-stream, then run to the end. Every line must
//! be in the committed output exactly once, each file's lines in order.
//!
//! - `taildir`: a writer keeps appending to an application log and rotates
//!   it by rename (the group's pattern, `app.log*`, matches rotated names
//!   too, so files created and rotated away while Sluice is down are found).
//! - `spooldir`: completed files are dropped into the spool directory
//!   (written beside it, then renamed in) and each is renamed
//!   `.COMPLETED` once ingested; the kills land mid-file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod util;
use util::{Process, wait_until};

const LINES: usize = 60_000;
/// A rotation (taildir), a new file (spooldir) every this many lines.
const ROTATE_EVERY: usize = 7_000;
/// Killed runs, and how many committed output lines each waits for first.
const KILL_AFTER: [usize; 3] = [2_000, 15_000, 30_000];

fn taildir(dir: &Path) -> String {
    format!(
        r#"
[sources.app]
type = "taildir"
filegroups = {{ app = "{logs}/app.log*" }}
poll_interval = "50ms"
idle_timeout = "1s"
batch_max_events = 500
batch_max_wait = "50ms"
channels = ["mem"]
"#,
        logs = dir.join("logs").display(),
    )
}

fn spooldir(dir: &Path) -> String {
    format!(
        r#"
[sources.app]
type = "spooldir"
dir = "{spool}"
min_age = "100ms"
poll_interval = "50ms"
batch_max_events = 500
batch_max_wait = "50ms"
channels = ["mem"]
"#,
        spool = dir.join("spool").display(),
    )
}

/// The pipeline around `source`.
fn config(dir: &Path, source: &str) -> String {
    format!(
        r#"data_dir = "{state}"
{source}
[channels.mem]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "mem"
url = "file://{out}"
format = "jsonl"
exactly_once = true
roll_count = 3000
roll_interval = "300ms"
"#,
        state = dir.join("state").display(),
        out = dir.join("out").display(),
    )
}

/// Starts `sluice run`, killed if the test fails while it runs (so a
/// failed test leaves no agent behind).
fn start(config: &Path, log: &Path) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg("--no-status")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("starting sluice"),
    )
}

/// Bodies in the committed output files (in-progress files start with `.`;
/// the sink's own records live under `_sluice`).
fn output(dir: &Path) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "_sluice" {
                    stack.push(path);
                }
            } else if !name.starts_with('.') && name.ends_with(".jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display()));
                    out.push((
                        v["value"].as_str().expect("value").to_owned(),
                        v["partition"].as_i64().expect("partition") as i32,
                        v["offset"].as_i64().expect("offset"),
                    ));
                }
            }
        }
    }
    out
}

/// Appends `LINES` numbered lines to `logs/app.log`, 100 at a time about
/// every 10 ms, renaming the file to `app.log.<n>` every `ROTATE_EVERY`
/// lines (a new `app.log` is then created by the next write).
fn writer(logs: PathBuf, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let log = logs.join("app.log");
        let mut rotations = 0;
        for chunk in 0..LINES / 100 {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let text: String = (chunk * 100..chunk * 100 + 100)
                .map(|i| format!("line {i:06}\n"))
                .collect();
            f.write_all(text.as_bytes()).unwrap();
            drop(f);
            if (chunk + 1) * 100 % ROTATE_EVERY == 0 {
                rotations += 1;
                std::fs::rename(&log, logs.join(format!("app.log.{rotations}"))).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        done.store(true, Ordering::Release);
    })
}

/// Drops `LINES` numbered lines into `spool` as files of `ROTATE_EVERY`
/// lines, each written beside the directory and renamed in, one about
/// every 700 ms.
fn dropper(spool: PathBuf, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let staging = spool.with_extension("staging");
        std::fs::create_dir_all(&staging).unwrap();
        for (n, first) in (0..LINES).step_by(ROTATE_EVERY).enumerate() {
            let text: String = (first..(first + ROTATE_EVERY).min(LINES))
                .map(|i| format!("line {i:06}\n"))
                .collect();
            let name = format!("drop-{n:03}.log");
            std::fs::write(staging.join(&name), text).unwrap();
            std::fs::rename(staging.join(&name), spool.join(&name)).unwrap();
            std::thread::sleep(Duration::from_millis(700));
        }
        done.store(true, Ordering::Release);
    })
}

#[test]
fn taildir_every_line_exactly_once_across_rotations_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writing = writer(logs, done.clone());
    let got = crash_and_finish(dir.path(), &taildir(dir.path()), &done, writing);
    // One partition per file, each file's lines in order.
    check_exactly_once(&got, LINES / ROTATE_EVERY + 1);
}

#[test]
fn spooldir_every_line_exactly_once_across_sigkill_mid_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let dropping = dropper(spool.clone(), done.clone());
    let got = crash_and_finish(dir.path(), &spooldir(dir.path()), &done, dropping);
    // One partition, offsets ascending with the line numbers across files.
    check_exactly_once(&got, 1);
    let completed = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".COMPLETED")
        })
        .count();
    assert_eq!(
        completed,
        LINES.div_ceil(ROTATE_EVERY),
        "every file completed"
    );
}

/// Runs Sluice with `source`, killing it `KILL_AFTER.len()` times while the
/// input is produced, then once more until every line is committed; returns
/// the committed output (body, partition, offset).
fn crash_and_finish(
    dir: &Path,
    source: &str,
    done: &AtomicBool,
    producing: std::thread::JoinHandle<()>,
) -> Vec<(String, i32, i64)> {
    let config_path = dir.join("sluice.toml");
    std::fs::write(&config_path, config(dir, source)).unwrap();
    let out = dir.join("out");
    for (run, after) in KILL_AFTER.iter().enumerate() {
        let log = dir.join(format!("run{run}.log"));
        let Process(child) = &mut start(&config_path, &log);
        wait_until(
            &format!("{after} committed lines in run {run}"),
            Duration::from_secs(60),
            || output(&out).len() >= *after,
        );
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        assert!(
            !done.load(Ordering::Acquire) || output(&out).len() < LINES,
            "run {run}: everything was written before the kill; nothing was tested"
        );
        eprintln!(
            "run {run}: killed after {} committed lines",
            output(&out).len()
        );
    }
    producing.join().unwrap();

    // The last run: until every line is committed, then a clean stop.
    let log = dir.join("final.log");
    let Process(child) = &mut start(&config_path, &log);
    let wait = wait_for_lines(&out, child, &log);
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "final run: {status}");
    let got = output(&out);
    eprintln!("final run: {} lines after {wait:?}", got.len());
    got
}

/// Every line once; within each of `partitions` partitions, offsets
/// ascend with the line numbers.
fn check_exactly_once(got: &[(String, i32, i64)], partitions: usize) {
    let mut bodies: Vec<&str> = got.iter().map(|(b, _, _)| b.as_str()).collect();
    bodies.sort_unstable();
    let duplicates = bodies.windows(2).filter(|w| w[0] == w[1]).count();
    bodies.dedup();
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i:06}")).collect();
    let missing = expected
        .iter()
        .filter(|l| bodies.binary_search(&l.as_str()).is_err())
        .count();
    assert_eq!((missing, duplicates), (0, 0), "lines missing and repeated");
    assert_eq!(got.len(), LINES);
    let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, &str)>> = Default::default();
    for (body, partition, offset) in got {
        by_partition
            .entry(*partition)
            .or_default()
            .push((*offset, body));
    }
    assert_eq!(by_partition.len(), partitions);
    for lines in by_partition.values_mut() {
        lines.sort_unstable();
        assert!(
            lines.windows(2).all(|w| w[0].1 < w[1].1),
            "input order kept"
        );
    }
}

/// Waits (bounded) until the output holds every line.
fn wait_for_lines(out: &Path, child: &mut Child, log: &Path) -> Duration {
    let started = Instant::now();
    while output(out).len() < LINES {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the final run ended early ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "the final run committed {} of {LINES} lines in 120 s:\n{}",
                output(out).len(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}
