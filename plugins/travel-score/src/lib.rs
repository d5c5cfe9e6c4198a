//! `travel-score`: an interceptor plugin for the fraud scenario. It scores
//! each card transaction by how far the store is from the card holder's
//! home, and routes the transactions that score high to a channel of their
//! own.
//!
//! Per transaction (a JSON object, as the `delimited` decoder makes of the
//! quickstart's `uuid|card|time|amount|store` lines):
//!
//! 1. the card holder is looked up by card number in the lookup table
//!    `customers`, and the store by id in the table `stores`
//!    ([`sluice_guest::lookup`]). The look-ups are batched: a prepare
//!    function collects the keys of the whole batch, one host call per table;
//! 2. the score, from 0 to 100, is the great-circle distance between home
//!    and store, scaled so that `km_for_max` kilometres or more give 100,
//!    plus `penalty` when the store is not among the card holder's recent
//!    stores, capped at 100:
//!    `min(100, round(100 × min(km, km_for_max) / km_for_max) + penalty)`;
//! 3. the header `travel-score` is set to the score as text (`"0"` to
//!    `"100"`); a transaction scoring `threshold` or more is routed to the
//!    channel `route`, the others are kept.
//!
//! A card or store that is not in its table is handled as `on_unknown` says:
//! kept with `travel-score: unknown`, or dead-lettered.
//!
//! # Configuration
//!
//! The plugin's team must be granted both tables (`lookups` of
//! `[teams.<name>]`); otherwise every batch fails with
//! ``lookup table `customers` denied: ...``.
//!
//! ```toml
//! [lookups.customers]
//! type = "file"
//! path = "data/customers.csv"   # card,home_lat,home_lon,recent_stores
//! key = "card"
//!
//! [lookups.stores]
//! type = "file"
//! path = "data/stores.jsonl"    # {"store":"1433","lat":52.52,"lon":13.4}
//! key = "store"
//!
//! [teams.fraud]
//! plugin_dir = "../target/wasm32-wasip2/plugin"
//! lookups = ["customers", "stores"]
//!
//! [plugins.travel-score]
//! type = "interceptor"
//! team = "fraud"
//! path = "travel_score.wasm"
//! config = { threshold = 70, route = "high-risk", on_unknown = "keep" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `customers` | string | `"customers"` | Lookup table of card holders, keyed by card number (see below). |
//! | `stores` | string | `"stores"` | Lookup table of stores, keyed by store id (see below). |
//! | `card_field` | string | `"card"` | Top-level field of the transaction holding the card number (string or integer). |
//! | `store_field` | string | `"store"` | Top-level field holding the store id (string or integer: `1433` and `"1433"` both look up key `1433`). |
//! | `km_for_max` | number | `1000` | Distance in kilometres from home at which the distance part of the score reaches 100. Greater than 0. |
//! | `penalty` | integer | `20` | Points added when the store is not among the card holder's recent stores. 0 to 100. |
//! | `threshold` | integer | `70` | Transactions scoring this or more are routed to `route`. 0 to 100. |
//! | `route` | string | `"high-risk"` | Channel for high-scoring transactions; it must be a channel of the source (the host checks). |
//! | `on_unknown` | string | `"keep"` | A card or store not in its table (or whose entry lacks a usable location): `"keep"` passes the transaction on with `travel-score: unknown`; `"dead-letter"` dead-letters it with the reason ``travel-score: card not in table `customers` `` (or ``store not in table `stores` ``). |
//!
//! Unknown keys, an empty name, `km_for_max` not above 0, or `penalty` or
//! `threshold` above 100 fail the batch with a message naming the key.
//!
//! # Lookup tables
//!
//! Values are read as the host passes them (a CSV row as a JSON object of its
//! columns, all strings; a JSON line as is). Other columns and fields are
//! ignored.
//!
//! - `customers`, keyed by card number: `home_lat` and `home_lon` (degrees,
//!   numbers or numeric strings) and, optionally, `recent_stores`: store ids
//!   as a JSON array (`["1433", 1201]`) or as one string separated by `;`
//!   (`"1433;1201"`, the CSV form). Example CSV:
//!   `card,home_lat,home_lon,recent_stores` /
//!   `4111111111111111,52.52,13.40,1433;1201`.
//! - `stores`, keyed by store id: `lat` and `lon`. Example JSON line:
//!   `{"store":"1433","lat":52.52,"lon":13.40}`.
//!
//! An entry without a usable location (missing, not a number, out of range)
//! counts as unknown; the first such entry is logged as a warning, once per
//! plugin instance. `conf/data/customers.csv` and `conf/data/stores.jsonl`
//! match the quickstart's demo feed (`[embedded_broker.feed]` with the default
//! seed): all 500 cards of its pool and every store id from 1000 to 9999.
//!
//! # Details
//!
//! - Put the plugin *before* `mask` in a source's `interceptors`: it needs the
//!   card number in clear.
//! - A body that is not a JSON object with both fields is dead-lettered with
//!   the reason ``travel-score: not a JSON object with `card` and `store` ``.
//! - Card numbers never appear in reasons or log lines.
//! - Every event the plugin keeps or routes gets the header, so it is passed
//!   on as a replacement.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sluice_guest::{Error, Event, Outcome, lookup};

