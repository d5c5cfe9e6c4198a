//! `sluice ddl`: the table definition over a sink's output, for Hive,
//! Trino (Hive connector), Spark SQL or DuckDB.
//!
//! The sink's `path` template is read as a table location followed by Hive
//! partitions: components before the first `name=...` component are the
//! location under the sink's URL (literals, or `%{topic}` given with
//! `--topic`); every component from there on must be `name=<template>` and
//! becomes a partition column of type string, in order. The columns are the
//! sink's `columns`. Partitions written later are found by each engine's own
//! means (Hive and Spark `MSCK REPAIR TABLE`, Trino
//! `system.sync_partition_metadata`, DuckDB's `hive_partitioning` reads the
//! directories on every query); the statement is followed by that command
//! as a comment.

use std::fmt::Write as _;

use super::{ColumnType, Columns};
use crate::sinks::object_store::config::{ObjectStoreSinkConfig, Scheme};
use crate::sinks::object_store::format::{Compression, FileFormat};

/// The engine whose SQL is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Apache Hive: `CREATE EXTERNAL TABLE ... PARTITIONED BY ... STORED AS ... LOCATION`.
    Hive,
    /// Trino's Hive connector: `CREATE TABLE ... WITH (external_location, format, partitioned_by)`.
    Trino,
    /// Spark SQL: `CREATE TABLE ... USING ... PARTITIONED BY ... LOCATION`.
    Spark,
    /// DuckDB: a view over `read_parquet` / `read_csv` with Hive partitioning.
    Duckdb,
}

/// Why no table definition can be written.
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// The sink writes no table.
    #[error(
        "sink `{0}` writes `{1}` files, which have no columns; table definitions are for `format` = \"parquet\", \"csv\" or \"tsv\""
    )]
    NotATable(String, &'static str),
    /// The path cannot be read as location + partitions.
    #[error("sink `{sink}`: `path` = {path:?}: {why}")]
    Path {
        sink: String,
        path: String,
        why: String,
    },
    /// The column spec is invalid.
    #[error("sink `{0}`: {1}")]
    Columns(String, String),
}

/// What the statement is about.
#[derive(Debug, Clone, Default)]
pub struct DdlOptions {
    /// Table name (default: the sink's name).
    pub table: Option<String>,
    /// The value of `%{topic}` in the path's location part.
    pub topic: Option<String>,
    /// The table's location instead of the sink's URL and path (e.g. an
    /// `s3a://` URL for Hadoop, or a local copy).
    pub location: Option<String>,
}

/// The statement(s) for `dialect` over sink `name`'s output.
pub fn ddl(
    name: &str,
    config: &ObjectStoreSinkConfig,
    dialect: Dialect,
    options: &DdlOptions,
) -> Result<String, DdlError> {
    let columns = match config.table() {
        Ok(Some(columns)) => columns,
        Ok(None) => return Err(DdlError::NotATable(name.into(), config.format.name())),
        Err(e) => return Err(DdlError::Columns(name.into(), e.0)),
    };
    let layout = Layout::of(name, config, options)?;
    let table = options.table.as_deref().unwrap_or(name);
    let mut out = String::new();
    match dialect {
        Dialect::Hive => hive(&mut out, table, config, &columns, &layout),
        Dialect::Spark => spark(&mut out, table, config, &columns, &layout),
        Dialect::Trino => trino(&mut out, table, config, &columns, &layout),
        Dialect::Duckdb => duckdb(&mut out, table, config, &columns, &layout),
    }
    Ok(out)
}

/// A table's location and partition columns.
struct Layout {
    location: String,
    partitions: Vec<String>,
}

impl Layout {
    fn of(
        sink: &str,
        config: &ObjectStoreSinkConfig,
        options: &DdlOptions,
    ) -> Result<Self, DdlError> {
        let err = |why: String| DdlError::Path {
            sink: sink.into(),
            path: config.path.clone(),
            why,
        };
        let mut location = Vec::new();
        let mut partitions = Vec::new();
        for component in config.path.split('/').filter(|c| !c.is_empty()) {
            match component.split_once('=') {
                Some((column, _)) if !column.is_empty() && !column.contains('%') => {
                    partitions.push(column.to_owned());
                }
                _ if !partitions.is_empty() => {
                    return Err(err(format!(
                        "`{component}` follows a partition: every directory after the first `name=...` must be one"
                    )));
                }
                _ if component == "%{topic}" => match &options.topic {
                    Some(topic) => location.push(topic.clone()),
                    None => {
                        return Err(err(
                            "the location holds `%{topic}`: say which topic with `--topic`".into(),
                        ));
                    }
                },
                _ if component.contains('%') => {
                    return Err(err(format!(
                        "`{component}` varies per event but is not a `name=...` partition, so no one table location holds the files"
                    )));
                }
                _ => location.push(component.to_owned()),
            }
        }
        let location = match &options.location {
            Some(l) => l.trim_end_matches('/').to_owned(),
            None => {
                // A local directory is named by its path, as engines take it.
                let mut l = match config.parse_url() {
                    Ok((Scheme::File, url)) => url
                        .to_file_path()
                        .map_or_else(|()| url.path().to_owned(), |p| p.display().to_string()),
                    _ => config.url.clone(),
                };
                l.truncate(l.trim_end_matches('/').len());
                for c in &location {
                    l.push('/');
                    l.push_str(c);
                }
                l
            }
        };
        Ok(Self {
            location,
            partitions,
        })
    }

