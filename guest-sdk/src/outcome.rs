//! What a plugin function returns: [`Outcome`], [`Error`], and the traits
//! that accept either.

use std::borrow::Cow;
use std::fmt;

use crate::Event;

/// What happens to one event.
///
/// Labels are `Cow<'static, str>` so that a route name taken from the
/// configuration (`&'static` via [`crate::config`]) costs no allocation; build
/// them with [`Outcome::route_to`] and [`Outcome::dead_letter`], which accept
/// `&'static str` and `String` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass the event on: unchanged, or as modified through the [`Event`]
    /// setters.
    Keep,
    /// Discard the event on purpose (counted by the host).
    Drop,
    /// Send the event (as modified, if it was) to the channel of the source
    /// with this name.
    RouteTo(Cow<'static, str>),
    /// Send the *original* event, ignoring any changes, to the dead-letter
    /// channel with this reason.
    DeadLetter(Cow<'static, str>),
}

impl Outcome {
    /// [`Outcome::RouteTo`] the channel `name`.
    pub fn route_to(name: impl Into<Cow<'static, str>>) -> Self {
        Self::RouteTo(name.into())
    }

    /// [`Outcome::DeadLetter`] with `reason`.
    pub fn dead_letter(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::DeadLetter(reason.into())
    }
}

/// A failure of the whole batch.
///
/// Returning `Err` from a plugin function stops the batch: no outcome is sent
/// for any of its events, and the host applies the plugin's failure policy to
/// all of them (the message becomes the WIT `plugin-error`). Use it for
/// problems that are not about one event, such as an invalid configuration;
/// dead-letter a bad event instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message` (lowercase, saying what was being done).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, owned.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// A return type of a plugin function: [`Outcome`] or
/// `Result<Outcome, E>` with `E: Into<Error>`.
pub trait IntoOutcome {
    /// The outcome, or the failure of the batch.
    fn into_outcome(self) -> Result<Outcome, Error>;
}

impl IntoOutcome for Outcome {
    #[inline]
    fn into_outcome(self) -> Result<Outcome, Error> {
        Ok(self)
    }
}

impl<E: Into<Error>> IntoOutcome for Result<Outcome, E> {
    #[inline]
    fn into_outcome(self) -> Result<Outcome, Error> {
        self.map_err(Into::into)
    }
}

/// A plugin function: anything callable as
/// `FnMut(&mut Event) -> Outcome` or `FnMut(&mut Event) -> Result<Outcome, E>`.
///
/// Implemented for all such functions and closures; you never implement it.
/// Another signature is a compile error at the attribute:
///
/// ```compile_fail
/// #[sluice_guest::interceptor]
/// fn wrong(body: &[u8]) -> bool {
///     body.is_empty()
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a sluice plugin function",
    label = "expected `fn(&mut Event) -> Outcome` or `fn(&mut Event) -> Result<Outcome, E>`"
)]
pub trait Handler {
    /// Processes one event.
    fn handle(&mut self, event: &mut Event<'_>) -> Result<Outcome, Error>;
}

impl<F, R> Handler for F
where
    F: FnMut(&mut Event<'_>) -> R,
    R: IntoOutcome,
{
    #[inline]
    fn handle(&mut self, event: &mut Event<'_>) -> Result<Outcome, Error> {
        self(event).into_outcome()
    }
}
