//! Mode `search_replace`: replace every match of a regex in the body, with
//! Java's replacement syntax (Flume's `SearchAndReplaceInterceptor`).

use std::borrow::Cow;

use regex::{Captures, Regex, Replacer};
use serde::Deserialize;
use sluice_guest::{Event, Outcome};

/// `mode = "search_replace"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchReplaceConfig {
    /// Regex to replace.
    search_pattern: String,
    /// Replacement, in Java's `replaceAll` syntax.
    #[serde(default)]
    replace_string: String,
}

impl SearchReplaceConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<SearchReplace, String> {
        if self.search_pattern.is_empty() {
            return Err("`search_pattern` is empty: give the regular expression to replace".into());
        }
        let regex = crate::compile("search_pattern", &self.search_pattern)?;
        let replacement = Template::parse(&self.replace_string, &regex)
            .map_err(|e| format!("`replace_string` {:?}: {e}", self.replace_string))?;
        Ok(SearchReplace { regex, replacement })
    }
}

/// Replaces all matches of `regex` in a UTF-8 body.
#[derive(Debug)]
pub(crate) struct SearchReplace {
    regex: Regex,
    replacement: Template,
}

impl SearchReplace {
    pub(crate) fn apply(&self, event: &mut Event) -> Outcome {
        // Not UTF-8: passed on as is (see the crate docs).
        let Some(body) = event.body_str() else {
            return Outcome::Keep;
        };
        if let Cow::Owned(replaced) = self.regex.replace_all(body, &self.replacement) {
            event.set_body(replaced);
        }
        Outcome::Keep
    }
}

/// A replacement string, parsed once.
#[derive(Debug, PartialEq, Eq)]
struct Template(Vec<Piece>);

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A capture group by index (0: the whole match).
    Group(usize),
}

impl Template {
    /// Parses `replacement` as Java's `Matcher.appendReplacement` does, with
    /// the groups of `regex`; Java's run-time errors are errors here.
    fn parse(replacement: &str, regex: &Regex) -> Result<Self, String> {
        let group_count = regex.captures_len() - 1;
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = replacement.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => text.push(escaped),
                    None => {
                        return Err("ends with `\\`: escape a backslash as `\\\\`".into());
                    }
                },
                '$' => {
                    let group = match chars.next() {
                        Some('{') => {
                            let mut name = String::new();
                            let mut closed = false;
                            for c in chars.by_ref() {
                                if c == '}' {
                                    closed = true;
                                    break;
                                }
                                name.push(c);
                            }
                            if !closed {
                                return Err(format!(
                                    "`${{{name}` lacks its `}}`: write `${{name}}`, or `\\$` for a dollar"
                                ));
                            }
                            regex
                                .capture_names()
                                .position(|n| n == Some(name.as_str()))
                                .ok_or_else(|| {
                                    format!("`${{{name}}}`: `search_pattern` has no group named {name:?}")
                                })?
                        }
                        Some(first @ '0'..='9') => {
                            let mut group = digit(first);
                            if group > group_count {
                                return Err(format!(
                                    "`${group}`: `search_pattern` has {group_count} capture group(s)"
                                ));
                            }
                            // The longest number that still names a group.
                            while let Some(&next @ '0'..='9') = chars.peek() {
                                let longer = group * 10 + digit(next);
                                if longer > group_count {
                                    break;
                                }
                                group = longer;
                                chars.next();
                            }
                            group
                        }
                        _ => {
                            return Err(
                                "`$` must be followed by a group number or `{name}`: write `\\$` for a dollar"
                                    .into(),
                            );
                        }
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Group(group));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }
}

fn digit(c: char) -> usize {
    c.to_digit(10).map_or(0, |d| d as usize)
}

