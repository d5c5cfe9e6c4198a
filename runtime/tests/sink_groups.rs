//! Sink groups through the `sluice` binary: a failover group whose
//! primary cannot start carries on with its standby (the agent does not
//! stop) and starts the primary again, which takes the batches back once
//! it can run; a load-balancing group spreads batches over its sinks;
//! nothing is lost either way.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{Log, Process, wait_until};

const EVENTS: usize = 20_000;

fn config(dir: &Path, group: &str, primary_dir: &str) -> String {
    format!(
        r#"data_dir = "{state}"

[sources.gen]
type = "generator"
count = {EVENTS}
batch_max_events = 500
channels = ["out"]

[channels.out]
type = "memory"

[sinks.primary]
type = "file"
channel = "out"
path = "{primary_dir}/primary.txt"

[sinks.standby]
type = "file"
channel = "out"
path = "{dir}/standby.txt"

[sink_groups.both]
sinks = ["primary", "standby"]
{group}
"#,
        state = dir.join("state").display(),
        dir = dir.display(),
    )
}

fn run(dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--no-status", "--exit-when-idle", "2s"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("running sluice")
}

fn lines(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect()
}

/// The numbers both sinks wrote, sorted, once each wrote some.
fn both_took_batches(a: &Path, b: &Path) -> Vec<u64> {
    let (a, b) = (lines(a), lines(b));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both sinks took batches: {} and {}",
        a.len(),
        b.len()
    );
    let mut all: Vec<u64> = a.into_iter().chain(b).collect();
    all.sort_unstable();
    all
}

#[test]
fn failover_carries_on_when_the_primary_sink_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = run(
        dir.path(),
        &config(
            dir.path(),
            "processor = \"failover\"",
            &missing.display().to_string(),
        ),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("the group carries on without it"), "{log}");
    let mut got = lines(&dir.path().join("standby.txt"));
    got.sort_unstable();
    assert_eq!(got, (0..EVENTS as u64).collect::<Vec<_>>());
}

#[test]
fn a_stopped_primary_starts_again_after_its_penalty_and_takes_the_batches_back() {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let text = config(
        dir.path(),
        "processor = \"failover\"\nmax_backoff = \"1s\"",
        &later.display().to_string(),
    )
    .replace(&format!("count = {EVENTS}"), "count = 0\nrate = 2000");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    let mut agent = Process(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--no-status"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("running sluice"),
    );
    let mut log = Log::follow(agent.0.stderr.take().unwrap());
    // The primary's directory is missing: it stops, the standby takes over.
    log.wait_for("of the primary stopping", |l| {
        l.contains("the group carries on without it").then_some(())
    });
    // Its directory appears: after its penalty it runs, and takes batches.
    std::fs::create_dir(&later).unwrap();
    let primary = later.join("primary.txt");
    wait_until("the primary to write", Duration::from_secs(60), || {
        std::fs::metadata(&primary).is_ok_and(|m| m.len() > 0)
    });
    let status = agent.terminate(&mut log, Duration::from_secs(60));
    let log = log.text();
    assert!(status.success(), "{log}");
    assert!(log.contains("a member sink started again"), "{log}");
    let all = both_took_batches(&primary, &dir.path().join("standby.txt"));
    // Every event generated, once: the numbers run from 0 without a gap.
    assert_eq!(all, (0..all.len() as u64).collect::<Vec<_>>());
}

#[test]
fn load_balance_spreads_batches_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &config(
            dir.path(),
            "processor = \"load_balance\"",
            &dir.path().display().to_string(),
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = both_took_batches(
        &dir.path().join("primary.txt"),
        &dir.path().join("standby.txt"),
    );
    assert_eq!(all, (0..EVENTS as u64).collect::<Vec<_>>());
}

#[test]
fn a_group_of_sinks_on_different_channels_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "processor = \"failover\"", &dir.path().display().to_string())
        .replace(
            "[sinks.standby]\ntype = \"file\"\nchannel = \"out\"",
            "[channels.other]\ntype = \"memory\"\n\n[sinks.standby]\ntype = \"file\"\nchannel = \"other\"",
        );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`sink_groups.both.sinks`"), "{err}");
    assert!(err.contains("drain one channel"), "{err}");
}
