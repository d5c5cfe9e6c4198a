//! Reading one component's own keys. A component type (a sink, say) turns
//! the TOML table of `[sinks.<name>]` into its checked configuration, or
//! into a [`KeyError`] that says which key is wrong and why; the
//! configuration loader (`sluice::config`) adds the table's own path and
//! locates it in the file (file, line, column). Components depend on this
//! leaf module, never on the loader.

use serde::de::DeserializeOwned;

/// Why a component's table is not a valid configuration.
#[derive(Debug)]
pub enum KeyError {
    /// A key that does not deserialize (unknown, of the wrong type, a bad
    /// unit), with serde's path to it.
    Keys(serde_path_to_error::Error<toml::de::Error>),
    /// Keys that deserialize but do not make sense together or alone.
    Invalid {
        /// The key at fault, below the component's table (empty: the table
        /// as a whole).
        at: Vec<String>,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl KeyError {
    /// A problem of the table as a whole.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            at: Vec::new(),
            message: message.into(),
        }
    }
}

crate::message_error! {
    /// Why a value a component read is not acceptable: the message says which
    /// value and what is expected. Becomes a [`KeyError::Invalid`] of the table.
    pub struct Invalid;
}

/// `(key, message)`, as component `validate` functions report a key at
/// fault: a problem of that key.
impl From<(&str, String)> for KeyError {
    fn from((key, message): (&str, String)) -> Self {
        Self::Invalid {
            at: vec![key.to_owned()],
            message,
        }
    }
}

impl From<Invalid> for KeyError {
    fn from(e: Invalid) -> Self {
        Self::invalid(e.0)
    }
}

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding whitespace removed); `None` if
    /// that leaves nothing.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// Whether `presented` is the token, comparing every byte whatever the
    /// first difference (no timing hint about how much matched).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut diff = (expected.len() != presented.len()) as u8;
        for (i, b) in expected.iter().enumerate() {
            diff |= b ^ presented.get(i).copied().unwrap_or(!b);
        }
        diff == 0
    }

    /// The token's text (to send it, as `sluice tap` does).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Deserializes a component's table into its configuration type.
pub fn deserialize<T: DeserializeOwned>(table: toml::Value) -> Result<T, KeyError> {
    serde_path_to_error::deserialize(table).map_err(KeyError::Keys)
}
