//! Process-wide counters, gauges and histograms.
//!
//! Components register named counters once at build time
//! (`metrics.counter("sink.lake.files_written")`) and bump the returned atomic on
//! the hot path; nothing on the hot path takes a lock. [`Metrics::snapshot`]
//! feeds the status line, the final summary and tests; the admin endpoint
//! renders [`Metrics::visit`] in Prometheus' exposition format.
//!
//! A name is `<kind>.<component>.<what>` (`source.tx.events`), where the
//! component's name has no dot (the configuration loader checks that), so
//! the kind and the component can be read back as labels.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A monotonically increasing count.
pub type Counter = Arc<AtomicU64>;
/// A value that goes up and down (lag, open files).
pub type Gauge = Arc<AtomicI64>;

/// A distribution of durations: a count per bucket and their sum, all
/// atomics, so observing takes no lock. Bucket bounds are in seconds and
/// fixed when the histogram is first registered.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// Bucket bounds for work measured in milliseconds to seconds (a plugin's
/// batch, a commit): 0.5 ms to 10 s.
pub const FAST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds for end-to-end delivery, whose files may roll only every
/// few minutes: 5 ms to 1 h.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The upper bounds of the buckets, in seconds (without `+Inf`).
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Cumulative counts per bound, then the total (the `+Inf` bucket).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect()
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// One metric, as [`Metrics::visit`] hands it out.
#[derive(Debug)]
pub enum Sample<'a> {
    /// A counter's value.
    Counter(u64),
    /// A gauge's value.
    Gauge(i64),
    /// A histogram.
    Histogram(&'a Histogram),
}

/// A gauge read when metrics are read, not kept up to date: what a
/// structure already knows (a queue's fill) costs nothing on the hot path.
pub type GaugeFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Registry of counters, gauges and histograms by name.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, Counter>>,
    gauges: Mutex<BTreeMap<String, Gauge>>,
    observed: Mutex<BTreeMap<String, GaugeFn>>,
    histograms: Mutex<BTreeMap<String, Arc<Histogram>>>,
    taps: crate::tap::Taps,
    ranges: crate::ranges::ReadRanges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
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

    /// The tap point `point` (`source:<name>`, `plugin:<name>`,
    /// `channel:<name>`), registered with the metrics because every
    /// component already holds them; see [`crate::tap`].
    pub fn tap(&self, point: &str) -> Arc<crate::tap::TapPoint> {
        self.taps.point(point)
    }

    /// Every tap point, to subscribe to.
    pub fn taps(&self) -> &crate::tap::Taps {
        &self.taps
    }

    /// The ranges bounded sources read, for the run's summary; kept with
    /// the metrics because the run hands them back to its caller (see
    /// [`crate::ranges`]).
    pub fn ranges(&self) -> &crate::ranges::ReadRanges {
        &self.ranges
    }

    /// Registers a gauge whose value `read` computes whenever metrics are
    /// read (replacing one of the same name). `read` must be cheap and must
    /// not touch the registry.
    pub fn gauge_fn(&self, name: &str, read: impl Fn() -> i64 + Send + Sync + 'static) {
        let mut map = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(name.to_owned(), Arc::new(read));
    }

    /// The histogram called `name`, created empty with `bounds` (seconds)
    /// on first use; a later call gets the first one's bounds.
    pub fn histogram(&self, name: &str, bounds: &'static [f64]) -> Arc<Histogram> {
        let mut map = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned())
            .or_insert_with(|| Arc::new(Histogram::new(bounds)))
            .clone()
    }

    /// Every metric with its current value, in name order within each kind
    /// (counters, then gauges, then histograms). The registry's locks are
    /// held while `f` runs: it must not register metrics.
    pub fn visit(&self, mut f: impl FnMut(&str, Sample<'_>)) {
        for (k, v) in self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f(k, Sample::Counter(v.load(Ordering::Relaxed)));
        }
        for (k, v) in self.gauges.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            f(k, Sample::Gauge(v.load(Ordering::Relaxed)));
        }
        for (k, read) in self
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f(k, Sample::Gauge(read()));
        }
        for (k, v) in self
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f(k, Sample::Histogram(v));
        }
    }

    /// Current value of a gauge (0 if never registered).
    pub fn gauge_value(&self, name: &str) -> i64 {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = map.get(name) {
            return g.load(Ordering::Relaxed);
        }
        drop(map);
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.get(name).map_or(0, |read| read())
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
        for (k, read) in self
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.insert(k.clone(), read() as i128);
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

    #[test]
    fn histograms_count_into_the_first_bucket_that_holds_the_value() {
        let m = Metrics::new();
        let h = m.histogram("plugin.mask.batch_seconds", &[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on a bound: that bucket (le)
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.cumulative(), vec![2, 3, 4]);
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 3.0065).abs() < 1e-9);
        let same = m.histogram("plugin.mask.batch_seconds", FAST_BUCKETS);
        assert!(Arc::ptr_eq(&h, &same));
        let mut seen = Vec::new();
        m.visit(|name, sample| {
            seen.push((name.to_owned(), matches!(sample, Sample::Histogram(_))))
        });
        assert_eq!(seen, vec![("plugin.mask.batch_seconds".to_owned(), true)]);
    }
}
