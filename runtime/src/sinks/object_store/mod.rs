//! The `object_store` sink: rolling files in S3, GCS, Azure, S3-compatible
//! stores (Alibaba OSS, MinIO, moto) or a local directory — what Flume's HDFS
//! sink and Kafka Connect's S3 sink do.
//!
//! ```toml
//! [sinks.lake]
//! type = "object_store"
//! url = "s3://bucket/raw"
//! path = "%{topic}/dt=%Y-%m-%d/hr=%H"
//! roll_interval = "10s"
//! format = "jsonl"
//! compression = "gzip"
//! ```
//!
//! Every key is documented on [`ObjectStoreSinkConfig`]; the template
//! escapes in [`path`](mod@path), the formats in [`format`](mod@format).
//!
//! # Files
//!
//! Each (rendered directory, topic, partition) has at most one open file,
//! named `<topic>+<partition>+<first offset, 20 digits>.<txt|jsonl>[.gz|.zst]`.
//! A file holds events of one topic-partition with ascending offsets, so its
//! name says exactly which offsets it starts with, and a restart that
//! re-reads the same offsets writes the same name.
//!
//! Readers never see a partial file: a local file is written as
//! `.<name>.inprogress` in the same directory and renamed (after fsync) when
//! complete; an object is uploaded with one PUT, or a multipart upload
//! completed at roll, so it appears whole (`writer.rs` describes the buffering).
//!
//! # Acknowledgements and failures
//!
//! Each open file holds the `Ack` of every batch it has events of, and
//! releases them only once it is visible; a batch therefore counts as
//! delivered when every file holding any of its events is complete. A
//! permanent store error (access denied, unauthenticated, a missing bucket,
//! a read-only or forbidden local directory) is not retried: the sink stops
//! with it, and what it held fails. An event whose path exceeds the store's
//! limits goes to the sink's `dead_letter` channel, or stops the sink
//! ([`crate::sinks::dead_letter`]). Other failed writes are
//! retried with exponential backoff and jitter (`retry_backoff_initial`,
//! doubling to `retry_backoff_max`) for as long as the pipeline runs; after
//! the channel ends each operation gets `shutdown_attempts` more tries, and
//! a file still failing is given up: its acks are failed (the source does not
//! commit; the events are read again after a restart) and [`run`] returns an
//! error once every other file is complete. Acks are also failed, never
//! released, if the sink's task is dropped while holding them.
//!
//! # Metrics
//!
//! Counters `sink.<name>.events`, `.bytes` (encoded, before compression),
//! `.files_written`, `.retries` (re-attempts of failed operations),
//! `.write_errors` (failed attempts), `.rolled_for_max_open_files` (files
//! completed early to stay within `max_open_files`), `.orphans_removed`
//! (in-progress files a crash left, removed at start; see [`journal`]);
//! gauge `sink.<name>.open_files`.

mod chain;
mod commit;
pub mod config;
mod error;
pub mod format;
mod intake;
mod journal;
mod markers;
mod oss;
pub mod path;
mod retry;
mod sink;
mod store;
pub mod table;
pub mod verify;
mod writer;

#[cfg(test)]
mod exactly_once_tests;
#[cfg(test)]
mod test_store;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use self::config::{ObjectStoreSinkConfig, S3Options};
pub use self::format::{Compression, FileFormat, Format};
use self::store::Destination;
use crate::channels::ChannelReceiver;
use crate::keys;
use crate::sinks::{Guarantee, Sink, SinkContext, SinkError, SinkType};

/// `type = "object_store"`.
pub const TYPE: SinkType = SinkType {
    name: "object_store",
    takes_dead_letter: true,
    load: |table| {
        let config: ObjectStoreSinkConfig = keys::deserialize(table)?;
        config.validate()?;
        Ok(Arc::new(config))
    },
};

impl Sink for ObjectStoreSinkConfig {
    fn guarantee(&self) -> Guarantee {
        if self.exactly_once {
            Guarantee::ExactlyOnce
        } else {
            Guarantee::AtLeastOnce
        }
    }

    fn releases_without_more_input(&self) -> bool {
        self.roll_interval.is_some() || self.roll_idle.is_some()
    }

    fn needs_dead_letter(&self) -> Option<&'static str> {
        (self.on_type_mismatch == table::OnMismatch::DeadLetter)
            .then_some("`on_type_mismatch` = \"dead_letter\"")
    }

    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(run_loaded(self.clone(), input, ctx))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs the sink: writes every batch from `input` into rolling files until
/// `input` ends, then completes all open files and returns. Returns an error
/// if the config is invalid or if some file could not be completed (its
/// batches were then reported as not delivered). For a configuration
/// that did not come through [`TYPE`]'s `load` (tools, tests); the pipeline
/// runs [`run_loaded`], which does not check it again.
pub async fn run(
    config: ObjectStoreSinkConfig,
    input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    config.validate().map_err(|e| SinkError {
        sink: ctx.name.clone(),
        message: e.0,
    })?;
    run_loaded(config, input, ctx).await
}

/// [`run`] for a configuration [`TYPE`] loaded, and so checked already.
async fn run_loaded(
    config: ObjectStoreSinkConfig,
    input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let error = |message: String| SinkError {
        sink: ctx.name.clone(),
        message,
    };
    let dest = Destination::from_config(&config).map_err(|e| error(e.message))?;
    sink::run(config, dest, input, ctx).await
}

/// Like [`run`], but writes into `store` (whatever `url`'s scheme); keys
/// still start with `url`'s path, so a test can read back what was written
/// from an `object_store::memory::InMemory`.
#[cfg(test)]
pub(crate) async fn run_with_store<S>(
    config: ObjectStoreSinkConfig,
    store: Arc<S>,
    input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError>
where
    S: object_store::ObjectStore + object_store::multipart::MultipartStore,
{
    let error = |message: String| SinkError {
        sink: ctx.name.clone(),
        message,
    };
    config.validate().map_err(|e| error(e.0))?;
    let (_, url) = config.parse_url().map_err(|e| error(e.0))?;
    let prefix = store::url_prefix(&url).map_err(|e| error(e.message))?;
    let dest = Destination::Remote(store::RemoteStore::new(store, prefix, config.url.clone()));
    sink::run(config, dest, input, ctx).await
}
