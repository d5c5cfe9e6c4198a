//! `delimited`: a decoder plugin that turns one delimited or CSV line per
//! event into a JSON object with named, typed fields.
//!
//! `uuid-1|4111111111111111|2014-10-14 01:18:29|67.88|1433` becomes
//! `{"id":"uuid-1","card":"4111111111111111","time":1413249509000,"amount":67.88,"merchant":1433}`
//! with the field list of the example below. Fields appear in configured
//! order; the header `content-type: application/json` is set.
//!
//! A line that does not fit (wrong number of fields, a value that does not
//! parse as its type, a body that is not UTF-8) is dead-lettered with a reason
//! such as `field 4 "amount": expected float, got "abc"`; nothing is dropped.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.csv]
//! type = "decoder"
//! path = "../target/wasm32-wasip2/plugin/delimited.wasm"
//! config = { delimiter = "|", trim = true, fields = [
//!     { name = "id", type = "string" },
//!     { name = "card", type = "string" },
//!     { name = "time", type = "timestamp", format = "%Y-%m-%d %H:%M:%S" },
//!     { name = "amount", type = "float" },
//!     { name = "merchant", type = "int" },
//! ] }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `format` | `"delimited"` or `"csv"` | `"delimited"` | `delimited`: split on every delimiter. `csv`: RFC 4180 quoting; a field in double quotes may contain the delimiter, and `""` inside it is a quote. |
//! | `delimiter` | one-character string | `"\|"` for `delimited`, `","` for `csv` | Field separator. |
//! | `trim` | bool | `false` | Strip spaces and tabs around each value (outside the quotes, for `csv`). |
//! | `fields` | list of tables | required | One entry per field, in line order (at least one). |
//! | `fields[].name` | string | required | Key in the JSON object; names must differ. |
//! | `fields[].type` | string | required | `string`, `int` (64-bit signed), `float`, `bool` (`true`/`false`/`1`/`0`/`yes`/`no`, any case), or `timestamp`. |
//! | `fields[].format` | string | `"%Y-%m-%d %H:%M:%S"` | Only for `timestamp`: [`chrono` strftime] format, read as UTC unless it has an offset (`%z`). |
//!
//! Unknown keys, a `format` on a non-timestamp field, an invalid strftime
//! format or a delimiter of more than one character fail the batch with a
//! message naming the key.
//!
//! # Values
//!
//! - `timestamp` values become epoch milliseconds (a JSON integer): typed,
//!   unambiguous, and what the `timestamp` plugin reads.
//! - An empty value of a non-`string` type becomes `null`; an empty `string`
//!   stays `""`.
//! - One trailing line end (`\n`, `\r\n` or `\r`) is removed first. An empty
//!   line is dead-lettered.
//!
//! [`chrono` strftime]: https://docs.rs/chrono/latest/chrono/format/strftime/index.html

use std::borrow::Cow;
use std::io::Write as _;

use chrono::format::{Item, Parsed, StrftimeItems};
use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// The plugin configuration (see the crate docs).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    csv: bool,
    delimiter: char,
    trim: bool,
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: FieldType,
    /// For `timestamp`.
    format: Option<TimeFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
}

impl FieldType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Delimited,
    Csv,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    format: Format,
    delimiter: Option<char>,
    #[serde(default)]
    trim: bool,
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: FieldType,
    format: Option<String>,
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let csv = raw.format == Format::Csv;
        let delimiter = raw.delimiter.unwrap_or(if csv { ',' } else { '|' });
        if delimiter == '"' && csv {
            return Err("`delimiter` cannot be `\"` with `format = \"csv\"`".into());
        }
        if matches!(delimiter, '\n' | '\r') {
            return Err("`delimiter` cannot be a line break".into());
        }
        if raw.fields.is_empty() {
            return Err("`fields` is empty: list the fields of a line in order".into());
        }
        let mut fields: Vec<Field> = Vec::with_capacity(raw.fields.len());
        for (i, f) in raw.fields.into_iter().enumerate() {
            let at = format!("fields[{i}]");
            if f.name.is_empty() {
                return Err(format!("`{at}.name` is empty"));
            }
            if fields.iter().any(|g| g.name == f.name) {
                return Err(format!("`{at}.name`: {:?} is used twice", f.name));
            }
            let format = match (f.ty, f.format) {
                (FieldType::Timestamp, format) => {
                    let text = format.unwrap_or_else(|| "%Y-%m-%d %H:%M:%S".to_owned());
                    Some(TimeFormat::new(&text).map_err(|e| {
                        format!("`{at}.format` {text:?} is not a valid strftime format: {e}")
                    })?)
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "`{at}.format` applies only to fields of type \"timestamp\""
                    ));
                }
                (_, None) => None,
            };
            fields.push(Field {
                name: f.name,
                ty: f.ty,
                format,
            });
        }
        Ok(Config {
            csv,
            delimiter,
            trim: raw.trim,
            fields,
        })
    }
}

