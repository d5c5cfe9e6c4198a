//! Exactly-once mode of the sink over `file://`: invisibility until commit,
//! chained records, skipping committed and stale events, recovery, and
//! commit conflicts.

use std::sync::Arc;
use std::time::Duration;

use sluice_batch::{BatchBuf, NewEvent};
use tokio::sync::mpsc;

use super::commit::{CommitLog, Created, Record, Sealed, Staged};
use super::store::Destination;
use super::test_store::{Misbehaving, Misbehaviour};
use super::*;
use crate::channels::memory::{Capacity, channel};
use crate::delivery::SourceLink;
use crate::event::{Ack, AckReport, Batch};
use crate::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(20);

fn events(offsets: std::ops::Range<i64>) -> BatchBuf {
    let mut b = BatchBuf::default();
    for offset in offsets {
        b.push(&NewEvent {
            key: None,
            body: format!("t-{offset}").as_bytes(),
            headers: &[],
            topic: "t",
            partition: 0,
            offset,
            timestamp: 0,
        });
    }
    b
}

fn config(dir: &std::path::Path, rest: &str) -> ObjectStoreSinkConfig {
    let c: ObjectStoreSinkConfig = toml::from_str(&format!(
        "url = \"file://{}\"\nexactly_once = true\n{rest}",
        dir.display()
    ))
    .unwrap();
    c.validate().unwrap();
    c
}

/// Visible files (not `_sluice/`, not hidden), name → content.
fn visible(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        out.push((
            name.clone(),
            std::fs::read_to_string(dir.join(&name)).unwrap(),
        ));
    }
    out.sort();
    out
}

fn hidden(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".inprogress")
        })
        .count()
}

