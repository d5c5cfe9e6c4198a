//! Bounded runs of the Kafka source (`[sources.<n>.bounded]`): read every
//! partition of `topics` from a start to an end, then end.
//!
//! - **When the source starts**, [`plan`] reads the topics' partitions and
//!   watermarks and fixes each partition's end (`end_at_start`: the high
//!   watermark; a time: `offsets_for_times`, the high watermark if no record
//!   is that recent; a table) and, unless `start = "committed"`, its start.
//!   It makes blocking librdkafka calls: the source runs it off the async
//!   runtime.
//! - **When partitions are assigned**, the rebalance callback positions each
//!   at its start (`committed` is resolved then: the exactly-once sinks'
//!   positions, the group's committed offset, else `start_from`) and queues
//!   the assignment for the consume loop in the [`Hooks`].
//! - **In the consume loop**, [`Progress`] admits each record: one below its
//!   partition's end is handed on; the one just before the end, or any at
//!   or past it (not handed on), makes the partition *done*, and the source
//!   pauses it; records of a done partition are dropped. A partition whose
//!   start is at or past its end is done at once. A partition whose last
//!   records before the end are ones a consumer never sees (transaction
//!   markers, or offsets compacted away) is done once librdkafka's
//!   statistics show its fetch position at or past the end with nothing
//!   left in the consumer's queue ([`Progress::fetched`]), within a couple
//!   of `statistics.interval.ms`.
//! - **When every assigned partition is done** (and at least one was
//!   assigned), the source hands on its open batch, waits until every batch
//!   handed on is reported, checks that each partition is delivered up to
//!   what it read, commits and ends with `Ok`; each partition's range goes
//!   to the run's summary ([`crate::ranges`]).
//!
//! Every range is fixed per partition, so a rerun with the same `start`
//! reads the same records again; an exactly-once sink skips what its commit
//! log holds, so the rerun writes nothing new.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::config::{BoundEnd, BoundStart, Bounded, PartitionOffsets};
use crate::kafka::describe_error;
use crate::kafka::offsets::Tp;
use crate::metrics::Gauge;
use crate::ranges::PartitionRange;

/// How long each metadata and offset lookup at the start may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a bounded run cannot start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BoundedError {
    /// The topic's partitions could not be read.
    #[error("reading the partitions of topic `{topic}`: {error}")]
    Metadata {
        /// The topic.
        topic: String,
        /// The client's error.
        error: String,
    },
    /// The topic does not exist, or the broker reports an error for it.
    #[error("topic `{topic}` in `topics` does not exist or has no partitions{detail}")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The broker's error, if it gave one.
        detail: String,
    },
    /// A partition's watermarks could not be read.
    #[error("reading the first and last offsets of {topic}:{partition}: {error}")]
    Watermarks {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The client's error.
        error: String,
    },
    /// Looking offsets up by time failed.
    #[error("looking up the offsets of `bounded.{key}` by time: {error}")]
    Times {
        /// `start` or `end`.
        key: &'static str,
        /// The client's error.
        error: String,
    },
    /// A table gives no offset for a partition of a subscribed topic.
    #[error(
        "`bounded.{key}` gives no offset for \"{topic}:{partition}\"; the table must list every partition of the topics in `topics` (`{topic}` has {count})"
    )]
    Unlisted {
        /// `start` or `end`.
        key: &'static str,
        /// The topic.
        topic: String,
        /// The partition missing from the table.
        partition: i32,
        /// Partitions of the topic.
        count: usize,
    },
    /// A table names a partition that does not exist.
    #[error(
        "`bounded.{key}` names \"{topic}:{partition}\", which does not exist (`{topic}` has {count} partitions)"
    )]
    NoSuchPartition {
        /// `start` or `end`.
        key: &'static str,
        /// The topic.
        topic: String,
        /// The partition named.
        partition: i32,
        /// Partitions of the topic.
        count: usize,
    },
    /// An explicit start past the partition's end of log, before the
    /// range's end: librdkafka would reset it per `start_from`.
    #[error(
        "`bounded.start` of \"{topic}:{partition}\" is {start}, past the partition's end of log ({high}) and before its end ({end}); start at {high} or earlier"
    )]
    StartPastLog {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The start given.
        start: i64,
        /// The partition's high watermark.
        high: i64,
        /// The range's end.
        end: i64,
    },
}

