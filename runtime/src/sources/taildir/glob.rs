//! File-name patterns of `filegroups`: a fixed directory and a glob over
//! the file name (`*` any run of characters, `?` one character, `[abc]` /
//! `[a-z]` / `[!a]` a set), as `tail -F /var/log/app/*.log` users write them.

use std::path::{Path, PathBuf};

use regex::Regex;

/// One filegroup's pattern: its directory and the compiled name glob.
#[derive(Debug, Clone)]
pub(crate) struct FilePattern {
    /// The directory searched (not recursively).
    pub dir: PathBuf,
    name: Regex,
}

impl FilePattern {
    /// Parses `/dir/glob`; the directory part must be free of glob syntax.
    pub fn parse(text: &str) -> Result<Self, String> {
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(format!("`{text}` is not an absolute path"));
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(format!("`{text}` names no file"));
        };
        let dir_text = dir.to_string_lossy();
        if dir_text.contains(['*', '?', '[']) {
            return Err(format!(
                "`{text}`: only the file name may be a pattern, not the directory `{dir_text}`"
            ));
        }
        let name = name
            .to_str()
            .ok_or_else(|| format!("`{text}` is not UTF-8"))?;
        Ok(Self {
            dir: dir.to_owned(),
            name: Regex::new(&glob_regex(name)?).map_err(|e| e.to_string())?,
        })
    }

    /// Whether a file named `name` in [`dir`](Self::dir) belongs to the group.
    pub fn matches(&self, name: &str) -> bool {
        self.name.is_match(name)
    }
}

/// The anchored regular expression of a glob.
fn glob_regex(glob: &str) -> Result<String, String> {
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
                    return Err(format!("`{glob}`: `[` without its `]`"));
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Ok(re)
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
        assert!(FilePattern::parse("/x/[ab.log").is_err());
    }
}
