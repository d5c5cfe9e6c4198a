//! What a file channel already holds of *positional* sources: per topic and
//! partition, the highest offset durably appended from batches marked
//! positional ([`Ack::mark_positional`](crate::event::Ack::mark_positional)).
//!
//! A source that reads files (`taildir`, `spooldir`) numbers events by where
//! they are in their file, and commits its position file only after the
//! channel acknowledged a batch. A crash between the two makes it read the
//! last batches again; the channel recognises them by offset and drops them
//! (`duplicates_dropped`), so nothing is appended twice. This is what makes
//! those sources exact through a `kill -9`.
//!
//! The marks must survive a crash as surely as the records they describe:
//!
//! - A partition seen for the first time is recorded in `<dir>/highwater`
//!   (atomically replaced, synced) *before* any of its events is appended.
//! - The offsets themselves are persisted with every checkpoint, before
//!   it: records behind a checkpoint may be deleted, their marks stay.
//! - On open, the marks of the partitions listed are raised from the
//!   records after the checkpoint (the log is their own record).
//!
//! Only listed partitions count, and only positional batches are filtered:
//! a Kafka source is never affected. Marks advance when a batch is durable
//! (with `fsync = "interval"`, at the group commit), so a mark never covers
//! an event a crash could lose.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::Position;
use super::error::{WalError, context};
use super::wal::{self, HEADER_LEN};
use crate::event::BatchBuf;

/// A topic and partition.
pub(super) type Key = (String, i32);

/// Highest durable offset of each listed partition (`-1`: none yet).
pub(super) type HighWater = HashMap<Key, i64>;

const FILE: &str = "highwater";

#[derive(Serialize, Deserialize)]
struct Mark {
    topic: String,
    partition: i32,
    offset: i64,
}

/// The marks stored in `dir` (none if there is no file).
pub(super) fn load(dir: &Path) -> Result<HighWater, WalError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HighWater::new()),
        Err(e) => return Err(WalError::io("reading", &path, e)),
    };
    let marks: Vec<Mark> = serde_json::from_slice(&bytes).map_err(|e| {
        WalError::Damaged(format!(
            "{} is damaged ({e}); move it away to open the channel (sources reading files may then repeat their last batches)",
            path.display()
        ))
    })?;
    Ok(marks
        .into_iter()
        .map(|m| ((m.topic, m.partition), m.offset))
        .collect())
}

/// Replaces the marks stored in `dir`, atomically and durably.
pub(super) fn store(dir: &Path, high: &HighWater) -> io::Result<()> {
    let sorted: BTreeMap<&Key, i64> = high.iter().map(|(k, v)| (k, *v)).collect();
    let marks: Vec<Mark> = sorted
        .into_iter()
        .map(|((topic, partition), offset)| Mark {
            topic: topic.clone(),
            partition: *partition,
            offset,
        })
        .collect();
    let bytes = serde_json::to_vec(&marks).map_err(io::Error::other)?;
    crate::durable::replace(&dir.join(FILE), &bytes)
}

/// Raises the listed marks from the records of `segments` from `start` on.
pub(super) fn scan(
    dir: &Path,
    segments: &BTreeMap<u64, u64>,
    start: Position,
    high: &mut HighWater,
) -> Result<(), WalError> {
    if high.is_empty() {
        return Ok(());
    }
    for (&id, &len) in segments.range(start.segment..) {
        let path = wal::segment_path(dir, id);
        let file = File::open(&path).map_err(context("opening", &path))?;
        let mut at = if id == start.segment {
            start.offset.max(HEADER_LEN)
        } else {
            HEADER_LEN
        };
        // Recovery already cut damage out: anything but a record ends the segment.
        while let wal::Read::Record { batch, next } =
            wal::read_record(&file, at, len).map_err(context("reading", &path))?
        {
            raise(high, &batch, false);
            at = next;
        }
    }
    Ok(())
}

