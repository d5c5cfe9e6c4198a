//! Mode `regex_extractor`: copy the capture groups of the body's first regex
//! match into headers (Flume's `RegexExtractorInterceptor`).

use regex::Regex;
use serde::Deserialize;
use sluice_guest::{Event, Outcome};

use crate::date_pattern::DatePattern;

/// `mode = "regex_extractor"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexExtractorConfig {
    /// Regex searched in the body.
    regex: String,
    /// One per capture group, in order.
    serializers: Vec<SerializerConfig>,
}

/// One entry of `serializers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SerializerConfig {
    /// Header to write.
    name: String,
    /// How the group's text becomes the header value.
    #[serde(default, rename = "type")]
    kind: SerializerKind,
    /// Date pattern of `millis`.
    pattern: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SerializerKind {
    /// The group's text.
    #[default]
    #[serde(alias = "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer")]
    Default,
    /// The group parsed as a date, as epoch milliseconds.
    #[serde(alias = "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer")]
    Millis,
}

impl RegexExtractorConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<RegexExtractor, String> {
        if self.regex.is_empty() {
            return Err("`regex` is empty: give the regular expression to search".into());
        }
        let regex = crate::compile("regex", &self.regex)?;
        if self.serializers.is_empty() {
            return Err(
                "`serializers` is empty: give one `{ name = \"<header>\" }` per capture group"
                    .into(),
            );
        }
        let groups = regex.captures_len() - 1;
        if self.serializers.len() > groups {
            return Err(format!(
                "`serializers` has {} entries but `regex` has {groups} capture group(s): one serializer per group",
                self.serializers.len()
            ));
        }
        let serializers = self
            .serializers
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let key = format!("serializers[{i}]");
                if s.name.is_empty() {
                    return Err(format!("`{key}.name` is empty: name the header to write"));
                }
                let parse = match (s.kind, s.pattern) {
                    (SerializerKind::Default, None) => None,
                    (SerializerKind::Default, Some(_)) => {
                        return Err(format!(
                            "`{key}.pattern` applies only with `type = \"millis\"`"
                        ));
                    }
                    (SerializerKind::Millis, None) => {
                        return Err(format!(
                            "`{key}`: `type = \"millis\"` needs `pattern`, a date pattern such as \"yyyy-MM-dd HH:mm\""
                        ));
                    }
                    (SerializerKind::Millis, Some(pattern)) => Some(
                        DatePattern::new(&pattern)
                            .map_err(|e| format!("`{key}.pattern` {pattern:?}: {e}"))?,
                    ),
                };
                Ok(Serializer {
                    header: s.name,
                    millis: parse,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(RegexExtractor { regex, serializers })
    }
}

/// Writes the groups of the first match into headers.
#[derive(Debug)]
pub(crate) struct RegexExtractor {
    regex: Regex,
    /// The i-th serializes group i + 1.
    serializers: Vec<Serializer>,
}

#[derive(Debug)]
struct Serializer {
    header: String,
    /// `Some` for `millis`.
    millis: Option<DatePattern>,
}

impl RegexExtractor {
    pub(crate) fn apply(&self, event: &mut Event) -> Outcome {
        // Owned header values first: the match borrows the body.
        let values: Vec<(&str, String)> = {
            // Bad UTF-8 reads as U+FFFD, as Flume's `new String(body, UTF_8)`.
            let body = String::from_utf8_lossy(event.body());
            let Some(caps) = self.regex.captures(&body) else {
                return Outcome::Keep;
            };
            let mut values = Vec::with_capacity(self.serializers.len());
            for (i, serializer) in self.serializers.iter().enumerate() {
                // A group that did not take part sets nothing.
                let Some(group) = caps.get(i + 1) else {
                    continue;
                };
                let value = match &serializer.millis {
                    None => group.as_str().to_owned(),
                    Some(pattern) => match pattern.parse_millis(group.as_str()) {
                        Some(millis) => millis.to_string(),
                        None => {
                            return Outcome::dead_letter(format!(
                                "regex_extractor: header {:?}: cannot parse {:?} with pattern {:?}",
                                serializer.header,
                                group.as_str(),
                                pattern.text()
                            ));
                        }
                    },
                };
                values.push((serializer.header.as_str(), value));
            }
            values
        };
        for (header, value) in values {
            event.set_header(header, value);
        }
        Outcome::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{fail, run};
    use sluice_guest::testing::TestEvent;

    const LOG: &str = r#"{"mode": "regex_extractor", "regex": "^(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d) (\\w+)", "serializers": [{"name": "timestamp", "type": "millis", "pattern": "yyyy-MM-dd HH:mm"}, {"name": "level"}]}"#;

    #[test]
    fn extracts_groups_with_default_and_millis_serializers() {
        let out = run(
            LOG,
            &[
                TestEvent::new("2014-10-14 01:18 WARN disk 91%").with_header("level", "old"),
                TestEvent::new("no timestamp here"),
            ],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(out[0].event.header_str("timestamp"), Some("1413249480000"));
        assert_eq!(out[0].event.header_str("level"), Some("WARN"));
        assert_eq!(out[0].event.headers.len(), 2);
        assert_eq!(
            out[0].event.body_str(),
            Some("2014-10-14 01:18 WARN disk 91%")
        );
        // No match: unchanged.
        assert_eq!(out[1].outcome, Outcome::Keep);
        assert!(!out[1].modified);
    }

    #[test]
    fn only_the_first_match_counts() {
        let out = run(
            r#"{"mode": "regex_extractor", "regex": "user=(\\w+)", "serializers": [{"name": "user"}]}"#,
            &[TestEvent::new("user=ann then user=bob")],
        );
        assert_eq!(out[0].event.header_str("user"), Some("ann"));
    }

    #[test]
    fn groups_past_the_serializers_are_ignored() {
        let out = run(
            r#"{"mode": "regex_extractor", "regex": "(\\d+):(\\d+):(\\d+)", "serializers": [{"name": "one"}, {"name": "two", "type": "default"}]}"#,
            &[TestEvent::new("1:2:3")],
        );
        assert_eq!(out[0].event.header_str("one"), Some("1"));
        assert_eq!(out[0].event.header_str("two"), Some("2"));
        assert_eq!(out[0].event.headers.len(), 2);
    }

    #[test]
    fn groups_that_did_not_take_part_set_nothing() {
        let out = run(
            r#"{"mode": "regex_extractor", "regex": "(a)?(b)", "serializers": [{"name": "a"}, {"name": "b"}]}"#,
            &[TestEvent::new("b")],
        );
        assert_eq!(out[0].event.header_str("a"), None);
        assert_eq!(out[0].event.header_str("b"), Some("b"));
    }

    #[test]
    fn unparseable_dates_are_dead_lettered() {
        let out = run(LOG, &[TestEvent::new("2014-13-14 01:18 WARN x")]);
        assert_eq!(
            out[0].outcome,
            Outcome::dead_letter(
                r#"regex_extractor: header "timestamp": cannot parse "2014-13-14 01:18" with pattern "yyyy-MM-dd HH:mm""#
            )
        );
        assert!(!out[0].modified);
    }

    #[test]
    fn flume_class_names_are_accepted() {
        let out = run(
            r#"{"mode": "regex_extractor", "regex": "(\\d{8}) (\\w+)", "serializers": [
                {"name": "day", "type": "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer", "pattern": "yyyyMMdd"},
                {"name": "word", "type": "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer"}]}"#,
            &[TestEvent::new("19700102 hi")],
        );
        assert_eq!(out[0].event.header_str("day"), Some("86400000"));
        assert_eq!(out[0].event.header_str("word"), Some("hi"));
    }

