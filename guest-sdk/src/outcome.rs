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

    /// Whether [`Handler::prepare`] must be called: only then does the driver
    /// collect the batch's events first.
    #[doc(hidden)]
    const PREPARES: bool = false;

    /// Called once per batch with all its events, before [`Handler::handle`].
    #[doc(hidden)]
    fn prepare(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        let _ = events;
        Ok(())
    }
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

/// A prepare function: `fn(&[Event])`, `fn(&[Event]) -> Result<(), E>`
/// with `E: Into<Error>`, or such a closure. It runs once per batch, with all
/// the batch's events, before the plugin function runs for each of them:
/// the place to [`prefetch`](crate::lookup::prefetch) the lookup keys of the
/// whole batch. Returning `Err` fails the batch.
///
/// Attach it with `#[sluice_guest::interceptor(prepare = f)]` (likewise
/// `decoder` and `router`), and in native tests with [`with_prepare`].
/// Implemented for all such functions; you never implement it. Another
/// signature is a compile error at the attribute:
///
/// ```compile_fail
/// use sluice_guest::{Event, Outcome};
///
/// fn count(events: Vec<u8>) -> usize {
///     events.len()
/// }
///
/// #[sluice_guest::interceptor(prepare = count)]
/// fn keep(_: &mut Event) -> Outcome {
///     Outcome::Keep
/// }
/// ```
///
/// So is any other argument:
///
/// ```compile_fail
/// use sluice_guest::{Event, Outcome};
///
/// #[sluice_guest::interceptor(prepare)]
/// fn keep(_: &mut Event) -> Outcome {
///     Outcome::Keep
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a sluice prepare function",
    label = "expected `fn(&[Event])` or `fn(&[Event]) -> Result<(), E>`"
)]
pub trait Prepare {
    /// Prepares the batch `events`.
    fn prepare(&mut self, events: &[Event<'_>]) -> Result<(), Error>;
}

impl<F, R> Prepare for F
where
    F: FnMut(&[Event<'_>]) -> R,
    R: IntoPrepared,
{
    #[inline]
    fn prepare(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        self(events).into_prepared()
    }
}

/// A return type of a prepare function: `()` or `Result<(), E>` with
/// `E: Into<Error>`.
pub trait IntoPrepared {
    /// `Ok`, or the failure of the batch.
    fn into_prepared(self) -> Result<(), Error>;
}

impl IntoPrepared for () {
    #[inline]
    fn into_prepared(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: Into<Error>> IntoPrepared for Result<(), E> {
    #[inline]
    fn into_prepared(self) -> Result<(), Error> {
        self.map_err(Into::into)
    }
}

/// The plugin function `handler` with the prepare function `prepare`, which
/// runs once per batch before it (see [`Prepare`]). This is what
/// `#[sluice_guest::interceptor(prepare = prepare)]` runs; use it to run the
/// same in native tests: `testing::run(with_prepare(prepare, handler), &events)`.
pub fn with_prepare<P: Prepare, H: Handler>(prepare: P, handler: H) -> WithPrepare<P, H> {
    WithPrepare { prepare, handler }
}

/// A plugin function with a prepare function; made by [`with_prepare`].
#[derive(Debug, Clone, Copy)]
pub struct WithPrepare<P, H> {
    prepare: P,
    handler: H,
}

impl<P: Prepare, H: Handler> Handler for WithPrepare<P, H> {
    const PREPARES: bool = true;

    #[inline]
    fn handle(&mut self, event: &mut Event<'_>) -> Result<Outcome, Error> {
        self.handler.handle(event)
    }

    fn prepare(&mut self, events: &[Event<'_>]) -> Result<(), Error> {
        // An inner handler with its own prepare function runs after this one.
        self.prepare.prepare(events)?;
        self.handler.prepare(events)
    }
}
