//! `mask`: an interceptor plugin that masks sensitive values, keeping only
//! their last characters: `4111111111111111` becomes `************1111`.
//!
//! Two ways to find what to mask, usable together (JSON fields first, then
//! patterns on the result):
//!
//! - `fields`: values in a JSON body, by key or dotted path. Only the masked
//!   values change; the rest of the body stays byte for byte as it was.
//! - `patterns`: regular expressions applied to the raw body (JSON or not);
//!   every match is masked.
//!
//! An event in which nothing matched is passed on as is, without a copy.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.mask]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/mask.wasm"
//! config = { fields = ["card", "payment.iban"], patterns = ['\b\d{13,19}\b'], keep_last = 4 }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `fields` | list of strings | `[]` | JSON keys to mask; `a.b` is key `b` inside the object at key `a`. Arrays are looked through: `items.card` masks `card` in every object of the array `items`. A key whose value is an object or array masks every string and number inside it. Up to 64 entries. |
//! | `patterns` | list of strings | `[]` | Regular expressions ([`regex`] syntax) masked wherever they match the raw body. |
//! | `keep_last` | integer | `4` | Characters left visible at the end of each masked value; a value not longer than this is masked entirely. |
//! | `mask_char` | one-character string | `"*"` | Replacement character. |
//! | `on_unparseable` | `"dead-letter"` or `"pass"` | `"dead-letter"` when `fields` is set, else `"pass"` | What happens to a body `fields` cannot read (see below). |
//!
//! At least one of `fields` and `patterns` must be given. Unknown keys, an
//! invalid regex or a `mask_char` of more than one character fail the batch
//! with a message naming the key.
//!
//! # Details
//!
//! - `fields` applies to bodies that are one JSON document. A body that is
//!   not (not UTF-8, not JSON, a bad escape, trailing bytes, empty, or
//!   nested deeper than 128 levels) cannot have its fields masked, so by default it
//!   is dead-lettered with the reason [`UNPARSEABLE`]: a masking stage fails
//!   closed instead of passing a card number on in clear. With
//!   `on_unparseable = "pass"` such a body goes on as before, with only
//!   `patterns` applied. A JSON scalar (`42`, `"text"`) is a document: it has
//!   no fields, and passes.
//! - Strings and numbers are masked; a masked number becomes a string
//!   (`"card": 4111111111111111` becomes `"card": "************1111"`).
//!   Booleans and `null` are left alone.
//! - Masking counts characters (Unicode scalar values), not bytes.

use std::borrow::Cow;
use std::ops::Range;

use regex::bytes::Regex;
use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

mod json;

/// Most `fields` entries: a bit mask tracks which still match while walking.
const MAX_FIELDS: usize = 64;

/// The plugin configuration (see the crate docs).
#[derive(Debug)]
pub struct Config {
    /// `fields`, split on dots.
    fields: Vec<Vec<String>>,
    /// `patterns`, compiled.
    patterns: Vec<Regex>,
    keep_last: usize,
    mask_char: char,
    on_unparseable: OnUnparseable,
}

/// The dead-letter reason of a body `fields` cannot read (the same in every
/// language's `mask`: the golden files hold it).
pub const UNPARSEABLE: &str = "mask: body is not a JSON document (or nests deeper than 128 levels); its fields cannot be masked";

/// What happens to a body `fields` cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnparseable {
    /// Dead-letter it with [`UNPARSEABLE`] (the default with `fields`).
    DeadLetter,
    /// Pass it on with only `patterns` applied.
    Pass,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default, deserialize_with = "regexes")]
    patterns: Vec<Regex>,
    #[serde(default = "default_keep_last")]
    keep_last: usize,
    #[serde(default = "default_mask_char")]
    mask_char: char,
    #[serde(default)]
    on_unparseable: Option<OnUnparseable>,
}

fn default_keep_last() -> usize {
    4
}

fn default_mask_char() -> char {
    '*'
}

