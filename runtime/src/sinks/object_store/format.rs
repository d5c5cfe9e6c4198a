//! File formats (`text`, `jsonl`, and the tables `csv`, `tsv`, `parquet` of
//! [`super::table`]) and file compression (`none`, `gzip`, `zstd`, and
//! `snappy` inside Parquet files).
//!
//! # `text`
//!
//! The event body followed by `\n` (Flume's `DataStream` file type). Bodies
//! are written byte for byte; a body holding newlines spans several lines.
//!
//! # `jsonl`
//!
//! One JSON object per line, fields in this order:
//!
//! | field       | value                                                                  |
//! |-------------|------------------------------------------------------------------------|
//! | `key`       | the key as a string, or `null` when the event has no key               |
//! | `value`     | the body: embedded as JSON when it is a JSON object or array, else a string |
//! | `topic`     | origin topic (string)                                                  |
//! | `partition` | origin partition (number)                                              |
//! | `offset`    | origin offset (number)                                                 |
//! | `timestamp` | Kafka timestamp in epoch milliseconds, or `null` when unknown          |
//! | `headers`   | object of header name → value string; for a repeated name the first value is kept |
//! | `base64`    | only present when some bytes are not UTF-8: the list of fields whose string holds base64 (standard alphabet, padded) instead of text: `"key"`, `"value"`, `"headers.<name>"` |
//!
//! An embedded JSON body is copied as is, except that raw line breaks (only
//! whitespace in valid JSON) become spaces, so every record stays one line.
//!
//! ```text
//! {"key":"k1","value":{"amount":67.88},"topic":"auths","partition":0,"offset":41,"timestamp":1700000000000,"headers":{"source":"pos"}}
//! {"key":null,"value":"plain text","topic":"logs","partition":2,"offset":7,"timestamp":null,"headers":{}}
//! {"key":"/w==","value":"x","topic":"t","partition":0,"offset":1,"timestamp":null,"headers":{},"base64":["key"]}
//! ```

use std::io::{self, Write};

use flate2::write::GzEncoder;
use serde::Deserialize;

use crate::event::EventRef;
use crate::keys::Invalid;

/// How each event is written in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The body and a newline (Flume's `DataStream`).
    #[default]
    Text,
    /// One JSON object per line with the body and its Kafka metadata.
    Jsonl,
}

impl Format {
    /// File extension, without compression suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Text => "txt",
            Self::Jsonl => "jsonl",
        }
    }

    /// Appends the encoding of `event` to `out`.
    #[inline]
    pub fn encode(self, event: &EventRef<'_>, out: &mut Vec<u8>) {
        match self {
            Self::Text => {
                out.extend_from_slice(event.body());
                out.push(b'\n');
            }
            Self::Jsonl => encode_jsonl(event, out),
        }
    }
}

/// What an object-store sink's files are: a record format, or a table of
/// the sink's `columns` ([`super::table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// The body and a newline (Flume's `DataStream`).
    #[default]
    Text,
    /// One JSON object per line with the body and its Kafka metadata.
    Jsonl,
    /// Comma-separated columns (RFC 4180).
    Csv,
    /// Tab-separated columns (Hive's text format).
    Tsv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The record format, if this is one (not a table).
    pub fn record(self) -> Option<Format> {
        match self {
            Self::Text => Some(Format::Text),
            Self::Jsonl => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// Whether files are tables of the sink's `columns`.
    pub fn is_table(self) -> bool {
        self.record().is_none()
    }

    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Parquet => "parquet",
        }
    }

    /// File extension, without compression suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Text => "txt",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Parquet => "parquet",
        }
    }

    /// The default compression: snappy inside Parquet files (what Hive,
    /// Spark and Kafka Connect write), none for the others.
    pub fn default_compression(self) -> Compression {
        match self {
            Self::Parquet => Compression::Snappy,
            _ => Compression::None,
        }
    }
}

/// How whole files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain files.
    #[default]
    None,
    /// gzip (`.gz`), readable by `zcat`, Hive, Spark.
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
    /// Snappy, inside Parquet files only (page compression).
    Snappy,
}

