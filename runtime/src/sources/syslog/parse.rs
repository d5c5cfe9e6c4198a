//! Parsing one syslog message: RFC 5424 and RFC 3164 (BSD syslog).
//!
//! [`parse`] borrows every field from the message: nothing is copied or
//! re-encoded. Trailing line ends and NULs (`\n`, `\r`, `\0`) are not part
//! of a message and are cut first.
//!
//! **RFC 5424**: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`,
//! each of the five header fields either a value or `-` (NILVALUE, giving no
//! field), SD either `-` or one or more `[id name="value" ...]` elements
//! (`"`, `\` and `]` escaped with `\` inside values). A MSG starting with a
//! UTF-8 byte order mark has it removed. Field lengths are not enforced.
//!
//! **RFC 3164**: `<PRI>TIMESTAMP HOSTNAME TAG[PID]: MSG`, read the way
//! senders really write it: the timestamp is `Mmm dd hh:mm:ss` (day padded
//! with a space or not) or an RFC 3339 timestamp; the hostname is absent
//! when the next word already looks like a tag (ends in `:` or holds `[`);
//! a message with no recognisable timestamp is all MSG (RFC 3164 §4.3.3).
//! The MSG is what follows `TAG[PID]: ` (the whole rest when there is no
//! tag). `Mmm dd hh:mm:ss` is taken in UTC in the current year, or the year
//! before when that would put it more than a day in the future (a December
//! message read in January).
//!
//! Only a missing or malformed `<PRI>` makes an RFC 3164 message invalid;
//! an RFC 5424 message is invalid when its header or structured data does
//! not follow the grammar. An unparsable timestamp is not an error: the
//! field is kept as sent and [`Message::timestamp_ms`] is `None`.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;

/// Which syslog format messages are read as (the `format` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// RFC 5424 when the message starts `<PRI>1 `, else RFC 3164.
    #[default]
    Auto,
    /// Always RFC 5424.
    Rfc5424,
    /// Always RFC 3164.
    Rfc3164,
}

/// One parsed message; every field borrows from the input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// PRI / 8.
    pub facility: u8,
    /// PRI % 8.
    pub severity: u8,
    /// `1` for RFC 5424; none for RFC 3164.
    pub version: Option<&'a [u8]>,
    /// The timestamp as sent.
    pub timestamp: Option<&'a [u8]>,
    /// The timestamp in milliseconds since the epoch, when it parses.
    pub timestamp_ms: Option<i64>,
    pub hostname: Option<&'a [u8]>,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164).
    pub app_name: Option<&'a [u8]>,
    /// PROCID (RFC 5424) or the `[PID]` after the tag (RFC 3164).
    pub proc_id: Option<&'a [u8]>,
    pub msg_id: Option<&'a [u8]>,
    /// The structured data as sent, brackets and escapes included.
    pub structured_data: Option<&'a [u8]>,
    /// The MSG part.
    pub msg: &'a [u8],
}

/// Why a message does not parse (the `syslog.invalid` header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn invalid<T>(reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(reason.into()))
}

/// The UTF-8 byte order mark RFC 5424 puts before a UTF-8 MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Cuts trailing `\n`, `\r` and `\0`.
pub fn trim_end(mut input: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = input {
        input = rest;
    }
    input
}

/// Parses one message (see the module docs); `now` dates RFC 3164
/// timestamps, which have no year.
pub fn parse(input: &[u8], format: Format, now: DateTime<Utc>) -> Result<Message<'_>, ParseError> {
    let input = trim_end(input);
    let (pri, rest) = pri(input)?;
    let mut message = match format {
        Format::Rfc5424 => rfc5424(rest)?,
        Format::Rfc3164 => rfc3164(rest, now),
        Format::Auto if rest.starts_with(b"1 ") => rfc5424(rest)?,
        Format::Auto => rfc3164(rest, now),
    };
    message.facility = pri / 8;
    message.severity = pri % 8;
    Ok(message)
}

