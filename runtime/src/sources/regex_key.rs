//! Regular expressions in source keys (`include_pattern`,
//! `multiline_start`, ...): compiled when the configuration is read, so a
//! bad one is an error at `file:line:col`. Use with
//! `#[serde(default, with = "super::regex_key")]` on an `Option<Regex>`.

use regex::Regex;
use serde::{Deserialize, Deserializer};

/// An optional regular expression, compiled.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    Regex::new(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("not a regular expression: {e}")))
}
