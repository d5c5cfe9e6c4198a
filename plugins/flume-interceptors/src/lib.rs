//! `flume-interceptors`: an interceptor plugin with Apache Flume's built-in
//! interceptors and their semantics, one per `mode`: [`host`](#host),
//! [`static`](#static), [`uuid`](#uuid), [`remove_header`](#remove_header),
//! [`search_replace`](#search_replace), [`regex_filter`](#regex_filter) and
//! [`regex_extractor`](#regex_extractor). Flume's `timestamp` interceptor is
//! the separate `timestamp` plugin.
//!
//! One `[plugins.<name>]` entry is one interceptor. A Flume chain
//! `a1.sources.r1.interceptors = i1 i2` becomes two entries with this file
//! and `interceptors = ["i1", "i2"]` on the source, run in that order.
//!
//! Keys are Flume's in snake_case (`preserveExisting` → `preserve_existing`,
//! `hostHeader`/`headerName` → `header`, `excludeEvents` →
//! `exclude_events`). Each mode has its own keys: a key of another mode, a
//! misspelt key, an unknown or missing `mode`, an invalid regex or date
//! pattern fails the batch (the team's failure policy applies) with a message
//! that names the mode and the key, for example
//! ``invalid plugin config: mode `static`: unknown field `header`, expected one of `key`, `value`, `preserve_existing` ``.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.datacenter]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "static", key = "datacenter", value = "NEW_YORK" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `mode` | string | required | Which interceptor: `host`, `static`, `uuid`, `remove_header`, `search_replace`, `regex_filter` or `regex_extractor`. The other keys depend on it (below). |
//!
//! Headers are set as Flume's header map does: a set replaces every header
//! of that name. Header names are case-sensitive. An event that the
//! interceptor leaves as it was is passed on without a copy.
//!
//! ## `host`
//!
//! Writes the agent's host name or IP address into a header.
//!
//! ```toml
//! [plugins.host]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "host", env = "POD_IP", header = "host" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `header` | string | `"host"` | Header to write (Flume's `hostHeader`). |
//! | `preserve_existing` | bool | `false` | Leave events that already have the header untouched. |
//! | `value` | string | — | The host name or IP to write, literally. |
//! | `env` | string | — | Name of an environment variable holding the host name or IP. |
//!
//! Exactly one of `value` and `env` is required. Flume looks the address up
//! itself (`useIP`, default true: the IP, else the host name); a plugin
//! cannot (no sockets, no name lookups, no environment unless granted), so
//! `use_ip` is rejected and the value comes from the configuration:
//!
//! - `value` is written as it is (one configuration per agent), or
//! - `env` names a variable the host passes to the plugin: it must be listed
//!   in the `env` of the plugin's team (`[teams.<name>] env = ["POD_IP"]`,
//!   and `team = "<name>"` on the plugin; the implicit default team passes
//!   none). It is read once, when the plugin instance starts; a variable
//!   that is not passed, is empty or is not UTF-8 fails the batch with a
//!   message saying how to pass it. On Kubernetes, `POD_IP` from the
//!   downward API (`status.podIP`) gives Flume's default, the IP; `HOSTNAME`
//!   gives the pod name.
//!
//! ## `static`
//!
//! Writes a fixed header.
//!
//! ```toml
//! [plugins.datacenter]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "static", key = "datacenter", value = "NEW_YORK", preserve_existing = false }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `key` | string | `"key"` | Header to write. |
//! | `value` | string | `"value"` | Its value. |
//! | `preserve_existing` | bool | `true` | Leave events that already have the header untouched. |
//!
//! ## `uuid`
//!
//! Writes a random (version 4) UUID, lowercase as Java prints it
//! (`prefix` + `5c1a6d4e-0b7f-4a53-9f0e-2d8c3b1a7e64`).
//!
//! ```toml
//! [plugins.event-id]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "uuid", header = "id", prefix = "sluice-" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `header` | string | `"id"` | Header to write (Flume's `headerName`). |
//! | `preserve_existing` | bool | `true` | Leave events that already have the header untouched. |
//! | `prefix` | string | `""` | Text written before the UUID. |
//!
//! The randomness is the host's (`wasi:random`, a cryptographically secure
//! generator, as Java's `UUID.randomUUID`), read 1 KiB at a time.
//!
//! ## `remove_header`
//!
//! Removes headers by name. A header is removed if any of the given keys
//! selects it; at least one is required.
//!
//! ```toml
//! [plugins.strip]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "remove_header", with_name = "password", from_list = ["token", "secret"], matching = 'x-debug-.*' }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `with_name` | string | none | One header name, exact. |
//! | `from_list` | list of strings, or string | none | Header names, exact. A string is split with `from_list_separator`, as Flume does (`"token, secret"`). |
//! | `from_list_separator` | string | `'\s*,\s*'` | Regular expression splitting a `from_list` string. Only with a string `from_list`. |
//! | `matching` | string | none | Regular expression that must match the *whole* header name (Java's `matches()`): `x-debug-.*` removes `x-debug-a`, not `my-x-debug-a`. |
//!
//! ## `search_replace`
//!
//! Replaces every match of a regular expression in the body, as Java's
//! `String.replaceAll`.
//!
//! ```toml
//! [plugins.mask-cards]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "search_replace", search_pattern = '(\d{4})\d{8}(\d{4})', replace_string = '$1********$2' }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `search_pattern` | string | required | Regular expression to replace, not empty. |
//! | `replace_string` | string | `""` | Replacement, in Java's syntax: `$1` … `$n` (the greediest number that is a group: with 12 groups `$12` is group 12, with 3 it is group 1 then `2`) and `${name}` insert a capture group (nothing if it did not take part), `$0` the whole match, `\$` a dollar and `\\` a backslash. A reference to a group `search_pattern` lacks, or a lone `$` or `\`, is a config error. |
//!
//! The body is read as UTF-8 (Flume's default `charset`; the key is not
//! supported). A body that is not UTF-8 is passed on unchanged: Flume would
//! replace its bad bytes with U+FFFD, losing them. A body without a match is
//! passed on without a copy.
//!
//! ## `regex_filter`
//!
//! Keeps or drops events by their body.
//!
//! ```toml
//! [plugins.no-debug]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//! config = { mode = "regex_filter", regex = '^DEBUG\b', exclude_events = true }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `regex` | string | `".*"` | Regular expression searched anywhere in the body (Java's `find()`). |
//! | `exclude_events` | bool | `false` | `false`: keep the events that match and drop the others. `true`: drop the events that match and keep the others. |
//!
//! Dropped events are discarded on purpose (`Outcome::Drop`, counted by the
//! host), as Flume discards them.
//!
//! ## `regex_extractor`
//!
//! Copies the capture groups of the body's first match into headers.
//!
//! ```toml
//! [plugins.extract]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/flume_interceptors.wasm"
//!
//! [plugins.extract.config]
//! mode = "regex_extractor"
//! regex = '^(\d{4}-\d\d-\d\d \d\d:\d\d) (\w+)'
//! serializers = [
//!   { name = "timestamp", type = "millis", pattern = "yyyy-MM-dd HH:mm" },
//!   { name = "level" },
//! ]
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `regex` | string | required | Regular expression searched in the body; only its first match counts. |
//! | `serializers` | list of tables | required | One per capture group, in order: the first is group 1. At least one, at most as many as `regex` has groups; groups past the last serializer are ignored, as in Flume. |
//! | `serializers[].name` | string | required | Header to write. |
//! | `serializers[].type` | `"default"` or `"millis"` | `"default"` | `default`: the group's text. `millis`: the group parsed with `pattern`, written as milliseconds since the Unix epoch. Flume's class names (`org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer`, `...PassThroughSerializer`) are accepted too. |
//! | `serializers[].pattern` | string | required for `millis` | Date pattern in Flume's (Joda-Time / `SimpleDateFormat`) syntax, see below. Only with `type = "millis"`. |
//!
//! A body without a match is passed on unchanged; a group that did not take
//! part in the match (`(a)?` without `a`) sets no header (Flume would fail).
//! A group a `millis` serializer cannot parse dead-letters the event with a
//! reason such as
//! `regex_extractor: header "timestamp": cannot parse "2024-13-01 10:00" with pattern "yyyy-MM-dd HH:mm"`
//! (Flume would fail the whole batch, again and again).
//!
//! Date patterns: `yyyy` (`y`, `yyy`: the year; `yy`: two digits, 1970–2069),
//! `M`/`MM` (month number), `MMM`/`MMMM` (English month name, short or
//! full), `d`/`dd`, `D` (day of year), `H`/`HH` (0–23), `h`/`hh` (1–12) with
//! `a` (AM/PM), `m`/`mm`, `s`/`ss`, `SSS` (milliseconds; `SSSSSS`,
//! `SSSSSSSSS` for micro- and nanoseconds), `E`…`EEEE` (English day name),
//! `Z` (`+0100`) and `ZZ` (`+01:00`); text in single quotes is literal
//! (`'T'`, `''` for a quote), and so is every other character that is not a
//! letter. Other letters are a config error. Fields the pattern lacks are
//! taken from 1970-01-01 00:00:00.000, as Joda-Time does. Times without `Z`
//! are **UTC**: Flume reads them in the JVM's time zone, but a plugin has
//! none.
//!
//! # Regular expressions
//!
//! Patterns use the [`regex`] crate's syntax, which is Java's for everyday
//! patterns, with these differences: no look-around (`(?=`, `(?<=`) and no
//! back-references (`\1`) in patterns (they are config errors); `\d`, `\w`,
//! `\s` and `\b` are Unicode-aware, where Java's are ASCII-only (write
//! `[0-9]` for ASCII digits, or `(?-u:\d)`), and so is case-insensitive
//! matching (`(?i)`: `é` matches `É`; Java needs `(?iu)` for that). Bodies
//! are matched as UTF-8 text; in
//! `regex_filter` and `regex_extractor` bad bytes read as U+FFFD, as Flume
//! reads them.
//!
//! [`regex`]: https://docs.rs/regex/latest/regex/#syntax

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

