//! A validating JSON scanner that finds the values to mask without building a
//! document, so the body can be edited in place (key order, spacing and every
//! other byte kept) and a body with nothing to mask costs no allocation.

use std::borrow::Cow;
use std::ops::Range;

/// Deepest nesting scanned; deeper documents are left unchanged.
const MAX_NESTING: usize = 128;

/// What a value to mask is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string, span including its quotes.
    String,
    /// A number, span of its digits.
    Number,
}

/// One value to mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    /// Byte range of the value in the body.
    pub span: Range<usize>,
    /// Its type.
    pub kind: Kind,
}

/// The strings and numbers at or below any of `paths` (key paths; arrays are
/// looked through), in document order. `None` if `body` is not one JSON
/// document (UTF-8 included). `paths` holds at most 64 entries.
pub(crate) fn find_fields(body: &[u8], paths: &[Vec<String>]) -> Option<Vec<Edit>> {
    debug_assert!(paths.len() <= 64);
    // JSON text is UTF-8 (RFC 8259, 8.1); the scanner below checks only the
    // keys it compares, so the whole body is checked here.
    std::str::from_utf8(body).ok()?;
    let live = if paths.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << paths.len()) - 1
    };
    let mut s = Scanner {
        b: body,
        i: 0,
        paths,
        edits: Vec::new(),
    };
    s.ws();
    s.value(live, 0, false, 0)?;
    s.ws();
    (s.i == body.len()).then_some(s.edits)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    paths: &'a [Vec<String>],
    edits: Vec<Edit>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// `live`: paths matched up to `depth` keys; `masked`: inside a match.
    fn value(&mut self, live: u64, depth: usize, masked: bool, nesting: usize) -> Option<()> {
        if nesting > MAX_NESTING {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(live, depth, masked, nesting + 1),
            b'[' => self.array(live, depth, masked, nesting + 1),
            b'"' => {
                let span = self.string()?;
                if masked {
                    self.edits.push(Edit {
                        span,
                        kind: Kind::String,
                    });
                }
                Some(())
            }
            b'-' | b'0'..=b'9' => {
                let span = self.number()?;
                if masked {
                    self.edits.push(Edit {
                        span,
                        kind: Kind::Number,
                    });
                }
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn object(&mut self, live: u64, depth: usize, masked: bool, nesting: usize) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let (child_live, child_masked) = if masked || live == 0 {
                (0, masked)
            } else {
                self.descend(live, depth, key)?
            };
            self.value(child_live, depth + 1, child_masked, nesting)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, live: u64, depth: usize, masked: bool, nesting: usize) -> Option<()> {
        self.expect(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.value(live, depth, masked, nesting)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Which paths still match after key `key` (a string span) at `depth`,
    /// and whether one ends there.
    fn descend(&self, live: u64, depth: usize, key: Range<usize>) -> Option<(u64, bool)> {
        let raw = &self.b[key.start + 1..key.end - 1];
        let key: Cow<'_, str> = if raw.contains(&b'\\') {
            Cow::Owned(serde_json::from_slice::<String>(&self.b[key]).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(raw).ok()?)
        };
        let mut next = 0u64;
        let mut masked = false;
        for (bit, path) in self.paths.iter().enumerate() {
            if live & (1 << bit) == 0 || path.get(depth).map(String::as_str) != Some(&key) {
                continue;
            }
            if path.len() == depth + 1 {
                masked = true;
            } else {
                next |= 1 << bit;
            }
        }
        Some((next, masked))
    }

    /// A string; returns its span including the quotes.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        self.expect(b'"')?;
        loop {
            // Eight bytes a step while none ends the string or needs a look:
            // fewer instructions, and fewer loop back-edges, each of which
            // pays an epoch check under the host's time budget.
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let word = u64::from_le_bytes(chunk.try_into().ok()?);
                if needs_a_look(word) {
                    break;
                }
                self.i += 8;
            }
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(start..self.i);
                }
                b'\\' => self.escape()?,
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    /// Steps over one escape (`\\` included), refusing what JSON refuses:
    /// an unknown escape, a `\\u` without four hex digits, a lone surrogate.
    fn escape(&mut self) -> Option<()> {
        self.i += 1;
        match self.peek()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.i += 1;
                Some(())
            }
            b'u' => {
                self.i += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        self.expect(b'\\')?;
                        self.expect(b'u')?;
                        matches!(self.hex4()?, 0xDC00..=0xDFFF).then_some(())
                    }
                    0xDC00..=0xDFFF => None,
                    _ => Some(()),
                }
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u16::from_str_radix(text, 16).ok()
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(start..self.i)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }
}

