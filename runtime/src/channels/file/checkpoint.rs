//! The file channel's checkpoint: the log position before which every record
//! was delivered by the sink, persisted atomically.
//!
//! `<dir>/checkpoint` holds 28 bytes: [`MAGIC`], the segment id and byte
//! offset (u64 LE each) and a CRC-32 of the two. It is replaced, never
//! edited: the new content goes to `checkpoint.tmp`, which is fsynced and
//! renamed over the old file, and the directory is fsynced, so after a crash
//! the file holds either the old or the new position, whole. A checkpoint
//! that does not parse (it cannot happen through this module) is reported
//! and ignored: the channel then replays everything it still holds, which
//! duplicates events but loses none.

use std::io;
use std::path::Path;

use super::error::WalError;

/// First bytes of the checkpoint file: format name and version.
pub(crate) const MAGIC: &[u8; 8] = b"SLCKPT\x00\x01";
pub(crate) const LEN: usize = MAGIC.len() + 8 + 8 + 4;

/// A position in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

pub(crate) fn encode(pos: Position) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    out[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&out[8..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Option<Position> {
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
    if crc32fast::hash(&bytes[8..24]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
    })
}

/// The checkpoint stored in `dir`: `Ok(None)` if there is none yet, `Err`
/// with the reason if the file exists but is unreadable or damaged.
pub fn load(dir: &Path) -> Result<Option<Position>, WalError> {
    let path = dir.join("checkpoint");
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes).map(Some).ok_or_else(|| {
            WalError::Damaged(format!(
                "{} is damaged ({} bytes)",
                path.display(),
                bytes.len()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io("reading", &path, e)),
    }
}

/// Persists `pos` as the checkpoint of `dir`, atomically (see the module docs).
pub fn store(dir: &Path, pos: Position) -> io::Result<()> {
    crate::durable::replace(&dir.join("checkpoint"), &encode(pos))
}

pub(crate) use crate::durable::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let a = Position {
            segment: 3,
            offset: 4096,
        };
        store(dir.path(), a).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(a));
        let b = Position {
            segment: 4,
            offset: 8,
        };
        store(dir.path(), b).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(b));
        assert!(!dir.path().join("checkpoint.tmp").exists());
    }

    #[test]
    fn a_torn_temporary_file_never_replaces_the_checkpoint() {
        // A crash between writing the temporary file and the rename leaves
        // the old checkpoint in place, whole.
        let dir = tempfile::tempdir().unwrap();
        let a = Position {
            segment: 1,
            offset: 100,
        };
        store(dir.path(), a).unwrap();
        std::fs::write(dir.path().join("checkpoint.tmp"), &encode(a)[..10]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(a));
        // Storing again replaces the leftover temporary file.
        store(
            dir.path(),
            Position {
                segment: 2,
                offset: 8,
            },
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().segment, 2);
    }

    #[test]
    fn damage_is_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        store(
            dir.path(),
            Position {
                segment: 1,
                offset: 9,
            },
        )
        .unwrap();
        let path = dir.path().join("checkpoint");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("damaged")
        );
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(load(dir.path()).is_err());
    }
}
