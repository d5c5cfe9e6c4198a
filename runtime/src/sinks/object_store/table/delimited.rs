//! `csv` and `tsv` rows of a column spec.
//!
//! | cell       | `csv` (RFC 4180)                                  | `tsv` (Hive's text format)                   |
//! |------------|---------------------------------------------------|----------------------------------------------|
//! | null       | empty field                                       | `\N`                                         |
//! | text, JSON | quoted with `"` (doubled inside) when it holds `,`, `"`, CR or LF | `\`, tab, LF and CR written `\\`, `\t`, `\n`, `\r` |
//! | binary     | base64 (standard alphabet, padded)                | base64                                       |
//! | timestamp  | `YYYY-MM-DD HH:MM:SS.fff` (UTC)                   | the same                                     |
//! | boolean    | `true` / `false`                                  | the same                                     |
//!
//! Lines end with `\n`. With `header_row = true` every file starts with the
//! column names.

use std::io::Write as _;

use chrono::DateTime;

use super::row::{Cell, Row};
use super::{ColumnType, Columns};
use crate::sinks::object_store::format::{push_base64, push_int};

/// Which dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Csv,
    Tsv,
}

impl Dialect {
    fn separator(self) -> u8 {
        match self {
            Self::Csv => b',',
            Self::Tsv => b'\t',
        }
    }

    /// Appends the header row: the column names.
    pub fn header(self, columns: &Columns, out: &mut Vec<u8>) {
        for (i, c) in columns.columns.iter().enumerate() {
            if i > 0 {
                out.push(self.separator());
            }
            out.extend_from_slice(c.name.as_bytes());
        }
        out.push(b'\n');
    }

    /// Appends `row` as one line.
    pub fn encode(self, columns: &Columns, row: &Row, out: &mut Vec<u8>) {
        for (i, (column, cell)) in columns.columns.iter().zip(&row.cells).enumerate() {
            if i > 0 {
                out.push(self.separator());
            }
            match *cell {
                Cell::Null => {
                    if self == Self::Tsv {
                        out.extend_from_slice(b"\\N");
                    }
                }
                Cell::Int(v) if column.kind == ColumnType::Timestamp => push_time(out, v),
                Cell::Int(v) => push_int(out, v),
                Cell::Double(v) => {
                    if v.is_finite() {
                        let _ = write!(out, "{v}");
                    } else if v.is_nan() {
                        out.extend_from_slice(b"NaN");
                    } else if v > 0.0 {
                        out.extend_from_slice(b"Infinity");
                    } else {
                        out.extend_from_slice(b"-Infinity");
                    }
                }
                Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                Cell::Bytes { .. } if column.kind == ColumnType::Binary => {
                    push_base64(out, row.bytes(*cell));
                }
                Cell::Bytes { .. } => self.push_text(out, row.bytes(*cell)),
            }
        }
        out.push(b'\n');
    }

    fn push_text(self, out: &mut Vec<u8>, text: &[u8]) {
        match self {
            Self::Csv => {
                if text
                    .iter()
                    .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
                {
                    out.push(b'"');
                    for &b in text {
                        if b == b'"' {
                            out.push(b'"');
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                } else {
                    out.extend_from_slice(text);
                }
            }
            Self::Tsv => {
                for &b in text {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.fff`, UTC; what Hive, Trino, Spark and DuckDB read
/// as a timestamp text.
fn push_time(out: &mut Vec<u8>, ms: i64) {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.3f"));
        }
        None => push_int(out, ms),
    }
}
