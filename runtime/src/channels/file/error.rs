//! The file channel's error: an I/O operation that failed (worth retrying),
//! bytes that are not what was written (quarantined, never retried), or a
//! batch too large for one record (refused).

use std::path::{Path, PathBuf};

use crate::error::ErrorKind;

/// A failure of the file channel.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// `what` on `path` failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done: "reading", "syncing", …
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not a record as written (checksum, framing).
    #[error("{0}")]
    Damaged(String),
    /// A batch larger than one record can hold.
    #[error("{0}")]
    TooLarge(String),
}

impl WalError {
    /// The error of `what` on `path`.
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }

    /// How to treat it: I/O may pass; damage and size never change.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { .. } => ErrorKind::Transient,
            Self::Damaged(_) | Self::TooLarge(_) => ErrorKind::Permanent,
        }
    }
}

/// `map_err` helper: the error of `what` on `path`.
pub fn context<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> WalError + 'a {
    move |e| WalError::io(what, path, e)
}