/// The header the score is written to.
pub const HEADER: &str = "travel-score";

/// The header value for a transaction whose card or store is unknown.
pub const UNKNOWN: &str = "unknown";

/// Mean Earth radius in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// The plugin configuration (see the crate docs).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    customers: String,
    stores: String,
    card_field: String,
    store_field: String,
    km_for_max: f64,
    penalty: u32,
    threshold: u32,
    route: String,
    on_unknown: OnUnknown,
    /// Dead-letter reasons, made once so that an outcome costs no allocation.
    reason_malformed: String,
    reason_unknown_card: String,
    reason_unknown_store: String,
}

/// What to do with a transaction whose card or store is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OnUnknown {
    Keep,
    DeadLetter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_customers")]
    customers: String,
    #[serde(default = "default_stores")]
    stores: String,
    #[serde(default = "default_card_field")]
    card_field: String,
    #[serde(default = "default_store_field")]
    store_field: String,
    #[serde(default = "default_km_for_max")]
    km_for_max: f64,
    #[serde(default = "default_penalty")]
    penalty: u32,
    #[serde(default = "default_threshold")]
    threshold: u32,
    #[serde(default = "default_route")]
    route: String,
    #[serde(default = "default_on_unknown")]
    on_unknown: OnUnknown,
}

fn default_customers() -> String {
    "customers".into()
}
fn default_stores() -> String {
    "stores".into()
}
fn default_card_field() -> String {
    "card".into()
}
fn default_store_field() -> String {
    "store".into()
}
fn default_km_for_max() -> f64 {
    1000.0
}
fn default_penalty() -> u32 {
    20
}
fn default_threshold() -> u32 {
    70
}
fn default_route() -> String {
    "high-risk".into()
}
fn default_on_unknown() -> OnUnknown {
    OnUnknown::Keep
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        for (key, value) in [
            ("customers", &raw.customers),
            ("stores", &raw.stores),
            ("card_field", &raw.card_field),
            ("store_field", &raw.store_field),
            ("route", &raw.route),
        ] {
            if value.is_empty() {
                return Err(format!("`{key}` is empty"));
            }
        }
        if !(raw.km_for_max.is_finite() && raw.km_for_max > 0.0) {
            return Err(format!(
                "`km_for_max` is {}; it must be a distance above 0 (kilometres)",
                raw.km_for_max
            ));
        }
        if raw.penalty > 100 {
            return Err(format!(
                "`penalty` is {}; scores go from 0 to 100",
                raw.penalty
            ));
        }
        if raw.threshold > 100 {
            return Err(format!(
                "`threshold` is {}; scores go from 0 to 100",
                raw.threshold
            ));
        }
        Ok(Config {
            reason_malformed: format!(
                "travel-score: not a JSON object with `{}` and `{}`",
                raw.card_field, raw.store_field
            ),
            reason_unknown_card: format!("travel-score: card not in table `{}`", raw.customers),
            reason_unknown_store: format!("travel-score: store not in table `{}`", raw.stores),
            customers: raw.customers,
            stores: raw.stores,
            card_field: raw.card_field,
            store_field: raw.store_field,
            km_for_max: raw.km_for_max,
            penalty: raw.penalty,
            threshold: raw.threshold,
            route: raw.route,
            on_unknown: raw.on_unknown,
        })
    }
}

