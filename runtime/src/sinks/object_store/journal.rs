//! The in-progress files an at-least-once sink has open on local disk, kept
//! in the agent's `data_dir`, so that a restart after a crash removes what
//! the crash left half-written.
//!
//! An at-least-once file is written as a hidden `.<name>.inprogress` file
//! and renamed when complete; its batches are acknowledged only after the
//! rename. A `kill -9` before the rename leaves the hidden file behind, and
//! its events are read again after the restart (nothing acknowledged them),
//! usually into a file of another name. Without this journal those leftovers
//! would pile up forever.
//!
//! Each open file has one entry, `<data_dir>/sinks/<sink>/in-progress/<id>`
//! (the id is a hash of the path), holding the hidden file's path. It is
//! written (to a temporary name, fsynced, renamed, directory fsynced) before
//! the hidden file is created, and removed once the file is complete or given
//! up. When the sink starts, [`Journal::sweep`] removes every hidden file an
//! entry names, then the entry. Only paths that look like in-progress files
//! (a name starting with `.` and ending in `.inprogress`) are ever removed.
//!
//! The journal directory is locked (`flock`) for the life of the sink: a
//! second agent started on the same `data_dir` would otherwise sweep away
//! the first one's open files, so it is refused instead.
//!
//! Exactly-once sinks do not use the journal: their intents (see `commit.rs`)
//! already record every staged file, and recovery publishes or removes it.
//! Incomplete multipart uploads of an at-least-once sink on an object store
//! are invisible to readers; a bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) removes them.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::StoreError;

const SUFFIX: &str = ".inprogress";

/// The journal of one sink; see the module docs.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    /// Holds the directory's lock for as long as the sink runs.
    _lock: File,
}

/// One recorded in-progress file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    id: String,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and locks it.
    pub fn open(dir: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::local(format!("creating {}", dir.display()), &e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::local(format!("opening {}", lock_path.display()), &e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => StoreError::configuration(format!(
                "{} is locked by another running agent: every agent needs a `data_dir` of its own",
                lock_path.display()
            )),
            std::fs::TryLockError::Error(e) => {
                StoreError::local(format!("locking {}", lock_path.display()), &e)
            }
        })?;
        Ok(Self { dir, _lock: lock })
    }

    /// Records that `hidden` is about to be created; durable on return.
    pub async fn record(&self, hidden: &Path) -> Result<Entry, StoreError> {
        let id = hex::encode(&Sha256::digest(hidden.as_os_str().as_encoded_bytes())[..16]);
        let (dir, path) = (self.dir.clone(), hidden.to_path_buf());
        let entry_id = id.clone();
        tokio::task::spawn_blocking(move || write_entry(&dir, &entry_id, &path))
            .await
            .map_err(|e| StoreError::transient(format!("journal task: {e}")))??;
        Ok(Entry { id })
    }

    /// Forgets an entry once its file is complete or given up.
    pub(crate) async fn forget(&self, entry: Entry) {
        let path = self.dir.join(&entry.id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }

    /// Removes every in-progress file a previous run left, and its entry;
    /// returns the files removed.
    pub(crate) fn sweep(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| StoreError::local(format!("reading {}", self.dir.display()), &e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| StoreError::local(format!("reading {}", self.dir.display()), &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == "lock" {
                continue;
            }
            let path = entry.path();
            if name.ends_with(".tmp") {
                // A record torn by the crash: its file was never created.
                remove(&path)?;
                continue;
            }
            let text = std::fs::read(&path)
                .map_err(|e| StoreError::local(format!("reading {}", path.display()), &e))?;
            if let Some(hidden) = in_progress_path(&text) {
                match std::fs::remove_file(&hidden) {
                    Ok(()) => removed.push(hidden),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StoreError::local(
                            format!("removing {}", hidden.display()),
                            &e,
                        ));
                    }
                }
            } else {
                tracing::warn!(entry = %path.display(), "ignoring a journal entry that names no in-progress file");
            }
            remove(&path)?;
        }
        Ok(removed)
    }
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::local(
            format!("removing {}", path.display()),
            &e,
        )),
    }
}

fn write_entry(dir: &Path, id: &str, hidden: &Path) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{id}.tmp"));
    let done = dir.join(id);
    let mut file = File::create(&tmp)
        .map_err(|e| StoreError::local(format!("creating {}", tmp.display()), &e))?;
    file.write_all(hidden.as_os_str().as_encoded_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::local(format!("writing {}", tmp.display()), &e))?;
    std::fs::rename(&tmp, &done)
        .map_err(|e| StoreError::local(format!("renaming {}", tmp.display()), &e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::local(format!("syncing {}", dir.display()), &e))
}

/// The path an entry names, if it is an absolute path to a hidden
/// in-progress file.
fn in_progress_path(text: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(text).ok()?;
    let path = PathBuf::from(text);
    let name = path.file_name()?.to_str()?;
    (path.is_absolute()
        && name.starts_with('.')
        && name.ends_with(SUFFIX)
        && name.len() > 1 + SUFFIX.len())
    .then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sweep_removes_what_was_recorded_and_not_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let dir = root.path().join("journal");
        let (left, done) = (
            out.join(".a+0+1.txt.inprogress"),
            out.join(".a+0+9.txt.inprogress"),
        );
        {
            let journal = Journal::open(dir.clone()).unwrap();
            journal.record(&left).await.unwrap();
            std::fs::write(&left, "half").unwrap();
            let entry = journal.record(&done).await.unwrap();
            std::fs::write(&done, "whole").unwrap();
            std::fs::rename(&done, out.join("a+0+9.txt")).unwrap();
            journal.forget(entry).await;
        }
        let journal = Journal::open(dir.clone()).unwrap();
        assert_eq!(journal.sweep().unwrap(), vec![left.clone()]);
        assert!(!left.exists());
        assert!(out.join("a+0+9.txt").exists(), "completed files stay");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only the lock is left"
        );
        assert!(journal.sweep().unwrap().is_empty());
    }

    #[test]
    fn only_in_progress_files_are_ever_named() {
        assert!(in_progress_path(b"/x/.a.inprogress").is_some());
        assert!(in_progress_path(b"/x/a.inprogress").is_none(), "not hidden");
        assert!(in_progress_path(b"/x/.a.txt").is_none(), "a visible file");
        assert!(in_progress_path(b"/x/.a.inprog").is_none(), "a torn entry");
        assert!(in_progress_path(b"x/.a.inprogress").is_none(), "relative");
        assert!(in_progress_path(b"/x/..inprogress").is_none());
    }

    #[test]
    fn a_second_agent_on_the_same_data_dir_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let _first = Journal::open(root.path().join("j")).unwrap();
        let e = Journal::open(root.path().join("j")).unwrap_err();
        assert!(e.message.contains("data_dir"), "{e}");
    }
}