/// Where a partition starts, as planned when the source starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlannedStart {
    /// Resolved on assignment: where the sinks or the group left off.
    Committed,
    /// The oldest retained record.
    Beginning,
    /// This offset.
    At(i64),
}

/// One partition's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartPlan {
    /// First retained offset when the run started.
    pub low: i64,
    /// High watermark (last stable offset under `read_committed`) when the
    /// run started.
    pub high: i64,
    /// The range's end (exclusive).
    pub end: i64,
    /// Where reading starts.
    pub start: PlannedStart,
}

/// Every partition's range, fixed when the source starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub parts: BTreeMap<Tp, PartPlan>,
}

impl Plan {
    /// The plan of `topic`'s `partition` (`None`: a partition that did not
    /// exist when the run started).
    pub fn get(&self, topic: &str, partition: i32) -> Option<&PartPlan> {
        self.parts.get(&(topic.to_owned(), partition))
    }
}

/// Reads the partitions of `topics` and fixes their ranges (see the module
/// docs). Blocking: each lookup may take up to 30 s.
pub(super) fn plan<X, C>(
    consumer: &C,
    topics: &[String],
    bounded: &Bounded,
    source: &str,
) -> Result<Plan, BoundedError>
where
    X: ConsumerContext + 'static,
    C: Consumer<X>,
{
    // (low, high) per partition, and each topic's partition count.
    let mut marks: BTreeMap<Tp, (i64, i64)> = BTreeMap::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
            .map_err(|e| BoundedError::Metadata {
                topic: topic.clone(),
                error: describe_error(&e),
            })?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions: Vec<i32> = match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            other => {
                return Err(BoundedError::NoTopic {
                    topic: topic.clone(),
                    detail: other
                        .and_then(|t| t.error())
                        .map(|e| format!(" (the broker answers {e:?})"))
                        .unwrap_or_default(),
                });
            }
        };
        counts.insert(topic, partitions.len());
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)
                .map_err(|e| BoundedError::Watermarks {
                    topic: topic.clone(),
                    partition,
                    error: describe_error(&e),
                })?;
            marks.insert((topic.clone(), partition), (low, high));
        }
    }
    let ends: BTreeMap<Tp, i64> = match &bounded.end {
        BoundEnd::EndAtStart => marks
            .iter()
            .map(|(tp, &(_, high))| (tp.clone(), high))
            .collect(),
        BoundEnd::Time(ms) => by_time(consumer, &marks, *ms, "end")?,
        BoundEnd::Offsets(table) => from_table("end", table, &marks, &counts)?,
    };
    let starts: BTreeMap<Tp, PlannedStart> = match &bounded.start {
        BoundStart::Committed => marks
            .keys()
            .map(|tp| (tp.clone(), PlannedStart::Committed))
            .collect(),
        BoundStart::Earliest => marks
            .keys()
            .map(|tp| (tp.clone(), PlannedStart::Beginning))
            .collect(),
        BoundStart::Time(ms) => by_time(consumer, &marks, *ms, "start")?
            .into_iter()
            .map(|(tp, o)| (tp, PlannedStart::At(o)))
            .collect(),
        BoundStart::Offsets(table) => from_table("start", table, &marks, &counts)?
            .into_iter()
            .map(|(tp, o)| (tp, PlannedStart::At(o)))
            .collect(),
    };
    let mut plan = Plan::default();
    for (tp, &(low, high)) in &marks {
        let end = ends[tp];
        let start = starts[tp];
        let (topic, partition) = (&tp.0, tp.1);
        if let PlannedStart::At(s) = start {
            if s > high && s < end {
                return Err(BoundedError::StartPastLog {
                    topic: topic.clone(),
                    partition,
                    start: s,
                    high,
                    end,
                });
            }
            if s < low && low < end {
                warn!(
                    source,
                    topic,
                    partition,
                    start = s,
                    first = low,
                    "bounded: the start is older than the oldest record retained; reading starts per `start_from`"
                );
            }
        }
        if end > high {
            warn!(
                source,
                topic,
                partition,
                end,
                high,
                "bounded: the end is past the partition's last offset; the run waits for records up to it"
            );
        }
        plan.parts.insert(
            tp.clone(),
            PartPlan {
                low,
                high,
                end,
                start,
            },
        );
    }
    info!(source, partitions = plan.parts.len(), start = ?bounded.start, end = ?bounded.end, "bounded run planned");
    Ok(plan)
}