fn record(dir: &std::path::Path, start: i64) -> Option<Record> {
    let path = dir.join(format!("_sluice/commits/t+0/{start:020}.json"));
    std::fs::read(path)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

struct Run {
    tx: Option<crate::channels::ChannelSender>,
    task: tokio::task::JoinHandle<Result<(), SinkError>>,
    metrics: Arc<Metrics>,
    acks_tx: mpsc::UnboundedSender<AckReport>,
    acks: mpsc::UnboundedReceiver<AckReport>,
}

impl Run {
    fn start(config: ObjectStoreSinkConfig, link: &Arc<SourceLink>) -> Self {
        let dest = Destination::from_config(&config).unwrap();
        Self::start_on(config, dest, link)
    }

    fn start_on(config: ObjectStoreSinkConfig, dest: Destination, link: &Arc<SourceLink>) -> Self {
        Self::start_full(config, dest, link, None)
    }

    /// A run whose dead letters go to `dead_letter`.
    fn start_with_dead_letter(
        config: ObjectStoreSinkConfig,
        link: &Arc<SourceLink>,
        dead_letter: crate::channels::ChannelSender,
    ) -> Self {
        let dest = Destination::from_config(&config).unwrap();
        Self::start_full(config, dest, link, Some(dead_letter))
    }

    fn start_full(
        config: ObjectStoreSinkConfig,
        dest: Destination,
        link: &Arc<SourceLink>,
        dead_letter: Option<crate::channels::ChannelSender>,
    ) -> Self {
        let metrics = Metrics::new();
        let ctx = SinkContext {
            name: "lake".into(),
            metrics: metrics.clone(),
            embedded_bootstrap: None,
            link: Some(link.clone()),
            state_dir: None,
            dead_letter,
        };
        let (tx, rx) = channel(Capacity {
            events: 1 << 20,
            bytes: 1 << 30,
        });
        let task = tokio::spawn(sink::run(config, dest, rx, ctx));
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Self {
            tx: Some(tx),
            task,
            metrics,
            acks_tx,
            acks,
        }
    }

    async fn send(&self, events: BatchBuf, id: u64, epoch: u64) {
        let ack = Ack::in_epoch(id, epoch, self.acks_tx.clone());
        self.tx
            .as_ref()
            .unwrap()
            .send(Batch::new(events, ack))
            .await
            .unwrap();
    }

    fn metric(&self, what: &str) -> u64 {
        self.metrics.get(&format!("sink.lake.{what}"))
    }

    async fn until(&self, what: &str, n: u64) {
        tokio::time::timeout(WAIT, async {
            while self.metric(what) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {n} {what}"));
    }

    async fn shutdown(mut self) -> Vec<AckReport> {
        self.tx = None;
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("sink did not stop")
            .unwrap()
            .unwrap();
        drop(self.acks_tx);
        let mut out = Vec::new();
        while let Some(r) = self.acks.recv().await {
            out.push(r);
        }
        out
    }
}

fn tp() -> crate::delivery::Tp {
    ("t".into(), 0)
}

#[tokio::test]
async fn files_appear_only_with_their_commit_record_and_records_chain() {
    let dir = tempfile::tempdir().unwrap();
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let run = Run::start(config(dir.path(), "roll_count = 15"), &link);

    run.send(events(0..10), 1, epoch).await;
    run.until("events", 10).await;
    assert!(
        visible(dir.path()).is_empty(),
        "nothing visible before a commit"
    );
    assert_eq!(hidden(dir.path()), 1);

    run.send(events(10..20), 2, epoch).await;
    run.until("commits", 1).await;
    let first = record(dir.path(), 0).expect("first record");
    assert_eq!((first.start, first.end), (0, 15));
    let acks = run.shutdown().await;
    let second = record(dir.path(), 15).expect("second record chains on");
    assert_eq!((second.start, second.end), (15, 20));

    let files = visible(dir.path());
    let want0: String = (0..15).map(|o| format!("t-{o}\n")).collect();
    let want1: String = (15..20).map(|o| format!("t-{o}\n")).collect();
    assert_eq!(
        files,
        vec![
            ("t+0+00000000000000000000.txt".to_string(), want0),
            ("t+0+00000000000000000015.txt".to_string(), want1),
        ]
    );
    assert_eq!(hidden(dir.path()), 0);
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|a| a.delivered));
    // Staging intents are removed once the chain moves past them.
    let staging = dir.path().join("_sluice/staging/t+0");
    assert_eq!(
        std::fs::read_dir(staging).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn a_restart_skips_committed_events_and_drops_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let link = SourceLink::new("src");
    let e1 = link.assign(&[tp()]);
    let run = Run::start(config(dir.path(), "roll_count = 1000"), &link);
    run.send(events(0..20), 1, e1).await;
    run.shutdown().await;

    // A new agent: recovery tells the source where to resume.
    let link = SourceLink::new("src");
    let run = Run::start(config(dir.path(), "roll_count = 1000"), &link);
    let stores = tokio::time::timeout(WAIT, async {
        loop {
            if link.has_stores() {
                return link.stores();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let positions = stores[0].recover(&[tp()]).await.unwrap();
    assert_eq!(positions.get(&tp()), Some(&20));
    let e2 = link.assign(&[tp()]);
    // A redelivery overlapping the committed output, then a batch read
    // before a reassignment (stale), then new data.
    run.send(events(10..30), 1, e2).await;
    run.send(events(30..40), 2, e2 - 1).await;
    run.send(events(40..45), 3, e2).await;
    run.until("events", 15).await;
    let acks = run.shutdown().await;
    assert!(acks.iter().all(|a| a.delivered));
    let r = record(dir.path(), 20).expect("record chained on the recovered position");
    assert_eq!((r.start, r.end), (20, 45));
    let all: String = visible(dir.path()).into_iter().map(|(_, c)| c).collect();
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort_by_key(|l| l[2..].parse::<i64>().unwrap());
    let want: Vec<String> = (0..30).chain(40..45).map(|o| format!("t-{o}")).collect();
    assert_eq!(
        lines, want,
        "committed once; the stale batch is left for a re-read"
    );
}

#[tokio::test]
async fn recovery_publishes_committed_files_and_a_second_writer_loses() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "roll_count = 10");
    let dest = Arc::new(Destination::from_config(&config).unwrap());
    let log = CommitLog::new("lake", dest.clone());
    // A file sealed and committed, then a crash before it was renamed.
    let hidden_path = dir.path().join(".t+0+00000000000000000000.txt.inprogress");
    let visible_path = dir.path().join("t+0+00000000000000000000.txt");
    std::fs::write(&hidden_path, "t-0\nt-1\n").unwrap();
    let rec = Record {
        topic: "t".into(),
        partition: 0,
        start: 0,
        end: 2,
        files: vec![Sealed {
            staged: Staged::Local {
                hidden: hidden_path.clone(),
                visible: visible_path.clone(),
            },
            parts: Vec::new(),
            size: 8,
            events: 2,
            offsets: (0, 1),
        }],
        agent: "a".into(),
        checksum: None,
    };
    assert_eq!(log.create(&rec).await.unwrap(), Created::Yes);
    assert!(!visible_path.exists());

    assert_eq!(log.recover_tp(&tp()).await.unwrap(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&visible_path).unwrap(),
        "t-0\nt-1\n"
    );
    assert!(!hidden_path.exists());
    // Recovery is idempotent.
    assert_eq!(log.recover_tp(&tp()).await.unwrap(), Some(2));

    // The same commit retried is fine; a different one from the same start loses.
    assert_eq!(log.create(&rec).await.unwrap(), Created::Yes);
    let other = Record {
        end: 5,
        agent: "b".into(),
        ..rec
    };
    assert_eq!(log.create(&other).await.unwrap(), Created::Conflict);
}

#[tokio::test]
async fn a_partition_whose_write_fails_for_good_is_not_committed_but_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let config = config(dir.path(), "roll_count = 1000\nshutdown_attempts = 2");
    let dest = Destination::from_config(&config).unwrap();
    let Destination::Local(local) = &dest else {
        panic!("not local")
    };
    let faults = local.faults.fail_next.clone();
    let mut run = Run::start_on(config, dest, &link);
    run.send(events(0..10), 1, epoch).await;
    run.until("events", 10).await;
    // Every write from now on fails: the shutdown's attempts run out.
    faults.store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
    run.tx = None;
    let result = tokio::time::timeout(WAIT, &mut run.task)
        .await
        .expect("sink did not stop")
        .unwrap();
    assert!(result.is_err(), "the sink reports the failure");
    assert!(record(dir.path(), 0).is_none(), "nothing committed");
    assert!(visible(dir.path()).is_empty());
    assert_eq!(
        link.take_rewinds(),
        vec![(tp(), 0)],
        "read again from the start"
    );
}

fn remote_config() -> ObjectStoreSinkConfig {
    let c: ObjectStoreSinkConfig =
        toml::from_str("url = \"memory://lake\"\nexactly_once = true\nroll_count = 10").unwrap();
    c.validate().unwrap();
    c
}

#[tokio::test]
async fn exactly_once_is_refused_on_a_store_without_conditional_writes() {
    let store = Arc::new(Misbehaving::new(Misbehaviour::IgnoresConditions));
    let dest = Destination::Remote(super::store::RemoteStore::new(
        store.clone(),
        "lake".into(),
        "memory://lake".into(),
    ));
    let mut run = Run::start_on(remote_config(), dest, &SourceLink::new("s"));
    let e = tokio::time::timeout(WAIT, &mut run.task)
        .await
        .expect("the sink stops at once")
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not support conditional writes"),
        "{e}"
    );
    // The probe cleans up after itself.
    use futures::TryStreamExt;
    let left: Vec<_> = object_store::ObjectStore::list(&*store, None)
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_store_with_conditional_writes_passes_the_probe() {
    let store = Arc::new(object_store::memory::InMemory::new());
    let dest = Destination::Remote(super::store::RemoteStore::new(
        store.clone(),
        "lake".into(),
        "memory://lake".into(),
    ));
    let log = CommitLog::new("lake", Arc::new(dest));
    log.probe_conditional_create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Destination::from_config(&config(dir.path(), "roll_count = 10")).unwrap();
    CommitLog::new("lake", Arc::new(local))
        .probe_conditional_create()
        .await
        .unwrap();
}

#[tokio::test]
async fn max_open_files_commits_the_least_recently_written_partition() {
    // One partition fanned out to four directories by a header, one file
    // open at most: every change of directory commits what came before.
    let dir = tempfile::tempdir().unwrap();
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let run = Run::start(
        config(
            dir.path(),
            "roll_count = 1000\nmax_open_files = 1\npath = \"h=%{h}\"",
        ),
        &link,
    );
    let mut b = BatchBuf::default();
    for offset in 0..20i64 {
        let h = (offset / 5).to_string();
        b.push(&NewEvent {
            key: None,
            body: format!("t-{offset}").as_bytes(),
            headers: &[("h", h.as_bytes())],
            topic: "t",
            partition: 0,
            offset,
            timestamp: 0,
        });
    }
    run.send(b, 1, epoch).await;
    run.until("events", 20).await;
    assert_eq!(run.metric("rolled_for_max_open_files"), 3);
    let acks = run.shutdown().await;
    assert!(acks.iter().all(|a| a.delivered));
    // The chain: [0,5) [5,10) [10,15) [15,20), each in its directory.
    for (i, start) in [0i64, 5, 10, 15].into_iter().enumerate() {
        let r = record(dir.path(), start).expect("a record per directory");
        assert_eq!((r.start, r.end), (start, start + 5));
        let files = visible(&dir.path().join(format!("h={i}")));
        let want: String = (start..start + 5).map(|o| format!("t-{o}\n")).collect();
        assert_eq!(files, vec![(format!("t+0+{start:020}.txt"), want)]);
    }
}

/// Writes 30 events through the sink in three commits of 10: records at
/// 0, 10 and 20. Returns the directory.
async fn three_commits() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let run = Run::start(config(dir.path(), "roll_count = 10"), &link);
    run.send(events(0..30), 1, epoch).await;
    run.until("commits", 3).await;
    run.shutdown().await;
    dir
}

fn record_path(dir: &std::path::Path, start: i64) -> std::path::PathBuf {
    dir.join(format!("_sluice/commits/t+0/{start:020}.json"))
}

#[tokio::test]
async fn recovery_refuses_a_record_that_cannot_be_trusted() {
    type Tamper = fn(&mut serde_json::Value);
    let cases: [(&str, Tamper, &str); 4] = [
        ("end moved", |r| r["end"] = 25.into(), "checksum"),
        (
            "path outside the root",
            |r| {
                r["files"][0]["staged"]["visible"] = "/etc/passwd".into();
                r["checksum"] = serde_json::Value::Null;
            },
            "outside the sink's directory",
        ),
        (
            "start not the previous end",
            |r| {
                r["start"] = 12.into();
                r["checksum"] = serde_json::Value::Null;
            },
            "its name says",
        ),
        (
            "another partition",
            |r| {
                r["partition"] = 7.into();
                r["checksum"] = serde_json::Value::Null;
            },
            "t/7",
        ),
    ];
    for (what, tamper, want) in cases {
        let dir = three_commits().await;
        let path = record_path(dir.path(), 10);
        let mut r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(r["checksum"].is_string(), "records carry a checksum");
        tamper(&mut r);
        if r["checksum"].is_null() {
            r.as_object_mut().unwrap().remove("checksum");
        }
        std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
        let dest =
            Arc::new(Destination::from_config(&config(dir.path(), "roll_count = 10")).unwrap());
        let log = CommitLog::new("lake", dest);
        // Recovery from the start of the chain (as a new lake owner would).
        std::fs::remove_file(dir.path().join("_sluice/commits/t+0/HEAD")).unwrap();
        let e = log.recover_tp(&tp()).await.unwrap_err();
        assert!(
            e.message.contains("00000000000000000010.json") && e.message.contains(want),
            "{what}: {e}"
        );
        assert!(
            e.message.contains("sluice lake verify"),
            "{what}: the repair is named: {e}"
        );
    }
}

#[tokio::test]
async fn a_gap_in_the_chain_stops_recovery() {
    let dir = three_commits().await;
    std::fs::remove_file(record_path(dir.path(), 10)).unwrap();
    std::fs::remove_file(dir.path().join("_sluice/commits/t+0/HEAD")).unwrap();
    let dest = Arc::new(Destination::from_config(&config(dir.path(), "roll_count = 10")).unwrap());
    let e = CommitLog::new("lake", dest)
        .recover_tp(&tp())
        .await
        .unwrap_err();
    assert!(
        e.message.contains("00000000000000000020.json") && e.message.contains("gap"),
        "{e}"
    );
}

#[tokio::test]
async fn lake_verify_reports_gaps_lost_and_stray_files() {
    let dir = three_commits().await;
    let cfg = config(dir.path(), "roll_count = 10");
    let report = verify::verify("lake", &cfg).await.unwrap();
    assert!(report.problems.is_empty(), "{}", report.render());
    assert_eq!(
        (report.partitions, report.records, report.events),
        (1, 3, 30)
    );
    assert!(
        report
            .render()
            .contains("t+0: offsets [0, 30) in 3 records, 30 events")
    );

    // A committed file lost, a stray visible file, a record gone (a gap).
    std::fs::remove_file(dir.path().join("t+0+00000000000000000000.txt")).unwrap();
    std::fs::write(dir.path().join("stray.txt"), "x\n").unwrap();
    std::fs::remove_file(record_path(dir.path(), 10)).unwrap();
    let report = verify::verify("lake", &cfg).await.unwrap();
    let text = report.render();
    // The removed record's file is now in no record either.
    assert_eq!(report.problems.len(), 4, "{text}");
    assert!(
        text.contains("t+0+00000000000000000010.txt is visible but in no commit record"),
        "{text}"
    );
    assert!(text.contains("t+0+00000000000000000000.txt (record t+0/00000000000000000000.json) is not visible: it is lost"), "{text}");
    assert!(
        text.contains("stray.txt is visible but in no commit record"),
        "{text}"
    );
    assert!(
        text.contains("offsets 10..20 are missing (a gap)"),
        "{text}"
    );
    // An at-least-once sink has nothing to verify.
    let alo: ObjectStoreSinkConfig = toml::from_str(&format!(
        "url = \"file://{}\"\nroll_count = 1",
        dir.path().display()
    ))
    .unwrap();
    assert!(
        verify::verify("copy", &alo)
            .await
            .unwrap_err()
            .message
            .contains("not exactly-once")
    );
}

/// Events 0..4 of `t`/0, the one at offset 1 with a path no file system
/// takes (a 300-byte directory name).
fn with_an_unwritable_event() -> BatchBuf {
    let long = "x".repeat(150);
    let mut b = BatchBuf::default();
    for offset in 0..4i64 {
        let h = if offset == 1 { long.as_str() } else { "ok" };
        b.push(&NewEvent {
            key: None,
            body: format!("t-{offset}").as_bytes(),
            headers: &[("h", h.as_bytes())],
            topic: "t",
            partition: 0,
            offset,
            timestamp: 0,
        });
    }
    b
}

#[tokio::test]
async fn a_dead_lettered_event_is_sent_again_when_its_committed_range_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || config(dir.path(), "roll_count = 3\npath = \"h=%{h}%{h}\"");
    let (dl_tx, mut dl_rx) = channel(Capacity {
        events: 100,
        bytes: 1 << 20,
    });
    let start = |link: &Arc<SourceLink>| Run::start_with_dead_letter(cfg(), link, dl_tx.clone());
    // Run 1: 0, 2, 3 committed; 1 dead-lettered, but the dead-letter sink
    // crashes before it is durable (its batch is dropped unreleased).
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let run = start(&link);
    run.send(with_an_unwritable_event(), 1, epoch).await;
    let dead = tokio::time::timeout(WAIT, dl_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.events.get(0).unwrap().offset(), 1);
    drop(dead);
    run.until("commits", 1).await;
    let acks = run.shutdown().await;
    assert!(
        acks.iter().all(|a| !a.delivered),
        "the dead letter was lost: not delivered"
    );
    assert_eq!(
        record(dir.path(), 0).map(|r| (r.start, r.end)),
        Some((0, 4))
    );
    // Run 2: the source reads the range again; the lake skips what it holds
    // and the dead letter goes out again.
    let link = SourceLink::new("src");
    let epoch = link.assign(&[tp()]);
    let run = start(&link);
    run.send(with_an_unwritable_event(), 2, epoch).await;
    let dead = tokio::time::timeout(WAIT, dl_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.events.get(0).unwrap().offset(), 1);
    dead.release();
    let acks = run.shutdown().await;
    assert!(acks.iter().all(|a| a.delivered));
    assert_eq!(record(dir.path(), 4), None, "nothing new committed");
}
