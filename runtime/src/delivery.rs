//! Who owns which partition right now: the link between a Kafka source and
//! the exactly-once sinks downstream of it.
//!
//! Exactly-once sinks keep their own committed position of every partition
//! (beside their output) and that position, not the consumer group's commit,
//! is the truth on restart. Three things must line up for that to hold across
//! rebalances, and a [`SourceLink`] carries them:
//!
//! - **Epochs.** The source bumps the link's epoch on every assignment,
//!   revocation and rewind, and cuts its open batch whenever the epoch changes,
//!   so every batch is read entirely within one epoch. The epoch is stamped on
//!   the batch's [`Ack`](crate::event::Ack). A partition remembers the epoch it
//!   was (re)assigned in; events of an older epoch are stale (the partition
//!   was revoked since, and whoever owns it now re-reads them from the
//!   committed position), and sinks drop them.
//! - **Commit fencing.** A sink commits a partition only inside
//!   [`SourceLink::begin_commit`], which fails once the partition is revoked.
//!   Revocation waits (bounded) for commits in progress to finish, so once the
//!   source's revocation callback returns, this agent will never again commit
//!   the partition, and the next owner, assigned only after that, reads a
//!   final position. Conditional creation of commit records in the store is
//!   the second line of defence against an agent that lost its membership
//!   without knowing (see the object-store sink's `commit` module).
//! - **Positions.** On assignment the source asks every registered
//!   [`PositionStore`] where each partition's committed output ends (a store
//!   first completes or removes what a crash left half-done) and starts
//!   reading at the lowest of those positions; each sink skips what it already
//!   holds.
//! - **Co-fed sinks.** A source that also feeds sinks without positions of
//!   their own (an at-least-once object store, a Kafka sink, a logger, the
//!   dead-letter sink) cannot resume at the exactly-once sinks' positions
//!   alone: what those other sinks had not made durable before a crash lies
//!   below them. The topology marks such a link
//!   ([`SourceLink::set_co_fed`]); its source then starts each partition at
//!   the lowest of the stores' positions *and* the consumer group's committed
//!   offset (committed only once every sink acknowledged, so it never runs
//!   ahead of any of them). The exactly-once sinks skip what they hold.
//!
//! The source also publishes which partitions still have records it has
//! not read ([`SourceLink::set_behind`]), from librdkafka's statistics, so
//! an object-store sink's `_SUCCESS` markers do not take a partition that
//! is quiet because it is held back for one that is caught up.
//!
//! The consumer's group metadata is published here too, for a transactional
//! Kafka sink that sends offsets to its transaction. Such a sink writes the
//! consumer group's committed offsets itself, atomically with its output; the
//! topology then marks the link ([`SourceLink::set_offsets_in_transactions`])
//! and the source stops committing offsets of its own, which would race the
//! transactions' commits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::consumer::ConsumerGroupMetadata;

/// A topic and a partition.
pub type Tp = (String, i32);

/// Where an exactly-once sink's committed output of each partition ends.
pub trait PositionStore: Send + Sync {
    /// The sink's name, for logs.
    fn name(&self) -> &str;

    /// Completes or removes what a crash left of the given partitions, and
    /// returns for each partition with committed output the next offset to
    /// write. A partition absent from the answer has no committed output yet
    /// (the consumer group's position or `auto.offset.reset` applies).
    fn recover<'a>(
        &'a self,
        tps: &'a [Tp],
    ) -> BoxFuture<'a, Result<HashMap<Tp, i64>, crate::error::BoxError>>;
}

#[derive(Debug, Clone, Copy)]
struct Part {
    /// Epoch in which the partition was last assigned (or rewound).
    since: u64,
    owned: bool,
    committing: usize,
}

/// The shared ownership state of one source; see the module docs.
pub struct SourceLink {
    source: String,
    epoch: AtomicU64,
    parts: Mutex<HashMap<Tp, Part>>,
    idle: Condvar,
    stores: Mutex<Vec<Arc<dyn PositionStore>>>,
    group: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
    rewinds: Mutex<Vec<(Tp, i64)>>,
    rewind_wanted: tokio::sync::Notify,
    offsets_in_transactions: AtomicBool,
    co_fed: AtomicBool,
    /// Partitions with records not read yet, as last reported.
    behind: Mutex<Vec<Tp>>,
}

