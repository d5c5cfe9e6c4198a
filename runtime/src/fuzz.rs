//! Property-based fuzz targets for every parser of bytes Sluice does not
//! control: the write-ahead log's records and recovery, the checkpoint, the
//! flat batch (`validate`, `decode_outcomes`: what a plugin hands back), path
//! template rendering, the jsonl encoder (differentially against
//! `serde_json`), the configuration loader with interpolation and units, and
//! `sluice plugin test` input. (The commit records' chain check has its own
//! target in the object-store sink's `chain` module; the `delimited` and
//! `mask` plugins' scanners in their crates.)
//!
//! Each target runs `PROPTEST_CASES` cases (proptest's default, 256, in the
//! ordinary test run and CI). For a longer run by hand:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release -p sluice --lib fuzz::
//! ```
//!
//! A failure prints the minimal input proptest shrank it to; such inputs
//! become regression tests below (`regressions`).

use proptest::prelude::*;
use sluice_batch::{BatchBuf, NewEvent, OUTCOME_STRIDE, decode_outcomes};

use crate::channels::file::{checkpoint, wal};
use crate::sinks::object_store::format::Format;
use crate::sinks::object_store::path::{MAX_VALUE_BYTES, PathTemplate, TimeCache};

/// An event's parts: key, body, headers, topic, partition, offset, timestamp.
type Parts = (
    Option<Vec<u8>>,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    String,
    i32,
    i64,
    i64,
);

/// Arbitrary events: any bytes for key, body and header values, any text
/// for header names and topic.
fn event_parts() -> impl Strategy<Value = Parts> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(
            (".{0,8}", proptest::collection::vec(any::<u8>(), 0..20)),
            0..6,
        ),
        ".{0,12}",
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
    )
}

fn batch_of(events: &[Parts]) -> BatchBuf {
    let mut b = BatchBuf::default();
    for (key, body, headers, topic, partition, offset, timestamp) in events {
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        b.push(&NewEvent {
            key: key.as_deref(),
            body,
            headers: &headers,
            topic,
            partition: *partition,
            offset: *offset,
            timestamp: *timestamp,
        });
    }
    b
}

/// Standard base64 with padding: the reference the encoder is checked by.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a jsonl field must hold for `bytes`: the text, or its base64.
fn text_or_base64(bytes: &[u8]) -> (serde_json::Value, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (serde_json::Value::String(s.to_owned()), false),
        Err(_) => (serde_json::Value::String(base64(bytes)), true),
    }
}