/// Whether any byte of `word` is `"`, `\\` or a control character
/// (below 0x20): the bytes a JSON string's scan must stop at. Exact, with no
/// false positives or negatives: a byte is zero in `word ^ pattern` only
/// where `word` holds the pattern's byte, and `x - 0x20` borrows into the
/// high bit only for bytes below 0x20 (`!word` keeps bytes >= 0x80 out).
#[inline]
fn needs_a_look(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    let control = below(word, 0x20);
    (quote | backslash | control) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        p.iter()
            .map(|s| s.split('.').map(str::to_owned).collect())
            .collect()
    }

    fn spans<'b>(body: &'b str, p: &[&str]) -> Option<Vec<&'b str>> {
        let edits = find_fields(body.as_bytes(), &paths(p))?;
        Some(edits.iter().map(|e| &body[e.span.clone()]).collect())
    }

    #[test]
    fn a_word_needs_a_look_exactly_when_one_of_its_bytes_does() {
        let needs = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for special in 0..=255u8 {
            for at in 0..8 {
                for filler in [b'a', 0x7f, 0x80, 0xc3, 0xff, b' ', b'!', b'#', b'[', b']'] {
                    let mut bytes = [filler; 8];
                    bytes[at] = special;
                    let expected = bytes.iter().any(|&b| needs(b));
                    assert_eq!(
                        needs_a_look(u64::from_le_bytes(bytes)),
                        expected,
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_strings_are_scanned_as_before() {
        let long = "x".repeat(37);
        let body = format!(r#"{{"k":"{long}\"{long}","card":"{long}é\u00e9{long}"}}"#);
        let edits = find_fields(body.as_bytes(), &paths(&["card"])).unwrap();
        assert_eq!(edits.len(), 1);
        assert_eq!(
            &body[edits[0].span.clone()],
            format!(r#""{long}é\u00e9{long}""#)
        );
        let control = format!("{{\"k\":\"{long}\u{1}{long}\"}}");
        assert_eq!(find_fields(control.as_bytes(), &paths(&["k"])), None);
        let unterminated = format!("{{\"k\":\"{long}{long}");
        assert_eq!(find_fields(unterminated.as_bytes(), &paths(&["k"])), None);
    }

    #[test]
    fn finds_values_by_path() {
        let body = r#" { "a" : {"b": [1, "x", {"c": -2.5e3}]}, "c": "top", "d\u0061": 7 } "#;
        assert_eq!(spans(body, &["a.b"]), Some(vec!["1", "\"x\"", "-2.5e3"]));
        assert_eq!(spans(body, &["a.b.c"]), Some(vec!["-2.5e3"]));
        assert_eq!(spans(body, &["c"]), Some(vec!["\"top\""]));
        assert_eq!(spans(body, &["da"]), Some(vec!["7"]));
        assert_eq!(spans(body, &["a"]), Some(vec!["1", "\"x\"", "-2.5e3"]));
        assert_eq!(spans(body, &["zz"]), Some(vec![]));
    }

    #[test]
    fn rejects_invalid_json() {
        for bad in [
            "",
            "{",
            "{\"a\" 1}",
            "{\"a\": 01}",
            "{\"a\": 1,}",
            "[1 2]",
            "{\"a\": tru}",
            "{} x",
            "\"a\nb\"",
            "{\"a\": \"\\",
            // Found by `fuzz_accepts_what_serde_json_accepts`: escapes
            // JSON does not have were let through.
            "\"\\a\"",
            "{\"a\": \"\\u12\"}",
            "{\"a\": \"\\ud800\"}",
            "{\"a\": \"\\udc00\\ud800\"}",
        ] {
            assert_eq!(find_fields(bad.as_bytes(), &paths(&["a"])), None, "{bad}");
        }
        // Bytes that are not UTF-8, in a value the scanner does not compare.
        assert_eq!(find_fields(b"{\"b\": \"\xff\"}", &paths(&["a"])), None);
        assert_eq!(find_fields(b"{\"a\": \"\xc3\"}", &paths(&["a"])), None);
    }

    #[test]
    fn deep_nesting_is_left_alone() {
        let deep = "[".repeat(500) + &"]".repeat(500);
        assert_eq!(find_fields(deep.as_bytes(), &paths(&["a"])), None);
    }

    /// Differential fuzz target against serde_json (the reference parser):
    /// the scanner accepts exactly the documents serde_json accepts, and
    /// finds exactly the strings and numbers at or below the path. Run longer
    /// with `PROPTEST_CASES=100000 cargo test -p mask fuzz_`.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// JSON values with unique keys from a small alphabet (so paths hit).
        fn value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                (-1e6f64..1e6).prop_map(|f| serde_json::json!(f)),
                ".{0,6}".prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(6, 48, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..5)
                        .prop_map(serde_json::Value::Array),
                    proptest::collection::btree_map("[abc]{1,2}", inner, 0..5)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The reference: strings and numbers at or below `path`.
        fn reference(v: &serde_json::Value, path: &[&str], out: &mut Vec<serde_json::Value>) {
            match v {
                serde_json::Value::Array(items) => {
                    for item in items {
                        reference(item, path, out);
                    }
                }
                serde_json::Value::Object(map) if !path.is_empty() => {
                    if let Some(next) = map.get(path[0]) {
                        reference(next, &path[1..], out);
                    }
                }
                serde_json::Value::Object(map) => {
                    for next in map.values() {
                        reference(next, path, out);
                    }
                }
                serde_json::Value::String(_) | serde_json::Value::Number(_) if path.is_empty() => {
                    out.push(v.clone());
                }
                _ => {}
            }
        }

        fn sorted(mut v: Vec<serde_json::Value>) -> Vec<String> {
            let mut s: Vec<String> = v.drain(..).map(|v| v.to_string()).collect();
            s.sort();
            s
        }

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn fuzz_found_values_match_serde_json(doc in value(), pretty in any::<bool>(), path in "[abc]{1,2}(\\.[abc]{1,2})?") {
                let body = if pretty {
                    serde_json::to_string_pretty(&doc).unwrap()
                } else {
                    serde_json::to_string(&doc).unwrap()
                };
                let parts: Vec<&str> = path.split('.').collect();
                let edits = find_fields(body.as_bytes(), &paths(&[path.as_str()])).expect("valid JSON is accepted");
                // Numbers compare as text: serde_json's default float
                // parsing does not always round-trip the last digit.
                let mut found: Vec<String> = edits
                    .iter()
                    .map(|e| {
                        let span = &body[e.span.clone()];
                        match e.kind {
                            Kind::Number => span.to_owned(),
                            Kind::String => serde_json::from_str::<serde_json::Value>(span).unwrap().to_string(),
                        }
                    })
                    .collect();
                found.sort();
                let mut want = Vec::new();
                reference(&doc, &parts, &mut want);
                prop_assert_eq!(found, sorted(want));
            }

            #[test]
            fn fuzz_accepts_what_serde_json_accepts(body in "([{}\\[\\],:\" ]|[0-9]|-|\\.|e|true|null|\\\\|a){0,24}") {
                let ours = find_fields(body.as_bytes(), &paths(&["a"])).is_some();
                let reference = serde_json::from_str::<serde_json::Value>(&body).is_ok();
                prop_assert_eq!(ours, reference, "{:?}", body);
            }
        }
    }
}
