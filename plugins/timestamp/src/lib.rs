//! `timestamp`: an interceptor plugin that stamps each event with its time,
//! like Flume's timestamp interceptor: it writes the time in milliseconds
//! since the Unix epoch, as a decimal string, into a header, and sets the
//! event's timestamp to the same value.
//!
//! The time comes from the Kafka record timestamp or from a field of a JSON
//! body. There is no "current time" source: plugins have no clock.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.stamp]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/timestamp.wasm"
//! config = { source = "field", field = "event.time", format = "%Y-%m-%d %H:%M:%S" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `header` | string | `"timestamp"` | Header to write. |
//! | `source` | `"kafka"` or `"field"` | `"kafka"` | `kafka`: the event's own (Kafka) timestamp. `field`: a field of the JSON body. `"now"` is rejected: plugins have no clock. |
//! | `field` | string | required for `field` | Key or dotted path (`a.b`: key `b` inside the object at `a`) of the body field. Only with `source = "field"`. |
//! | `format` | string | `"%Y-%m-%d %H:%M:%S"` | [`chrono` strftime] format of a string field, read as UTC unless the format has an offset (`%z`). Only with `source = "field"`. |
//! | `preserve_existing` | bool | `false` | Leave events that already have the header untouched. |
//!
//! Unknown keys, `field`/`format` without `source = "field"`, or an invalid
//! `format` fail the batch with a message naming the key.
//!
//! # Field values
//!
//! - A JSON string is parsed with `format`; if that fails and it is all
//!   digits, it is taken as epoch milliseconds.
//! - A JSON integer is epoch milliseconds.
//! - Anything else, a missing field, or a body that is not a JSON object is
//!   dead-lettered with a reason such as
//!   `timestamp: field "ts": cannot parse "yesterday" with format "%Y-%m-%d %H:%M:%S"`.
//!
//! With `source = "kafka"`, an event without a timestamp is dead-lettered.
//!
//! [`chrono` strftime]: https://docs.rs/chrono/latest/chrono/format/strftime/index.html

use chrono::format::{Item, Parsed, StrftimeItems};
use serde::Deserialize;
use serde_json::Value;
use sluice_guest::{Error, Event, Outcome};

/// The plugin configuration (see the crate docs).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    header: String,
    source: Source,
    preserve_existing: bool,
}

#[derive(Debug)]
enum Source {
    Kafka,
    Field {
        /// Dotted path, split.
        path: Vec<String>,
        /// As configured, for messages.
        name: String,
        format: TimeFormat,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_source")]
    source: String,
    field: Option<String>,
    format: Option<String>,
    #[serde(default)]
    preserve_existing: bool,
}

fn default_header() -> String {
    "timestamp".to_owned()
}

fn default_source() -> String {
    "kafka".to_owned()
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        if raw.header.is_empty() {
            return Err("`header` is empty: name the header to write".into());
        }
        let source = match raw.source.as_str() {
            "kafka" => {
                if raw.field.is_some() || raw.format.is_some() {
                    return Err("`field` and `format` apply only with `source = \"field\"`".into());
                }
                Source::Kafka
            }
            "field" => {
                let name = raw
                    .field
                    .ok_or("`source = \"field\"` needs `field`: the JSON key holding the time")?;
                let path: Vec<String> = name.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(format!("`field` {name:?} has an empty segment"));
                }
                let format = raw.format.unwrap_or_else(|| "%Y-%m-%d %H:%M:%S".to_owned());
                let format = TimeFormat::new(&format).map_err(|e| {
                    format!("`format` {format:?} is not a valid strftime format: {e}")
                })?;
                Source::Field { path, name, format }
            }
            "now" => {
                return Err(
                    "`source = \"now\"` is not supported: plugins have no clock; \
                            use \"kafka\" (the record timestamp) or \"field\""
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "`source` is {other:?}; expected \"kafka\" or \"field\""
                ));
            }
        };
        Ok(Config {
            header: raw.header,
            source,
            preserve_existing: raw.preserve_existing,
        })
    }
}

