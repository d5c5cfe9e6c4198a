//! Configuration of the `object_store` sink (`[sinks.<name>]` with `type = "object_store"`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::format::{Compression, FileFormat};
use super::path::PathTemplate;
use super::table::parquet::ParquetOptions;
use super::table::{ColumnDef, Columns, OnMismatch};
use crate::keys::Invalid;
use crate::units::{ByteSize, HumanDuration};

/// Smallest multipart part S3 accepts (every part but the last).
pub(crate) const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest multipart part S3 accepts.
pub(crate) const MAX_PART_SIZE: u64 = 5 << 30;

/// Rolling files into an object store or a local directory.
///
/// ```toml
/// [sinks.lake]
/// type = "object_store"
/// url = "s3://bucket/raw"
/// path = "%{topic}/dt=%Y-%m-%d/hr=%H"
/// roll_interval = "10s"
/// roll_size = "128MiB"
/// format = "jsonl"
/// compression = "zstd"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreSinkConfig {
    /// Where files go: `file:///abs/dir`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`, or `memory://` (a
    /// throw-away in-process store, for tests and benchmarks). The URL's path
    /// is a prefix every object key starts with.
    pub url: String,

    /// Directory of each file under the URL's prefix, rendered per event:
    /// `%{topic}`, `%{partition}`, `%{<header>}`, `%Y %y %m %d %H %M %S %j`
    /// (UTC; time from the `timestamp` header in epoch ms, else the Kafka
    /// timestamp, else the wall clock) and `%%`. Examples: `"%{topic}/%y-%m-%d"`,
    /// `"%{topic}/dt=%Y-%m-%d/hr=%H"`. Empty (the default) writes files
    /// directly under the prefix.
    #[serde(default)]
    pub path: String,

    /// Replaces a `%{<header>}` whose header is missing or empty. Default `"unknown"`.
    #[serde(default = "default_missing_header_value")]
    pub missing_header_value: String,

    /// Complete a file this long after it was opened (Flume `rollInterval`).
    pub roll_interval: Option<HumanDuration>,

    /// Complete a file once it holds this many bytes of encoded events, before
    /// compression (Flume `rollSize`).
    pub roll_size: Option<ByteSize>,

    /// Complete a file once it holds this many events (Flume `rollCount`).
    pub roll_count: Option<u64>,

    /// Complete a file when nothing was written to it for this long (Flume `idleTimeout`).
    pub roll_idle: Option<HumanDuration>,

    /// At most this many files open at once (Flume `maxOpenFiles`). Opening
    /// one more first completes the least recently written file (in
    /// exactly-once mode: commits its partition, whose files roll together).
    /// Each open file holds a descriptor (local) or up to `upload_part_size`
    /// of memory (object stores), so this bounds both when a backfill spans
    /// many time buckets or a `%{header}` has many values. Default 256.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,

    /// How events are written: `"text"` (body + newline, the default),
    /// `"jsonl"` (one JSON object per event with key, value, topic,
    /// partition, offset, timestamp and headers), or a table of `columns`:
    /// `"parquet"`, `"csv"` or `"tsv"`.
    #[serde(default)]
    pub format: FileFormat,

    /// Compression: for text, jsonl, csv and tsv the whole file, `"none"`
    /// (the default), `"gzip"` (`.gz`) or `"zstd"` (`.zst`); for parquet
    /// its pages, `"snappy"` (the default), `"zstd"`, `"gzip"` or `"none"`.
    #[serde(default)]
    pub compression: Option<Compression>,

    /// Compression level: 0–9 for gzip (default 6), 1–22 for zstd (default 3).
    pub compression_level: Option<i32>,

    /// The table's columns, for `format = "parquet"`, `"csv"` or `"tsv"`
    /// (required there, refused otherwise): `[[sinks.<name>.columns]]`
    /// entries of `name`, `type` and `from`; see the `table` module docs
    /// and docs/lake.md.
    #[serde(default)]
    pub columns: Vec<ColumnDef>,

    /// What a value that does not fit its column's type becomes: `"null"`
    /// (the default; counted in `sink.<name>.type_mismatches`) or
    /// `"dead_letter"` (the event goes to the sink's `dead_letter` channel,
    /// with the column and reason; requires `dead_letter`).
    #[serde(default)]
    pub on_type_mismatch: OnMismatch,

    /// csv and tsv: start every file with a row of the column names
    /// (default `false`; Hive tables then want
    /// `TBLPROPERTIES ("skip.header.line.count"="1")`, which `sluice ddl`
    /// writes).
    #[serde(default)]
    pub header_row: bool,

    /// Write an empty `_SUCCESS` object into each time partition (the
    /// directory of the path's finest time escape, e.g. `hr=%H`) once it is
    /// complete: the low watermark of event time over the partitions the
    /// sink receives has passed its end plus `allowed_lateness`, and all its
    /// files are visible. Needs a time escape in `path`. Default `false`.
    #[serde(default)]
    pub success_markers: bool,

    /// How long after a time partition's end its events may still arrive
    /// before it counts as complete (`success_markers`). Default `"0s"`.
    #[serde(default = "default_allowed_lateness")]
    pub allowed_lateness: HumanDuration,

    /// A source partition that delivered nothing for this long no longer
    /// holds the `_SUCCESS` watermark back (it is caught up), unless its
    /// Kafka source reports records of it not read yet. Default `"1m"`.
    #[serde(default = "default_marker_idle_timeout")]
    pub marker_idle_timeout: HumanDuration,

    /// Parquet layout: `[sinks.<name>.parquet]` with `row_group_rows`,
    /// `row_group_size`, `dictionary`, `statistics`. Only with
    /// `format = "parquet"`.
    pub parquet: Option<ParquetOptions>,

    /// Size of multipart-upload parts for S3, GCS and Azure, between 5MiB
    /// and 5GiB. A file whose compressed size stays below it is uploaded with
    /// one PUT when it completes; a larger one is streamed in parts of this
    /// size. Each open file buffers up to this much. Default `"8MiB"`.
    #[serde(default = "default_upload_part_size")]
    pub upload_part_size: ByteSize,

    /// First wait before retrying a failed write or upload; doubled after
    /// each failure (with jitter) up to `retry_backoff_max`. Default `"100ms"`.
    #[serde(default = "default_retry_backoff_initial")]
    pub retry_backoff_initial: HumanDuration,

    /// Longest wait between retries. Default `"30s"`.
    #[serde(default = "default_retry_backoff_max")]
    pub retry_backoff_max: HumanDuration,

    /// Failed writes are retried for as long as the pipeline runs; once it
    /// shuts down, an operation gets this many more attempts before its
    /// files are given up: their batches are reported as not delivered (the
    /// source does not commit them, so they are read again after a restart)
    /// and the sink ends with an error. Default 5.
    #[serde(default = "default_shutdown_attempts")]
    pub shutdown_attempts: u32,

    /// Exactly-once delivery (default `false`: at-least-once). Every file
    /// stays invisible (a hidden local file, an uncompleted multipart upload)
    /// until a commit record under `_sluice/` names it; the committed
    /// position of each partition is kept there and is where the source
    /// resumes after a crash or rebalance. All open files of a partition roll
    /// together. Needs the sink's channel fed by exactly one `kafka` source,
    /// and on S3-compatible stores conditional PUT (`If-None-Match`), which
    /// AWS S3, MinIO and moto support.
    #[serde(default)]
    pub exactly_once: bool,

    /// Options for `s3://` URLs (AWS S3, Alibaba OSS, MinIO, moto, ...).
    pub s3: Option<S3Options>,

    /// Options for `gs://` URLs, passed to object_store's
    /// `GoogleCloudStorageBuilder` on top of the `GOOGLE_*` environment
    /// variables, e.g. `service_account_path`, `service_account_key`,
    /// `application_credentials`.
    pub gcs: Option<BTreeMap<String, String>>,

    /// Options for `az://` URLs, passed to object_store's
    /// `MicrosoftAzureBuilder` on top of the `AZURE_*` environment variables,
    /// e.g. `account_name`, `access_key`, `sas_key`, `use_emulator`.
    pub azure: Option<BTreeMap<String, String>>,
}

