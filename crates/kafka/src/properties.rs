//! librdkafka properties as written in a component's `kafka` table (the
//! `properties` table of `kafka` channels and lookup tables): literal values,
//! and values read from a file or an environment variable, so that secrets
//! need not be written in the configuration.
//!
//! ```toml
//! [sources.orders.kafka]
//! "security.protocol" = "sasl_ssl"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "sluice"
//! "sasl.password" = { file = "/run/secrets/kafka-password" }  # or { env = "KAFKA_PASSWORD" }
//! "ssl.ca.location" = "/etc/kafka/ca.pem"
//! ```
//!
//! A `{ file = ... }` value is the file's content with one trailing newline
//! removed; an `{ env = ... }` value is the variable's. Both are checked when
//! the configuration is loaded (the file readable, the variable set and not
//! empty) and read when the client is built.
//!
//! Secret values ([`is_secret_key`]: passwords, private keys, OAuth client
//! secrets) never appear in Sluice's output: the `Debug` form of a table
//! shows them as [`REDACTED`], and every value given to a client under a
//! secret key is remembered ([`register_secret`]) so that librdkafka's log
//! lines and error messages can be scrubbed ([`redact`]) before they are
//! logged or returned.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::RwLock;

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// What a secret is replaced with in logs, errors and `Debug` output.
pub(crate) const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed from log lines: replacing one
/// or two characters everywhere would garble every message and hide nothing.
const MIN_SCRUBBED_LEN: usize = 4;

/// Why a property table or value cannot be used. Messages name the table,
/// the property, the file or the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// A `{ file = ... }` that cannot be read.
    #[error("cannot read `{}`: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A `{ file = ... }` whose content is not UTF-8.
    #[error("`{}` is not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    /// A `{ file = ... }` that is empty (after one trailing newline).
    #[error("`{}` is empty", .0.display())]
    EmptyFile(PathBuf),
    /// An `{ env = ... }` naming an unset variable.
    #[error("environment variable `{0}` is not set (or not valid Unicode)")]
    EnvUnset(String),
    /// An `{ env = ... }` naming an empty variable.
    #[error("environment variable `{0}` is empty")]
    EnvEmpty(String),
    /// A property with a blank name.
    #[error("`{table}` has an empty property name ({name:?})")]
    EmptyName {
        /// `kafka` or `properties`.
        table: String,
        /// The blank name as written.
        name: String,
    },
    /// A property Sluice sets from one of its own keys.
    #[error("`{table}.\"{property}\"` duplicates the `{key}` key; set `{key}` instead")]
    OwnKey {
        /// `kafka` or `properties`.
        table: String,
        /// The librdkafka property.
        property: &'static str,
        /// Sluice's key for it.
        key: &'static str,
    },
    /// A value of a table that cannot be read at load.
    #[error("`{table}.\"{property}\"`: {source}")]
    InTable {
        /// `kafka` or `properties`.
        table: String,
        /// The property.
        property: String,
        /// Why.
        source: Box<PropertyError>,
    },
    /// A value that cannot be read when a client is configured.
    #[error("property \"{property}\": {source}")]
    Property {
        /// The property.
        property: String,
        /// Why.
        source: Box<PropertyError>,
    },
}

/// A librdkafka property value as written in TOML.
#[derive(Clone, PartialEq)]
pub enum KafkaValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (`"batch.num.messages"` never is, but TOML allows it).
    Float(f64),
    /// A string, passed as is.
    Str(String),
    /// `{ file = "/run/secrets/kafka-password" }`: the file's content, one
    /// trailing newline removed.
    File(PathBuf),
    /// `{ env = "KAFKA_PASSWORD" }`: the environment variable's value.
    Env(String),
}

impl fmt::Debug for KafkaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::File(p) => write!(f, "{{ file = {:?} }}", p.display().to_string()),
            Self::Env(v) => write!(f, "{{ env = {v:?} }}"),
        }
    }
}

impl KafkaValue {
    /// Whether the value is literally `false` (`false` or `"false"`).
    pub fn is_false(&self) -> bool {
        match self {
            Self::Bool(b) => !b,
            Self::Str(s) => s == "false",
            _ => false,
        }
    }

