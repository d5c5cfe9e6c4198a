//! The host imports (`wit/host.wit`): configuration and logging.
//!
//! In the wasm build these call the host. In native builds (unit tests of a
//! plugin) there is no host: the configuration comes from a per-thread value
//! set with [`crate::testing::set_config`], and log lines go to stderr.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};

use serde::de::DeserializeOwned;

use crate::Error;

/// Writes one line to the host log, tagged by the host with the plugin's name.
///
/// Logging is per call a crossing into the host: log per batch or on rare
/// events, not per event on the hot path.
pub mod log {
    /// Logs at trace level: very detailed diagnostics.
    pub fn trace(message: &str) {
        super::imp::log(super::Level::Trace, message);
    }

    /// Logs at debug level: diagnostics.
    pub fn debug(message: &str) {
        super::imp::log(super::Level::Debug, message);
    }

    /// Logs at info level: normal operation.
    pub fn info(message: &str) {
        super::imp::log(super::Level::Info, message);
    }

    /// Logs at warn level: something unexpected that the plugin handled.
    pub fn warn(message: &str) {
        super::imp::log(super::Level::Warn, message);
    }

    /// Logs at error level: something the plugin could not handle.
    pub fn error(message: &str) {
        super::imp::log(super::Level::Error, message);
    }
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::bindings::sluice::plugin::host;

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }

    pub(super) fn config() -> String {
        host::config()
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod imp {
    use std::cell::RefCell;

    use super::Level;

    thread_local! {
        static CONFIG: RefCell<String> = RefCell::new("{}".to_owned());
    }

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        eprintln!("[plugin {level}] {message}");
    }

    pub(super) fn config() -> String {
        CONFIG.with(|c| c.borrow().clone())
    }

    /// Sets this thread's configuration and forgets configs parsed before.
    pub(crate) fn set_config(json: String) {
        CONFIG.with(|c| *c.borrow_mut() = json);
        super::CACHE.with(|c| c.borrow_mut().clear());
        super::LAST.with(|l| l.set(None));
    }
}

/// The plugin's `config` table from the Sluice configuration, as JSON text
/// (`{}` when the table is absent).
///
/// This calls the host each time; prefer [`config`], which parses once.
pub fn config_json() -> String {
    imp::config()
}

/// Parses the configuration into `T`, without caching.
///
/// On failure the message says which key is wrong, for example
/// `invalid plugin config: keep_last: invalid type: string "x", expected u32`.
pub fn parse_config<T: DeserializeOwned>() -> Result<T, Error> {
    parse(&config_json())
}

fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = strip_position(e.into_inner().to_string());
        if inner.starts_with("unknown field") {
            // The path ends with the unknown key itself, which the message names.
            path = path
                .rsplit_once('.')
                .map_or("", |(parent, _)| parent)
                .to_owned();
        }
        if path.is_empty() || path == "." {
            Error::new(format!("invalid plugin config: {inner}"))
        } else {
            Error::new(format!("invalid plugin config: {path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| {
        Error::new(format!(
            "invalid plugin config: trailing characters after the JSON object: {e}"
        ))
    })?;
    Ok(value)
}

/// Drops serde_json's " at line L column C": positions in the JSON the host
/// made from the TOML table mean nothing to the user.
fn strip_position(mut message: String) -> String {
    if let Some(at) = message.rfind(" at line ") {
        let tail = &message[at + " at line ".len()..];
        let mut words = tail.split(' ');
        let looks_like_position = matches!(
            (words.next(), words.next(), words.next(), words.next()),
            (Some(line), Some("column"), Some(col), None)
                if line.bytes().all(|b| b.is_ascii_digit())
                    && col.bytes().all(|b| b.is_ascii_digit())
        );
        if looks_like_position {
            message.truncate(at);
        }
    }
    message
}

