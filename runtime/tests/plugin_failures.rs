//! A plugin that traps, spins past its time budget, allocates past its memory
//! cap or fails its batch never takes the runtime down: the batch's events are
//! dead-lettered with the reason, the failure is counted, and the next batch
//! runs on a fresh instance.

mod util;

use std::time::{Duration, Instant};

use sluice::metrics::Metrics;
use sluice::plugin::chain::{DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON};
use sluice::plugin::{Chain, Limits, PluginEngine, PluginInstance, Stage};
use util::{batch, plugin};

fn chain(engine: &PluginEngine, metrics: &Metrics, config: &str, limits: Limits) -> Chain {
    let loaded = engine
        .load(&plugin("misbehave"), None)
        .expect("plugin loads");
    let instance = PluginInstance::new(engine.clone(), loaded, "bad", config.into(), limits);
    Chain::new(vec![Stage::new(instance, metrics)])
}

fn limits(ms: u64) -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        time_budget: Duration::from_millis(ms),
    }
}

#[test]
fn a_trap_dead_letters_the_batch_and_the_next_batch_still_runs() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(
        &engine,
        &metrics,
        r#"{"mode":"trap","when_body":"boom"}"#,
        limits(2000),
    );

    let out = chain.process(batch(&["a", "boom", "c"]));
    assert!(out.default.is_empty());
    assert_eq!(out.dead.len(), 3, "the whole failed batch is dead-lettered");
    let first = out.dead.get(0).unwrap();
    let reason = String::from_utf8_lossy(first.header(DEAD_LETTER_REASON).unwrap()).into_owned();
    assert!(reason.contains("plugin `bad` trapped"), "{reason}");
    assert_eq!(first.header(DEAD_LETTER_PLUGIN), Some(&b"bad"[..]));
    assert_eq!((first.topic(), first.offset()), ("t", 0), "origin kept");
    assert_eq!(metrics.get("plugin.bad.failures"), 1);
    assert_eq!(metrics.get("plugin.bad.dead_lettered"), 3);

    // A fresh instance serves the next batch.
    let out = chain.process(batch(&["x", "y"]));
    assert_eq!(out.default.len(), 2);
    assert!(out.dead.is_empty());
}

#[test]
fn a_spinning_plugin_is_interrupted_within_its_budget() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(&engine, &metrics, r#"{"mode":"spin"}"#, limits(100));
    let started = Instant::now();
    let out = chain.process(batch(&["a", "b"]));
    let took = started.elapsed();
    assert_eq!(out.dead.len(), 2);
    let reason =
        String::from_utf8_lossy(out.dead.get(0).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("exceeded its time budget"), "{reason}");
    // Budget 100 ms, epoch tick 10 ms: interrupted well before a second.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(metrics.get("plugin.bad.failures"), 1);
}

#[test]
fn a_plugin_allocating_without_bound_is_stopped_at_its_cap() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = chain(&engine, &metrics, r#"{"mode":"alloc"}"#, limits(5000));
    let out = chain.process(batch(&["a"]));
    assert_eq!(out.dead.len(), 1);
    let reason =
        String::from_utf8_lossy(out.dead.get(0).unwrap().header(DEAD_LETTER_REASON).unwrap())
            .into_owned();
    assert!(reason.contains("trapped"), "{reason}");
    assert_eq!(metrics.get("plugin.bad.failures"), 1);
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
