//! Java `.properties` files, read as `java.util.Properties.load` reads them
//! (which is how Flume reads an agent's configuration), keeping the line
//! each property starts on.
//!
//! - A *natural* line ends at `\n`, `\r\n` or `\r`. A line whose last
//!   character is an unescaped backslash (an odd number of them) continues
//!   on the next line, whose leading whitespace is dropped: one *logical*
//!   line. Comment lines do not continue.
//! - Blank lines, and lines whose first non-blank character is `#` or `!`,
//!   are skipped. Blank is space, tab and form feed.
//! - The key runs to the first unescaped `=`, `:` or blank; blanks, then at
//!   most one `=` or `:`, then blanks separate it from the value, which runs
//!   to the end of the logical line (trailing blanks included):
//!   `key=value`, `key: value`, `key value`.
//! - In keys and values `\t`, `\n`, `\r`, `\f` and `\uXXXX` (UTF-16 code
//!   units; a surrogate pair makes one character) are escapes, and a
//!   backslash before any other character stands for that character
//!   (`\=`, `\:`, `\ `, `\\`, `\#`).
//! - A later property with the same key replaces an earlier one (Java's
//!   `Properties` is a map); [`parse`] keeps both, in order, so the caller
//!   can tell.
//!
//! Flume reads the file in the platform charset; this reads UTF-8 (a
//! leading byte-order mark is skipped) and says which line is not.

/// One `key = value` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, escapes resolved.
    pub key: String,
    /// The value, escapes resolved; trailing blanks kept, as Java keeps them.
    pub value: String,
    /// 1-based line the property starts on.
    pub line: usize,
}

/// A file that is not a properties file Java would read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the problem.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a file's bytes: UTF-8 (with or without a byte-order mark), then
/// [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<Property>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        ParseError {
            line,
            message: "not valid UTF-8; convert the file first (`iconv -f latin1 -t utf-8`)".into(),
        }
    })?;
    parse(text)
}

/// Parses properties text into its properties, in file order.
pub fn parse(text: &str) -> Result<Vec<Property>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    // The logical line being assembled, and the line it started on.
    let mut logical: Option<(String, usize)> = None;
    for (index, natural) in natural_lines(text).enumerate() {
        let number = index + 1;
        let stripped = natural.trim_start_matches(is_blank);
        let (mut buffer, start) = match logical.take() {
            Some((buffer, start)) => (buffer, start),
            None if stripped.is_empty() || stripped.starts_with(['#', '!']) => continue,
            None => (String::new(), number),
        };
        let continues = trailing_backslashes(stripped) % 2 == 1;
        buffer.push_str(if continues {
            &stripped[..stripped.len() - 1]
        } else {
            stripped
        });
        if continues {
            logical = Some((buffer, start));
        } else {
            out.push(property(&buffer, start)?);
        }
    }
    if let Some((buffer, start)) = logical {
        out.push(property(&buffer, start)?);
    }
    Ok(out)
}

/// Space, tab and form feed: what Java skips around keys and separators.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Lines ended by `\n`, `\r\n` or `\r`, without their terminators.
fn natural_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\n', '\r']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                (!current.is_empty()).then_some(current)
            }
        }
    })
}

fn trailing_backslashes(line: &str) -> usize {
    line.bytes().rev().take_while(|b| *b == b'\\').count()
}

/// Splits one logical line into its key and value and resolves escapes.
fn property(line: &str, number: usize) -> Result<Property, ParseError> {
    let mut key_end = line.len();
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            key_end = at;
            break;
        }
    }
    let (key, mut rest) = line.split_at(key_end);
    rest = rest.trim_start_matches(is_blank);
    if let Some(after) = rest.strip_prefix(['=', ':']) {
        rest = after.trim_start_matches(is_blank);
    }
    Ok(Property {
        key: unescape(key, number)?,
        value: unescape(rest, number)?,
        line: number,
    })
}

