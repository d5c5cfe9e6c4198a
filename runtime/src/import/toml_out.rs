//! Writing a commented Sluice configuration: a small document model of
//! tables, keys and comments, rendered as TOML text.
//!
//! The `toml` crate writes values but drops comments, and the comments are
//! half of what an import is for (where each section came from, what could
//! not be carried over), so the text is written here:
//!
//! - keys are bare when they can be (`[A-Za-z0-9_-]+`), quoted otherwise;
//! - strings holding a backslash are written as literal strings
//!   (`'^\d+$'`, as a regular expression reads best) when they can be,
//!   otherwise as basic strings with TOML's escapes;
//! - `$` before `{` or `$` is doubled everywhere, comments included, since
//!   Sluice replaces `${VAR}` in the whole file before reading it; only
//!   [`Value::Interp`] keeps its `${VAR}` references;
//! - comments are wrapped at [`WIDTH`] columns.

use std::fmt::Write as _;

/// Column comments are wrapped at.
pub(crate) const WIDTH: usize = 88;

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A string, written so that Sluice reads it back as is.
    Str(String),
    /// A string whose `${VAR}` and `${VAR:-default}` references Sluice
    /// replaces from the environment when it loads the file.
    Interp(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Value>),
    /// An inline table, its keys in this order.
    Inline(Vec<(String, Value)>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// An array of strings.
    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        Self::Array(
            items
                .into_iter()
                .map(|s| Self::Str(s.as_ref().to_owned()))
                .collect(),
        )
    }
}

/// One `key = value` line, with comments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    key: String,
    value: Value,
    /// Comment lines written above the key.
    above: Vec<String>,
    /// A short comment written after the value.
    after: Option<String>,
}

impl Entry {
    /// Adds a comment line above the key.
    pub fn above(&mut self, text: impl Into<String>) -> &mut Self {
        self.above.push(text.into());
        self
    }

    /// Sets the comment after the value.
    pub fn after(&mut self, text: impl Into<String>) -> &mut Self {
        self.after = Some(text.into());
        self
    }
}

/// A `[a.b]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Table {
    /// The header's key path.
    path: Vec<String>,
    /// Comment lines above the header.
    comments: Vec<String>,
    entries: Vec<Entry>,
}

impl Table {
    /// An empty table at `path`.
    pub fn new(path: &[&str]) -> Self {
        Self {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Adds a comment line above the header (an empty string is a `#` line).
    pub fn comment(&mut self, text: impl Into<String>) -> &mut Self {
        self.comments.push(text.into());
        self
    }

    /// Adds `key = value` (replacing an earlier one of the same key, in
    /// place) and returns it for comments.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Entry {
        match self.entries.iter().position(|e| e.key == key) {
            Some(at) => {
                self.entries[at].value = value;
                &mut self.entries[at]
            }
            None => {
                self.entries.push(Entry {
                    key: key.to_owned(),
                    value,
                    above: Vec::new(),
                    after: None,
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        }
    }

    /// The value of `key`, if set.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The header's key path.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Whether the table has no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A part of the document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A table.
    Table(Table),
    /// Free comment lines.
    Comment(Vec<String>),
}

/// A whole file: comment lines, then blocks.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Document {
    /// Comment lines at the top.
    pub header: Vec<String>,
    /// Tables and comment blocks, in order.
    pub blocks: Vec<Block>,
    /// Whether [`Value::Str`] values keep their `${VAR}` references too
    /// (the source configuration used them for environment variables).
    pub keep_refs: bool,
}

impl Document {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        comment_lines(&mut out, &self.header, "");
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Comment(lines) => comment_lines(&mut out, lines, ""),
                Block::Table(table) => render_table(&mut out, table, self.keep_refs),
            }
        }
        out
    }
}