/// A strftime format, parsed once.
#[derive(Debug)]
struct TimeFormat {
    text: String,
    items: Vec<Item<'static>>,
}

impl TimeFormat {
    fn new(text: &str) -> Result<Self, String> {
        let items = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            text: text.to_owned(),
            items,
        })
    }

    /// Milliseconds since the epoch; UTC unless the format has an offset.
    fn parse_millis(&self, value: &str) -> Option<i64> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, value, self.items.iter()).ok()?;
        if parsed.offset().is_some() {
            return parsed.to_datetime().ok().map(|t| t.timestamp_millis());
        }
        if let Ok(t) = parsed.to_naive_datetime_with_offset(0) {
            return Some(t.and_utc().timestamp_millis());
        }
        let date = parsed.to_naive_date().ok()?;
        Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
    }
}

/// Writes the event time into the header and the event timestamp.
#[sluice_guest::interceptor]
pub fn stamp(event: &mut Event) -> Result<Outcome, Error> {
    let config: &Config = sluice_guest::config()?;
    if config.preserve_existing && event.header(&config.header).is_some() {
        return Ok(Outcome::Keep);
    }
    let millis = match &config.source {
        Source::Kafka => match event.timestamp() {
            Some(t) => t,
            None => {
                return Ok(Outcome::dead_letter(
                    "timestamp: the event has no kafka timestamp",
                ));
            }
        },
        Source::Field { path, name, format } => match field_millis(event.body(), path, format) {
            Ok(t) => t,
            Err(reason) => {
                return Ok(Outcome::dead_letter(format!(
                    "timestamp: field {name:?}: {reason}"
                )));
            }
        },
    };
    event.set_header(&config.header, millis.to_string());
    event.set_timestamp(millis);
    Ok(Outcome::Keep)
}

