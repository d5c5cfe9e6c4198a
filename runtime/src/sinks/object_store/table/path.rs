//! JSON paths of `json:` columns: `tag.desc`, `items[0].id`, `[2]`,
//! `["a.b"]` (a field whose name holds `.`, `[` or `"`), and the
//! [`PathTree`] that finds all of a spec's paths in one pass over a body.
//!
//! The body is not built into a JSON tree: one streaming parse descends only
//! into the fields and array elements some path names, skips the rest
//! (still checking it is JSON), and records where each path's value lies in
//! the body. A value is then converted straight from its text. Building a
//! `serde_json::Value` per event instead cost more than the whole Parquet
//! encoding (measured in the `pipeline` bench).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<Step>);

/// Why a JSON path does not parse (byte positions count from its start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("`json:` needs a path, e.g. `json:tag.desc` or `json:items[0].id`")]
    Empty,
    #[error("`[` at byte {0} is never closed")]
    Unclosed(usize),
    #[error("quoted name at byte {0} is never closed")]
    UnclosedQuote(usize),
    #[error("`[{0}]` is not an array index (use `[\"name\"]` for a field)")]
    NotAnIndex(String),
    #[error("empty field name at byte {0}")]
    EmptyName(usize),
    #[error("expected `.` or `[` at byte {0}")]
    Expected(usize),
    #[error("the path ends with `.`")]
    TrailingDot,
}

impl JsonPath {
    /// Parses `path`; the error says what is wrong and where.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        let bytes = path.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        let mut expect_name = true;
        while i < bytes.len() {
            match bytes[i] {
                b'[' => {
                    let close = path[i..]
                        .find(']')
                        .map(|c| i + c)
                        .ok_or(PathError::Unclosed(i))?;
                    let inner = &path[i + 1..close];
                    if inner.starts_with('"') {
                        // A quoted field name ends at the `"]` after it.
                        let end = path[i + 2..]
                            .find("\"]")
                            .map(|c| i + 2 + c)
                            .ok_or(PathError::UnclosedQuote(i))?;
                        steps.push(Step::Field(path[i + 2..end].to_owned()));
                        i = end + 2;
                    } else {
                        let index = inner
                            .parse::<usize>()
                            .map_err(|_| PathError::NotAnIndex(inner.to_owned()))?;
                        steps.push(Step::Index(index));
                        i = close + 1;
                    }
                    expect_name = false;
                }
                b'.' => {
                    if expect_name {
                        return Err(PathError::EmptyName(i));
                    }
                    expect_name = true;
                    i += 1;
                }
                _ => {
                    if !expect_name {
                        return Err(PathError::Expected(i));
                    }
                    let end = path[i..].find(['.', '[']).map_or(path.len(), |c| i + c);
                    steps.push(Step::Field(path[i..end].to_owned()));
                    i = end;
                    expect_name = false;
                }
            }
        }
        if expect_name {
            return Err(PathError::TrailingDot);
        }
        Ok(Self(steps))
    }
}

/// Where one path's value lies in a body: a byte range, if it is there.
pub(crate) type Span = Option<(u32, u32)>;

/// Every `json:` path of a spec, merged into one tree; a node a path ends
/// at holds the slot its value's span goes into.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PathTree {
    root: Node,
    /// How many distinct paths (slots) there are.
    slots: usize,
}

/// One place in the body: the fields and array elements some path goes on
/// to, and the slot of the path that ends here, if one does.
#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    fields: Vec<(String, Node)>,
    indexes: Vec<(usize, Node)>,
    slot: Option<usize>,
}

/// The child of `children` under `key`, added if missing.
fn child<'n, K: PartialEq + Clone>(children: &'n mut Vec<(K, Node)>, key: &K) -> &'n mut Node {
    let i = match children.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            children.push((key.clone(), Node::default()));
            children.len() - 1
        }
    };
    &mut children[i].1
}

impl PathTree {
    /// Adds `path` and returns the slot its value goes into; a path added
    /// before keeps its slot, so columns reading the same path share it.
    pub fn add(&mut self, path: &JsonPath) -> usize {
        let mut at = &mut self.root;
        for step in &path.0 {
            at = match step {
                Step::Field(name) => child(&mut at.fields, name),
                Step::Index(index) => child(&mut at.indexes, index),
            };
        }
        *at.slot.get_or_insert_with(|| {
            self.slots += 1;
            self.slots - 1
        })
    }

    /// Whether no path was added (no column reads the body as JSON).
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Finds every path's value in `body`: `spans[slot]` is its byte range,
    /// or `None` when the path is absent. An error if `body` is not JSON.
    pub fn find(&self, body: &[u8], spans: &mut Vec<Span>) -> Result<(), serde_json::Error> {
        spans.clear();
        spans.resize(self.slots, None);
        let mut de = serde_json::Deserializer::from_slice(body);
        Seek {
            node: &self.root,
            base: body.as_ptr() as usize,
            spans,
            below_only: false,
        }
        .deserialize(&mut de)?;
        de.end()
    }
}