/// Connection options for `s3://` URLs. Anything not set here comes from the
/// standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...) and instance or container credentials.
///
/// Alibaba OSS: `endpoint = "https://oss-cn-hangzhou.aliyuncs.com"`,
/// `region = "oss-cn-hangzhou"`. A local moto or MinIO server:
/// `endpoint = "http://127.0.0.1:5000"`, `path_style = true`, `allow_http = true`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Service endpoint without the bucket, e.g. `"https://oss-cn-hangzhou.aliyuncs.com"`
    /// or `"http://127.0.0.1:5000"`. Default: AWS's endpoint for the region.
    pub endpoint: Option<String>,

    /// Region used for signing. Default `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,

    /// `true`: path-style requests (`endpoint/bucket/key`), which local
    /// servers need. `false` (the default): virtual-hosted style
    /// (`bucket.endpoint/key`), which AWS and Alibaba OSS expect; the bucket
    /// is added to `endpoint`'s host.
    #[serde(default)]
    pub path_style: bool,

    /// Access key id; set together with `secret_access_key`.
    pub access_key_id: Option<String>,

    /// Secret access key; set together with `access_key_id`.
    pub secret_access_key: Option<String>,

    /// Session token for temporary credentials.
    pub session_token: Option<String>,

    /// Allow plain `http://` endpoints (local servers). Default `false`
    /// (also enabled by `AWS_ALLOW_HTTP=true`).
    #[serde(default)]
    pub allow_http: bool,

    /// Send Alibaba OSS's `x-oss-forbid-overwrite: true` with every
    /// create-only PUT (exactly-once commit records), besides
    /// `If-None-Match: *`. Default: on when `endpoint`'s host ends in
    /// `aliyuncs.com`, off otherwise. Either way an exactly-once sink probes
    /// at start that the store refuses to overwrite, and refuses to run if it
    /// does not.
    pub forbid_overwrite_header: Option<bool>,
}

