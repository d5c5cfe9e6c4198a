//! What bounded sources read: per partition, the offset range a bounded run
//! covered and how many events it read there.
//!
//! A bounded source (a `kafka` source with `bounded`) records one
//! [`PartitionRange`] per partition it was assigned when it ends; `sluice
//! run` lists them in its final summary. The record lives beside the
//! metrics ([`Metrics::ranges`](crate::metrics::Metrics::ranges)) because
//! the run hands its metrics back to whoever started it, and it is written
//! once per partition per run, never on the hot path.

use std::sync::Mutex;

/// The range one bounded source read of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// The source's name.
    pub source: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset reading started at.
    pub start: i64,
    /// The end of the range (exclusive), fixed when the source started.
    pub end: i64,
    /// The offset after the last record handed on (`start` if none was).
    pub next: i64,
    /// Events handed on from this partition.
    pub events: u64,
    /// Whether the partition reached its end (false when the run was
    /// stopped before, or the partition was revoked first).
    pub complete: bool,
}

/// Every [`PartitionRange`] recorded in a process.
#[derive(Debug, Default)]
pub struct ReadRanges {
    ranges: Mutex<Vec<PartitionRange>>,
}

impl ReadRanges {
    /// Records `range`, replacing an earlier record of the same source,
    /// topic and partition (a source restarted by a live reload).
    pub fn record(&self, range: PartitionRange) {
        let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        match ranges.iter_mut().find(|r| {
            r.partition == range.partition && r.topic == range.topic && r.source == range.source
        }) {
            Some(slot) => *slot = range,
            None => ranges.push(range),
        }
    }

    /// Every range recorded, sorted by source, topic and partition.
    pub fn all(&self) -> Vec<PartitionRange> {
        let mut out = self
            .ranges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.sort_by(|a, b| {
            (&a.source, &a.topic, a.partition).cmp(&(&b.source, &b.topic, b.partition))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(source: &str, partition: i32, events: u64) -> PartitionRange {
        PartitionRange {
            source: source.to_owned(),
            topic: "t".to_owned(),
            partition,
            start: 0,
            end: 10,
            next: events as i64,
            events,
            complete: events == 10,
        }
    }

    #[test]
    fn a_later_record_of_the_same_partition_replaces_the_earlier() {
        let r = ReadRanges::default();
        r.record(range("b", 0, 10));
        r.record(range("a", 1, 3));
        r.record(range("a", 0, 4));
        r.record(range("a", 1, 10));
        let all = r.all();
        assert_eq!(
            all.iter()
                .map(|r| (r.source.as_str(), r.partition, r.events))
                .collect::<Vec<_>>(),
            vec![("a", 0, 4), ("a", 1, 10), ("b", 0, 10)]
        );
    }
}
