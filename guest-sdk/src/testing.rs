//! Native unit tests for plugins, no WebAssembly runtime needed.
//!
//! [`run`] encodes [`TestEvent`]s into a flat batch exactly as the host does,
//! runs the same driver as the wasm build, and decodes and checks the result
//! like the host: a test exercises the real encoding. Configuration comes from
//! [`set_config`] (per test thread; `{}` when unset), lookup tables from
//! [`set_lookup`] (per test thread; a table never set is denied), and log
//! lines go to stderr. A plugin with a prepare function runs with it through
//! [`crate::with_prepare`].
//!
//! ```
//! use sluice_guest::testing::{self, TestEvent};
//! use sluice_guest::{Event, Outcome};
//!
//! fn upper(event: &mut Event) -> Outcome {
//!     let body = event.body().to_ascii_uppercase();
//!     event.set_body(body);
//!     Outcome::Keep
//! }
//!
//! let out = testing::run(upper, &[TestEvent::new("abc").with_header("h", "1")]);
//! assert_eq!(out[0].event.body_str(), Some("ABC"));
//! assert_eq!(out[0].event.header_str("h"), Some("1"));
//! assert!(out[0].modified);
//! ```

use std::borrow::Cow;

use sluice_batch::{
    BatchBuf, NO_REPLACEMENT, NO_TIMESTAMP, NewEvent, OutcomeKind, decode_outcomes,
};

use crate::{Error, Handler, Outcome, driver, host, native_lookup};

pub use crate::native_lookup::LookupCall;

/// Sets the configuration JSON that [`crate::config`] and
/// [`crate::config_json`] return on this thread, as the host would pass the
/// plugin's `config` table. Forgets configurations parsed before.
///
/// Each `#[test]` runs on its own thread, so tests do not see each other's
/// configuration.
pub fn set_config(json: &str) {
    host::imp::set_config(json.to_owned());
}

/// Sets the lookup table `table` on this thread to `rows` (key, value),
/// replacing any earlier contents: [`crate::lookup`] answers from it as the
/// host would from a table the plugin's team is granted. A table never set
/// (or removed with [`remove_lookup`]) is denied, like an ungranted one.
///
/// Values are what the host would pass: a CSV row as a JSON object of its
/// columns (all strings), a JSON line as is.
///
/// ```
/// use sluice_guest::{lookup, testing};
///
/// testing::set_lookup("customers", [("4111", r#"{"home_lat":"48.85","home_lon":"2.35"}"#)]);
/// assert!(lookup::get("customers", "4111").unwrap().is_some());
/// assert!(lookup::get("payroll", "4111").is_err());
/// ```
pub fn set_lookup<K, V>(table: &str, rows: impl IntoIterator<Item = (K, V)>)
where
    K: Into<String>,
    V: Into<String>,
{
    let rows = rows
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    native_lookup::set_table(table, rows);
}

/// Removes the lookup table `table` from this thread: it is denied from now on.
pub fn remove_lookup(table: &str) {
    native_lookup::remove_table(table);
}

/// The lookup calls made on this thread since the last call of this
/// function, oldest first, and forgets them: a test can check that a plugin
/// batches its look-ups (prefetched answers are not host calls).
pub fn take_lookup_calls() -> Vec<LookupCall> {
    native_lookup::take_calls()
}

/// An event to feed to [`run`], and the resulting event in a [`TestOutput`].
///
/// Defaults: no key, no headers, topic `"test"`, partition 0, offset = the
/// position in the batch, timestamp unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEvent {
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub body: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Origin topic.
    pub topic: String,
    /// Origin partition.
    pub partition: i32,
    /// Origin offset; `None` means the position in the batch.
    pub offset: Option<i64>,
    /// Milliseconds since the Unix epoch; `None` when unknown.
    pub timestamp: Option<i64>,
}

impl TestEvent {
    /// An event with this body and the defaults.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            body: body.into(),
            headers: Vec::new(),
            topic: "test".to_owned(),
            partition: 0,
            offset: None,
            timestamp: None,
        }
    }

    /// With this key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// With this origin topic.
    pub fn with_topic(mut self, topic: &str) -> Self {
        self.topic = topic.to_owned();
        self
    }

    /// With this origin partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }

    /// With this origin offset.
    pub fn with_offset(mut self, offset: i64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// With this timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// The body as text; `None` if it is not UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The value of the first header named `name` as text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn from_batch(event: &sluice_batch::EventRef<'_>) -> Self {
        Self {
            key: event.key().map(<[u8]>::to_vec),
            body: event.body().to_vec(),
            headers: event
                .headers()
                .map(|h| {
                    let (n, v) = h.unwrap_or_else(|e| panic!("sdk wrote a bad header block: {e}"));
                    (n.to_owned(), v.to_vec())
                })
                .collect(),
            topic: event.topic().to_owned(),
            partition: event.partition(),
            offset: Some(event.offset()),
            timestamp: (event.timestamp() != NO_TIMESTAMP).then(|| event.timestamp()),
        }
    }
}

/// What became of one input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutput {
    /// The outcome. [`Outcome::Keep`] also stands for the WIT `modify`
    /// (see [`TestOutput::modified`]).
    pub outcome: Outcome,
    /// The event the host would pass on: the replacement if the plugin sent
    /// one, otherwise the original.
    pub event: TestEvent,
    /// Whether the plugin sent a replacement.
    pub modified: bool,
}

