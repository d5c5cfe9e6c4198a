//! Mode `regex_filter`: keep or drop events by a regex over the body
//! (Flume's `RegexFilteringInterceptor`).

use regex::Regex;
use serde::Deserialize;
use sluice_guest::{Event, Outcome};

/// `mode = "regex_filter"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexFilterConfig {
    /// Regex searched anywhere in the body.
    #[serde(default = "default_regex")]
    regex: String,
    /// Drop the events that match, instead of those that do not.
    #[serde(default)]
    exclude_events: bool,
}

fn default_regex() -> String {
    ".*".to_owned()
}

impl RegexFilterConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<RegexFilter, String> {
        Ok(RegexFilter {
            regex: crate::compile("regex", &self.regex)?,
            exclude_events: self.exclude_events,
        })
    }
}

/// Keeps the events whose body matches (or, excluding, does not match).
#[derive(Debug)]
pub(crate) struct RegexFilter {
    regex: Regex,
    exclude_events: bool,
}

impl RegexFilter {
    pub(crate) fn apply(&self, event: &mut Event) -> Outcome {
        // Bad UTF-8 reads as U+FFFD, as Flume's `new String(body)`; a UTF-8
        // body is not copied.
        let matched = self.regex.is_match(&String::from_utf8_lossy(event.body()));
        if matched == self.exclude_events {
            Outcome::Drop
        } else {
            Outcome::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{fail, run};
    use sluice_guest::testing::TestEvent;

    fn events() -> Vec<TestEvent> {
        vec![
            TestEvent::new("INFO started"),
            TestEvent::new("DEBUG x = 1"),
            TestEvent::new("WARN no DEBUG here"),
            TestEvent::new(""),
        ]
    }

    fn outcomes(config: &str) -> Vec<Outcome> {
        let out = run(config, &events());
        assert!(out.iter().all(|o| !o.modified));
        out.into_iter().map(|o| o.outcome).collect()
    }

    #[test]
    fn keeps_matching_events_by_default() {
        assert_eq!(
            outcomes(r#"{"mode": "regex_filter", "regex": "DEBUG"}"#),
            [Outcome::Drop, Outcome::Keep, Outcome::Keep, Outcome::Drop]
        );
    }

    #[test]
    fn exclude_events_drops_matching_events() {
        assert_eq!(
            outcomes(r#"{"mode": "regex_filter", "regex": "^DEBUG\\b", "exclude_events": true}"#),
            [Outcome::Keep, Outcome::Drop, Outcome::Keep, Outcome::Keep]
        );
    }

    #[test]
    fn default_regex_keeps_everything() {
        assert_eq!(
            outcomes(r#"{"mode": "regex_filter"}"#),
            vec![Outcome::Keep; 4]
        );
        assert_eq!(
            outcomes(r#"{"mode": "regex_filter", "exclude_events": true}"#),
            vec![Outcome::Drop; 4]
        );
    }

    #[test]
    fn case_insensitive_patterns_work() {
        assert_eq!(
            outcomes(r#"{"mode": "regex_filter", "regex": "(?i)^debug", "exclude_events": true}"#),
            [Outcome::Keep, Outcome::Drop, Outcome::Keep, Outcome::Keep]
        );
        let out = run(
            r#"{"mode": "regex_filter", "regex": "(?i)^été$"}"#,
            &[TestEvent::new("ÉTÉ"), TestEvent::new("ete")],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
        assert_eq!(out[1].outcome, Outcome::Drop);
    }

    #[test]
    fn bad_utf8_reads_as_replacement_characters() {
        let mut event = TestEvent::new("");
        event.body = vec![b'o', b'k', 0xff];
        let out = run(
            r#"{"mode": "regex_filter", "regex": "^ok\ufffd$"}"#,
            &[event],
        );
        assert_eq!(out[0].outcome, Outcome::Keep);
    }

    #[test]
    fn config_errors() {
        let e = fail(r#"{"mode": "regex_filter", "regex": "a{2,1}"}"#);
        assert!(
            e.starts_with("invalid plugin config: mode `regex_filter`: `regex` is not a valid regular expression"),
            "{e}"
        );
        let e = fail(r#"{"mode": "regex_filter", "exclude_events": "true"}"#);
        assert!(e.contains("expected a boolean"), "{e}");
    }
}
