//! Loading a lookup table from a CSV or JSON-lines file.

use std::collections::HashMap;
use std::path::Path;

use std::sync::Arc;

use super::config::{FileFormat, FileLookupConfig};
use super::{Lookup, LookupTable, LookupType, OpenContext, OpenLookup, WatchedFile};
use sluice_core::error::BoxError;
use sluice_core::keys;

/// `type = "file"`.
pub const TYPE: LookupType = LookupType {
    name: "file",
    load: |table, base| {
        let mut config: FileLookupConfig = keys::deserialize(table)?;
        config.path = base.join(&config.path);
        config.validate()?;
        Ok(Arc::new(config))
    },
};

impl Lookup for FileLookupConfig {
    fn open(
        &self,
        table: Arc<LookupTable>,
        _ctx: &OpenContext<'_>,
    ) -> Result<OpenLookup, BoxError> {
        let map = tokio::task::block_in_place(|| load(self))
            .map_err(|e| format!("lookup `{}`: {e}", table.name()))?;
        tracing::info!(table = %table.name(), keys = map.len(), "lookup table loaded");
        table.replace(map);
        let config = self.clone();
        Ok(OpenLookup {
            watched: Some(WatchedFile {
                path: self.path.clone(),
                reload: Arc::new(move || load(&config).map_err(BoxError::from)),
            }),
            ..OpenLookup::default()
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Why a lookup file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read.
    #[error("reading lookup file {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// The contents are not a table; the message names the file and line.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the whole table; the error names the file and line.
pub fn load(config: &FileLookupConfig) -> Result<HashMap<String, String>, TableError> {
    let text = std::fs::read_to_string(&config.path).map_err(|source| TableError::Read {
        path: config.path.clone(),
        source,
    })?;
    match config.format() {
        Some(FileFormat::Csv) => parse_csv(&config.path, &text, &config.key),
        Some(FileFormat::Jsonl) => parse_jsonl(&config.path, &text, &config.key),
        None => Err(TableError::Invalid(format!(
            "lookup file {}: unknown format",
            config.path.display()
        ))),
    }
}

fn parse_csv(path: &Path, text: &str, key: &str) -> Result<HashMap<String, String>, TableError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| {
            TableError::Invalid(format!("{}: reading the header row: {e}", path.display()))
        })?
        .clone();
    let key_col = headers.iter().position(|h| h == key).ok_or_else(|| {
        TableError::Invalid(format!(
            "{}: no column `{key}` in the header row ({})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let mut map = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| TableError::Invalid(format!("{}: {e}", path.display())))?;
        let Some(k) = record.get(key_col) else {
            continue;
        };
        let row: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_owned(), serde_json::Value::String(v.to_owned())))
            .collect();
        map.insert(k.to_owned(), serde_json::Value::Object(row).to_string());
    }
    Ok(map)
}

fn parse_jsonl(path: &Path, text: &str, key: &str) -> Result<HashMap<String, String>, TableError> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            TableError::Invalid(format!(
                "{}:{}: not a JSON object: {e}",
                path.display(),
                n + 1
            ))
        })?;
        let k = match value.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ serde_json::Value::Number(_)) => v.to_string(),
            _ => {
                return Err(TableError::Invalid(format!(
                    "{}:{}: no string or number field `{key}`",
                    path.display(),
                    n + 1
                )));
            }
        };
        map.insert(k, line.to_owned());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_json_objects_keyed_by_the_column() {
        let map = parse_csv(
            Path::new("c.csv"),
            "card,home_lat,recent\n4111, 52.5 ,1433;1201\n5500,48.1,\n",
            "card",
        )
        .unwrap();
        assert_eq!(map.len(), 2);
        let row: serde_json::Value = serde_json::from_str(&map["4111"]).unwrap();
        assert_eq!(row["home_lat"], "52.5");
        assert_eq!(row["recent"], "1433;1201");
    }

    #[test]
    fn csv_without_the_key_column_is_an_error_naming_it() {
        let err = parse_csv(Path::new("c.csv"), "a,b\n1,2\n", "card").unwrap_err();
        assert!(err.to_string().contains("no column `card`"), "{err}");
    }

    #[test]
    fn jsonl_lines_are_values_and_numbers_are_keys_too() {
        let map = parse_jsonl(
            Path::new("s.jsonl"),
            "{\"store\":\"1433\",\"lat\":1}\n\n{\"store\":17,\"lat\":2}\n",
            "store",
        )
        .unwrap();
        assert_eq!(map["1433"], "{\"store\":\"1433\",\"lat\":1}");
        assert!(map.contains_key("17"));
    }

    #[test]
    fn a_bad_jsonl_line_names_its_line_number() {
        let err =
            parse_jsonl(Path::new("s.jsonl"), "{\"store\":\"1\"}\nnope\n", "store").unwrap_err();
        assert!(err.to_string().starts_with("s.jsonl:2:"), "{err}");
    }
}
