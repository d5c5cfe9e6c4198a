//! Lookup tables (`wit/lookup.wit`): read-only data the host keeps current,
//! such as customers by card number or stores by id.
//!
//! The host loads each table from a CSV or JSON-lines file (reloading it when
//! the file changes) or from a compacted Kafka topic, and answers from memory:
//! a look-up never waits on the network. A plugin reads only the tables its
//! team is granted; any other name, existing or not, is refused the same way
//! ([`get`] and [`get_many`] return an [`Error`] naming the table; propagate
//! it with `?` to fail the batch).
//!
//! Values are strings. A CSV table gives the row as a JSON object of its
//! columns, every value a JSON string (`{"card":"4111…","home_lat":"48.85"}`);
//! a JSON-lines table gives the whole line; a Kafka table gives the record
//! value. Keys that are absent give `None`.
//!
//! # Batched look-ups
//!
//! Every look-up is a call into the host. Rather than one [`get`] per event,
//! look up all keys of a batch with one [`get_many`]. A per-event plugin
//! function does that with a **prepare** function, which the SDK calls once
//! per batch with all its events before the per-event calls
//! (`#[sluice_guest::interceptor(prepare = ...)]`, the same for `decoder` and
//! `router`). It names the keys the batch needs with [`prefetch`]; the SDK
//! fetches them with one host call per table and keeps the answers until the
//! end of the batch, and [`get`] and [`get_many`] answer from them without
//! calling the host:
//!
//! ```
//! use sluice_guest::{Error, Event, Outcome, lookup};
//!
//! /// Once per batch: every user id of the batch, one host call.
//! fn users_of_batch(events: &[Event]) -> Result<(), Error> {
//!     lookup::prefetch("users", events.iter().filter_map(|e| e.header_str("user")))
//! }
//!
//! /// Per event: answered from the prefetched values.
//! #[sluice_guest::interceptor(prepare = users_of_batch)]
//! fn add_user_name(event: &mut Event) -> Result<Outcome, Error> {
//!     let user = match event.header_str("user") {
//!         Some(id) => lookup::get("users", id)?,
//!         None => None,
//!     };
//!     match user {
//!         Some(json) => {
//!             event.set_header("user-record", json);
//!             Ok(Outcome::Keep)
//!         }
//!         None => Ok(Outcome::dead_letter("unknown user")),
//!     }
//! }
//!
//! // Native test: the tables come from `testing::set_lookup`.
//! use sluice_guest::testing::{self, TestEvent};
//! testing::set_lookup("users", [("u1", r#"{"name":"Ada"}"#), ("u2", r#"{"name":"Bob"}"#)]);
//! let events = [
//!     TestEvent::new("a").with_header("user", "u1"),
//!     TestEvent::new("b").with_header("user", "u2"),
//!     TestEvent::new("c").with_header("user", "u3"),
//! ];
//! // `with_prepare` is what the attribute's `prepare = ...` does in the component.
//! let out = testing::run(sluice_guest::with_prepare(users_of_batch, add_user_name), &events);
//! assert_eq!(out[0].event.header_str("user-record"), Some(r#"{"name":"Ada"}"#));
//! assert_eq!(out[2].outcome, Outcome::dead_letter("unknown user"));
//! let calls = testing::take_lookup_calls();
//! assert_eq!(calls.len(), 1, "one host call for the whole batch");
//! assert_eq!(calls[0].keys, ["u1", "u2", "u3"]);
//!
//! // A table the team is not granted fails the batch, naming the table.
//! testing::remove_lookup("users");
//! let err = testing::try_run(sluice_guest::with_prepare(users_of_batch, add_user_name), &events)
//!     .unwrap_err();
//! assert!(err.message().starts_with("lookup table `users` denied"), "{err}");
//! ```
//!
//! Why a prepare function and a per-batch cache: the plugin function stays a
//! function of one event, it still works (one host call per look-up) when
//! there is no prepare function, for example in a test that forgets it, and
//! the plugin keeps no state of its own between the two steps. The prefetched
//! answers are dropped when the batch ends, so the next batch sees the
//! table's current contents; within a batch every event sees the same
//! version.
//!
//! # Native builds
//!
//! Outside wasm there is no host: the tables are what
//! [`crate::testing::set_lookup`] set on the current thread (a table never set
//! is refused, as an ungranted one is), and
//! [`crate::testing::take_lookup_calls`] lists the calls that would have
//! reached the host.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::Error;

