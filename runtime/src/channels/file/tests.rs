//! The file channel end to end: sending, receiving, checkpoints, segment
//! deletion, backpressure, crash replay and damaged logs.

use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::event::{Ack, AckReport, Batch, BatchBuf, NewEvent};
use crate::units::ByteSize;

const WAIT: Duration = Duration::from_secs(20);

fn events(first: i64, n: usize) -> BatchBuf {
    let mut b = BatchBuf::default();
    for i in 0..n {
        let offset = first + i as i64;
        let body = format!("line {offset:06} {}", "x".repeat(40));
        b.push(&NewEvent {
            key: Some(b"key"),
            body: body.as_bytes(),
            headers: &[("origin", b"test")],
            topic: "t",
            partition: 1,
            offset,
            timestamp: 1_700_000_000_000 + offset,
        });
    }
    b
}

fn config(segment: u64, max: u64) -> FileChannelConfig {
    FileChannelConfig {
        dir: None,
        segment_size: ByteSize(segment),
        max_bytes: ByteSize(max),
        fsync: FsyncPolicy::EveryBatch,
        fsync_interval: None,
    }
}

fn open_at(dir: &Path, config: &FileChannelConfig) -> (Opened, Arc<Metrics>) {
    let metrics = Metrics::new();
    (open("wal", config, dir, &metrics).unwrap(), metrics)
}

/// A batch whose ack reports to `to` as `id`.
fn acked(first: i64, n: usize, id: u64, to: &mpsc::UnboundedSender<AckReport>) -> Batch {
    Batch::new(events(first, n), Ack::new(id, to.clone()))
}

fn offsets(batch: &Batch) -> Vec<i64> {
    batch.events.iter().map(|e| e.offset()).collect()
}

/// A copy of the channel directory as it is now: what a crash would leave.
fn snapshot(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    copy
}

/// Drains a reopened channel: every offset it replays, delivering all.
async fn replay_all(dir: &Path) -> (Vec<i64>, Arc<Metrics>) {
    let (opened, metrics) = open_at(dir, &config(1 << 20, 1 << 30));
    drop(opened.sender);
    let mut rx = opened.receiver;
    let mut seen = Vec::new();
    while let Some(b) = timeout(WAIT, rx.recv()).await.unwrap() {
        seen.extend(offsets(&b));
        b.release();
    }
    drop(rx);
    opened.checkpointer.await.unwrap();
    (seen, metrics)
}

#[tokio::test]
async fn batches_pass_intact_and_incoming_acks_are_released_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(1 << 20, 1 << 30));
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let sent = events(0, 5);
    opened
        .sender
        .send(Batch::new(sent.clone(), Ack::new(7, ack_tx.clone())))
        .await
        .unwrap();
    // Durable: the source hears "delivered" before the sink even read it.
    let report = timeout(WAIT, ack_rx.recv()).await.unwrap().unwrap();
    assert_eq!((report.id, report.delivered), (7, true));
    assert_eq!(opened.sender.held_events(), 5);
    let mut rx = opened.receiver;
    let got = rx.recv().await.unwrap();
    assert_eq!(got.events, sent, "keys, bodies, headers, origin kept");
    assert_eq!(opened.sender.held_events(), 0);
    assert_eq!(metrics.get("channel.wal.events_in"), 5);
    assert_eq!(metrics.get("channel.wal.events_out"), 5);
    assert!(metrics.get("channel.wal.fsyncs") >= 1);
    drop(opened.sender);
    got.release();
    assert!(
        rx.recv().await.is_none(),
        "ends once senders are gone and drained"
    );
    drop(rx);
    opened.checkpointer.await.unwrap();
    // Delivered and checkpointed: nothing replays.
    let (replayed, m) = replay_all(dir.path()).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(m.get("channel.wal.replayed_events"), 0);
}