mod date_pattern;
mod regex_extractor;
mod regex_filter;
mod remove_header;
mod search_replace;
mod set_header;
mod uuid;

/// The plugin configuration: one interceptor, chosen by `mode` (see the
/// crate docs).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config(Interceptor);

/// A configured interceptor, ready to run.
#[derive(Debug)]
enum Interceptor {
    /// Modes `host` and `static`.
    SetHeader(set_header::SetHeader),
    Uuid(uuid::Uuid),
    RemoveHeader(remove_header::RemoveHeader),
    SearchReplace(search_replace::SearchReplace),
    RegexFilter(regex_filter::RegexFilter),
    RegexExtractor(regex_extractor::RegexExtractor),
}

/// The `mode` key: which interceptor.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Host,
    Static,
    Uuid,
    RemoveHeader,
    SearchReplace,
    RegexFilter,
    RegexExtractor,
}

impl Mode {
    /// The name in the configuration.
    fn name(self) -> &'static str {
        match self {
            Mode::Host => "host",
            Mode::Static => "static",
            Mode::Uuid => "uuid",
            Mode::RemoveHeader => "remove_header",
            Mode::SearchReplace => "search_replace",
            Mode::RegexFilter => "regex_filter",
            Mode::RegexExtractor => "regex_extractor",
        }
    }
}