/// Looks up one key of `table`: `Ok(None)` if the table has no such key,
/// `Err` if the table is not granted to the plugin's team (or does not exist).
///
/// Answered without a host call when the key was [`prefetch`]ed in this
/// batch. For many keys, use [`get_many`] or [`prefetch`].
///
/// ```
/// use sluice_guest::{lookup, testing};
///
/// testing::set_lookup("stores", [("1433", r#"{"lat":48.85,"lon":2.35}"#)]);
/// assert_eq!(lookup::get("stores", "1433").unwrap().as_deref(), Some(r#"{"lat":48.85,"lon":2.35}"#));
/// assert_eq!(lookup::get("stores", "9999").unwrap(), None);
/// assert!(lookup::get("payroll", "1433").is_err());
/// ```
pub fn get(table: &str, key: &str) -> Result<Option<String>, Error> {
    if let Some(answer) = cached(table, key) {
        return Ok(answer);
    }
    imp::get(table, key).map_err(|Denied| denied(table))
}

/// Looks up many keys of `table` with one host call: one answer per key, in
/// order, `None` where the key is absent. `Err` if the table is not granted
/// to the plugin's team (or does not exist).
///
/// Keys [`prefetch`]ed in this batch are answered without the host; the
/// others, if any, with one host call.
///
/// ```
/// use sluice_guest::{lookup, testing};
///
/// testing::set_lookup("stores", [("1433", "A"), ("1201", "B")]);
/// let answers = lookup::get_many("stores", &["1201", "7", "1433"]).unwrap();
/// assert_eq!(answers, [Some("B".to_owned()), None, Some("A".to_owned())]);
/// let err = lookup::get_many("payroll", &["1"]).unwrap_err();
/// assert!(err.message().contains("`payroll`"), "{err}");
/// ```
pub fn get_many<K: AsRef<str>>(table: &str, keys: &[K]) -> Result<Vec<Option<String>>, Error> {
    let mut answers: Vec<Option<Option<String>>> = BATCH.with(|b| {
        let b = b.borrow();
        match b.get(table) {
            Some(cache) => keys
                .iter()
                .map(|k| cache.get(k.as_ref()).cloned())
                .collect(),
            None => Vec::new(),
        }
    });
    if answers.is_empty() {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        return fetch(table, &keys);
    }
    let missing: Vec<&str> = keys
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(k, _)| k.as_ref())
        .collect();
    if !missing.is_empty() {
        let mut fetched = fetch(table, &missing)?.into_iter();
        for answer in answers.iter_mut().filter(|a| a.is_none()) {
            *answer = Some(fetched.next().flatten());
        }
    }
    Ok(answers.into_iter().map(Option::flatten).collect())
}

/// Fetches the values of `keys` of `table` with one host call and keeps them
/// until the end of the current batch, so that [`get`] and [`get_many`]
/// answer them (and their absence) without calling the host. Duplicate keys
/// and keys already prefetched are asked once; no keys means no call.
///
/// Call it from the batch's prepare function (see the [module docs](self)).
/// `Err` if the table is not granted to the plugin's team (or does not
/// exist): propagate it with `?` to fail the batch.
pub fn prefetch<I>(table: &str, keys: I) -> Result<(), Error>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let wanted: Vec<String> = BATCH.with(|b| {
        let b = b.borrow();
        let known = b.get(table);
        let mut wanted = std::collections::BTreeSet::new();
        for key in keys {
            let key = key.as_ref();
            if !known.is_some_and(|c| c.contains_key(key)) {
                wanted.insert(key.to_owned());
            }
        }
        wanted.into_iter().collect()
    });
    if wanted.is_empty() {
        // Still check the grant, so that a denied table fails every batch
        // alike, not only those that happen to need a key.
        if BATCH.with(|b| !b.borrow().contains_key(table)) {
            fetch(table, &[])?;
            BATCH.with(|b| {
                b.borrow_mut().entry(table.to_owned()).or_default();
            });
        }
        return Ok(());
    }
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let answers = fetch(table, &refs)?;
    BATCH.with(|b| {
        b.borrow_mut()
            .entry(table.to_owned())
            .or_default()
            .extend(wanted.into_iter().zip(answers));
    });
    Ok(())
}

/// One `get-many` host call, checked.
fn fetch(table: &str, keys: &[&str]) -> Result<Vec<Option<String>>, Error> {
    let answers = imp::get_many(table, keys).map_err(|Denied| denied(table))?;
    if answers.len() != keys.len() {
        return Err(Error::new(format!(
            "lookup table `{table}`: the host gave {} answers for {} keys",
            answers.len(),
            keys.len()
        )));
    }
    Ok(answers)
}

fn denied(table: &str) -> Error {
    Error::new(format!(
        "lookup table `{table}` denied: no table of this name is granted to this plugin's team"
    ))
}

/// The prefetched answer for `key`, if it was prefetched.
fn cached(table: &str, key: &str) -> Option<Option<String>> {
    BATCH.with(|b| b.borrow().get(table)?.get(key).cloned())
}