#[tokio::test]
async fn a_crash_replays_everything_after_the_checkpoint_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, _m) = open_at(dir.path(), &config(64 << 10, 1 << 30));
    let (ack_tx, _ack_rx) = mpsc::unbounded_channel();
    for i in 0..200 {
        opened
            .sender
            .send(acked(i * 10, 10, i as u64, &ack_tx))
            .await
            .unwrap();
    }
    let mut rx = opened.receiver;
    // The sink delivers the first 120 batches, holds 3 more in flight.
    for _ in 0..120 {
        rx.recv().await.unwrap().release();
    }
    let held: Vec<Batch> = vec![
        rx.recv().await.unwrap(),
        rx.recv().await.unwrap(),
        rx.recv().await.unwrap(),
    ];
    assert_eq!(offsets(&held[0])[0], 1200);
    // Wait until the 120 reports are applied and the checkpoint persisted
    // before the first batch still in flight.
    timeout(WAIT, async {
        loop {
            let first_held = {
                let st = opened.sender.handle_state();
                (st.by_ack.len() == 3).then(|| *st.by_ack.values().min().unwrap())
            };
            let deleted = first_held.is_some_and(|at| {
                wal::list_segments(dir.path()).unwrap().first() == Some(&at.segment)
            });
            if deleted && checkpoint::load(dir.path()).unwrap() == first_held {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("checkpoint reaches the first undelivered batch");
    // The checkpoint lies inside a segment that has others after it.
    let at = checkpoint::load(dir.path()).unwrap().unwrap();
    let segments = wal::list_segments(dir.path()).unwrap();
    assert_eq!(segments.first(), Some(&at.segment));
    assert!(
        segments.len() >= 2 && at.offset > wal::HEADER_LEN,
        "{at} {segments:?}"
    );
    let crashed = snapshot(dir.path());
    let (replayed, metrics) = replay_all(crashed.path()).await;
    assert_eq!(replayed, (1200..2000).collect::<Vec<_>>());
    assert_eq!(metrics.get("channel.wal.replayed_events"), 800);
    drop(held);
}

#[tokio::test]
async fn delivered_segments_are_deleted_and_the_checkpoint_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(64 << 10, 1 << 30));
    for i in 0..200 {
        opened
            .sender
            .send(Batch::unacked(events(i * 20, 20)))
            .await
            .unwrap();
    }
    let segments = wal::list_segments(dir.path()).unwrap().len();
    assert!(segments > 5, "expected several segments, got {segments}");
    let mut rx = opened.receiver;
    for _ in 0..200 {
        rx.recv().await.unwrap().release();
    }
    timeout(WAIT, async {
        while wal::list_segments(dir.path()).unwrap().len() > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("delivered segments are deleted");
    assert!(metrics.gauge_value("channel.wal.bytes_on_disk") < 64 << 10);
    drop(opened.sender);
    drop(rx);
    opened.checkpointer.await.unwrap();
    let (replayed, _) = replay_all(dir.path()).await;
    assert!(replayed.is_empty());
}

#[tokio::test]
async fn a_full_log_makes_senders_wait_until_the_sink_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let one = {
        let mut r = Vec::new();
        wal::encode(&events(0, 10), &mut r).unwrap();
        r.len() as u64
    };
    // Room for three batches (plus the segment header).
    let (opened, _m) = open_at(dir.path(), &config(1 << 20, 3 * one + wal::HEADER_LEN));
    for i in 0..3 {
        opened
            .sender
            .send(Batch::unacked(events(i * 10, 10)))
            .await
            .unwrap();
    }
    let blocked = tokio::spawn({
        let tx = opened.sender.clone();
        async move { tx.send(Batch::unacked(events(30, 10))).await.is_ok() }
    });
    let mut rx = opened.receiver;
    // Reading alone frees nothing: only delivery does.
    let first = rx.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!blocked.is_finished(), "send went through a full log");
    first.release();
    assert!(timeout(WAIT, blocked).await.unwrap().unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(offsets(&rx.recv().await.unwrap()));
    }
    assert_eq!(seen, (10..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_undelivered_batch_holds_the_checkpoint_and_is_read_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(1 << 20, 1 << 30));
    for i in 0..4 {
        opened
            .sender
            .send(Batch::unacked(events(i * 10, 10)))
            .await
            .unwrap();
    }
    let mut rx = opened.receiver;
    rx.recv().await.unwrap().release();
    let failed = rx.recv().await.unwrap();
    failed.ack.fail();
    drop(failed);
    rx.recv().await.unwrap().release();
    rx.recv().await.unwrap().release();
    drop(opened.sender);
    assert!(rx.recv().await.is_none());
    drop(rx);
    opened.checkpointer.await.unwrap();
    assert_eq!(metrics.get("channel.wal.undelivered_batches"), 1);
    let (replayed, _) = replay_all(dir.path()).await;
    assert_eq!(replayed, (10..40).collect::<Vec<_>>());
}

/// Writes 3 batches (offsets 0..30) into a fresh log and closes it cleanly
/// without delivering; returns the segment path and record ends.
async fn three_records(dir: &Path) -> (std::path::PathBuf, Vec<u64>) {
    let (opened, _m) = open_at(dir, &config(1 << 20, 1 << 30));
    let mut ends = Vec::new();
    for i in 0..3 {
        opened
            .sender
            .send(Batch::unacked(events(i * 10, 10)))
            .await
            .unwrap();
        ends.push(opened.sender.handle_state().written.offset);
    }
    let segment = opened.sender.handle_state().written.segment;
    drop(opened.sender);
    drop(opened.receiver);
    opened.checkpointer.await.unwrap();
    (wal::segment_path(dir, segment), ends)
}

#[tokio::test]
async fn a_damaged_tail_is_quarantined_and_the_good_records_replayed() {
    type Damage = fn(&mut Vec<u8>, &[u64]) -> u64;
    let cases: [(&str, Damage); 2] = [
        ("garbage appended", |bytes, _| {
            let at = bytes.len() as u64;
            bytes.extend_from_slice(b"\x07\x00\x00\x00garbage!!");
            at
        }),
        ("cut mid-record", |bytes, ends| {
            bytes.truncate(ends[2] as usize - 5);
            ends[1]
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (segment, ends) = three_records(dir.path()).await;
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = damage(&mut bytes, &ends);
        std::fs::write(&segment, &bytes).unwrap();
        let bad = bytes[at as usize..].to_vec();
        let (replayed, metrics) = replay_all(dir.path()).await;
        let good = (ends.iter().filter(|e| **e <= at).count() * 10) as i64;
        assert_eq!(replayed, (0..good).collect::<Vec<_>>(), "{what}");
        assert_eq!(metrics.get("channel.wal.corrupt_records"), 1, "{what}");
        assert_eq!(
            metrics.get("channel.wal.corrupt_bytes"),
            bad.len() as u64,
            "{what}"
        );
        let id: u64 = segment
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let quarantined = recover::quarantine_path(dir.path(), id, at);
        assert_eq!(std::fs::read(&quarantined).unwrap(), bad, "{what}");
        // The segment was cut to its last good record (then deleted once
        // delivered); reopening again finds nothing damaged.
        let (again, m) = replay_all(dir.path()).await;
        assert!(again.is_empty(), "{what}: {again:?}");
        assert_eq!(m.get("channel.wal.corrupt_records"), 0, "{what}");
    }
}

/// Damage in the middle costs the damaged record only: the records after
/// it are replayed, at recovery and when the damage happens while running.
#[tokio::test]
async fn a_damaged_record_in_the_middle_costs_only_its_own_bytes() {
    type Damage = fn(&mut Vec<u8>, &[u64]);
    let cases: [(&str, Damage); 3] = [
        ("flipped byte in the middle record's data", |bytes, ends| {
            bytes[ends[0] as usize + 40] ^= 0xff;
        }),
        (
            "flipped byte in the middle record's length",
            |bytes, ends| {
                bytes[ends[0] as usize] ^= 0x01;
            },
        ),
        ("middle record zeroed", |bytes, ends| {
            bytes[ends[0] as usize..ends[1] as usize].fill(0);
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (segment, ends) = three_records(dir.path()).await;
        let mut bytes = std::fs::read(&segment).unwrap();
        let middle = bytes[ends[0] as usize..ends[1] as usize].to_vec();
        damage(&mut bytes, &ends);
        let damaged = bytes[ends[0] as usize..ends[1] as usize].to_vec();
        std::fs::write(&segment, &bytes).unwrap();
        let (replayed, metrics) = replay_all(dir.path()).await;
        let want: Vec<i64> = (0..10).chain(20..30).collect();
        assert_eq!(replayed, want, "{what}");
        assert_eq!(metrics.get("channel.wal.corrupt_records"), 1, "{what}");
        assert_eq!(
            metrics.get("channel.wal.corrupt_bytes"),
            middle.len() as u64,
            "{what}"
        );
        let id: u64 = segment
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let quarantined = recover::quarantine_path(dir.path(), id, ends[0]);
        assert_eq!(std::fs::read(&quarantined).unwrap(), damaged, "{what}");
    }
}

#[tokio::test]
async fn damage_found_while_running_skips_to_the_next_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(1 << 20, 1 << 30));
    let mut ends = Vec::new();
    for i in 0..3 {
        opened
            .sender
            .send(Batch::unacked(events(i * 10, 10)))
            .await
            .unwrap();
        ends.push(opened.sender.handle_state().written.offset);
    }
    let segment = wal::segment_path(dir.path(), opened.sender.handle_state().written.segment);
    // The disk damages the middle record after it was written.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 4], ends[0] + 30).unwrap();
    let mut rx = opened.receiver;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.extend(offsets(&timeout(WAIT, rx.recv()).await.unwrap().unwrap()));
    }
    assert_eq!(seen, (0..10).chain(20..30).collect::<Vec<_>>());
    assert_eq!(metrics.get("channel.wal.corrupt_records"), 1);
    assert_eq!(metrics.get("channel.wal.corrupt_bytes"), ends[1] - ends[0]);
}

#[tokio::test]
async fn a_read_error_is_retried_not_taken_for_damage() {
    // One record per segment; the second segment cannot be opened for a
    // while (as with EMFILE): nothing may be skipped.
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(64, 1 << 30));
    let mut segments = Vec::new();
    for i in 0..3 {
        opened
            .sender
            .send(Batch::unacked(events(i * 10, 10)))
            .await
            .unwrap();
        segments.push(opened.sender.handle_state().written.segment);
    }
    assert_eq!(segments.len(), 3);
    assert!(
        segments[0] < segments[1] && segments[1] < segments[2],
        "{segments:?}"
    );
    let second = wal::segment_path(dir.path(), segments[1]);
    let aside = dir.path().join("aside");
    std::fs::rename(&second, &aside).unwrap();
    let mut rx = opened.receiver;
    let first = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(offsets(&first), (0..10).collect::<Vec<_>>());
    let next = tokio::spawn(async move {
        let b = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        (rx, offsets(&b))
    });
    // Back once the reader has failed at least once.
    timeout(WAIT, async {
        while metrics.get("channel.wal.read_errors") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    std::fs::rename(&aside, &second).unwrap();
    let (mut rx, got) = next.await.unwrap();
    assert_eq!(got, (10..20).collect::<Vec<_>>());
    let third = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(offsets(&third), (20..30).collect::<Vec<_>>());
    assert_eq!(metrics.get("channel.wal.corrupt_records"), 0);
}

#[test]
fn a_batch_larger_than_a_record_can_hold_is_refused() {
    // Zeroed pages are not touched: this costs address space, not memory.
    let batch = BatchBuf {
        data: vec![0; u32::MAX as usize],
        index: Vec::new(),
    };
    let mut out = Vec::new();
    let e = wal::encode(&batch, &mut out).unwrap_err();
    assert!(
        e.to_string().contains("larger than a record can hold"),
        "{e}"
    );
    assert!(out.is_empty());
}

#[tokio::test]
async fn interval_fsync_acknowledges_at_the_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20, 1 << 30);
    cfg.fsync = FsyncPolicy::Interval;
    cfg.fsync_interval = Some("50ms".parse().unwrap());
    let (opened, metrics) = open_at(dir.path(), &cfg);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    // Read before the sends: the interval sync may run as soon as they land.
    let fsyncs_before = metrics.get("channel.wal.fsyncs");
    for i in 0..3 {
        opened
            .sender
            .send(acked(i * 10, 10, i as u64, &ack_tx))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = timeout(WAIT, ack_rx.recv()).await.unwrap().unwrap();
        assert!(r.delivered);
        ids.push(r.id);
    }
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
    assert!(metrics.get("channel.wal.fsyncs") > fsyncs_before);
}

#[test]
fn checkpoint_position_stays_before_undelivered_records() {
    let p = |segment, offset| Position { segment, offset };
    let mut st = State {
        written: p(2, 500),
        checkpoint: p(1, 8),
        read: p(2, 300),
        segments: [(1, 1000), (2, 500)].into_iter().collect(),
        outstanding: [p(1, 900), p(2, 100)].into_iter().collect(),
        by_ack: HashMap::new(),
        failed: None,
        held_events: 0,
        high: Default::default(),
    };
    assert_eq!(st.deliverable(), p(1, 900));
    assert_eq!(st.undelivered_bytes(), 1000 + 500 - 8);
    st.outstanding.clear();
    assert_eq!(st.deliverable(), p(2, 300));
    st.failed = Some(p(2, 8));
    assert_eq!(st.deliverable(), p(2, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_intake_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, metrics) = open_at(dir.path(), &config(64 << 10, 1 << 30));
    // The next segment is "on" a device that is always full (ENOSPC).
    let next = wal::segment_path(dir.path(), 1);
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    let tx = opened.sender.clone();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            tx.send(Batch::unacked(events(i * 20, 20))).await.unwrap();
        }
    });
    timeout(WAIT, async {
        while metrics.get("channel.wal.disk_full") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the full disk is counted");
    assert!(
        !writer.is_finished(),
        "intake went on although the disk is full"
    );
    // Room again: the append is retried and intake resumes.
    std::fs::remove_file(&next).unwrap();
    timeout(WAIT, writer).await.unwrap().unwrap();
    drop(opened.sender);
    let mut rx = opened.receiver;
    let mut seen = Vec::new();
    while let Some(b) = timeout(WAIT, rx.recv()).await.unwrap() {
        seen.extend(offsets(&b));
        b.release();
    }
    assert_eq!(seen, (0..2000).collect::<Vec<_>>());
}

/// A positional batch (as `taildir` sends) whose ack reports to `to`.
fn positional(first: i64, n: usize, id: u64, to: &mpsc::UnboundedSender<AckReport>) -> Batch {
    let batch = acked(first, n, id, to);
    batch.ack.mark_positional();
    batch
}

#[tokio::test]
async fn positional_batches_read_again_after_a_crash_are_not_appended_twice() {
    for fsync in [FsyncPolicy::EveryBatch, FsyncPolicy::Interval] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(4096, 1 << 30);
        cfg.fsync = fsync;
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        // Run 1: 0..100 sent, delivered and checkpointed (small segments:
        // the records holding them are deleted); 100..150 sent, not read.
        let (opened, _) = open_at(dir.path(), &cfg);
        for (i, first) in (0..150).step_by(10).enumerate() {
            opened
                .sender
                .send(positional(first, 10, i as u64, &ack_tx))
                .await
                .unwrap();
        }
        // A non-positional batch of the same partition is never filtered.
        let mut rx = opened.receiver;
        let mut got = Vec::new();
        while got.len() < 100 {
            let b = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            got.extend(offsets(&b));
            b.release();
        }
        // Every incoming ack was released: the source commits 0..150.
        for _ in 0..15 {
            assert!(
                timeout(WAIT, ack_rx.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .delivered
            );
        }
        drop(opened.sender);
        drop(rx);
        opened.checkpointer.await.unwrap();
        let crash = snapshot(dir.path());
        // Run 2: the source's position file was stale: it sends 60..200 again.
        let (opened, metrics) = open_at(crash.path(), &cfg);
        for (i, first) in (60..200).step_by(20).enumerate() {
            opened
                .sender
                .send(positional(first, 20, 100 + i as u64, &ack_tx))
                .await
                .unwrap();
        }
        opened.sender.send(acked(0, 3, 999, &ack_tx)).await.unwrap();
        drop(opened.sender);
        let mut rx = opened.receiver;
        let mut after = Vec::new();
        while let Some(b) = timeout(WAIT, rx.recv()).await.unwrap() {
            after.extend(offsets(&b));
            b.release();
        }
        drop(rx);
        opened.checkpointer.await.unwrap();
        let mut want: Vec<i64> = (100..200).collect();
        want.extend([0, 1, 2]);
        assert_eq!(after, want, "{fsync:?}");
        assert_eq!(
            metrics.get("channel.wal.duplicates_dropped"),
            90,
            "{fsync:?}"
        );
        // Every ack of run 2 was released too: the source moves on.
        for _ in 0..8 {
            assert!(
                timeout(WAIT, ack_rx.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .delivered
            );
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