/// Once per batch: looks up the cards and stores of all its transactions,
/// one host call per table. [`score`] then reads the answers from the SDK's
/// per-batch cache.
pub fn prefetch(events: &[Event]) -> Result<(), Error> {
    let config: &Config = sluice_guest::config()?;
    let mut cards = Vec::with_capacity(events.len());
    let mut stores = Vec::with_capacity(events.len());
    for event in events {
        if let Some(keys) = transaction_keys(event.body(), config) {
            cards.push(keys.card);
            stores.push(keys.store);
        }
    }
    lookup::prefetch(&config.customers, &cards)?;
    lookup::prefetch(&config.stores, &stores)
}

/// Scores one transaction; see the crate docs.
#[sluice_guest::interceptor(prepare = prefetch)]
pub fn score(event: &mut Event) -> Result<Outcome, Error> {
    let config: &'static Config = sluice_guest::config()?;
    let assessed = match transaction_keys(event.body(), config) {
        Some(keys) => assess(&keys, config)?,
        None => return Ok(Outcome::dead_letter(config.reason_malformed.as_str())),
    };
    match assessed {
        Ok(score) => {
            event.set_header(HEADER, score.to_string());
            Ok(if score >= config.threshold {
                Outcome::route_to(config.route.as_str())
            } else {
                Outcome::Keep
            })
        }
        Err(unknown) => match config.on_unknown {
            OnUnknown::Keep => {
                event.set_header(HEADER, UNKNOWN);
                Ok(Outcome::Keep)
            }
            OnUnknown::DeadLetter => Ok(Outcome::dead_letter(match unknown {
                Unknown::Card => config.reason_unknown_card.as_str(),
                Unknown::Store => config.reason_unknown_store.as_str(),
            })),
        },
    }
}

/// Which look-up found nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    Card,
    Store,
}

/// The score of a transaction, or what is unknown about it. The outer
/// `Err` (a denied table) fails the batch.
fn assess(keys: &Keys<'_>, config: &Config) -> Result<Result<u32, Unknown>, Error> {
    let customer = lookup::get(&config.customers, &keys.card)?
        .and_then(|json| parse_entry::<Customer>(&json, &config.customers));
    let Some(customer) = customer else {
        return Ok(Err(Unknown::Card));
    };
    let store = lookup::get(&config.stores, &keys.store)?
        .and_then(|json| parse_entry::<Store>(&json, &config.stores));
    let Some(store) = store else {
        return Ok(Err(Unknown::Store));
    };
    let km = distance_km(customer.home_lat, customer.home_lon, store.lat, store.lon);
    let recent = customer
        .recent_stores
        .iter()
        .any(|s| s.trim() == keys.store.as_ref());
    Ok(Ok(score_of(km, recent, config)))
}

/// `min(100, round(100 × min(km, km_for_max) / km_for_max) + penalty)`.
fn score_of(km: f64, recent: bool, config: &Config) -> u32 {
    let distance = (100.0 * km.min(config.km_for_max) / config.km_for_max).round() as u32;
    let penalty = if recent { 0 } else { config.penalty };
    (distance + penalty).min(100)
}

/// Great-circle (haversine) distance in kilometres.
fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

thread_local! {
    /// Whether an invalid table entry was logged already (once per instance).
    static WARNED: Cell<bool> = const { Cell::new(false) };
}

/// Parses a table entry; `None` (logged once) if it is unusable.
fn parse_entry<T: for<'de> Deserialize<'de>>(json: &str, table: &str) -> Option<T> {
    match serde_json::from_str::<T>(json) {
        Ok(entry) => Some(entry),
        Err(e) => {
            if !WARNED.with(|w| w.replace(true)) {
                sluice_guest::log::warn(&format!(
                    "travel-score: an entry of lookup table `{table}` has no usable location ({e}); \
                     such entries count as unknown (logged once)"
                ));
            }
            None
        }
    }
}

/// A `customers` entry.
#[derive(Debug, Deserialize)]
struct Customer {
    #[serde(deserialize_with = "latitude")]
    home_lat: f64,
    #[serde(deserialize_with = "longitude")]
    home_lon: f64,
    #[serde(default, deserialize_with = "store_list")]
    recent_stores: Vec<String>,
}

