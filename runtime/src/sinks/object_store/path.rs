//! The `path` template: the directory part of an object's key, rendered per event.
//!
//! A template is parsed once, at build time, into segments; rendering an
//! event walks the segments and appends to a reusable `String` without
//! allocating (substitutions are sanitised while they are copied).
//!
//! Escapes (Flume's HDFS sink names, plus Hive-friendly literals):
//!
//! | escape          | value                                                      |
//! |-----------------|------------------------------------------------------------|
//! | `%{topic}`      | the event's origin topic                                   |
//! | `%{partition}`  | the event's origin partition                               |
//! | `%{<name>}`     | the value of the event's first header `<name>`             |
//! | `%Y`            | 4-digit year                                               |
//! | `%y`            | 2-digit year                                               |
//! | `%m` `%d`       | month, day of month (2 digits)                             |
//! | `%H` `%M` `%S`  | hour (00–23), minute, second (2 digits)                    |
//! | `%j`            | day of year (3 digits)                                     |
//! | `%%`            | a literal `%`                                              |
//!
//! Times are UTC and come from, in order: the `timestamp` header when it is a
//! decimal number (epoch milliseconds, as Flume's timestamp interceptor sets
//! it), the event's Kafka timestamp, or the wall clock when the batch is
//! written.
//!
//! Substituted values can never leave the directory they are put in, nor
//! hide from readers of the lake:
//!
//! - `/`, `\` and control characters become `_`, and invalid UTF-8 `_`;
//! - a value made only of dots (`.`, `..`) becomes `%2E` per dot;
//! - a value that begins a path component with `.` or `_` (after the
//!   replacements above) has that first character written `%2E` or `%5F`
//!   (Hive's escape): Hive, Spark, Trino and
//!   DuckDB skip files and directories whose names start with either, and
//!   `_sluice` is where exactly-once sinks keep their commit records;
//! - a value longer than [`MAX_VALUE_BYTES`] after all that is cut (at a
//!   character boundary) and suffixed with `~` and 8 hex digits of the
//!   CRC-32 of the whole value, so a component stays under the file-system
//!   limit of 255 bytes and distinct long values stay distinct;
//! - a missing or empty value is replaced by the configured
//!   `missing_header_value` (default `unknown`).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike};

use crate::event::EventRef;
use crate::keys::Invalid;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Topic,
    Partition,
    Header(String),
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfYear,
}

impl Segment {
    fn is_time(&self) -> bool {
        matches!(
            self,
            Self::Year
                | Self::Year2
                | Self::Month
                | Self::Day
                | Self::Hour
                | Self::Minute
                | Self::Second
                | Self::DayOfYear
        )
    }
}

/// The span of time one rendered directory covers: the template's finest
/// time escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    /// The end (exclusive, epoch milliseconds) of the period holding `ms`.
    pub fn end_ms(self, ms: i64) -> i64 {
        let fixed = |len: i64| ms.div_euclid(len) * len + len;
        match self {
            Self::Second => fixed(1_000),
            Self::Minute => fixed(60_000),
            Self::Hour => fixed(3_600_000),
            Self::Day => fixed(86_400_000),
            Self::Month | Self::Year => {
                let Some(t) = DateTime::from_timestamp_millis(ms) else {
                    return i64::MAX;
                };
                let (y, m) = match self {
                    Self::Month if t.month() == 12 => (t.year() + 1, 1),
                    Self::Month => (t.year(), t.month() + 1),
                    _ => (t.year() + 1, 1),
                };
                chrono::NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(i64::MAX, |d| d.and_utc().timestamp_millis())
            }
        }
    }
}

/// A parsed `path` template; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct PathTemplate {
    segments: Vec<Segment>,
    needs_time: bool,
    /// Whether a segment is a header's value (see [`Self::inputs`]).
    reads_headers: bool,
    missing: String,
}

/// The header holding an event's time in epoch milliseconds (Flume's convention).
pub(crate) const TIMESTAMP_HEADER: &str = "timestamp";

