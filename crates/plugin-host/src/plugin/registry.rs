//! The versions of every configured plugin, and swapping in new ones.
//!
//! Each configured plugin has a [`PluginSlot`] holding its current
//! [`PluginVersion`] behind an [`ArcSwap`]. A reload ([`PluginSlot::reload`],
//! driven by the file watcher in [`super::reload`]) runs entirely off the hot
//! path: read the file, refuse it if its digest differs from a pinned one,
//! compile it (or load the cached code), check that it implements the
//! expected world, instantiate it in the plugin's sandbox, and run its
//! self-test batch if it ships one. Only a version that passed every check is
//! published. The chains pick it up at their next batch boundary
//! ([`super::chain::Stage`]), so every batch, and so every event, is
//! processed by exactly one version of each plugin.
//!
//! A self-test is a file beside the plugin named `<stem>.selftest.jsonl`, in
//! the input format of `sluice plugin test` ([`super::input`]). The candidate must process it as
//! one batch without trapping, timing out, failing it or returning malformed
//! output.
//!
//! The registry writes `status/plugins.json` in the data directory whenever a
//! version changes; `sluice plugin list` prints it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sluice_batch::BatchBuf;
use tokio::sync::watch;

use super::engine::{LoadedPlugin, PluginEngine};
use super::host::Sandbox;
use super::instance::PluginInstance;
use super::policy::PluginKind;
use sluice_core::metrics::{Counter, Metrics};

/// One published version of a plugin: its code and the settings it runs
/// with. A new file and a new configuration (a live reload of the config:
/// the plugin's `config`, its team's limits or grants, its policy) are both
/// new versions, swapped in at a batch boundary.
#[derive(Clone)]
pub struct PluginVersion {
    /// The compiled, checked component.
    pub loaded: LoadedPlugin,
    /// 1 for the version loaded at startup, +1 per swap.
    pub generation: u64,
    /// When it was published.
    pub since: SystemTime,
    /// Its `config` table as JSON.
    pub config_json: Arc<str>,
    /// Its limits and grants.
    pub sandbox: Sandbox,
    /// The pinned SHA-256, if any.
    pub pin: Option<String>,
    /// The failure policy stages running it adopt; `None` keeps theirs.
    pub policy: Option<super::chain::StagePolicy>,
}

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file has the digest of the running version: nothing to do.
    Unchanged,
    /// The new version passed every check and is now current.
    Swapped {
        /// Its generation.
        generation: u64,
        /// Its digest.
        digest: String,
    },
    /// The file was refused; the running version keeps serving.
    Rejected(String),
    /// The file is gone; the running version keeps serving.
    Missing,
}

/// A configured plugin and its current version.
pub struct PluginSlot {
    name: String,
    kind: PluginKind,
    path: PathBuf,
    team: String,
    current: ArcSwap<PluginVersion>,
    generation: watch::Sender<u64>,
    last_error: Mutex<Option<String>>,
    /// Serialises reloads of this slot.
    reloading: Mutex<()>,
    reloads: Counter,
    rejected: Counter,
    missing: Counter,
}

/// Everything needed to create a slot.
pub struct SlotSpec {
    /// The plugin's name in the configuration.
    pub name: String,
    /// The world it must implement.
    pub kind: PluginKind,
    /// Its file.
    pub path: PathBuf,
    /// The owning team.
    pub team: String,
    /// The pinned SHA-256, if any.
    pub pin: Option<String>,
    /// Its `config` table as JSON.
    pub config_json: String,
    /// Its limits and grants.
    pub sandbox: Sandbox,
}

