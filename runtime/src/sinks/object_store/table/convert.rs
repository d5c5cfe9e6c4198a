//! Conversions of raw values (bytes, integers, JSON) to a column's type;
//! see the rules in the module docs of [`super`].

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

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

/// Converts a (non-null) JSON value found at a `json:` path.
pub(super) fn from_json(kind: ColumnType, v: &Value, row: &mut Row) -> Result<(), Mismatch> {
    let cell = match (kind, v) {
        (ColumnType::String | ColumnType::Binary, Value::String(s)) => {
            row.push_bytes(s.as_bytes());
            return Ok(());
        }
        (ColumnType::String | ColumnType::Binary | ColumnType::Json, _) => {
            let start = row.buf.len() as u32;
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut row.buf, v);
            row.close_bytes(start);
            return Ok(());
        }
        (_, Value::String(s)) => return from_bytes(kind, s.as_bytes(), row),
        (ColumnType::Int, Value::Number(n)) => Cell::Int(i64::from(
            n.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| Mismatch::not(n.to_string().as_bytes(), "a 32-bit integer"))?,
        )),
        (ColumnType::Long | ColumnType::Timestamp, Value::Number(n)) => Cell::Int(
            n.as_i64()
                .ok_or_else(|| Mismatch::not(n.to_string().as_bytes(), "a 64-bit integer"))?,
        ),
        (ColumnType::Double, Value::Number(n)) => Cell::Double(
            n.as_f64()
                .ok_or_else(|| Mismatch::not(n.to_string().as_bytes(), "a number"))?,
        ),
        (ColumnType::Boolean, Value::Bool(b)) => Cell::Bool(*b),
        (_, other) => {
            return Err(Mismatch::not(
                other.to_string().as_bytes(),
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
