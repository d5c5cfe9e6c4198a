//! Lookup tables: read-only key → value maps the host keeps current and
//! plugins read through the WIT `lookup` interface.
//!
//! A table is loaded from a CSV or JSON-lines file (reloaded when the file
//! changes) or from a compacted Kafka topic (followed from the beginning; a
//! record with an empty value deletes its key). Readers never wait for a
//! reload: each table holds an [`ArcSwap`] of an immutable map, and a reload
//! builds the new map off to the side and swaps the pointer.
//!
//! Access is per team: a plugin's store holds only the [`Grants`] of its team,
//! so a table of another team is simply not there.
//!
//! # Lookup types
//!
//! Each table type is one module: its keys, a [`LookupType`] in [`TYPES`]
//! (how its keys load) and an implementation of [`Lookup`] (how it fills a
//! table and keeps it current). The configuration loader and the topology
//! know lookups only through these.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use sluice_core::error::BoxError;
use sluice_core::keys::KeyError;
use sluice_core::metrics::Metrics;
use sluice_kafka::errors::Health;

pub mod config;
pub mod file;
pub mod kafka;

/// Every lookup type, by its `type` name.
#[rustfmt::skip]
pub static TYPES: &[LookupType] = &[
    file::TYPE,
    kafka::TYPE,
];

/// One lookup `type`: its name and how its keys load.
pub struct LookupType {
    /// The `type` value.
    pub name: &'static str,
    /// Reads the table of `[lookups.<name>]` (without `type`); relative
    /// paths start at `base`, the configuration file's directory.
    pub load: LoadLookup,
}

/// See [`LookupType::load`].
pub type LoadLookup = fn(toml::Value, base: &Path) -> Result<Arc<dyn Lookup>, KeyError>;

/// A configured lookup table of some type.
pub trait Lookup: std::fmt::Debug + Send + Sync {
    /// Whether it reads from the embedded broker (`bootstrap_servers =
    /// "embedded"`).
    fn uses_embedded_broker(&self) -> bool {
        false
    }

    /// Fills `table` and starts keeping it current.
    fn open(&self, table: Arc<LookupTable>, ctx: &OpenContext<'_>) -> Result<OpenLookup, BoxError>;

    /// The configuration as `Any`, for tools that need one type's keys.
    fn as_any(&self) -> &dyn Any;
}

/// What opening a lookup may need.
pub struct OpenContext<'a> {
    /// Process-wide metrics; lookup counters are `lookup.<name>.<what>`.
    pub metrics: &'a Metrics,
    /// The embedded broker's address, if one runs.
    pub embedded_bootstrap: Option<&'a str>,
}

/// An open lookup: what keeps its table current.
#[derive(Default)]
pub struct OpenLookup {
    /// A file whose changes reload the table (the watcher calls `reload`).
    pub watched: Option<WatchedFile>,
    /// A task following a source of changes; dropping it stops it.
    pub follower: Option<Box<dyn Any + Send>>,
    /// The health of its Kafka client, if it has one.
    pub health: Option<Arc<Health>>,
}

/// A file a table is loaded from, and how to load it again.
#[derive(Clone)]
pub struct WatchedFile {
    /// The file.
    pub path: PathBuf,
    /// Reads the file into a whole new map.
    pub reload: Arc<dyn Fn() -> Result<HashMap<String, String>, BoxError> + Send + Sync>,
}

/// One named table, shared by every plugin instance granted it.
#[derive(Debug)]
pub struct LookupTable {
    name: Arc<str>,
    map: ArcSwap<HashMap<String, String>>,
}

impl LookupTable {
    /// An empty table called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The table's name in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<String> {
        self.map.load().get(key).cloned()
    }

    /// Values of many keys, read from one snapshot of the table.
    pub fn get_many(&self, keys: &[String]) -> Vec<Option<String>> {
        let map = self.map.load();
        keys.iter().map(|k| map.get(k).cloned()).collect()
    }

    /// Replaces the whole content (a file reload).
    pub fn replace(&self, map: HashMap<String, String>) {
        self.map.store(Arc::new(map));
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether the table has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tables one team may read, by name.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    tables: Arc<HashMap<String, Arc<LookupTable>>>,
}

impl Grants {
    /// Grants of exactly `tables`.
    pub fn new(tables: impl IntoIterator<Item = Arc<LookupTable>>) -> Self {
        Self {
            tables: Arc::new(
                tables
                    .into_iter()
                    .map(|t| (t.name().to_owned(), t))
                    .collect(),
            ),
        }
    }

    /// The table called `name`, if granted.
    pub fn table(&self, name: &str) -> Option<&LookupTable> {
        self.tables.get(name).map(|t| &**t)
    }
}