/// `<PRI>`: 1 to 3 digits, at most 191.
fn pri(input: &[u8]) -> Result<(u8, &[u8]), ParseError> {
    let Some(rest) = input.strip_prefix(b"<") else {
        return invalid("no <PRI> at the start");
    };
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 3 || rest.get(digits) != Some(&b'>') {
        return invalid("<PRI> is not 1 to 3 digits in angle brackets");
    }
    let value = rest[..digits]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if value > 191 {
        return invalid("PRI is above 191");
    }
    Ok((value as u8, &rest[digits + 1..]))
}

/// The next space-separated header field of an RFC 5424 message: `None`
/// for NILVALUE, and what follows its space.
fn field<'a>(rest: &'a [u8], name: &str) -> Result<(Option<&'a [u8]>, &'a [u8]), ParseError> {
    let Some(end) = rest.iter().position(|b| *b == b' ') else {
        return invalid(format!("RFC 5424: the header ends in or before {name}"));
    };
    match &rest[..end] {
        [] => invalid(format!("RFC 5424: {name} is empty")),
        b"-" => Ok((None, &rest[end + 1..])),
        value => Ok((Some(value), &rest[end + 1..])),
    }
}

fn rfc5424(rest: &[u8]) -> Result<Message<'_>, ParseError> {
    let Some(end) = rest.iter().position(|b| *b == b' ') else {
        return invalid("RFC 5424: no VERSION");
    };
    if &rest[..end] != b"1" {
        return invalid("RFC 5424: VERSION is not 1");
    }
    let version = Some(&rest[..end]);
    let rest = &rest[end + 1..];
    let (timestamp, rest) = field(rest, "TIMESTAMP")?;
    let (hostname, rest) = field(rest, "HOSTNAME")?;
    let (app_name, rest) = field(rest, "APP-NAME")?;
    let (proc_id, rest) = field(rest, "PROCID")?;
    let (msg_id, rest) = field(rest, "MSGID")?;
    let (structured_data, rest) = match rest.first() {
        Some(b'-') => (None, &rest[1..]),
        Some(b'[') => {
            let len = structured_data(rest)?;
            (Some(&rest[..len]), &rest[len..])
        }
        _ => return invalid("RFC 5424: no STRUCTURED-DATA (`-` or `[...]`) after MSGID"),
    };
    let msg = match rest {
        [] => rest,
        [b' ', msg @ ..] => msg.strip_prefix(BOM).unwrap_or(msg),
        _ => return invalid("RFC 5424: no space after STRUCTURED-DATA"),
    };
    let timestamp_ms = timestamp
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    Ok(Message {
        version,
        timestamp,
        timestamp_ms,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        msg,
        ..Message::default()
    })
}

/// An SD-NAME character: printable US-ASCII but `=`, space, `]` and `"`.
fn sd_name_char(b: u8) -> bool {
    (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"')
}

/// The length of the SD-ELEMENTs `s` starts with.
fn structured_data(s: &[u8]) -> Result<usize, ParseError> {
    let bad = |what: &str| invalid(format!("RFC 5424: structured data: {what}"));
    let name = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(|b| sd_name_char(*b)) {
            *i += 1;
        }
        *i > start
    };
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        i += 1;
        if !name(&mut i) {
            return bad("an element has no SD-ID");
        }
        loop {
            match s.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => {
                    i += 1;
                    if !name(&mut i) {
                        return bad("a parameter has no name");
                    }
                    if s.get(i..i + 2) != Some(b"=\"") {
                        return bad("a parameter name is not followed by =\"");
                    }
                    i += 2;
                    loop {
                        match s.get(i) {
                            Some(b'\\') => i += 2,
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                            None => return bad("a parameter value is not closed by \""),
                        }
                    }
                }
                Some(_) => return bad("unexpected character in an element"),
                None => return bad("an element is not closed by ]"),
            }
        }
    }
    Ok(i)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn rfc3164(rest: &[u8], now: DateTime<Utc>) -> Message<'_> {
    let Some((timestamp, timestamp_ms, rest)) =
        bsd_timestamp(rest, now).or_else(|| rfc3339_timestamp(rest))
    else {
        // RFC 3164 §4.3.3: without a timestamp it is all MSG.
        return Message {
            msg: rest,
            ..Message::default()
        };
    };
    let mut message = Message {
        timestamp: Some(timestamp),
        timestamp_ms,
        ..Message::default()
    };
    // The hostname, unless the next word is already the tag.
    let word_end = rest.iter().position(|b| *b == b' ');
    let word = &rest[..word_end.unwrap_or(rest.len())];
    let rest = if !word.is_empty() && !word.ends_with(b":") && !word.contains(&b'[') {
        message.hostname = Some(word);
        word_end.map_or(&rest[rest.len()..], |e| &rest[e + 1..])
    } else {
        rest
    };
    message.msg = rest;
    if let Some((tag, pid, msg)) = tag(rest) {
        message.app_name = Some(tag);
        message.proc_id = pid;
        message.msg = msg;
    }
    message
}

