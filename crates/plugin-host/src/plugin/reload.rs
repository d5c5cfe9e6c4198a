//! Watching plugin directories, lookup files and the control directory, and
//! acting on changes off the hot path.
//!
//! One debounced watcher (notify, [`DEBOUNCE`]) covers the directory of every
//! plugin file and file lookup table, plus `<data_dir>/control/resume/`.
//! Directories are watched rather than files so that a plugin replaced by a
//! rename (the safe way to deploy: write `x.wasm.tmp`, `mv` it over
//! `x.wasm`), deleted, or created again is seen. Events arrive on the
//! watcher's own thread. A plugin's new version is compiled and checked
//! ([`PluginSlot::reload`]) on a thread of that plugin's own, while batches
//! keep flowing: a candidate that is slow to compile (bounded by the
//! engine's compile timeout) or to pass its self-test (bounded by its time
//! budget) delays only its own next version, never another team's reload,
//! a lookup reload or a resume request. One reload per plugin runs at a
//! time; changes seen while it runs make one more reload after it, so the
//! last file written is the one that ends up checked.
//!
//! An operator resumes a paused source by creating a file named after it in
//! `control/resume/` (`sluice resume` does that); the file is removed once
//! the source is notified.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::EventKind;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::Notify;

use super::engine::PluginEngine;
use super::registry::{PluginSlot, Registry};
use crate::lookup::{LookupTable, WatchedFile};

/// How long the watcher waits for a burst of events on one file to settle.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A lookup table loaded from a file, and that file.
#[derive(Clone)]
pub struct WatchedTable {
    /// The file and how to read it.
    pub file: WatchedFile,
    /// The live table.
    pub table: Arc<LookupTable>,
}

/// What the watcher acts on.
pub struct WatchSet {
    /// Every plugin slot.
    pub registry: Registry,
    /// The engine compiling new versions.
    pub engine: PluginEngine,
    /// File lookup tables.
    pub tables: Vec<WatchedTable>,
    /// `control/resume/` in the data directory.
    pub resume_dir: PathBuf,
    /// Resume signal of each source, by name.
    pub resume: BTreeMap<String, Arc<Notify>>,
}

/// Keeps the watcher running; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// Starts watching everything in `set`.
pub fn watch(set: WatchSet) -> Result<Watcher, WatchError> {
    std::fs::create_dir_all(&set.resume_dir)
        .map_err(|e| format!("creating {}: {e}", set.resume_dir.display()))?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for slot in set.registry.slots() {
        dirs.insert(parent(slot.path()));
    }
    for t in &set.tables {
        dirs.insert(parent(&t.file.path));
    }
    dirs.insert(set.resume_dir.clone());
    let reloaders = set
        .registry
        .slots()
        .map(|slot| (slot.path().to_path_buf(), Arc::new(Reloader::default())))
        .collect();
    let set = Arc::new(Guarded {
        set,
        one_at_a_time: std::sync::Mutex::new(()),
        reloaders,
    });
    let handler = {
        let set = set.clone();
        move |result: DebounceEventResult| match result {
            Ok(events) => {
                let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
                for event in events {
                    if matches!(event.kind, EventKind::Access(_)) {
                        continue;
                    }
                    changed.extend(event.paths.iter().cloned());
                }
                handle(&set, &changed);
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("watching plugin and lookup files: {e}");
                }
            }
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler)
        .map_err(|e| format!("starting the file watcher: {e}"))?;
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    }
    // Whatever changed between loading and watching (a plugin deployed
    // during startup, a resume request left from before) is acted on now.
    let mut all: BTreeSet<PathBuf> = set
        .set
        .registry
        .slots()
        .map(|s| s.path().to_path_buf())
        .collect();
    all.extend(set.set.tables.iter().map(|t| t.file.path.clone()));
    all.insert(set.set.resume_dir.clone());
    handle(&set, &all);
    Ok(Watcher {
        _debouncer: debouncer,
    })
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The watch set with a lock, so the startup pass and the watcher thread
/// never act on the same lookup file at once (a late, stale reload could
/// otherwise overwrite a newer one), and one [`Reloader`] per plugin file.
struct Guarded {
    set: WatchSet,
    one_at_a_time: std::sync::Mutex<()>,
    reloaders: BTreeMap<PathBuf, Arc<Reloader>>,
}

