//! Golden files for `sluice plugin test --expected FILE [--update]`: compare
//! a plugin's printed outcomes with a file kept beside its tests, show a
//! line diff when they differ, or rewrite the file after an intended change.
//!
//! Lines are compared as text: `\n` and `\r\n` endings and a missing final
//! newline make no difference, anything else does (the outcomes are JSON
//! with sorted keys, so equal outputs print identically).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;
/// Changed lines shown before the rest is summarised.
const MAX_SHOWN: usize = 40;
/// Largest `expected × actual` middle section diffed line by line; beyond it
/// the section is shown as replaced wholesale (still correct, less precise).
const MAX_CELLS: usize = 16_000_000;

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Golden {
    /// The output equals the golden file; `lines` lines (events) compared.
    Match { lines: usize },
    /// The output differs.
    Mismatch(Diff),
    /// `update` was set: the golden file now holds the output.
    Updated { lines: usize },
}

/// How the output differs from the golden file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Lines in the golden file and in the output.
    pub expected_lines: usize,
    pub actual_lines: usize,
    /// Lines removed plus lines added.
    pub changed: usize,
    /// 1-based line of the golden file where the first difference is.
    pub first_line: usize,
    /// Unified-style diff: `--- ` / `+++ ` headers, `@@ -a,b +c,d @@` hunks
    /// with line numbers, the first [`MAX_SHOWN`] changed lines.
    pub text: String,
}

