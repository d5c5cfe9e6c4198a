//! Scenario: a plugin traps on one specific event of a batch (and other
//! failures: spinning, allocating, failing the batch). The runtime never goes
//! down; under the `dead-letter` policy only the bad event is dead-lettered,
//! with headers naming plugin, version, error and origin; `pass-through` and
//! `pause` do what they say; the circuit breaker stops calling a plugin that
//! keeps failing.

mod util;

use std::time::Duration;

use sluice::config::{BreakerConfig, FailurePolicy};
use sluice::metrics::Metrics;
use sluice::plugin::chain::{
    DEAD_LETTER_DIGEST, DEAD_LETTER_ORIGIN, DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON,
};
use sluice::plugin::{Chain, Limits, PluginEngine, PluginInstance, Stage, StagePolicy};
use sluice::units::HumanDuration;
use util::{batch, limits, plugin};

fn chain(engine: &PluginEngine, metrics: &Metrics, config: &str, limits: Limits) -> Chain {
    chain_with(
        engine,
        metrics,
        config,
        limits,
        FailurePolicy::DeadLetter,
        0,
    )
}

fn chain_with(
    engine: &PluginEngine,
    metrics: &Metrics,
    config: &str,
    limits: Limits,
    on_failure: FailurePolicy,
    breaker_failures: u32,
) -> Chain {
    let policy = StagePolicy {
        on_failure,
        breaker: BreakerConfig {
            failures: breaker_failures,
            cool_down: HumanDuration(Duration::from_secs(60)),
        },
    };
    let stage = util::stage(engine, metrics, "bad", "misbehave", config, limits);
    Chain::new(vec![stage.with_policy(policy)])
}

#[test]
fn only_the_event_that_traps_is_dead_lettered_and_999_pass() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(
        &engine,
        &metrics,
        r#"{"mode":"trap","when_body":"boom"}"#,
        limits(2000),
    );
    let bodies: Vec<String> = (0..1000)
        .map(|i| {
            if i == 637 {
                "boom".to_string()
            } else {
                format!("ev-{i}")
            }
        })
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let out = chain.process(batch(&refs));
    assert_eq!(out.default.len(), 999, "every good event passes");
    assert_eq!(out.dead.len(), 1, "only the bad event is dead-lettered");
    let dead = out.dead.get(0).unwrap();
    assert_eq!(dead.body(), b"boom");
    let header = |name: &str| String::from_utf8_lossy(dead.header(name).unwrap()).into_owned();
    assert!(
        header(DEAD_LETTER_REASON).contains("plugin `bad` trapped"),
        "{}",
        header(DEAD_LETTER_REASON)
    );
    assert_eq!(header(DEAD_LETTER_PLUGIN), "bad");
    assert_eq!(
        header(DEAD_LETTER_ORIGIN),
        "t/0/637",
        "topic/partition/offset of the original"
    );
    assert_eq!(header(DEAD_LETTER_DIGEST).len(), 64, "the version's sha256");
    // Order and origins of the good events are kept.
    let offsets: Vec<i64> = out.default.iter().map(|e| e.offset()).collect();
    let expected: Vec<i64> = (0..1000).filter(|&i| i != 637).collect();
    assert_eq!(offsets, expected);
    assert_eq!(metrics.get("plugin.bad.failures"), 1, "one failed batch");
    assert_eq!(metrics.get("plugin.bad.dead_lettered"), 1);

    // A fresh instance serves the next batch.
    let out = chain.process(batch(&["x", "y"]));
    assert_eq!(out.default.len(), 2);
    assert!(out.dead.is_empty());
}

#[test]
fn pass_through_forwards_the_failed_batch_unchanged_and_counts_it() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain_with(
        &engine,
        &metrics,
        r#"{"mode":"trap","when_body":"boom"}"#,
        limits(2000),
        FailurePolicy::PassThrough,
        0,
    );
    let out = chain.process(batch(&["a", "boom", "c"]));
    assert_eq!(out.default.len(), 3);
    assert!(out.dead.is_empty());
    assert_eq!(out.default.get(1).unwrap().body(), b"boom");
    assert_eq!(metrics.get("plugin.bad.passed_through"), 3);
}

