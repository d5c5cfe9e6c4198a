//! What kind of failure an error is: the one question retry and
//! dead-letter logic ask of it, whatever component it comes from.

/// How a failure is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Trying again may succeed: a network error, a full disk, a store or
    /// broker briefly away. Retried with backoff while the pipeline runs.
    Transient,
    /// No retry can succeed: access denied, a missing bucket, a read-only
    /// file system, data that can never be written. The event is
    /// dead-lettered or the component stops loudly.
    Permanent,
    /// The configuration is wrong: fix it and start again.
    Configuration,
}

/// An error of any component, where a caller only reports it (for example
/// a position store's recovery seen from the source).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether an I/O error says the disk (or the user's quota) is full: a
/// transient failure that pauses intake until space is freed.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 /* ENOSPC */ | 122 /* EDQUOT */))
}
