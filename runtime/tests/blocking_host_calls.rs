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

/// A candidate whose self-test sleeps holds only its own plugin's reload:
/// another team's new version, deployed after it, goes live while the
/// sleeper's check still runs (reloads used to run one after another on the
/// watcher's single thread, so every reload waited out the sleeper's time
/// budget).
#[test]
fn a_sleeping_self_test_does_not_hold_another_plugins_reload() {
    use std::collections::BTreeMap;

    use sluice::plugin::Registry;
    use sluice::plugin::engine::tagged_build;
    use sluice::plugin::reload::{self, WatchSet};

    const SLEEPER_BUDGET: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("team-a"), dir.path().join("team-b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let misbehave = std::fs::read(util::plugin("misbehave")).unwrap();
    let noop = std::fs::read(util::plugin("noop")).unwrap();
    let (a_path, b_path) = (a_dir.join("sleeper.wasm"), b_dir.join("other.wasm"));
    std::fs::write(&a_path, &misbehave).unwrap();
    std::fs::write(&b_path, &noop).unwrap();
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let spec = |name: &str, path: &std::path::Path, config: &str, ms: u64| SlotSpec {
        name: name.into(),
        kind: PluginKind::Interceptor,
        path: path.to_path_buf(),
        team: name.into(),
        pin: None,
        config_json: config.into(),
        sandbox: Sandbox {
            limits: limits(ms),
            ..Sandbox::default()
        },
    };
    // Sleeps only on the body `zzz`, which only its self-test will hold.
    let sleeper = PluginSlot::load(
        &engine,
        spec(
            "a-sleeper",
            &a_path,
            r#"{"mode":"sleep","when_body":"zzz"}"#,
            SLEEPER_BUDGET,
        ),
        &metrics,
    )
    .unwrap();
    let other = PluginSlot::load(&engine, spec("b-other", &b_path, "{}", 2000), &metrics).unwrap();
    let mut registry = Registry::new(None);
    registry.insert(sleeper.clone());
    registry.insert(other.clone());
    let _watcher = reload::watch(WatchSet {
        registry,
        engine,
        tables: Vec::new(),
        resume_dir: dir.path().join("control"),
        resume: BTreeMap::new(),
    })
    .unwrap();

    std::fs::write(a_dir.join("sleeper.selftest.jsonl"), "{\"body\":\"zzz\"}\n").unwrap();
    util::deploy(&a_path, &tagged_build(&misbehave, "v2"));
    util::deploy(&b_path, &tagged_build(&noop, "v2"));
    util::wait_until("the other team's swap", Duration::from_secs(25), || {
        other.current().generation == 2
    });
    assert_eq!(
        metrics.get("plugin.a-sleeper.reloads_rejected"),
        0,
        "the sleeper's check was still running when the other version went live"
    );
    util::wait_until(
        "the sleeper's refusal",
        Duration::from_millis(SLEEPER_BUDGET * 2),
        || metrics.get("plugin.a-sleeper.reloads_rejected") == 1,
    );
    assert_eq!(sleeper.current().generation, 1, "the sleeper keeps serving");
}