impl PluginSlot {
    /// Loads and checks the file of `spec` (the same checks as a reload);
    /// the error says why the plugin cannot start.
    pub fn load(
        engine: &PluginEngine,
        spec: SlotSpec,
        metrics: &Metrics,
    ) -> Result<Arc<Self>, Refused> {
        let bytes = std::fs::read(&spec.path)
            .map_err(|e| format!("reading plugin {}: {e}", spec.path.display()))?;
        let config_json: Arc<str> = spec.config_json.into();
        let loaded = check(
            engine,
            &spec.name,
            spec.kind,
            &spec.path,
            &bytes,
            spec.pin.as_deref(),
            &config_json,
            &spec.sandbox,
        )?;
        let counter = |what: &str| metrics.counter(&format!("plugin.{}.{what}", spec.name));
        let (generation, _) = watch::channel(1);
        Ok(Arc::new(Self {
            name: spec.name.clone(),
            kind: spec.kind,
            path: spec.path,
            team: spec.team,
            current: ArcSwap::from_pointee(PluginVersion {
                loaded,
                generation: 1,
                since: SystemTime::now(),
                config_json,
                sandbox: spec.sandbox,
                pin: spec.pin,
                policy: None,
            }),
            generation,
            last_error: Mutex::new(None),
            reloading: Mutex::new(()),
            reloads: counter("reloads"),
            rejected: counter("reloads_rejected"),
            missing: counter("file_missing"),
        }))
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The running version.
    pub fn current(&self) -> Arc<PluginVersion> {
        self.current.load_full()
    }

    /// Changes whenever a new version is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A fresh instance of the running version, in the plugin's sandbox.
    pub fn instance(&self, engine: &PluginEngine) -> PluginInstance {
        let v = self.current();
        PluginInstance::sandboxed(
            engine.clone(),
            v.loaded.clone(),
            &self.name,
            v.config_json.to_string(),
            v.sandbox.clone(),
        )
    }

    /// Checks the plugin with new settings (a live reload of the
    /// configuration): the file as it is now, with `spec`'s config, sandbox
    /// and pin, exactly like a new file, and `policy` for the stages running
    /// it. Nothing changes until [`PluginSlot::publish`]; a refusal leaves
    /// the running version alone. The name, kind and path must be the
    /// slot's (a plugin whose kind or file changed is a new slot).
    pub fn prepare(
        &self,
        engine: &PluginEngine,
        spec: SlotSpec,
        policy: super::chain::StagePolicy,
    ) -> Result<PluginVersion, Refused> {
        if spec.name != self.name || spec.kind != self.kind || spec.path != self.path {
            return Err(Refused(format!(
                "plugin `{}`: its kind or file changed; it needs a new slot",
                self.name
            )));
        }
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("reading plugin {}: {e}", self.path.display()))?;
        let config_json: Arc<str> = spec.config_json.into();
        let loaded = check(
            engine,
            &self.name,
            self.kind,
            &self.path,
            &bytes,
            spec.pin.as_deref(),
            &config_json,
            &spec.sandbox,
        )
        .map_err(|e| {
            Refused(format!(
                "plugin `{}` with its new settings: {}",
                self.name, e.0
            ))
        })?;
        Ok(PluginVersion {
            loaded,
            generation: 0,
            since: SystemTime::now(),
            config_json,
            sandbox: spec.sandbox,
            pin: spec.pin,
            policy: Some(policy),
        })
    }

    /// Makes a version from [`PluginSlot::prepare`] the running one, live
    /// from each stage's next batch; returns its generation.
    pub fn publish(&self, mut version: PluginVersion) -> u64 {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.current().generation + 1;
        version.generation = generation;
        version.since = SystemTime::now();
        self.current.store(Arc::new(version));
        self.generation.send_replace(generation);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(plugin = %self.name, generation, "plugin reconfigured; live from the next batch");
        generation
    }

    /// Checks the file as it is now and publishes it if it is a new, good
    /// version. Never disturbs the running version otherwise.
    pub fn reload(&self, engine: &PluginEngine) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.missing.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name, path = %self.path.display(), "plugin file deleted; the running version keeps serving");
                return ReloadOutcome::Missing;
            }
            Err(e) => return self.reject(format!("reading {}: {e}", self.path.display())),
        };
        let digest = super::engine::digest(&bytes);
        if digest == self.current().loaded.digest {
            return ReloadOutcome::Unchanged;
        }
        let settings = self.current();
        let loaded = match check(
            engine,
            &self.name,
            self.kind,
            &self.path,
            &bytes,
            settings.pin.as_deref(),
            &settings.config_json,
            &settings.sandbox,
        ) {
            Ok(l) => l,
            Err(reason) => return self.reject(reason.0),
        };
        let generation = settings.generation + 1;
        let digest = loaded.digest.clone();
        self.current.store(Arc::new(PluginVersion {
            loaded,
            generation,
            since: SystemTime::now(),
            config_json: settings.config_json.clone(),
            sandbox: settings.sandbox.clone(),
            pin: settings.pin.clone(),
            policy: settings.policy,
        }));
        self.generation.send_replace(generation);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            plugin = %self.name,
            digest = &digest[..16],
            generation,
            checked_in_ms = started.elapsed().as_millis() as u64,
            "new plugin version live from the next batch"
        );
        ReloadOutcome::Swapped { generation, digest }
    }

    /// Records the reason before counting the refusal, so a status read by
    /// whoever sees the count already carries it.
    fn reject(&self, reason: String) -> ReloadOutcome {
        tracing::error!(plugin = %self.name, path = %self.path.display(), "new plugin file refused, the running version keeps serving: {reason}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        self.rejected.fetch_add(1, Ordering::Relaxed);
        ReloadOutcome::Rejected(reason)
    }

    /// The slot's status row.
    pub fn status(&self) -> PluginStatus {
        let v = self.current();
        PluginStatus {
            plugin: self.name.clone(),
            team: self.team.clone(),
            kind: self.kind.as_str().to_owned(),
            path: self.path.display().to_string(),
            digest: v.loaded.digest.clone(),
            generation: v.generation,
            since_unix_ms: v
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            pinned: v.pin.is_some(),
            last_rejection: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Every check a plugin file must pass before it runs.
#[allow(clippy::too_many_arguments)]
fn check(
    engine: &PluginEngine,
    name: &str,
    kind: PluginKind,
    path: &Path,
    bytes: &[u8],
    pin: Option<&str>,
    config_json: &Arc<str>,
    sandbox: &Sandbox,
) -> Result<LoadedPlugin, Refused> {
    if let Some(pin) = pin {
        let digest = super::engine::digest(bytes);
        if !digest.eq_ignore_ascii_case(pin) {
            return Err(Refused(format!(
                "its sha256 {digest} does not match the pinned sha256 {pin}"
            )));
        }
    }
    let loaded = engine
        .load_bytes(&path.display().to_string(), bytes, Some(kind))
        .map_err(|e| e.to_string())?;
    let mut instance = PluginInstance::sandboxed(
        engine.clone(),
        loaded.clone(),
        name,
        config_json.to_string(),
        sandbox.clone(),
    );
    instance
        .warm_up()
        .map_err(|e| format!("it does not start: {e}"))?;
    if let Some(batch) = self_test_batch(path)? {
        instance
            .call(&batch)
            .map_err(|e| format!("its self-test batch failed: {e}"))?;
    }
    engine.remember(&loaded);
    Ok(loaded)
}

/// The self-test file of the plugin at `path`.
pub fn self_test_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.selftest.jsonl"))
}

/// Reads the self-test batch beside `path`, if there is one.
fn self_test_batch(path: &Path) -> Result<Option<BatchBuf>, Refused> {
    let file = self_test_path(path);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Refused(format!(
                "reading its self-test {}: {e}",
                file.display()
            )));
        }
    };
    let events = super::input::parse(&file.display().to_string(), &text)
        .map_err(|e| format!("its self-test {e}"))?;
    let mut batch = BatchBuf::default();
    for (i, event) in events.iter().enumerate() {
        event.push_to(&mut batch, i);
    }
    Ok(Some(batch))
}

