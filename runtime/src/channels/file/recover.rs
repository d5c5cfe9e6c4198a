//! Opening a file channel's directory after a stop or a crash: find the
//! checkpoint, drop the segments it says are delivered, check every record
//! after it, and quarantine what is damaged.
//!
//! A damaged record — cut short by a crash while it was being appended, or
//! with a wrong checksum or framing — costs its own bytes only: reading
//! resynchronises at the next good record ([`wal::resync`]). The damaged
//! bytes are copied to `<dir>/quarantine/<segment>.<offset>.corrupt`
//! (fsynced); a damaged range with good records after it is then cut out of
//! the segment (rewritten without it, fsynced and renamed over it), and a
//! damaged tail is truncated to the last good record. The damage is logged
//! with the segment file and byte offset and counted (`corrupt_records`,
//! `corrupt_bytes`). Nothing panics on bad bytes, and nothing is deleted
//! without a copy. An I/O error while recovering fails the opening of the
//! channel with the file named; it is never taken for damage.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::checkpoint::{self, Position};
use super::error::{WalError, context};
use super::wal::{self, HEADER_LEN};

/// What the directory holds after recovery.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Where reading starts: the checkpoint, or the first record.
    pub start: Position,
    /// The checkpoint as stored (or `start` if there was none).
    pub checkpoint: Position,
    /// Segment ids and their lengths after truncation.
    pub segments: BTreeMap<u64, u64>,
    /// Records and events after `start`: they are replayed.
    pub replay_records: u64,
    /// Events in those records.
    pub replay_events: u64,
    /// Damaged places found (one per segment at most).
    pub corrupt_records: u64,
    /// Bytes moved to quarantine.
    pub corrupt_bytes: u64,
}

/// Recovers `dir` (creating it if needed); see the module docs.
pub(super) fn recover(dir: &Path, channel: &str) -> Result<Recovered, WalError> {
    std::fs::create_dir_all(dir).map_err(context("creating", dir))?;
    let stored = match checkpoint::load(dir) {
        Ok(c) => c,
        Err(why) => {
            warn!(
                channel,
                "checkpoint ignored: {why}; replaying everything the log holds"
            );
            None
        }
    };
    let ids = wal::list_segments(dir).map_err(context("listing", dir))?;
    let mut out = Recovered::default();
    let mut start = stored;
    for id in ids {
        let path = wal::segment_path(dir, id);
        if stored.is_some_and(|c| id < c.segment) {
            // Delivered entirely; a crash came between the checkpoint and
            // the deletion.
            std::fs::remove_file(&path).map_err(context("removing", &path))?;
            continue;
        }
        let from = match start {
            Some(s) if s.segment == id => s.offset.max(HEADER_LEN),
            _ => HEADER_LEN,
        };
        let len = check_segment(dir, &path, id, from, channel, &mut out)?;
        out.segments.insert(id, len);
        // The checkpoint may point past what a machine crash left of an
        // unsynced segment: everything there was delivered.
        match &mut start {
            Some(s) if s.segment == id => s.offset = s.offset.clamp(HEADER_LEN, len),
            Some(s) if s.segment < id && !out.segments.contains_key(&s.segment) => {
                // The checkpoint's segment is gone: start here.
                *s = Position {
                    segment: id,
                    offset: HEADER_LEN,
                };
            }
            Some(_) => {}
            None => {
                start = Some(Position {
                    segment: id,
                    offset: HEADER_LEN,
                })
            }
        }
    }
    out.start = start.unwrap_or(Position {
        segment: 0,
        offset: HEADER_LEN,
    });
    out.checkpoint = out.start;
    if out.replay_records > 0 {
        info!(channel, records = out.replay_records, events = out.replay_events, from = %out.start,
            "file channel replays what was not delivered before the last stop");
    }
    Ok(out)
}

