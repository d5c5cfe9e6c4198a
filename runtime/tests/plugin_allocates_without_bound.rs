//! Scenario: a plugin allocates without bound. The store's memory limiter
//! stops it at its cap (the growth traps), the batch is dead-lettered, and the
//! runtime and the next batch are unaffected.

mod util;

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
fn a_plugin_allocating_without_bound_is_stopped_at_its_cap() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(
        &engine,
        &metrics,
        "bad",
        "misbehave",
        r#"{"mode":"alloc"}"#,
        limits(5000),
    );
    let out = chain.process(batch(&["a"]));
    assert_eq!(out.dead.len(), 1);
    let reason =
        String::from_utf8_lossy(out.dead.get(0).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("trapped"), "{reason}");
    assert_eq!(metrics.get("plugin.bad.failures"), 1);
}

#[test]
fn the_next_batch_runs_on_a_fresh_instance_after_hitting_the_cap() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(
        &engine,
        &metrics,
        "bad",
        "misbehave",
        r#"{"mode":"alloc","when_body":"hog"}"#,
        limits(5000),
    );
    let out = chain.process(batch(&["hog"]));
    assert_eq!(out.dead.len(), 1);
    let out = chain.process(batch(&["a", "b"]));
    assert_eq!(
        out.default.len(),
        2,
        "memory was given back with the old instance"
    );
}