fn render_table(out: &mut String, table: &Table, keep_refs: bool) {
    comment_lines(out, &table.comments, "");
    let header: Vec<String> = table.path.iter().map(|k| key(k)).collect();
    let _ = writeln!(out, "[{}]", header.join("."));
    for entry in &table.entries {
        comment_lines(out, &entry.above, "");
        let mut line = format!("{} = ", key(&entry.key));
        let indent = " ".repeat(4);
        value(&mut line, &entry.value, &indent, keep_refs);
        if let Some(after) = &entry.after {
            let _ = write!(line, "  # {}", dollars(after, false));
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// Writes `# ` lines, wrapping long ones at [`WIDTH`].
fn comment_lines(out: &mut String, lines: &[String], indent: &str) {
    for text in lines {
        let text = dollars(text, false);
        if text.is_empty() {
            let _ = writeln!(out, "{indent}#");
            continue;
        }
        let budget = WIDTH.saturating_sub(indent.len() + 2).max(20);
        // Continuation lines of a wrapped "- item" are indented under it.
        let hang = if text.starts_with("- ") { "  " } else { "" };
        let mut line = String::new();
        for word in text.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > budget {
                let _ = writeln!(out, "{indent}# {line}");
                line = hang.to_owned();
            }
            if !line.is_empty() && line != hang {
                line.push(' ');
            }
            line.push_str(word);
        }
        let _ = writeln!(out, "{indent}# {}", line.trim_end());
    }
}

/// A key, bare if it can be.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        basic_string(&dollars(k, false))
    }
}

/// Appends a value; long arrays go one item per line, indented by `indent`.
fn value(out: &mut String, v: &Value, indent: &str, keep_refs: bool) {
    match v {
        Value::Str(s) => out.push_str(&string(s, keep_refs)),
        Value::Interp(s) => out.push_str(&string(s, true)),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Array(items) => {
            let mut one_line = String::from("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    one_line.push_str(", ");
                }
                value(&mut one_line, item, indent, keep_refs);
            }
            one_line.push(']');
            if one_line.len() <= WIDTH - 20 && !one_line.contains('\n') {
                out.push_str(&one_line);
                return;
            }
            out.push_str("[\n");
            for item in items {
                out.push_str(indent);
                value(out, item, indent, keep_refs);
                out.push_str(",\n");
            }
            out.push(']');
        }
        Value::Inline(pairs) => {
            if pairs.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&key(k));
                out.push_str(" = ");
                // Inline tables are one line in TOML 1.0: so are their arrays.
                let mut inner = String::new();
                value(&mut inner, item, indent, keep_refs);
                out.push_str(&flatten(&inner));
            }
            out.push_str(" }");
        }
    }
}

/// A multi-line array written on one line.
fn flatten(text: &str) -> String {
    if !text.contains('\n') {
        return text.to_owned();
    }
    let items: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    items
        .join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]")
        .replace(",]", "]")
}

/// A string value, literal (`'...'`) when that reads better.
fn string(s: &str, interp: bool) -> String {
    let s = dollars(s, interp);
    if s.contains('\\') && !s.contains('\'') && !s.chars().any(char::is_control) {
        format!("'{s}'")
    } else {
        basic_string(&s)
    }
}

