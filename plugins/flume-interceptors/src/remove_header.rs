//! Mode `remove_header`: remove headers by name, by list or by regex
//! (Flume's `RemoveHeaderInterceptor`).

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use sluice_guest::{Event, Outcome};

/// Flume's default `fromListSeparator`.
const DEFAULT_SEPARATOR: &str = r"\s*,\s*";

/// `mode = "remove_header"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveHeaderConfig {
    /// One header name, exact.
    with_name: Option<String>,
    /// Header names, exact: a list, or a string split by `from_list_separator`.
    from_list: Option<NameList>,
    /// Regex splitting a `from_list` string.
    from_list_separator: Option<String>,
    /// Regex that must match a whole header name.
    matching: Option<String>,
}

/// `from_list`: a list of names, or Flume's separated string.
#[derive(Debug)]
enum NameList {
    Text(String),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameListVisitor;

        impl<'de> Visitor<'de> for NameListVisitor {
            type Value = NameList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of header names, or a string of names separated by `from_list_separator`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NameList, E> {
                Ok(NameList::Text(v.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(NameList::Names(names))
            }
        }

        deserializer.deserialize_any(NameListVisitor)
    }
}

impl RemoveHeaderConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<RemoveHeader, String> {
        if self.with_name.is_none() && self.from_list.is_none() && self.matching.is_none() {
            return Err(
                "needs at least one of `with_name`, `from_list` and `matching`: which headers to remove"
                    .into(),
            );
        }
        if self.with_name.as_deref() == Some("") {
            return Err("`with_name` is empty: name the header to remove".into());
        }
        let names = match self.from_list {
            None => {
                if self.from_list_separator.is_some() {
                    return Err(
                        "`from_list_separator` applies only with a string `from_list`".into(),
                    );
                }
                Vec::new()
            }
            Some(NameList::Names(names)) => {
                if self.from_list_separator.is_some() {
                    return Err(
                        "`from_list_separator` applies only with a string `from_list`, not a list"
                            .into(),
                    );
                }
                if names.iter().any(String::is_empty) {
                    return Err("`from_list` has an empty name".into());
                }
                names
            }
            Some(NameList::Text(text)) => {
                let separator = self
                    .from_list_separator
                    .as_deref()
                    .unwrap_or(DEFAULT_SEPARATOR);
                if separator.is_empty() {
                    return Err("`from_list_separator` is empty".into());
                }
                let separator = crate::compile("from_list_separator", separator)?;
                // As Java's `split`: the pieces between separators, here
                // without empty ones (no header has an empty name).
                separator
                    .split(&text)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
        };
        let matching = match self.matching {
            None => None,
            Some(pattern) => {
                crate::compile("matching", &pattern)?;
                // Java's `matches()`: the whole name.
                Some(crate::compile("matching", &format!(r"\A(?:{pattern})\z"))?)
            }
        };
        Ok(RemoveHeader {
            with_name: self.with_name,
            names,
            matching,
        })
    }
}

/// Removes every header selected by name, list or regex.
#[derive(Debug)]
pub(crate) struct RemoveHeader {
    with_name: Option<String>,
    names: Vec<String>,
    /// Anchored at both ends.
    matching: Option<Regex>,
}

impl RemoveHeader {
    pub(crate) fn apply(&self, event: &mut Event) -> Outcome {
        if let Some(name) = &self.with_name {
            event.remove_header(name);
        }
        for name in &self.names {
            event.remove_header(name);
        }
        if let Some(regex) = &self.matching {
            // Allocates only when a name matches.
            let doomed: Vec<String> = event
                .headers()
                .filter(|(name, _)| regex.is_match(name))
                .map(|(name, _)| name.to_owned())
                .collect();
            for name in &doomed {
                event.remove_header(name);
            }
        }
        Outcome::Keep
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{fail, run};
    use sluice_guest::testing::{TestEvent, TestOutput};

    fn event() -> TestEvent {
        TestEvent::new("body")
            .with_header("password", "p")
            .with_header("token", "t")
            .with_header("keep", "k")
            .with_header("secret", "s")
            .with_header("x-debug-a", "1")
            .with_header("my-x-debug-a", "2")
            .with_header("password", "p2")
    }

    fn names(out: &TestOutput) -> Vec<&str> {
        out.event.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn with_name_removes_every_header_of_that_name() {
        let out = run(
            r#"{"mode": "remove_header", "with_name": "password"}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            ["token", "keep", "secret", "x-debug-a", "my-x-debug-a"]
        );
        // Exact, case-sensitive.
        let out = run(
            r#"{"mode": "remove_header", "with_name": "Password"}"#,
            &[event()],
        );
        assert!(!out[0].modified);
    }

    #[test]
    fn from_list_as_array_or_separated_string() {
        let out = run(
            r#"{"mode": "remove_header", "from_list": ["token", "secret", "absent"]}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            ["password", "keep", "x-debug-a", "my-x-debug-a", "password"]
        );
        let out = run(
            r#"{"mode": "remove_header", "from_list": "token ,secret,  absent,"}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            ["password", "keep", "x-debug-a", "my-x-debug-a", "password"]
        );
        let out = run(
            r#"{"mode": "remove_header", "from_list": "token|keep", "from_list_separator": "\\|"}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            [
                "password",
                "secret",
                "x-debug-a",
                "my-x-debug-a",
                "password"
            ]
        );
    }

    #[test]
    fn matching_must_match_the_whole_name() {
        let out = run(
            r#"{"mode": "remove_header", "matching": "x-debug-.*"}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            [
                "password",
                "token",
                "keep",
                "secret",
                "my-x-debug-a",
                "password"
            ]
        );
        // An alternation is anchored as a whole.
        let out = run(
            r#"{"mode": "remove_header", "matching": "keep|pass"}"#,
            &[event()],
        );
        assert_eq!(
            names(&out[0]),
            [
                "password",
                "token",
                "secret",
                "x-debug-a",
                "my-x-debug-a",
                "password"
            ]
        );
    }

    #[test]
    fn criteria_combine() {
        let out = run(
            r#"{"mode": "remove_header", "with_name": "password", "from_list": ["token"], "matching": ".*debug.*"}"#,
            &[event(), TestEvent::new("none").with_header("keep", "k")],
        );
        assert_eq!(names(&out[0]), ["keep", "secret"]);
        assert_eq!(out[0].event.body_str(), Some("body"));
        assert!(!out[1].modified, "nothing to remove: no copy");
    }

    #[test]
    fn config_errors() {
        assert!(fail(r#"{"mode": "remove_header"}"#).contains("needs at least one of"));
        assert!(
            fail(r#"{"mode": "remove_header", "with_name": ""}"#).contains("`with_name` is empty")
        );
        assert!(
            fail(r#"{"mode": "remove_header", "from_list": ["a", ""]}"#).contains("empty name")
        );
        assert!(
            fail(r#"{"mode": "remove_header", "from_list": ["a"], "from_list_separator": ";"}"#)
                .contains("not a list")
        );
        assert!(
            fail(r#"{"mode": "remove_header", "with_name": "a", "from_list_separator": ";"}"#)
                .contains("only with a string `from_list`")
        );
        let e = fail(r#"{"mode": "remove_header", "matching": "(a"}"#);
        assert!(
            e.starts_with("invalid plugin config: mode `remove_header`: `matching` is not a valid regular expression"),
            "{e}"
        );
        let e = fail(r#"{"mode": "remove_header", "from_list": 5}"#);
        assert!(e.contains("expected a list of header names"), "{e}");
    }
}
