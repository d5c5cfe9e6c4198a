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
