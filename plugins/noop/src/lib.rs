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

    #[test]
    fn doc_example_config_works() {
        testing::set_config(&sluice_guest::testing::doc_example_config(include_str!(
            "lib.rs"
        )));
        let out = testing::run(keep, &[TestEvent::new("a")]);
        assert_eq!(out[0].outcome, Outcome::Keep);
    }
}