/// The configuration as written: an enum tagged by `mode`, holding the keys
/// of that mode.
///
/// Deserialized by hand rather than with `#[serde(tag = "mode")]`: serde's
/// internally tagged enums buffer the other keys and lose their names in
/// errors (`invalid type: string "yes", expected a boolean`); this names
/// them (``mode `static`: preserve_existing: invalid type: ...``).
enum RawConfig {
    Host(set_header::HostConfig),
    Static(set_header::StaticConfig),
    Uuid(uuid::UuidConfig),
    RemoveHeader(remove_header::RemoveHeaderConfig),
    SearchReplace(search_replace::SearchReplaceConfig),
    RegexFilter(regex_filter::RegexFilterConfig),
    RegexExtractor(regex_extractor::RegexExtractorConfig),
}

const MODES: &str = "`host`, `static`, `uuid`, `remove_header`, `search_replace`, `regex_filter` or `regex_extractor`";

impl<'de> Deserialize<'de> for RawConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;

        let mut keys = serde_json::Map::deserialize(deserializer)?;
        let Some(mode) = keys.remove("mode") else {
            return Err(D::Error::custom(format!("missing `mode`: choose {MODES}")));
        };
        match mode.as_str() {
            None => {
                return Err(D::Error::custom(format!(
                    "mode: expected a string: {MODES}"
                )));
            }
            Some("timestamp") => {
                return Err(D::Error::custom(
                    "mode: Flume's timestamp interceptor is the `timestamp` plugin \
                     (plugins/timestamp), not a mode of this one",
                ));
            }
            Some(_) => {}
        }
        let mode = Mode::deserialize(&mode).map_err(|e| D::Error::custom(format!("mode: {e}")))?;
        let keys = serde_json::Value::Object(keys);
        let name = mode.name();
        let raw = match mode {
            Mode::Host => mode_keys(name, keys).map(Self::Host),
            Mode::Static => mode_keys(name, keys).map(Self::Static),
            Mode::Uuid => mode_keys(name, keys).map(Self::Uuid),
            Mode::RemoveHeader => mode_keys(name, keys).map(Self::RemoveHeader),
            Mode::SearchReplace => mode_keys(name, keys).map(Self::SearchReplace),
            Mode::RegexFilter => mode_keys(name, keys).map(Self::RegexFilter),
            Mode::RegexExtractor => mode_keys(name, keys).map(Self::RegexExtractor),
        };
        raw.map_err(D::Error::custom)
    }
}