/// For each partition, the first offset whose timestamp is at or after
/// `ms`, or the high watermark if none is.
fn by_time<X, C>(
    consumer: &C,
    marks: &BTreeMap<Tp, (i64, i64)>,
    ms: i64,
    key: &'static str,
) -> Result<BTreeMap<Tp, i64>, BoundedError>
where
    X: ConsumerContext + 'static,
    C: Consumer<X>,
{
    let times = |e: rdkafka::error::KafkaError| BoundedError::Times {
        key,
        error: describe_error(&e),
    };
    let mut tpl = TopicPartitionList::with_capacity(marks.len());
    for (topic, partition) in marks.keys() {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(ms))
            .map_err(times)?;
    }
    let found = consumer
        .offsets_for_times(tpl, LOOKUP_TIMEOUT)
        .map_err(times)?;
    let mut out = BTreeMap::new();
    for (tp, &(_, high)) in marks {
        let offset = match found.find_partition(&tp.0, tp.1) {
            Some(e) => {
                e.error().map_err(times)?;
                match e.offset() {
                    Offset::Offset(o) if o >= 0 => o,
                    // No record that recent: the end of the log.
                    _ => high,
                }
            }
            None => high,
        };
        out.insert(tp.clone(), offset);
    }
    Ok(out)
}

/// The table's offset of every partition, which it must list, and only them.
fn from_table(
    key: &'static str,
    table: &PartitionOffsets,
    marks: &BTreeMap<Tp, (i64, i64)>,
    counts: &HashMap<&str, usize>,
) -> Result<BTreeMap<Tp, i64>, BoundedError> {
    let count = |topic: &str| counts.get(topic).copied().unwrap_or(0);
    if let Some(((topic, partition), _)) = table.0.iter().find(|(tp, _)| !marks.contains_key(*tp)) {
        return Err(BoundedError::NoSuchPartition {
            key,
            topic: topic.clone(),
            partition: *partition,
            count: count(topic),
        });
    }
    marks
        .keys()
        .map(|tp| match table.0.get(tp) {
            Some(&offset) => Ok((tp.clone(), offset)),
            None => Err(BoundedError::Unlisted {
                key,
                topic: tp.0.clone(),
                partition: tp.1,
                count: count(&tp.0),
            }),
        })
        .collect()
}

/// A change of assignment, queued by the rebalance callback for the
/// consume loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// Assigned, reading from `start` (`None`: not part of the plan).
    Assigned { tp: Tp, start: Option<i64> },
    /// Revoked.
    Revoked(Tp),
}

/// A statistics report: partitions whose fetch position was at the given
/// offset with nothing left in the consumer's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fetched {
    /// When librdkafka wrote the report, in seconds since the Unix epoch.
    pub time: i64,
    /// `(partition, fetch position)`.
    pub parts: Vec<(Tp, i64)>,
}

/// What the librdkafka callbacks of a bounded source tell its consume loop
/// (they run inside its polls): the plan, assignments, and statistics.
#[derive(Debug, Default)]
pub(super) struct Hooks {
    plan: OnceLock<Plan>,
    /// Bumped whenever `changes` or `fetched` is written, so the consume
    /// loop sees there is news with one atomic load per record.
    version: AtomicU64,
    changes: Mutex<Vec<Change>>,
    fetched: Mutex<Option<Fetched>>,
    /// Wakes the consume loop when there is news.
    wake: Notify,
}

impl Hooks {
    /// Sets the plan; before the consumer subscribes.
    pub fn set_plan(&self, plan: Plan) {
        let _ = self.plan.set(plan);
    }

    /// The plan (`None` before it was set).
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.get()
    }

    /// Queues assignment changes.
    pub fn push(&self, changes: impl IntoIterator<Item = Change>) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(changes);
        self.bump();
    }

    /// Keeps the latest statistics report.
    pub fn set_fetched(&self, fetched: Fetched) {
        *self.fetched.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched);
        self.bump();
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
        self.wake.notify_one();
    }

    /// Changes since the last [`take`](Self::take) (a number to compare).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Takes the queued changes and the latest statistics report.
    pub fn take(&self) -> (Vec<Change>, Option<Fetched>) {
        let changes = std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()));
        let fetched = self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        (changes, fetched)
    }

    /// Resolves when there may be news.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// What to do with a record; see [`Progress::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Hand it on.
    Take,
    /// Hand it on; it was the last of its range: pause the partition.
    Last,
    /// At or past the end: not handed on; pause the partition.
    Past,
    /// Its partition is done, or not part of the run: not handed on.
    Drop,
}

