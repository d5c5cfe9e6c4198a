//! Tables: the column spec of the tabular formats (`parquet`, `csv`, `tsv`)
//! and what turns an event into a row of it.
//!
//! A sink with a tabular format lists its columns, in order:
//!
//! ```toml
//! [[sinks.lake.columns]]
//! name = "event_id"
//! type = "string"
//! from = "json:event_id"
//!
//! [[sinks.lake.columns]]
//! name = "amount"
//! type = "double"
//! from = "json:payment.amount"
//!
//! [[sinks.lake.columns]]
//! name = "kafka_offset"
//! type = "long"
//! from = "offset"
//! ```
//!
//! `from` says where a column's value comes from (DataWorks' Kafka reader
//! called these `__key__`, `__value__`, … and JSON fields):
//!
//! | `from`          | value                                                         |
//! |-----------------|---------------------------------------------------------------|
//! | `key`           | the record key (null when it has none)                        |
//! | `value`         | the record body                                               |
//! | `topic`         | origin topic                                                  |
//! | `partition`     | origin partition                                              |
//! | `offset`        | origin offset                                                 |
//! | `timestamp`     | Kafka timestamp, epoch milliseconds (null when unknown)       |
//! | `headers`       | every header, as a JSON object (first value of a repeated name) |
//! | `header:NAME`   | the first header `NAME` (null when absent)                    |
//! | `json:PATH`     | a field of the body parsed as JSON: `tag.desc`, `items[0].id`, `[2]` (null when absent) |
//! | `const:TEXT`    | `TEXT`, converted to the column's type when the config loads  |
//!
//! `type` is one of `string`, `int` (32-bit), `long` (64-bit), `double`,
//! `boolean`, `timestamp` (UTC, millisecond precision), `binary` or `json`
//! (JSON text in a string column). A value converts to its column's type
//! when it means the same: a JSON number or a decimal text to a number,
//! `true`/`false` to a boolean, epoch milliseconds or an RFC 3339 text to a
//! timestamp, any JSON to `json`, any text to `string` (a JSON object,
//! array, number or boolean at a path as its text in the body). A value that does
//! not ([`Mismatch`]: text that is no number, bytes that are not UTF-8 for a
//! `string`, a body that is not JSON for a `json:` column) follows the
//! sink's `on_type_mismatch`: `"null"` (the default) writes a null in that
//! column, `"dead_letter"` sends the whole event to the sink's `dead_letter`
//! channel with the reason. Both are counted in
//! `sink.<name>.type_mismatches`.

mod convert;
pub mod ddl;
pub(crate) mod delimited;
pub(crate) mod parquet;
mod path;
mod row;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::Deserialize;

pub(crate) use row::{Cell, ColumnMismatch, Mismatch, Row};

use super::config::ObjectStoreSinkConfig;
use super::format::FileFormat;
use crate::event::EventRef;
use crate::keys::Invalid;
use crate::metrics::Counter;
use path::{JsonPath, PathTree};

/// One `[[sinks.<name>.columns]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Column name: letters, digits and `_`, not starting with a digit (the
    /// names Hive, Trino, Spark and DuckDB take unquoted).
    pub name: String,
    /// Column type: `string`, `int`, `long`, `double`, `boolean`,
    /// `timestamp`, `binary` or `json`.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Where the value comes from; see the module docs.
    pub from: String,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer.
    Long,
    /// 64-bit float.
    Double,
    /// `true` / `false`.
    Boolean,
    /// Instant, UTC, milliseconds.
    Timestamp,
    /// Raw bytes.
    Binary,
    /// JSON text.
    Json,
}

impl ColumnType {
    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Long => "long",
            Self::Double => "double",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::Binary => "binary",
            Self::Json => "json",
        }
    }

    /// The Arrow type its Parquet column is written from.
    fn arrow(self) -> DataType {
        match self {
            Self::String | Self::Json => DataType::Utf8,
            Self::Int => DataType::Int32,
            Self::Long => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Self::Binary => DataType::Binary,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do with a value that does not fit its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMismatch {
    /// Write a null in that column (counted).
    #[default]
    Null,
    /// Send the event to the sink's `dead_letter` channel with the reason.
    DeadLetter,
}

/// Where a column's value comes from, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Key,
    Value,
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
    Header(String),
    /// A `json:` path: the slot of its value in the spec's [`PathTree`].
    Json(usize),
    /// Converted once, when the config loads.
    Const(Cell, Vec<u8>),
}

/// A checked column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub source: Source,
}

/// A sink's checked column spec.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub columns: Vec<Column>,
    /// Every `json:` path, found in one pass over a body (none: the body
    /// is not parsed).
    pub paths: PathTree,
    pub on_mismatch: OnMismatch,
    /// The Arrow schema of the Parquet files.
    pub schema: Arc<Schema>,
}

