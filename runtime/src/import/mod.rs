//! Importing other agents' configurations: `sluice import flume FILE
//! --agent NAME` turns one agent of an Apache Flume `.properties` file
//! into a commented Sluice configuration, and reports what it could not
//! carry over and what to do instead.
//!
//! ```text
//! $ sluice import flume flume.conf --agent a1 --output a1.toml
//! imported agent `a1` of flume.conf into a1.toml: 1 sources, 2 plugins, 1 channels, 2 sinks
//! 1 not carried over (Sluice has no equivalent, or a value is a placeholder); what to do instead:
//!   flume.conf:17: a1.sinks.k1.hdfs.path: HDFS is not an object store Sluice writes to; ...
//! 3 notes (carried over, but check the difference):
//!   ...
//! $ sluice validate a1.toml
//! ```
//!
//! - [`properties`] reads the file as Java does (`#`/`!` comments, the three
//!   separators, continuation lines, `\uXXXX` escapes), keeping line numbers.
//! - [`flume`] maps the agent's sources, channels, sinks, sink groups,
//!   channel selectors and interceptors to Sluice components, plugins
//!   (`flume_interceptors.wasm`, `timestamp.wasm`, `header_router.wasm`)
//!   and `[sink_groups]`; every section of the output says which Flume
//!   component it came from, and every finding is also a comment there.
//! - [`report`] is the list of findings: *unmapped* (Flume did something
//!   the output does not, or a value is a placeholder such as
//!   `s3://CHANGE-ME`; `--strict` fails on them) and *notes* (carried over
//!   with a difference worth knowing, or a key that does not apply).
//! - `toml_out` writes the TOML text itself, comments and all, escaping
//!   `$` so that Sluice's `${VAR}` interpolation reads values back as
//!   written.
//!
//! The output is meant to pass `sluice validate` once the plugins it names
//! are in the team's `plugin_dir` (`--plugin-dir`) and the environment
//! variables it references are set; the integration test
//! `runtime/tests/import_flume.rs` checks that on a corpus of Flume
//! configurations (`tests/flume/corpus/`).
//!
//! Errors ([`ImportError`]) are for input that cannot be read at all: an
//! unreadable file, text Java would refuse (a malformed `\u` escape), or an
//! agent with no components; anything else is a finding.

pub mod flume;
pub mod properties;
pub mod report;
pub(crate) mod toml_out;

use std::path::{Path, PathBuf};

pub use report::{Finding, Report, Severity};

/// Why a file could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("reading {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS's error.
        source: std::io::Error,
    },
    /// The file is not a properties file Java would read.
    #[error("{}:{line}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The agent has no components in the file.
    #[error("{}: {message}", file.display())]
    NoAgent {
        /// The file.
        file: PathBuf,
        /// What was looked for and what the file holds instead.
        message: String,
    },
}

/// A converted configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The Sluice configuration, as TOML text.
    pub toml: String,
    /// What could not be carried over, and notes.
    pub report: Report,
    /// Counts of what the output holds, for the summary line.
    pub summary: Summary,
}

/// Counts of the components an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// `[sources.*]`.
    pub sources: usize,
    /// `[plugins.*]`.
    pub plugins: usize,
    /// `[channels.*]`.
    pub channels: usize,
    /// `[sinks.*]`.
    pub sinks: usize,
    /// `[sink_groups.*]`.
    pub sink_groups: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sources, {} plugins, {} channels, {} sinks",
            self.sources, self.plugins, self.channels, self.sinks
        )?;
        if self.sink_groups > 0 {
            write!(f, ", {} sink groups", self.sink_groups)?;
        }
        Ok(())
    }
}

/// Reads the Flume configuration `file` and converts agent
/// `options.agent`; see [`flume`].
pub fn flume_file(file: &Path, options: &flume::Options) -> Result<Imported, ImportError> {
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        file: file.to_owned(),
        source,
    })?;
    let properties = properties::parse_bytes(&bytes).map_err(|e| ImportError::Parse {
        file: file.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    let name = file.display().to_string();
    flume::convert(&name, &properties, options).map_err(|message| ImportError::NoAgent {
        file: file.to_owned(),
        message,
    })
}