/// Each partition of `batch` with its highest offset, in order of first
/// appearance. One key is built per run of events of one partition (a
/// file source's batch holds a few such runs), not per event.
fn maxima(batch: &BatchBuf) -> Vec<(Key, i64)> {
    let mut out: Vec<(Key, i64)> = Vec::new();
    let mut last: Option<usize> = None;
    for e in batch.iter() {
        let same = |(k, _): &(Key, i64)| k.1 == e.partition() && k.0.as_bytes() == e.topic_bytes();
        let at = match last.filter(|&i| same(&out[i])) {
            Some(i) => i,
            None => match out.iter().position(same) {
                Some(i) => i,
                None => {
                    let topic = String::from_utf8_lossy(e.topic_bytes()).into_owned();
                    out.push(((topic, e.partition()), e.offset()));
                    out.len() - 1
                }
            },
        };
        out[at].1 = out[at].1.max(e.offset());
        last = Some(at);
    }
    out
}

/// Raises the marks with the offsets of `batch`; with `add`, partitions not
/// yet listed are listed too.
pub(super) fn raise(high: &mut HighWater, batch: &BatchBuf, add: bool) {
    for (key, offset) in maxima(batch) {
        match high.get_mut(&key) {
            Some(mark) => *mark = (*mark).max(offset),
            None if add => {
                high.insert(key, offset);
            }
            None => {}
        }
    }
}

/// Partitions of `batch` that `high` does not list yet.
pub(super) fn unlisted(high: &HighWater, batch: &BatchBuf) -> Vec<Key> {
    maxima(batch)
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !high.contains_key(key))
        .collect()
}

/// `batch` without the events at or below their partition's mark, and how
/// many were left out; `None` if none was (the common case: one pass, no
/// copy).
pub(super) fn without_held(high: &HighWater, batch: &BatchBuf) -> Option<(BatchBuf, usize)> {
    let marks: Vec<(Key, Option<i64>)> = maxima(batch)
        .into_iter()
        .map(|(key, _)| {
            let mark = high.get(&key).copied();
            (key, mark)
        })
        .collect();
    let held = |e: &crate::event::EventRef<'_>| {
        marks
            .iter()
            .find(|(k, _)| k.1 == e.partition() && k.0.as_bytes() == e.topic_bytes())
            .and_then(|(_, mark)| *mark)
            .is_some_and(|mark| e.offset() <= mark)
    };
    let dropped = batch.iter().filter(|e| held(e)).count();
    if dropped == 0 {
        return None;
    }
    let mut kept = BatchBuf::default();
    for e in batch.iter().filter(|e| !held(e)) {
        kept.push_ref(&e, None);
    }
    Some((kept, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;

    fn batch(events: &[(&str, i32, i64)]) -> BatchBuf {
        let mut b = BatchBuf::default();
        for (topic, partition, offset) in events {
            b.push(&NewEvent {
                key: None,
                body: offset.to_string().as_bytes(),
                headers: &[],
                topic,
                partition: *partition,
                offset: *offset,
                timestamp: 0,
            });
        }
        b
    }

    #[test]
    fn drops_only_what_listed_partitions_hold() {
        let mut high = HighWater::new();
        let first = batch(&[("t", 0, 5), ("t", 1, 9)]);
        assert_eq!(unlisted(&high, &first).len(), 2);
        raise(&mut high, &first, true);
        assert!(unlisted(&high, &first).is_empty());
        let again = batch(&[
            ("t", 0, 4),
            ("t", 0, 5),
            ("t", 0, 6),
            ("t", 1, 9),
            ("u", 0, 1),
        ]);
        let (kept, dropped) = without_held(&high, &again).unwrap();
        assert_eq!(dropped, 3);
        let offsets: Vec<(i32, i64)> = kept.iter().map(|e| (e.partition(), e.offset())).collect();
        assert_eq!(offsets, [(0, 6), (0, 1)]);
        assert!(without_held(&high, &batch(&[("t", 0, 7)])).is_none());
    }

    #[test]
    fn stores_and_loads_marks() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let mut high = HighWater::new();
        high.insert(("a".into(), 3), 42);
        high.insert(("b".into(), 0), -1);
        store(dir.path(), &high).unwrap();
        assert_eq!(load(dir.path()).unwrap(), high);
        std::fs::write(dir.path().join(FILE), b"[").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