/// Compares `actual` with the golden file at `path`, or with `update` writes
/// `actual` there (creating the file) and returns [`Golden::Updated`].
pub fn check(actual: &[u8], path: &Path, update: bool) -> Result<Golden> {
    let actual_text = String::from_utf8_lossy(actual);
    let lines = actual_text.lines().count();
    if update {
        std::fs::write(path, actual)
            .with_context(|| format!("writing golden file {}", path.display()))?;
        return Ok(Golden::Updated { lines });
    }
    let expected = std::fs::read(path).with_context(|| {
        format!(
            "reading golden file {} (create it with --update)",
            path.display()
        )
    })?;
    let expected = String::from_utf8_lossy(&expected);
    match diff(
        &expected,
        &actual_text,
        &path.display().to_string(),
        "plugin output",
    ) {
        None => Ok(Golden::Match { lines }),
        Some(d) => Ok(Golden::Mismatch(d)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    Delete,
    Insert,
}

/// Line diff of `expected` → `actual`; `None` if their lines are equal.
pub fn diff(expected: &str, actual: &str, expected_name: &str, actual_name: &str) -> Option<Diff> {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    if a == b {
        return None;
    }
    let ops = edit_script(&a, &b);

    // Where each op starts in `a` and `b`.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut ai, mut bi) = (0, 0);
    for op in &ops {
        pos.push((ai, bi));
        match op {
            Op::Equal => {
                ai += 1;
                bi += 1;
            }
            Op::Delete => ai += 1,
            Op::Insert => bi += 1,
        }
    }
    let changes: Vec<usize> = (0..ops.len()).filter(|&i| ops[i] != Op::Equal).collect();
    let first = changes[0];
    let first_line = pos[first].0 + 1;

    // Hunks: runs of changes closer than 2 × CONTEXT, with context around.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changes {
        let start = c.saturating_sub(CONTEXT);
        let end = (c + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }

    let mut text = format!("--- {expected_name} (expected)\n+++ {actual_name} (actual)\n");
    let mut shown = 0;
    'hunks: for &(start, end) in &hunks {
        let (a0, b0) = pos[start];
        let a_len = ops[start..end].iter().filter(|o| **o != Op::Insert).count();
        let b_len = ops[start..end].iter().filter(|o| **o != Op::Delete).count();
        let from = |p: usize, len: usize| if len == 0 { p } else { p + 1 };
        let _ = writeln!(
            text,
            "@@ -{},{a_len} +{},{b_len} @@",
            from(a0, a_len),
            from(b0, b_len)
        );
        for i in start..end {
            let (ai, bi) = pos[i];
            match ops[i] {
                Op::Equal => {
                    let _ = writeln!(text, " {}", a[ai]);
                }
                Op::Delete | Op::Insert if shown >= MAX_SHOWN => break 'hunks,
                Op::Delete => {
                    shown += 1;
                    let _ = writeln!(text, "-{}", a[ai]);
                }
                Op::Insert => {
                    shown += 1;
                    let _ = writeln!(text, "+{}", b[bi]);
                }
            }
        }
    }
    if changes.len() > shown {
        let _ = writeln!(
            text,
            "... and {} more changed lines not shown",
            changes.len() - shown
        );
    }
    // Point into the first changed line when it was replaced.
    if ops[first] == Op::Delete
        && let Some(ins) = ops[first..].iter().position(|o| *o == Op::Insert)
        && ops[first..first + ins].iter().all(|o| *o == Op::Delete)
    {
        let (ai, _) = pos[first];
        let (_, bi) = pos[first + ins];
        let column = a[ai]
            .chars()
            .zip(b[bi].chars())
            .take_while(|(x, y)| x == y)
            .count()
            + 1;
        let _ = writeln!(
            text,
            "first difference: line {first_line}, column {column} (expected line {first_line}, actual line {})",
            bi + 1
        );
    } else {
        let _ = writeln!(text, "first difference: line {first_line}");
    }
    Some(Diff {
        expected_lines: a.len(),
        actual_lines: b.len(),
        changed: changes.len(),
        first_line,
        text,
    })
}

/// A shortest edit script from `a` to `b`: common prefix and suffix, and a
/// longest-common-subsequence diff of the middle (replaced wholesale when
/// it is too large to diff in memory).
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Equal; prefix];
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        ops.extend(std::iter::repeat_n(Op::Delete, am.len()));
        ops.extend(std::iter::repeat_n(Op::Insert, bm.len()));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() && j < bm.len() {
            if am[i] == bm[j] {
                ops.push(Op::Equal);
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push(Op::Delete);
                i += 1;
            } else {
                ops.push(Op::Insert);
                j += 1;
            }
        }
        ops.extend(std::iter::repeat_n(Op::Delete, am.len() - i));
        ops.extend(std::iter::repeat_n(Op::Insert, bm.len() - j));
    }
    ops.extend(std::iter::repeat_n(Op::Equal, suffix));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn equal_lines_match_whatever_the_line_endings() {
        assert!(diff("a\nb\n", "a\nb\n", "e", "a").is_none());
        assert!(diff("a\r\nb\r\n", "a\nb", "e", "a").is_none());
        assert!(diff("", "", "e", "a").is_none());
    }

    #[test]
    fn a_changed_line_is_shown_with_line_numbers_and_context() {
        let expected = lines(10);
        let actual = expected.replace("line 6\n", "line six\n");
        let d = diff(&expected, &actual, "golden.jsonl", "out").unwrap();
        assert_eq!(d.first_line, 6);
        assert_eq!(d.changed, 2);
        assert_eq!(
            d.text,
            "--- golden.jsonl (expected)\n+++ out (actual)\n\
             @@ -3,7 +3,7 @@\n line 3\n line 4\n line 5\n-line 6\n+line six\n line 7\n line 8\n line 9\n\
             first difference: line 6, column 6 (expected line 6, actual line 6)\n"
        );
    }

    #[test]
    fn missing_and_extra_lines_are_found_by_lcs() {
        let expected = "a\nb\nc\nd\n";
        let actual = "a\nc\nd\ne\n";
        let d = diff(expected, actual, "e", "a").unwrap();
        assert_eq!(d.first_line, 2);
        assert_eq!(d.changed, 2);
        assert!(
            d.text.contains("@@ -1,4 +1,4 @@\n a\n-b\n c\n d\n+e\n"),
            "{}",
            d.text
        );
        assert!(d.text.ends_with("first difference: line 2\n"), "{}", d.text);
    }

    #[test]
    fn far_apart_changes_get_separate_hunks_and_long_diffs_are_cut() {
        let expected = lines(100);
        let actual = expected
            .replace("line 10\n", "x\n")
            .replace("line 90\n", "y\n");
        let d = diff(&expected, &actual, "e", "a").unwrap();
        assert_eq!(d.text.matches("@@ -").count(), 2, "{}", d.text);
        assert!(d.text.contains("@@ -87,7 +87,7 @@"), "{}", d.text);

        let d = diff(&lines(100), &lines(0), "e", "a").unwrap();
        assert_eq!(d.changed, 100);
        assert!(
            d.text.contains("... and 60 more changed lines not shown"),
            "{}",
            d.text
        );
        assert!(d.text.contains("@@ -1,100 +0,0 @@"), "{}", d.text);
    }

    #[test]
    fn check_compares_and_update_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("expected.jsonl");
        let err = check(b"x\n", &path, false).unwrap_err();
        assert!(
            format!("{err:#}").contains("create it with --update"),
            "{err:#}"
        );

        assert_eq!(
            check(b"x\ny\n", &path, true).unwrap(),
            Golden::Updated { lines: 2 }
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"x\ny\n");
        assert_eq!(
            check(b"x\ny\n", &path, false).unwrap(),
            Golden::Match { lines: 2 }
        );
        match check(b"x\nz\n", &path, false).unwrap() {
            Golden::Mismatch(d) => {
                assert_eq!(d.first_line, 2);
                assert!(d.text.contains("-y\n+z\n"), "{}", d.text);
            }
            other => panic!("{other:?}"),
        }
        // The file is left alone by a mismatch.
        assert_eq!(std::fs::read(&path).unwrap(), b"x\ny\n");
    }
}
