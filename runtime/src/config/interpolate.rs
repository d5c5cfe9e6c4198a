//! `${VAR}` interpolation of environment variables in configuration text.
//!
//! `${NAME}` is replaced by the variable's value and `${NAME:-fallback}` by the
//! fallback when the variable is unset or empty; `$$` writes a literal `$`. An
//! unset variable without fallback is an error naming its `line:col`, so a
//! typo never silently becomes an empty bucket name.

use super::locate::line_col;

/// An unset variable or malformed reference at a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpolationError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Replaces variable references in `text` using `lookup`.
pub(crate) fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let at = consumed + i;
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            consumed = at + 2;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let err = |message: String| {
                let (line, col) = line_col(text, at);
                InterpolationError { line, col, message }
            };
            let end = body
                .find('}')
                .ok_or_else(|| err("`${` is not closed by `}`".into()))?;
            let inner = &body[..end];
            let (name, fallback) = match inner.split_once(":-") {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(format!(
                    "`${{{inner}}}` is not a variable reference; names use letters, digits and `_` (write `$$` for a literal `$`)"
                )));
            }
            match (lookup(name).filter(|v| !v.is_empty()), fallback) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => {
                    return Err(err(format!(
                        "environment variable `{name}` is not set; set it or write `${{{name}:-default}}`"
                    )));
                }
            }
            consumed = at + 2 + end + 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            consumed = at + 1;
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("lake".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_and_falls_back() {
        let out = interpolate("url = \"s3://${BUCKET}/${PREFIX:-raw}\" # $$5 $x", env).unwrap();
        assert_eq!(out, "url = \"s3://lake/raw\" # $5 $x");
        assert_eq!(interpolate("${EMPTY:-d}", env).unwrap(), "d");
    }

    #[test]
    fn unset_variable_names_its_position() {
        let err = interpolate("a = 1\nb = \"${NOPE}\"", env).unwrap_err();
        assert_eq!((err.line, err.col), (2, 6));
        assert!(err.message.contains("`NOPE` is not set"));
        assert!(interpolate("${a b}", env).is_err());
        assert!(interpolate("${OPEN", env).is_err());
    }
}