proptest! {
    // Found inputs become tests in `regressions`, not files in the tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes in a segment: scanning never panics, what it calls good
    /// really decodes, and the good end never passes the file.
    #[test]
    fn wal_scan_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let mut all = wal::MAGIC.to_vec();
        all.extend_from_slice(&bytes);
        std::fs::write(&path, &all).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let scan = wal::scan(&file, wal::HEADER_LEN).unwrap();
        prop_assert!(scan.good_end <= scan.len);
        for (start, end, _) in &scan.holes {
            prop_assert!(start < end && *end <= scan.len);
        }
        let _ = wal::find_record(&bytes);
        let _ = wal::decode_payload(&bytes);
    }

    /// Records written, then damaged anywhere: every record outside the
    /// damaged range is recovered, in order, by a scan with resync.
    #[test]
    fn wal_records_survive_damage_elsewhere(
        batches in proptest::collection::vec(proptest::collection::vec(event_parts(), 1..4), 1..6),
        at in any::<prop::sample::Index>(),
        len in 1usize..24,
        fill in any::<u8>(),
    ) {
        let mut bytes = wal::MAGIC.to_vec();
        let mut bounds = Vec::new();
        for events in &batches {
            let start = bytes.len();
            wal::encode(&batch_of(events), &mut bytes).unwrap();
            bounds.push((start, bytes.len()));
        }
        let body = wal::HEADER_LEN as usize..bytes.len();
        let from = body.start + at.index(body.len());
        let to = (from + len).min(bytes.len());
        let before = bytes.clone();
        bytes[from..to].fill(fill);
        let damaged: Vec<bool> = bounds
            .iter()
            .map(|&(s, e)| s < to && from < e && before[s..e] != bytes[s..e])
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let scan = wal::scan(&file, wal::HEADER_LEN).unwrap();
        let intact = damaged.iter().filter(|d| !**d).count() as u64;
        prop_assert_eq!(scan.records, intact, "holes {:?} bad {:?}", scan.holes, scan.bad);
    }

    /// The checkpoint decoder: any bytes decode to nothing or to what an
    /// encoding holds; encodings round-trip.
    #[test]
    fn checkpoint_decode_of_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        segment in any::<u64>(),
        offset in any::<u64>(),
    ) {
        if let Some(p) = checkpoint::decode(&bytes) {
            prop_assert_eq!(&checkpoint::encode(p)[..], &bytes[..]);
        }
        let pos = checkpoint::Position { segment, offset };
        prop_assert_eq!(checkpoint::decode(&checkpoint::encode(pos)), Some(pos));
    }

    /// What a plugin hands back: any words and bytes are refused or, once
    /// accepted, every accessor works without panicking.
    #[test]
    fn flat_batch_from_any_parts(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        index in proptest::collection::vec(prop_oneof![any::<u32>(), 0u32..64], 0..60),
        outcomes in proptest::collection::vec(prop_oneof![any::<u32>(), 0u32..6], 0..30),
        replacements in 0usize..4,
        labels in 0usize..4,
    ) {
        if let Ok(b) = BatchBuf::from_parts(data, index) {
            for e in b.iter() {
                let _ = (e.key(), e.body(), e.topic(), e.partition(), e.offset(), e.timestamp(), e.size());
                for h in e.headers() {
                    let _ = h;
                }
                let mut copy = BatchBuf::default();
                copy.push_ref(&e, None);
                prop_assert!(copy.validate().is_ok());
            }
        }
        let events = outcomes.len() / OUTCOME_STRIDE;
        if let Ok(entries) = decode_outcomes(&outcomes, events, replacements, labels) {
            prop_assert_eq!(entries.len(), events);
        }
    }

    /// Path templates: any template parses or is refused; rendering any
    /// header value stays inside its directory and never starts a component
    /// that readers skip.
    #[test]
    fn path_rendering_of_any_value(
        template in ".{0,24}",
        value in proptest::collection::vec(any::<u8>(), 0..400),
        timestamp in any::<i64>(),
    ) {
        let _ = PathTemplate::parse(&template, "unknown");
        let t = PathTemplate::parse("a/%{h}/b=%{h}/%Y", "unknown").unwrap();
        let b = batch_of(&[(None, vec![], vec![("h".into(), value)], "t".into(), 0, 0, timestamp)]);
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), 0, &mut TimeCache::default(), &mut out);
        let parts: Vec<&str> = out.split('/').collect();
        prop_assert_eq!(parts.len(), 4, "{}", out);
        prop_assert_eq!(parts[0], "a");
        let v = parts[1];
        prop_assert!(!v.is_empty() && !v.starts_with('.') && !v.starts_with('_'), "{}", v);
        prop_assert!(v.len() <= MAX_VALUE_BYTES, "{}", v.len());
        prop_assert!(!v.chars().any(|c| c.is_control() || c == '\\'));
        prop_assert!(parts[2].starts_with("b="));
    }

    /// The jsonl encoder, differentially: every line parses with serde_json
    /// and holds exactly the event (text, or base64 listed in `base64`).
    #[test]
    fn jsonl_matches_serde_json(parts in event_parts(), json_body in any::<bool>()) {
        let mut parts = parts;
        if json_body {
            parts.1 = serde_json::to_vec(&serde_json::json!({"s": String::from_utf8_lossy(&parts.1), "n": parts.5})).unwrap();
        }
        let b = batch_of(std::slice::from_ref(&parts));
        let (key, body, headers, topic, partition, offset, timestamp) = parts;
        let mut line = Vec::new();
        Format::Jsonl.encode(&b.get(0).unwrap(), &mut line);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(line.iter().filter(|&&c| c == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let mut b64 = Vec::new();
        match &key {
            None => prop_assert!(v["key"].is_null()),
            Some(k) => {
                let (want, is_b64) = text_or_base64(k);
                prop_assert_eq!(&v["key"], &want);
                if is_b64 { b64.push("key".to_string()); }
            }
        }
        if json_body {
            let want: serde_json::Value = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(&v["value"], &want);
        } else if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|b| b.is_object() || b.is_array()) {
            // An arbitrary body that happens to be a JSON container.
        } else {
            let (want, is_b64) = text_or_base64(&body);
            prop_assert_eq!(&v["value"], &want);
            if is_b64 { b64.push("value".to_string()); }
        }
        prop_assert_eq!(&v["topic"], &serde_json::json!(topic));
        prop_assert_eq!(&v["partition"], &serde_json::json!(partition));
        prop_assert_eq!(&v["offset"], &serde_json::json!(offset));
        if timestamp >= 0 {
            prop_assert_eq!(&v["timestamp"], &serde_json::json!(timestamp));
        } else {
            prop_assert!(v["timestamp"].is_null());
        }
        let mut first = serde_json::Map::new();
        for (name, value) in &headers {
            if !first.contains_key(name) {
                let (want, is_b64) = text_or_base64(value);
                if is_b64 { b64.push(format!("headers.{name}")); }
                first.insert(name.clone(), want);
            }
        }
        prop_assert_eq!(&v["headers"], &serde_json::Value::Object(first));
        let listed: Vec<String> = v.get("base64").and_then(|l| l.as_array()).map(|l| {
            l.iter().map(|s| s.as_str().unwrap().to_owned()).collect()
        }).unwrap_or_default();
        prop_assert_eq!(listed, b64);
    }

    /// The configuration loader: any text with `${…}` references and unit
    /// values is loaded or refused with a located error, never a panic.
    #[test]
    fn config_loader_of_any_text(
        text in "([a-z_\\[\\]=\" .${}:-]|\n|[0-9]|KiB|ms){0,120}",
        unit in ".{0,12}",
    ) {
        let _ = crate::config::parse(std::path::Path::new("fuzz.toml"), &text, |name| {
            (name.len() % 2 == 0).then(|| format!("v{name}"))
        });
        let _ = crate::config::interpolate::interpolate(&text, |_| None);
        if let Ok(d) = unit.parse::<crate::units::HumanDuration>() {
            let _ = d.get();
        }
        if let Ok(b) = unit.parse::<crate::units::ByteSize>() {
            let _ = b.get();
        }
    }

    /// A config around valid sections with fuzzed values: errors name a line.
    #[test]
    fn config_values_are_checked_with_a_location(value in ".{0,16}") {
        let text = format!(
            "[sources.s]\ntype = \"exec\"\ncommand = [\"true\"]\nbatch_max_bytes = {value:?}\nchannels = [\"c\"]\n\
             [channels.c]\ntype = \"memory\"\n[sinks.k]\ntype = \"null\"\nchannel = \"c\"\n"
        );
        if let Err(errors) = crate::config::parse(std::path::Path::new("fuzz.toml"), &text, |_| None) {
            for e in errors.0 {
                prop_assert!(e.line > 0, "{e}");
            }
        }
    }

    /// `sluice plugin test` input: any text is events or a located error.
    #[test]
    fn plugin_test_input_of_any_text(text in "(\\{|\\}|\"[a-z]{0,3}\"|:|,|[0-9]{1,3}|null|\\[|\\]|\n| ){0,40}") {
        match crate::plugin::input::parse("in.jsonl", &text) {
            Ok(events) => {
                let mut b = BatchBuf::default();
                for (i, e) in events.iter().enumerate() {
                    e.push_to(&mut b, i);
                }
                prop_assert!(b.validate().is_ok());
            }
            Err(e) => prop_assert!(e.0.starts_with("in.jsonl:"), "{}", e),
        }
    }
}

/// Inputs the targets once found, kept as plain tests.
mod regressions {
    use super::*;

    /// `path_rendering_of_any_value` found it: a value starting with a
    /// control character was escaped to `_…`, a name readers skip.
    #[test]
    fn a_leading_control_character_does_not_hide_the_directory() {
        let t = PathTemplate::parse("%{h}", "unknown").unwrap();
        let b = batch_of(&[(
            None,
            vec![],
            vec![("h".into(), vec![0, b'x'])],
            "t".into(),
            0,
            0,
            0,
        )]);
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), 0, &mut TimeCache::default(), &mut out);
        assert_eq!(out, "%5Fx");
    }
}