impl PathTemplate {
    /// Parses `template`; `missing` replaces absent or empty substitutions.
    pub fn parse(template: &str, missing: &str) -> Result<Self, Invalid> {
        check_component(missing)
            .map_err(|e| Invalid(format!("`missing_header_value` = {missing:?} {e}")))?;
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = template.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c != '%' {
                if c.is_control() {
                    return Err(Invalid(format!(
                        "path template {template:?} holds a control character at byte {at}"
                    )));
                }
                literal.push(c);
                continue;
            }
            let segment = match chars.next().map(|(_, c)| c) {
                Some('{') => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) => name.push(c),
                            None => {
                                return Err(Invalid(format!(
                                    "path template {template:?}: `%{{` at byte {at} is never closed with `}}`"
                                )));
                            }
                        }
                    }
                    match name.as_str() {
                        "" => {
                            return Err(Invalid(format!(
                                "path template {template:?}: empty `%{{}}` at byte {at}; write a header name, `topic` or `partition`"
                            )));
                        }
                        "topic" => Segment::Topic,
                        "partition" => Segment::Partition,
                        _ => Segment::Header(name),
                    }
                }
                Some('Y') => Segment::Year,
                Some('y') => Segment::Year2,
                Some('m') => Segment::Month,
                Some('d') => Segment::Day,
                Some('H') => Segment::Hour,
                Some('M') => Segment::Minute,
                Some('S') => Segment::Second,
                Some('j') => Segment::DayOfYear,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(other) => {
                    return Err(Invalid(format!(
                        "path template {template:?}: unknown escape `%{other}` at byte {at}; \
                         supported: %{{topic}} %{{partition}} %{{<header>}} %Y %y %m %d %H %M %S %j %%"
                    )));
                }
                None => {
                    return Err(Invalid(format!(
                        "path template {template:?} ends with a lone `%`; write `%%` for a literal percent sign"
                    )));
                }
            };
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(segment);
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        // The template names a directory under the URL's prefix: no leading or
        // trailing separator.
        if let Some(Segment::Literal(first)) = segments.first_mut() {
            *first = first.trim_start_matches('/').to_owned();
        }
        if let Some(Segment::Literal(last)) = segments.last_mut() {
            *last = last.trim_end_matches('/').to_owned();
        }
        segments.retain(|s| !matches!(s, Segment::Literal(l) if l.is_empty()));
        let template_ok = Self {
            needs_time: segments.iter().any(Segment::is_time),
            reads_headers: segments.iter().any(|s| matches!(s, Segment::Header(_))),
            segments,
            missing: missing.to_owned(),
        };
        // Every substitution renders to a non-empty, dot-free component, so a
        // probe render finds every literal that would make a bad directory
        // (`a//b`, `../x`, `./`).
        let mut probe = String::new();
        template_ok.render_with(&mut probe, "t", 0, |_| None, TimeFields::default());
        if !probe.is_empty() {
            for component in probe.split('/') {
                check_component(component).map_err(|e| {
                    format!("path template {template:?} renders a directory component that {e}")
                })?;
            }
        }
        Ok(template_ok)
    }

    /// The span of time one rendered directory covers, if the template
    /// has time escapes.
    pub(crate) fn period(&self) -> Option<Period> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Second => Some(Period::Second),
                Segment::Minute => Some(Period::Minute),
                Segment::Hour => Some(Period::Hour),
                Segment::Day | Segment::DayOfYear => Some(Period::Day),
                Segment::Month => Some(Period::Month),
                Segment::Year | Segment::Year2 => Some(Period::Year),
                _ => None,
            })
            .min()
    }

    /// Whether rendering needs the event's time.
    #[cfg(test)]
    pub(crate) fn needs_time(&self) -> bool {
        self.needs_time
    }

    /// What [`Self::render`] reads of `event` besides its topic, when the
    /// template names no header: two events of one topic with equal inputs
    /// render the same directory, so a sink can reuse the last one it
    /// rendered. `None` when the template reads headers.
    #[inline]
    pub(crate) fn inputs(
        &self,
        event: &EventRef<'_>,
        fallback_ms: i64,
        cache: &mut TimeCache,
    ) -> Option<RenderInputs> {
        if self.reads_headers {
            return None;
        }
        let fields = if self.needs_time {
            cache.fields(event_time_ms(event, fallback_ms))
        } else {
            TimeFields::default()
        };
        Some(RenderInputs {
            partition: event.partition(),
            fields,
        })
    }

    /// Appends the directory for `event` to `out` (no leading or trailing `/`).
    /// `fallback_ms` is the wall clock used when the event carries no time.
    #[inline]
    pub(crate) fn render(
        &self,
        event: &EventRef<'_>,
        fallback_ms: i64,
        cache: &mut TimeCache,
        out: &mut String,
    ) {
        let ms = if self.needs_time {
            event_time_ms(event, fallback_ms)
        } else {
            0
        };
        let fields = if self.needs_time {
            cache.fields(ms)
        } else {
            TimeFields::default()
        };
        self.render_with(
            out,
            event.topic(),
            event.partition(),
            |name| event.header(name),
            fields,
        )
    }

    fn render_with<'a>(
        &self,
        out: &mut String,
        topic: &str,
        partition: i32,
        header: impl Fn(&str) -> Option<&'a [u8]>,
        t: TimeFields,
    ) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Topic => push_sanitized(out, topic.as_bytes(), &self.missing),
                Segment::Partition => {
                    let _ = write!(out, "{partition}");
                }
                Segment::Header(name) => {
                    push_sanitized(out, header(name).unwrap_or_default(), &self.missing)
                }
                Segment::Year => push_digits(out, t.year, 4),
                Segment::Year2 => push_digits(out, t.year % 100, 2),
                Segment::Month => push_digits(out, t.month, 2),
                Segment::Day => push_digits(out, t.day, 2),
                Segment::Hour => push_digits(out, t.hour, 2),
                Segment::Minute => push_digits(out, t.minute, 2),
                Segment::Second => push_digits(out, t.second, 2),
                Segment::DayOfYear => push_digits(out, t.ordinal, 3),
            }
        }
    }

    /// The replacement for missing or empty values.
    pub fn missing(&self) -> &str {
        &self.missing
    }
}