/// The keys besides `mode` as the configuration of `mode`; the error names
/// the mode and the key (``mode `uuid`: prefix: invalid type: ...``).
fn mode_keys<T: serde::de::DeserializeOwned>(
    mode: &str,
    keys: serde_json::Value,
) -> Result<T, String> {
    serde_path_to_error::deserialize(keys).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if inner.starts_with("unknown field") {
            // The path ends with the unknown key, which the message names.
            path = path
                .rsplit_once('.')
                .map_or("", |(parent, _)| parent)
                .to_owned();
        }
        if path.is_empty() || path == "." {
            format!("mode `{mode}`: {inner}")
        } else {
            format!("mode `{mode}`: {path}: {inner}")
        }
    })
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let (mode, built) = match raw {
            RawConfig::Host(c) => (Mode::Host, c.build().map(Interceptor::SetHeader)),
            RawConfig::Static(c) => (Mode::Static, c.build().map(Interceptor::SetHeader)),
            RawConfig::Uuid(c) => (Mode::Uuid, c.build().map(Interceptor::Uuid)),
            RawConfig::RemoveHeader(c) => {
                (Mode::RemoveHeader, c.build().map(Interceptor::RemoveHeader))
            }
            RawConfig::SearchReplace(c) => (
                Mode::SearchReplace,
                c.build().map(Interceptor::SearchReplace),
            ),
            RawConfig::RegexFilter(c) => {
                (Mode::RegexFilter, c.build().map(Interceptor::RegexFilter))
            }
            RawConfig::RegexExtractor(c) => (
                Mode::RegexExtractor,
                c.build().map(Interceptor::RegexExtractor),
            ),
        };
        built
            .map(Config)
            .map_err(|e| format!("mode `{}`: {e}", mode.name()))
    }
}

/// Runs the configured interceptor on the event.
#[sluice_guest::interceptor]
pub fn intercept(event: &mut Event) -> Result<Outcome, Error> {
    let config: &Config = sluice_guest::config()?;
    Ok(match &config.0 {
        Interceptor::SetHeader(i) => i.apply(event),
        Interceptor::Uuid(i) => i.apply(event)?,
        Interceptor::RemoveHeader(i) => i.apply(event),
        Interceptor::SearchReplace(i) => i.apply(event),
        Interceptor::RegexFilter(i) => i.apply(event),
        Interceptor::RegexExtractor(i) => i.apply(event),
    })
}

