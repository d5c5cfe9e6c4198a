//! What stands in for the host's lookup tables in native builds: per-thread
//! tables and the list of the calls that would have reached the host.
//!
//! [`crate::lookup`] answers from here, and [`crate::testing`] fills and
//! inspects it. It depends on neither, so the modules stay free of cycles
//! (`driver` → `lookup` → `native_lookup` ← `testing` → `driver`; checked
//! by `tests/tests/module_layers.rs` at the workspace root).

use std::cell::RefCell;
use std::collections::BTreeMap;

/// One call that would have reached the host's lookup interface (`get` is a
/// call with one key). Listed by [`crate::testing::take_lookup_calls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupCall {
    /// The table asked for.
    pub table: String,
    /// The keys asked for, in order.
    pub keys: Vec<String>,
}

thread_local! {
    static TABLES: RefCell<BTreeMap<String, BTreeMap<String, String>>> =
        const { RefCell::new(BTreeMap::new()) };
    static CALLS: RefCell<Vec<LookupCall>> = const { RefCell::new(Vec::new()) };
}

/// The host's `get-many` on this thread's tables: one answer per key, or
/// `None` if `table` was never set (denied, like an ungranted table). Every
/// call is recorded, denied or not.
pub(crate) fn get_many(table: &str, keys: &[&str]) -> Option<Vec<Option<String>>> {
    CALLS.with(|c| {
        c.borrow_mut().push(LookupCall {
            table: table.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        })
    });
    TABLES.with(|t| {
        let t = t.borrow();
        let rows = t.get(table)?;
        Some(keys.iter().map(|k| rows.get(*k).cloned()).collect())
    })
}

/// Sets `table` on this thread to `rows`, replacing any earlier contents.
pub(crate) fn set_table(table: &str, rows: BTreeMap<String, String>) {
    TABLES.with(|t| t.borrow_mut().insert(table.to_owned(), rows));
}

/// Removes `table` from this thread: it is denied from now on.
pub(crate) fn remove_table(table: &str) {
    TABLES.with(|t| t.borrow_mut().remove(table));
}

/// The calls recorded on this thread since the last call, oldest first.
pub(crate) fn take_calls() -> Vec<LookupCall> {
    CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Sets `table` from `(key, value)` pairs, for the SDK's own unit tests.
#[cfg(test)]
pub(crate) fn set<const N: usize>(table: &str, rows: [(&str, &str); N]) {
    set_table(
        table,
        rows.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
}