    /// The glob of every data file, for DuckDB.
    fn glob(&self, config: &ObjectStoreSinkConfig) -> String {
        let mut g = self.location.clone();
        for _ in &self.partitions {
            g.push_str("/*");
        }
        let suffix = match config.format {
            FileFormat::Parquet => "",
            _ => config.compression().suffix(),
        };
        let _ = write!(g, "/*.{}{suffix}", config.format.extension());
        g
    }
}

fn hive_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String | ColumnType::Json => "STRING",
        ColumnType::Int => "INT",
        ColumnType::Long => "BIGINT",
        ColumnType::Double => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Binary => "BINARY",
    }
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A standard SQL string (quotes doubled, backslashes as they are).
fn std_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn separator(config: &ObjectStoreSinkConfig) -> &'static str {
    if config.format == FileFormat::Tsv {
        "\t"
    } else {
        ","
    }
}

fn column_list(
    out: &mut String,
    columns: &Columns,
    quote: char,
    ty: impl Fn(ColumnType) -> &'static str,
) {
    for (i, c) in columns.columns.iter().enumerate() {
        let comma = if i + 1 < columns.columns.len() {
            ","
        } else {
            ""
        };
        let _ = writeln!(out, "  {quote}{}{quote} {}{comma}", c.name, ty(c.kind));
    }
}

fn hive(
    out: &mut String,
    table: &str,
    config: &ObjectStoreSinkConfig,
    columns: &Columns,
    layout: &Layout,
) {
    let _ = writeln!(out, "CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` (");
    // csv through OpenCSVSerde reads every column as a string.
    let csv = config.format == FileFormat::Csv;
    column_list(
        out,
        columns,
        '`',
        |k| if csv { "STRING" } else { hive_type(k) },
    );
    out.push(')');
    if !layout.partitions.is_empty() {
        let parts: Vec<String> = layout
            .partitions
            .iter()
            .map(|p| format!("`{p}` STRING"))
            .collect();
        let _ = write!(out, "\nPARTITIONED BY ({})", parts.join(", "));
    }
    match config.format {
        FileFormat::Parquet => out.push_str("\nSTORED AS PARQUET"),
        FileFormat::Csv => out.push_str(
            "\nROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\nWITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"')\nSTORED AS TEXTFILE",
        ),
        _ => out.push_str(
            "\nROW FORMAT DELIMITED FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' NULL DEFINED AS '\\\\N'\nSTORED AS TEXTFILE",
        ),
    }
    let _ = write!(out, "\nLOCATION {}", sql_string(&layout.location));
    if config.header_row {
        out.push_str("\nTBLPROPERTIES ('skip.header.line.count' = '1')");
    }
    out.push_str(";\n");
    if !layout.partitions.is_empty() {
        let _ = writeln!(out, "-- new partitions: MSCK REPAIR TABLE `{table}`;");
    }
}

