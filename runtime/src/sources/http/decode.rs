//! Request bodies of the `http` source into events: NDJSON, Flume's JSON
//! handler format, or raw lines.

use serde::Deserialize;

/// How a request body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By `Content-Type`: `application/json` → `json`,
    /// `application/x-ndjson` (or `jsonl`) → `ndjson`, anything else → `lines`.
    #[default]
    Auto,
    /// One JSON value per line; each line (as sent) is an event body.
    Ndjson,
    /// Flume's JSON handler: an array of `{"headers": {..}, "body": ".."}`.
    Json,
    /// Each line is an event body.
    Lines,
}

impl Format {
    /// The format for a request with this `Content-Type`.
    pub fn resolve(self, content_type: Option<&str>) -> Format {
        if self != Format::Auto {
            return self;
        }
        let mime = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Format::Json,
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Format::Ndjson,
            _ => Format::Lines,
        }
    }
}

/// One event of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request body is refused (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not an array of Flume events.
    #[error("expected a JSON array of {{\"headers\": {{..}}, \"body\": \"..\"}} objects: {0}")]
    NotFlumeJson(#[source] serde_json::Error),
    /// An event sets a header only the host may set.
    #[error("event {event}: header `{name}`: names starting with `sluice.` are reserved")]
    ReservedHeader {
        /// The event's index in the array.
        event: usize,
        /// The header.
        name: String,
    },
    /// A line of an NDJSON body is not JSON.
    #[error("line {line}: not JSON: {source}")]
    NotJsonLine {
        /// 1-based.
        line: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Flume's JSON handler event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlumeEvent {
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    body: String,
}

/// The events of `body` read as `format` (resolved); `Err` with the
/// reason to answer 400 with.
pub fn decode(format: Format, body: &[u8]) -> Result<Vec<Decoded>, BodyError> {
    match format {
        Format::Json => {
            let events: Vec<FlumeEvent> =
                serde_json::from_slice(body).map_err(BodyError::NotFlumeJson)?;
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    if let Some(name) = e.headers.keys().find(|k| crate::event::is_host_header(k)) {
                        return Err(BodyError::ReservedHeader {
                            event: i,
                            name: name.clone(),
                        });
                    }
                    Ok(Decoded {
                        headers: e.headers.into_iter().collect(),
                        body: e.body.into_bytes(),
                    })
                })
                .collect()
        }
        Format::Ndjson => lines(body)
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| {
                serde_json::from_slice::<serde::de::IgnoredAny>(line)
                    .map(|_| Decoded {
                        headers: Vec::new(),
                        body: line.to_vec(),
                    })
                    .map_err(|source| BodyError::NotJsonLine {
                        line: i + 1,
                        source,
                    })
            })
            .collect(),
        Format::Lines | Format::Auto => Ok(lines(body)
            .map(|line| Decoded {
                headers: Vec::new(),
                body: line.to_vec(),
            })
            .collect()),
    }
}

/// The lines of `body` without their `\n` (or `\r\n`); no empty last line.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let empty = body.is_empty();
    body.split(|b| *b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(d: &[Decoded]) -> Vec<String> {
        d.iter()
            .map(|e| String::from_utf8_lossy(&e.body).into_owned())
            .collect()
    }

    #[test]
    fn formats_by_content_type() {
        assert_eq!(
            Format::Auto.resolve(Some("application/json; charset=utf-8")),
            Format::Json
        );
        assert_eq!(
            Format::Auto.resolve(Some("application/x-ndjson")),
            Format::Ndjson
        );
        assert_eq!(Format::Auto.resolve(Some("text/plain")), Format::Lines);
        assert_eq!(Format::Auto.resolve(None), Format::Lines);
        assert_eq!(
            Format::Ndjson.resolve(Some("application/json")),
            Format::Ndjson
        );
    }

    #[test]
    fn decodes_each_format() {
        let flume = br#"[{"headers": {"a": "1"}, "body": "x"}, {"body": "y"}]"#;
        let d = decode(Format::Json, flume).unwrap();
        assert_eq!(bodies(&d), ["x", "y"]);
        assert_eq!(d[0].headers, [("a".to_string(), "1".to_string())]);
        let d = decode(Format::Ndjson, b"{\"n\":1}\r\n\n[2]\n").unwrap();
        assert_eq!(bodies(&d), ["{\"n\":1}", "[2]"]);
        let d = decode(Format::Lines, b"a\r\nb\n\nc").unwrap();
        assert_eq!(bodies(&d), ["a", "b", "", "c"]);
        assert!(decode(Format::Lines, b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_bodies_say_why() {
        let e = decode(Format::Ndjson, b"{\"ok\":1}\n{oops\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2: not JSON"), "{e}");
        let e = decode(Format::Json, b"{\"body\": \"x\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a JSON array"), "{e}");
        let e = decode(
            Format::Json,
            br#"[{"headers": {"sluice.x": "1"}, "body": "y"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("reserved"), "{e}");
    }
}