impl std::fmt::Debug for SourceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLink")
            .field("source", &self.source)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// Held while a sink writes a partition's commit; revocation waits for it.
#[must_use = "the commit is fenced only while the guard lives"]
pub(crate) struct CommitGuard<'a> {
    link: &'a SourceLink,
    tp: Tp,
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        let mut parts = self.link.lock();
        if let Some(p) = parts.get_mut(&self.tp) {
            p.committing = p.committing.saturating_sub(1);
        }
        drop(parts);
        self.link.idle.notify_all();
    }
}

impl SourceLink {
    /// A link for source `source`, owning nothing yet.
    pub fn new(source: &str) -> Arc<Self> {
        Arc::new(Self {
            source: source.to_owned(),
            epoch: AtomicU64::new(1),
            parts: Mutex::new(HashMap::new()),
            idle: Condvar::new(),
            stores: Mutex::new(Vec::new()),
            group: Mutex::new(None),
            rewinds: Mutex::new(Vec::new()),
            rewind_wanted: tokio::sync::Notify::new(),
            offsets_in_transactions: AtomicBool::new(false),
            co_fed: AtomicBool::new(false),
            behind: Mutex::new(Vec::new()),
        })
    }

    /// The source's latest report of the assigned partitions that still
    /// have records it has not read (it replaces the previous one).
    pub(crate) fn set_behind(&self, parts: Vec<Tp>) {
        *self.behind.lock().unwrap_or_else(|e| e.into_inner()) = parts;
    }