#[derive(Debug, Clone)]
struct Part {
    end: i64,
    /// Where reading started, when first assigned.
    start: Option<i64>,
    assigned: bool,
    done: bool,
    events: u64,
    /// The offset after the last record handed on.
    next: Option<i64>,
    /// Unix second of the last time the partition was positioned (assigned
    /// or rewound): statistics written before it are stale.
    positioned_at: i64,
    /// The highest offset a sink rewound the partition to: its committed
    /// output reaches there, whatever the tracker knows.
    rewound_to: Option<i64>,
}

/// Assigned partitions not done yet, and the gauge showing them.
struct Reading {
    count: usize,
    /// `source.<n>.bounded_partitions_left`.
    left: Gauge,
}

impl Reading {
    fn more(&mut self) {
        self.count += 1;
        self.left.store(self.count as i64, Ordering::Relaxed);
    }

    fn less(&mut self) {
        self.count = self.count.saturating_sub(1);
        self.left.store(self.count as i64, Ordering::Relaxed);
    }
}

impl Part {
    /// Marks it done; one partition less to read if it is assigned.
    fn finish(&mut self, reading: &mut Reading) {
        self.done = true;
        if self.assigned {
            reading.less();
        }
    }
}

/// Per partition of a bounded source: its end, whether it is done, and
/// what was read; owned by the consume loop.
pub(super) struct Progress {
    /// Per topic, per partition number (partitions are numbered from 0).
    topics: HashMap<String, Vec<Part>, foldhash::fast::RandomState>,
    reading: Reading,
    assigned_ever: bool,
    /// The [`Hooks::version`] last applied.
    pub seen: u64,
}

impl Progress {
    /// A progress of `plan` with nothing assigned yet; `left` shows how
    /// many assigned partitions are not done.
    pub fn new(plan: &Plan, left: Gauge) -> Self {
        let part = |end, done| Part {
            end,
            start: None,
            assigned: false,
            done,
            events: 0,
            next: None,
            positioned_at: 0,
            rewound_to: None,
        };
        let mut topics: HashMap<String, Vec<Part>, foldhash::fast::RandomState> =
            HashMap::default();
        for ((topic, partition), p) in &plan.parts {
            let parts = topics.entry(topic.clone()).or_default();
            let index = usize::try_from(*partition).unwrap_or(0);
            if parts.len() <= index {
                // A hole (never, in Kafka): an empty range.
                parts.resize(index + 1, part(0, true));
            }
            parts[index] = part(p.end, false);
        }
        left.store(0, Ordering::Relaxed);
        Self {
            topics,
            reading: Reading { count: 0, left },
            assigned_ever: false,
            seen: 0,
        }
    }

    /// `topic`'s `partition` and the count of partitions being read, with
    /// no allocation.
    fn slot(&mut self, topic: &str, partition: i32) -> Option<(&mut Part, &mut Reading)> {
        let part = self
            .topics
            .get_mut(topic)?
            .get_mut(usize::try_from(partition).ok()?)?;
        Some((part, &mut self.reading))
    }

    /// Decides what happens to the record at `offset` (the hot path: no
    /// allocation).
    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> Admit {
        let Some((part, reading)) = self.slot(topic, partition) else {
            return Admit::Drop;
        };
        if part.done {
            return Admit::Drop;
        }
        if offset >= part.end {
            part.finish(reading);
            return Admit::Past;
        }
        part.events += 1;
        part.next = Some(offset + 1);
        if offset + 1 >= part.end {
            part.finish(reading);
            return Admit::Last;
        }
        Admit::Take
    }

    /// `tp` was assigned, reading from `start`, at Unix second `now`;
    /// `true` if it is to be paused (done already, an empty range, or not
    /// part of the run).
    pub fn assigned(&mut self, tp: &Tp, start: Option<i64>, now: i64) -> bool {
        let Some((part, reading)) = self.slot(&tp.0, tp.1) else {
            return true;
        };
        part.positioned_at = now;
        if part.start.is_none() {
            part.start = start;
        }
        if !part.assigned {
            part.assigned = true;
            if !part.done {
                reading.more();
            }
        }
        let pause = if part.done {
            true
        } else if start.is_some_and(|s| s >= part.end) {
            part.finish(reading);
            true
        } else {
            false
        };
        self.assigned_ever = true;
        pause
    }

