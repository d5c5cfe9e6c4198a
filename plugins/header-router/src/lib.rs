//! `header-router`: a router plugin that sends each event to the channel
//! named for the value of one of its headers.
//!
//! Routing never changes or copies an event, and the route names come from
//! the configuration, so routing costs no allocation per event.
//!
//! # Configuration
//!
//! ```toml
//! [plugins.by-type]
//! type = "router"
//! path = "../target/wasm32-wasip2/plugin/header_router.wasm"
//! config = { header = "type", routes = { order = "orders", refund = "refunds" }, default = "other" }
//! ```
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `header` | string | required | Name of the header to look at (case-sensitive). |
//! | `routes` | table of strings | required | Header value → channel name. Values match exactly (case-sensitive, no trimming). At least one entry. |
//! | `default` | string | none | Channel for events whose header is missing or has a value not in `routes`. Without it, such events are kept and go to the source's `channels`. |
//!
//! Channel names must be channels of the source; the host checks that. Unknown
//! keys or an empty `header`, `routes` or channel name fail the batch with a
//! message naming the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// The plugin configuration (see the crate docs).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    header: String,
    routes: BTreeMap<String, String>,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header: String,
    routes: BTreeMap<String, String>,
    default: Option<String>,
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        if raw.header.is_empty() {
            return Err("`header` is empty: name the header to route by".into());
        }
        if raw.routes.is_empty() {
            return Err(
                "`routes` is empty: add at least one `\"<header value>\" = \"<channel>\"`".into(),
            );
        }
        if let Some((value, _)) = raw.routes.iter().find(|(_, channel)| channel.is_empty()) {
            return Err(format!("`routes.{value}` names no channel"));
        }
        if raw.default.as_deref() == Some("") {
            return Err("`default` is empty: name a channel or leave the key out".into());
        }
        Ok(Config {
            header: raw.header,
            routes: raw.routes,
            default: raw.default,
        })
    }
}

/// Routes the event by its header.
#[sluice_guest::router]
pub fn route(event: &mut Event) -> Result<Outcome, Error> {
    let config: &'static Config = sluice_guest::config()?;
    let channel = event
        .header(&config.header)
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| config.routes.get(value))
        .or(config.default.as_ref());
    Ok(match channel {
        Some(channel) => Outcome::route_to(channel.as_str()),
        None => Outcome::Keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent};

    fn events() -> Vec<TestEvent> {
        vec![
            TestEvent::new("1").with_header("type", "order"),
            TestEvent::new("2").with_header("type", "refund"),
            TestEvent::new("3").with_header("type", "Order"),
            TestEvent::new("4"),
            TestEvent::new("5").with_header("type", "order"),
        ]
    }

    #[test]
    fn routes_by_header_with_default() {
        testing::set_config(
            r#"{"header": "type", "routes": {"order": "orders", "refund": "refunds"}, "default": "other"}"#,
        );
        let out = testing::run(route, &events());
        let routes: Vec<_> = out.iter().map(|o| o.outcome.clone()).collect();
        assert_eq!(
            routes,
            [
                Outcome::route_to("orders"),
                Outcome::route_to("refunds"),
                Outcome::route_to("other"),
                Outcome::route_to("other"),
                Outcome::route_to("orders"),
            ]
        );
        assert!(out.iter().all(|o| !o.modified));
    }

    #[test]
    fn unmatched_events_are_kept_without_default() {
        testing::set_config(r#"{"header": "type", "routes": {"order": "orders"}}"#);
        let out = testing::run(route, &events());
        assert_eq!(out[0].outcome, Outcome::route_to("orders"));
        assert_eq!(out[1].outcome, Outcome::Keep);
        assert_eq!(out[3].outcome, Outcome::Keep);
    }

    #[test]
    fn rejects_bad_configs_naming_the_key() {
        let fail = |config: &str| {
            testing::set_config(config);
            testing::try_run(route, &[TestEvent::new("x")])
                .unwrap_err()
                .into_message()
        };
        assert!(fail(r#"{"routes": {"a": "b"}}"#).contains("missing field `header`"));
        assert!(fail(r#"{"header": "t", "routes": {}}"#).contains("`routes` is empty"));
        assert!(fail(r#"{"header": "t", "routes": {"a": ""}}"#).contains("`routes.a`"));
        assert!(
            fail(r#"{"header": "t", "routes": {"a": "b"}, "defualt": "c"}"#)
                .contains("unknown field `defualt`")
        );
        let e = fail(r#"{"header": "t", "routes": {"a": 1}}"#);
        assert!(
            e.starts_with("invalid plugin config: routes.a: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn doc_example_config_works() {
        testing::set_config(&sluice_guest::testing::doc_example_config(include_str!(
            "lib.rs"
        )));
        let out = testing::run(route, &events());
        assert_eq!(out[0].outcome, Outcome::route_to("orders"));
        assert_eq!(out[1].outcome, Outcome::route_to("refunds"));
        assert_eq!(out[3].outcome, Outcome::route_to("other"));
    }
}
