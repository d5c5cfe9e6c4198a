//! Finding where a key is written in a TOML document.
//!
//! Component tables are deserialized in two steps (the `type` and wiring keys
//! first, then the component's own struct), which loses serde's spans. Errors
//! therefore carry the key's dotted path, and this module maps that path back to
//! the `line:col` of the key in the text using the spanned TOML parser.

use toml::de::{DeTable, DeValue};

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Byte offset of the deepest key of `path` that exists in `text` (array
/// indices are decimal segments). `None` if not even the first key exists.
pub(crate) fn key_offset(text: &str, path: &[String]) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut found = None;
    let mut value: Option<&DeValue<'_>> = None;
    for segment in path {
        if let Some(v) = value.take() {
            match v {
                DeValue::Table(t) => table = t,
                DeValue::Array(items) => {
                    let Some(item) = segment.parse::<usize>().ok().and_then(|i| items.get(i))
                    else {
                        break;
                    };
                    found = Some(item.span().start);
                    value = Some(item.get_ref());
                    continue;
                }
                _ => break,
            }
        }
        let Some((key, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == segment) else {
            break;
        };
        found = Some(key.span().start);
        value = Some(v.get_ref());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "a = 1\n\n[sinks.lake]\ntype = \"null\"\n  roll_size = 5\nlist = [1, { x = 2 }]\n";

    #[test]
    fn finds_nested_keys() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let off = key_offset(DOC, &path(&["sinks", "lake", "roll_size"])).unwrap();
        assert_eq!(line_col(DOC, off), (5, 3));
        let off = key_offset(DOC, &path(&["sinks", "lake"])).unwrap();
        assert_eq!(line_col(DOC, off), (3, 8));
        // A missing leaf falls back to its deepest existing parent.
        let off = key_offset(DOC, &path(&["sinks", "lake", "nope"])).unwrap();
        assert_eq!(line_col(DOC, off), (3, 8));
        let off = key_offset(DOC, &path(&["sinks", "lake", "list", "1", "x"])).unwrap();
        assert_eq!(line_col(DOC, off), (6, 14));
        assert_eq!(key_offset(DOC, &path(&["zzz"])), None);
    }
}
