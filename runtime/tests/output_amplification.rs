//! Attack: a plugin dead-letters 1000 events with one 20 MiB reason that
//! every outcome refers to. Copied into each event's reason header, that
//! asked the host for 1000 × 20 MiB = 20 GB, outside the plugin's memory
//! limit and time budget. The host now checks a call's output before it
//! copies any of it: a label over 1 KiB fails the batch, the failure policy
//! dead-letters the events with a bounded reason, and every event is
//! accounted for.

mod util;

use sluice::metrics::Metrics;
use sluice::plugin::Chain;
use util::{batch, limits, stage};

#[test]
fn a_shared_20_mib_reason_costs_the_host_nothing() {
    let engine = sluice::plugin::PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let bodies: Vec<String> = (0..1000).map(|i| format!("event {i}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let mut chain = Chain::new(vec![stage(
        &engine,
        &metrics,
        "amplifier",
        "misbehave",
        r#"{"mode":"huge-reason"}"#,
        // Room for the reason and the SDK's copy of it: the plugin builds
        // its answer; the host must refuse to copy it. A budget long enough
        // for a loaded machine to build it, so the refusal, not a timeout,
        // is what fails the batch.
        sluice::plugin::Limits {
            memory_bytes: 128 << 20,
            ..limits(30_000)
        },
    )]);
    let out = chain.process(batch(&bodies));

    assert_eq!(out.default.len(), 0);
    assert_eq!(
        out.dead.len(),
        1000,
        "every event accounted for: dead-lettered"
    );
    assert!(
        out.dead.data.len() < 1000 * 4096,
        "{} bytes of dead letters",
        out.dead.data.len()
    );
    // The reasons are the host's, bounded: the refused output's, or, once
    // bisecting the batch has spent its budget, the last failure's.
    let mut refused = 0;
    for event in out.dead.iter() {
        let reason = String::from_utf8_lossy(event.header("sluice.dead_letter.reason").unwrap());
        assert!(reason.len() < 2048, "{} bytes of reason", reason.len());
        if reason.contains("output over its limits") && reason.contains("at most 1024") {
            refused += 1;
        }
    }
    assert!(refused > 0, "the refusal is the reason given");
    assert!(metrics.get("plugin.amplifier.failures") >= 1);
}

/// Attack: one `get-many` of a million keys, all the same 1 KiB of guest
/// memory (16 MB in the plugin, 1 GB once the host copied each key). The
/// host refuses it before copying: the batch fails and is dead-lettered.
#[test]
fn a_million_key_lookup_is_refused_before_it_is_copied() {
    let engine = sluice::plugin::PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mut chain = Chain::new(vec![stage(
        &engine,
        &metrics,
        "bomb",
        "misbehave",
        r#"{"mode":"lookup-bomb"}"#,
        limits(2_000),
    )]);
    let out = chain.process(batch(&["a"]));
    assert_eq!(out.dead.len(), 1, "the event is accounted for");
    let reason = String::from_utf8_lossy(
        out.dead
            .get(0)
            .unwrap()
            .header("sluice.dead_letter.reason")
            .unwrap(),
    )
    .into_owned();
    assert!(reason.contains("1000000 keys; at most 10000"), "{reason}");
    assert_eq!(metrics.get("plugin.bomb.failures"), 1);
}

/// The bounded `get-many` still answers ordinary requests: `travel-score`
/// prefetches its cards and stores with it and scores every transaction.
#[test]
fn an_ordinary_get_many_is_answered() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use sluice::lookup::{Grants, LookupTable};
    use sluice::plugin::{PluginInstance, Sandbox, Stage};

    let table = |name: &str, rows: &[(&str, &str)]| {
        let t = Arc::new(LookupTable::new(name));
        t.replace(
            rows.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        );
        t
    };
    let customers = table(
        "customers",
        &[(
            "4111111111111111",
            r#"{"card":"4111111111111111","home_lat":"52.0","home_lon":"5.1","recent_stores":""}"#,
        )],
    );
    let stores = table(
        "stores",
        &[("1000", r#"{"store":"1000","lat":52.0,"lon":5.1}"#)],
    );
    let engine = sluice::plugin::PluginEngine::new().unwrap();
    let loaded = engine.load(&util::plugin("travel_score"), None).unwrap();
    let sandbox = Sandbox {
        grants: Grants::new([customers, stores]),
        ..Sandbox::default()
    };
    let instance = PluginInstance::sandboxed(engine, loaded, "score", "{}".into(), sandbox);
    let metrics = Metrics::default();
    let mut chain = Chain::new(vec![Stage::new(instance, &metrics)]);
    let body = r#"{"id":"t1","card":"4111111111111111","time":"2026-12-03 10:00:00","amount":1.5,"store":1000}"#;
    let out = chain.process(batch(&[body, body]));
    assert_eq!(out.default.len(), 2, "dead: {}", out.dead.len());
    for event in out.default.iter() {
        let score = event.header("travel-score").expect("scored");
        assert_ne!(score, b"unknown", "the lookups answered");
    }
}
