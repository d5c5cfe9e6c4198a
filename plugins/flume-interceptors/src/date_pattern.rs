//! Flume's date patterns (Joda-Time's `DateTimeFormat`, which follows Java's
//! `SimpleDateFormat`), translated once to chrono, for the `millis`
//! serializer of `regex_extractor`. The supported letters are listed in the
//! crate docs.

use chrono::format::{Item, Parsed, StrftimeItems};

/// A date pattern, parsed once.
#[derive(Debug)]
pub(crate) struct DatePattern {
    /// As configured, for messages.
    text: String,
    items: Vec<Item<'static>>,
    has: Fields,
}

/// Which fields the pattern reads; the others default to the epoch's.
#[derive(Debug, Default, Clone, Copy)]
struct Fields {
    year: bool,
    month: bool,
    day: bool,
    day_of_year: bool,
    hour: bool,
    hour12: bool,
    am_pm: bool,
    minute: bool,
    second: bool,
}

impl DatePattern {
    /// Translates `pattern`; the error says what is wrong with it.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        let mut strftime = String::new();
        let mut has = Fields::default();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    strftime.push('\'');
                    continue;
                }
                // Quoted text, where `''` is a quote.
                loop {
                    match chars.next() {
                        None => return Err("a quote `'` has no closing quote".into()),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            strftime.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => push_literal(&mut strftime, c),
                    }
                }
                continue;
            }
            if !c.is_ascii_alphabetic() {
                push_literal(&mut strftime, c);
                continue;
            }
            let mut count = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                count += 1;
            }
            let spec = match (c, count) {
                ('y', 2) => {
                    has.year = true;
                    "%y"
                }
                ('y', _) => {
                    has.year = true;
                    "%Y"
                }
                ('M', 1 | 2) => {
                    has.month = true;
                    "%m"
                }
                ('M', 3) => {
                    has.month = true;
                    "%b"
                }
                ('M', _) => {
                    has.month = true;
                    "%B"
                }
                ('d', 1 | 2) => {
                    has.day = true;
                    "%d"
                }
                ('D', 1..=3) => {
                    has.day_of_year = true;
                    "%j"
                }
                ('H', 1 | 2) => {
                    has.hour = true;
                    "%H"
                }
                ('h', 1 | 2) => {
                    has.hour = true;
                    has.hour12 = true;
                    "%I"
                }
                ('a', _) => {
                    has.am_pm = true;
                    "%p"
                }
                ('m', 1 | 2) => {
                    has.minute = true;
                    "%M"
                }
                ('s', 1 | 2) => {
                    has.second = true;
                    "%S"
                }
                ('S', 3) => "%3f",
                ('S', 6) => "%6f",
                ('S', 9) => "%9f",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                ('Z', 1) => "%z",
                ('Z', 2) => "%:z",
                _ => {
                    let letters: String = std::iter::repeat_n(c, count).collect();
                    return Err(format!(
                        "`{letters}` is not supported: use y, M, d, D, H, h, a, m, s, \
                         SSS, E, Z or ZZ, and quote text: '{letters}'"
                    ));
                }
            };
            strftime.push_str(spec);
        }
        let items = StrftimeItems::new(&strftime)
            .parse_to_owned()
            .map_err(|e| format!("cannot be translated ({strftime:?}): {e}"))?;
        Ok(Self {
            text: pattern.to_owned(),
            items,
            has,
        })
    }

    /// The pattern as configured.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Milliseconds since the Unix epoch of `value`, which must match the
    /// whole pattern; UTC unless the pattern has an offset (`Z`).
    pub(crate) fn parse_millis(&self, value: &str) -> Option<i64> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, value, self.items.iter()).ok()?;
        // What the pattern lacks comes from 1970-01-01T00:00:00.000, as in
        // Joda-Time.
        let has = self.has;
        if !has.year {
            parsed.set_year(1970).ok()?;
        }
        if !has.day_of_year {
            if !has.month {
                parsed.set_month(1).ok()?;
            }
            if !has.day {
                parsed.set_day(1).ok()?;
            }
        }
        if !has.hour {
            parsed.set_hour(0).ok()?;
        } else if has.hour12 && !has.am_pm {
            // Joda-Time: the half day defaults to AM.
            parsed.set_ampm(false).ok()?;
        }
        if !has.minute {
            parsed.set_minute(0).ok()?;
        }
        if !has.second {
            parsed.set_second(0).ok()?;
        }
        if parsed.offset().is_some() {
            return parsed.to_datetime().ok().map(|t| t.timestamp_millis());
        }
        parsed
            .to_naive_datetime_with_offset(0)
            .ok()
            .map(|t| t.and_utc().timestamp_millis())
    }
}

