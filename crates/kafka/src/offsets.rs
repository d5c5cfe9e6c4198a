//! Which offsets the Kafka source may commit.
//!
//! Every batch the source hands on records, per partition, the highest offset
//! it holds. Batches are numbered in the order they were cut; acknowledgement
//! reports arrive in any order. A partition's offset may advance past a batch
//! only when that batch and every earlier batch holding the same partition are
//! delivered — the longest delivered prefix, kept *per partition* rather than
//! over all batches, so that an undelivered batch of one partition does not
//! stall the commits of the others (the batch ids still define the order, as
//! the brief of the source asks).
//!
//! A batch reported undelivered poisons its partitions from that batch on:
//! nothing is committed past it for as long as this consumer owns them, so a
//! restart (or the next owner after a rebalance) reads those events again.
//! Revoking a partition forgets everything about it, including its poison.

use std::collections::{BTreeMap, HashMap};

/// A topic and a partition.
pub type Tp = (String, i32);

/// Highest offset per partition of one batch; batches touch few partitions,
/// so a vector beats a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct BatchOffsets(Vec<(Tp, i64)>);

impl BatchOffsets {
    fn observe(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .0
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            Some((_, max)) => *max = (*max).max(offset),
            None => self.0.push(((topic.to_owned(), partition), offset)),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Tp) -> bool) {
        self.0.retain(|(tp, _)| keep(tp));
    }
}

#[derive(Debug)]
struct Pending {
    offsets: BatchOffsets,
    delivered: bool,
}

/// What a report changed; see [`Tracker::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Delivered (or a batch the tracker no longer follows).
    Delivered,
    /// Not delivered: commits of its partitions stop at it.
    Failed,
}

/// Offset bookkeeping of one source; see the module docs.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Offsets of the batch being filled.
    open: BatchOffsets,
    /// Handed-on batches not yet folded into `ready`, by id.
    pending: BTreeMap<u64, Pending>,
    /// Per partition: the next offset to read once everything before it is
    /// delivered, i.e. what may be committed.
    ready: HashMap<Tp, i64>,
    /// Per partition: the offset last sent in a commit.
    committed: HashMap<Tp, i64>,
    /// Per partition: the highest offset the group confirmed committed.
    confirmed: HashMap<Tp, i64>,
    /// Per partition: the first batch reported undelivered.
    poisoned: HashMap<Tp, u64>,
}

impl Tracker {
    /// Notes a record added to the open batch.
    pub fn observe(&mut self, topic: &str, partition: i32, offset: i64) {
        self.open.observe(topic, partition, offset);
    }

    /// Closes the open batch as batch `id`.
    pub fn seal(&mut self, id: u64) {
        let offsets = std::mem::take(&mut self.open);
        if !offsets.0.is_empty() {
            self.pending.insert(
                id,
                Pending {
                    offsets,
                    delivered: false,
                },
            );
        }
    }

    /// Applies an acknowledgement report.
    pub fn report(&mut self, id: u64, delivered: bool) -> Reported {
        if delivered {
            if let Some(p) = self.pending.get_mut(&id) {
                p.delivered = true;
            }
            return Reported::Delivered;
        }
        if let Some(p) = self.pending.remove(&id) {
            for (tp, _) in p.offsets.0 {
                let first = self.poisoned.entry(tp).or_insert(id);
                *first = (*first).min(id);
            }
        }
        Reported::Failed
    }

    /// Folds delivered batches into `ready`, in id order per partition.
    fn advance(&mut self) {
        let mut blocked: Vec<&Tp> = Vec::new();
        let mut ready: Vec<(Tp, i64)> = Vec::new();
        for (id, batch) in self.pending.iter_mut() {
            if !batch.delivered {
                blocked.extend(batch.offsets.0.iter().map(|(tp, _)| tp));
                continue;
            }
            batch.offsets.0.retain(|(tp, max)| {
                if self.poisoned.get(tp).is_some_and(|first| id > first) {
                    false // past an undelivered batch: never committable
                } else if blocked.contains(&tp) {
                    true // an earlier batch of this partition is in flight
                } else {
                    ready.push((tp.clone(), max + 1));
                    false
                }
            });
        }
        self.pending
            .retain(|_, b| !(b.delivered && b.offsets.0.is_empty()));
        for (tp, next) in ready {
            let slot = self.ready.entry(tp).or_insert(next);
            *slot = (*slot).max(next);
        }
    }

