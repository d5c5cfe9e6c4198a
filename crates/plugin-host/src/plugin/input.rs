//! Test input events: the JSON-lines format read by `sluice plugin test` and
//! by plugin self-tests (`<stem>.selftest.jsonl`), and turning them into a
//! flat batch.
//!
//! One JSON object per line: `body` (a string, or any JSON value, which is
//! serialized), and optionally `key`, `headers` (object; non-string values
//! are serialized), `topic` (default `test`), `partition`, `offset` (default:
//! the event's position) and `timestamp` (ms). Blank lines are skipped.

use serde::Deserialize;
use sluice_batch::{BatchBuf, NO_TIMESTAMP, NewEvent};

/// One input event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEvent {
    #[serde(default)]
    key: Option<String>,
    body: serde_json::Value,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    partition: i32,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Parses `text` read from `file` (named in errors with the line number).
pub fn parse(file: &str, text: &str) -> Result<Vec<InputEvent>, InputError> {
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(line)
            .map_err(|e| format!("{file}:{}: not an input event: {e}", n + 1))?;
        events.push(event);
    }
    Ok(events)
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl InputEvent {
    /// Appends the event to `batch`; `position` is its offset unless it names one.
    pub fn push_to(&self, batch: &mut BatchBuf, position: usize) {
        let body = text(&self.body);
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), text(v)))
            .collect();
        let header_refs: Vec<(&str, &[u8])> =
            headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        batch.push(&NewEvent {
            key: self.key.as_deref().map(str::as_bytes),
            body: body.as_bytes(),
            headers: &header_refs,
            topic: self.topic.as_deref().unwrap_or("test"),
            partition: self.partition,
            offset: self.offset.unwrap_or(position as i64),
            timestamp: self.timestamp.unwrap_or(NO_TIMESTAMP),
        });
    }
}

sluice_core::message_error! {
    /// Why a `plugin test` input file is not a list of events; names the file and line.
    pub struct InputError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_default_and_json_values_are_serialized() {
        let events = parse(
            "in.jsonl",
            "{\"body\":{\"a\":1},\"headers\":{\"n\":2}}\n\n{\"body\":\"x\",\"key\":\"k\",\"offset\":9,\"topic\":\"t\"}\n",
        )
        .unwrap();
        let mut batch = BatchBuf::default();
        for (i, e) in events.iter().enumerate() {
            e.push_to(&mut batch, i);
        }
        let first = batch.get(0).unwrap();
        assert_eq!(first.body(), b"{\"a\":1}");
        assert_eq!(first.header("n"), Some(&b"2"[..]));
        assert_eq!(
            (first.topic(), first.offset(), first.timestamp()),
            ("test", 0, NO_TIMESTAMP)
        );
        let second = batch.get(1).unwrap();
        assert_eq!(
            (second.key(), second.topic(), second.offset()),
            (Some(&b"k"[..]), "t", 9)
        );
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let err = parse("in.jsonl", "{\"body\":\"ok\"}\n{\"bdy\":1}\n").unwrap_err();
        assert!(err.0.starts_with("in.jsonl:2: not an input event"), "{err}");
    }
}