/// Checks segment `id` from `from` on, quarantining a damaged tail; returns
/// its length afterwards.
fn check_segment(
    dir: &Path,
    path: &Path,
    id: u64,
    from: u64,
    channel: &str,
    out: &mut Recovered,
) -> Result<u64, WalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(context("opening", path))?;
    if !wal::has_header(&file).map_err(context("reading", path))? {
        // Created but never written whole, or overwritten: keep the bytes
        // aside and start the segment over.
        let len = file.metadata().map_err(context("reading", path))?.len();
        if len > 0 {
            quarantine(dir, path, &file, id, 0, len, "bad segment header", channel)?;
            out.corrupt_records += 1;
            out.corrupt_bytes += len;
        }
        file.set_len(0).map_err(context("truncating", path))?;
        file.write_all_at(wal::MAGIC, 0)
            .map_err(context("writing", path))?;
        file.sync_all().map_err(context("syncing", path))?;
        return Ok(HEADER_LEN);
    }
    let scan = wal::scan(&file, from).map_err(context("reading", path))?;
    out.replay_records += scan.records;
    out.replay_events += scan.events;
    for (start, end, why) in &scan.holes {
        quarantine(dir, path, &file, id, *start, *end, why, channel)?;
        out.corrupt_records += 1;
        out.corrupt_bytes += end - start;
    }
    if !scan.holes.is_empty() {
        cut_holes(dir, path, &file, &scan.holes, scan.good_end)?;
    }
    let good_end = scan.good_end - scan.holes.iter().map(|(s, e, _)| e - s).sum::<u64>();
    if let Some(why) = &scan.bad {
        let bad = scan.len - scan.good_end;
        quarantine(dir, path, &file, id, scan.good_end, scan.len, why, channel)?;
        if scan.holes.is_empty() {
            file.set_len(scan.good_end)
                .map_err(context("truncating", path))?;
            file.sync_all().map_err(context("syncing", path))?;
        }
        out.corrupt_records += 1;
        out.corrupt_bytes += bad;
    }
    Ok(good_end)
}

/// Rewrites segment `path` without the damaged `holes` (already
/// quarantined) and without anything after `good_end`: a temporary copy,
/// fsynced, renamed over the segment, directory fsynced.
fn cut_holes(
    dir: &Path,
    path: &Path,
    file: &File,
    holes: &[(u64, u64, String)],
    good_end: u64,
) -> Result<(), WalError> {
    let mut kept = Vec::with_capacity(good_end as usize);
    let mut at = 0u64;
    for &(start, end, _) in
        holes
            .iter()
            .chain(std::iter::once(&(good_end, good_end, String::new())))
    {
        let mut piece = vec![0u8; (start - at) as usize];
        file.read_exact_at(&mut piece, at)
            .map_err(context("reading", path))?;
        kept.extend_from_slice(&piece);
        at = end;
    }
    let tmp = path.with_extension("wal.compact");
    let mut out = File::create(&tmp).map_err(context("creating", &tmp))?;
    out.write_all(&kept).map_err(context("writing", &tmp))?;
    out.sync_all().map_err(context("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(context("renaming", &tmp))?;
    checkpoint::sync_dir(dir).map_err(context("syncing", dir))
}

/// The quarantine file of the bytes of segment `id` from `offset` on.
pub(super) fn quarantine_path(dir: &Path, id: u64, offset: u64) -> PathBuf {
    dir.join("quarantine")
        .join(format!("{id:020}.{offset}.corrupt"))
}

/// Copies bytes `from..to` of segment `id` into the quarantine (fsynced)
/// and logs where they came from.
#[allow(clippy::too_many_arguments)]
pub(super) fn quarantine(
    dir: &Path,
    path: &Path,
    file: &File,
    id: u64,
    from: u64,
    to: u64,
    why: &str,
    channel: &str,
) -> Result<(), WalError> {
    let qdir = dir.join("quarantine");
    std::fs::create_dir_all(&qdir).map_err(context("creating", &qdir))?;
    let target = quarantine_path(dir, id, from);
    let mut bytes = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut bytes, from)
        .map_err(context("reading", path))?;
    let mut q = File::create(&target).map_err(context("creating", &target))?;
    q.write_all(&bytes).map_err(context("writing", &target))?;
    q.sync_all().map_err(context("syncing", &target))?;
    checkpoint::sync_dir(&qdir).map_err(context("syncing", &qdir))?;
    error!(
        channel,
        file = %path.display(),
        offset = from,
        bytes = to - from,
        quarantine = %target.display(),
        "damaged write-ahead log record: {why}; the bytes from here to the end of the segment were moved to the quarantine file"
    );
    Ok(())
}