/// The `config` table of the first ```` ```toml ```` example in a crate's `//!`
/// docs, as the JSON the host would pass, so a plugin can test that its
/// documented example stays valid:
/// `set_config(&doc_example_config(include_str!("lib.rs")))`.
///
/// Panics (failing the test) if there is no such example, it does not parse,
/// or it has no `[plugins.<name>]` table; a missing `config` key gives `{}`.
pub fn doc_example_config(crate_source: &str) -> String {
    let example: String = crate_source
        .lines()
        .skip_while(|l| *l != "//! ```toml")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| l.strip_prefix("//!").unwrap_or(l))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let doc: toml::Table = example
        .parse()
        .expect("the TOML example in the docs parses");
    let plugin = doc
        .get("plugins")
        .and_then(|p| p.as_table())
        .and_then(|t| t.values().next())
        .expect("the example has a [plugins.<name>] table");
    let config = plugin
        .get("config")
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(Default::default()));
    serde_json::to_string(&config).expect("TOML converts to JSON")
}

/// Runs `handler` over `events` as one batch; panics if the batch fails.
pub fn run<H: Handler>(handler: H, events: &[TestEvent]) -> Vec<TestOutput> {
    try_run(handler, events).unwrap_or_else(|e| panic!("the batch failed: {e}"))
}

/// Runs `handler` natively over an encoded `batch`, through the same driver
/// as the wasm build, and returns how many events it replaced. For
/// measuring a plugin's native cost beside its WebAssembly cost (the host's
/// `plugin_call` bench); [`run`] checks results, this does not.
pub fn run_encoded<H: Handler>(handler: H, batch: &BatchBuf) -> Result<usize, Error> {
    let result = driver::process(&batch.data, &batch.index, handler)?;
    Ok(result.replacements.len())
}

/// Runs `handler` over `events` as one batch; `Err` is the batch failure the
/// host would receive.
pub fn try_run<H: Handler>(handler: H, events: &[TestEvent]) -> Result<Vec<TestOutput>, Error> {
    let mut batch = BatchBuf::default();
    for (i, e) in events.iter().enumerate() {
        let headers: Vec<(&str, &[u8])> = e
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        batch.push(&NewEvent {
            key: e.key.as_deref(),
            body: &e.body,
            headers: &headers,
            topic: &e.topic,
            partition: e.partition,
            offset: e.offset.unwrap_or(i as i64),
            timestamp: e.timestamp.unwrap_or(NO_TIMESTAMP),
        });
    }
    let result = driver::process(&batch.data, &batch.index, handler)?;

    // Check the result as the host does.
    let replacements = BatchBuf::from_parts(result.replacements.data, result.replacements.index)
        .unwrap_or_else(|e| panic!("sdk wrote bad replacements: {e}"));
    let entries = decode_outcomes(
        &result.outcomes,
        batch.len(),
        replacements.len(),
        result.labels.len(),
    )
    .unwrap_or_else(|e| panic!("sdk wrote bad outcomes: {e}"));

    Ok(entries
        .iter()
        .zip(batch.iter())
        .map(|(entry, orig)| {
            let label = || Cow::Owned(result.labels[entry.label as usize].clone());
            let outcome = match entry.kind {
                OutcomeKind::Keep | OutcomeKind::Modify => Outcome::Keep,
                OutcomeKind::Drop => Outcome::Drop,
                OutcomeKind::RouteTo => Outcome::RouteTo(label()),
                OutcomeKind::DeadLetter => Outcome::DeadLetter(label()),
            };
            let modified = entry.replacement != NO_REPLACEMENT;
            let event = match replacements.get(entry.replacement as usize) {
                Some(rep) if modified => TestEvent::from_batch(&rep),
                _ => TestEvent::from_batch(&orig),
            };
            TestOutput {
                outcome,
                event,
                modified,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    #[test]
    fn defaults_and_round_trip() {
        let out = run(
            |_: &mut Event<'_>| Outcome::Keep,
            &[
                TestEvent::new("a"),
                TestEvent::new("b")
                    .with_key("k")
                    .with_header("h", "v")
                    .with_topic("t")
                    .with_partition(3)
                    .with_offset(77)
                    .with_timestamp(1000),
            ],
        );
        assert_eq!(out[0].event.offset, Some(0));
        assert_eq!(out[0].event.topic, "test");
        assert_eq!(out[0].event.timestamp, None);
        assert!(!out[0].modified);
        let e = &out[1].event;
        assert_eq!(
            (
                e.key.as_deref(),
                e.header_str("h"),
                e.partition,
                e.offset,
                e.timestamp
            ),
            (Some(&b"k"[..]), Some("v"), 3, Some(77), Some(1000))
        );
    }

    #[test]
    fn replacement_keeps_origin() {
        let out = run(
            |e: &mut Event<'_>| {
                e.set_timestamp(5);
                e.clear_key();
                Outcome::route_to("x")
            },
            &[TestEvent::new("a").with_key("k").with_offset(9)],
        );
        assert_eq!(out[0].outcome, Outcome::route_to("x"));
        assert!(out[0].modified);
        assert_eq!(out[0].event.timestamp, Some(5));
        assert_eq!(out[0].event.key, None);
        assert_eq!(out[0].event.offset, Some(9));
    }

    #[test]
    fn failure_is_returned() {
        let err = try_run(
            |_: &mut Event<'_>| -> Result<Outcome, Error> { Err("nope".into()) },
            &[TestEvent::new("a")],
        )
        .unwrap_err();
        assert_eq!(err.message(), "nope");
    }
}
