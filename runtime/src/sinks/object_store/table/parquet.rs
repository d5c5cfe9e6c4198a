//! Parquet files of a column spec, written with Apache Arrow's `parquet`
//! crate.
//!
//! Rows go into Arrow column builders; every [`BUILDER_ROWS`] rows they
//! become a record batch handed to the Parquet writer, which encodes them
//! into the row group in progress (pages, dictionaries, statistics). A row
//! group is written out once it holds `row_group_rows` rows or its encoded
//! size reaches `row_group_size`. The bytes written land in a buffer the
//! sink drains into the destination (a local hidden file, multipart parts),
//! so an open file holds at most its row group in progress, one builder
//! chunk and the part buffer: memory is bounded per open file whatever its
//! length. The footer is written when the file completes; until then the
//! file is invisible (hidden local name, uncompleted upload), so no reader
//! ever sees a Parquet file without its footer.
//!
//! Types: `string` and `json` are UTF-8 byte arrays (`STRING`), `int`
//! INT32, `long` INT64, `double` DOUBLE, `boolean` BOOLEAN, `timestamp`
//! INT64 `TIMESTAMP(MILLIS, isAdjustedToUTC = true)`, `binary` BYTE_ARRAY;
//! every column is optional (nullable).

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::Deserialize;

use super::row::{Cell, Row};
use super::{ColumnType, Columns};
use crate::keys::Invalid;
use crate::sinks::object_store::format::Compression;
use crate::units::ByteSize;

/// Rows gathered in the column builders before they are encoded.
const BUILDER_ROWS: usize = 4096;

/// `[sinks.<name>.parquet]`: how Parquet files are laid out.
///
/// ```toml
/// [sinks.lake.parquet]
/// row_group_rows = 1000000
/// row_group_size = "64MiB"
/// dictionary = true
/// statistics = true
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetOptions {
    /// A row group is written once it holds this many rows (default 1 000 000).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// ...or once its encoded size reaches this (default `"64MiB"`). It is
    /// what an open file keeps in memory, so it bounds the sink's memory
    /// with `max_open_files`.
    #[serde(default = "default_row_group_size")]
    pub row_group_size: ByteSize,
    /// Dictionary encoding of columns while it pays (default `true`).
    #[serde(default = "yes")]
    pub dictionary: bool,
    /// Min/max/null-count statistics per row group and page, which readers
    /// use to skip data (default `true`).
    #[serde(default = "yes")]
    pub statistics: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            row_group_rows: default_row_group_rows(),
            row_group_size: default_row_group_size(),
            dictionary: true,
            statistics: true,
        }
    }
}

fn default_row_group_rows() -> usize {
    1_000_000
}
fn default_row_group_size() -> ByteSize {
    ByteSize(64 << 20)
}
fn yes() -> bool {
    true
}

impl ParquetOptions {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=100_000_000).contains(&self.row_group_rows) {
            return Err(Invalid(format!(
                "`parquet.row_group_rows` = {} is outside 1..=100000000",
                self.row_group_rows
            )));
        }
        let size = self.row_group_size.get();
        if !((64 << 10)..=(4 << 30)).contains(&size) {
            return Err(Invalid(format!(
                "`parquet.row_group_size` = {size} bytes is outside 64KiB..=4GiB"
            )));
        }
        Ok(())
    }

    /// Writer properties for `compression` (page compression).
    pub(crate) fn properties(
        &self,
        compression: Compression,
        level: Option<i32>,
    ) -> Result<WriterProperties, parquet::errors::ParquetError> {
        let codec = match compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Snappy => Codec::SNAPPY,
            Compression::Gzip => Codec::GZIP(match level {
                Some(l) => GzipLevel::try_new(l.clamp(0, 9) as u32)?,
                None => GzipLevel::default(),
            }),
            Compression::Zstd => Codec::ZSTD(match level {
                Some(l) => ZstdLevel::try_new(l)?,
                None => ZstdLevel::default(),
            }),
        };
        Ok(WriterProperties::builder()
            .set_compression(codec)
            .set_dictionary_enabled(self.dictionary)
            .set_statistics_enabled(if self.statistics {
                EnabledStatistics::Page
            } else {
                EnabledStatistics::None
            })
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_size.get() as usize))
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
            .build())
    }
}

