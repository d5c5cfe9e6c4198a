//! Modes `host` and `static`: write one header with a value fixed by the
//! configuration (Flume's `HostInterceptor` and `StaticInterceptor`).

use serde::Deserialize;
use sluice_guest::{Event, Outcome};

/// `mode = "host"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostConfig {
    /// Header to write.
    #[serde(default = "default_host_header")]
    header: String,
    /// Leave events that already have the header untouched.
    #[serde(default)]
    preserve_existing: bool,
    /// The host name or IP, literally.
    value: Option<String>,
    /// Environment variable holding the host name or IP.
    env: Option<String>,
    /// Flume's `useIP`: rejected with an explanation.
    use_ip: Option<serde::de::IgnoredAny>,
}

fn default_host_header() -> String {
    "host".to_owned()
}

impl HostConfig {
    /// The interceptor, reading `env` from the plugin's environment.
    pub(crate) fn build(self) -> Result<SetHeader, String> {
        self.build_with(|name| std::env::var(name))
    }

    /// The interceptor, reading `env` with `var`.
    fn build_with(
        self,
        var: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<SetHeader, String> {
        if self.use_ip.is_some() {
            return Err(
                "`use_ip` is not supported: a plugin cannot see the agent's \
                 addresses or host name; set `value`, or `env` to an environment \
                 variable holding the IP or name"
                    .into(),
            );
        }
        let value = match (self.value, self.env) {
            (Some(value), None) => {
                if value.is_empty() {
                    return Err("`value` is empty: give the host name or IP to write".into());
                }
                value
            }
            (None, Some(name)) => {
                if name.is_empty() {
                    return Err(
                        "`env` is empty: name the environment variable holding the host name or IP"
                            .into(),
                    );
                }
                let how = format!(
                    "list it in the `env` of the plugin's team (`[teams.<name>] env = [\"{name}\"]`) \
                     and set it in the agent's environment, or set `value` instead"
                );
                match var(&name) {
                    Ok(value) if !value.is_empty() => value,
                    Ok(_) => return Err(format!("environment variable `{name}` is empty")),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(format!(
                            "environment variable `{name}` is not passed to the plugin: {how}"
                        ));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(format!("environment variable `{name}` is not UTF-8"));
                    }
                }
            }
            (Some(_), Some(_)) => {
                return Err("`value` and `env` are both set: keep one".into());
            }
            (None, None) => {
                return Err("needs `value` (the host name or IP to write) or `env` \
                     (an environment variable holding it): a plugin cannot look up \
                     the agent's host name or addresses"
                    .into());
            }
        };
        SetHeader::new("header", self.header, value, self.preserve_existing)
    }
}

/// `mode = "static"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticConfig {
    /// Header to write.
    #[serde(default = "default_static_key")]
    key: String,
    /// Its value.
    #[serde(default = "default_static_value")]
    value: String,
    /// Leave events that already have the header untouched.
    #[serde(default = "yes")]
    preserve_existing: bool,
}

fn default_static_key() -> String {
    "key".to_owned()
}

fn default_static_value() -> String {
    "value".to_owned()
}

fn yes() -> bool {
    true
}

impl StaticConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<SetHeader, String> {
        SetHeader::new("key", self.key, self.value, self.preserve_existing)
    }
}

/// Sets `header` to `value`, unless `preserve_existing` and it is there.
#[derive(Debug)]
pub(crate) struct SetHeader {
    header: String,
    value: String,
    preserve_existing: bool,
}

impl SetHeader {
    /// `key` is the configuration key naming the header, for messages.
    fn new(
        key: &str,
        header: String,
        value: String,
        preserve_existing: bool,
    ) -> Result<Self, String> {
        if header.is_empty() {
            return Err(format!("`{key}` is empty: name the header to write"));
        }
        Ok(Self {
            header,
            value,
            preserve_existing,
        })
    }

    pub(crate) fn apply(&self, event: &mut Event) -> Outcome {
        if !(self.preserve_existing && event.header(&self.header).is_some()) {
            event.set_header(&self.header, self.value.as_bytes());
        }
        Outcome::Keep
    }
}

#[cfg(test)]
mod tests {
    use std::env::VarError;

    use super::*;
    use crate::tests::{fail, run};
    use sluice_guest::testing::TestEvent;

    fn events() -> [TestEvent; 2] {
        [
            TestEvent::new("a"),
            TestEvent::new("b")
                .with_header("host", "old")
                .with_header("key", "old")
                .with_header("other", "1")
                .with_header("host", "older"),
        ]
    }