/// The time in the body's field at `path`, or why there is none.
fn field_millis(body: &[u8], path: &[String], format: &TimeFormat) -> Result<i64, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_owned())?;
    if !doc.is_object() {
        return Err("the body is not a JSON object".to_owned());
    }
    let mut value = &doc;
    for key in path {
        value = value.get(key).ok_or("missing")?;
    }
    match value {
        Value::String(s) => format
            .parse_millis(s)
            .or_else(|| {
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse::<i64>().ok())
                    .flatten()
            })
            .ok_or_else(|| format!("cannot parse {s:?} with format {:?}", format.text)),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not whole epoch milliseconds")),
        other => Err(format!(
            "expected a time string or epoch milliseconds, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};

    /// 2014-10-14 01:18:29 UTC.
    const T: i64 = 1_413_249_509_000;

    fn run(config: &str, events: &[TestEvent]) -> Vec<TestOutput> {
        testing::set_config(config);
        testing::run(stamp, events)
    }

    fn fail(config: &str) -> String {
        testing::set_config(config);
        testing::try_run(stamp, &[TestEvent::new("{}")])
            .unwrap_err()
            .into_message()
    }

    #[test]
    fn kafka_source_copies_the_record_timestamp() {
        let out = run(
            "{}",
            &[TestEvent::new("a").with_timestamp(T), TestEvent::new("b")],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(out[0].event.header_str("timestamp"), Some("1413249509000"));
        assert_eq!(out[0].event.timestamp, Some(T));
        assert_eq!(
            out[1].outcome,
            Outcome::dead_letter("timestamp: the event has no kafka timestamp")
        );
        assert!(!out[1].modified);
    }

    #[test]
    fn field_source_parses_strings_and_millis() {
        let out = run(
            r#"{"source": "field", "field": "meta.ts", "header": "ts"}"#,
            &[
                TestEvent::new(r#"{"meta": {"ts": "2014-10-14 01:18:29"}}"#),
                TestEvent::new(r#"{"meta": {"ts": 1413249509000}}"#),
                TestEvent::new(r#"{"meta": {"ts": "1413249509000"}}"#),
            ],
        );
        for o in &out {
            assert_eq!(o.outcome, Outcome::Keep);
            assert_eq!(o.event.header_str("ts"), Some("1413249509000"));
            assert_eq!(o.event.timestamp, Some(T));
        }
    }

    #[test]
    fn formats_with_offsets_and_dates() {
        let out = run(
            r#"{"source": "field", "field": "ts", "format": "%Y-%m-%dT%H:%M:%S%z"}"#,
            &[TestEvent::new(r#"{"ts": "2014-10-14T03:18:29+0200"}"#)],
        );
        assert_eq!(out[0].event.timestamp, Some(T));
        let out = run(
            r#"{"source": "field", "field": "d", "format": "%d/%m/%Y"}"#,
            &[TestEvent::new(r#"{"d": "14/10/2014"}"#)],
        );
        assert_eq!(out[0].event.timestamp, Some(1_413_244_800_000));
    }

    #[test]
    fn unparseable_fields_are_dead_lettered_with_a_reason() {
        let out = run(
            r#"{"source": "field", "field": "ts"}"#,
            &[
                TestEvent::new(r#"{"ts": "yesterday"}"#),
                TestEvent::new(r#"{"other": 1}"#),
                TestEvent::new("not json"),
                TestEvent::new(r#"{"ts": 1.5}"#),
                TestEvent::new(r#"{"ts": true}"#),
            ],
        );
        let reasons: Vec<String> = out
            .iter()
            .map(|o| match &o.outcome {
                Outcome::DeadLetter(r) => r.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                r#"timestamp: field "ts": cannot parse "yesterday" with format "%Y-%m-%d %H:%M:%S""#,
                r#"timestamp: field "ts": missing"#,
                r#"timestamp: field "ts": the body is not JSON"#,
                r#"timestamp: field "ts": 1.5 is not whole epoch milliseconds"#,
                r#"timestamp: field "ts": expected a time string or epoch milliseconds, got true"#,
            ]
        );
    }

    #[test]
    fn preserve_existing_leaves_stamped_events_alone() {
        let events = [TestEvent::new("a")
            .with_timestamp(T)
            .with_header("timestamp", "1")];
        let out = run(r#"{"preserve_existing": true}"#, &events);
        assert!(!out[0].modified);
        let out = run("{}", &events);
        assert_eq!(out[0].event.header_str("timestamp"), Some("1413249509000"));
        assert_eq!(out[0].event.headers.len(), 1);
    }

    #[test]
    fn rejects_bad_configs_naming_the_key() {
        let e = fail(r#"{"source": "now"}"#);
        assert!(
            e.contains("`source = \"now\"` is not supported: plugins have no clock"),
            "{e}"
        );
        assert!(fail(r#"{"source": "field"}"#).contains("needs `field`"));
        assert!(fail(r#"{"field": "ts"}"#).contains("only with `source = \"field\"`"));
        let e = fail(r#"{"source": "field", "field": "ts", "format": "%Q"}"#);
        assert!(
            e.contains("`format` \"%Q\" is not a valid strftime format"),
            "{e}"
        );
        assert!(fail(r#"{"heade": "x"}"#).contains("unknown field `heade`"));
        let e = fail(r#"{"preserve_existing": "yes"}"#);
        assert!(
            e.starts_with("invalid plugin config: preserve_existing: "),
            "{e}"
        );
    }

    #[test]
    fn doc_example_config_works() {
        let out = run(
            &sluice_guest::testing::doc_example_config(include_str!("lib.rs")),
            &[TestEvent::new(
                r#"{"event": {"time": "2014-10-14 01:18:29"}}"#,
            )],
        );
        assert_eq!(out[0].event.timestamp, Some(T));
    }
}