impl S3Options {
    /// Whether create-only PUTs carry `x-oss-forbid-overwrite: true`.
    pub(crate) fn forbid_overwrite(&self) -> bool {
        self.forbid_overwrite_header.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .and_then(|e| url::Url::parse(e).ok())
                .and_then(|u| u.host_str().map(|h| h.ends_with("aliyuncs.com")))
                .unwrap_or(false)
        })
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("forbid_overwrite_header", &self.forbid_overwrite_header)
            .finish()
    }
}

fn default_allowed_lateness() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn default_marker_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_max_open_files() -> usize {
    256
}

fn default_missing_header_value() -> String {
    "unknown".into()
}
fn default_upload_part_size() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_retry_backoff_initial() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_retry_backoff_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_shutdown_attempts() -> u32 {
    5
}

/// The kind of store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `file://`
    File,
    /// `s3://`
    S3,
    /// `gs://`
    Gcs,
    /// `az://`
    Azure,
    /// `memory://`
    Memory,
}

impl ObjectStoreSinkConfig {
    /// The compression in effect (`compression`, or the format's default).
    pub fn compression(&self) -> Compression {
        self.compression
            .unwrap_or_else(|| self.format.default_compression())
    }

    /// The checked column spec, for a table format.
    pub(crate) fn table(&self) -> Result<Option<Columns>, Invalid> {
        if !self.format.is_table() {
            return Ok(None);
        }
        Columns::parse(&self.columns, self.on_type_mismatch).map(Some)
    }

