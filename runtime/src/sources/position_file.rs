//! Position files: where a file-reading source (`spooldir`, `taildir`) has
//! got to, as JSON, replaced atomically (written beside, synced, renamed
//! over, directory synced), so a crash leaves the old or the new file,
//! never a torn one.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a position file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PositionFileError {
    /// Reading, writing or renaming failed.
    #[error("{action} position file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS's error.
        #[source]
        source: io::Error,
    },
    /// The file is not what this source writes.
    #[error("position file {path} is damaged: {source} (move it away to start over)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads the position file at `path`: `Ok(None)` if there is none yet.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, PositionFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| PositionFileError::Damaged {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PositionFileError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the position file at `path` with `value`, atomically and
/// durably (creating its directory if needed).
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<(), PositionFileError> {
    let io = |action, source| PositionFileError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    let bytes = serde_json::to_vec_pretty(value).expect("positions serialize");
    crate::durable::replace(path, &bytes).map_err(|e| io("replacing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/pos.json");
        assert_eq!(load::<Vec<u64>>(&path).unwrap(), None);
        store(&path, &vec![1u64, 2]).unwrap();
        store(&path, &vec![3u64]).unwrap();
        assert_eq!(load::<Vec<u64>>(&path).unwrap(), Some(vec![3]));
        std::fs::write(&path, b"{").unwrap();
        let e = load::<Vec<u64>>(&path).unwrap_err().to_string();
        assert!(e.contains("is damaged"), "{e}");
    }
}