/// A strftime format, parsed once.
#[derive(Debug)]
struct TimeFormat {
    items: Vec<Item<'static>>,
}

impl TimeFormat {
    fn new(text: &str) -> Result<Self, String> {
        let items = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|e| e.to_string())?;
        Ok(Self { items })
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

/// Decodes the line into a JSON object, or dead-letters it.
#[sluice_guest::decoder]
pub fn decode(event: &mut Event) -> Result<Outcome, Error> {
    let config: &Config = sluice_guest::config()?;
    let Some(line) = event.body_str() else {
        return Ok(Outcome::dead_letter("the line is not UTF-8"));
    };
    let line = strip_line_end(line);
    if line.is_empty() {
        return Ok(Outcome::dead_letter("the line is empty"));
    }
    let values = match split(line, config) {
        Ok(values) => values,
        Err(reason) => return Ok(Outcome::dead_letter(reason)),
    };
    if values.len() != config.fields.len() {
        return Ok(Outcome::dead_letter(format!(
            "expected {} fields, got {}",
            config.fields.len(),
            values.len()
        )));
    }
    let json = match to_json(&values, config, line.len()) {
        Ok(json) => json,
        Err(reason) => return Ok(Outcome::dead_letter(reason)),
    };
    event.set_body(json);
    event.set_header("content-type", "application/json");
    Ok(Outcome::Keep)
}

fn strip_line_end(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Splits `line` into values (quotes removed and trimmed as configured).
fn split<'l>(line: &'l str, config: &Config) -> Result<Vec<Cow<'l, str>>, String> {
    let trim = |s: &'l str| {
        if config.trim {
            s.trim_matches([' ', '\t'])
        } else {
            s
        }
    };
    if !config.csv {
        return Ok(line
            .split(config.delimiter)
            .map(|v| Cow::Borrowed(trim(v)))
            .collect());
    }
    let mut values = Vec::with_capacity(config.fields.len());
    let mut rest = line;
    loop {
        let field_start = rest;
        let lead = if config.trim {
            rest.trim_start_matches([' ', '\t'])
        } else {
            rest
        };
        if let Some(quoted) = lead.strip_prefix('"') {
            // A quoted field: up to the lone closing quote.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => value.push(c),
                    None => {
                        return Err(format!("field {}: unterminated quote", values.len() + 1));
                    }
                }
            };
            let after = if config.trim {
                after.trim_start_matches([' ', '\t'])
            } else {
                after
            };
            values.push(Cow::Owned(value));
            if after.is_empty() {
                return Ok(values);
            }
            match after.strip_prefix(config.delimiter) {
                Some(next) => rest = next,
                None => {
                    return Err(format!(
                        "field {}: unexpected text after the closing quote",
                        values.len()
                    ));
                }
            }
        } else {
            match field_start.split_once(config.delimiter) {
                Some((value, next)) => {
                    values.push(Cow::Borrowed(trim(value)));
                    rest = next;
                }
                None => {
                    values.push(Cow::Borrowed(trim(field_start)));
                    return Ok(values);
                }
            }
        }
    }
}