fn regexes<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<Regex>, D::Error> {
    let sources = Vec::<String>::deserialize(de)?;
    sources
        .iter()
        .map(|s| {
            Regex::new(s).map_err(|e| serde::de::Error::custom(format!("invalid regex {s:?}: {e}")))
        })
        .collect()
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = RawConfig::deserialize(de)?;
        if raw.fields.is_empty() && raw.patterns.is_empty() {
            return Err(D::Error::custom(
                "nothing to mask: set `fields` (JSON keys) or `patterns` (regexes), or both",
            ));
        }
        if raw.fields.len() > MAX_FIELDS {
            return Err(D::Error::custom(format!(
                "`fields` has {} entries; at most {MAX_FIELDS} are supported",
                raw.fields.len()
            )));
        }
        let mut fields = Vec::with_capacity(raw.fields.len());
        for field in &raw.fields {
            let path: Vec<String> = field.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(D::Error::custom(format!(
                    "`fields` entry {field:?} has an empty segment; write keys as `a` or `a.b`"
                )));
            }
            fields.push(path);
        }
        let on_unparseable = raw.on_unparseable.unwrap_or(if fields.is_empty() {
            OnUnparseable::Pass
        } else {
            OnUnparseable::DeadLetter
        });
        Ok(Config {
            fields,
            patterns: raw.patterns,
            keep_last: raw.keep_last,
            mask_char: raw.mask_char,
            on_unparseable,
        })
    }
}

/// Masks the configured values of the event.
#[sluice_guest::interceptor]
pub fn mask(event: &mut Event) -> Result<Outcome, Error> {
    let config: &Config = sluice_guest::config()?;
    let body = event.body();
    let mut new_body: Option<Vec<u8>> = None;

    if !config.fields.is_empty() {
        match json::find_fields(body, &config.fields) {
            Some(edits) if !edits.is_empty() => {
                new_body = Some(apply_json_edits(body, &edits, config));
            }
            Some(_) => {}
            None if config.on_unparseable == OnUnparseable::DeadLetter => {
                return Ok(Outcome::dead_letter(UNPARSEABLE));
            }
            None => {}
        }
    }

    if !config.patterns.is_empty() {
        let current = new_body.as_deref().unwrap_or(body);
        if let Some(masked) = mask_patterns(current, config) {
            new_body = Some(masked);
        }
    }

    if let Some(body) = new_body {
        event.set_body(body);
    }
    Ok(Outcome::Keep)
}

/// Masks `value`, keeping its last `keep_last` characters; a value not longer
/// than that is masked entirely.
fn mask_str(value: &str, config: &Config, out: &mut String) {
    let n = value.chars().count();
    let hidden = if n <= config.keep_last {
        n
    } else {
        n - config.keep_last
    };
    out.extend(std::iter::repeat_n(config.mask_char, hidden));
    out.extend(value.chars().skip(hidden));
}

/// The body with each JSON value at `edits` replaced by a masked string.
fn apply_json_edits(body: &[u8], edits: &[json::Edit], config: &Config) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    let mut masked = String::new();
    for edit in edits {
        out.extend_from_slice(&body[at..edit.span.start]);
        let raw = &body[edit.span.clone()];
        let text: Cow<'_, str> = match edit.kind {
            // A JSON string: decode escapes first.
            json::Kind::String => match serde_json::from_slice::<String>(raw) {
                Ok(s) => Cow::Owned(s),
                Err(_) => Cow::Borrowed(""),
            },
            // A number: its digits as written.
            json::Kind::Number => String::from_utf8_lossy(raw),
        };
        masked.clear();
        mask_str(&text, config, &mut masked);
        // Serializing a `str` cannot fail.
        let _ = serde_json::to_writer(&mut out, masked.as_str());
        at = edit.span.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// The body with every pattern match masked; `None` when nothing matched.
