//! One event as a row of typed cells, filled without allocating per event
//! (text and bytes go into the row's one reusable buffer).

use std::fmt;

use super::convert;
use super::path::Span;
use super::{Column, ColumnType, Columns, OnMismatch, Source};
use crate::event::EventRef;
use sluice_batch::NO_TIMESTAMP;

/// One typed value. Text, JSON and bytes are a range of [`Row::buf`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    Null,
    /// `int`, `long` and `timestamp` (epoch milliseconds).
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes {
        start: u32,
        end: u32,
    },
}

/// Why a value does not fit its column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// What the value was and what the type wanted.
    pub why: String,
}

impl Mismatch {
    /// `value` (shown cut to 64 bytes) is not `what`.
    pub fn not(value: &[u8], what: &str) -> Self {
        let shown = String::from_utf8_lossy(&value[..value.len().min(64)]);
        let cut = if value.len() > 64 { "…" } else { "" };
        Self {
            why: format!("{shown:?}{cut} is not {what}"),
        }
    }
}

/// A value that does not fit, in the sink's words: which column, which type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}` ({kind}): {why}")]
pub(crate) struct ColumnMismatch {
    pub column: String,
    pub kind: ColumnType,
    pub why: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

/// The cells of one event, in column order.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub cells: Vec<Cell>,
    pub buf: Vec<u8>,
    /// Where each `json:` path's value lies in the body (reused).
    spans: Vec<Span>,
}

impl Row {
    /// An empty row with room for `columns` cells.
    pub fn new(columns: usize) -> Self {
        Self {
            cells: Vec::with_capacity(columns),
            buf: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The bytes of a [`Cell::Bytes`] (empty for any other cell).
    #[inline]
    pub fn bytes(&self, cell: Cell) -> &[u8] {
        match cell {
            Cell::Bytes { start, end } => &self.buf[start as usize..end as usize],
            _ => &[],
        }
    }

    /// Appends `bytes` to the buffer as a new cell.
    #[inline]
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        self.close_bytes(start);
    }

    /// Ends a [`Cell::Bytes`] written into the buffer since `start`.
    #[inline]
    pub fn close_bytes(&mut self, start: u32) {
        let end = self.buf.len() as u32;
        self.cells.push(Cell::Bytes { start, end });
    }

    /// Appends a null cell.
    #[inline]
    fn null(&mut self) -> Result<(), Mismatch> {
        self.cells.push(Cell::Null);
        Ok(())
    }

    /// Bytes the row's values take (what `roll_size` counts for tables).
    pub fn size(&self) -> u64 {
        self.buf.len() as u64 + 8 * self.cells.len() as u64
    }

    /// Fills the row with `event`'s values. A value that does not fit its
    /// type becomes a null and is counted (`on_type_mismatch = "null"`),
    /// or ends the filling with the reason (`"dead_letter"`). Returns the
    /// number of nulls written for mismatches.
    pub fn fill(&mut self, columns: &Columns, event: &EventRef<'_>) -> Result<u32, ColumnMismatch> {
        self.cells.clear();
        self.buf.clear();
        let json_error = if !columns.paths.is_empty() {
            columns
                .paths
                .find(event.body(), &mut self.spans)
                .err()
                .map(|e| format!("the value is not JSON ({e})"))
        } else {
            None
        };
        let mut nulls = 0;
        for column in &columns.columns {
            let mark = self.buf.len();
            let filled = match &column.source {
                Source::Json(_) if json_error.is_some() => Err(Mismatch {
                    why: json_error.clone().unwrap_or_default(),
                }),
                _ => self.fill_one(column, event),
            };
            if let Err(m) = filled {
                match columns.on_mismatch {
                    OnMismatch::DeadLetter => {
                        return Err(ColumnMismatch {
                            column: column.name.clone(),
                            kind: column.kind,
                            why: m.why,
                        });
                    }
                    OnMismatch::Null => {
                        self.buf.truncate(mark);
                        self.cells.push(Cell::Null);
                        nulls += 1;
                    }
                }
            }
        }
        Ok(nulls)
    }

    fn fill_one(&mut self, column: &Column, event: &EventRef<'_>) -> Result<(), Mismatch> {
        let kind = column.kind;
        match &column.source {
            Source::Key => match event.key() {
                Some(key) => convert::from_bytes(kind, key, self),
                None => self.null(),
            },
            Source::Value => convert::from_bytes(kind, event.body(), self),
            Source::Topic => convert::from_bytes(kind, event.topic_bytes(), self),
            Source::Partition => convert::from_int(kind, i64::from(event.partition()), self),
            Source::Offset => convert::from_int(kind, event.offset(), self),
            Source::Timestamp => match event.timestamp() {
                NO_TIMESTAMP => self.null(),
                ts => convert::from_int(kind, ts, self),
            },
            Source::Headers => {
                convert::headers_object(event, self);
                Ok(())
            }
            Source::Header(name) => match event.header(name) {
                Some(value) => convert::from_bytes(kind, value, self),
                None => self.null(),
            },
            Source::Json(slot) => match self.spans.get(*slot).copied().flatten() {
                None => self.null(),
                Some((start, end)) => {
                    convert::from_json_text(kind, &event.body()[start as usize..end as usize], self)
                }
            },
            Source::Const(cell, bytes) => {
                match cell {
                    Cell::Bytes { .. } => self.push_bytes(bytes),
                    other => self.cells.push(*other),
                }
                Ok(())
            }
        }
    }
}
