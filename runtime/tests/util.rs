//! Helpers shared by the runtime's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use sluice_batch::{BatchBuf, NewEvent};

/// Path of a plugin built by `scripts/build-plugins.sh`.
pub fn plugin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-plugins.sh first",
        path.display()
    );
    path
}

/// A batch of events with the given bodies, offsets 0.., topic `t`, partition 0.
pub fn batch(bodies: &[&str]) -> BatchBuf {
    let mut b = BatchBuf::default();
    for (i, body) in bodies.iter().enumerate() {
        b.push(&NewEvent {
            key: None,
            body: body.as_bytes(),
            headers: &[],
            topic: "t",
            partition: 0,
            offset: i as i64,
            timestamp: 1_000,
        });
    }
    b
}

/// Waits until `cond` holds, checking every 10 ms; panics with `what` after
/// `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A child process that is ended (SIGKILL) when dropped, unless it has
/// exited: a failing test leaves nothing running.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Process {
    /// Sends SIGTERM, as an orchestrator stops a pod, and waits up to
    /// `limit` for the exit; then takes the rest of `log`. Fails the test,
    /// showing the log, if the child is still running.
    pub fn terminate(
        &mut self,
        log: &mut Log,
        limit: std::time::Duration,
    ) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.0.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.exit_within(limit);
        log.rest(std::time::Duration::from_secs(5));
        status.unwrap_or_else(|| {
            panic!(
                "still running {limit:?} after SIGTERM; log:\n{}",
                log.text()
            )
        })
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still
    /// running then.
    pub fn exit_within(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A child process's log: its lines read on a thread as they come, and
/// the ones taken so far (to show when a test fails).
pub struct Log {
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line taken so far.
    pub seen: Vec<String>,
}

impl Log {
    /// Follows `stream` (a child's stderr) until it closes.
    pub fn follow(stream: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            seen: Vec::new(),
        }
    }

    /// Takes lines until one satisfies `find`, and returns its value;
    /// panics naming `what`, with the log so far, after 120 s.
    pub fn wait_for<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {what}; log:\n{}", self.text()));
            let found = find(&line);
            self.seen.push(line);
            if let Some(v) = found {
                return v;
            }
        }
    }

    /// Takes the lines still coming, until the stream closes, none came
    /// for `quiet`, or (a child still running and logging) 30 s passed.
    pub fn rest(&mut self, quiet: std::time::Duration) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline
            && let Ok(line) = self.lines.recv_timeout(quiet)
        {
            self.seen.push(line);
        }
    }

    /// The lines taken so far.
    pub fn text(&self) -> String {
        self.seen.join("\n")
    }
}

/// Replaces `path` with `bytes` the way a deployment should: write a
/// temporary file beside it, then rename it over the old one.
pub fn deploy(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("deploying");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A stage running the built plugin `file` as `name` with `config` (JSON)
/// and `limits`, default policy.
pub fn stage(
    engine: &sluice::plugin::PluginEngine,
    metrics: &sluice::metrics::Metrics,
    name: &str,
    file: &str,
    config: &str,
    limits: sluice::plugin::Limits,
) -> sluice::plugin::Stage {
    let loaded = engine.load(&plugin(file), None).expect("plugin loads");
    let instance =
        sluice::plugin::PluginInstance::new(engine.clone(), loaded, name, config.into(), limits);
    sluice::plugin::Stage::new(instance, metrics)
}

/// Limits of 32 MiB and a time budget of `ms` milliseconds.
pub fn limits(ms: u64) -> sluice::plugin::Limits {
    sluice::plugin::Limits {
        memory_bytes: 32 << 20,
        time_budget: std::time::Duration::from_millis(ms),
        ..Default::default()
    }
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
