//! Attack: a plugin sets the host's provenance headers on the events it
//! returns (`sluice.lineage`, `sluice.dead_letter.reason`) and removes one
//! the host set (`sluice.exec.part`). Readers take a header's first value,
//! so a forged one set before the host's would be believed. The host keeps
//! the original event's host headers instead, counts what it discarded, and
//! the lineage and dead-letter headers downstream are the host's alone.

mod util;

use sluice::metrics::Metrics;
use sluice::plugin::{Chain, FailurePolicy, PluginEngine, StagePolicy};
use sluice_batch::{BatchBuf, NewEvent};
use util::{limits, stage};

/// Events as an `exec` source makes them: with the host's part header.
fn batch(n: usize) -> BatchBuf {
    let mut b = BatchBuf::default();
    for i in 0..n {
        let body = format!("event {i}");
        b.push(&NewEvent {
            key: None,
            body: body.as_bytes(),
            headers: &[("sluice.exec.part", b"1/2"), ("trace", b"t")],
            topic: "t",
            partition: 0,
            offset: i as i64,
            timestamp: 1_000,
        });
    }
    b
}

fn values<'a>(event: &sluice_batch::EventRef<'a>, name: &str) -> Vec<&'a [u8]> {
    event
        .headers()
        .map(|h| h.expect("well-formed headers"))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn a_plugin_cannot_forge_or_erase_provenance() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let forger = stage(
        &engine,
        &metrics,
        "forger",
        "misbehave",
        r#"{"mode":"forge"}"#,
        limits(2000),
    );
    let digest = forger.instance.digest()[..16].to_owned();
    let mut chain = Chain::new(vec![forger]);
    let out = chain.process(batch(100));

    assert_eq!(out.default.len(), 100, "every event kept");
    assert_eq!(out.dead.len(), 0);
    for event in out.default.iter() {
        let lineage = values(&event, "sluice.lineage");
        assert_eq!(
            lineage,
            vec![format!("forger@{digest}").as_bytes()],
            "one lineage, the host's"
        );
        assert!(values(&event, "sluice.dead_letter.reason").is_empty());
        assert_eq!(
            values(&event, "sluice.exec.part"),
            vec![&b"1/2"[..]],
            "kept"
        );
        assert_eq!(values(&event, "trace"), vec![&b"t"[..]]);
    }
    assert_eq!(metrics.get("plugin.forger.forged_headers"), 200);
}

#[test]
fn a_dead_letter_reason_is_the_hosts() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let forger = stage(
        &engine,
        &metrics,
        "forger",
        "misbehave",
        r#"{"mode":"forge"}"#,
        limits(2000),
    );
    // The second stage fails every batch, so the forger's output is
    // dead-lettered: the reason readers see must be the host's.
    let failing = stage(
        &engine,
        &metrics,
        "failing",
        "misbehave",
        r#"{"mode":"fail"}"#,
        limits(2000),
    )
    .with_policy(StagePolicy {
        on_failure: FailurePolicy::DeadLetter,
        ..StagePolicy::default()
    });
    let mut chain = Chain::new(vec![forger, failing]);
    let out = chain.process(batch(8));

    assert_eq!(out.dead.len(), 8, "every event dead-lettered");
    for event in out.dead.iter() {
        let reasons = values(&event, "sluice.dead_letter.reason");
        assert_eq!(reasons.len(), 1, "one reason");
        let reason = String::from_utf8_lossy(reasons[0]);
        assert!(reason.contains("failing the batch on purpose"), "{reason}");
        assert!(
            values(&event, "sluice.lineage").is_empty(),
            "no forged lineage"
        );
        assert_eq!(
            values(&event, "sluice.dead_letter.plugin"),
            vec![&b"failing"[..]]
        );
    }
}
