//! `_SUCCESS` markers: an empty `_SUCCESS` object written into a time
//! partition (a rendered directory such as `dt=2026-12-04/hr=15`) once it
//! is complete, as Hadoop jobs and Camus did, so a scheduled `LOAD DATA`,
//! `MSCK REPAIR` or Airflow sensor knows the hour is whole.
//!
//! A directory covers one period of event time: the path template's finest
//! time escape (`%H`: an hour). It is complete when
//!
//! - the sink's **low watermark** has passed the period's end plus
//!   `allowed_lateness`. The watermark is the smallest, over the partitions
//!   (topic, partition) the sink receives, of the latest event time each
//!   has delivered. When one Kafka source feeds the sink, every partition
//!   assigned to it counts, including those that delivered nothing yet (so
//!   a partition still catching up after a restart holds the watermark
//!   back). A partition that has delivered nothing for
//!   `marker_idle_timeout` does not hold it back (it is caught up, or gone
//!   to another agent), unless that source's statistics (every
//!   `statistics.interval.ms`) show records of it not read yet: a partition
//!   quiet because it is held back (backpressure, a slow catch-up after a
//!   restart or a store outage) keeps its hours open. When every partition
//!   is idle the watermark is the latest time of any. Without such a source
//!   (several sources, or a bounded run, whose partitions stop short of
//!   their ends) idleness is judged on silence alone, so the timeout should
//!   stay well above a rebalance;
//! - and no file of that directory is still open: every file written into
//!   it is visible (exactly-once: committed).
//!
//! Directories waiting for their marker are listed in
//! `_sluice/markers/<sink>.json` beside the output whenever one is added or
//! marked, so a crash or restart does not forget an hour whose last file
//! became visible before its marker was written.
//!
//! An event later than the allowed lateness still goes into its directory,
//! after the marker: the marker says the hour was complete by the stated
//! rule, not that nothing can ever follow.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::error::StoreError;
use super::path::Period;
use super::store::Destination;
use crate::delivery::{SourceLink, Tp};
use crate::metrics::Counter;

/// The marker's file name.
pub(crate) const MARKER: &str = "_SUCCESS";

/// The latest event time of one partition, and when it last delivered.
#[derive(Debug, Clone, Copy)]
struct Seen {
    latest_ms: i64,
    at: Instant,
}

/// The marker bookkeeping of one sink.
pub(crate) struct Markers {
    period: Period,
    lateness_ms: i64,
    idle: Duration,
    /// Per topic, per partition.
    seen: HashMap<String, HashMap<i32, Seen>>,
    /// Directories written into and not marked yet → their period's end.
    pending: HashMap<String, i64>,
    /// The directory of the last event observed (most events share it).
    last_dir: String,
    /// The Kafka source feeding the sink, whose assignment counts.
    link: Option<Arc<SourceLink>>,
    /// Assigned partitions that delivered nothing yet, since when.
    silent: HashMap<Tp, Instant>,
    rel: String,
    written: Counter,
}

