//! The compile cache: the machine code of compiled plugins, kept across
//! restarts so a restart loads code instead of running Cranelift again.
//!
//! Loading cached machine code runs it: whoever can write a cache entry can
//! run code in the process. So an entry is used only if it carries a valid
//! HMAC-SHA256 under a key kept outside the data directory ([`CacheKey`]):
//! write access to `data_dir` alone is not enough to get code run. Besides:
//!
//! - the cache directory is created owner-only (`0700`), and a directory
//!   that is group- or world-writable, or owned by another user, is not used
//!   (every load compiles, with a warning);
//! - entries are written owner-only through a temporary file and a rename;
//! - only a plugin that passed every check (its world, its start, its
//!   self-test) is written ([`super::PluginEngine::remember`]);
//! - the cache keeps at most [`MAX_ENTRIES`] entries, the least recently
//!   written go first.
//!
//! A cache that cannot be read, written or verified only costs a compile.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Entries kept; writing one more removes the oldest.
pub const MAX_ENTRIES: usize = 256;

/// Bytes of an HMAC-SHA256 tag, at the start of every entry file.
const TAG: usize = 32;

/// The secret that signs cache entries.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// A key for this process only: entries written by earlier runs are not
    /// trusted (they are compiled again and rewritten).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        // Randomness without a new dependency: the kernel's.
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid")
            .and_then(|a| std::fs::read("/proc/sys/kernel/random/uuid").map(|b| [a, b].concat()))
        {
            key.copy_from_slice(&Sha256::digest(&bytes));
        } else {
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        Self(key)
    }

    /// The key in the file at `path`, created (owner-only, random) if it
    /// does not exist. A file group- or world-readable is refused: anyone
    /// who can read it can sign code.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(std::io::Error::other(format!(
                        "{} is readable by others (mode {:o}); make it owner-only (chmod 600)",
                        path.display(),
                        mode & 0o777
                    )));
                }
                if bytes.len() != 32 {
                    return Err(std::io::Error::other(format!(
                        "{} holds {} bytes; a key is 32",
                        path.display(),
                        bytes.len()
                    )));
                }
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::ephemeral();
                if let Some(dir) = path.parent() {
                    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
                }
                write_private(path, &key.0)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// HMAC-SHA256 (RFC 2104) of `message`.
    fn sign(&self, message: &[u8]) -> [u8; TAG] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }
}

/// Machine code of compiled components, signed, in one directory.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    key: CacheKey,
    /// Identifies the engine's code format in entry names.
    compat: String,
}

impl CompileCache {
    /// The cache in `dir` (created owner-only), or `None` (with a warning)
    /// when the directory cannot be trusted or created.
    pub fn open(dir: PathBuf, key: CacheKey, compat: String) -> Option<Self> {
        let refuse = |why: String| {
            tracing::warn!(dir = %dir.display(), "not using the compile cache: {why}; every plugin load compiles");
            None
        };
        if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
            return refuse(format!("creating it: {e}"));
        }
        let meta = match std::fs::metadata(&dir) {
            Ok(meta) => meta,
            Err(e) => return refuse(format!("reading it: {e}")),
        };
        if meta.mode() & 0o022 != 0 {
            return refuse(format!(
                "it is writable by group or others (mode {:o}); make it owner-only (chmod 700)",
                meta.mode() & 0o777
            ));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return refuse(format!(
                "it is owned by uid {}, not this process's {me}",
                meta.uid()
            ));
        }
        Some(Self { dir, key, compat })
    }

    /// The entry file of the component with `digest`.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// The cached component with `digest`, if its entry exists and its
    /// signature holds.
    pub fn get(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        let ignore = |why: &str| {
            tracing::warn!(path = %path.display(), "ignoring compile cache entry: {why}");
            None
        };
        if bytes.len() < TAG {
            return ignore("too short to be signed");
        }
        let (tag, code) = bytes.split_at(TAG);
        if !constant_time_eq(tag, &self.key.sign(code)) {
            return ignore(
                "its signature does not match (tampered with, or written under another key)",
            );
        }
        // SAFETY: `code` was produced by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the name) and signed
        // with this process's key when it was written; wasmtime re-checks
        // the header.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(e) => ignore(&format!("{e:#}")),
        }
    }

    /// Writes `component` as the entry of `digest`, then removes the oldest
    /// entries past [`MAX_ENTRIES`].
    pub fn put(&self, digest: &str, component: &Component) {
        let path = self.path(digest);
        let written = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|code| {
                let mut signed = Vec::with_capacity(TAG + code.len());
                signed.extend_from_slice(&self.key.sign(&code));
                signed.extend_from_slice(&code);
                write_private(&path, &signed)
            });
        match written {
            Ok(()) => self.evict(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "could not write the compile cache: {e}")
            }
        }
    }

    /// Removes the least recently written entries past [`MAX_ENTRIES`].
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `bytes` to `path`, owner-only, through a temporary file and a
/// rename, so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 ("Jefe", padded with zeros to 32 bytes: the
        // HMAC key block is zero-padded either way).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = CacheKey(key).sign(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_key_file_is_created_owner_only_and_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/cache.key");
        let first = CacheKey::load_or_create(&path).unwrap();
        let again = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, again.0, "the same key across runs");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CacheKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
    }

    #[test]
    fn an_open_cache_directory_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(CompileCache::open(cache.clone(), CacheKey::ephemeral(), "x".into()).is_none());
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(CompileCache::open(cache, CacheKey::ephemeral(), "x".into()).is_some());
    }
}