    #[test]
    fn config_errors() {
        let e = |config: &str| fail(&format!(r#"{{"mode": "regex_extractor", {config}}}"#));
        assert!(e(r#""serializers": [{"name": "a"}]"#).contains("missing field `regex`"));
        assert!(e(r#""regex": "(a)""#).contains("missing field `serializers`"));
        assert!(e(r#""regex": "(a)", "serializers": []"#).contains("`serializers` is empty"));
        assert!(e(r#""regex": "", "serializers": [{"name": "a"}]"#).contains("`regex` is empty"));
        assert_eq!(
            e(r#""regex": "(a)", "serializers": [{"name": "a"}, {"name": "b"}]"#),
            "invalid plugin config: mode `regex_extractor`: `serializers` has 2 entries but \
             `regex` has 1 capture group(s): one serializer per group"
        );
        assert!(
            e(r#""regex": "(a)", "serializers": [{"name": ""}]"#)
                .contains("`serializers[0].name` is empty")
        );
        assert!(
            e(r#""regex": "(a)", "serializers": [{"name": "a", "type": "millis"}]"#)
                .contains("`serializers[0]`: `type = \"millis\"` needs `pattern`")
        );
        assert!(
            e(r#""regex": "(a)", "serializers": [{"name": "a", "pattern": "yyyy"}]"#)
                .contains("`serializers[0].pattern` applies only with `type = \"millis\"`")
        );
        assert_eq!(
            e(
                r#""regex": "(a)", "serializers": [{"name": "a", "type": "millis", "pattern": "yyyy-MM-dd G"}]"#
            ),
            "invalid plugin config: mode `regex_extractor`: `serializers[0].pattern` \
             \"yyyy-MM-dd G\": `G` is not supported: use y, M, d, D, H, h, a, m, s, SSS, E, Z \
             or ZZ, and quote text: 'G'"
        );
        let unknown = e(r#""regex": "(a)", "serializers": [{"name": "a", "type": "seconds"}]"#);
        assert!(unknown.contains("unknown variant `seconds`"), "{unknown}");
        let extra = e(r#""regex": "(a)", "serializers": [{"name": "a", "format": "x"}]"#);
        assert!(extra.contains("unknown field `format`"), "{extra}");
    }
}