impl Markers {
    /// Markers of sink `sink` for directories of `period`.
    pub fn new(
        sink: &str,
        period: Period,
        lateness: Duration,
        idle: Duration,
        link: Option<Arc<SourceLink>>,
        written: Counter,
    ) -> Self {
        Self {
            link,
            silent: HashMap::new(),
            period,
            lateness_ms: i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX),
            idle,
            seen: HashMap::new(),
            pending: HashMap::new(),
            last_dir: String::new(),
            rel: format!("markers/{sink}.json"),
            written,
        }
    }

    /// Where the waiting directories are listed, under `_sluice/`.
    pub fn state(&self) -> &str {
        &self.rel
    }

    /// Adds the directories a previous run left waiting (the object at
    /// [`Self::state`]).
    pub fn restore(&mut self, body: &[u8]) -> Result<(), StoreError> {
        let listed: HashMap<String, i64> = serde_json::from_slice(body)
            .map_err(|e| StoreError::permanent(format!("reading _sluice/{}: {e}", self.rel)))?;
        self.pending.extend(listed);
        Ok(())
    }

    /// Notes an event of `topic`/`partition` with time `time_ms` going into
    /// directory `dir`. `true` when `dir` is new: [`Self::save`] it before
    /// any file of it can become visible.
    #[inline]
    pub fn observe(
        &mut self,
        dir: &str,
        topic: &str,
        partition: i32,
        time_ms: i64,
        now: Instant,
    ) -> bool {
        let seen = match self.seen.get_mut(topic) {
            Some(parts) => parts,
            None => self.seen.entry(topic.to_owned()).or_default(),
        };
        let s = seen.entry(partition).or_insert(Seen {
            latest_ms: time_ms,
            at: now,
        });
        s.latest_ms = s.latest_ms.max(time_ms);
        s.at = now;
        if dir == self.last_dir {
            return false;
        }
        self.last_dir.clear();
        self.last_dir.push_str(dir);
        if self.pending.contains_key(dir) {
            return false;
        }
        self.pending
            .insert(dir.to_owned(), self.period.end_ms(time_ms));
        true
    }

    /// The low watermark now, if any partition delivered and no assigned
    /// partition that has not is still within its idle timeout or behind.
    fn watermark(&mut self, now: Instant) -> Option<i64> {
        let mut behind = Vec::new();
        if let Some(link) = &self.link {
            let owned = link.owned();
            behind = link.behind();
            behind.retain(|tp| owned.contains(tp));
            self.silent.retain(|tp, _| owned.contains(tp));
            for tp in owned {
                let delivered = self.seen.get(&tp.0).is_some_and(|p| p.contains_key(&tp.1));
                if delivered {
                    self.silent.remove(&tp);
                    continue;
                }
                let since = *self.silent.entry(tp.clone()).or_insert(now);
                if now.duration_since(since) < self.idle || behind.contains(&tp) {
                    return None;
                }
            }
        }
        let is_behind =
            |topic: &str, partition: i32| behind.iter().any(|(t, p)| t == topic && *p == partition);
        let all = self
            .seen
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, s)| (t.as_str(), *p, s)));
        let active = all
            .clone()
            .filter(|(t, p, s)| now.duration_since(s.at) < self.idle || is_behind(t, *p))
            .map(|(_, _, s)| s.latest_ms)
            .min();
        active.or_else(|| all.map(|(_, _, s)| s.latest_ms).max())
    }

    /// Directories complete by time (the caller checks their files).
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        // Checked after every batch: while no waiting directory could be
        // due even by the latest time any partition delivered (the
        // watermark can only be lower), skip asking the source's link.
        let earliest = self.pending.values().min().copied();
        let latest = self
            .seen
            .values()
            .flat_map(|p| p.values())
            .map(|s| s.latest_ms)
            .max();
        match (earliest, latest) {
            (Some(end), Some(latest)) if end.saturating_add(self.lateness_ms) <= latest => {}
            _ => return Vec::new(),
        }
        let Some(watermark) = self.watermark(now) else {
            return Vec::new();
        };
        self.pending
            .iter()
            .filter(|(_, end)| end.saturating_add(self.lateness_ms) <= watermark)
            .map(|(dir, _)| dir.clone())
            .collect()
    }

    /// Writes the marker of `dir`.
    pub async fn mark(dest: &Destination, dir: &str) -> Result<(), StoreError> {
        dest.put_in(dir, MARKER, Bytes::new()).await
    }

    /// The marker of `dir` is written: forgets it.
    pub fn marked(&mut self, dir: &str) {
        self.written.fetch_add(1, Ordering::Relaxed);
        self.pending.remove(dir);
        if self.last_dir == dir {
            self.last_dir.clear();
        }
    }

    /// Lists the waiting directories beside the output.
    pub async fn save(&self, dest: &Destination) -> Result<(), StoreError> {
        let body = serde_json::to_vec(&self.pending)
            .map_err(|e| StoreError::permanent(format!("encoding marker state: {e}")))?;
        dest.put_meta(&self.rel, body.into()).await
    }

    /// How long until the next check could find something due: the idle
    /// timeout (a partition going idle moves the watermark).
    pub fn recheck(&self) -> Duration {
        self.idle.min(Duration::from_secs(1))
    }

    /// Whether directories are waiting.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    /// Hourly markers, idle after 30 s.
    fn markers_with(lateness: Duration, link: Option<Arc<SourceLink>>) -> Markers {
        Markers::new(
            "s",
            Period::Hour,
            lateness,
            Duration::from_secs(30),
            link,
            Counter::default(),
        )
    }

    fn markers() -> Markers {
        markers_with(Duration::from_secs(60), None)
    }

    #[test]
    fn an_hour_is_due_once_every_active_partition_passed_its_end_plus_lateness() {
        let mut m = markers();
        let t0 = Instant::now();
        assert!(m.observe("hr=00", "t", 0, 10, t0));
        assert!(!m.observe("hr=00", "t", 0, 20, t0));
        assert!(m.observe("hr=01", "t", 1, H + 5, t0));
        assert!(m.due(t0).is_empty(), "partition 0 is still in hour 0");
        // Partition 0 reaches hour 1, but not past the lateness.
        assert!(!m.observe("hr=01", "t", 0, H + 30_000, t0));
        assert!(m.due(t0).is_empty());
        m.observe("hr=01", "t", 0, H + 60_000, t0);
        assert!(m.due(t0).is_empty(), "partition 1 is at H+5ms");
        m.observe("hr=01", "t", 1, H + 60_000, t0);
        assert_eq!(m.due(t0), ["hr=00"]);
        // A partition gone idle stops holding the watermark back.
        let mut m = markers();
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=01", "t", 1, 2 * H, t0 + Duration::from_secs(40));
        assert_eq!(m.due(t0 + Duration::from_secs(40)), ["hr=00"]);
    }

    #[test]
    fn an_assigned_partition_that_delivered_nothing_holds_the_watermark_back() {
        let link = SourceLink::new("src");
        link.assign(&[("t".into(), 0), ("t".into(), 1)]);
        let mut m = markers_with(Duration::ZERO, Some(link.clone()));
        let t0 = Instant::now();
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, t0);
        assert!(m.due(t0).is_empty(), "partition 1 is assigned and silent");
        assert!(m.due(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            m.due(t0 + Duration::from_secs(30)),
            ["hr=00"],
            "silent too long"
        );
        // Once it delivers, its time counts.
        let mut m = markers_with(Duration::ZERO, Some(link.clone()));
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, t0);
        m.observe("hr=00", "t", 1, 20, t0);
        assert!(m.due(t0).is_empty(), "partition 1 is in hour 0");
        m.observe("hr=01", "t", 1, H, t0);
        assert_eq!(m.due(t0), ["hr=00"]);
        // A revoked partition no longer counts.
        link.revoke(&[("t".into(), 1)], Duration::ZERO);
        let mut m = markers_with(Duration::ZERO, Some(link));
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, t0);
        assert_eq!(m.due(t0), ["hr=00"]);
    }

    #[test]
    fn a_quiet_partition_its_source_reports_behind_holds_the_watermark_back() {
        let link = SourceLink::new("src");
        link.assign(&[("t".into(), 0), ("t".into(), 1)]);
        let (t0, later) = (Instant::now(), Instant::now() + Duration::from_secs(40));
        // Partition 1 delivered into hour 0, then went quiet for longer than
        // the idle timeout while partition 0 went on to hour 5.
        let mut m = markers_with(Duration::ZERO, Some(link.clone()));
        m.observe("hr=00", "t", 1, 10, t0);
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, later);
        // Its source still has records of it to read: hour 0 stays open.
        link.set_behind(vec![("t".into(), 1)]);
        assert!(m.due(later).is_empty());
        // Caught up, its silence is idleness again.
        link.set_behind(Vec::new());
        assert_eq!(m.due(later), ["hr=00"]);
        // The same for an assigned partition that delivered nothing yet.
        let mut m = markers_with(Duration::ZERO, Some(link.clone()));
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, t0);
        assert!(m.due(t0).is_empty(), "partition 1 is assigned and silent");
        link.set_behind(vec![("t".into(), 1)]);
        assert!(m.due(later).is_empty());
        link.set_behind(Vec::new());
        assert_eq!(m.due(later), ["hr=00"]);
        // A partition no longer assigned here does not count, behind or not.
        link.set_behind(vec![("t".into(), 1)]);
        link.revoke(&[("t".into(), 1)], Duration::ZERO);
        let mut m = markers_with(Duration::ZERO, Some(link));
        m.observe("hr=00", "t", 1, 10, t0);
        m.observe("hr=00", "t", 0, 10, t0);
        m.observe("hr=05", "t", 0, 5 * H, later);
        assert_eq!(m.due(later), ["hr=00"]);
    }
}
