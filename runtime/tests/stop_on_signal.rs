//! An agent stops on SIGTERM, as an orchestrator stops it, whatever its
//! sources are waiting on.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{Log, Process};

/// A `stdin` source whose input stays open (a terminal, a producer that
/// went quiet) waits in a read that never returns. On SIGTERM the run
/// drains and ends; until now the process then hung for good, as the async
/// runtime waited for that read before letting the process exit.
#[test]
fn sigterm_ends_an_agent_whose_standard_input_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{dir}/state"

[sources.pipe]
type = "stdin"
channels = ["out"]

[channels.out]
type = "memory"

[sinks.out]
type = "object_store"
channel = "out"
url = "file://{dir}/out"
path = "lines"
format = "jsonl"
roll_interval = "1s"
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "run", "--no-status"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Log::follow(child.stderr.take().unwrap());
    // Held open, as a terminal is, until the test ends.
    let mut input = child.stdin.take().unwrap();
    let mut agent = Process(child);
    writeln!(input, "first line").unwrap();
    input.flush().unwrap();

    // The line is read and written: the run is under way.
    let out = dir.path().join("out");
    util::wait_until(
        "the line in a visible file",
        Duration::from_secs(60),
        || {
            util::files_under(&out).iter().any(|f| {
                !f.file_name().unwrap().to_string_lossy().starts_with('.')
                    && std::fs::read_to_string(f).is_ok_and(|t| t.contains("first line"))
            })
        },
    );

    let status = agent.terminate(&mut log, Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", log.text());
    assert!(
        log.seen.iter().any(|l| l.contains("\"stopped\"")),
        "the run drained and ended; log:\n{}",
        log.text()
    );
    drop(input);
}
