//! `noop`: an interceptor plugin that keeps every event unchanged.
//!
//! It measures what the plugin machinery itself costs (the benchmarks compare
//! a source with this plugin against one without plugins) and is the smallest
//! template for a new plugin: copy this crate, rename it, and change
//! [`keep`].
//!
//! # Configuration
//!
//! None: the `config` table must be empty or absent. Any key fails the batch
//! with `invalid plugin config: unknown field ...`.
//!
//! ```toml
//! [plugins.noop]
//! type = "interceptor"
//! path = "../target/wasm32-wasip2/plugin/noop.wasm"
//! ```

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// The (empty) configuration: rejects every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Keeps the event as it is.
#[sluice_guest::interceptor]
pub fn keep(_event: &mut Event) -> Result<Outcome, Error> {
    sluice_guest::config::<Config>()?;
    Ok(Outcome::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing::{self, TestEvent};

    #[test]
    fn keeps_everything_unmodified() {
        let out = testing::run(keep, &[TestEvent::new("a"), TestEvent::new("b")]);
        assert!(
            out.iter()
                .all(|o| o.outcome == Outcome::Keep && !o.modified)
        );
        assert_eq!(out[1].event.body_str(), Some("b"));
    }

    #[test]
    fn rejects_config_keys() {
        testing::set_config(r#"{"level": 1}"#);
        let err = testing::try_run(keep, &[TestEvent::new("a")]).unwrap_err();
        assert!(
            err.message()
                .starts_with("invalid plugin config: unknown field `level`"),
            "{err}"
        );
    }

    /// The `config` table of the TOML example in the crate docs, as the JSON
    /// the host passes, so that the documented example stays valid.
    fn doc_example_config() -> String {
        let example: String = include_str!("lib.rs")
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
        let plugin = doc["plugins"]
            .as_table()
            .and_then(|t| t.values().next())
            .expect("the example has a [plugins.<name>] table");
        let config = plugin
            .get("config")
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(Default::default()));
        serde_json::to_string(&config).expect("TOML converts to JSON")
    }

    #[test]
    fn doc_example_config_works() {
        testing::set_config(&doc_example_config());
        let out = testing::run(keep, &[TestEvent::new("a")]);
        assert_eq!(out[0].outcome, Outcome::Keep);
    }
}
