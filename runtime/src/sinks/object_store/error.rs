//! The object-store sink's error: what was being done, what went wrong, and
//! its [`ErrorKind`], which decides whether the [`Retrier`](super::retry)
//! tries again, counts a full disk, or stops the sink.

use crate::error::ErrorKind;

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What was being done and what went wrong.
    pub message: String,
    /// Whether trying again can help.
    pub kind: ErrorKind,
    /// The local disk (or the user's quota) is full: transient, but worth
    /// its own counter, as it pauses intake until space is freed.
    pub disk_full: bool,
}

impl StoreError {
    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: ErrorKind::Transient,
            disk_full: false,
        }
    }

    /// An error no retry can mend.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: ErrorKind::Permanent,
            disk_full: false,
        }
    }

    /// A configuration that cannot work (a `url` that is no store, a
    /// `data_dir` another agent holds).
    pub fn configuration(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: ErrorKind::Configuration,
            disk_full: false,
        }
    }

    /// The error of `what` on an object store.
    pub(crate) fn remote(what: impl std::fmt::Display, e: &object_store::Error) -> Self {
        // A PUT answered "not found" names a bucket that does not exist.
        let permanent = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }
        );
        Self {
            message: format!("{what}: {e}"),
            kind: if permanent {
                ErrorKind::Permanent
            } else {
                ErrorKind::Transient
            },
            disk_full: false,
        }
    }

    /// The error of `what` on the local file system.
    pub fn local(what: impl std::fmt::Display, e: &std::io::Error) -> Self {
        let permanent = matches!(
            e.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        );
        Self {
            message: format!("{what}: {e}"),
            kind: if permanent {
                ErrorKind::Permanent
            } else {
                ErrorKind::Transient
            },
            disk_full: crate::error::is_disk_full(e),
        }
    }

    /// Whether no retry can succeed.
    pub(crate) fn is_permanent(&self) -> bool {
        self.kind == ErrorKind::Permanent
    }

    /// The same error, with what was being done put in front.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}