/// One column's builder.
enum Builder {
    String(StringBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Binary(BinaryBuilder),
}

impl Builder {
    fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::String | ColumnType::Json => Self::String(StringBuilder::new()),
            ColumnType::Int => Self::Int(Int32Builder::new()),
            ColumnType::Long => Self::Long(Int64Builder::new()),
            ColumnType::Double => Self::Double(Float64Builder::new()),
            ColumnType::Boolean => Self::Boolean(BooleanBuilder::new()),
            ColumnType::Timestamp => {
                Self::Timestamp(TimestampMillisecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Binary => Self::Binary(BinaryBuilder::new()),
        }
    }

    /// Appends `cell` (of the type [`Row::fill`] produced for this column).
    #[inline]
    fn append(&mut self, row: &Row, cell: Cell) {
        match (self, cell) {
            (Self::String(b), Cell::Bytes { .. }) => {
                // `fill` admits only UTF-8 into text and JSON columns.
                match std::str::from_utf8(row.bytes(cell)) {
                    Ok(s) => b.append_value(s),
                    Err(_) => b.append_null(),
                }
            }
            (Self::Binary(b), Cell::Bytes { .. }) => b.append_value(row.bytes(cell)),
            (Self::Int(b), Cell::Int(v)) => b.append_value(v as i32),
            (Self::Long(b), Cell::Int(v)) => b.append_value(v),
            (Self::Timestamp(b), Cell::Int(v)) => b.append_value(v),
            (Self::Double(b), Cell::Double(v)) => b.append_value(v),
            (Self::Boolean(b), Cell::Bool(v)) => b.append_value(v),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::String(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Long(b) => b.append_null(),
            Self::Double(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::String(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Long(b) => Arc::new(b.finish()),
            Self::Double(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::String(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Long(b) => b.len(),
            Self::Double(b) => b.len(),
            Self::Boolean(b) => b.len(),
            Self::Timestamp(b) => b.len(),
            Self::Binary(b) => b.len(),
        }
    }
}

/// An open Parquet file: builders, the writer and its output buffer.
pub(crate) struct ParquetFile {
    builders: Vec<Builder>,
    schema: Arc<arrow_schema::Schema>,
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetFile {
    /// A new file with `columns`' schema; writes the magic bytes.
    pub fn new(
        columns: &Columns,
        properties: WriterProperties,
    ) -> Result<Self, parquet::errors::ParquetError> {
        let writer = ArrowWriter::try_new(Vec::new(), columns.schema.clone(), Some(properties))?;
        Ok(Self {
            builders: columns
                .columns
                .iter()
                .map(|c| Builder::new(c.kind))
                .collect(),
            schema: columns.schema.clone(),
            writer,
        })
    }

    /// Appends one row; encodes the gathered rows every [`BUILDER_ROWS`].
    #[inline]
    pub fn push(&mut self, row: &Row) -> Result<(), parquet::errors::ParquetError> {
        for (builder, cell) in self.builders.iter_mut().zip(&row.cells) {
            builder.append(row, *cell);
        }
        if self.builders.first().map_or(0, Builder::len) >= BUILDER_ROWS {
            self.encode()?;
        }
        Ok(())
    }

    /// Hands the gathered rows to the writer.
    fn encode(&mut self) -> Result<(), parquet::errors::ParquetError> {
        if self.builders.first().map_or(0, Builder::len) == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.writer.write(&batch)
    }

    /// Bytes written and not taken yet; drain it freely (the writer counts
    /// its own offsets and only ever appends).
    #[inline]
    pub fn output(&mut self) -> &mut Vec<u8> {
        self.writer.inner_mut()
    }

    /// Writes the rest and the footer; returns the bytes not taken yet.
    pub fn finish(mut self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        self.encode()?;
        // Writes the row group in progress and the footer.
        self.writer.into_inner()
    }
}