/// Why `component` cannot be a directory or file name component, if it cannot.
fn check_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        Err("is empty (check for `//`)")
    } else if component.chars().all(|c| c == '.') {
        Err("is made only of dots")
    } else if component.contains(['/', '\\']) || component.chars().any(char::is_control) {
        Err("holds `/`, `\\` or a control character")
    } else {
        Ok(())
    }
}

/// The longest a substituted value may render to; see the module docs.
pub(crate) const MAX_VALUE_BYTES: usize = 160;

/// Appends `value` as one safe path component; see the module docs.
pub(crate) fn push_sanitized(out: &mut String, value: &[u8], missing: &str) {
    if value.is_empty() {
        out.push_str(missing);
        return;
    }
    let start = out.len();
    if value.iter().all(|&b| b == b'.') {
        for _ in 0..value.len().min(MAX_VALUE_BYTES) {
            out.push_str("%2E");
        }
        cap(out, start, value);
        return;
    }
    let begins_component = start == 0 || out.ends_with('/');
    push_escaped(out, value);
    // Checked after escaping: a control character or invalid byte becomes
    // `_` and must not hide the component either.
    if begins_component {
        match out.as_bytes().get(start) {
            Some(b'.') => out.replace_range(start..start + 1, "%2E"),
            Some(b'_') => out.replace_range(start..start + 1, "%5F"),
            _ => {}
        }
    }
    cap(out, start, value);
}

/// Appends `value` as a name under `_sluice/`, which readers never see, by
/// the rules before leading `.`/`_` were escaped and long values cut (so the
/// commit chains of existing lakes are still found): `/`, `\`, control
/// characters and invalid UTF-8 as `_`, a value of dots as underscores.
pub(crate) fn push_bookkeeping_name(out: &mut String, value: &[u8], missing: &str) {
    if value.is_empty() {
        out.push_str(missing);
    } else if value.iter().all(|&b| b == b'.') {
        out.extend(std::iter::repeat_n('_', value.len()));
    } else {
        push_escaped(out, value);
    }
}

