//! `[admin]`: where the admin endpoint ([`crate::admin`]) listens and the
//! token guarding it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The keys of `[admin]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminKeys {
    /// Address and port to listen on, e.g. `"127.0.0.1:9464"`. Required: the
    /// endpoint is off unless `[admin]` is present. An address other than
    /// loopback needs a token.
    pub listen: SocketAddr,
    /// A file holding the bearer token (surrounding whitespace is ignored),
    /// relative to the configuration file. Every path but `/health` and
    /// `/ready` then needs `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token (instead of
    /// `token_file`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Most connections served at once; more wait to be accepted. Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    64
}

pub use crate::keys::Token;

/// A checked `[admin]`: its address and token, read.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The bearer token, if one is set.
    pub token: Option<Token>,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// A problem with `[admin]`: the key it concerns and what is wrong.
#[derive(Debug)]
pub struct AdminKeyError {
    /// The key under `admin`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl AdminKeys {
    /// Checks the keys and reads the token (`base`: the configuration
    /// file's directory; `env`: how variables are looked up).
    pub fn check(
        self,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AdminConfig, AdminKeyError> {
        let err = |key, message: String| AdminKeyError { key, message };
        if self.max_connections == 0 || self.max_connections > 10_000 {
            return Err(err("max_connections", "must be from 1 to 10000".into()));
        }
        let token = match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "token_env",
                    "give `token_file` or `token_env`, not both".into(),
                ));
            }
            (Some(file), None) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| err("token_file", format!("reading {}: {e}", path.display())))?;
                Some(non_empty(
                    text,
                    "token_file",
                    &format!("{} is empty", path.display()),
                )?)
            }
            (None, Some(var)) => {
                let text = env(var).unwrap_or_default();
                Some(non_empty(
                    text,
                    "token_env",
                    &format!("environment variable `{var}` is unset or empty"),
                )?)
            }
            (None, None) => None,
        };
        if token.is_none() && !self.listen.ip().is_loopback() {
            return Err(err(
                "listen",
                format!(
                    "{} is reachable from other hosts: set `token_file` or `token_env` so that only holders of the token read metrics and events",
                    self.listen
                ),
            ));
        }
        Ok(AdminConfig {
            listen: self.listen,
            token,
            max_connections: self.max_connections,
        })
    }
}

fn non_empty(text: String, key: &'static str, why: &str) -> Result<Token, AdminKeyError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AdminKeyError {
            key,
            message: why.to_owned(),
        });
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AdminKeyError {
            key,
            message: "the token must be one word of visible characters".into(),
        });
    }
    Ok(Token::new(trimmed).expect("checked non-empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(listen: &str) -> AdminKeys {
        AdminKeys {
            listen: listen.parse().unwrap(),
            token_file: None,
            token_env: None,
            max_connections: 64,
        }
    }

    #[test]
    fn a_token_matches_only_itself() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cretX"));
        assert!(!t.matches(b"S3cret"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn beyond_loopback_a_token_is_required() {
        let e = keys("0.0.0.0:9464")
            .check(Path::new("."), |_| None)
            .unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("token_file"), "{}", e.message);
        assert!(
            keys("127.0.0.1:9464")
                .check(Path::new("."), |_| None)
                .is_ok()
        );
        let mut k = keys("0.0.0.0:9464");
        k.token_env = Some("TOKEN".into());
        let c = k
            .check(Path::new("."), |v| (v == "TOKEN").then(|| " abc \n".into()))
            .unwrap();
        assert_eq!(c.token.unwrap().expose(), "abc");
    }

    #[test]
    fn token_sources_are_checked() {
        let mut k = keys("127.0.0.1:1");
        k.token_env = Some("UNSET".into());
        assert_eq!(
            k.check(Path::new("."), |_| None).unwrap_err().key,
            "token_env"
        );
        let mut k = keys("127.0.0.1:1");
        k.token_file = Some("no/such/file".into());
        let e = k.check(Path::new("."), |_| None).unwrap_err();
        assert!(
            e.key == "token_file" && e.message.contains("no/such/file"),
            "{e:?}"
        );
        let mut k = keys("127.0.0.1:1");
        k.token_env = Some("T".into());
        k.token_file = Some("f".into());
        assert_eq!(
            k.check(Path::new("."), |_| Some("x".into()))
                .unwrap_err()
                .key,
            "token_env"
        );
        let mut k = keys("127.0.0.1:1");
        k.token_env = Some("T".into());
        let e = k
            .check(Path::new("."), |_| Some("two words".into()))
            .unwrap_err();
        assert!(e.message.contains("one word"), "{e:?}");
    }
}