    /// Offsets that may be committed and were not sent yet: `(topic,
    /// partition, next offset)`, sorted.
    pub fn committable(&mut self) -> Vec<(Tp, i64)> {
        self.advance();
        Self::newer(&self.ready, &self.committed)
    }

    /// Offsets that may be committed and are not confirmed committed (sent
    /// but unanswered, or never sent): what the final commit sends.
    pub fn unconfirmed(&mut self) -> Vec<(Tp, i64)> {
        self.advance();
        Self::newer(&self.ready, &self.confirmed)
    }

    fn newer(ready: &HashMap<Tp, i64>, than: &HashMap<Tp, i64>) -> Vec<(Tp, i64)> {
        let mut out: Vec<(Tp, i64)> = ready
            .iter()
            .filter(|(tp, next)| than.get(*tp).is_none_or(|c| c < *next))
            .map(|(tp, next)| (tp.clone(), *next))
            .collect();
        out.sort();
        out
    }

    /// Records offsets as sent in a commit.
    pub fn mark_committed(&mut self, offsets: &[(Tp, i64)]) {
        for (tp, next) in offsets {
            self.committed.insert(tp.clone(), *next);
        }
    }

    /// Records offsets the group confirmed committed.
    pub fn confirm(&mut self, offsets: &[(Tp, i64)]) {
        for (tp, next) in offsets {
            let c = self.confirmed.entry(tp.clone()).or_insert(*next);
            *c = (*c).max(*next);
        }
    }

    /// A commit failed: send everything again next time.
    pub fn forget_committed(&mut self) {
        self.committed.clear();
    }

    /// Unconfirmed committable offsets of the partitions in `tps` (before
    /// revoking them).
    pub fn committable_of(&mut self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        let mut all = self.unconfirmed();
        all.retain(|(tp, _)| tps.contains(tp));
        all
    }

    /// Forgets the partitions in `tps`: they now belong to another consumer
    /// (or are about to be re-read from their committed offsets).
    pub fn revoke(&mut self, tps: &[Tp]) {
        let owned = |tp: &Tp| !tps.contains(tp);
        self.open.retain(owned);
        for batch in self.pending.values_mut() {
            batch.offsets.retain(owned);
        }
        self.pending
            .retain(|_, b| !(b.delivered && b.offsets.0.is_empty()));
        self.ready.retain(|tp, _| owned(tp));
        self.committed.retain(|tp, _| owned(tp));
        self.confirmed.retain(|tp, _| owned(tp));
        self.poisoned.retain(|tp, _| owned(tp));
    }

    /// Whether every batch handed on has been reported (delivered or not)
    /// and the open batch is empty: nothing is in flight.
    pub fn settled(&mut self) -> bool {
        self.advance();
        self.pending.is_empty() && self.open.0.is_empty()
    }

    /// The offset up to which `topic`'s `partition` is delivered (what may
    /// be committed), if anything of it was.
    pub fn delivered_up_to(&mut self, topic: &str, partition: i32) -> Option<i64> {
        self.advance();
        self.ready
            .iter()
            .find(|((t, p), _)| *p == partition && t == topic)
            .map(|(_, next)| *next)
    }