/// Descends into one node of the tree while deserializing.
struct Seek<'t, 's> {
    node: &'t Node,
    /// Address of the body's first byte: spans are offsets from it.
    base: usize,
    spans: &'s mut Vec<Span>,
    /// The node's own value is recorded already: only look below it.
    below_only: bool,
}

impl<'t> Seek<'t, '_> {
    /// Descends into `node`, a child of this one.
    fn descend(&mut self, node: &'t Node) -> Seek<'t, '_> {
        Seek {
            node,
            base: self.base,
            spans: self.spans,
            below_only: false,
        }
    }

    fn record(&mut self, raw: &RawValue) {
        if let Some(slot) = self.node.slot {
            let text = raw.get();
            let start = (text.as_ptr() as usize).saturating_sub(self.base) as u32;
            self.spans[slot] = Some((start, start + text.len() as u32));
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(mut self, de: D) -> Result<(), D::Error> {
        if self.node.slot.is_none() || self.below_only {
            return de.deserialize_any(self);
        }
        // A leaf: its text, borrowed from the body; deeper paths below it
        // are found in that text.
        let raw: &'de RawValue = <&RawValue as de::Deserialize>::deserialize(de)?;
        self.record(raw);
        if !(self.node.fields.is_empty() && self.node.indexes.is_empty()) {
            let mut inner = serde_json::Deserializer::from_str(raw.get());
            let below = Seek {
                node: self.node,
                base: self.base,
                spans: self.spans,
                below_only: true,
            };
            below.deserialize(&mut inner).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.node.fields.iter().find(|(n, _)| *n == key) {
                Some((_, child)) => map.next_value_seed(self.descend(child))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let more = match self.node.indexes.iter().find(|(n, _)| *n == i) {
                Some((_, child)) => seq.next_element_seed(self.descend(child))?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    // A scalar where a path wanted an object or array: the path is absent.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text at each of `paths` in `body`.
    fn find(paths: &[&str], body: &str) -> Vec<Option<String>> {
        let mut tree = PathTree::default();
        let slots: Vec<usize> = paths
            .iter()
            .map(|p| tree.add(&JsonPath::parse(p).unwrap()))
            .collect();
        let mut spans = Vec::new();
        tree.find(body.as_bytes(), &mut spans).unwrap();
        slots
            .iter()
            .map(|&slot| spans[slot].map(|(a, b)| body[a as usize..b as usize].to_owned()))
            .collect()
    }

    #[test]
    fn one_pass_finds_every_path_and_skips_the_rest() {
        let body = r#"{"skip": {"deep": [1, {"x": 2}]}, "tag": {"desc": "x\"y", "n": 1.50},
            "items": [{"id": 1}, {"id": 2}], "a.b": true, "esc\u0061pe": 7}"#;
        assert_eq!(
            find(
                &[
                    "tag.desc",
                    "items[1].id",
                    "[\"a.b\"]",
                    "items[5].id",
                    "tag.missing",
                    "tag.desc.deeper",
                    "tag",
                    "tag.n",
                    "escape",
                    "items"
                ],
                body
            ),
            [
                Some(r#""x\"y""#.into()),
                Some("2".into()),
                Some("true".into()),
                None,
                None,
                None,
                Some(r#"{"desc": "x\"y", "n": 1.50}"#.into()),
                Some("1.50".into()),
                Some("7".into()),
                Some(r#"[{"id": 1}, {"id": 2}]"#.into()),
            ]
        );
        assert_eq!(find(&["[2]"], "[10, 20, 30]"), [Some("30".to_owned())]);
        assert_eq!(find(&["a.b"], r#"{"a": 5}"#), [None]);
    }

    #[test]
    fn columns_with_the_same_path_each_get_its_value() {
        assert_eq!(
            find(&["a", "b", "a", "b.c"], r#"{"a": 1, "b": {"c": 2}}"#),
            [
                Some("1".to_owned()),
                Some(r#"{"c": 2}"#.to_owned()),
                Some("1".to_owned()),
                Some("2".to_owned())
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        let mut tree = PathTree::default();
        tree.add(&JsonPath::parse("a").unwrap());
        let mut spans = Vec::new();
        for bad in ["", "{", r#"{"a": 1} x"#, r#"{"b": [1,}"#, "plain text"] {
            assert!(tree.find(bad.as_bytes(), &mut spans).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_paths_say_why() {
        for (path, why) in [
            ("", "needs a path"),
            ("a..b", "empty field name"),
            ("a.", "ends with"),
            ("a[x]", "not an array index"),
            ("a[1", "never closed"),
            ("a[0]b", "expected `.` or `[`"),
            (".a", "empty field name"),
        ] {
            let err = JsonPath::parse(path).unwrap_err().to_string();
            assert!(err.contains(why), "{path}: {err}");
        }
    }
}