/// Appends `c` as literal strftime text.
fn push_literal(strftime: &mut String, c: char) {
    if c == '%' {
        strftime.push_str("%%");
    } else {
        strftime.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(pattern: &str, value: &str) -> Option<i64> {
        DatePattern::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .parse_millis(value)
    }

    /// 2014-10-14 01:18:29.123 UTC.
    const T: i64 = 1_413_249_509_123;

    #[test]
    fn common_patterns() {
        assert_eq!(
            millis("yyyy-MM-dd HH:mm:ss.SSS", "2014-10-14 01:18:29.123"),
            Some(T)
        );
        assert_eq!(
            millis("yyyy-MM-dd HH:mm", "2014-10-14 01:18"),
            Some(1_413_249_480_000)
        );
        assert_eq!(
            millis("yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2014-10-14T03:18:29.123+0200"),
            Some(T)
        );
        assert_eq!(
            millis(
                "yyyy-MM-dd'T'HH:mm:ss.SSSZZ",
                "2014-10-13T21:18:29.123-04:00"
            ),
            Some(T)
        );
        assert_eq!(millis("yyyyMMddHHmmss", "20141014011829"), Some(T - 123));
        assert_eq!(
            millis("dd/MMM/yyyy:HH:mm:ss Z", "14/Oct/2014:01:18:29 +0000"),
            Some(T - 123)
        );
        assert_eq!(
            millis(
                "EEE, d MMMM yyyy hh:mm:ss a",
                "Tue, 14 October 2014 01:18:29 AM"
            ),
            Some(T - 123)
        );
        assert_eq!(
            millis("yyyy-MM-dd hh:mm a", "2014-10-14 01:18 PM"),
            Some(1_413_249_480_000 + 12 * 3_600_000)
        );
        assert_eq!(millis("yyyy D", "2014 287"), Some(1_413_244_800_000));
        assert_eq!(
            millis("yyyy-MM-dd HH:mm:ss.SSSSSS", "2014-10-14 01:18:29.123456"),
            Some(T)
        );
    }

    #[test]
    fn missing_fields_come_from_the_epoch() {
        assert_eq!(millis("HH:mm", "01:00"), Some(3_600_000));
        assert_eq!(millis("yyyy", "1971"), Some(31_536_000_000));
        assert_eq!(millis("yyyy-MM", "1970-02"), Some(31 * 86_400_000));
        // 12-hour clock without AM/PM: AM.
        assert_eq!(millis("hh:mm", "12:30"), Some(30 * 60_000));
    }

    #[test]
    fn two_digit_years_and_literals() {
        assert_eq!(millis("yy", "69"), millis("yyyy", "2069"));
        assert_eq!(millis("yy", "70"), Some(0));
        assert_eq!(
            millis("'at' HH 'o''clock' ''%", "at 01 o'clock '%"),
            Some(3_600_000)
        );
    }

    #[test]
    fn values_must_match_the_whole_pattern() {
        assert_eq!(millis("yyyy-MM-dd", "2014-10-14 01:00"), None);
        assert_eq!(millis("yyyy-MM-dd", "2014-13-01"), None);
        assert_eq!(millis("yyyy-MM-dd", "2014-02-30"), None);
        assert_eq!(millis("yyyy-MM-dd", "yesterday"), None);
        assert_eq!(millis("yyyy-MM-dd", ""), None);
    }

    #[test]
    fn unsupported_patterns_are_errors() {
        let e = DatePattern::new("yyyy-MM-dd G").unwrap_err();
        assert_eq!(
            e,
            "`G` is not supported: use y, M, d, D, H, h, a, m, s, SSS, E, Z or ZZ, and quote text: 'G'"
        );
        assert!(
            DatePattern::new("yyyy-MM-ddTHH")
                .unwrap_err()
                .contains("`T`")
        );
        assert!(DatePattern::new("SS").unwrap_err().contains("`SS`"));
        assert!(DatePattern::new("ZZZ").unwrap_err().contains("`ZZZ`"));
        assert!(
            DatePattern::new("'T")
                .unwrap_err()
                .contains("closing quote")
        );
        assert_eq!(DatePattern::new("").unwrap_err(), "the pattern is empty");
    }
}
