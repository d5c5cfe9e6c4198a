//! Attack: a plugin sleeps an hour through WASI, where epoch interruption
//! cannot reach it (it stops wasm code only), in a batch and in the
//! self-test a candidate version must pass. Each test runs the attack on a
//! thread of its own and fails if it has not ended within a minute, so a
//! regression fails instead of hanging CI for an hour.

mod util;

use std::time::{Duration, Instant};

use sluice::metrics::Metrics;
use sluice::plugin::{Chain, PluginEngine, PluginKind, PluginSlot, Sandbox, SlotSpec};
use util::{batch, limits, stage};

/// Runs `attack` on its own thread; its result, or a panic after a minute.
fn bounded<T: Send + 'static>(attack: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(attack());
    });
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the sleeping plugin held its caller for over a minute");
    (result, started.elapsed())
}

#[test]
fn a_sleep_in_a_batch_ends_with_the_time_budget() {
    let ((out, failures), elapsed) = bounded(|| {
        let engine = PluginEngine::new().unwrap();
        let metrics = Metrics::default();
        let mut chain = Chain::new(vec![stage(
            &engine,
            &metrics,
            "sleeper",
            "misbehave",
            r#"{"mode":"sleep"}"#,
            limits(500),
        )]);
        let out = chain.process(batch(&["a", "b", "c", "d"]));
        (out, metrics.get("plugin.sleeper.failures"))
    });
    assert_eq!(
        out.dead.len(),
        4,
        "every event accounted for: dead-lettered"
    );
    let reason = String::from_utf8_lossy(
        out.dead
            .get(0)
            .unwrap()
            .header("sluice.dead_letter.reason")
            .unwrap(),
    )
    .into_owned();
    assert!(reason.contains("time budget"), "{reason}");
    assert!(failures >= 1);
    // Bisection retries the halves, bounded by four budgets in all.
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[test]
fn a_sleep_in_a_self_test_ends_with_the_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sleeper.wasm");
    std::fs::copy(util::plugin("misbehave"), &path).unwrap();
    std::fs::write(
        dir.path().join("sleeper.selftest.jsonl"),
        "{\"body\":\"x\"}\n",
    )
    .unwrap();
    let (refused, elapsed) = bounded(move || {
        let engine = PluginEngine::new().unwrap();
        let spec = SlotSpec {
            name: "sleeper".into(),
            kind: PluginKind::Interceptor,
            path,
            team: "default".into(),
            pin: None,
            config_json: r#"{"mode":"sleep"}"#.into(),
            sandbox: Sandbox {
                limits: limits(500),
                ..Sandbox::default()
            },
        };
        PluginSlot::load(&engine, spec, &Metrics::default())
            .err()
            .map(|e| e.to_string())
    });
    let refused = refused.expect("a candidate whose self-test sleeps is refused");
    assert!(refused.contains("time budget"), "{refused}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}