    /// `tp` was revoked.
    pub fn revoked(&mut self, tp: &Tp) {
        if let Some((part, reading)) = self.slot(&tp.0, tp.1)
            && part.assigned
        {
            part.assigned = false;
            if !part.done {
                reading.less();
            }
        }
    }

    /// `topic`'s `partition` was rewound to `offset` (a sink's request) at
    /// Unix second `now`; `true` if it was done and must read again (resume it).
    pub fn rewound(&mut self, topic: &str, partition: i32, offset: i64, now: i64) -> bool {
        let Some((part, reading)) = self.slot(topic, partition) else {
            return false;
        };
        part.positioned_at = now;
        part.rewound_to = part.rewound_to.max(Some(offset));
        if !part.done || offset >= part.end {
            return false;
        }
        part.done = false;
        if part.assigned {
            reading.more();
        }
        true
    }

    /// Applies a statistics report: an assigned partition whose fetch
    /// position is at or past its end, with nothing left in the queue, in a
    /// report written after it was last positioned, has had every record
    /// below its end handed to the source. Returns those newly done.
    pub fn fetched(&mut self, report: &Fetched) -> Vec<Tp> {
        let mut done = Vec::new();
        for (tp, position) in &report.parts {
            if let Some((part, reading)) = self.slot(&tp.0, tp.1)
                && part.assigned
                && !part.done
                && report.time > part.positioned_at
                && *position >= part.end
            {
                part.finish(reading);
                done.push(tp.clone());
            }
        }
        done
    }

    /// Whether every assigned partition is done, and at least one was
    /// assigned.
    pub fn finished(&self) -> bool {
        self.assigned_ever && self.reading.count == 0
    }

    /// Assigned partitions that are not delivered up to what was read of
    /// them, per `delivered` (the tracker's committable offset) or a sink's
    /// rewind (its committed output reaches the offset it asked for):
    /// `(tp, delivered up to, read up to)`.
    pub fn undelivered(
        &mut self,
        mut delivered: impl FnMut(&str, i32) -> Option<i64>,
    ) -> Vec<(Tp, Option<i64>, i64)> {
        let mut out = Vec::new();
        for (topic, parts) in &self.topics {
            for (partition, part) in parts.iter().enumerate() {
                let Some(next) = part.next.filter(|_| part.assigned) else {
                    continue;
                };
                let partition = partition as i32;
                let up_to = delivered(topic, partition).max(part.rewound_to);
                if up_to.is_none_or(|d| d < next) {
                    out.push(((topic.clone(), partition), up_to, next));
                }
            }
        }
        out.sort();
        out
    }