/// Runs one plugin's reloads on a thread of their own, one at a time.
#[derive(Default)]
struct Reloader {
    state: std::sync::Mutex<ReloaderState>,
}

#[derive(Default)]
struct ReloaderState {
    /// A reload thread is running.
    running: bool,
    /// The file changed again while it ran: reload once more.
    again: bool,
}

impl Reloader {
    /// Reloads `slot` on this plugin's thread (started if none runs), and
    /// rewrites the status file if that changed anything.
    fn request(self: &Arc<Self>, slot: &Arc<PluginSlot>, set: &Arc<Guarded>) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.running {
                state.again = true;
                return;
            }
            state.running = true;
        }
        let (me, moved, set) = (self.clone(), slot.clone(), set.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("reload {}", slot.name()))
            .spawn(move || {
                loop {
                    if reload_slot(&moved, &set.set.engine) {
                        set.set.registry.write_status();
                    }
                    let mut state = me.state.lock().unwrap_or_else(|e| e.into_inner());
                    if !std::mem::take(&mut state.again) {
                        state.running = false;
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).running = false;
            tracing::error!(
                plugin = slot.name(),
                "cannot start a reload thread: {e}; the running version stays"
            );
        }
    }
}

/// Acts on a set of changed paths: plugin reloads start on their own
/// threads ([`Reloader`]); lookup reloads and resume requests run here.
fn handle(guarded: &Arc<Guarded>, changed: &BTreeSet<PathBuf>) {
    let _lock = guarded
        .one_at_a_time
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let set = &guarded.set;
    for slot in set.registry.slots() {
        if changed.iter().any(|p| same_file(p, slot.path()))
            && let Some(reloader) = guarded.reloaders.get(slot.path())
        {
            reloader.request(slot, guarded);
        }
    }
    for t in &set.tables {
        if changed.iter().any(|p| same_file(p, &t.file.path)) {
            match (t.file.reload)() {
                Ok(map) => {
                    let keys = map.len();
                    t.table.replace(map);
                    tracing::info!(table = t.table.name(), keys, "lookup table reloaded");
                }
                Err(e) => tracing::error!(
                    table = t.table.name(),
                    "lookup file not reloaded, the previous content stays: {e}"
                ),
            }
        }
    }
    if changed
        .iter()
        .any(|p| p.starts_with(&set.resume_dir) || p == &set.resume_dir)
    {
        resume_requested(set);
    }
}

/// Reloads one slot; whether the status file must be rewritten (a refusal
/// changes its `last_rejection` too).
fn reload_slot(slot: &Arc<PluginSlot>, engine: &PluginEngine) -> bool {
    !matches!(
        slot.reload(engine),
        super::registry::ReloadOutcome::Unchanged
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || (a.file_name() == b.file_name()
            && a.parent()
                .and_then(|p| p.canonicalize().ok())
                .zip(b.parent().and_then(|p| p.canonicalize().ok()))
                .is_some_and(|(x, y)| x == y))
}

fn resume_requested(set: &WatchSet) {
    let Ok(entries) = std::fs::read_dir(&set.resume_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match set.resume.get(&name) {
            Some(notify) => {
                // Only a processor waiting now is resumed: a request while
                // nothing is paused must not pre-empt a later pause.
                notify.notify_waiters();
                tracing::info!(source = %name, "resume requested");
            }
            None => {
                tracing::warn!(source = %name, "resume requested for a source that does not exist")
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

sluice_core::message_error! {
    /// Why the plugin and lookup files cannot be watched.
    pub struct WatchError;
}