thread_local! {
    /// Parsed configurations, one per type; values are leaked
    /// `Result<T, Error>`s. wasm guests have a single thread, so this is
    /// effectively a global there.
    static CACHE: RefCell<Vec<(TypeId, &'static dyn Any)>> = const { RefCell::new(Vec::new()) };
    /// The last successfully looked-up configuration: the per-event fast path
    /// of [`config`] (a plugin asks for the same type for every event). It
    /// removed about 45% of a no-op plugin's guest instructions per batch.
    static LAST: Cell<Option<(TypeId, *const ())>> = const { Cell::new(None) };
}

/// The configuration parsed into `T`, parsed on first use and cached for the
/// life of the plugin instance (the host's configuration of an instance never
/// changes). A failure is cached too, so every batch fails the same way.
///
/// Validate beyond types with serde: `#[serde(deny_unknown_fields)]` to reject
/// unknown keys, `#[serde(default)]` for optional ones, and
/// `#[serde(try_from = "Raw")]` or `deserialize_with` for checks that need
/// code (compiling a regex, a key required by another key). Call it from the
/// plugin function and propagate the error with `?` to fail the batch:
///
/// ```
/// use serde::Deserialize;
/// use sluice_guest::{Event, Outcome};
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     header: String,
/// }
///
/// #[sluice_guest::interceptor]
/// fn tag(event: &mut Event) -> Result<Outcome, sluice_guest::Error> {
///     let config: &Config = sluice_guest::config()?;
///     event.set_header(&config.header, "seen");
///     Ok(Outcome::Keep)
/// }
///
/// use sluice_guest::testing::{self, TestEvent};
/// testing::set_config(r#"{"header": "via"}"#);
/// let out = testing::run(tag, &[TestEvent::new("x")]);
/// assert_eq!(out[0].event.header_str("via"), Some("seen"));
///
/// testing::set_config(r#"{"hedaer": "via"}"#);
/// let err = testing::try_run(tag, &[TestEvent::new("x")]).unwrap_err();
/// assert!(err.message().starts_with("invalid plugin config: unknown field `hedaer`"), "{err}");
/// ```
pub fn config<T: DeserializeOwned + 'static>() -> Result<&'static T, Error> {
    let id = TypeId::of::<T>();
    // Fast path: plugins call this once per event, almost always for one type.
    if let Some((last, ptr)) = LAST.with(Cell::get)
        && last == id
    {
        // SAFETY: `LAST` only ever holds a pointer to a leaked `T` stored
        // together with `TypeId::of::<T>()`.
        return Ok(unsafe { &*ptr.cast::<T>() });
    }
    let cached = CACHE.with(|c| {
        c.borrow()
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, value)| *value)
    });
    let value = match cached {
        Some(value) => value,
        None => {
            let parsed: &'static Result<T, Error> = Box::leak(Box::new(parse_config::<T>()));
            CACHE.with(|c| c.borrow_mut().push((id, parsed)));
            parsed
        }
    };
    match value.downcast_ref::<Result<T, Error>>() {
        Some(Ok(config)) => {
            LAST.with(|l| l.set(Some((id, (config as *const T).cast::<()>()))));
            Ok(config)
        }
        Some(Err(e)) => Err(e.clone()),
        None => Err(Error::new(
            "internal error: config cache holds the wrong type",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        n: u32,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        flag: bool,
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse::<Conf>(r#"{"n": "x"}"#).unwrap_err();
        assert_eq!(
            e.message(),
            r#"invalid plugin config: n: invalid type: string "x", expected u32"#
        );
        let e = parse::<Conf>(r#"{"inner": {"flag": 1}}"#).unwrap_err();
        assert!(
            e.message()
                .starts_with("invalid plugin config: inner.flag: "),
            "{e}"
        );
        let e = parse::<Conf>(r#"{"m": 1}"#).unwrap_err();
        assert_eq!(
            e.message(),
            "invalid plugin config: unknown field `m`, expected `n` or `inner`"
        );
        let e = parse::<Conf>(r#"{"inner": {"flag": true, "x": 1}}"#).unwrap_err();
        assert!(
            e.message()
                .starts_with("invalid plugin config: inner: unknown field `x`"),
            "{e}"
        );
        assert_eq!(parse::<Conf>("{}").unwrap(), Conf { n: 0, inner: None });
    }

    #[test]
    fn config_is_cached_per_type_and_reset_by_set_config() {
        imp::set_config(r#"{"n": 3}"#.into());
        let a: &Conf = config().unwrap();
        let b: &Conf = config().unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.n, 3);
        imp::set_config(r#"{"n": 4}"#.into());
        assert_eq!(config::<Conf>().unwrap().n, 4);
        imp::set_config(r#"{"n": -1}"#.into());
        assert!(config::<Conf>().is_err());
        assert!(config::<Conf>().is_err(), "failures are cached too");
    }

    #[test]
    fn the_fast_path_never_returns_another_types_config() {
        #[derive(Debug, Deserialize)]
        struct Other {
            n: i64,
        }
        imp::set_config(r#"{"n": 7}"#.into());
        assert_eq!(config::<Conf>().unwrap().n, 7);
        assert_eq!(config::<Other>().unwrap().n, 7);
        assert_eq!(config::<Conf>().unwrap().n, 7);
        imp::set_config(r#"{"n": -2}"#.into());
        assert_eq!(config::<Other>().unwrap().n, -2);
        assert!(config::<Conf>().is_err(), "u32 rejects -2");
        assert_eq!(config::<Other>().unwrap().n, -2);
    }

    #[test]
    fn strips_json_positions_only() {
        assert_eq!(strip_position("bad at line 1 column 7".into()), "bad");
        assert_eq!(strip_position("meet at line 5".into()), "meet at line 5");
    }
}