impl Compression {
    /// Suffix added after the format's extension.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
            Self::Snappy => ".snappy",
        }
    }

    /// Levels accepted by `compression_level`.
    pub(crate) fn check_level(self, level: i32) -> Result<(), Invalid> {
        let range = match self {
            Self::None => return Err(Invalid("`compression_level` needs a `compression`".into())),
            Self::Snappy => {
                return Err(Invalid(
                    "`compression_level` does not apply to snappy, which has no levels".into(),
                ));
            }
            Self::Gzip => 0..=9,
            Self::Zstd => zstd::compression_level_range(),
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(Invalid(format!(
                "`compression_level` = {level} is outside {}..={} for {self:?}",
                range.start(),
                range.end()
            )))
        }
    }

    /// A fresh compressor for one file.
    pub(crate) fn compressor(self, level: Option<i32>) -> io::Result<Compressor> {
        Ok(match self {
            Self::None => Compressor::None(Vec::new()),
            Self::Gzip => Compressor::Gzip(GzEncoder::new(
                Vec::new(),
                level.map_or_else(flate2::Compression::default, |l| {
                    flate2::Compression::new(l.clamp(0, 9) as u32)
                }),
            )),
            Self::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL),
            )?),
            // Refused for whole files when the config loads.
            Self::Snappy => {
                return Err(io::Error::other(
                    "snappy compresses Parquet pages, not whole files",
                ));
            }
        })
    }
}

/// Compresses one file's bytes into an output buffer the caller drains.
pub(crate) enum Compressor {
    /// No compression: the output is the input.
    None(Vec<u8>),
    /// gzip.
    Gzip(GzEncoder<Vec<u8>>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    /// Compresses `data` (appending whatever output is ready to [`Self::output`]).
    #[inline]
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::None(out) => {
                out.extend_from_slice(data);
                Ok(())
            }
            Self::Gzip(e) => e.write_all(data),
            Self::Zstd(e) => e.write_all(data),
        }
    }

    /// Compressed bytes produced so far and not yet taken; drain it freely:
    /// the encoders only ever append to it.
    #[inline]
    pub fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::None(out) => out,
            Self::Gzip(e) => e.get_mut(),
            Self::Zstd(e) => e.get_mut(),
        }
    }

    /// Ends the stream; returns the output not taken yet, trailer included.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Self::None(out) => Ok(out),
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

