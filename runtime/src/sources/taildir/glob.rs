//! File-name patterns of `filegroups`: a fixed directory and a glob over
//! the file name (`*` any run of characters, `?` one character, `[abc]` /
//! `[a-z]` / `[!a]` a set), as `tail -F /var/log/app/*.log` users write them.

use std::path::{Path, PathBuf};

use regex::Regex;

/// Why a `filegroups` path is not a pattern this source can follow.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GlobError {
    /// Relative paths would depend on the working directory.
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    /// A directory, or `/`.
    #[error("`{0}` names no file")]
    NoFile(String),
    /// Only the file name may be a glob.
    #[error("`{path}`: only the file name may be a pattern, not the directory `{dir}`")]
    PatternInDirectory {
        /// The path given.
        path: String,
        /// Its directory part.
        dir: String,
    },
    /// File names are matched as text.
    #[error("`{0}` is not UTF-8")]
    NotUtf8(String),
    /// A `[` set never closed.
    #[error("`{0}`: `[` without its `]`")]
    Unclosed(String),
    /// A set that matches nothing or has a reversed range (`[]`, `[z-a]`).
    #[error("`{path}`: {reason}")]
    BadSet {
        /// The path given.
        path: String,
        /// What the set is wrong in.
        reason: String,
    },
}

/// One filegroup's pattern: its directory and the compiled name glob.
#[derive(Debug, Clone)]
pub(crate) struct FilePattern {
    /// The directory searched (not recursively).
    pub dir: PathBuf,
    name: Regex,
}

impl FilePattern {
    /// Parses `/dir/glob`; the directory part must be free of glob syntax.
    pub fn parse(text: &str) -> Result<Self, GlobError> {
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(GlobError::NotAbsolute(text.to_owned()));
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(GlobError::NoFile(text.to_owned()));
        };
        let dir_text = dir.to_string_lossy();
        if dir_text.contains(['*', '?', '[']) {
            return Err(GlobError::PatternInDirectory {
                path: text.to_owned(),
                dir: dir_text.into_owned(),
            });
        }
        let name = name
            .to_str()
            .ok_or_else(|| GlobError::NotUtf8(text.to_owned()))?;
        Ok(Self {
            dir: dir.to_owned(),
            name: Regex::new(
                &glob_regex(name).ok_or_else(|| GlobError::Unclosed(text.to_owned()))?,
            )
            .map_err(|e| GlobError::BadSet {
                path: text.to_owned(),
                reason: e.to_string(),
            })?,
        })
    }

    /// Whether a file named `name` in [`dir`](Self::dir) belongs to the group.
    pub fn matches(&self, name: &str) -> bool {
        self.name.is_match(name)
    }
}

/// The anchored regular expression of a glob; `None` if a `[` is not closed.
fn glob_regex(glob: &str) -> Option<String> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                if !closed {
                    return None;
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Some(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_file_names_only() {
        let p = FilePattern::parse("/var/log/app/*.log").unwrap();
        assert_eq!(p.dir, Path::new("/var/log/app"));
        assert!(p.matches("a.log") && p.matches(".log"));
        assert!(!p.matches("a.log.1") && !p.matches("a.txt"));
        let p = FilePattern::parse("/x/app-[0-9]?.[!t]xt").unwrap();
        assert!(p.matches("app-1a.ext") && !p.matches("app-1a.txt") && !p.matches("app-xa.ext"));
        let p = FilePattern::parse("/x/a+b(c).log").unwrap();
        assert!(p.matches("a+b(c).log") && !p.matches("aab(c).log"));
        assert!(FilePattern::parse("relative/*.log").is_err());
        assert!(FilePattern::parse("/var/*/x.log").is_err());
        assert!(matches!(
            FilePattern::parse("/x/[ab.log"),
            Err(GlobError::Unclosed(_))
        ));
        assert!(matches!(
            FilePattern::parse("/x/[z-a].log"),
            Err(GlobError::BadSet { .. })
        ));
    }
}