fn mask_patterns(body: &[u8], config: &Config) -> Option<Vec<u8>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for pattern in &config.patterns {
        ranges.extend(
            pattern
                .find_iter(body)
                .filter(|m| !m.is_empty())
                .map(|m| m.range()),
        );
    }
    if ranges.is_empty() {
        return None;
    }
    // Matches of several patterns may overlap: mask their union.
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    let mut masked = String::new();
    for r in merged {
        out.extend_from_slice(&body[at..r.start]);
        let text = String::from_utf8_lossy(&body[r.clone()]);
        masked.clear();
        mask_str(&text, config, &mut masked);
        out.extend_from_slice(masked.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};

    fn run(config: &str, bodies: &[&str]) -> Vec<TestOutput> {
        testing::set_config(config);
        let events: Vec<TestEvent> = bodies.iter().map(|b| TestEvent::new(*b)).collect();
        testing::run(mask, &events)
    }

    fn fail(config: &str) -> String {
        testing::set_config(config);
        testing::try_run(mask, &[TestEvent::new("{}")])
            .unwrap_err()
            .into_message()
    }

    #[test]
    fn masks_a_card_field_keeping_the_rest_verbatim() {
        let body = r#"{"id": "u1", "card": "4111111111111111", "amount": 67.88}"#;
        let out = run(r#"{"fields": ["card"], "keep_last": 4}"#, &[body]);
        assert!(out[0].modified);
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"id": "u1", "card": "************1111", "amount": 67.88}"#)
        );
    }

    #[test]
    fn masks_numbers_as_strings_and_nested_paths_through_arrays() {
        let body = r#"{"payment":{"card":4111111111111111,"cvv":"123"},"items":[{"card":"5500000000000004"},{"other":1}]}"#;
        let out = run(r#"{"fields": ["payment.card", "items.card"]}"#, &[body]);
        let json = out[0].event.body_json();
        assert_eq!(json["payment"]["card"], "************1111");
        assert_eq!(json["payment"]["cvv"], "123");
        assert_eq!(json["items"][0]["card"], "************0004");
        assert_eq!(json["items"][1]["other"], 1);
    }

    #[test]
    fn masks_everything_under_an_object_key() {
        let body = r#"{"secret":{"a":"abcdef","b":[12345,true,null]},"k":"v"}"#;
        let out = run(
            r#"{"fields": ["secret"], "keep_last": 2, "mask_char": "x"}"#,
            &[body],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"secret":{"a":"xxxxef","b":["xxx45",true,null]},"k":"v"}"#)
        );
    }

    #[test]
    fn short_values_are_masked_entirely_and_escapes_decoded() {
        let body = r#"{"pin":"12","name":"J\u00f6rg \"J\""}"#;
        let out = run(r#"{"fields": ["pin", "name"], "keep_last": 3}"#, &[body]);
        let json = out[0].event.body_json();
        assert_eq!(json["pin"], "**");
        assert_eq!(json["name"], "*****\"J\"");
    }

    #[test]
    fn unchanged_events_are_not_copied() {
        let out = run(
            r#"{"fields": ["card"], "on_unparseable": "pass"}"#,
            &[
                r#"{"id": 1}"#,
                "not json",
                "",
                r#"{"card": true}"#,
                r#"{"card": "x""#,
            ],
        );
        for o in &out {
            assert_eq!(o.outcome, Outcome::Keep);
            assert!(!o.modified, "{:?}", o.event.body_str());
        }
    }

    #[test]
    fn unparseable_bodies_are_dead_lettered_by_default() {
        let deep = format!(
            "{}{{\"card\":\"4111111111111111\"}}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let bodies = [
            "not json 4111111111111111",
            "",
            r#"{"card": "4111111111111111""#,
            r#"{"card": "4111111111111111", "note": "\q"}"#,
            r#"{"card": "4111111111111111"} trailing"#,
            deep.as_str(),
        ];
        let out = run(
            r#"{"fields": ["card"], "patterns": ["\\d{13,19}"]}"#,
            &bodies,
        );
        for (o, body) in out.iter().zip(bodies) {
            assert_eq!(o.outcome, Outcome::dead_letter(UNPARSEABLE), "{body:?}");
        }
        // The same with the policy spelled out.
        let out = run(
            r#"{"fields": ["card"], "on_unparseable": "dead-letter"}"#,
            &bodies[..1],
        );
        assert_eq!(out[0].outcome, Outcome::dead_letter(UNPARSEABLE));
    }

    #[test]
    fn json_scalars_and_shallow_nesting_are_documents() {
        let nested = format!(
            "{}{{\"card\":\"4111111111111111\"}}{}",
            "[".repeat(100),
            "]".repeat(100)
        );
        let out = run(
            r#"{"fields": ["card"]}"#,
            &["42", r#""text""#, "null", &nested],
        );
        for o in &out[..3] {
            assert_eq!(o.outcome, Outcome::Keep);
            assert!(!o.modified);
        }
        assert!(
            out[3]
                .event
                .body_str()
                .unwrap()
                .contains("************1111")
        );
    }

    #[test]
    fn pass_lets_unparseable_bodies_through_with_patterns_applied() {
        let out = run(
            r#"{"fields": ["card"], "patterns": ["\\d{13,19}"], "on_unparseable": "pass"}"#,
            &["not json 4111111111111111"],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(out[0].event.body_str(), Some("not json ************1111"));
    }

    #[test]
    fn patterns_mask_raw_bodies() {
        let out = run(
            r#"{"patterns": ["\\b\\d{13,19}\\b"]}"#,
            &[
                "uuid|4111111111111111|2014-10-14 01:18:29|67.88|1433",
                "no card here 1433",
            ],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some("uuid|************1111|2014-10-14 01:18:29|67.88|1433")
        );
        assert!(!out[1].modified);
    }

    #[test]
    fn fields_then_patterns() {
        let out = run(
            r#"{"fields": ["card"], "patterns": ["secret-\\w+"], "keep_last": 0}"#,
            &[r#"{"card":"1234","note":"secret-abc"}"#],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"card":"****","note":"**********"}"#)
        );
    }

    #[test]
    fn headers_and_key_survive() {
        testing::set_config(r#"{"fields": ["card"]}"#);
        let out = testing::run(
            mask,
            &[TestEvent::new(r#"{"card":"4111111111111111"}"#)
                .with_key("k")
                .with_header("h", "v")],
        );
        assert_eq!(out[0].event.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out[0].event.header_str("h"), Some("v"));
    }

    #[test]
    fn rejects_bad_configs_naming_the_key() {
        assert!(fail(r#"{"fields": ["card"], "keep": 4}"#).contains("unknown field `keep`"));
        let e = fail(r#"{"patterns": ["("]}"#);
        assert!(
            e.starts_with("invalid plugin config: patterns: invalid regex \"(\""),
            "{e}"
        );
        let e = fail(r#"{"fields": ["card"], "mask_char": "**"}"#);
        assert!(e.starts_with("invalid plugin config: mask_char: "), "{e}");
        let e = fail(r#"{"fields": ["card"], "keep_last": -1}"#);
        assert!(e.starts_with("invalid plugin config: keep_last: "), "{e}");
        assert!(fail("{}").contains("nothing to mask"));
        assert!(fail(r#"{"fields": ["a..b"]}"#).contains("empty segment"));
        let e = fail(r#"{"fields": ["card"], "on_unparseable": "drop"}"#);
        assert!(
            e.starts_with("invalid plugin config: on_unparseable: unknown variant `drop`"),
            "{e}"
        );
    }

    #[test]
    fn doc_example_config_works() {
        let out = run(
            &sluice_guest::testing::doc_example_config(include_str!("lib.rs")),
            &[r#"{"card":"4111111111111111","note":"paid with 5500000000000004"}"#],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"card":"************1111","note":"paid with ************0004"}"#)
        );
    }
}