/// A tag, its pid, and what follows them.
type Tag<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// A timestamp as sent, in milliseconds when it is a valid date, and what
/// follows it.
type Stamp<'a> = (&'a [u8], Option<i64>, &'a [u8]);

/// `TAG[PID]: ` or `TAG: ` (or `TAG[PID] `): the tag, the pid, and the
/// rest after one space; `None` if `rest` does not start with a tag.
fn tag(rest: &[u8]) -> Option<Tag<'_>> {
    let len = rest
        .iter()
        .take(49)
        .take_while(|b| !matches!(b, b' ' | b':' | b'[' | b']'))
        .count();
    if len == 0 || len > 48 {
        return None;
    }
    let (tag, mut after) = rest.split_at(len);
    let mut pid = None;
    if let Some(inner) = after.strip_prefix(b"[") {
        let end = inner.iter().take(129).position(|b| *b == b']')?;
        if end == 0 || inner[..end].contains(&b' ') {
            return None;
        }
        pid = Some(&inner[..end]);
        after = &inner[end + 1..];
        after = after.strip_prefix(b":").unwrap_or(after);
    } else {
        after = after.strip_prefix(b":")?;
    }
    Some((tag, pid, after.strip_prefix(b" ").unwrap_or(after)))
}

/// `Mmm dd hh:mm:ss` (day `dd`, ` d` or `d`) followed by a space or the end.
fn bsd_timestamp(s: &[u8], now: DateTime<Utc>) -> Option<Stamp<'_>> {
    let month = MONTHS
        .iter()
        .position(|m| s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(*m)))?;
    let mut i = 3;
    if s.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    if s.get(i) == Some(&b' ') {
        i += 1;
    }
    let digits = |i: usize, n: usize| -> Option<u32> {
        let d = s.get(i..i + n)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |v, b| v * 10 + u32::from(b - b'0')))
    };
    let day_len = if s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        2
    } else {
        1
    };
    let day = digits(i, day_len)?;
    i += day_len;
    if s.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let (hour, minute, second) = (digits(i, 2)?, digits(i + 3, 2)?, digits(i + 6, 2)?);
    if s.get(i + 2) != Some(&b':') || s.get(i + 5) != Some(&b':') {
        return None;
    }
    i += 8;
    let rest = match s.get(i) {
        None => &s[i..],
        Some(b' ') => &s[i + 1..],
        Some(_) => return None,
    };
    let at = |year: i32| {
        NaiveDate::from_ymd_opt(year, month as u32 + 1, day)?
            .and_hms_opt(hour, minute, second)
            .map(|t| t.and_utc())
    };
    let ms = at(now.year())
        .and_then(|t| {
            if t > now + TimeDelta::days(1) {
                at(now.year() - 1)
            } else {
                Some(t)
            }
        })
        .map(|t| t.timestamp_millis());
    Some((&s[..i], ms, rest))
}