    #[test]
    fn host_writes_the_configured_value() {
        let out = run(r#"{"mode": "host", "value": "10.0.0.7"}"#, &events());
        assert_eq!(out[0].event.header_str("host"), Some("10.0.0.7"));
        // Not preserved by default: replaces both `host` headers.
        let hosts: Vec<_> = out[1]
            .event
            .headers
            .iter()
            .filter(|(n, _)| n == "host")
            .collect();
        assert_eq!(hosts, [&("host".to_owned(), b"10.0.0.7".to_vec())]);
        assert_eq!(out[1].event.header_str("other"), Some("1"));
    }

    #[test]
    fn host_preserve_existing_and_header() {
        let out = run(
            r#"{"mode": "host", "value": "h1", "preserve_existing": true}"#,
            &events(),
        );
        assert_eq!(out[0].event.header_str("host"), Some("h1"));
        assert!(!out[1].modified);
        let out = run(
            r#"{"mode": "host", "value": "h1", "header": "agent"}"#,
            &events(),
        );
        assert_eq!(out[1].event.header_str("agent"), Some("h1"));
        assert_eq!(out[1].event.header_str("host"), Some("old"));
    }

    #[test]
    fn host_reads_a_passed_environment_variable() {
        // Any variable of the test process stands for one the team passes.
        let (name, value) = std::env::vars()
            .find(|(_, v)| !v.is_empty())
            .expect("the test process has an environment");
        let out = run(
            &serde_json::json!({"mode": "host", "env": name}).to_string(),
            &[TestEvent::new("a")],
        );
        assert_eq!(out[0].event.header_str("host"), Some(value.as_str()));
    }

    #[test]
    fn host_env_errors_say_how_to_pass_the_variable() {
        let build = |var: Result<String, VarError>| {
            let config: HostConfig = serde_json::from_str(r#"{"env": "POD_IP"}"#).expect("valid");
            config.build_with(move |_| var.clone())
        };
        let e = build(Err(VarError::NotPresent)).unwrap_err();
        assert_eq!(
            e,
            "environment variable `POD_IP` is not passed to the plugin: list it in the `env` \
             of the plugin's team (`[teams.<name>] env = [\"POD_IP\"]`) and set it in the \
             agent's environment, or set `value` instead"
        );
        let e = build(Ok(String::new())).unwrap_err();
        assert_eq!(e, "environment variable `POD_IP` is empty");
        let e = build(Err(VarError::NotUnicode("\u{fffd}".into()))).unwrap_err();
        assert_eq!(e, "environment variable `POD_IP` is not UTF-8");
        assert_eq!(build(Ok("10.1.2.3".into())).unwrap().value, "10.1.2.3");

        let e = fail(r#"{"mode": "host", "env": "SLUICE_SURELY_UNSET_VARIABLE_42"}"#);
        assert!(
            e.starts_with(
                "invalid plugin config: mode `host`: environment variable \
                 `SLUICE_SURELY_UNSET_VARIABLE_42` is not passed to the plugin"
            ),
            "{e}"
        );
    }

    #[test]
    fn host_config_errors() {
        let e = fail(r#"{"mode": "host"}"#);
        assert!(
            e.starts_with("invalid plugin config: mode `host`: needs `value`"),
            "{e}"
        );
        assert!(fail(r#"{"mode": "host", "value": "a", "env": "B"}"#).contains("both set"));
        assert!(fail(r#"{"mode": "host", "value": ""}"#).contains("`value` is empty"));
        assert!(fail(r#"{"mode": "host", "env": ""}"#).contains("`env` is empty"));
        assert!(
            fail(r#"{"mode": "host", "value": "a", "header": ""}"#).contains("`header` is empty")
        );
        let e = fail(r#"{"mode": "host", "value": "a", "use_ip": false}"#);
        assert!(e.contains("`use_ip` is not supported"), "{e}");
        assert!(
            fail(r#"{"mode": "host", "value": "a", "hostHeader": "h"}"#)
                .contains("unknown field `hostHeader`")
        );
    }

    #[test]
    fn static_defaults_follow_flume() {
        // key = "key", value = "value", preserve_existing = true.
        let out = run(r#"{"mode": "static"}"#, &events());
        assert_eq!(out[0].event.header_str("key"), Some("value"));
        assert!(!out[1].modified);
        assert_eq!(out[1].event.header_str("key"), Some("old"));
    }

    #[test]
    fn static_overwrites_without_preserve_existing() {
        let out = run(
            r#"{"mode": "static", "key": "key", "value": "new", "preserve_existing": false}"#,
            &events(),
        );
        assert_eq!(out[0].event.header_str("key"), Some("new"));
        assert_eq!(out[1].event.header_str("key"), Some("new"));
        assert_eq!(out[1].event.headers.len(), 4);
        // An empty value is a value.
        let out = run(r#"{"mode": "static", "key": "k", "value": ""}"#, &events());
        assert_eq!(out[0].event.header_str("k"), Some(""));
    }

    #[test]
    fn static_config_errors() {
        assert!(fail(r#"{"mode": "static", "key": ""}"#).contains("mode `static`: `key` is empty"));
        let e = fail(r#"{"mode": "static", "value": 5}"#);
        assert!(
            e.contains("invalid type: integer `5`, expected a string"),
            "{e}"
        );
    }
}