/// Resolves the escapes of a key or value.
fn unescape(raw: &str, line: usize) -> Result<String, ParseError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    // A high surrogate waiting for its low half.
    let mut high: Option<u16> = None;
    let error = |message: String| ParseError { line, message };
    while let Some(c) = chars.next() {
        if c != '\\' {
            if high.is_some() {
                return Err(error("a `\\uD800`-`\\uDBFF` escape must be followed by its low surrogate (`\\uDC00`-`\\uDFFF`)".into()));
            }
            out.push(c);
            continue;
        }
        let Some(next) = chars.next() else {
            break; // a lone backslash at the very end: Java drops it
        };
        if next != 'u' {
            if high.is_some() {
                return Err(error("a `\\uD800`-`\\uDBFF` escape must be followed by its low surrogate (`\\uDC00`-`\\uDFFF`)".into()));
            }
            out.push(match next {
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'f' => '\u{c}',
                other => other,
            });
            continue;
        }
        let digits: String = chars.by_ref().take(4).collect();
        let unit = (digits.len() == 4)
            .then(|| u16::from_str_radix(&digits, 16).ok())
            .flatten()
            .ok_or_else(|| {
                error(format!(
                    "malformed `\\u{digits}` escape: `\\u` takes exactly four hex digits"
                ))
            })?;
        match (high.take(), unit) {
            (None, 0xD800..=0xDBFF) => high = Some(unit),
            (None, 0xDC00..=0xDFFF) => {
                return Err(error(format!(
                    "`\\u{digits}` is a low surrogate without its high half"
                )));
            }
            (None, unit) => out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}')),
            (Some(h), 0xDC00..=0xDFFF) => {
                let code = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            (Some(_), _) => {
                return Err(error(format!(
                    "`\\u{digits}` follows a high surrogate but is not a low surrogate"
                )));
            }
        }
    }
    if high.is_some() {
        return Err(error(
            "a `\\uD800`-`\\uDBFF` escape must be followed by its low surrogate (`\\uDC00`-`\\uDFFF`)"
                .into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value, p.line))
            .collect()
    }

    fn one(text: &str) -> (String, String) {
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        (p[0].key.clone(), p[0].value.clone())
    }

    #[test]
    fn the_three_separators_and_blanks_around_them() {
        assert_eq!(one("a=b"), ("a".into(), "b".into()));
        assert_eq!(one("a = b"), ("a".into(), "b".into()));
        assert_eq!(one("a: b"), ("a".into(), "b".into()));
        assert_eq!(one("a b"), ("a".into(), "b".into()));
        assert_eq!(one("\t a \t =  \t b"), ("a".into(), "b".into()));
        // Only one separator is eaten; the second belongs to the value.
        assert_eq!(one("a == b"), ("a".into(), "= b".into()));
        assert_eq!(one("a : = b"), ("a".into(), "= b".into()));
        assert_eq!(one("a  b c"), ("a".into(), "b c".into()));
        // Trailing blanks stay, as Java keeps them.
        assert_eq!(one("a = b  "), ("a".into(), "b  ".into()));
        // A key alone has an empty value.
        assert_eq!(one("lonely"), ("lonely".into(), String::new()));
        assert_eq!(one("empty ="), ("empty".into(), String::new()));
        // `=` inside a value is part of it.
        assert_eq!(one("k=a=b:c"), ("k".into(), "a=b:c".into()));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_lines_counted() {
        let text = "# comment\n! also a comment\n\n   \n  # indented comment\na.b = 1\n\nc=2\n";
        assert_eq!(
            pairs(text),
            [("a.b".into(), "1".into(), 6), ("c".into(), "2".into(), 8)]
        );
        // `#` after a key is part of the value.
        assert_eq!(
            one("k = v # not a comment"),
            ("k".into(), "v # not a comment".into())
        );
    }

    #[test]
    fn continuation_lines_join_and_keep_the_first_line_number() {
        let text = "x = 0\na1.sources.r1.command = tail -F \\\n     /var/log/app.log\ny = 1\n";
        assert_eq!(
            pairs(text),
            [
                ("x".into(), "0".into(), 1),
                (
                    "a1.sources.r1.command".into(),
                    "tail -F /var/log/app.log".into(),
                    2
                ),
                ("y".into(), "1".into(), 4)
            ]
        );
        // Several continuations, including a key split over lines.
        assert_eq!(
            one("ke\\\n  y = a\\\n   b\\\n c"),
            ("key".into(), "abc".into())
        );
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(
            pairs("a = c:\\\\\nb = 2"),
            [("a".into(), "c:\\".into(), 1), ("b".into(), "2".into(), 2)]
        );
        // A comment line ending in a backslash does not continue.
        assert_eq!(pairs("# comment \\\nk = v"), [("k".into(), "v".into(), 2)]);
        // A continuation at the end of the file ends the property.
        assert_eq!(one("k = v\\"), ("k".into(), "v".into()));
        // A continued line may continue into a blank line, which ends it.
        assert_eq!(
            pairs("k = v\\\n\nz=1"),
            [("k".into(), "v".into(), 1), ("z".into(), "1".into(), 3)]
        );
    }

    #[test]
    fn line_endings_of_every_kind() {
        assert_eq!(
            pairs("a=1\r\nb=2\rc=3\nd=4"),
            [
                ("a".into(), "1".into(), 1),
                ("b".into(), "2".into(), 2),
                ("c".into(), "3".into(), 3),
                ("d".into(), "4".into(), 4)
            ]
        );
        assert_eq!(one("k = a\\\r\n   b"), ("k".into(), "ab".into()));
    }

    #[test]
    fn escapes_in_keys_and_values() {
        assert_eq!(one(r"a\=b\:c\ d = v"), ("a=b:c d".into(), "v".into()));
        assert_eq!(
            one(r"k = tab\there\nnew\rret\fff"),
            ("k".into(), "tab\there\nnew\rret\u{c}ff".into())
        );
        // Regular expressions in Flume files double their backslashes.
        assert_eq!(
            one(r"regex = (\\d):(\\d)"),
            ("regex".into(), r"(\d):(\d)".into())
        );
        // Any other escaped character is itself.
        assert_eq!(one(r"k = \#\!\q\\"), ("k".into(), r"#!q\".into()));
        assert_eq!(one(r"k = caf\u00e9 \u4E2D"), ("k".into(), "café 中".into()));
        assert_eq!(one(r"k = \uD83D\uDE00"), ("k".into(), "😀".into()));
        // Leading blanks of a value can be kept with an escape.
        assert_eq!(one(r"k = \  x"), ("k".into(), "  x".into()));
    }

    #[test]
    fn malformed_unicode_escapes_name_their_line() {
        let err = parse("ok = 1\nbad = \\u12G4\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("four hex digits"), "{err}");
        assert_eq!(parse("k = \\u12").unwrap_err().line, 1);
        assert!(
            parse("k = \\uD83D!")
                .unwrap_err()
                .message
                .contains("surrogate")
        );
        assert!(
            parse("k = \\uDE00")
                .unwrap_err()
                .message
                .contains("low surrogate")
        );
        assert!(
            parse("k = \\uD83D")
                .unwrap_err()
                .message
                .contains("surrogate")
        );
    }

    #[test]
    fn bytes_must_be_utf8_and_may_start_with_a_bom() {
        assert_eq!(
            parse_bytes(b"\xef\xbb\xbfk = v").unwrap()[0].key,
            "k".to_string()
        );
        let err = parse_bytes(b"a = 1\nb = caf\xe9\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("UTF-8"));
    }

    #[test]
    fn later_duplicates_are_kept_in_order() {
        let p = parse("k = 1\nk = 2").unwrap();
        assert_eq!((p[0].value.as_str(), p[1].value.as_str()), ("1", "2"));
    }
}