fn spark(
    out: &mut String,
    table: &str,
    config: &ObjectStoreSinkConfig,
    columns: &Columns,
    layout: &Layout,
) {
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS `{table}` (");
    let mut all: Vec<String> = columns
        .columns
        .iter()
        .map(|c| format!("  `{}` {}", c.name, hive_type(c.kind)))
        .collect();
    all.extend(layout.partitions.iter().map(|p| format!("  `{p}` STRING")));
    out.push_str(&all.join(",\n"));
    out.push_str("\n)\n");
    match config.format {
        FileFormat::Parquet => out.push_str("USING parquet"),
        _ => {
            let _ = write!(
                out,
                "USING csv\nOPTIONS (sep {}, header {}, nullValue {}, timestampFormat 'yyyy-MM-dd HH:mm:ss.SSS'{})",
                sql_string(separator(config)),
                if config.header_row {
                    "'true'"
                } else {
                    "'false'"
                },
                sql_string(if config.format == FileFormat::Tsv {
                    "\\N"
                } else {
                    ""
                }),
                match config.compression() {
                    Compression::Gzip => ", compression 'gzip'",
                    Compression::Zstd => ", compression 'zstd'",
                    _ => "",
                }
            );
        }
    }
    if !layout.partitions.is_empty() {
        let parts: Vec<String> = layout.partitions.iter().map(|p| format!("`{p}`")).collect();
        let _ = write!(out, "\nPARTITIONED BY ({})", parts.join(", "));
    }
    let _ = writeln!(out, "\nLOCATION {};", sql_string(&layout.location));
    if !layout.partitions.is_empty() {
        let _ = writeln!(out, "-- new partitions: MSCK REPAIR TABLE `{table}`;");
    }
}

fn trino(
    out: &mut String,
    table: &str,
    config: &ObjectStoreSinkConfig,
    columns: &Columns,
    layout: &Layout,
) {
    // Trino reads csv columns as varchar only.
    let text = config.format != FileFormat::Parquet;
    let ty = |k: ColumnType| match k {
        _ if text && config.format == FileFormat::Csv => "VARCHAR",
        ColumnType::String | ColumnType::Json => "VARCHAR",
        ColumnType::Int => "INTEGER",
        ColumnType::Long => "BIGINT",
        ColumnType::Double => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMP(3)",
        ColumnType::Binary => "VARBINARY",
    };
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS \"{table}\" (");
    let mut all: Vec<String> = columns
        .columns
        .iter()
        .map(|c| format!("  \"{}\" {}", c.name, ty(c.kind)))
        .collect();
    all.extend(
        layout
            .partitions
            .iter()
            .map(|p| format!("  \"{p}\" VARCHAR")),
    );
    out.push_str(&all.join(",\n"));
    out.push_str("\n)\nWITH (\n");
    let _ = write!(
        out,
        "  external_location = {}",
        std_string(&layout.location)
    );
    let _ = write!(
        out,
        ",\n  format = '{}'",
        match config.format {
            FileFormat::Parquet => "PARQUET",
            FileFormat::Csv => "CSV",
            _ => "TEXTFILE",
        }
    );
    if config.format == FileFormat::Tsv {
        out.push_str(
            ",\n  textfile_field_separator = U&'\\0009',\n  textfile_field_separator_escape = '\\'",
        );
    }
    if config.header_row {
        out.push_str(",\n  skip_header_line_count = 1");
    }
    if !layout.partitions.is_empty() {
        let parts: Vec<String> = layout.partitions.iter().map(|p| format!("'{p}'")).collect();
        let _ = write!(out, ",\n  partitioned_by = ARRAY[{}]", parts.join(", "));
    }
    out.push_str("\n);\n");
    if !layout.partitions.is_empty() {
        let _ = writeln!(
            out,
            "-- new partitions: CALL system.sync_partition_metadata(current_schema, '{table}', 'ADD');"
        );
    }
}

fn duckdb(
    out: &mut String,
    table: &str,
    config: &ObjectStoreSinkConfig,
    columns: &Columns,
    layout: &Layout,
) {
    let ty = |k: ColumnType| match k {
        ColumnType::String | ColumnType::Json => "VARCHAR",
        ColumnType::Int => "INTEGER",
        ColumnType::Long => "BIGINT",
        ColumnType::Double => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMPTZ",
        ColumnType::Binary => "BLOB",
    };
    let glob = std_string(&layout.glob(config));
    let hive_types: Vec<String> = layout
        .partitions
        .iter()
        .map(|p| format!("'{p}': 'VARCHAR'"))
        .collect();
    let partitioning = if layout.partitions.is_empty() {
        String::new()
    } else {
        format!(
            ", hive_partitioning = true, hive_types = {{{}}}",
            hive_types.join(", ")
        )
    };
    let _ = writeln!(out, "CREATE OR REPLACE VIEW \"{table}\" AS");
    let _ = writeln!(out, "SELECT");
    let text = config.format != FileFormat::Parquet;
    let mut all: Vec<String> = columns
        .columns
        .iter()
        .map(|c| match c.kind {
            // Binary cells are base64 text in csv and tsv.
            ColumnType::Binary if text => format!("  from_base64(\"{0}\") AS \"{0}\"", c.name),
            k => format!("  CAST(\"{0}\" AS {1}) AS \"{0}\"", c.name, ty(k)),
        })
        .collect();
    all.extend(layout.partitions.iter().map(|p| format!("  \"{p}\"")));
    out.push_str(&all.join(",\n"));
    match config.format {
        FileFormat::Parquet => {
            let _ = write!(out, "\nFROM read_parquet({glob}{partitioning});\n");
        }
        _ => {
            let types: Vec<String> = columns
                .columns
                .iter()
                .map(|c| {
                    let t = match c.kind {
                        ColumnType::Binary => "VARCHAR",
                        ColumnType::Timestamp => "TIMESTAMP",
                        k => ty(k),
                    };
                    format!("'{}': '{t}'", c.name)
                })
                .collect();
            let _ = write!(
                out,
                "\nFROM read_csv({glob}, delim = {}, quote = {}, escape = {}, header = {}, nullstr = {}, columns = {{{}}}{partitioning});\n",
                std_string(separator(config)),
                if config.format == FileFormat::Csv {
                    "'\"'"
                } else {
                    "''"
                },
                if config.format == FileFormat::Csv {
                    "'\"'"
                } else {
                    "''"
                },
                config.header_row,
                std_string(if config.format == FileFormat::Tsv {
                    "\\N"
                } else {
                    ""
                }),
                types.join(", "),
            );
        }
    }
}
