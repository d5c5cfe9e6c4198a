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

/// `component` with a custom section appended: a file with the same
/// behaviour and a different digest (a "new version" for swap tests).
pub fn variant(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"sluice-test-variant";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
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
