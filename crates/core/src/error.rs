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

/// Declares an error that is one message in words an operator can act on:
/// `Display` is the message, and it converts from `String` and `&str`. For
/// errors whose type is all the kind they need (`keys::Invalid`, the plugin
/// host's `Refused`, ...), so each is one declaration, not three impls. The
/// declaring crate depends on `thiserror`.
#[macro_export]
macro_rules! message_error {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0}")]
        $vis struct $name(pub String);

        impl From<String> for $name {
            fn from(message: String) -> Self {
                Self(message)
            }
        }

        impl From<&str> for $name {
            fn from(message: &str) -> Self {
                Self(message.to_owned())
            }
        }
    };
}
