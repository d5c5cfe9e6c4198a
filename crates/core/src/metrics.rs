//! Process-wide counters and gauges.
//!
//! Components register named counters once at build time
//! (`metrics.counter("sink.lake.files_written")`) and bump the returned atomic on
//! the hot path; nothing on the hot path takes a lock. [`Metrics::snapshot`]
//! feeds the status line, the final summary and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
pub type Counter = Arc<AtomicU64>;
/// A value that goes up and down (lag, open files).
pub type Gauge = Arc<AtomicI64>;

/// Registry of counters and gauges by name.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, Counter>>,
    gauges: Mutex<BTreeMap<String, Gauge>>,
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counter called `name`, created at zero on first use.
    pub fn counter(&self, name: &str) -> Counter {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// The gauge called `name`, created at zero on first use.
    pub fn gauge(&self, name: &str) -> Gauge {
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Current value of a gauge (0 if never registered).
    pub fn gauge_value(&self, name: &str) -> i64 {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).map_or(0, |g| g.load(Ordering::Relaxed))
    }

    /// Current value of a counter (0 if never registered).
    pub fn get(&self, name: &str) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Sum of all counters whose name ends with `suffix`.
    pub fn sum_suffix(&self, suffix: &str) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of all counters whose name starts with `prefix` and ends with `suffix`.
    pub fn sum_suffix_prefixed(&self, prefix: &str, suffix: &str) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of all gauges whose name ends with `suffix`.
    pub fn gauge_sum_suffix(&self, suffix: &str) -> i64 {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }

    /// All counters and gauges with their current values, sorted by name.
    pub fn snapshot(&self) -> BTreeMap<String, i128> {
        let mut out = BTreeMap::new();
        for (k, v) in self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.insert(k.clone(), v.load(Ordering::Relaxed) as i128);
        }
        for (k, v) in self.gauges.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.insert(k.clone(), v.load(Ordering::Relaxed) as i128);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name() {
        let m = Metrics::new();
        m.counter("a.events").fetch_add(2, Ordering::Relaxed);
        m.counter("a.events").fetch_add(3, Ordering::Relaxed);
        m.counter("b.events").fetch_add(1, Ordering::Relaxed);
        assert_eq!(m.get("a.events"), 5);
        assert_eq!(m.sum_suffix(".events"), 6);
        m.gauge("lag").store(-4, Ordering::Relaxed);
        assert_eq!(m.snapshot()["lag"], -4);
    }
}
