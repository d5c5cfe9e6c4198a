//! Scenario: a plugin loops forever. Epoch interruption stops it within its
//! time budget, the batch gets the failure policy (dead-letter here), and
//! other pipelines keep flowing meanwhile.

mod util;

use std::time::{Duration, Instant};

use sluice::metrics::Metrics;
use sluice::plugin::chain::DEAD_LETTER_REASON;
use sluice::plugin::{Chain, PluginEngine};
use util::{batch, limits};

fn chain(
    engine: &PluginEngine,
    metrics: &Metrics,
    name: &str,
    file: &str,
    config: &str,
    limits: sluice::plugin::Limits,
) -> Chain {
    Chain::new(vec![util::stage(
        engine, metrics, name, file, config, limits,
    )])
}

#[test]
fn a_spinning_plugin_is_interrupted_within_its_budget() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(
        &engine,
        &metrics,
        "bad",
        "misbehave",
        r#"{"mode":"spin"}"#,
        limits(100),
    );
    let started = Instant::now();
    let out = chain.process(batch(&["a", "b"]));
    let took = started.elapsed();
    assert_eq!(out.dead.len(), 2);
    let reason =
        String::from_utf8_lossy(out.dead.get(0).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("exceeded its time budget"), "{reason}");
    // Three calls (the batch, then each half alone), each interrupted at
    // its 100 ms budget: about 0.3 s. The bound leaves room for a loaded
    // machine; an uninterrupted spin would never return at all.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(metrics.get("plugin.bad.failures"), 1);
}

#[test]
fn other_pipelines_keep_flowing_while_one_plugin_spins() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut spinning = chain(
        &engine,
        &metrics,
        "bad",
        "misbehave",
        r#"{"mode":"spin"}"#,
        limits(300),
    );
    let mut good = chain(&engine, &metrics, "good", "noop", "{}", limits(300));
    std::thread::scope(|s| {
        let spinner = s.spawn(move || {
            for _ in 0..3 {
                let out = spinning.process(batch(&["a"]));
                assert_eq!(out.dead.len(), 1, "each spinning batch is dead-lettered");
            }
        });
        // The good pipeline completes batches while the other spins
        // (3 x 300 ms): it is not blocked behind it.
        let mut done = 0;
        while !spinner.is_finished() {
            let out = good.process(batch(&["x", "y"]));
            assert_eq!(out.default.len(), 2);
            done += 1;
        }
        spinner.join().unwrap();
        assert!(
            done > 10,
            "the good pipeline ran only {done} batches meanwhile"
        );
    });
    assert_eq!(metrics.get("plugin.bad.failures"), 3);
    assert_eq!(metrics.get("plugin.good.failures"), 0);
}
