//! Keys of `[lookups.<name>]` tables.
//!
//! ```toml
//! [lookups.customers]
//! type = "file"
//! path = "data/customers.csv"   # relative to the configuration file; reloaded on change
//! key = "card"                  # column (CSV) or top-level field (JSON lines) holding the key
//!
//! [lookups.stores]
//! type = "kafka"
//! bootstrap_servers = "127.0.0.1:9092"
//! topic = "stores"              # a compacted topic; the record key is the lookup key
//! [lookups.stores.properties]   # librdkafka properties: TLS, SASL, ...
//! "security.protocol" = "sasl_ssl"
//! "sasl.mechanism" = "SCRAM-SHA-256"
//! "sasl.username" = "sluice"
//! "sasl.password" = { env = "KAFKA_PASSWORD" }   # or { file = "/run/secrets/kafka-password" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use sluice_kafka::KafkaProperties;

/// Format of a file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated values with a header row; a row's value is a JSON
    /// object of its columns, every value a string.
    Csv,
    /// One JSON object per line; a line's value is the line itself.
    Jsonl,
}

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLookupConfig {
    /// The file, relative to the configuration file. Watched: a changed file
    /// is reloaded and swapped in whole; a file that fails to parse leaves the
    /// previous content in place.
    pub path: PathBuf,
    /// `csv` or `jsonl`. Default: from the extension (`.csv`, `.jsonl`/`.json`).
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// The column (CSV) or top-level field (JSON lines) that holds each
    /// record's key. Numbers are keyed by their decimal text.
    pub key: String,
}

impl FileLookupConfig {
    /// The format, given or inferred from the extension.
    pub fn format(&self) -> Option<FileFormat> {
        self.format
            .or_else(|| match self.path.extension().and_then(|e| e.to_str()) {
                Some("csv") => Some(FileFormat::Csv),
                Some("jsonl" | "json" | "ndjson") => Some(FileFormat::Jsonl),
                _ => None,
            })
    }

    /// Checks the keys; the error names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.format().is_none() {
            return Err((
                "format",
                format!(
                    "cannot tell the format of `{}` from its extension; set `format = \"csv\"` or `\"jsonl\"`",
                    self.path.display()
                ),
            ));
        }
        if self.key.is_empty() {
            return Err(("key", "must name a column or field".into()));
        }
        Ok(())
    }
}

/// `type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaLookupConfig {
    /// Brokers, `host:port,...`.
    pub bootstrap_servers: String,
    /// The (compacted) topic. Every partition is read from the beginning and
    /// followed; the record key (UTF-8) is the lookup key, the value (UTF-8)
    /// the lookup value, and an empty or null value deletes the key.
    pub topic: String,
    /// Extra librdkafka consumer properties (security settings and the
    /// like), as in the `kafka` source's `kafka` table: a value may be read
    /// from a file, `{ file = "/run/secrets/kafka-password" }`, or an
    /// environment variable, `{ env = "KAFKA_PASSWORD" }` (checked when the
    /// configuration is loaded), and secret values are never logged. A wrong
    /// password, an untrusted certificate or a missing ACL stops the agent
    /// with an error naming the table, the brokers and the cause.
    #[serde(default)]
    pub properties: KafkaProperties,
}

impl KafkaLookupConfig {
    /// Checks the keys; the error names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("bootstrap_servers", &self.bootstrap_servers),
            ("topic", &self.topic),
        ] {
            if value.trim().is_empty() {
                return Err((key, "is empty".into()));
            }
        }
        self.properties
            .check("properties")
            .map_err(|e| ("properties", e.to_string()))
    }
}