/// Appends `value` with `/`, `\`, control characters and invalid UTF-8 as `_`.
fn push_escaped(out: &mut String, value: &[u8]) {
    // Most values (topic names, ids) are printable ASCII with nothing to
    // replace: one scan and one copy.
    if value
        .iter()
        .all(|&b| (b' '..=b'~').contains(&b) && b != b'/' && b != b'\\')
        && let Ok(plain) = std::str::from_utf8(value)
    {
        out.push_str(plain);
        return;
    }
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            });
        }
        if !chunk.invalid().is_empty() {
            out.push('_');
        }
    }
}

/// Cuts what was rendered from `start` on to [`MAX_VALUE_BYTES`], with a
/// hash of `value` (the whole value) at the end, if it is longer.
fn cap(out: &mut String, start: usize, value: &[u8]) {
    if out.len() - start <= MAX_VALUE_BYTES {
        return;
    }
    let mut end = start + MAX_VALUE_BYTES - 9;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    let _ = write!(out, "~{:08x}", crc32fast::hash(value));
}

fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    // Values wider than `width` (years past 9999) keep all their digits.
    while div > 1 && value / div >= 10 {
        div *= 10;
    }
    while div > 0 {
        out.push(char::from(b'0' + ((value / div) % 10) as u8));
        div /= 10;
    }
}

/// The time of `event` in epoch milliseconds; see the module docs.
#[inline]
pub(crate) fn event_time_ms(event: &EventRef<'_>, fallback_ms: i64) -> i64 {
    if let Some(ms) = event.header(TIMESTAMP_HEADER).and_then(parse_millis) {
        return ms;
    }
    match event.timestamp() {
        ts if ts >= 0 => ts,
        _ => fallback_ms,
    }
}

/// Parses a non-negative decimal number of milliseconds.
fn parse_millis(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

/// What a template without header segments reads of an event besides its
/// topic; see [`PathTemplate::inputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenderInputs {
    partition: i32,
    fields: TimeFields,
}

/// Calendar fields of one second, UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeFields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    ordinal: u32,
}

impl TimeFields {
    fn from_millis(ms: i64) -> Option<Self> {
        let t = DateTime::from_timestamp_millis(ms)?;
        Some(Self {
            year: u32::try_from(t.year()).ok()?,
            month: t.month(),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            ordinal: t.ordinal(),
        })
    }
}

/// Remembers the calendar fields of the last second rendered: consecutive
/// events mostly fall in the same second.
#[derive(Debug, Clone)]
pub(crate) struct TimeCache {
    second: i64,
    fields: TimeFields,
}

impl Default for TimeCache {
    fn default() -> Self {
        Self {
            second: i64::MIN,
            fields: TimeFields::default(),
        }
    }
}

impl TimeCache {
    fn fields(&mut self, ms: i64) -> TimeFields {
        let second = ms.div_euclid(1000);
        if second != self.second {
            // Out of chrono's range or before year 0: use the epoch.
            self.fields = TimeFields::from_millis(ms)
                .or_else(|| TimeFields::from_millis(0))
                .unwrap_or_default();
            self.second = second;
        }
        self.fields
    }
}

#[cfg(test)]
mod tests {
    use sluice_batch::{BatchBuf, NewEvent};

    use super::*;

    // 2024-03-05T07:08:09.123Z, day 65 of a leap year.
    const TS: i64 = 1_709_622_489_123;

