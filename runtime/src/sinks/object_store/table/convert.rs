//! Conversions of raw values (bytes, integers, JSON) to a column's type;
//! see the rules in the module docs of [`super`].

use chrono::{DateTime, NaiveDateTime};

use super::ColumnType;
use super::row::{Cell, Mismatch, Row};
use crate::event::EventRef;
use crate::sinks::object_store::format::{for_each_first_header, push_json_str};

/// Converts bytes (a key, body, header or constant).
pub(super) fn from_bytes(kind: ColumnType, bytes: &[u8], row: &mut Row) -> Result<(), Mismatch> {
    let text = || std::str::from_utf8(bytes).map_err(|_| Mismatch::not(bytes, "UTF-8 text"));
    let cell = match kind {
        ColumnType::Binary => {
            row.push_bytes(bytes);
            return Ok(());
        }
        ColumnType::String => {
            text()?;
            row.push_bytes(bytes);
            return Ok(());
        }
        ColumnType::Json => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
                return Err(Mismatch::not(bytes, "JSON"));
            }
            row.push_bytes(bytes);
            return Ok(());
        }
        ColumnType::Int => {
            let v = text()?
                .parse::<i32>()
                .map_err(|_| Mismatch::not(bytes, "a 32-bit integer"))?;
            Cell::Int(i64::from(v))
        }
        ColumnType::Long => Cell::Int(
            text()?
                .parse::<i64>()
                .map_err(|_| Mismatch::not(bytes, "a 64-bit integer"))?,
        ),
        ColumnType::Double => Cell::Double(
            text()?
                .parse::<f64>()
                .map_err(|_| Mismatch::not(bytes, "a number"))?,
        ),
        ColumnType::Boolean => match text()? {
            "true" => Cell::Bool(true),
            "false" => Cell::Bool(false),
            _ => return Err(Mismatch::not(bytes, "`true` or `false`")),
        },
        ColumnType::Timestamp => Cell::Int(parse_timestamp(text()?).ok_or_else(|| {
            Mismatch::not(
                bytes,
                "a time (epoch milliseconds, RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC)",
            )
        })?),
    };
    row.cells.push(cell);
    Ok(())
}

/// Converts an integer (partition, offset, timestamp).
pub(super) fn from_int(kind: ColumnType, v: i64, row: &mut Row) -> Result<(), Mismatch> {
    let cell = match kind {
        ColumnType::Int => {
            Cell::Int(i64::from(i32::try_from(v).map_err(|_| {
                Mismatch::not(v.to_string().as_bytes(), "a 32-bit integer")
            })?))
        }
        ColumnType::Long | ColumnType::Timestamp => Cell::Int(v),
        ColumnType::Double => Cell::Double(v as f64),
        ColumnType::String | ColumnType::Json => {
            let start = row.buf.len() as u32;
            crate::sinks::object_store::format::push_int(&mut row.buf, v);
            row.close_bytes(start);
            return Ok(());
        }
        ColumnType::Boolean | ColumnType::Binary => {
            return Err(Mismatch::not(v.to_string().as_bytes(), kind.name()));
        }
    };
    row.cells.push(cell);
    Ok(())
}

/// Converts the JSON text of a value found at a `json:` path (as written
/// in the body; `null` is a null).
pub(super) fn from_json_text(kind: ColumnType, raw: &[u8], row: &mut Row) -> Result<(), Mismatch> {
    let text_like = matches!(
        kind,
        ColumnType::String | ColumnType::Json | ColumnType::Binary
    );
    let cell = match raw.first() {
        Some(b'n') => Cell::Null,
        Some(b'"') => {
            if kind == ColumnType::Json {
                row.push_bytes(raw);
                return Ok(());
            }
            // Borrowed when it has no escapes.
            let owned: String;
            let s: &str = match serde_json::from_slice::<&str>(raw) {
                Ok(s) => s,
                Err(_) => {
                    owned = serde_json::from_slice(raw).map_err(|_| Mismatch::not(raw, "JSON"))?;
                    &owned
                }
            };
            return from_bytes(kind, s.as_bytes(), row);
        }
        // Objects, arrays, booleans and numbers as text: as written.
        _ if text_like => {
            row.push_bytes(raw);
            return Ok(());
        }
        Some(b't') if kind == ColumnType::Boolean => Cell::Bool(true),
        Some(b'f') if kind == ColumnType::Boolean => Cell::Bool(false),
        Some(b'-' | b'0'..=b'9') => {
            let text = std::str::from_utf8(raw).unwrap_or_default();
            match kind {
                ColumnType::Int => Cell::Int(i64::from(
                    text.parse::<i32>()
                        .map_err(|_| Mismatch::not(raw, "a 32-bit integer"))?,
                )),
                ColumnType::Long | ColumnType::Timestamp => Cell::Int(
                    text.parse::<i64>()
                        .map_err(|_| Mismatch::not(raw, "a 64-bit integer"))?,
                ),
                ColumnType::Double => Cell::Double(
                    text.parse::<f64>()
                        .map_err(|_| Mismatch::not(raw, "a number"))?,
                ),
                _ => return Err(Mismatch::not(raw, "a boolean")),
            }
        }
        _ => {
            return Err(Mismatch::not(
                raw,
                match kind {
                    ColumnType::Boolean => "a boolean",
                    ColumnType::Timestamp => "a time",
                    _ => "a number",
                },
            ));
        }
    };
    row.cells.push(cell);
    Ok(())
}

/// Writes every header as one JSON object (first value of a repeated name;
/// bytes that are not UTF-8 replaced by U+FFFD).
pub(super) fn headers_object(event: &EventRef<'_>, row: &mut Row) {
    let start = row.buf.len() as u32;
    row.buf.push(b'{');
    let mut first = true;
    for_each_first_header(event, |name, value| {
        if !first {
            row.buf.push(b',');
        }
        first = false;
        push_json_str(&mut row.buf, name);
        row.buf.push(b':');
        push_json_str(&mut row.buf, &String::from_utf8_lossy(value));
    });
    row.buf.push(b'}');
    row.close_bytes(start);
}

/// Epoch milliseconds from decimal digits, RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.fff]` (UTC).
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}