/// One row of `status/plugins.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginStatus {
    /// Plugin name.
    pub plugin: String,
    /// Owning team.
    pub team: String,
    /// `decoder`, `interceptor` or `router`.
    pub kind: String,
    /// Its file.
    pub path: String,
    /// SHA-256 of the running version.
    pub digest: String,
    /// Generation of the running version (1 at startup).
    pub generation: u64,
    /// When it went live (ms since the Unix epoch).
    pub since_unix_ms: u64,
    /// Whether the plugin is pinned to a digest.
    pub pinned: bool,
    /// Why the last refused file was refused, if the latest file was refused.
    pub last_rejection: Option<String>,
}

/// All slots of a run, by plugin name.
#[derive(Clone, Default)]
pub struct Registry {
    slots: BTreeMap<String, Arc<PluginSlot>>,
    status_file: Option<PathBuf>,
}

impl Registry {
    /// A registry writing its status to `status_file`.
    pub fn new(status_file: Option<PathBuf>) -> Self {
        Self {
            slots: BTreeMap::new(),
            status_file,
        }
    }

    /// Adds a slot.
    pub fn insert(&mut self, slot: Arc<PluginSlot>) {
        self.slots.insert(slot.name().to_owned(), slot);
    }

    /// Removes the slot of plugin `name` (gone from the configuration).
    pub fn remove(&mut self, name: &str) {
        self.slots.remove(name);
    }

    /// The slot of plugin `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<PluginSlot>> {
        self.slots.get(name)
    }

    /// Every slot.
    pub fn slots(&self) -> impl Iterator<Item = &Arc<PluginSlot>> {
        self.slots.values()
    }

    /// Writes the status file (through a rename, so readers never see half of it).
    pub fn write_status(&self) {
        let Some(path) = &self.status_file else {
            return;
        };
        // Reloads finish on threads of their own (see `reload`): one writer
        // at a time, each writing the state as it is then, so the last
        // rename holds every slot's latest state.
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let rows: Vec<PluginStatus> = self.slots.values().map(|s| s.status()).collect();
        let result = serde_json::to_vec_pretty(&rows)
            .map_err(std::io::Error::other)
            .and_then(|json| super::engine::write_atomically(path, &json));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), "could not write the plugin status file: {e}");
        }
    }
}

/// Reads a status file written by a running Sluice.
pub fn read_status(path: &Path) -> Result<Vec<PluginStatus>, StatusError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StatusError::from(format!(
            "reading {}: {e} (is Sluice running with this configuration?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| StatusError(format!("parsing {}: {e}", path.display())))
}

sluice_core::message_error! {
    /// Why a plugin file is not loaded: the check it failed, in words an operator can act on.
    pub struct Refused;
}

sluice_core::message_error! {
    /// Why the plugin status file could not be read.
    pub struct StatusError;
}