    /// The table keys: present exactly with the formats they are for.
    fn validate_table(&self) -> Result<(), Invalid> {
        let format = self.format;
        if format.is_table() {
            if self.columns.is_empty() {
                return Err(Invalid(format!(
                    "`format` = \"{}\" needs `columns`: add `[[sinks.<name>.columns]]` entries with `name`, `type` and `from`",
                    format.name()
                )));
            }
            self.table()?;
        } else {
            for (key, set) in [
                ("columns", !self.columns.is_empty()),
                (
                    "on_type_mismatch",
                    self.on_type_mismatch != OnMismatch::default(),
                ),
            ] {
                if set {
                    return Err(Invalid(format!(
                        "`{key}` is for the table formats (parquet, csv, tsv), not `format` = \"{}\"",
                        format.name()
                    )));
                }
            }
        }
        if self.header_row && !matches!(format, FileFormat::Csv | FileFormat::Tsv) {
            return Err(Invalid(format!(
                "`header_row` is for csv and tsv, not `format` = \"{}\"",
                format.name()
            )));
        }
        match (&self.parquet, format) {
            (Some(p), FileFormat::Parquet) => p.validate()?,
            (Some(_), _) => {
                return Err(Invalid(format!(
                    "`parquet` options are set but `format` = \"{}\"",
                    format.name()
                )));
            }
            _ => {}
        }
        if self.success_markers {
            let template = PathTemplate::parse(&self.path, &self.missing_header_value)
                .map_err(|e| Invalid(format!("`path`: {e}")))?;
            if template.period().is_none() {
                return Err(Invalid(format!(
                    "`success_markers` marks time partitions, but `path` = {:?} has no time escape (e.g. `dt=%Y-%m-%d/hr=%H`)",
                    self.path
                )));
            }
            if self.marker_idle_timeout.get().is_zero() {
                return Err(Invalid(
                    "`marker_idle_timeout` must be longer than 0ms".into(),
                ));
            }
        } else {
            for (key, set) in [
                (
                    "allowed_lateness",
                    self.allowed_lateness != default_allowed_lateness(),
                ),
                (
                    "marker_idle_timeout",
                    self.marker_idle_timeout != default_marker_idle_timeout(),
                ),
            ] {
                if set {
                    return Err(Invalid(format!(
                        "`{key}` applies to `_SUCCESS` markers: set `success_markers = true` too"
                    )));
                }
            }
        }
        if self.compression() == Compression::Snappy && format != FileFormat::Parquet {
            return Err(Invalid(format!(
                "`compression` = \"snappy\" is for parquet (its pages); a `{}` file can be \"gzip\" or \"zstd\"",
                format.name()
            )));
        }
        Ok(())
    }

    /// Checks what serde cannot: the URL, the template, roll triggers and
    /// option combinations. Messages name the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        let (scheme, url) = self.parse_url()?;
        PathTemplate::parse(&self.path, &self.missing_header_value)
            .map_err(|e| Invalid(format!("`path`: {e}")))?;

        if self.roll_interval.is_none()
            && self.roll_size.is_none()
            && self.roll_count.is_none()
            && self.roll_idle.is_none()
        {
            return Err(
                "no roll trigger: set at least one of `roll_interval`, `roll_size`, `roll_count`, `roll_idle`"
                    .into(),
            );
        }
        for (key, value) in [
            ("roll_interval", self.roll_interval),
            ("roll_idle", self.roll_idle),
        ] {
            if value.is_some_and(|d| d.get().is_zero()) {
                return Err(Invalid(format!("`{key}` must be longer than 0ms")));
            }
        }
        if self.roll_size.is_some_and(|s| s.get() == 0) {
            return Err(Invalid("`roll_size` must be at least 1 byte".into()));
        }
        if self.roll_count == Some(0) {
            return Err(Invalid("`roll_count` must be at least 1".into()));
        }
        if !(1..=100_000).contains(&self.max_open_files) {
            return Err(Invalid(format!(
                "`max_open_files` = {} is outside 1..=100000",
                self.max_open_files
            )));
        }
        if let Some(level) = self.compression_level {
            self.compression().check_level(level)?;
        }
        self.validate_table()?;
        let part = self.upload_part_size.get();
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            return Err(Invalid(format!(
                "`upload_part_size` = {part} bytes is outside 5MiB..=5GiB, the part sizes S3 accepts"
            )));
        }
        if self.retry_backoff_initial.get().is_zero() {
            return Err(Invalid(
                "`retry_backoff_initial` must be longer than 0ms".into(),
            ));
        }
        if self.retry_backoff_max < self.retry_backoff_initial {
            return Err(
                "`retry_backoff_max` must not be shorter than `retry_backoff_initial`".into(),
            );
        }
        if self.shutdown_attempts == 0 {
            return Err(Invalid("`shutdown_attempts` must be at least 1".into()));
        }

        let misplaced = [
            ("s3", self.s3.is_some(), Scheme::S3),
            ("gcs", self.gcs.is_some(), Scheme::Gcs),
            ("azure", self.azure.is_some(), Scheme::Azure),
        ];
        for (table, present, wants) in misplaced {
            if present && scheme != wants {
                return Err(Invalid(format!(
                    "`{table}` options are set but `url` = {:?} is not a {} URL",
                    self.url,
                    match wants {
                        Scheme::S3 => "s3://",
                        Scheme::Gcs => "gs://",
                        _ => "az://",
                    }
                )));
            }
        }
        if let Some(s3) = &self.s3 {
            s3.validate()?;
        }
        if let Some(options) = &self.gcs {
            for key in options.keys() {
                key.parse::<object_store::gcp::GoogleConfigKey>()
                    .map_err(|_| {
                        format!("`gcs.{key}` is not a Google Cloud Storage option of object_store")
                    })?;
            }
        }
        if let Some(options) = &self.azure {
            for key in options.keys() {
                key.parse::<object_store::azure::AzureConfigKey>()
                    .map_err(|_| {
                        Invalid(format!(
                            "`azure.{key}` is not an Azure option of object_store"
                        ))
                    })?;
            }
        }
        if matches!(scheme, Scheme::S3 | Scheme::Gcs | Scheme::Azure)
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(Invalid(format!(
                "`url` = {:?} names no bucket or container",
                self.url
            )));
        }
        Ok(())
    }

    /// The URL and its kind.
    pub(crate) fn parse_url(&self) -> Result<(Scheme, Url), Invalid> {
        let url = Url::parse(&self.url).map_err(|e| {
            format!(
                "`url` = {:?} is not a URL ({e}); write e.g. \"file:///var/lib/sluice/out\" or \"s3://bucket/prefix\"",
                self.url
            )
        })?;
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" => Scheme::Azure,
            "memory" => Scheme::Memory,
            other => {
                return Err(Invalid(format!(
                    "`url` scheme `{other}` is not supported; use file, s3, gs, az or memory"
                )));
            }
        };
        if scheme == Scheme::File {
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(Invalid(format!(
                    "`url` = {:?}: a file URL takes an absolute path (three slashes: \"file:///dir\")",
                    self.url
                )));
            }
            url.to_file_path().map_err(|_| {
                Invalid(format!(
                    "`url` = {:?} is not an absolute local path",
                    self.url
                ))
            })?;
        }
        Ok((scheme, url))
    }
}