/// The host refused the table.
struct Denied;

thread_local! {
    /// Prefetched answers of the current batch: table → key → value.
    /// (`BTreeMap`, not `HashMap`: its random seed would import `wasi:random`.)
    static BATCH: RefCell<BTreeMap<String, BTreeMap<String, Option<String>>>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// Forgets the prefetched answers when created and when dropped: the driver
/// holds one for the duration of each batch.
pub(crate) struct BatchScope(());

impl BatchScope {
    pub(crate) fn begin() -> Self {
        clear();
        Self(())
    }
}

impl Drop for BatchScope {
    fn drop(&mut self) {
        clear();
    }
}

fn clear() {
    BATCH.with(|b| {
        let mut b = b.borrow_mut();
        if !b.is_empty() {
            b.clear();
        }
    });
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Denied;
    use crate::bindings::sluice::plugin::lookup as wit;

    fn check<T>(r: Result<T, wit::LookupError>) -> Result<T, Denied> {
        r.map_err(|e| match e {
            wit::LookupError::Denied => Denied,
        })
    }

    pub(super) fn get(table: &str, key: &str) -> Result<Option<String>, Denied> {
        check(wit::get(table, key))
    }

    pub(super) fn get_many(table: &str, keys: &[&str]) -> Result<Vec<Option<String>>, Denied> {
        check(wit::get_many(table, keys))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Denied;
    use crate::native_lookup;

    pub(super) fn get(table: &str, key: &str) -> Result<Option<String>, Denied> {
        get_many(table, &[key]).map(|mut v| v.pop().flatten())
    }

    pub(super) fn get_many(table: &str, keys: &[&str]) -> Result<Vec<Option<String>>, Denied> {
        native_lookup::get_many(table, keys).ok_or(Denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native_lookup::{self, LookupCall, take_calls};

    fn call(table: &str, keys: &[&str]) -> LookupCall {
        LookupCall {
            table: table.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn get_and_get_many_call_the_host() {
        native_lookup::set("t", [("a", "1"), ("b", "2")]);
        assert_eq!(get("t", "a").unwrap().as_deref(), Some("1"));
        assert_eq!(get("t", "z").unwrap(), None);
        let keys = vec!["b".to_owned(), "z".to_owned(), "a".to_owned()];
        assert_eq!(
            get_many("t", &keys).unwrap(),
            [Some("2".to_owned()), None, Some("1".to_owned())]
        );
        assert_eq!(
            take_calls(),
            [
                call("t", &["a"]),
                call("t", &["z"]),
                call("t", &["b", "z", "a"])
            ]
        );
    }

    #[test]
    fn denied_names_the_table() {
        let err = get("secret", "k").unwrap_err();
        assert_eq!(
            err.message(),
            "lookup table `secret` denied: no table of this name is granted to this plugin's team"
        );
        assert!(get_many("secret", &["k"]).is_err());
        assert!(prefetch("secret", ["k"]).is_err());
        assert!(
            prefetch("secret", Vec::<String>::new()).is_err(),
            "checked even without keys"
        );
    }

    #[test]
    fn prefetch_serves_get_and_get_many_until_the_batch_ends() {
        native_lookup::set("t", [("a", "1"), ("b", "2"), ("c", "3")]);
        let scope = BatchScope::begin();
        prefetch("t", ["a", "b", "a", "x"]).unwrap();
        assert_eq!(take_calls(), [call("t", &["a", "b", "x"])]);
        prefetch("t", ["b", "a"]).unwrap();
        assert!(take_calls().is_empty(), "all known");

        assert_eq!(get("t", "a").unwrap().as_deref(), Some("1"));
        assert_eq!(get("t", "x").unwrap(), None, "absence is remembered too");
        assert!(take_calls().is_empty());

        // Partly prefetched: only the rest goes to the host, answers in order.
        assert_eq!(
            get_many("t", &["c", "b", "y", "a"]).unwrap(),
            [Some("3".into()), Some("2".into()), None, Some("1".into())]
        );
        assert_eq!(take_calls(), [call("t", &["c", "y"])]);
        assert_eq!(get_many("t", &["a", "b"]).unwrap().len(), 2);
        assert!(take_calls().is_empty());

        drop(scope);
        assert_eq!(get("t", "a").unwrap().as_deref(), Some("1"));
        assert_eq!(take_calls(), [call("t", &["a"])]);
    }

    #[test]
    fn prefetching_no_keys_checks_the_grant_once() {
        native_lookup::set("t", [("a", "1")]);
        let _scope = BatchScope::begin();
        prefetch("t", Vec::<&str>::new()).unwrap();
        prefetch("t", Vec::<&str>::new()).unwrap();
        assert_eq!(take_calls(), [call("t", &[])]);
    }
}