/// A basic (`"..."`) string with TOML's escapes.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` with every `$` that Sluice's interpolation would read doubled; with
/// `keep_refs`, well-formed `${NAME}` / `${NAME:-default}` references are
/// kept as they are.
pub(crate) fn dollars(s: &str, keep_refs: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if keep_refs && let Some(len) = reference_len(tail) {
            out.push_str(&tail[..len]);
            rest = &tail[len..];
            continue;
        }
        if tail[1..].starts_with(['{', '$']) {
            out.push_str("$$");
        } else {
            out.push('$');
        }
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// The length of the `${NAME}` or `${NAME:-default}` reference `s` starts
/// with, if it does.
pub(crate) fn reference_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("${")?;
    let end = body.find('}')?;
    let inner = &body[..end];
    let name = inner.split_once(":-").map_or(inner, |(n, _)| n);
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(2 + end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered text as Sluice reads it: interpolated, then parsed.
    fn read_back(doc: &Document) -> toml::Table {
        let text = doc.render();
        let interpolated = crate::config::interpolate::interpolate(&text, |name| match name {
            "HOSTNAME" => Some("edge-1".into()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
        toml::from_str(&interpolated).unwrap_or_else(|e| panic!("{e} in\n{text}"))
    }

    #[test]
    fn strings_survive_escaping_and_interpolation() {
        let awkward = [
            "plain",
            r"^\d+$",
            r#"back\slash and 'quote'"#,
            "quote \" and tab\t and newline\n",
            "dollar ${NOT_A_VAR} and $$ and $5 and ${bad name}",
            "ends with $",
            "control \u{1}",
            "unicode ✓",
        ];
        let mut table = Table::new(&["t"]);
        for (i, s) in awkward.iter().enumerate() {
            table.set(&format!("k{i}"), Value::str(*s));
        }
        table.set("weird key.with dots", Value::str("x"));
        table.set(
            "path",
            Value::Interp("/data/${HOSTNAME}/x $ y ${A:-b}".into()),
        );
        let doc = Document {
            header: vec!["cost: $5 ${X}".into()],
            blocks: vec![Block::Table(table)],
            keep_refs: false,
        };
        let back = read_back(&doc);
        let t = back["t"].as_table().unwrap();
        for (i, s) in awkward.iter().enumerate() {
            assert_eq!(t[&format!("k{i}")].as_str(), Some(*s));
        }
        assert_eq!(t["weird key.with dots"].as_str(), Some("x"));
        assert_eq!(t["path"].as_str(), Some("/data/edge-1/x $ y b"));
    }

    #[test]
    fn regexes_are_literal_strings() {
        let mut table = Table::new(&["t"]);
        table.set("regex", Value::str(r"^(\d{4})-\d\d$"));
        let text = Document {
            header: vec![],
            blocks: vec![Block::Table(table)],
            keep_refs: false,
        }
        .render();
        assert!(text.contains(r"regex = '^(\d{4})-\d\d$'"), "{text}");
    }

    #[test]
    fn arrays_inline_tables_and_nested_tables() {
        let mut source = Table::new(&["sources", "r1"]);
        source.comment("From Flume source `r1`.");
        source
            .set("channels", Value::strs(["c1", "c2"]))
            .after("replicating");
        source.set(
            "long",
            Value::strs((0..30).map(|i| format!("channel-number-{i}"))),
        );
        let mut props = Table::new(&["sources", "r1", "kafka"]);
        props.set("session.timeout.ms", Value::Int(30000));
        props.set("check.crcs", Value::Bool(true));
        let mut plugin = Table::new(&["plugins", "x"]);
        plugin.set(
            "config",
            Value::Inline(vec![
                ("mode".into(), Value::str("regex_extractor")),
                (
                    "serializers".into(),
                    Value::Array(
                        (0..6)
                            .map(|i| {
                                Value::Inline(vec![
                                    ("name".into(), Value::str(format!("header-{i}"))),
                                    ("type".into(), Value::str("default")),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "routes".into(),
                    Value::Inline(vec![("a b".into(), Value::str("c"))]),
                ),
            ]),
        );
        let doc = Document {
            header: vec!["top".into(), String::new(), "x".repeat(200)],
            blocks: vec![
                Block::Table(source),
                Block::Table(props),
                Block::Comment(vec!["a free comment".into()]),
                Block::Table(plugin),
            ],
            keep_refs: false,
        };
        let back = read_back(&doc);
        let r1 = back["sources"]["r1"].as_table().unwrap();
        assert_eq!(r1["channels"].as_array().unwrap().len(), 2);
        assert_eq!(r1["long"].as_array().unwrap().len(), 30);
        assert_eq!(r1["kafka"]["session.timeout.ms"].as_integer(), Some(30000));
        let config = back["plugins"]["x"]["config"].as_table().unwrap();
        assert_eq!(config["serializers"].as_array().unwrap().len(), 6);
        assert_eq!(config["routes"]["a b"].as_str(), Some("c"));
        let text = doc.render();
        assert!(
            text.lines()
                .all(|l| !l.starts_with('#') || l.len() <= WIDTH || !l[2..].contains(' '))
        );
        assert!(
            text.contains("# From Flume source `r1`.\n[sources.r1]\n"),
            "{text}"
        );
        assert!(
            text.contains("channels = [\"c1\", \"c2\"]  # replicating\n"),
            "{text}"
        );
    }

    #[test]
    fn set_replaces_in_place() {
        let mut t = Table::new(&["t"]);
        t.set("a", Value::Int(1));
        t.set("b", Value::Int(2));
        t.set("a", Value::Int(3));
        assert_eq!(t.get("a"), Some(&Value::Int(3)));
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[0].key, "a");
    }

    #[test]
    fn dollar_escaping() {
        assert_eq!(dollars("a$b", false), "a$b");
        assert_eq!(dollars("${X}", false), "$${X}");
        assert_eq!(dollars("$$", false), "$$$");
        assert_eq!(dollars("${X} ${Y:-z} ${a b}", true), "${X} ${Y:-z} $${a b}");
        assert_eq!(reference_len("${AB_1}rest"), Some(7));
        assert_eq!(reference_len("${}"), None);
    }
}