impl Replacer for &Template {
    fn replace_append(&mut self, caps: &Captures<'_>, dst: &mut String) {
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => dst.push_str(text),
                // A group that did not take part adds nothing, as in Java.
                Piece::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        dst.push_str(m.as_str());
                    }
                }
            }
        }
    }

    /// Without group references the regex need not capture.
    fn no_expansion(&mut self) -> Option<Cow<'_, str>> {
        match self.0.as_slice() {
            [] => Some(Cow::Borrowed("")),
            [Piece::Text(text)] => Some(Cow::Borrowed(text)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{fail, run};
    use sluice_guest::testing::TestEvent;

    fn replace(pattern: &str, replacement: &str, body: &str) -> String {
        let config = SearchReplaceConfig {
            search_pattern: pattern.to_owned(),
            replace_string: replacement.to_owned(),
        }
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
        config
            .regex
            .replace_all(body, &config.replacement)
            .into_owned()
    }

    fn template_error(pattern: &str, replacement: &str) -> String {
        SearchReplaceConfig {
            search_pattern: pattern.to_owned(),
            replace_string: replacement.to_owned(),
        }
        .build()
        .unwrap_err()
    }

    #[test]
    fn replaces_all_matches_in_the_body() {
        let out = run(
            r##"{"mode": "search_replace", "search_pattern": "\\d", "replace_string": "#"}"##,
            &[
                TestEvent::new("card 4111 exp 12").with_header("h", "1"),
                TestEvent::new("no digits"),
            ],
        );
        assert_eq!(out[0].event.body_str(), Some("card #### exp ##"));
        assert_eq!(out[0].event.header_str("h"), Some("1"));
        assert!(!out[1].modified, "no match: no copy");
    }

    #[test]
    fn replace_string_defaults_to_empty() {
        let out = run(
            r#"{"mode": "search_replace", "search_pattern": "^\\w+ "}"#,
            &[TestEvent::new("DEBUG message")],
        );
        assert_eq!(out[0].event.body_str(), Some("message"));
    }

    #[test]
    fn group_references_follow_java() {
        let cards = r"(\d{4})\d{8}(\d{4})";
        assert_eq!(
            replace(cards, "$1********$2", "pay 4111111111111111 now"),
            "pay 4111********1111 now"
        );
        // `$0` is the whole match; `${name}` a named group.
        assert_eq!(replace(r"\d+", "<$0>", "a 12 b 3"), "a <12> b <3>");
        assert_eq!(
            replace(
                r"(?P<user>\w+)@(?P<host>\w+)",
                "${host}:${user}",
                "bob@example"
            ),
            "example:bob"
        );
        // Java takes the longest number that is a group: with two groups
        // `$12` is group 1 followed by `2`; Rust's own syntax would read a
        // group named `12`.
        assert_eq!(replace(r"(a)(b)", "$12", "ab"), "a2");
        let twelve = "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)";
        assert_eq!(replace(twelve, "$12-$10-$1", "abcdefghijkl"), "l-j-a");
        // `$1a` is group 1 then `a`, not a group named `1a`.
        assert_eq!(replace(r"(x)", "$1a", "x"), "xa");
        // Escapes.
        assert_eq!(replace(r"(\d+)", r"\$$1 \\ \x", "5"), r"$5 \ x");
        // A group that did not take part adds nothing.
        assert_eq!(replace(r"(a)|(b)", "[$1$2]", "ab"), "[a][b]");
        // Empty matches, as Java: between every character.
        assert_eq!(replace("x*", "-", "abc"), "-a-b-c-");
    }

    #[test]
    fn bad_replacements_are_config_errors() {
        assert_eq!(
            template_error(r"(a)", "$2"),
            r#"`replace_string` "$2": `$2`: `search_pattern` has 1 capture group(s)"#
        );
        assert!(template_error(r"a", "$").contains("`$` must be followed by"));
        assert!(template_error(r"a", "$x").contains("`$` must be followed by"));
        assert!(template_error(r"a", r"a\").contains("ends with `\\`"));
        assert!(template_error(r"(?P<n>a)", "${m}").contains("no group named \"m\""));
        assert!(template_error(r"(?P<n>a)", "${n").contains("lacks its `}`"));
        let e =
            fail(r#"{"mode": "search_replace", "search_pattern": "(a)", "replace_string": "$3"}"#);
        assert!(
            e.starts_with("invalid plugin config: mode `search_replace`: `replace_string` \"$3\""),
            "{e}"
        );
    }

    #[test]
    fn pattern_errors() {
        assert!(fail(r#"{"mode": "search_replace"}"#).contains("missing field `search_pattern`"));
        assert!(
            fail(r#"{"mode": "search_replace", "search_pattern": ""}"#)
                .contains("`search_pattern` is empty")
        );
        let e = fail(r#"{"mode": "search_replace", "search_pattern": "(?<=a)b"}"#);
        assert!(
            e.contains("`search_pattern` is not a valid regular expression"),
            "{e}"
        );
    }

    #[test]
    fn non_utf8_bodies_pass_unchanged() {
        let mut event = TestEvent::new("a1");
        event.body = vec![b'a', b'1', 0xff];
        let out = run(
            r##"{"mode": "search_replace", "search_pattern": "\\d", "replace_string": "#"}"##,
            &[event],
        );
        assert!(!out[0].modified);
        assert_eq!(out[0].event.body, [b'a', b'1', 0xff]);
    }

    #[test]
    fn templates_without_groups_need_no_captures() {
        let regex = Regex::new("(a)").unwrap();
        let mut t = &Template::parse(r"\$x", &regex).unwrap();
        assert_eq!(t.no_expansion().as_deref(), Some("$x"));
        let mut t = &Template::parse("", &regex).unwrap();
        assert_eq!(t.no_expansion().as_deref(), Some(""));
        let mut t = &Template::parse("$1", &regex).unwrap();
        assert_eq!(t.no_expansion(), None);
    }
}
