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