    /// The partitions last reported to have records not read yet.
    pub(crate) fn behind(&self) -> Vec<Tp> {
        self.behind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Tp, Part>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current epoch: stamp it on every batch cut now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Registers an exactly-once sink's committed positions.
    pub fn register(&self, store: Arc<dyn PositionStore>) {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        // A sink rebuilt by a live reload registers again: it replaces itself.
        stores.retain(|s| s.name() != store.name());
        stores.push(store);
    }

    /// Forgets the store of sink `name` (removed by a live reload).
    pub fn unregister(&self, name: &str) {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.retain(|s| s.name() != name);
    }

    /// The registered position stores.
    pub fn stores(&self) -> Vec<Arc<dyn PositionStore>> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The partitions were assigned (or rewound): a new epoch starts for them.
    pub fn assign(&self, tps: &[Tp]) -> u64 {
        let mut parts = self.lock();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for tp in tps {
            let committing = parts.get(tp).map_or(0, |p| p.committing);
            parts.insert(
                tp.clone(),
                Part {
                    since: epoch,
                    owned: true,
                    committing,
                },
            );
        }
        epoch
    }

    /// The partitions were revoked: no commit of them starts from now on, and
    /// this waits up to `wait` for commits in progress to end. Returns the
    /// partitions whose commits were still running when the wait ran out.
    pub fn revoke(&self, tps: &[Tp], wait: Duration) -> Vec<Tp> {
        let mut parts = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for tp in tps {
            if let Some(p) = parts.get_mut(tp) {
                p.owned = false;
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            let busy: Vec<Tp> = tps
                .iter()
                .filter(|tp| parts.get(*tp).is_some_and(|p| p.committing > 0))
                .cloned()
                .collect();
            let now = Instant::now();
            if busy.is_empty() || now >= deadline {
                return busy;
            }
            parts = self
                .idle
                .wait_timeout(parts, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether any exactly-once sink depends on this source.
    #[cfg(test)]
    pub(crate) fn has_stores(&self) -> bool {
        !self
            .stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Whether events of `tp` read in `epoch` are still this agent's to write.
    pub(crate) fn is_current(&self, topic: &str, partition: i32, epoch: u64) -> bool {
        self.lock()
            .get(&(topic.to_owned(), partition))
            .is_some_and(|p| p.owned && epoch >= p.since)
    }

    /// The partitions owned now.
    pub(crate) fn owned(&self) -> Vec<Tp> {
        self.lock()
            .iter()
            .filter(|(_, p)| p.owned)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The epoch `tp` was last assigned in, if it is owned.
    pub(crate) fn owned_since(&self, topic: &str, partition: i32) -> Option<u64> {
        self.lock()
            .get(&(topic.to_owned(), partition))
            .filter(|p| p.owned)
            .map(|p| p.since)
    }

    /// Starts a commit of `tp` for data read in `epoch`; `None` if the
    /// partition was revoked or reassigned since (the data is stale).
    pub(crate) fn begin_commit(&self, tp: &Tp, epoch: u64) -> Option<CommitGuard<'_>> {
        let mut parts = self.lock();
        let p = parts.get_mut(tp)?;
        if !p.owned || epoch < p.since {
            return None;
        }
        p.committing += 1;
        Some(CommitGuard {
            link: self,
            tp: tp.clone(),
        })
    }

    /// Asks the source to read `tp` again from `offset`: a sink lost a
    /// commit race (another writer extended the partition's chain) or had to
    /// drop what it held. The source seeks and starts a new epoch for `tp`,
    /// so everything read before is stale.
    pub(crate) fn request_rewind(&self, tp: Tp, offset: i64) {
        self.rewinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((tp, offset));
        self.rewind_wanted.notify_one();
    }

    /// Waits until a rewind is requested.
    pub(crate) async fn rewind_requested(&self) {
        self.rewind_wanted.notified().await;
    }

    /// The requested rewinds, oldest first.
    pub(crate) fn take_rewinds(&self) -> Vec<(Tp, i64)> {
        std::mem::take(&mut *self.rewinds.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes the consumer's current group metadata (after each rebalance).
    pub(crate) fn set_group_metadata(&self, metadata: Option<ConsumerGroupMetadata>) {
        *self.group.lock().unwrap_or_else(|e| e.into_inner()) = metadata.map(Arc::new);
    }

    /// The consumer's group metadata, for `send_offsets_to_transaction`.
    pub fn group_metadata(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        self.group.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The source also feeds sinks that keep no positions of their own; see
    /// the module docs. Set before the source starts.
    pub(crate) fn set_co_fed(&self) {
        self.co_fed.store(true, Ordering::Release);
    }

    /// Whether [`SourceLink::set_co_fed`] was called.
    pub(crate) fn co_fed(&self) -> bool {
        self.co_fed.load(Ordering::Acquire)
    }

    /// A transactional sink commits the source's offsets inside its
    /// transactions: the source must not commit any itself. Set before the
    /// source starts.
    pub(crate) fn set_offsets_in_transactions(&self) {
        self.offsets_in_transactions.store(true, Ordering::Release);
    }

    /// Whether offsets are committed by a transactional sink, not the source.
    pub(crate) fn offsets_in_transactions(&self) -> bool {
        self.offsets_in_transactions.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".into(), p)
    }

    #[test]
    fn events_of_an_older_epoch_are_stale_after_reassignment() {
        let link = SourceLink::new("s");
        let e1 = link.assign(&[tp(0), tp(1)]);
        assert!(link.is_current("t", 0, e1));
        link.revoke(&[tp(0), tp(1)], Duration::ZERO);
        assert!(!link.is_current("t", 0, e1));
        let e2 = link.assign(&[tp(0)]);
        assert!(e2 > e1);
        assert!(!link.is_current("t", 0, e1), "read before the revocation");
        assert!(link.is_current("t", 0, e2));
        assert!(!link.is_current("t", 1, e2), "not ours any more");
        assert!(link.begin_commit(&tp(0), e1).is_none());
        assert!(link.begin_commit(&tp(0), e2).is_some());
    }

    #[test]
    fn revocation_waits_for_a_commit_in_progress() {
        let link = SourceLink::new("s");
        let e = link.assign(&[tp(0)]);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let released = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let (link, released) = (&link, &released);
            s.spawn(move || {
                let guard = link.begin_commit(&tp(0), e).expect("owned");
                started_tx.send(()).unwrap();
                // Give the revocation time to start waiting.
                std::thread::sleep(Duration::from_millis(50));
                released.store(true, Ordering::Release);
                drop(guard);
            });
            started_rx.recv().unwrap();
            let busy = link.revoke(&[tp(0)], Duration::from_secs(10));
            assert!(busy.is_empty());
            assert!(
                released.load(Ordering::Acquire),
                "returned before the commit ended"
            );
        });
        assert!(link.begin_commit(&tp(0), e).is_none());
    }

    #[test]
    fn a_revocation_that_cannot_wait_reports_the_busy_partition() {
        let link = SourceLink::new("s");
        let e = link.assign(&[tp(3)]);
        let _guard = link.begin_commit(&tp(3), e).expect("owned");
        assert_eq!(link.revoke(&[tp(3)], Duration::ZERO), vec![tp(3)]);
    }
}