/// The JSON object for `values` (as many as fields).
fn to_json(values: &[Cow<'_, str>], config: &Config, size_hint: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(size_hint + 16 * values.len());
    out.push(b'{');
    for (i, (field, value)) in config.fields.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing JSON into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut out, &field.name);
        out.push(b':');
        let value: &str = value;
        if value.is_empty() && field.ty != FieldType::String {
            out.extend_from_slice(b"null");
            continue;
        }
        let bad = || {
            format!(
                "field {} {:?}: expected {}, got {value:?}",
                i + 1,
                field.name,
                field.ty.as_str()
            )
        };
        match field.ty {
            FieldType::String => {
                let _ = serde_json::to_writer(&mut out, value);
            }
            FieldType::Int => {
                let n: i64 = value.parse().map_err(|_| bad())?;
                let _ = write!(out, "{n}");
            }
            FieldType::Float => {
                let x: f64 = value.parse().map_err(|_| bad())?;
                if !x.is_finite() {
                    return Err(bad());
                }
                let _ = serde_json::to_writer(&mut out, &x);
            }
            FieldType::Bool => {
                let b = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad()),
                };
                let _ = write!(out, "{b}");
            }
            FieldType::Timestamp => {
                let millis = field
                    .format
                    .as_ref()
                    .and_then(|f| f.parse_millis(value))
                    .ok_or_else(bad)?;
                let _ = write!(out, "{millis}");
            }
        }
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};

    const TX: &str = r#"{"trim": true, "fields": [
        {"name": "id", "type": "string"},
        {"name": "card", "type": "string"},
        {"name": "time", "type": "timestamp"},
        {"name": "amount", "type": "float"},
        {"name": "merchant", "type": "int"}
    ]}"#;

    fn run(config: &str, lines: &[&str]) -> Vec<TestOutput> {
        testing::set_config(config);
        let events: Vec<TestEvent> = lines.iter().map(|l| TestEvent::new(*l)).collect();
        testing::run(decode, &events)
    }

    fn reason(o: &TestOutput) -> String {
        match &o.outcome {
            Outcome::DeadLetter(r) => r.to_string(),
            other => panic!("not dead-lettered: {other:?}"),
        }
    }

    fn fail(config: &str) -> String {
        testing::set_config(config);
        testing::try_run(decode, &[TestEvent::new("x")])
            .unwrap_err()
            .into_message()
    }

    #[test]
    fn decodes_a_transaction_line() {
        let out = run(
            TX,
            &["7f2a|4111111111111111|2014-10-14 01:18:29|67.88|1433\r\n"],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(
            out[0].event.body_str(),
            Some(
                r#"{"id":"7f2a","card":"4111111111111111","time":1413249509000,"amount":67.88,"merchant":1433}"#
            )
        );
        assert_eq!(
            out[0].event.header_str("content-type"),
            Some("application/json")
        );
    }

    #[test]
    fn dead_letters_what_does_not_fit() {
        let out = run(
            TX,
            &[
                "a|b|2014-10-14 01:18:29|abc|1",
                "a|b|2014-10-14 01:18:29|1.5",
                "a|b|yesterday|1.5|1",
                "a|b|2014-10-14 01:18:29|1.5|1.5",
                "a|b|2014-10-14 01:18:29|NaN|1",
                "\n",
            ],
        );
        let reasons: Vec<String> = out.iter().map(reason).collect();
        assert_eq!(
            reasons,
            [
                r#"field 4 "amount": expected float, got "abc""#,
                "expected 5 fields, got 4",
                r#"field 3 "time": expected timestamp, got "yesterday""#,
                r#"field 5 "merchant": expected int, got "1.5""#,
                r#"field 4 "amount": expected float, got "NaN""#,
                "the line is empty",
            ]
        );
        assert!(
            out.iter().all(|o| !o.modified),
            "dead letters are the originals"
        );
        testing::set_config(TX);
        let out = testing::run(decode, &[TestEvent::new(vec![0xff, b'|'])]);
        assert_eq!(reason(&out[0]), "the line is not UTF-8");
    }

    #[test]
    fn empty_values_and_bools() {
        let out = run(
            r#"{"delimiter": ";", "fields": [
                {"name": "s", "type": "string"}, {"name": "n", "type": "int"},
                {"name": "b", "type": "bool"}, {"name": "c", "type": "bool"}
            ]}"#,
            &[";;YES;0", " x ; 2;maybe;1"],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"s":"","n":null,"b":true,"c":false}"#)
        );
        assert_eq!(reason(&out[1]), r#"field 2 "n": expected int, got " 2""#);
    }

    #[test]
    fn csv_quoting() {
        let config = r#"{"format": "csv", "trim": true, "fields": [
            {"name": "a", "type": "string"}, {"name": "b", "type": "string"},
            {"name": "c", "type": "int"}
        ]}"#;
        let out = run(
            config,
            &[
                r#""x, y" , "say ""hi""",3"#,
                r#"plain,,4"#,
                r#""open,b,1"#,
                r#""a"b,c,1"#,
                r#"a,b,"#,
            ],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(r#"{"a":"x, y","b":"say \"hi\"","c":3}"#)
        );
        assert_eq!(
            out[1].event.body_str(),
            Some(r#"{"a":"plain","b":"","c":4}"#)
        );
        assert_eq!(reason(&out[2]), "field 1: unterminated quote");
        assert_eq!(
            reason(&out[3]),
            "field 1: unexpected text after the closing quote"
        );
        assert_eq!(
            out[4].event.body_str(),
            Some(r#"{"a":"a","b":"b","c":null}"#)
        );
    }

    #[test]
    fn timestamp_formats() {
        let out = run(
            r#"{"fields": [{"name": "t", "type": "timestamp", "format": "%d/%m/%Y %H:%M%z"}]}"#,
            &["14/10/2014 03:18+0200"],
        );
        assert_eq!(out[0].event.body_str(), Some(r#"{"t":1413249480000}"#));
    }

    #[test]
    fn rejects_bad_configs_naming_the_key() {
        assert!(fail("{}").contains("missing field `fields`"));
        assert!(fail(r#"{"fields": []}"#).contains("`fields` is empty"));
        let e = fail(r#"{"fields": [{"name": "a", "type": "date"}]}"#);
        assert!(
            e.starts_with("invalid plugin config: fields[0].type: unknown variant `date`"),
            "{e}"
        );
        let e = fail(r#"{"fields": [{"name": "a", "type": "int", "format": "%Y"}]}"#);
        assert!(e.contains("`fields[0].format` applies only"), "{e}");
        let e = fail(r#"{"fields": [{"name": "a", "type": "timestamp", "format": "%Q"}]}"#);
        assert!(
            e.contains("`fields[0].format` \"%Q\" is not a valid strftime format"),
            "{e}"
        );
        let e = fail(r#"{"delimiter": "||", "fields": [{"name": "a", "type": "int"}]}"#);
        assert!(e.starts_with("invalid plugin config: delimiter: "), "{e}");
        let e = fail(r#"{"fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}"#);
        assert!(e.contains("used twice"), "{e}");
        assert!(
            fail(r#"{"fields": [{"name": "a", "type": "int"}], "sep": ","}"#)
                .contains("unknown field `sep`")
        );
        let e = fail(r#"{"format": "tsv", "fields": [{"name": "a", "type": "int"}]}"#);
        assert!(
            e.starts_with("invalid plugin config: format: unknown variant `tsv`"),
            "{e}"
        );
    }

    #[test]
    fn doc_example_config_works() {
        let out = run(
            &sluice_guest::testing::doc_example_config(include_str!("lib.rs")),
            &["uuid-1|4111111111111111|2014-10-14 01:18:29|67.88|1433"],
        );
        assert_eq!(
            out[0].event.body_str(),
            Some(
                r#"{"id":"uuid-1","card":"4111111111111111","time":1413249509000,"amount":67.88,"merchant":1433}"#
            )
        );
    }

    /// Differential fuzz target against the `csv` crate (the reference):
    /// any fields written by csv's writer split back into exactly those
    /// fields, and any line the scanner accepts, csv reads the same. Run
    /// longer with `PROPTEST_CASES=100000 cargo test -p delimited fuzz_`.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        fn csv_config(fields: usize) -> Config {
            let fields: Vec<String> = (0..fields)
                .map(|i| format!("{{\"name\": \"f{i}\", \"type\": \"string\"}}"))
                .collect();
            serde_json::from_str(&format!(
                "{{\"format\": \"csv\", \"fields\": [{}]}}",
                fields.join(",")
            ))
            .unwrap()
        }

        fn read_with_csv(line: &str) -> Option<Vec<String>> {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(line.as_bytes());
            let record = reader.records().next()?.ok()?;
            Some(record.iter().map(str::to_owned).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn fuzz_fields_written_by_csv_split_back(fields in proptest::collection::vec("[a-z\" ,;]{0,6}", 1..6)) {
                let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
                writer.write_record(&fields).unwrap();
                let line = String::from_utf8(writer.into_inner().unwrap()).unwrap();
                let config = csv_config(fields.len());
                let got = split(strip_line_end(&line), &config).unwrap();
                let got: Vec<String> = got.into_iter().map(|c| c.into_owned()).collect();
                // csv writes one empty field as `""`; a lone empty field is
                // the empty line, which it cannot otherwise express.
                prop_assert_eq!(got, fields);
            }

            #[test]
            fn fuzz_accepted_lines_read_the_same_with_csv(line in "[a\" ,]{0,12}") {
                let config = csv_config(1);
                if let Ok(values) = split(&line, &config) {
                    let values: Vec<String> = values.into_iter().map(|c| c.into_owned()).collect();
                    if let Some(reference) = read_with_csv(&line) {
                        prop_assert_eq!(values, reference, "{:?}", line);
                    }
                }
            }
        }
    }
}