/// A `stores` entry.
#[derive(Debug, Deserialize)]
struct Store {
    #[serde(deserialize_with = "latitude")]
    lat: f64,
    #[serde(deserialize_with = "longitude")]
    lon: f64,
}

fn latitude<'de, D: Deserializer<'de>>(de: D) -> Result<f64, D::Error> {
    degrees(de, 90.0)
}

fn longitude<'de, D: Deserializer<'de>>(de: D) -> Result<f64, D::Error> {
    degrees(de, 180.0)
}

/// A number or numeric string (CSV columns are strings) within `±limit`.
fn degrees<'de, D: Deserializer<'de>>(de: D, limit: f64) -> Result<f64, D::Error> {
    struct Degrees;
    impl Visitor<'_> for Degrees {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("degrees as a number or numeric string")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    let v = de.deserialize_any(Degrees)?;
    if v.is_finite() && v.abs() <= limit {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "{v} is not within ±{limit} degrees"
        )))
    }
}

/// Store ids: a JSON array of strings or integers, or one string of ids
/// separated by `;` (which may also hold a JSON array, as a CSV cell might).
fn store_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Array(Vec<Id>),
        Text(String),
    }
    let ids = |list: Vec<Id>| -> Vec<String> {
        list.into_iter()
            .map(|id| match id {
                Id::Text(s) => s,
                Id::Number(n) => n.to_string(),
            })
            .collect()
    };
    Ok(match List::deserialize(de)? {
        List::Array(list) => ids(list),
        List::Text(text) if text.trim_start().starts_with('[') => {
            ids(serde_json::from_str(&text).map_err(de::Error::custom)?)
        }
        List::Text(text) => text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The lookup keys of a transaction, borrowed from the body where possible.
#[derive(Debug, PartialEq, Eq)]
struct Keys<'a> {
    card: Cow<'a, str>,
    store: Cow<'a, str>,
}

/// The card number and store id of a transaction body; `None` unless the
/// body is a JSON object with both (as strings or integers). Reads only the
/// top level and skips other values without building them.
fn transaction_keys<'a>(body: &'a [u8], config: &Config) -> Option<Keys<'a>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let keys = TopLevel {
        card: &config.card_field,
        store: &config.store_field,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    keys
}

/// Picks two top-level fields out of a JSON object.
struct TopLevel<'c> {
    card: &'c str,
    store: &'c str,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<Keys<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<Keys<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut card = None;
        let mut store = None;
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            if name == self.card && card.is_none() {
                card = map.next_value::<Option<KeyText<'de>>>()?;
            } else if name == self.store && store.is_none() {
                store = map.next_value::<Option<KeyText<'de>>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match (card, store) {
            (Some(KeyText(card)), Some(KeyText(store)))
                if !card.is_empty() && !store.is_empty() =>
            {
                Some(Keys { card, store })
            }
            _ => None,
        })
    }
}

/// A JSON string, borrowed unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_str(TextVisitor { numbers: false }).map(Text)
    }
}

/// A lookup key: a JSON string or integer, as text.
struct KeyText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(TextVisitor { numbers: true })
            .map(KeyText)
    }
}