impl Columns {
    /// Checks `defs`: names unique and plain, every `from` understood,
    /// constants convertible, types that make sense for their source.
    pub fn parse(defs: &[ColumnDef], on_mismatch: OnMismatch) -> Result<Self, Invalid> {
        if defs.is_empty() {
            return Err(Invalid(
                "`columns` is empty: list at least one `[[columns]]` entry".into(),
            ));
        }
        let mut columns = Vec::with_capacity(defs.len());
        let mut paths = PathTree::default();
        for (i, def) in defs.iter().enumerate() {
            let at = || format!("`columns[{i}]` (`{}`)", def.name);
            check_name(&def.name).map_err(|why| Invalid(format!("`columns[{i}].name`: {why}")))?;
            if defs[..i]
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(&def.name))
            {
                return Err(Invalid(format!(
                    "{}: the name is used by an earlier column (engines compare names without case)",
                    at()
                )));
            }
            let source = parse_source(&def.from, def.kind, &mut paths)
                .map_err(|why| Invalid(format!("{}: `from` = {:?}: {why}", at(), def.from)))?;
            columns.push(Column {
                name: def.name.clone(),
                kind: def.kind,
                source,
            });
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            columns,
            paths,
            on_mismatch,
            schema,
        })
    }
}

/// Column names Hive, Trino, Spark and DuckDB all take unquoted.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("empty"),
        Some(c) if c.is_ascii_digit() => return Err("starts with a digit"),
        _ => {}
    }
    if name.len() > 128 {
        return Err("longer than 128 bytes");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("use only ASCII letters, digits and `_`");
    }
    Ok(())
}

/// Why a column's `from` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FromError {
    #[error(
        "expected `key`, `value`, `topic`, `partition`, `offset`, `timestamp`, `headers`, `header:NAME`, `json:PATH` or `const:TEXT`"
    )]
    Unknown,
    #[error("a number cannot be a `{0}` column (use long, int, double, string or timestamp)")]
    NumberAs(ColumnType),
    #[error("all headers are a JSON object: make the column `json` or `string`, not `{0}`")]
    HeadersAs(ColumnType),
    #[error("`header:` needs a header name")]
    NoHeaderName,
    #[error(transparent)]
    Path(#[from] path::PathError),
    #[error("the constant does not fit type `{kind}`: {mismatch}")]
    Constant {
        kind: ColumnType,
        mismatch: Mismatch,
    },
}

fn parse_source(from: &str, kind: ColumnType, paths: &mut PathTree) -> Result<Source, FromError> {
    let numeric_meta = |source: Source| match kind {
        ColumnType::Boolean | ColumnType::Binary | ColumnType::Json => {
            Err(FromError::NumberAs(kind))
        }
        _ => Ok(source),
    };
    let source = match from {
        "key" => Source::Key,
        "value" => Source::Value,
        "topic" => Source::Topic,
        "partition" => numeric_meta(Source::Partition)?,
        "offset" => numeric_meta(Source::Offset)?,
        "timestamp" => numeric_meta(Source::Timestamp)?,
        "headers" => match kind {
            ColumnType::String | ColumnType::Json => Source::Headers,
            _ => return Err(FromError::HeadersAs(kind)),
        },
        _ => {
            if let Some(name) = from.strip_prefix("header:") {
                if name.is_empty() {
                    return Err(FromError::NoHeaderName);
                }
                Source::Header(name.to_owned())
            } else if let Some(path) = from.strip_prefix("json:") {
                Source::Json(paths.add(&JsonPath::parse(path)?))
            } else if let Some(text) = from.strip_prefix("const:") {
                let mut row = Row::new(1);
                convert::from_bytes(kind, text.as_bytes(), &mut row)
                    .map_err(|mismatch| FromError::Constant { kind, mismatch })?;
                let cell = row.cells[0];
                Source::Const(cell, row.buf)
            } else {
                return Err(FromError::Unknown);
            }
        }
    };
    Ok(source)
}

/// How a table's rows become file bytes.
pub(crate) enum TableOut {
    /// csv or tsv lines, after a header row if `header_row`.
    Delimited {
        dialect: delimited::Dialect,
        /// The header row, or empty.
        header: Vec<u8>,
    },
    /// Parquet files written with these properties.
    Parquet(Box<::parquet::file::properties::WriterProperties>),
}

/// A sink's table: its columns, how rows are written, and the row being
/// filled.
pub(crate) struct Table {
    pub columns: Columns,
    pub out: TableOut,
    pub row: Row,
    mismatches: Counter,
}

impl Table {
    /// The table of a table-format `config` (its `columns`).
    pub fn from_config(
        config: &ObjectStoreSinkConfig,
        mismatches: Counter,
    ) -> Result<Self, Invalid> {
        let columns = Columns::parse(&config.columns, config.on_type_mismatch)?;
        let out = match config.format {
            FileFormat::Parquet => TableOut::Parquet(Box::new(
                config
                    .parquet
                    .unwrap_or_default()
                    .properties(config.compression(), config.compression_level)
                    .map_err(|e| Invalid(format!("`compression_level`: {e}")))?,
            )),
            format => {
                let dialect = if format == FileFormat::Tsv {
                    delimited::Dialect::Tsv
                } else {
                    delimited::Dialect::Csv
                };
                let mut header = Vec::new();
                if config.header_row {
                    dialect.header(&columns, &mut header);
                }
                TableOut::Delimited { dialect, header }
            }
        };
        Ok(Self {
            row: Row::new(columns.columns.len()),
            columns,
            out,
            mismatches,
        })
    }

    /// Fills the row from `event`; see [`Row::fill`]. Mismatches are counted.
    pub fn fill(&mut self, event: &EventRef<'_>) -> Result<(), ColumnMismatch> {
        match self.row.fill(&self.columns, event) {
            Ok(0) => Ok(()),
            Ok(nulls) => {
                self.mismatches
                    .fetch_add(u64::from(nulls), Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.mismatches.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
