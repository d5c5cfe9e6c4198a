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

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub mod config;
pub mod file;
pub mod kafka;

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