    /// Number of handed-on batches whose offsets still wait for reports.
    #[cfg(test)]
    pub(crate) fn pending_batches(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_owned(), p)
    }

    /// Batch `id` holding `offsets` (topic "t").
    fn cut(tr: &mut Tracker, id: u64, offsets: &[(i32, i64)]) {
        for (p, o) in offsets {
            tr.observe("t", *p, *o);
        }
        tr.seal(id);
    }

    #[test]
    fn commits_the_delivered_prefix_only() {
        let mut tr = Tracker::default();
        cut(&mut tr, 0, &[(0, 0), (0, 1), (0, 2)]);
        cut(&mut tr, 1, &[(0, 3), (0, 4)]);
        cut(&mut tr, 2, &[(0, 5)]);
        assert!(tr.committable().is_empty());
        tr.report(1, true);
        assert!(tr.committable().is_empty(), "batch 0 still in flight");
        tr.report(0, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 5)]);
        tr.mark_committed(&[(tp("t", 0), 5)]);
        assert!(tr.committable().is_empty(), "sent already");
        assert_eq!(tr.unconfirmed(), vec![(tp("t", 0), 5)], "not confirmed yet");
        tr.confirm(&[(tp("t", 0), 5)]);
        assert!(tr.unconfirmed().is_empty());
        tr.report(2, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 6)]);
        assert_eq!(tr.pending_batches(), 0);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut tr = Tracker::default();
        cut(&mut tr, 0, &[(0, 10)]);
        cut(&mut tr, 1, &[(1, 20), (0, 11)]);
        cut(&mut tr, 2, &[(1, 21)]);
        tr.report(2, true);
        tr.report(1, true);
        // Partition 1 is only in batches 1 and 2, both delivered; partition 0
        // waits for batch 0.
        assert_eq!(tr.committable(), vec![(tp("t", 1), 22)]);
        tr.report(0, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 12), (tp("t", 1), 22)]);
    }

    #[test]
    fn an_undelivered_batch_blocks_its_partitions_for_good() {
        let mut tr = Tracker::default();
        cut(&mut tr, 0, &[(0, 0)]);
        cut(&mut tr, 1, &[(0, 1), (1, 0)]);
        cut(&mut tr, 2, &[(0, 2), (1, 1), (2, 0)]);
        assert_eq!(tr.report(1, false), Reported::Failed);
        tr.report(2, true);
        tr.report(0, true);
        // Partition 0 stops before batch 1; partition 1 has nothing before it;
        // partition 2 was never in a failed batch.
        assert_eq!(tr.committable(), vec![(tp("t", 0), 1), (tp("t", 2), 1)]);
        cut(&mut tr, 3, &[(0, 3), (1, 2), (2, 1)]);
        tr.report(3, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 1), (tp("t", 2), 2)]);
        assert_eq!(tr.pending_batches(), 0, "poisoned entries are not kept");
    }

    #[test]
    fn batches_before_a_failure_still_commit() {
        let mut tr = Tracker::default();
        cut(&mut tr, 0, &[(0, 0)]);
        cut(&mut tr, 1, &[(0, 1)]);
        tr.report(1, false);
        tr.report(0, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 1)]);
    }

    #[test]
    fn revoking_forgets_the_partition() {
        let mut tr = Tracker::default();
        cut(&mut tr, 0, &[(0, 0), (1, 0)]);
        cut(&mut tr, 1, &[(0, 1)]);
        tr.report(1, false);
        tr.observe("t", 1, 1);
        tr.observe("t", 0, 2);
        tr.report(0, true);
        assert_eq!(tr.committable_of(&[tp("t", 1)]), vec![(tp("t", 1), 1)]);
        tr.revoke(&[tp("t", 0), tp("t", 1)]);
        assert!(tr.unconfirmed().is_empty());
        // Re-assigned: reading resumes from the committed offsets, and the
        // poison is gone with the old assignment.
        cut(&mut tr, 2, &[(0, 1)]);
        tr.report(2, true);
        assert_eq!(tr.committable(), vec![(tp("t", 0), 2)]);
    }

    #[test]
    fn settled_once_every_batch_is_reported() {
        let mut tr = Tracker::default();
        assert!(tr.settled(), "nothing handed on");
        cut(&mut tr, 0, &[(0, 0), (0, 1)]);
        cut(&mut tr, 1, &[(0, 2)]);
        tr.observe("t", 0, 3);
        assert!(!tr.settled());
        tr.seal(2);
        tr.report(1, true);
        tr.report(2, true);
        assert!(!tr.settled(), "batch 0 is in flight");
        assert_eq!(tr.delivered_up_to("t", 0), None);
        tr.report(0, true);
        assert!(tr.settled());
        assert_eq!(tr.delivered_up_to("t", 0), Some(4));
        cut(&mut tr, 3, &[(1, 0)]);
        tr.report(3, false);
        assert!(tr.settled(), "a failed batch is reported too");
        assert_eq!(tr.delivered_up_to("t", 1), None);
    }

    #[test]
    fn reports_for_unknown_batches_are_ignored() {
        let mut tr = Tracker::default();
        tr.seal(0); // empty batch: nothing to track
        assert_eq!(tr.report(0, true), Reported::Delivered);
        assert_eq!(tr.report(9, false), Reported::Failed);
        assert!(tr.unconfirmed().is_empty());
    }
}
