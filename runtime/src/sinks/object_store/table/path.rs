//! JSON paths of `json:` columns: `tag.desc`, `items[0].id`, `[2]`,
//! `["a.b"]` (a field whose name holds `.`, `[` or `"`).

use serde_json::Value;

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses `path`; the error says what is wrong and where.
    pub fn parse(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Err("`json:` needs a path, e.g. `json:tag.desc` or `json:items[0].id`".into());
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
                        .ok_or_else(|| format!("`[` at byte {i} is never closed"))?;
                    let inner = &path[i + 1..close];
                    if inner.starts_with('"') {
                        // A quoted field name ends at the `"]` after it.
                        let end = path[i + 2..]
                            .find("\"]")
                            .map(|c| i + 2 + c)
                            .ok_or_else(|| format!("quoted name at byte {i} is never closed"))?;
                        steps.push(Step::Field(path[i + 2..end].to_owned()));
                        i = end + 2;
                    } else {
                        let index = inner.parse::<usize>().map_err(|_| {
                            format!(
                                "`[{inner}]` is not an array index (use `[\"name\"]` for a field)"
                            )
                        })?;
                        steps.push(Step::Index(index));
                        i = close + 1;
                    }
                    expect_name = false;
                }
                b'.' => {
                    if expect_name {
                        return Err(format!("empty field name at byte {i}"));
                    }
                    expect_name = true;
                    i += 1;
                }
                _ => {
                    if !expect_name {
                        return Err(format!("expected `.` or `[` at byte {i}"));
                    }
                    let end = path[i..].find(['.', '[']).map_or(path.len(), |c| i + c);
                    steps.push(Step::Field(path[i..end].to_owned()));
                    i = end;
                    expect_name = false;
                }
            }
        }
        if expect_name {
            return Err("the path ends with `.`".into());
        }
        Ok(Self(steps))
    }

    /// The value at this path in `root`, if there is one.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut at = root;
        for step in &self.0 {
            at = match step {
                Step::Field(name) => at.as_object()?.get(name)?,
                Step::Index(i) => at.as_array()?.get(*i)?,
            };
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_walk_objects_and_arrays() {
        let v = json!({"tag": {"desc": "x"}, "items": [{"id": 1}, {"id": 2}], "a.b": true});
        let get = |p: &str| JsonPath::parse(p).unwrap().get(&v).cloned();
        assert_eq!(get("tag.desc"), Some(json!("x")));
        assert_eq!(get("items[1].id"), Some(json!(2)));
        assert_eq!(get("[\"a.b\"]"), Some(json!(true)));
        assert_eq!(get("items[5].id"), None);
        assert_eq!(get("tag.missing"), None);
        assert_eq!(get("tag.desc.deeper"), None);
        let arr = json!([10, 20, 30]);
        assert_eq!(JsonPath::parse("[2]").unwrap().get(&arr), Some(&json!(30)));
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
            let err = JsonPath::parse(path).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
    }
}
