//! What an import could not carry over, and what behaves differently.

use std::fmt::Write as _;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something the source configuration does that the output does not:
    /// a component, key or value Sluice has no equivalent for, or a
    /// placeholder to fill in. `--strict` fails on these.
    Unmapped,
    /// Carried over, but Sluice behaves somewhat differently, or a key was
    /// ignored because it does not apply.
    Note,
}

/// One thing the import reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// 1-based line of the source file it is about; `None` for the file as
    /// a whole.
    pub line: Option<usize>,
    /// The source key it is about (`a1.sinks.k1.hdfs.codeC`), or the
    /// component (`a1.sinks.k1`).
    pub key: String,
    /// What happened and what to do instead.
    pub message: String,
}

/// Every finding of one import, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings of `severity`.
    pub fn of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }

    /// How many findings are [`Severity::Unmapped`].
    pub fn unmapped(&self) -> usize {
        self.of(Severity::Unmapped).count()
    }

    /// The report as printed on standard error: unmapped items first, each
    /// as `FILE:LINE: KEY: message`.
    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for (severity, title) in [
            (
                Severity::Unmapped,
                "not carried over (Sluice has no equivalent, or a value is a placeholder); what to do instead",
            ),
            (
                Severity::Note,
                "notes (carried over, but check the difference)",
            ),
        ] {
            let items: Vec<&Finding> = self.of(severity).collect();
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{} {title}:", items.len());
            for f in items {
                let at = f.line.map_or(file.to_owned(), |l| format!("{file}:{l}"));
                let _ = writeln!(out, "  {at}: {}: {}", f.key, f.message);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_unmapped_first_with_file_and_line() {
        let report = Report {
            findings: vec![
                Finding {
                    severity: Severity::Note,
                    line: Some(3),
                    key: "a1.channels.c1.transactionCapacity".into(),
                    message: "ignored".into(),
                },
                Finding {
                    severity: Severity::Unmapped,
                    line: Some(9),
                    key: "a1.sinks.k1.hdfs.codeC".into(),
                    message: "lzo is not supported".into(),
                },
                Finding {
                    severity: Severity::Unmapped,
                    line: None,
                    key: "a1".into(),
                    message: "whole file".into(),
                },
            ],
        };
        assert_eq!(report.unmapped(), 2);
        let text = report.render("flume.conf");
        let unmapped = text.find("2 not carried over").unwrap();
        let notes = text.find("1 notes").unwrap();
        assert!(unmapped < notes, "{text}");
        assert!(text.contains("  flume.conf:9: a1.sinks.k1.hdfs.codeC: lzo is not supported\n"));
        assert!(text.contains("  flume.conf: a1: whole file\n"));
    }
}