#[test]
fn pause_hands_the_whole_batch_back() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain_with(
        &engine,
        &metrics,
        r#"{"mode":"fail"}"#,
        limits(2000),
        FailurePolicy::Pause,
        0,
    );
    let out = chain.process(batch(&["a", "b"]));
    let paused = out.paused.expect("the chain pauses");
    assert_eq!(paused.plugin, "bad");
    assert_eq!(paused.batch.len(), 2, "the input batch comes back whole");
    assert!(out.default.is_empty() && out.dead.is_empty());
}

#[test]
fn an_open_circuit_breaker_stops_calling_the_plugin() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain_with(
        &engine,
        &metrics,
        r#"{"mode":"fail"}"#,
        limits(2000),
        FailurePolicy::DeadLetter,
        2,
    );
    for _ in 0..5 {
        let out = chain.process(batch(&["a"]));
        assert_eq!(out.dead.len(), 1);
    }
    assert_eq!(
        metrics.get("plugin.bad.failures"),
        2,
        "called only until the breaker opened"
    );
    assert_eq!(metrics.get("plugin.bad.breaker_opened"), 1);
    assert_eq!(metrics.get("plugin.bad.batches"), 5);
    let out = chain.process(batch(&["a"]));
    let reason =
        String::from_utf8_lossy(out.dead.get(0).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("circuit breaker open"), "{reason}");
}

#[test]
fn a_batch_error_from_the_plugin_is_dead_lettered_with_its_message() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(&engine, &metrics, r#"{"mode":"fail"}"#, limits(2000));
    let out = chain.process(batch(&["a", "b"]));
    assert_eq!(out.dead.len(), 2);
    let reason =
        String::from_utf8_lossy(out.dead.get(1).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("failing the batch on purpose"), "{reason}");
}

#[test]
fn a_component_of_the_wrong_world_is_refused_at_load() {
    let engine = PluginEngine::new().unwrap();
    let err = engine
        .load(
            &plugin("delimited"),
            Some(sluice::config::PluginKind::Interceptor),
        )
        .err()
        .expect("a decoder is not an interceptor");
    let msg = err.to_string();
    assert!(
        msg.contains("does not implement the `interceptor` world"),
        "{msg}"
    );
    let err = engine
        .load_bytes("junk.wasm", b"not wasm at all", None)
        .err()
        .expect("junk is refused");
    assert!(
        err.to_string()
            .contains("not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn the_chain_applies_decode_mask_and_route_outcomes() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let stage = |name: &str, file: &str, config: &str| {
        let loaded = engine.load(&plugin(file), None).unwrap();
        Stage::new(
            PluginInstance::new(
                engine.clone(),
                loaded,
                name,
                config.into(),
                Limits::default(),
            ),
            &metrics,
        )
    };
    let mut chain = Chain::new(vec![
        stage(
            "decode",
            "delimited",
            r#"{"delimiter":"|","fields":[{"name":"id","type":"string"},{"name":"card","type":"string"},{"name":"kind","type":"string"}]}"#,
        ),
        stage("mask", "mask", r#"{"fields":["card"],"keep_last":4}"#),
    ]);
    let out = chain.process(batch(&[
        "a|4111111111111111|auth",
        "b|4222222222222222",
        "c|4333333333333333|refund",
    ]));
    assert_eq!(out.default.len(), 2);
    assert_eq!(out.dead.len(), 1, "the short line is dead-lettered");
    let dead = out.dead.get(0).unwrap();
    assert_eq!(
        dead.body(),
        b"b|4222222222222222",
        "the original is dead-lettered"
    );
    assert_eq!(dead.offset(), 1);
    let first: serde_json::Value =
        serde_json::from_slice(out.default.get(0).unwrap().body()).unwrap();
    assert_eq!(first["card"], "************1111");
    assert_eq!(
        out.default.get(1).unwrap().offset(),
        2,
        "origin survives replacement"
    );
    assert_eq!(metrics.get("plugin.decode.dead_lettered"), 1);
}