    fn batch(headers: &[(&str, &[u8])], timestamp: i64) -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push(&NewEvent {
            key: None,
            body: b"x",
            headers,
            topic: "logs",
            partition: 3,
            offset: 9,
            timestamp,
        });
        b
    }

    #[test]
    fn inputs_say_when_a_rendering_can_be_reused() {
        let dated = PathTemplate::parse("%{topic}/%Y-%m-%d", "unknown").unwrap();
        let mut cache = TimeCache::default();
        let inputs = |t: &PathTemplate, ts: i64, cache: &mut TimeCache| {
            t.inputs(&batch(&[], ts).get(0).unwrap(), 0, cache)
        };
        let first = inputs(&dated, TS, &mut cache);
        assert!(first.is_some());
        assert_eq!(first, inputs(&dated, TS + 500, &mut cache), "same second");
        assert_ne!(first, inputs(&dated, TS + 1_000, &mut cache), "next second");
        let by_header = PathTemplate::parse("%{region}/%Y", "unknown").unwrap();
        assert_eq!(
            inputs(&by_header, TS, &mut cache),
            None,
            "a template reading headers is rendered for every event"
        );
    }

    #[test]
    fn escaping_takes_plain_values_as_they_are_and_replaces_the_rest() {
        for (value, expected) in [
            (&b"orders.eu-1_v2 x~"[..], "orders.eu-1_v2 x~"),
            (b"a/b\\c", "a_b_c"),
            (b"tab\there\x7f", "tab_here_"),
            (b"caf\xc3\xa9", "caf\u{e9}"),
            (b"bad\xff!", "bad_!"),
            (b"c1\xc2\x85", "c1_"),
        ] {
            let mut out = String::from(">");
            push_escaped(&mut out, value);
            assert_eq!(out, format!(">{expected}"), "{value:?}");
        }
    }

    fn render(template: &str, headers: &[(&str, &[u8])], timestamp: i64) -> String {
        let t = PathTemplate::parse(template, "unknown").unwrap();
        let b = batch(headers, timestamp);
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), 0, &mut TimeCache::default(), &mut out);
        out
    }

    #[test]
    fn flume_style_with_two_digit_year() {
        assert_eq!(render("%{topic}/%y-%m-%d", &[], TS), "logs/24-03-05");
    }

    #[test]
    fn hive_style_partitions() {
        assert_eq!(
            render("%{topic}/dt=%Y-%m-%d/hr=%H", &[], TS),
            "logs/dt=2024-03-05/hr=07"
        );
        assert_eq!(
            render("p=%{partition}/%H%M%S/j=%j/100%%", &[], TS),
            "p=3/070809/j=065/100%"
        );
    }

    #[test]
    fn timestamp_header_wins_over_kafka_timestamp() {
        // 2001-09-09T01:46:40Z
        let headers: &[(&str, &[u8])] = &[("timestamp", b"1000000000000")];
        assert_eq!(render("%Y/%m/%d/%H", headers, TS), "2001/09/09/01");
        // A non-numeric header is ignored.
        let headers: &[(&str, &[u8])] = &[("timestamp", b"yesterday")];
        assert_eq!(render("%Y/%m/%d/%H", headers, TS), "2024/03/05/07");
    }

    #[test]
    fn wall_clock_when_the_event_has_no_time() {
        let t = PathTemplate::parse("%Y-%m-%d %H", "unknown").unwrap();
        let b = batch(&[], -1);
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), TS, &mut TimeCache::default(), &mut out);
        assert_eq!(out, "2024-03-05 07");
    }

    #[test]
    fn headers_are_substituted_and_sanitised() {
        let headers: &[(&str, &[u8])] = &[
            ("team", b"fraud"),
            ("evil", b"../../etc"),
            ("dots", b".."),
            ("empty", b""),
            ("bin", b"a\xffb\nc"),
        ];
        assert_eq!(render("%{team}/x", headers, TS), "fraud/x");
        // Neither escapes its directory nor starts with a dot (hidden).
        assert_eq!(render("%{evil}", headers, TS), "%2E._.._etc");
        assert_eq!(render("a/%{dots}/b", headers, TS), "a/%2E%2E/b");
        assert_eq!(
            render("a/%{empty}/%{absent}", headers, TS),
            "a/unknown/unknown"
        );
        assert_eq!(render("%{bin}", headers, TS), "a_b_c");
        let t = PathTemplate::parse("h=%{absent}", "none").unwrap();
        let b = batch(&[], TS);
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), 0, &mut TimeCache::default(), &mut out);
        assert_eq!(out, "h=none");
    }

    #[test]
    fn values_never_render_names_that_readers_skip() {
        let headers: &[(&str, &[u8])] = &[
            ("dot", b".hidden"),
            ("under", b"_tmp"),
            ("meta", b"_sluice"),
            ("mid", b"a_b.c"),
        ];
        assert_eq!(render("%{dot}/x", headers, TS), "%2Ehidden/x");
        assert_eq!(render("x/%{under}", headers, TS), "x/%5Ftmp");
        assert_eq!(render("%{meta}", headers, TS), "%5Fsluice");
        // Inside a component a leading `.` or `_` of the value hides nothing.
        assert_eq!(render("k=%{under}/%{mid}", headers, TS), "k=_tmp/a_b.c");
    }

    #[test]
    fn long_values_are_cut_with_a_hash_of_the_whole_value() {
        let long_a = "é".repeat(200); // 400 bytes
        let long_b = format!("{}x", "é".repeat(199));
        let headers: &[(&str, &[u8])] = &[("a", long_a.as_bytes()), ("b", long_b.as_bytes())];
        let a = render("%{a}", headers, TS);
        let b = render("%{b}", headers, TS);
        assert!(a.len() <= MAX_VALUE_BYTES, "{}", a.len());
        assert!(a.contains('~') && a.starts_with("éé"), "{a}");
        assert_ne!(a, b, "distinct long values stay distinct");
        assert_eq!(a, render("%{a}", headers, TS), "and stable");
        let mut short = String::new();
        push_sanitized(&mut short, &[b'x'; MAX_VALUE_BYTES], "u");
        assert_eq!(
            short.len(),
            MAX_VALUE_BYTES,
            "a value at the limit is kept whole"
        );
    }

    #[test]
    fn leading_and_trailing_slashes_are_trimmed_and_empty_is_allowed() {
        assert_eq!(render("/%{topic}/", &[], TS), "logs");
        assert_eq!(render("", &[], TS), "");
        assert!(!PathTemplate::parse("%{topic}", "u").unwrap().needs_time());
        assert!(PathTemplate::parse("x/%j", "u").unwrap().needs_time());
    }

    #[test]
    fn bad_templates_are_rejected_with_the_reason() {
        let err = |t: &str| PathTemplate::parse(t, "unknown").unwrap_err().0;
        assert!(
            err("%{topic").contains("never closed"),
            "{}",
            err("%{topic")
        );
        assert!(err("%{}").contains("empty"));
        assert!(err("%q").contains("unknown escape `%q`"));
        assert!(err("abc%").contains("lone `%`"));
        assert!(err("a//b").contains("is empty"));
        assert!(err("../%{topic}").contains("only of dots"));
        assert!(err("a/./b").contains("only of dots"));
        assert!(err("a\tb").contains("control character"));
        assert!(
            PathTemplate::parse("x", "a/b")
                .unwrap_err()
                .0
                .contains("missing_header_value")
        );
        assert!(PathTemplate::parse("x", "").is_err());
    }

    #[test]
    fn cache_tracks_second_changes() {
        let mut cache = TimeCache::default();
        let a = cache.fields(TS);
        assert_eq!(cache.fields(TS + 500), a);
        let b = cache.fields(TS + 1000);
        assert_eq!(b.second, a.second + 1);
        // Far outside chrono's range: the epoch, not a panic.
        assert_eq!(cache.fields(i64::MAX).year, 1970);
    }

    #[test]
    fn periods_are_the_finest_escape_and_end_where_the_next_begins() {
        let period = |t: &str| PathTemplate::parse(t, "unknown").unwrap().period();
        assert_eq!(period("%{topic}"), None);
        assert_eq!(period("dt=%Y-%m-%d/hr=%H"), Some(Period::Hour));
        assert_eq!(period("%Y/%m"), Some(Period::Month));
        assert_eq!(period("%Y/%j/%M"), Some(Period::Minute));
        // 2026-12-04T15:22:11.5Z
        let t = 1_796_397_731_500;
        assert_eq!(Period::Hour.end_ms(t), 1_796_400_000_000);
        assert_eq!(Period::Hour.end_ms(1_796_400_000_000), 1_796_403_600_000);
        assert_eq!(Period::Day.end_ms(t), 1_796_428_800_000);
        assert_eq!(Period::Month.end_ms(t), 1_798_761_600_000, "2027-01-01");
        assert_eq!(Period::Year.end_ms(t), 1_798_761_600_000);
        assert_eq!(Period::Second.end_ms(-1), 0);
    }

    #[test]
    fn digits_are_zero_padded() {
        let mut s = String::new();
        push_digits(&mut s, 7, 2);
        push_digits(&mut s, 5, 3);
        push_digits(&mut s, 12345, 4);
        assert_eq!(s, "0700512345");
    }
}
