//! Dead letters are redacted before they are written (issue 15, hole 7).
//!
//! A dead letter holds the event as the failing stage received it, so a
//! value the chain masks later is in clear in it. `mask` itself fails
//! closed: a body its `fields` cannot read is dead-lettered, not passed on.
//! The source's `dead_letter_interceptors` run on every dead letter; a
//! redaction stage that fails withholds the body and key instead of letting
//! the dead letter through in clear, and every event stays accounted for.

mod util;

use sluice::metrics::Metrics;
use sluice::plugin::chain::{DEAD_LETTER_REASON, DEAD_LETTER_WITHHELD};
use sluice::plugin::{Chain, FailurePolicy, PluginEngine, Stage, StagePolicy};
use util::{batch, limits, stage};

const CARD: &str = "4111111111111111";

/// `mask` as stage `name` with `config` (JSON).
fn mask_stage(engine: &PluginEngine, metrics: &Metrics, name: &str, config: &str) -> Stage {
    stage(engine, metrics, name, "mask", config, limits(5000))
}

fn header<'a>(event: &sluice_batch::EventRef<'a>, name: &str) -> Option<&'a str> {
    event
        .header(name)
        .map(|v| std::str::from_utf8(v).expect("UTF-8 header"))
}

/// `mask` with `fields` only, then the redaction: what `fields` cannot read
/// is dead-lettered with `mask`'s reason and leaves masked by the redaction's
/// `patterns`.
#[test]
fn unparseable_bodies_are_dead_lettered_and_redacted() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mask = mask_stage(&engine, &metrics, "mask", r#"{"fields":["card"]}"#);
    let redact = mask_stage(
        &engine,
        &metrics,
        "redact",
        r#"{"patterns":["[0-9]{13,19}"]}"#,
    );
    let json = format!(r#"{{"card":"{CARD}"}}"#);
    let csv = format!("t1|{CARD}|2014-10-14 01:18:29|12.5");
    let bad_escape = format!(r#"{{"card":"{CARD}","x":"\q"}}"#);
    let mut chain = Chain::new(vec![mask]).with_redaction(vec![redact]);
    let out = chain.process(batch(&[&json, &csv, &bad_escape]));
    let redacted = chain.redact(out.dead);

    assert_eq!(out.default.len(), 1, "the JSON event goes on");
    let kept = out.default.get(0).unwrap();
    assert!(!String::from_utf8_lossy(kept.body()).contains(CARD));
    assert_eq!(redacted.events.len(), 2, "both unparseable bodies");
    assert_eq!((redacted.dropped, redacted.withheld), (0, 0));
    for event in redacted.events.iter() {
        let body = String::from_utf8_lossy(event.body()).into_owned();
        assert!(!body.contains(CARD), "redacted: {body}");
        assert!(body.contains("************1111"), "{body}");
        assert!(
            header(&event, DEAD_LETTER_REASON)
                .unwrap()
                .starts_with("mask: body is not a JSON document"),
            "mask's reason stays the first"
        );
        assert!(header(&event, DEAD_LETTER_WITHHELD).is_none());
    }
}

/// A redaction stage that fails on an event withholds that event's body and
/// key, whatever its configured policy (here `pass-through`, which would
/// have let it through in clear); the others are redacted; none is lost.
#[test]
fn a_failing_redaction_withholds_the_body() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let reject_all = mask_stage(&engine, &metrics, "strict", r#"{"fields":["card"]}"#);
    let poison = format!("poison {CARD}");
    let failing = stage(
        &engine,
        &metrics,
        "redact",
        "misbehave",
        &format!(r#"{{"mode":"fail","when_body":"{poison}"}}"#),
        limits(5000),
    )
    .with_policy(StagePolicy {
        on_failure: FailurePolicy::PassThrough,
        ..Default::default()
    });
    let mut chain = Chain::new(vec![reject_all]).with_redaction(vec![failing]);
    let bodies: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    let mut input: Vec<&str> = bodies.iter().map(String::as_str).collect();
    input.insert(7, &poison);
    let out = chain.process(batch(&input));
    assert_eq!(out.dead.len(), 21, "none of them is JSON");
    let redacted = chain.redact(out.dead);

    assert_eq!(redacted.events.len(), 21, "every dead letter is written");
    assert_eq!((redacted.dropped, redacted.withheld), (0, 1));
    let withheld: Vec<_> = redacted
        .events
        .iter()
        .filter(|e| header(e, DEAD_LETTER_WITHHELD).is_some())
        .collect();
    assert_eq!(withheld.len(), 1);
    let event = &withheld[0];
    assert_eq!(event.body(), b"", "the body is withheld");
    assert!(event.key().is_none());
    assert_eq!(header(event, DEAD_LETTER_WITHHELD), Some("redact"));
    assert_eq!(event.offset(), 7, "its origin says where to read it again");
    assert!(
        header(event, DEAD_LETTER_REASON)
            .unwrap()
            .starts_with("mask: body is not a JSON document"),
        "the first reason is still the original one"
    );
    let written: String = redacted
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(e.body()).into_owned())
        .collect();
    assert!(!written.contains(CARD));
}

/// A chain without redaction hands dead letters on as they are.
#[test]
fn without_redaction_dead_letters_pass_unchanged() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let mask = mask_stage(&engine, &metrics, "mask", r#"{"fields":["card"]}"#);
    let mut chain = Chain::new(vec![mask]);
    assert!(!chain.redacts());
    let out = chain.process(batch(&["not json"]));
    let redacted = chain.redact(out.dead);
    assert_eq!(redacted.events.len(), 1);
    assert_eq!(redacted.events.get(0).unwrap().body(), b"not json");
}