/// An RFC 3339 timestamp (as rsyslog forwards) followed by a space or the end.
fn rfc3339_timestamp(s: &[u8]) -> Option<Stamp<'_>> {
    let end = s.iter().position(|b| *b == b' ').unwrap_or(s.len());
    let text = std::str::from_utf8(&s[..end]).ok()?;
    let ms = DateTime::parse_from_rfc3339(text).ok()?.timestamp_millis();
    Some((&s[..end], Some(ms), s.get(end + 1..).unwrap_or(&[])))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 15, 12, 0, 0).unwrap()
    }

    fn ok(input: &[u8]) -> Message<'_> {
        parse(input, Format::Auto, now()).unwrap()
    }

    fn err(input: &[u8], format: Format) -> String {
        parse(input, format, now()).unwrap_err().0
    }

    fn ms(rfc3339: &str) -> Option<i64> {
        Some(
            DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .timestamp_millis(),
        )
    }

    // RFC 5424 §6.5, example 1 (with BOM).
    #[test]
    fn rfc5424_example_1_with_bom_and_no_structured_data() {
        let m = ok(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(
            m,
            Message {
                facility: 4,
                severity: 2,
                version: Some(b"1"),
                timestamp: Some(b"2003-10-11T22:14:15.003Z"),
                timestamp_ms: Some(1_065_910_455_003),
                hostname: Some(b"mymachine.example.com"),
                app_name: Some(b"su"),
                proc_id: None,
                msg_id: Some(b"ID47"),
                structured_data: None,
                msg: b"'su root' failed for lonvick on /dev/pts/8",
            }
        );
    }

    // Example 2: offset timestamp, no BOM, NILVALUE MSGID.
    #[test]
    fn rfc5424_example_2_offset_timestamp() {
        let m = ok(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.");
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.timestamp_ms, ms("2003-08-24T12:14:15.000003Z"));
        assert_eq!(m.hostname, Some(&b"192.0.2.1"[..]));
        assert_eq!(m.app_name, Some(&b"myproc"[..]));
        assert_eq!(m.proc_id, Some(&b"8710"[..]));
        assert_eq!((m.msg_id, m.structured_data), (None, None));
        assert_eq!(m.msg, b"%% It's time to make the do-nuts.");
    }

    // Examples 3 and 4: structured data, with and without MSG.
    #[test]
    fn rfc5424_examples_3_and_4_structured_data() {
        let sd = br#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]"#;
        let mut input =
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 ".to_vec();
        input.extend_from_slice(sd);
        input.extend_from_slice(b" \xEF\xBB\xBFAn application event log entry...");
        let m = ok(&input);
        assert_eq!(m.structured_data, Some(&sd[..]));
        assert_eq!(m.app_name, Some(&b"evntslog"[..]));
        assert_eq!(m.msg, b"An application event log entry...");

        let sd = br#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;
        let mut input =
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 ".to_vec();
        input.extend_from_slice(sd);
        let m = ok(&input);
        assert_eq!(m.structured_data, Some(&sd[..]));
        assert_eq!(m.msg, b"");
    }

    #[test]
    fn rfc5424_escapes_in_parameter_values() {
        let sd = br#"[id@1 a="x\]y" b="q\"uote\\" c="]raw bracket["]"#;
        let mut input = b"<14>1 - - - - - ".to_vec();
        input.extend_from_slice(sd);
        input.extend_from_slice(b" body ] with [brackets]");
        let m = ok(&input);
        assert_eq!(m.structured_data, Some(&sd[..]));
        assert_eq!(m.msg, b"body ] with [brackets]");
    }

    #[test]
    fn rfc5424_all_nil_and_empty_msg() {
        let m = ok(b"<0>1 - - - - - -");
        assert_eq!(
            m,
            Message {
                version: Some(b"1"),
                ..Message::default()
            }
        );
        // A space and nothing more: an empty MSG; trailing CRLF and NUL cut.
        assert_eq!(ok(b"<191>1 - - - - - - \r\n\0").msg, b"");
        assert_eq!(ok(b"<191>1 - - - - - - \r\n\0").severity, 7);
    }

    #[test]
    fn rfc5424_unparsable_timestamp_is_kept_without_time() {
        let m = ok(b"<13>1 yesterday host app - - - hi");
        assert_eq!(m.timestamp, Some(&b"yesterday"[..]));
        assert_eq!(m.timestamp_ms, None);
        assert_eq!(m.msg, b"hi");
    }

    #[test]
    fn rfc5424_missing_parts_are_invalid() {
        let e = |input: &[u8]| err(input, Format::Auto);
        assert!(e(b"<13>1 2003-10-11T22:14:15Z host app").contains("APP-NAME"));
        assert!(e(b"<13>1 2003-10-11T22:14:15Z host app 1 ID").contains("MSGID"));
        assert!(e(b"<13>1 2003-10-11T22:14:15Z host app 1 ID msg").contains("STRUCTURED-DATA"));
        assert!(e(b"<13>1 2003-10-11T22:14:15Z  app 1 ID - msg").contains("HOSTNAME is empty"));
        assert!(e(b"<13>1 - - - - - [id a=\"1\"").contains("not closed by ]"));
        assert!(e(b"<13>1 - - - - - [id a=\"1]").contains("not closed by \""));
        assert!(e(b"<13>1 - - - - - [id a=1]").contains("=\""));
        assert!(e(b"<13>1 - - - - - [ a=\"1\"]").contains("SD-ID"));
        assert!(e(b"<13>1 - - - - - [id]x").contains("no space after"));
        assert_eq!(
            err(b"<13>2 - - - - - -", Format::Rfc5424),
            "RFC 5424: VERSION is not 1"
        );
        assert_eq!(
            err(b"<13>Oct 11 22:14:15 host su: hi", Format::Rfc5424),
            "RFC 5424: VERSION is not 1"
        );
    }

    #[test]
    fn pri_is_checked() {
        let e = |input: &[u8]| err(input, Format::Auto);
        assert_eq!(e(b""), "no <PRI> at the start");
        assert_eq!(e(b"hello world"), "no <PRI> at the start");
        assert_eq!(e(b"<192>1 - - - - - -"), "PRI is above 191");
        assert!(e(b"<>1 - - - - - -").contains("1 to 3 digits"));
        assert!(e(b"<1234>x").contains("1 to 3 digits"));
        assert!(e(b"<12").contains("1 to 3 digits"));
        assert!(e(b"\x00\xff\xfe<13>").contains("no <PRI>"));
    }

    // RFC 3164 §5.4, examples 1 to 3.
    #[test]
    fn rfc3164_examples() {
        let m = ok(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(
            m,
            Message {
                facility: 4,
                severity: 2,
                timestamp: Some(b"Oct 11 22:14:15"),
                // October is months after `now` (June 15): the year before.
                timestamp_ms: ms("2023-10-11T22:14:15Z"),
                hostname: Some(b"mymachine"),
                app_name: Some(b"su"),
                msg: b"'su root' failed for lonvick on /dev/pts/8",
                ..Message::default()
            }
        );
        // No timestamp: all of it is MSG.
        let m = ok(b"<13>Use the BFG!");
        assert_eq!((m.facility, m.severity), (1, 5));
        assert_eq!((m.timestamp, m.hostname, m.app_name), (None, None, None));
        assert_eq!(m.msg, b"Use the BFG!");
        let m = ok(b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  Ingredients: Mix=OK, Jelly=OK #");
        assert_eq!(m.timestamp, Some(&b"Aug 24 05:34:00"[..]));
        assert_eq!(m.hostname, Some(&b"CST"[..]));
        assert_eq!(m.app_name, None, "`1987` is not a tag");
        assert!(m.msg.starts_with(b"1987 mymachine myproc[10]:"));
    }

    #[test]
    fn rfc3164_tag_pid_and_padded_day() {
        let m = ok(b"<30>Jun  1 01:02:03 web-1 sshd[4321]: Accepted publickey\n");
        assert_eq!(m.timestamp, Some(&b"Jun  1 01:02:03"[..]));
        assert_eq!(m.timestamp_ms, ms("2024-06-01T01:02:03Z"));
        assert_eq!(m.hostname, Some(&b"web-1"[..]));
        assert_eq!(m.app_name, Some(&b"sshd"[..]));
        assert_eq!(m.proc_id, Some(&b"4321"[..]));
        assert_eq!(m.msg, b"Accepted publickey");
        // An unpadded day, no hostname (as a local logger sends).
        let m = ok(b"<13>Jun 1 01:02:03 cron[7]: job done");
        assert_eq!(m.timestamp, Some(&b"Jun 1 01:02:03"[..]));
        assert_eq!(m.hostname, None);
        assert_eq!(
            (m.app_name, m.proc_id),
            (Some(&b"cron"[..]), Some(&b"7"[..]))
        );
        assert_eq!(m.msg, b"job done");
        let m = ok(b"<13>Jun 1 01:02:03 logger: hi");
        assert_eq!((m.hostname, m.app_name), (None, Some(&b"logger"[..])));
        assert_eq!(m.msg, b"hi");
    }

    #[test]
    fn rfc3164_rfc3339_timestamp_and_missing_parts() {
        let m = ok(b"<86>2024-06-15T10:00:00.5+02:00 host app: text");
        assert_eq!(m.timestamp_ms, ms("2024-06-15T08:00:00.5Z"));
        assert_eq!(m.hostname, Some(&b"host"[..]));
        assert_eq!(m.msg, b"text");
        // Hostname only.
        let m = ok(b"<13>Jun 15 11:00:00 host");
        assert_eq!(m.hostname, Some(&b"host"[..]));
        assert_eq!(m.msg, b"");
        // No tag: the rest is MSG.
        let m = ok(b"<13>Jun 15 11:00:00 host just some words");
        assert_eq!(m.app_name, None);
        assert_eq!(m.msg, b"just some words");
        // A broken tag is MSG too.
        let m = ok(b"<13>Jun 15 11:00:00 host app[12 oops: x");
        assert_eq!(m.app_name, None);
        assert_eq!(m.msg, b"app[12 oops: x");
        // A near-timestamp is not one.
        let m = ok(b"<13>Jun 15 11:00 host app: x");
        assert_eq!(m.timestamp, None);
        assert_eq!(m.msg, b"Jun 15 11:00 host app: x");
        // Feb 29 of a year without one: kept as sent, no time.
        let m = parse(
            b"<13>Feb 29 11:00:00 host app: x",
            Format::Rfc3164,
            Utc.with_ymd_and_hms(2023, 3, 1, 0, 0, 0).unwrap(),
        )
        .unwrap();
        assert_eq!(m.timestamp, Some(&b"Feb 29 11:00:00"[..]));
        assert_eq!(m.timestamp_ms, None);
    }

    #[test]
    fn year_of_a_bsd_timestamp_rolls_back_over_new_year() {
        let jan = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 5).unwrap();
        let m = parse(b"<13>Dec 31 23:59:59 h a: x", Format::Auto, jan).unwrap();
        assert_eq!(m.timestamp_ms, ms("2024-12-31T23:59:59Z"));
        let m = parse(b"<13>Jan  1 00:00:01 h a: x", Format::Auto, jan).unwrap();
        assert_eq!(m.timestamp_ms, ms("2025-01-01T00:00:01Z"));
    }

    #[test]
    fn forced_rfc3164_reads_a_5424_message_as_msg() {
        let m = parse(b"<13>1 - - - - - - x", Format::Rfc3164, now()).unwrap();
        assert_eq!(m.version, None);
        assert_eq!(m.msg, b"1 - - - - - - x");
    }

    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"<",
            b"<1",
            b"<1>",
            b"<1>1",
            b"<1>1 ",
            b"<1>1 - - - - - [",
            b"<1>1 - - - - - [a b=\"\\",
            b"<1>Jan",
            b"<1>Jan 1",
            b"<1>Jan 1 ",
            b"<1>Jan 99 99:99:99 h t: x",
            b"<1>Jan 1 00:00:00 [",
            b"<1>Jan 1 00:00:00 a[",
            b"<1>Jan 1 00:00:00 a[]: x",
            b"<1>\xff\xfe\xfd",
            b"\n\r\0",
        ];
        for s in samples {
            for f in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
                let _ = parse(s, f, now());
            }
        }
        // Every prefix of a real message.
        let full = br#"<165>1 2003-10-11T22:14:15.003Z host app 1 ID [a@1 b="c\]d"][e f="g"] msg"#;
        for n in 0..full.len() {
            let _ = parse(&full[..n], Format::Auto, now());
        }
        let m = parse(b"<1>Jan 99 99:99:99 h t: x", Format::Auto, now()).unwrap();
        assert_eq!(m.timestamp_ms, None);
    }
}