impl S3Options {
    fn validate(&self) -> Result<(), Invalid> {
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "`s3.access_key_id` and `s3.secret_access_key` go together: set both or neither"
                    .into(),
            );
        }
        if let Some(endpoint) = &self.endpoint {
            let url = Url::parse(endpoint)
                .map_err(|e| Invalid(format!("`s3.endpoint` = {endpoint:?} is not a URL ({e})")))?;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(Invalid(format!(
                        "`s3.endpoint` = {endpoint:?} is plain http; set `s3.allow_http = true` to allow it"
                    )));
                }
                other => {
                    return Err(Invalid(format!(
                        "`s3.endpoint` scheme `{other}` is not http or https"
                    )));
                }
            }
            let host_is_name = matches!(url.host(), Some(url::Host::Domain(d)) if d != "localhost");
            if !self.path_style && !host_is_name {
                return Err(Invalid(format!(
                    "`s3.endpoint` = {endpoint:?} has no domain name to put the bucket in; \
                     set `s3.path_style = true` (local S3 servers need it)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ObjectStoreSinkConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_a_full_example() {
        let c = parse(
            r#"
            url = "s3://bucket/raw"
            path = "%{topic}/dt=%Y-%m-%d/hr=%H"
            missing_header_value = "none"
            roll_interval = "10s"
            roll_size = "128MiB"
            roll_count = 100000
            roll_idle = "1m"
            format = "jsonl"
            compression = "zstd"
            compression_level = 9
            upload_part_size = "16MiB"
            retry_backoff_initial = "50ms"
            retry_backoff_max = "10s"
            shutdown_attempts = 3
            [s3]
            endpoint = "http://127.0.0.1:5000"
            region = "us-east-1"
            path_style = true
            access_key_id = "test"
            secret_access_key = "secret"
            allow_http = true
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.roll_interval.unwrap().get(), Duration::from_secs(10));
        assert_eq!(c.roll_size.unwrap().get(), 128 << 20);
        assert_eq!(c.roll_count, Some(100_000));
        assert_eq!(c.format, FileFormat::Jsonl);
        assert_eq!(c.compression(), Compression::Zstd);
        assert_eq!(c.upload_part_size.get(), 16 << 20);
        let s3 = c.s3.as_ref().unwrap();
        assert!(s3.path_style && s3.allow_http);
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret\""), "secret leaked: {debug}");
        assert_eq!(c.parse_url().unwrap().0, Scheme::S3);
    }

    #[test]
    fn defaults() {
        let c = parse("url = \"file:///tmp/out\"\nroll_count = 10").unwrap();
        c.validate().unwrap();
        assert_eq!(c.path, "");
        assert_eq!(c.missing_header_value, "unknown");
        assert_eq!(c.format, FileFormat::Text);
        assert_eq!(c.compression(), Compression::None);
        assert_eq!(c.upload_part_size.get(), 8 << 20);
        assert_eq!(c.retry_backoff_initial.get(), Duration::from_millis(100));
        assert_eq!(c.retry_backoff_max.get(), Duration::from_secs(30));
        assert_eq!(c.shutdown_attempts, 5);
    }

    #[test]
    fn unknown_keys_and_bad_values_fail_to_parse() {
        assert!(
            parse("url = \"memory://\"\nroll_count = 1\nrollCount = 2")
                .unwrap_err()
                .contains("rollCount")
        );
        assert!(
            parse("url = \"memory://\"\nformat = \"avro\"")
                .unwrap_err()
                .contains("avro")
        );
        assert!(parse("url = \"memory://\"\nroll_interval = 10").is_err());
        assert!(
            parse("url = \"s3://b\"\n[s3]\nregion = \"x\"\nbucket = \"b\"")
                .unwrap_err()
                .contains("bucket")
        );
    }

    #[test]
    fn validation_errors_name_the_key() {
        let err = |extra: &str| {
            parse(&format!("url = \"memory://\"\n{extra}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert!(err("path = \"x\"").contains("no roll trigger"));
        assert!(err("roll_count = 0").contains("roll_count"));
        assert!(err("roll_count = 1\nmax_open_files = 0").contains("max_open_files"));
        assert!(err("roll_size = 0").contains("roll_size"));
        assert!(err("roll_interval = \"0s\"").contains("roll_interval"));
        assert!(err("roll_count = 1\npath = \"%{topic\"").contains("`path`"));
        assert!(err("roll_count = 1\nupload_part_size = \"1MiB\"").contains("upload_part_size"));
        assert!(err("roll_count = 1\ncompression_level = 3").contains("compression_level"));
        assert!(
            err("roll_count = 1\ncompression = \"gzip\"\ncompression_level = 12")
                .contains("outside")
        );
        assert!(err("roll_count = 1\n[s3]\nregion = \"x\"").contains("not a s3:// URL"));
        assert!(err("roll_count = 1\nshutdown_attempts = 0").contains("shutdown_attempts"));
        assert!(err("roll_count = 1\nretry_backoff_max = \"1ms\"").contains("retry_backoff_max"));

        let err_url = |url: &str, extra: &str| {
            parse(&format!("url = \"{url}\"\nroll_count = 1\n{extra}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert!(err_url("ftp://x/y", "").contains("ftp"));
        assert!(err_url("not a url", "").contains("not a URL"));
        assert!(err_url("file://relative/dir", "").contains("absolute"));
        assert!(
            err_url(
                "s3://b",
                "[s3]\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true"
            )
            .contains("allow_http")
        );
        assert!(
            err_url(
                "s3://b",
                "[s3]\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true"
            )
            .contains("path_style")
        );
        assert!(err_url("s3://b", "[s3]\naccess_key_id = \"a\"").contains("secret_access_key"));
        assert!(err_url("gs://b", "[gcs]\nnot_an_option = \"x\"").contains("gcs.not_an_option"));
        assert!(err_url("az://c", "[azure]\nnope = \"x\"").contains("azure.nope"));
    }

    #[test]
    fn accepts_each_store_kind() {
        for (url, extra) in [
            ("file:///var/lib/sluice", ""),
            ("memory://", ""),
            (
                "s3://bucket/prefix",
                "[s3]\nendpoint = \"https://oss-cn-hangzhou.aliyuncs.com\"",
            ),
            (
                "gs://bucket/p",
                "[gcs]\nservice_account_path = \"/etc/key.json\"",
            ),
            ("az://container/p", "[azure]\naccount_name = \"acct\""),
        ] {
            let c = parse(&format!("url = \"{url}\"\nroll_idle = \"5s\"\n{extra}")).unwrap();
            assert!(c.validate().is_ok(), "{url}: {:?}", c.validate());
        }
    }
}