struct TextVisitor {
    /// Whether integers are accepted (as their decimal text).
    numbers: bool,
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.numbers {
            "a string or an integer"
        } else {
            "a string"
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if self.numbers {
            Ok(Cow::Owned(v.to_string()))
        } else {
            Err(E::invalid_type(de::Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.numbers {
            Ok(Cow::Owned(v.to_string()))
        } else {
            Err(E::invalid_type(de::Unexpected::Signed(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent, TestOutput};
    use sluice_guest::with_prepare;

    // Berlin, Potsdam (~27 km), Munich (~504 km), Paris (~878 km), New York.
    const BERLIN: (f64, f64) = (52.52, 13.405);
    const POTSDAM: (f64, f64) = (52.3906, 13.0645);
    const MUNICH: (f64, f64) = (48.1351, 11.582);
    const PARIS: (f64, f64) = (48.8566, 2.3522);
    const NEW_YORK: (f64, f64) = (40.7128, -74.006);

    const CARD: &str = "4111111111111111";

    fn tables() {
        testing::set_lookup(
            "customers",
            [
                // As the host passes a CSV row: all columns strings.
                (
                    CARD.to_owned(),
                    format!(
                        r#"{{"card":"{CARD}","home_lat":"{}","home_lon":"{}","recent_stores":"1001;1003"}}"#,
                        BERLIN.0, BERLIN.1
                    ),
                ),
                // As a JSON line: numbers and an array.
                (
                    "4000000000000002".to_owned(),
                    format!(
                        r#"{{"home_lat":{},"home_lon":{},"recent_stores":[1004,"1001"]}}"#,
                        PARIS.0, PARIS.1
                    ),
                ),
                (
                    "4000000000000010".to_owned(),
                    r#"{"home_lat":"north"}"#.to_owned(),
                ),
            ],
        );
        let store = |id: &str, (lat, lon): (f64, f64)| {
            (
                id.to_owned(),
                format!(r#"{{"store":"{id}","lat":{lat},"lon":{lon}}}"#),
            )
        };
        testing::set_lookup(
            "stores",
            [
                store("1001", POTSDAM),
                store("1002", MUNICH),
                store("1003", PARIS),
                store("1004", NEW_YORK),
                store("1005", BERLIN),
            ],
        );
    }

    fn txn(card: &str, store: u32) -> TestEvent {
        TestEvent::new(format!(
            r#"{{"id":"t-{store}","card":"{card}","time":"2014-10-14 01:18:29","amount":67.88,"store":{store}}}"#
        ))
    }

    fn run(config: &str, events: &[TestEvent]) -> Vec<TestOutput> {
        testing::set_config(config);
        testing::run(with_prepare(prefetch, score), events)
    }

    fn scores(out: &[TestOutput]) -> Vec<&str> {
        out.iter()
            .map(|o| o.event.header_str(HEADER).unwrap_or("-"))
            .collect()
    }

    #[test]
    fn distance_is_great_circle() {
        let km = distance_km(BERLIN.0, BERLIN.1, PARIS.0, PARIS.1);
        assert!((km - 878.0).abs() < 3.0, "{km}");
        let km = distance_km(BERLIN.0, BERLIN.1, MUNICH.0, MUNICH.1);
        assert!((km - 504.0).abs() < 3.0, "{km}");
        assert_eq!(distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
        let km = distance_km(0.0, 0.0, 0.0, 180.0);
        assert!((km - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }

    #[test]
    fn scores_by_distance_and_recent_stores() {
        tables();
        let out = run(
            "{}",
            &[
                txn(CARD, 1001),               // Potsdam, recent: round(2.7) = 3
                txn(CARD, 1005),               // Berlin itself, not recent: 0 + 20
                txn(CARD, 1002),               // Munich, not recent: 50 + 20 = 70 >= 70
                txn(CARD, 1003),               // Paris, recent: 88
                txn(CARD, 1004),               // New York, not recent: capped at 100
                txn("4000000000000002", 1004), // recent, New York: 100
                txn("4000000000000002", 1003), // Paris, home: 0 + 20
            ],
        );
        assert_eq!(scores(&out), ["3", "20", "70", "88", "100", "100", "20"]);
        let outcomes: Vec<_> = out.iter().map(|o| o.outcome.clone()).collect();
        let high = Outcome::route_to("high-risk");
        assert_eq!(
            outcomes,
            [
                Outcome::Keep,
                Outcome::Keep,
                high.clone(),
                high.clone(),
                high.clone(),
                high,
                Outcome::Keep,
            ]
        );
        assert!(out.iter().all(|o| o.modified), "the header is added");
        assert_eq!(
            out[0].event.body_json()["card"],
            CARD,
            "the body is unchanged"
        );
    }

    #[test]
    fn looks_up_once_per_table_per_batch() {
        tables();
        let events = [
            txn(CARD, 1001),
            txn(CARD, 1002),
            txn("4000000000000002", 1003),
            txn("4999999999999999", 1001),
        ];
        run("{}", &events);
        let calls = testing::take_lookup_calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].table, "customers");
        assert_eq!(
            calls[0].keys,
            ["4000000000000002", "4111111111111111", "4999999999999999"]
        );
        assert_eq!(calls[1].table, "stores");
        assert_eq!(calls[1].keys, ["1001", "1002", "1003"]);

        // Without the prepare function the answers are the same, one call
        // per look-up.
        testing::set_config("{}");
        let slow = testing::run(score, &events);
        assert_eq!(scores(&slow), ["3", "70", "20", UNKNOWN]);
        assert_eq!(testing::take_lookup_calls().len(), 7);
    }

    #[test]
    fn configuration_changes_the_score_and_route() {
        tables();
        let out = run(
            r#"{"km_for_max": 500, "penalty": 0, "threshold": 90, "route": "review"}"#,
            &[txn(CARD, 1002), txn(CARD, 1005), txn(CARD, 1003)],
        );
        assert_eq!(scores(&out), ["100", "0", "100"]);
        assert_eq!(out[0].outcome, Outcome::route_to("review"));
        assert_eq!(out[1].outcome, Outcome::Keep);
    }

    #[test]
    fn renamed_tables_and_fields() {
        testing::set_lookup(
            "holders",
            [(
                "c1",
                r#"{"home_lat":0,"home_lon":0,"recent_stores":["s1"]}"#,
            )],
        );
        testing::set_lookup("shops", [("s1", r#"{"lat":0,"lon":0}"#)]);
        let out = run(
            r#"{"customers": "holders", "stores": "shops", "card_field": "pan", "store_field": "shop"}"#,
            &[TestEvent::new(r#"{"pan":"c1","shop":"s1"}"#)],
        );
        assert_eq!(scores(&out), ["0"]);
    }

    #[test]
    fn unknown_cards_and_stores_are_kept_by_default() {
        tables();
        let out = run(
            "{}",
            &[
                txn("4999999999999999", 1001),
                txn(CARD, 9999),
                txn("4000000000000010", 1001), // entry without a location
            ],
        );
        assert_eq!(scores(&out), [UNKNOWN, UNKNOWN, UNKNOWN]);
        assert!(out.iter().all(|o| o.outcome == Outcome::Keep));
    }

    #[test]
    fn unknown_cards_and_stores_can_be_dead_lettered() {
        tables();
        let out = run(
            r#"{"on_unknown": "dead-letter"}"#,
            &[
                txn("4999999999999999", 1001),
                txn(CARD, 9999),
                txn(CARD, 1001),
            ],
        );
        assert_eq!(
            out[0].outcome,
            Outcome::dead_letter("travel-score: card not in table `customers`")
        );
        assert_eq!(
            out[1].outcome,
            Outcome::dead_letter("travel-score: store not in table `stores`")
        );
        assert!(!out[0].modified && out[0].event.header(HEADER).is_none());
        assert_eq!(out[2].outcome, Outcome::Keep);
    }

    #[test]
    fn malformed_transactions_are_dead_lettered() {
        tables();
        let out = run(
            "{}",
            &[
                TestEvent::new("uuid|4111111111111111|2014-10-14 01:18:29|67.88|1433"),
                TestEvent::new(r#"{"card":"4111111111111111"}"#),
                TestEvent::new(r#"{"card":{"n":1},"store":1001}"#),
                TestEvent::new(r#"["card","store"]"#),
                TestEvent::new(r#"{"card":"4111111111111111","store":1001} trailing"#),
                // Escapes and numbers are fine.
                TestEvent::new(r#"{"card":"4111111111111111","store":"10\u00301"}"#),
                TestEvent::new(r#"{"store":1001,"card":4111111111111111,"x":[1,{"y":2}]}"#),
            ],
        );
        let reason =
            Outcome::dead_letter("travel-score: not a JSON object with `card` and `store`");
        for o in &out[..5] {
            assert_eq!(o.outcome, reason, "{:?}", o.event.body_str());
        }
        assert_eq!(scores(&out[5..]), ["3", "3"]);
    }

    #[test]
    fn a_denied_table_fails_the_batch() {
        tables();
        testing::remove_lookup("stores");
        testing::set_config("{}");
        let err = testing::try_run(with_prepare(prefetch, score), &[txn(CARD, 1001)]).unwrap_err();
        assert_eq!(
            err.message(),
            "lookup table `stores` denied: no table of this name is granted to this plugin's team"
        );
        // Even a batch without a usable transaction fails: the grant is
        // checked every batch.
        let err =
            testing::try_run(with_prepare(prefetch, score), &[TestEvent::new("x")]).unwrap_err();
        assert!(err.message().contains("`stores` denied"), "{err}");
    }

    #[test]
    fn recent_stores_in_every_form() {
        let parse = |json: &str| serde_json::from_str::<Customer>(json).map(|c| c.recent_stores);
        assert_eq!(
            parse(r#"{"home_lat":1,"home_lon":2,"recent_stores":"1433; 1201;"}"#).unwrap(),
            ["1433", "1201"]
        );
        assert_eq!(
            parse(r#"{"home_lat":1,"home_lon":2,"recent_stores":"[\"1433\", 1201]"}"#).unwrap(),
            ["1433", "1201"]
        );
        assert_eq!(
            parse(r#"{"home_lat":1,"home_lon":2,"recent_stores":[1433,"1201"]}"#).unwrap(),
            ["1433", "1201"]
        );
        assert!(
            parse(r#"{"home_lat":1,"home_lon":2,"recent_stores":""}"#)
                .unwrap()
                .is_empty()
        );
        assert!(parse(r#"{"home_lat":1,"home_lon":2}"#).unwrap().is_empty());
        assert!(parse(r#"{"home_lat":1,"home_lon":2,"recent_stores":{"a":1}}"#).is_err());
        assert!(parse(r#"{"home_lat":"91","home_lon":2}"#).is_err());
        assert!(parse(r#"{"home_lat":1,"home_lon":-180.5}"#).is_err());
        assert!(parse(r#"{"home_lat":1}"#).is_err());
    }

    #[test]
    fn rejects_bad_configs_naming_the_key() {
        let fail = |config: &str| {
            testing::set_config(config);
            testing::try_run(with_prepare(prefetch, score), &[TestEvent::new("{}")])
                .unwrap_err()
                .into_message()
        };
        let e = fail(r#"{"treshold": 50}"#);
        assert!(e.contains("unknown field `treshold`"), "{e}");
        let e = fail(r#"{"threshold": 101}"#);
        assert!(e.contains("`threshold` is 101"), "{e}");
        let e = fail(r#"{"penalty": -1}"#);
        assert!(e.starts_with("invalid plugin config: penalty: "), "{e}");
        let e = fail(r#"{"km_for_max": 0}"#);
        assert!(e.contains("`km_for_max` is 0"), "{e}");
        let e = fail(r#"{"on_unknown": "drop"}"#);
        assert!(e.starts_with("invalid plugin config: on_unknown: "), "{e}");
        let e = fail(r#"{"route": ""}"#);
        assert!(e.contains("`route` is empty"), "{e}");
    }

    #[test]
    fn doc_example_config_works() {
        tables();
        let out = run(
            &testing::doc_example_config(include_str!("lib.rs")),
            &[txn(CARD, 1002), txn("4999999999999999", 1002)],
        );
        assert_eq!(out[0].outcome, Outcome::route_to("high-risk"));
        assert_eq!(scores(&out), ["70", UNKNOWN]);
    }

    /// The example tables in `conf/data/`, as the host passes them, are
    /// entries this plugin can use.
    #[test]
    fn example_data_files_are_usable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf/data");
        let csv = std::fs::read_to_string(format!("{dir}/customers.csv")).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header, ["card", "home_lat", "home_lon", "recent_stores"]);
        let mut customers = 0;
        for line in lines {
            let row: serde_json::Map<String, serde_json::Value> = header
                .iter()
                .zip(line.split(','))
                .map(|(h, v)| ((*h).to_owned(), serde_json::Value::String(v.to_owned())))
                .collect();
            let json = serde_json::Value::Object(row).to_string();
            let c: Customer = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(
                c.recent_stores.iter().all(|s| s.parse::<u32>().is_ok()),
                "{line}"
            );
            customers += 1;
        }
        assert_eq!(customers, 500, "the demo feed's card pool");

        let jsonl = std::fs::read_to_string(format!("{dir}/stores.jsonl")).unwrap();
        let mut ids = Vec::new();
        for line in jsonl.lines() {
            let _: Store = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v["store"].as_str().unwrap().parse::<u32>().unwrap());
        }
        ids.sort_unstable();
        assert_eq!(
            ids,
            (1000..10_000).collect::<Vec<_>>(),
            "every store id of the demo feed"
        );
    }
}