    /// The text librdkafka gets: a literal as written, a reference read now
    /// (`env` looks variables up). The error says what could not be read,
    /// never a value.
    pub(crate) fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, PropertyError> {
        match self {
            Self::Bool(b) => Ok(b.to_string()),
            Self::Int(i) => Ok(i.to_string()),
            Self::Float(x) => Ok(x.to_string()),
            Self::Str(s) => Ok(s.clone()),
            Self::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| PropertyError::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let text =
                    String::from_utf8(bytes).map_err(|_| PropertyError::NotUtf8(path.clone()))?;
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                if text.is_empty() {
                    return Err(PropertyError::EmptyFile(path.clone()));
                }
                Ok(text.to_owned())
            }
            Self::Env(name) => match env(name) {
                None => Err(PropertyError::EnvUnset(name.clone())),
                Some(v) if v.is_empty() => Err(PropertyError::EnvEmpty(name.clone())),
                Some(v) => Ok(v),
            },
        }
    }

    /// [`Self::resolve_with`] the process environment.
    pub fn resolve(&self) -> Result<String, PropertyError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }
}

impl<'de> Deserialize<'de> for KafkaValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = KafkaValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a string, number or boolean, or a table `{ file = \"PATH\" }` or `{ env = \"VARIABLE\" }`",
        )
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KafkaValue, E> {
        Ok(KafkaValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KafkaValue, E> {
        Ok(KafkaValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KafkaValue, E> {
        i64::try_from(v)
            .map(KafkaValue::Int)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KafkaValue, E> {
        Ok(KafkaValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KafkaValue, E> {
        Ok(KafkaValue::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<KafkaValue, E> {
        Ok(KafkaValue::Str(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KafkaValue, A::Error> {
        const FORMS: &str = "`{ file = \"PATH\" }` or `{ env = \"VARIABLE\" }`";
        let mut value = None;
        while let Some(key) = map.next_key::<String>()? {
            if value.is_some() {
                return Err(de::Error::custom(format!(
                    "a property value table has exactly one key: {FORMS}"
                )));
            }
            value = Some(match key.as_str() {
                "file" => KafkaValue::File(map.next_value::<PathBuf>()?),
                "env" => KafkaValue::Env(map.next_value::<String>()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a property value; write {FORMS}"
                    )));
                }
            });
        }
        value.ok_or_else(|| de::Error::custom(format!("empty property value table; write {FORMS}")))
    }
}

/// A component's table of librdkafka properties, by property name. Derefs
/// to the map; its `Debug` form redacts the values of secret keys.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, KafkaValue>);

impl KafkaProperties {
    /// The key a validation message about these properties is at, below the
    /// component's table: `[table, prop]` when the message starts with
    /// ``"`<table>.\"<prop>\"`"``, `[table]` for a `properties` table,
    /// nothing otherwise (the table as a whole).
    pub fn key_of(&self, table: &str, message: &str) -> Vec<String> {
        if let Some(prop) = self
            .keys()
            .find(|prop| message.starts_with(&format!("`{table}.\"{prop}\"`")))
        {
            vec![table.to_owned(), prop.clone()]
        } else if table == "properties" {
            vec![table.to_owned()]
        } else {
            Vec::new()
        }
    }

    /// A component's validation message as a key error, located at the
    /// property it names (see [`KafkaProperties::key_of`]).
    pub fn invalid(
        &self,
        table: &str,
        sluice_core::keys::Invalid(message): sluice_core::keys::Invalid,
    ) -> sluice_core::keys::KeyError {
        sluice_core::keys::KeyError::Invalid {
            at: self.key_of(table, &message),
            message,
        }
    }
}

impl Deref for KafkaProperties {
    type Target = BTreeMap<String, KafkaValue>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for KafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, KafkaValue)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, KafkaValue)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            match v {
                // A reference names where the secret is, not the secret.
                KafkaValue::File(_) | KafkaValue::Env(_) => map.entry(k, v),
                _ if is_secret_key(k) => map.entry(k, &format_args!("{REDACTED}")),
                _ => map.entry(k, v),
            };
        }
        map.finish()
    }
}

impl KafkaProperties {
    /// Checks the property names and that every `file`/`env` value can be
    /// read now; `table` is the table's key (`kafka`, `properties`), which
    /// the message names with the property.
    pub fn check(&self, table: &str) -> Result<(), PropertyError> {
        self.check_with(table, |name| std::env::var(name).ok())
    }

    /// [`Self::check`] with variables looked up by `env`.
    pub(crate) fn check_with(
        &self,
        table: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), PropertyError> {
        if let Some(k) = self.0.keys().find(|k| k.trim().is_empty()) {
            return Err(PropertyError::EmptyName {
                table: table.to_owned(),
                name: k.clone(),
            });
        }
        for (key, value) in &self.0 {
            if matches!(value, KafkaValue::File(_) | KafkaValue::Env(_)) {
                value
                    .resolve_with(&env)
                    .map_err(|e| PropertyError::InTable {
                        table: table.to_owned(),
                        property: key.clone(),
                        source: Box::new(e),
                    })?;
            }
        }
        Ok(())
    }

    /// Sets every property on `config`, overriding what is there, reading
    /// `file` and `env` values now. Values of secret keys are registered for
    /// [`redact`]. The error names the property, never a value.
    pub fn apply(&self, config: &mut ClientConfig) -> Result<(), PropertyError> {
        for (key, value) in &self.0 {
            let text = value.resolve().map_err(|e| PropertyError::Property {
                property: key.clone(),
                source: Box::new(e),
            })?;
            if is_secret_key(key) {
                register_secret(&text);
            }
            config.set(key, text);
        }
        Ok(())
    }
}

/// Whether the value of librdkafka property `key` is a secret: any key that
/// mentions a password, secret or passphrase (`sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `ssl.truststore.password`,
/// `sasl.oauthbearer.client.secret`, ...), private keys given inline
/// (`ssl.key.pem`, `ssl_key`, `sasl.oauthbearer.assertion.private.key.pem`)
/// and `sasl.oauthbearer.config`, which may hold credentials.
/// `sasl.username` is not a secret.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    ["password", "secret", "passphrase"]
        .iter()
        .any(|word| key.contains(word))
        || key.starts_with("ssl_key")
        || key == "sasl.oauthbearer.config"
        || (key.ends_with(".pem") && key.contains("key"))
}

/// Secret values given to clients of this process, longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` as a secret that [`redact`] removes from text.
pub(crate) fn register_secret(value: &str) {
    if value.chars().count() < MIN_SCRUBBED_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_owned());
        // Longest first, so a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(toml_text: &str) -> Result<KafkaProperties, toml::de::Error> {
        toml::from_str(toml_text)
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_PASSWORD" => Some("from-the-environment".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn literals_files_and_variables_parse() {
        let p = props(
            r#"
            "linger.ms" = 10
            "check.crcs" = true
            "security.protocol" = "sasl_ssl"
            "sasl.password" = { env = "KAFKA_PASSWORD" }
            "ssl.key.password" = { file = "/run/secrets/key-password" }
            "#,
        )
        .unwrap();
        assert_eq!(p["linger.ms"], KafkaValue::Int(10));
        assert_eq!(p["check.crcs"], KafkaValue::Bool(true));
        assert_eq!(p["sasl.password"], KafkaValue::Env("KAFKA_PASSWORD".into()));
        assert_eq!(
            p["ssl.key.password"],
            KafkaValue::File("/run/secrets/key-password".into())
        );
        assert_eq!(
            p["sasl.password"].resolve_with(env).unwrap(),
            "from-the-environment"
        );
    }

    #[test]
    fn malformed_value_tables_are_refused() {
        let err = props("\"sasl.password\" = { path = \"/x\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `path`"), "{err}");
        let err = props("\"sasl.password\" = { file = \"/x\", env = \"Y\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one key"), "{err}");
        let err = props("\"sasl.password\" = {}").unwrap_err().to_string();
        assert!(err.contains("empty property value table"), "{err}");
        let err = props("\"sasl.password\" = { env = 3 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("string"), "{err}");
        assert!(props("\"a\" = [1]").is_err());
    }

    #[test]
    fn a_file_value_is_its_content_less_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let read = |content: &str| {
            let path = dir.path().join("secret");
            std::fs::write(&path, content).unwrap();
            KafkaValue::File(path).resolve()
        };
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n\n").unwrap(), "s3cret\n");
        assert_eq!(read("  s3cret").unwrap(), "  s3cret");
        assert!(read("\n").unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn unreadable_references_name_the_key_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let mut p = KafkaProperties::default();
        p.insert("sasl.password".into(), KafkaValue::File(missing.clone()));
        let err = p.check_with("kafka", env).unwrap_err().to_string();
        assert!(
            err.starts_with("`kafka.\"sasl.password\"`: cannot read `")
                && err.contains(&missing.display().to_string()),
            "{err}"
        );

        let mut p = KafkaProperties::default();
        p.insert("sasl.password".into(), KafkaValue::Env("NOPE".into()));
        let err = p.check_with("properties", env).unwrap_err().to_string();
        assert_eq!(
            err,
            "`properties.\"sasl.password\"`: environment variable `NOPE` is not set (or not valid Unicode)"
        );
        p.insert("sasl.password".into(), KafkaValue::Env("EMPTY".into()));
        let err = p.check_with("kafka", env).unwrap_err().to_string();
        assert!(
            err.ends_with("environment variable `EMPTY` is empty"),
            "{err}"
        );
        p.insert(
            "sasl.password".into(),
            KafkaValue::Env("KAFKA_PASSWORD".into()),
        );
        p.check_with("kafka", env).unwrap();
    }

    #[test]
    fn secret_keys() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "ssl.key.pem",
            "ssl_key",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.pem",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "my.custom.Password",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "sasl.username",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.certificate.pem",
            "ssl.ca.pem",
            "security.protocol",
            "linger.ms",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn debug_redacts_secret_values() {
        let p = props(
            r#"
            "sasl.username" = "sluice"
            "sasl.password" = "hunter2-debug"
            "ssl.key.pem" = "-----BEGIN PRIVATE KEY-----"
            "sasl.oauthbearer.client.secret" = "oauth-secret-debug"
            "ssl.keystore.password" = { env = "KEYSTORE_PASSWORD" }
            "linger.ms" = 5
            "#,
        )
        .unwrap();
        let shown = format!("{p:?}");
        for secret in ["hunter2-debug", "BEGIN PRIVATE KEY", "oauth-secret-debug"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("\"sasl.password\": [redacted]"), "{shown}");
        assert!(shown.contains("\"sasl.username\": \"sluice\""), "{shown}");
        assert!(shown.contains("{ env = \"KEYSTORE_PASSWORD\" }"), "{shown}");
        assert!(shown.contains("\"linger.ms\": 5"), "{shown}");
    }

    #[test]
    fn applied_secrets_are_scrubbed_from_text() {
        let mut p = KafkaProperties::default();
        p.insert(
            "sasl.password".into(),
            KafkaValue::Str("applied-secret-9f3e".into()),
        );
        p.insert("sasl.username".into(), KafkaValue::Str("user-9f3e".into()));
        p.insert("client.rack".into(), KafkaValue::Int(3));
        let mut config = ClientConfig::new();
        p.apply(&mut config).unwrap();
        assert_eq!(config.get("sasl.password"), Some("applied-secret-9f3e"));
        assert_eq!(config.get("client.rack"), Some("3"));
        assert_eq!(
            redact("login user-9f3e with applied-secret-9f3e failed"),
            "login user-9f3e with [redacted] failed"
        );
        assert!(matches!(redact("nothing to hide"), Cow::Borrowed(_)));
        // Too short to scrub without garbling every line.
        register_secret("abc");
        assert_eq!(redact("abc"), "abc");
    }

    #[test]
    fn apply_names_the_property_that_cannot_be_read() {
        let mut p = KafkaProperties::default();
        p.insert(
            "sasl.password".into(),
            KafkaValue::Env("SLUICE_SURELY_UNSET_9d1e".into()),
        );
        let err = p.apply(&mut ClientConfig::new()).unwrap_err().to_string();
        assert!(
            err.starts_with("property \"sasl.password\": environment variable"),
            "{err}"
        );
    }
}