fn encode_jsonl(event: &EventRef<'_>, out: &mut Vec<u8>) {
    let mut key_b64 = false;
    let mut value_b64 = false;
    let mut header_b64 = false;

    out.extend_from_slice(b"{\"key\":");
    match event.key() {
        None => out.extend_from_slice(b"null"),
        Some(key) => key_b64 = push_bytes_as_string(out, key),
    }

    out.extend_from_slice(b",\"value\":");
    let body = event.body();
    if is_json_container(body) {
        out.extend(
            body.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        value_b64 = push_bytes_as_string(out, body);
    }

    out.extend_from_slice(b",\"topic\":");
    push_json_str(out, event.topic());
    out.extend_from_slice(b",\"partition\":");
    push_int(out, i64::from(event.partition()));
    out.extend_from_slice(b",\"offset\":");
    push_int(out, event.offset());
    out.extend_from_slice(b",\"timestamp\":");
    match event.timestamp() {
        ts if ts >= 0 => push_int(out, ts),
        _ => out.extend_from_slice(b"null"),
    }

    out.extend_from_slice(b",\"headers\":{");
    let mut first = true;
    for_each_first_header(event, |name, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(out, name);
        out.push(b':');
        header_b64 |= push_bytes_as_string(out, value);
    });
    out.push(b'}');

    if key_b64 || value_b64 || header_b64 {
        out.extend_from_slice(b",\"base64\":[");
        let mut first = true;
        let mut item = |out: &mut Vec<u8>, prefix: &str, name: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(prefix.as_bytes());
            push_json_str_inner(out, name);
            out.push(b'"');
        };
        if key_b64 {
            item(out, "key", "");
        }
        if value_b64 {
            item(out, "value", "");
        }
        if header_b64 {
            for_each_first_header(event, |name, value| {
                if std::str::from_utf8(value).is_err() {
                    item(out, "headers.", name);
                }
            });
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// Up to this many headers, repeated names are found by comparing with the
/// earlier ones (at most 120 comparisons, no allocation); past it, with a
/// hash set, so an event with very many headers costs linear time.
const SMALL_HEADER_COUNT: usize = 16;

/// Calls `f` with the headers of `event` in order, keeping only the first of
/// each name.
pub(crate) fn for_each_first_header<'a>(
    event: &EventRef<'a>,
    mut f: impl FnMut(&'a str, &'a [u8]),
) {
    let headers = event.headers().map_while(Result::ok);
    if event.headers().take(SMALL_HEADER_COUNT + 1).count() <= SMALL_HEADER_COUNT {
        let mut seen: [&str; SMALL_HEADER_COUNT] = [""; SMALL_HEADER_COUNT];
        for (i, (name, value)) in headers.enumerate() {
            if !seen[..i].contains(&name) {
                f(name, value);
            }
            seen[i] = name;
        }
    } else {
        let mut seen = std::collections::HashSet::new();
        for (name, value) in headers {
            if seen.insert(name) {
                f(name, value);
            }
        }
    }
}

/// Whether `body` is a JSON object or array (valid UTF-8 JSON, nothing after it).
fn is_json_container(body: &[u8]) -> bool {
    let starts = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{' || b == b'[');
    starts
        && std::str::from_utf8(body).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Writes `bytes` as a JSON string: the text when UTF-8, else its base64.
/// Returns whether base64 was used.
fn push_bytes_as_string(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            push_json_str(out, s);
            false
        }
        Err(_) => {
            out.push(b'"');
            push_base64(out, bytes);
            out.push(b'"');
            true
        }
    }
}

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_str_inner(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn push_json_str_inner(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

pub(crate) fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Standard base64 with padding.
pub(crate) fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([18, 12, 6, 0].map(|s| ALPHABET[(n >> s & 63) as usize]));
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([
                ALPHABET[(n >> 18) as usize],
                ALPHABET[(n >> 12 & 63) as usize],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([
                ALPHABET[(n >> 18) as usize],
                ALPHABET[(n >> 12 & 63) as usize],
                ALPHABET[(n >> 6 & 63) as usize],
                b'=',
            ]);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use serde_json::{Value, json};
    use sluice_batch::{BatchBuf, NewEvent};

    use super::*;

    fn one(key: Option<&[u8]>, body: &[u8], headers: &[(&str, &[u8])], ts: i64) -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push(&NewEvent {
            key,
            body,
            headers,
            topic: "auths",
            partition: 2,
            offset: 41,
            timestamp: ts,
        });
        b
    }

    fn jsonl(b: &BatchBuf) -> (String, Value) {
        let mut out = Vec::new();
        Format::Jsonl.encode(&b.get(0).unwrap(), &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.matches('\n').count(),
            1,
            "one line per event: {line:?}"
        );
        let v = serde_json::from_str(&line).unwrap();
        (line, v)
    }

    #[test]
    fn many_repeated_headers_keep_the_first_of_each_name() {
        // 20 000 headers, 1 000 names each repeated 20 times: past the small
        // case, so the hash-set path runs (linear, where comparing with every
        // earlier header would take 2 * 10^8 header reads).
        let names: Vec<String> = (0..1000).map(|i| format!("h{i}")).collect();
        let values: Vec<String> = (0..20).map(|r| format!("r{r}")).collect();
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        for value in &values {
            headers.extend(names.iter().map(|n| (n.as_str(), value.as_bytes())));
        }
        let (_, v) = jsonl(&one(None, b"x", &headers, 1));
        let h = v["headers"].as_object().unwrap();
        assert_eq!(h.len(), 1000);
        assert!(h.values().all(|v| v == "r0"), "the first of each name wins");
        // The small case agrees.
        let few: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2"), ("a", b"3")];
        let (_, v) = jsonl(&one(None, b"x", few, 1));
        assert_eq!(v["headers"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn text_is_body_and_newline() {
        let b = one(None, b"hello", &[], -1);
        let mut out = Vec::new();
        Format::Text.encode(&b.get(0).unwrap(), &mut out);
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn jsonl_embeds_json_bodies_and_metadata() {
        let b = one(
            Some(b"k1"),
            b"{\"amount\": 67.88,\n \"tags\": [1, 2]}",
            &[
                ("source", b"pos"),
                ("source", b"dup"),
                ("q", b"say \"hi\"\t"),
            ],
            1_700_000_000_000,
        );
        let (line, v) = jsonl(&b);
        assert_eq!(
            v,
            json!({
                "key": "k1",
                "value": {"amount": 67.88, "tags": [1, 2]},
                "topic": "auths",
                "partition": 2,
                "offset": 41,
                "timestamp": 1_700_000_000_000i64,
                "headers": {"source": "pos", "q": "say \"hi\"\t"},
            })
        );
        assert!(line.starts_with("{\"key\":\"k1\",\"value\":{"), "{line}");
    }

    #[test]
    fn jsonl_strings_and_nulls() {
        for body in [
            &b"plain text"[..],
            b"42",
            b"\"quoted\"",
            b"{not json",
            b"[1,2] trailing",
        ] {
            let b = one(None, body, &[], -1);
            let (_, v) = jsonl(&b);
            assert_eq!(
                v["value"],
                Value::String(String::from_utf8(body.to_vec()).unwrap())
            );
            assert_eq!(v["key"], Value::Null);
            assert_eq!(v["timestamp"], Value::Null);
            assert_eq!(v["headers"], json!({}));
            assert!(v.get("base64").is_none());
        }
        let b = one(Some(b"ctl\x01\n"), b"x", &[], 5);
        let (_, v) = jsonl(&b);
        assert_eq!(v["key"], "ctl\u{1}\n");
    }

    #[test]
    fn jsonl_marks_base64_fields() {
        let b = one(
            Some(b"\xff"),
            b"\x00\x9f\x92\x96",
            &[("bin", b"\xc3\x28"), ("ok", b"v")],
            -1,
        );
        let (_, v) = jsonl(&b);
        assert_eq!(v["key"], "/w==");
        assert_eq!(v["value"], "AJ+Slg==");
        assert_eq!(v["headers"], json!({"bin": "wyg=", "ok": "v"}));
        assert_eq!(v["base64"], json!(["key", "value", "headers.bin"]));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            push_base64(&mut out, input.as_bytes());
            assert_eq!(out, expected.as_bytes(), "{input}");
        }
    }

    #[test]
    fn integers() {
        for v in [0i64, 7, -1, 1234567890, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            push_int(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    fn compress(c: Compression, chunks: &[&[u8]]) -> Vec<u8> {
        let mut comp = c.compressor(None).unwrap();
        let mut file = Vec::new();
        for chunk in chunks {
            comp.write(chunk).unwrap();
            // Drain as the writer does between events.
            file.append(comp.output());
        }
        file.extend(comp.finish().unwrap());
        file
    }

    #[test]
    fn gzip_and_zstd_round_trip_while_drained() {
        let chunk: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let chunks: Vec<&[u8]> = vec![b"first\n", &chunk, b"last\n", &chunk];
        let expected = chunks.concat();

        let gz = compress(Compression::Gzip, &chunks);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, expected);
        assert!(gz.len() < expected.len());

        let zst = compress(Compression::Zstd, &chunks);
        assert_eq!(zstd::decode_all(&zst[..]).unwrap(), expected);

        assert_eq!(compress(Compression::None, &chunks), expected);
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::Gzip.check_level(9).is_ok());
        assert!(Compression::Gzip.check_level(10).is_err());
        assert!(Compression::Zstd.check_level(19).is_ok());
        assert!(Compression::None.check_level(1).is_err());
    }
}