    /// The range read of every partition that was assigned, for the run's
    /// summary.
    pub fn ranges(&self, source: &str) -> Vec<PartitionRange> {
        let mut out: Vec<PartitionRange> = self
            .topics
            .iter()
            .flat_map(|(topic, parts)| {
                parts.iter().enumerate().filter_map(move |(partition, p)| {
                    let start = p.start?;
                    Some(PartitionRange {
                        source: source.to_owned(),
                        topic: topic.clone(),
                        partition: partition as i32,
                        start,
                        end: p.end,
                        next: p.next.unwrap_or(start),
                        events: p.events,
                        complete: p.done,
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }
}

/// Seconds since the Unix epoch, as librdkafka's statistics write `time`.
pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    fn plan(ends: &[i64]) -> Plan {
        Plan {
            parts: ends
                .iter()
                .enumerate()
                .map(|(p, &end)| {
                    (
                        tp(p as i32),
                        PartPlan {
                            low: 0,
                            high: end,
                            end,
                            start: PlannedStart::Beginning,
                        },
                    )
                })
                .collect(),
        }
    }

    fn progress(ends: &[i64]) -> Progress {
        Progress::new(&plan(ends), Gauge::default())
    }

    #[test]
    fn a_partition_is_done_at_its_last_record_or_past_its_end() {
        let mut p = progress(&[3, 10]);
        assert!(!p.finished(), "nothing assigned yet");
        assert!(!p.assigned(&tp(0), Some(0), 100));
        assert!(!p.assigned(&tp(1), Some(5), 100));
        assert_eq!(p.reading.left.load(Ordering::Relaxed), 2);
        assert_eq!(p.admit("t", 0, 0), Admit::Take);
        assert_eq!(p.admit("t", 0, 1), Admit::Take);
        assert_eq!(p.admit("t", 0, 2), Admit::Last);
        assert_eq!(p.admit("t", 0, 3), Admit::Drop, "done: dropped");
        assert_eq!(p.admit("t", 1, 5), Admit::Take);
        assert!(!p.finished());
        // Offsets 6..9 compacted away: the next record is past the end.
        assert_eq!(p.admit("t", 1, 12), Admit::Past);
        assert!(p.finished());
        assert_eq!(p.reading.left.load(Ordering::Relaxed), 0);
        assert_eq!(p.admit("u", 0, 0), Admit::Drop, "not part of the run");
        let ranges = p.ranges("s");
        assert_eq!(
            ranges
                .iter()
                .map(|r| (r.partition, r.start, r.next, r.end, r.events, r.complete))
                .collect::<Vec<_>>(),
            vec![(0, 0, 3, 3, 3, true), (1, 5, 6, 10, 1, true)]
        );
    }

    #[test]
    fn a_start_at_or_past_the_end_is_done_at_once() {
        let mut p = progress(&[5, 5, 5]);
        assert!(p.assigned(&tp(0), Some(5), 100), "pause it");
        assert!(p.assigned(&tp(1), Some(7), 100));
        assert!(p.finished(), "every partition assigned is done");
        assert!(!p.assigned(&tp(2), Some(2), 100));
        assert!(!p.finished(), "partition 2 has a range to read");
        assert_eq!(p.admit("t", 2, 4), Admit::Last);
        assert!(p.finished());
        assert!(p.assigned(&tp(9), Some(0), 100), "unplanned: paused");
    }

    #[test]
    fn revoked_partitions_do_not_hold_the_end_and_done_ones_stay_done() {
        let mut p = progress(&[5, 5]);
        p.assigned(&tp(0), Some(0), 100);
        p.assigned(&tp(1), Some(0), 100);
        p.revoked(&tp(1));
        assert_eq!(p.admit("t", 0, 4), Admit::Last);
        assert!(p.finished());
        // Assigned again after being done: paused, not read again.
        p.revoked(&tp(0));
        assert!(p.assigned(&tp(0), Some(0), 101));
        assert!(p.finished());
    }

    #[test]
    fn statistics_end_a_partition_whose_last_records_are_never_seen() {
        let mut p = progress(&[10, 10]);
        p.assigned(&tp(0), Some(0), 100);
        p.assigned(&tp(1), Some(0), 100);
        assert_eq!(p.admit("t", 0, 7), Admit::Take);
        // Offsets 8 and 9 are transaction markers.
        let stale = Fetched {
            time: 100,
            parts: vec![(tp(0), 10)],
        };
        assert!(
            p.fetched(&stale).is_empty(),
            "written before the assignment"
        );
        let report = Fetched {
            time: 101,
            parts: vec![(tp(0), 10), (tp(1), 4)],
        };
        assert_eq!(p.fetched(&report), vec![tp(0)]);
        assert!(!p.finished());
    }

    #[test]
    fn a_rewind_reopens_a_done_partition() {
        let mut p = progress(&[3]);
        p.assigned(&tp(0), Some(0), 100);
        assert_eq!(p.admit("t", 0, 2), Admit::Last);
        assert!(p.finished());
        assert!(p.rewound("t", 0, 1, 101));
        assert!(!p.finished());
        assert_eq!(p.admit("t", 0, 1), Admit::Take);
        assert_eq!(p.admit("t", 0, 2), Admit::Last);
        assert!(p.finished());
        assert!(!p.rewound("t", 0, 3, 102), "rewound to its end: still done");
    }

    #[test]
    fn undelivered_lists_partitions_delivered_short_of_what_was_read() {
        let mut p = progress(&[3, 3, 3]);
        for i in 0..3 {
            p.assigned(&tp(i), Some(0), 100);
        }
        p.admit("t", 0, 2);
        p.admit("t", 1, 0);
        p.admit("t", 1, 1);
        let delivered = |_: &str, partition: i32| match partition {
            0 => Some(3),
            1 => Some(1),
            _ => None,
        };
        assert_eq!(p.undelivered(delivered), vec![(tp(1), Some(1), 2)]);
        // A sink's committed output reaches past what was read (it lost a
        // race to another writer, and asked to read on from its end).
        p.rewound("t", 1, 3, 101);
        assert!(p.undelivered(delivered).is_empty());
    }
}
