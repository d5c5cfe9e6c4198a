//! Configuration errors that point at `file:line:col` and name the key.

use std::fmt;
use std::path::PathBuf;

/// A problem with a configuration file: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending key (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted path of the offending key, e.g. `sinks.lake.roll_size`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else if self.key.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: `{}`: {}",
                self.file.display(),
                self.line,
                self.col,
                self.key,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Several configuration errors, reported together so a user fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}