/// Compiles `pattern`, the value of `key`, with a message naming the key.
fn compile(key: &str, pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern)
        .map_err(|e| format!("`{key}` is not a valid regular expression: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};

    /// Runs `intercept` with `config` over `events`.
    pub(crate) fn run(config: &str, events: &[TestEvent]) -> Vec<TestOutput> {
        testing::set_config(config);
        testing::run(intercept, events)
    }

    /// The batch failure `config` causes.
    pub(crate) fn fail(config: &str) -> String {
        testing::set_config(config);
        testing::try_run(intercept, &[TestEvent::new("x")])
            .unwrap_err()
            .into_message()
    }

    #[test]
    fn mode_is_required_and_checked() {
        assert_eq!(
            fail("{}"),
            "invalid plugin config: missing `mode`: choose `host`, `static`, `uuid`, \
             `remove_header`, `search_replace`, `regex_filter` or `regex_extractor`"
        );
        assert_eq!(
            fail(r#"{"mode": "hots"}"#),
            "invalid plugin config: mode: unknown variant `hots`, expected one of `host`, \
             `static`, `uuid`, `remove_header`, `search_replace`, `regex_filter`, `regex_extractor`"
        );
        assert_eq!(
            fail(r#"{"mode": 3}"#),
            "invalid plugin config: mode: expected a string: `host`, `static`, `uuid`, \
             `remove_header`, `search_replace`, `regex_filter` or `regex_extractor`"
        );
        assert!(fail(r#"{"mode": "timestamp"}"#).contains("the `timestamp` plugin"));
        // Flume's class-style names are not modes.
        assert!(fail(r#"{"mode": "regex_filtering"}"#).contains("unknown variant"));
    }

    #[test]
    fn keys_of_other_modes_are_rejected() {
        assert_eq!(
            fail(r#"{"mode": "static", "header": "h"}"#),
            "invalid plugin config: mode `static`: unknown field `header`, expected one of \
             `key`, `value`, `preserve_existing`"
        );
        let e = fail(r#"{"mode": "uuid", "key": "k"}"#);
        assert!(
            e.starts_with("invalid plugin config: mode `uuid`: unknown field `key`"),
            "{e}"
        );
        let e = fail(r#"{"mode": "regex_filter", "regex": ".", "exclude": true}"#);
        assert!(e.contains("unknown field `exclude`"), "{e}");
        let e = fail(r#"{"mode": "search_replace", "search_pattern": "a", "charset": "UTF-16"}"#);
        assert!(e.contains("unknown field `charset`"), "{e}");
        let e = fail(
            r#"{"mode": "regex_extractor", "regex": "(a)", "serializers": [{"name": "a", "x": 1}]}"#,
        );
        assert_eq!(
            e,
            "invalid plugin config: mode `regex_extractor`: serializers[0]: unknown field `x`, \
             expected one of `name`, `type`, `pattern`"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            fail(r#"{"mode": "static", "preserve_existing": "yes"}"#),
            "invalid plugin config: mode `static`: preserve_existing: invalid type: \
             string \"yes\", expected a boolean"
        );
        assert_eq!(
            fail(r#"{"mode": "regex_extractor", "regex": "(a)", "serializers": [{"name": 1}]}"#),
            "invalid plugin config: mode `regex_extractor`: serializers[0].name: invalid type: \
             integer `1`, expected a string"
        );
        assert_eq!(
            fail(r#"{"mode": "remove_header", "from_list": [1]}"#),
            "invalid plugin config: mode `remove_header`: from_list[0]: invalid type: \
             integer `1`, expected a string"
        );
    }

    #[test]
    fn every_doc_example_config_works() {
        let source = include_str!("lib.rs");
        let starts: Vec<usize> = source
            .match_indices("//! ```toml\n")
            .map(|(at, _)| at)
            .collect();
        assert_eq!(starts.len(), 8, "one example per mode, and the first");
        for at in starts {
            let config = testing::doc_example_config(&source[at..]);
            testing::set_config(&config);
            let event = TestEvent::new("2024-05-01 10:30 INFO 4111111111111111")
                .with_header("password", "x");
            let result = testing::try_run(intercept, &[event]);
            // `host` reads `POD_IP`, which the test process lacks: its error
            // must say how to pass it.
            match result {
                Ok(out) => assert_eq!(out.len(), 1, "{config}"),
                Err(e) => assert!(
                    config.contains(r#""env":"POD_IP""#)
                        && e.message().contains("`POD_IP` is not passed to the plugin"),
                    "{config}: {e}"
                ),
            }
        }
    }

    #[test]
    fn first_doc_example_sets_the_static_header() {
        let out = run(
            &testing::doc_example_config(include_str!("lib.rs")),
            &[TestEvent::new("a")],
        );
        assert_eq!(out[0].event.header_str("datacenter"), Some("NEW_YORK"));
    }
}
