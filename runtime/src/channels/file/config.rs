//! Configuration of the `file` channel (`[channels.<name>]` with `type = "file"`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{ByteSize, HumanDuration};

/// Smallest `segment_size` accepted.
pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;
/// Largest `segment_size` accepted (record lengths are 32-bit).
pub const MAX_SEGMENT_SIZE: u64 = 4 << 30;

/// A write-ahead log of batches on local disk; see [`crate::channels::file`].
///
/// ```toml
/// [channels.edge]
/// type = "file"
/// dir = "/var/lib/sluice/edge"   # default: <data_dir>/channels/<name>
/// segment_size = "64MiB"
/// max_bytes = "1GiB"
/// fsync = "every_batch"           # or "interval" (with fsync_interval), "never"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChannelConfig {
    /// Directory of the log (segments, checkpoint, quarantine), relative to
    /// the configuration file. Default `<data_dir>/channels/<name>`. Two
    /// channels cannot share one.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Size at which a segment file is closed and a new one started; whole
    /// segments are deleted once everything in them is delivered. Between
    /// `64KiB` and `4GiB`. Default `"64MiB"`.
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// Most undelivered bytes the log holds: at this size sending waits
    /// (backpressure on the source) until the sink catches up; nothing is
    /// dropped. Default `"1GiB"`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// When appended batches are forced to disk, which decides what a batch's
    /// acknowledgement to its source means:
    /// `"every_batch"` (default): fsync before acknowledging each batch —
    /// nothing acknowledged is lost even by a power failure, at the cost of
    /// one disk flush per batch (use batches of hundreds of events);
    /// `"interval"`: fsync every `fsync_interval` and acknowledge the batches
    /// written since then together (group commit) — fewer flushes, and
    /// sources wait up to `fsync_interval` longer for their acknowledgements;
    /// `"never"`: acknowledge once written and let the OS flush — survives a
    /// crash of Sluice but not of the machine.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// How often to fsync with `fsync = "interval"` (only allowed then).
    /// Default `"1s"`.
    #[serde(default)]
    pub fsync_interval: Option<HumanDuration>,
}

/// When the log is forced to disk; see [`FileChannelConfig::fsync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before acknowledging each batch.
    #[default]
    EveryBatch,
    /// Every `fsync_interval`, acknowledging the batches written before it.
    Interval,
    /// Never explicitly: acknowledge once written.
    Never,
}

fn default_segment_size() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

impl FileChannelConfig {
    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let segment = self.segment_size.get();
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment) {
            return Err((
                "segment_size",
                format!("{segment} bytes is outside the range 64KiB to 4GiB"),
            ));
        }
        if self.max_bytes.get() == 0 {
            return Err(("max_bytes", "must be more than 0 bytes".into()));
        }
        match (self.fsync, self.fsync_interval) {
            (FsyncPolicy::Interval, Some(d)) if d.get().is_zero() => Err((
                "fsync_interval",
                "must be longer than 0ms; for no explicit flushes write `fsync = \"never\"`".into(),
            )),
            (FsyncPolicy::EveryBatch | FsyncPolicy::Never, Some(_)) => Err((
                "fsync_interval",
                "only applies with `fsync = \"interval\"`; set that or remove this key".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The group-commit period with `fsync = "interval"`.
    pub fn interval(&self) -> Duration {
        self.fsync_interval
            .map_or(Duration::from_secs(1), HumanDuration::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_and_defaults() {
        let c: FileChannelConfig = toml::from_str(
            "dir = \"/var/lib/sluice/edge\"\nsegment_size = \"1MiB\"\nmax_bytes = \"10MiB\"\nfsync = \"interval\"\nfsync_interval = \"200ms\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Interval);
        assert_eq!(c.interval(), Duration::from_millis(200));
        let d: FileChannelConfig = toml::from_str("").unwrap();
        d.validate().unwrap();
        assert_eq!(d.segment_size.get(), 64 << 20);
        assert_eq!(d.max_bytes.get(), 1 << 30);
        assert_eq!(d.fsync, FsyncPolicy::EveryBatch);
        assert_eq!(d.dir, None);
    }

    #[test]
    fn rejects_what_cannot_work() {
        let check = |text: &str| {
            let c: FileChannelConfig = toml::from_str(text).unwrap();
            c.validate().unwrap_err().0
        };
        assert_eq!(check("segment_size = \"1KiB\""), "segment_size");
        assert_eq!(check("max_bytes = 0"), "max_bytes");
        assert_eq!(check("fsync_interval = \"1s\""), "fsync_interval");
        assert_eq!(
            check("fsync = \"interval\"\nfsync_interval = \"0ms\""),
            "fsync_interval"
        );
        assert!(toml::from_str::<FileChannelConfig>("fsync = \"always\"").is_err());
    }
}
