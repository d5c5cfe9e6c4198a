//! End-to-end tests of the sink over `memory://` and `file://`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use sluice_batch::{BatchBuf, NewEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::{Destination, RemoteStore};
use super::*;
use crate::channels::ChannelSender;
use crate::channels::memory::{Capacity, channel};
use crate::event::{Ack, AckReport, Batch};
use crate::metrics::Metrics;
use crate::wait::until;

// 2024-03-05T07:08:09.123Z
const TS: i64 = 1_709_622_489_123;
const HOUR: i64 = 3_600_000;
const WAIT: Duration = Duration::from_secs(20);

fn config(toml_text: &str) -> ObjectStoreSinkConfig {
    toml::from_str(toml_text).unwrap()
}

fn ctx() -> SinkContext {
    SinkContext {
        name: "lake".into(),
        metrics: Metrics::new(),
        embedded_bootstrap: None,
        link: None,
        state_dir: None,
        dead_letter: None,
    }
}

/// Events `offsets` of `topic`/`partition` with body `<topic>-<offset>`.
fn events(topic: &str, partition: i32, offsets: std::ops::Range<i64>, ts: i64) -> BatchBuf {
    let mut b = BatchBuf::default();
    for offset in offsets {
        b.push(&NewEvent {
            key: None,
            body: format!("{topic}-{offset}").as_bytes(),
            headers: &[],
            topic,
            partition,
            offset,
            timestamp: ts,
        });
    }
    b
}

fn lines(topic: &str, offsets: std::ops::Range<i64>) -> String {
    offsets.map(|o| format!("{topic}-{o}\n")).collect()
}

/// A running sink and what a test needs to drive and observe it.
struct Harness {
    tx: Option<ChannelSender>,
    task: JoinHandle<Result<(), SinkError>>,
    metrics: Arc<Metrics>,
    acks_tx: mpsc::UnboundedSender<AckReport>,
    acks: mpsc::UnboundedReceiver<AckReport>,
    faults: Arc<AtomicUsize>,
    store: Option<Arc<InMemory>>,
}

impl Harness {
    fn start(
        config: ObjectStoreSinkConfig,
        dest: Destination,
        faults: Arc<AtomicUsize>,
        store: Option<Arc<InMemory>>,
    ) -> Self {
        Self::start_in(config, dest, faults, store, ctx())
    }

    fn start_in(
        config: ObjectStoreSinkConfig,
        dest: Destination,
        faults: Arc<AtomicUsize>,
        store: Option<Arc<InMemory>>,
        ctx: SinkContext,
    ) -> Self {
        let metrics = ctx.metrics.clone();
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
            faults,
            store,
        }
    }

    /// A sink writing into an in-memory store (parts may be small here).
    fn memory(toml_text: &str) -> Self {
        let config = config(toml_text);
        let store = Arc::new(InMemory::new());
        let remote = RemoteStore::new(store.clone(), "out".into(), "memory://out".into());
        let faults = remote.faults.fail_next.clone();
        Self::start(config, Destination::Remote(remote), faults, Some(store))
    }

    /// A sink writing into a local directory, keeping its state in `state`.
    fn local_with_state(dir: &std::path::Path, state: &std::path::Path, toml_rest: &str) -> Self {
        let config = config(&format!("url = \"file://{}\"\n{toml_rest}", dir.display()));
        let dest = Destination::from_config(&config).unwrap();
        let ctx = SinkContext {
            state_dir: Some(state.to_path_buf()),
            ..ctx()
        };
        Self::start_in(config, dest, Arc::new(AtomicUsize::new(0)), None, ctx)
    }

    /// A sink writing into a local directory.
    fn local(dir: &std::path::Path, toml_rest: &str) -> Self {
        let config = config(&format!("url = \"file://{}\"\n{toml_rest}", dir.display()));
        config.validate().unwrap();
        let dest = Destination::from_config(&config).unwrap();
        let Destination::Local(local) = &dest else {
            panic!("not local")
        };
        let faults = local.faults.fail_next.clone();
        Self::start(config, dest, faults, None)
    }

    async fn send(&self, events: BatchBuf, ack_id: u64) {
        let ack = Ack::new(ack_id, self.acks_tx.clone());
        let tx = self.tx.as_ref().unwrap();
        tx.send(Batch::new(events, ack)).await.unwrap();
    }

    fn metric(&self, what: &str) -> u64 {
        self.metrics.get(&format!("sink.lake.{what}"))
    }

    fn open_files(&self) -> i64 {
        self.metrics
            .gauge("sink.lake.open_files")
            .load(Ordering::Relaxed)
    }

    /// Waits until the sink has taken `n` events in.
    async fn until_events(&self, n: u64) {
        until(&format!("{n} events written"), WAIT, || {
            self.metric("events") >= n
        })
        .await;
    }

    async fn next_ack(&mut self) -> AckReport {
        tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .expect("timed out waiting for an ack")
            .expect("ack channel closed")
    }

    fn no_ack_yet(&mut self) -> bool {
        self.acks.try_recv().is_err()
    }

    /// Ends the input and returns what the sink returned.
    async fn shutdown(&mut self) -> Result<(), SinkError> {
        self.tx = None;
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("sink did not stop")
            .unwrap()
    }

    /// Objects in the memory store, by key.
    async fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        let store = self.store.as_ref().unwrap();
        let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for meta in metas {
            let bytes = store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            out.insert(meta.location.to_string(), bytes.to_vec());
        }
        out
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Every file under `dir`, relative, with its contents.
fn local_files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test]
async fn rolls_by_count_with_deterministic_names() {
    let mut h = Harness::memory("url = \"memory://out\"\nroll_count = 3\npath = \"%{topic}\"");
    h.send(events("logs", 2, 10..17, TS), 1).await;
    until("two full files", WAIT, || h.metric("files_written") == 2).await;
    let objects = h.objects().await;
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        [
            "out/logs/logs+2+00000000000000000010.txt",
            "out/logs/logs+2+00000000000000000013.txt"
        ]
    );
    assert_eq!(h.open_files(), 1);
    // The batch still has an event in the open third file.
    assert!(h.no_ack_yet());

    h.shutdown().await.unwrap();
    let objects = h.objects().await;
    assert_eq!(objects.len(), 3);
    assert_eq!(
        text(&objects["out/logs/logs+2+00000000000000000010.txt"]),
        lines("logs", 10..13)
    );
    assert_eq!(
        text(&objects["out/logs/logs+2+00000000000000000013.txt"]),
        lines("logs", 13..16)
    );
    assert_eq!(
        text(&objects["out/logs/logs+2+00000000000000000016.txt"]),
        lines("logs", 16..17)
    );
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 1,
            delivered: true
        }
    );
    assert_eq!(h.metric("events"), 7);
    assert_eq!(h.metric("files_written"), 3);
    assert_eq!(h.metric("bytes"), lines("logs", 10..17).len() as u64);
    assert_eq!(h.open_files(), 0);
}

#[tokio::test]
async fn acks_are_released_only_when_every_file_holding_them_is_visible() {
    let mut h = Harness::memory("url = \"memory://out\"\nroll_count = 4");
    h.send(events("t", 0, 0..3, TS), 1).await;
    h.until_events(3).await;
    assert!(h.no_ack_yet(), "batch 1 acked before its file was complete");
    assert!(h.objects().await.is_empty());

    // Batch 2's first event fills the file: batch 1 is now wholly visible,
    // batch 2 still has events in the next, open file.
    h.send(events("t", 0, 3..6, TS), 2).await;
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 1,
            delivered: true
        }
    );
    assert_eq!(h.objects().await.len(), 1);
    assert!(
        h.no_ack_yet(),
        "batch 2 acked while its events were in an open file"
    );

    h.shutdown().await.unwrap();
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 2,
            delivered: true
        }
    );
    let objects = h.objects().await;
    assert_eq!(
        text(&objects["out/t+0+00000000000000000004.txt"]),
        lines("t", 4..6)
    );
}

#[tokio::test]
async fn rolls_by_size_of_encoded_bytes() {
    // Each line "t-N\n" is 4 bytes: two per 8-byte file.
    let mut h = Harness::memory("url = \"memory://out\"\nroll_size = 8");
    h.send(events("t", 0, 0..5, TS), 1).await;
    h.shutdown().await.unwrap();
    let objects = h.objects().await;
    let contents: Vec<String> = objects.values().map(|b| text(b)).collect();
    assert_eq!(
        contents,
        [lines("t", 0..2), lines("t", 2..4), lines("t", 4..5)]
    );
}

#[tokio::test]
async fn rolls_by_interval_without_new_events() {
    let mut h = Harness::memory("url = \"memory://out\"\nroll_interval = \"800ms\"");
    let sent = std::time::Instant::now();
    h.send(events("t", 0, 0..2, TS), 1).await;
    h.until_events(2).await;
    assert_eq!(h.metric("files_written"), 0);
    // The timer completes the file: no event, no shutdown needed.
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 1,
            delivered: true
        }
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(800),
        "rolled early: {:?}",
        sent.elapsed()
    );
    assert_eq!(h.objects().await.len(), 1);
    assert_eq!(h.open_files(), 0);

    // The next event opens a new file, rolled by the timer in turn.
    h.send(events("t", 0, 2..3, TS), 2).await;
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 2,
            delivered: true
        }
    );
    h.shutdown().await.unwrap();
    assert_eq!(h.objects().await.len(), 2);
}

#[tokio::test]
async fn rolls_by_idle_time() {
    let mut h =
        Harness::memory("url = \"memory://out\"\nroll_idle = \"200ms\"\nroll_interval = \"1h\"");
    let sent = std::time::Instant::now();
    h.send(events("t", 0, 0..1, TS), 1).await;
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 1,
            delivered: true
        }
    );
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "rolled early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(600),
        "the interval rolled it, not idleness"
    );
    h.shutdown().await.unwrap();
    assert_eq!(h.metric("files_written"), 1);
}

#[tokio::test]
async fn local_files_are_hidden_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::local(dir.path(), "roll_count = 3\npath = \"%{topic}/%y-%m-%d\"");
    h.send(events("logs", 0, 0..2, TS), 1).await;
    h.until_events(2).await;
    let files = local_files(dir.path());
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["logs/24-03-05/.logs+0+00000000000000000000.txt.inprogress"],
        "only the hidden in-progress file may exist"
    );
    assert!(h.no_ack_yet());

    h.send(events("logs", 0, 2..3, TS), 2).await;
    assert_eq!(h.next_ack().await.id, 1);
    assert_eq!(h.next_ack().await.id, 2);
    let files = local_files(dir.path());
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["logs/24-03-05/logs+0+00000000000000000000.txt"]
    );
    assert_eq!(
        text(&files["logs/24-03-05/logs+0+00000000000000000000.txt"]),
        lines("logs", 0..3)
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn local_large_files_are_streamed_and_complete_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::local(dir.path(), "roll_count = 1000000");
    let body = vec![b'x'; 999];
    let mut batch = BatchBuf::default();
    for offset in 0..3000 {
        batch.push(&NewEvent {
            key: None,
            body: &body,
            headers: &[],
            topic: "big",
            partition: 1,
            offset,
            timestamp: TS,
        });
    }
    h.send(batch, 1).await;
    h.until_events(3000).await;
    // 3 MB went through a 1 MiB buffer: some of it is already on disk, hidden.
    let hidden = dir
        .path()
        .join(".big+1+00000000000000000000.txt.inprogress");
    assert!(std::fs::metadata(&hidden).unwrap().len() >= 1 << 20);
    h.shutdown().await.unwrap();
    assert!(h.next_ack().await.delivered);
    let files = local_files(dir.path());
    let data = &files["big+1+00000000000000000000.txt"];
    assert_eq!(data.len(), 3000 * 1000);
    assert!(
        data.chunks(1000)
            .all(|line| line[..999] == body[..] && line[999] == b'\n')
    );
    assert_eq!(files.len(), 1);
}

#[tokio::test]
async fn large_objects_use_multipart_and_appear_only_when_complete() {
    // Parts of 64 KiB (below S3's minimum: allowed for the in-memory store).
    let mut config = config("url = \"memory://out\"\nroll_count = 1000000");
    config.upload_part_size = crate::units::ByteSize(64 << 10);
    let store = Arc::new(InMemory::new());
    let remote = RemoteStore::new(store.clone(), "out".into(), "memory://out".into());
    let faults = remote.faults.fail_next.clone();
    let attempts = remote.faults.attempts.clone();
    let mut h = Harness::start(config, Destination::Remote(remote), faults, Some(store));

    let mut batch = BatchBuf::default();
    let mut expected = Vec::new();
    for offset in 0..3000i64 {
        let body = format!("event {offset:06} {}", "y".repeat(90));
        expected.extend_from_slice(body.as_bytes());
        expected.push(b'\n');
        batch.push(&NewEvent {
            key: None,
            body: body.as_bytes(),
            headers: &[],
            topic: "t",
            partition: 0,
            offset,
            timestamp: TS,
        });
    }
    assert!(expected.len() > 4 * (64 << 10));
    h.send(batch, 1).await;
    h.until_events(3000).await;
    assert!(
        h.objects().await.is_empty(),
        "uploaded parts must not be visible"
    );
    // Start + at least 4 parts went out while the file was open.
    assert!(attempts.load(Ordering::Relaxed) >= 5, "{attempts:?}");
    h.shutdown().await.unwrap();
    // The last part and the completion at shutdown.
    assert!(attempts.load(Ordering::Relaxed) >= 7, "{attempts:?}");
    let objects = h.objects().await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects["out/t+0+00000000000000000000.txt"], expected);
    assert!(h.next_ack().await.delivered);
}

fn jsonl_batch() -> (BatchBuf, Vec<serde_json::Value>) {
    let mut b = BatchBuf::default();
    let mut expected = Vec::new();
    for offset in 0..200i64 {
        let body = if offset % 2 == 0 {
            format!("{{\"n\": {offset}}}")
        } else {
            format!("line {offset}")
        };
        b.push(&NewEvent {
            key: Some(format!("k{offset}").as_bytes()),
            body: body.as_bytes(),
            headers: &[("source", b"pos")],
            topic: "auths",
            partition: 0,
            offset,
            timestamp: TS,
        });
        let value = if offset % 2 == 0 {
            serde_json::json!({ "n": offset })
        } else {
            serde_json::Value::String(body)
        };
        expected.push(serde_json::json!({
            "key": format!("k{offset}"),
            "value": value,
            "topic": "auths",
            "partition": 0,
            "offset": offset,
            "timestamp": TS,
            "headers": {"source": "pos"},
        }));
    }
    (b, expected)
}

fn parse_jsonl(data: &[u8]) -> Vec<serde_json::Value> {
    text(data)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn gzip_jsonl_round_trips() {
    let mut h = Harness::memory(
        "url = \"memory://out\"\nroll_count = 1000\nformat = \"jsonl\"\ncompression = \"gzip\"",
    );
    let (batch, expected) = jsonl_batch();
    h.send(batch, 1).await;
    h.shutdown().await.unwrap();
    let objects = h.objects().await;
    let gz = &objects["out/auths+0+00000000000000000000.jsonl.gz"];
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(parse_jsonl(&plain), expected);
    assert_eq!(h.metric("bytes"), plain.len() as u64);
}

#[tokio::test]
async fn zstd_jsonl_round_trips_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::local(
        dir.path(),
        "roll_count = 1000\nformat = \"jsonl\"\ncompression = \"zstd\"\ncompression_level = 5",
    );
    let (batch, expected) = jsonl_batch();
    h.send(batch, 1).await;
    h.shutdown().await.unwrap();
    let files = local_files(dir.path());
    let zst = &files["auths+0+00000000000000000000.jsonl.zst"];
    assert_eq!(parse_jsonl(&zstd::decode_all(&zst[..]).unwrap()), expected);
}

#[tokio::test]
async fn one_file_per_directory_topic_and_partition() {
    let mut h = Harness::memory(
        "url = \"memory://out\"\nroll_count = 100\npath = \"%{topic}/dt=%Y-%m-%d/hr=%H/team=%{team}\"",
    );
    let mut b = BatchBuf::default();
    let push = |b: &mut BatchBuf,
                topic: &str,
                partition: i32,
                offset: i64,
                ts: i64,
                team: Option<&[u8]>| {
        let headers: Vec<(&str, &[u8])> = team.map(|t| ("team", t)).into_iter().collect();
        b.push(&NewEvent {
            key: None,
            body: format!("{topic}-{offset}").as_bytes(),
            headers: &headers,
            topic,
            partition,
            offset,
            timestamp: ts,
        });
    };
    push(&mut b, "a", 0, 1, TS, Some(b"fraud"));
    push(&mut b, "a", 1, 1, TS, Some(b"fraud"));
    push(&mut b, "a", 0, 2, TS + HOUR, Some(b"fraud"));
    push(&mut b, "a", 0, 3, TS, Some(b"fraud"));
    push(&mut b, "b", 0, 7, TS, Some(b"../x"));
    push(&mut b, "b", 0, 8, TS, None);
    h.send(b, 1).await;
    h.shutdown().await.unwrap();
    let objects = h.objects().await;
    let got: BTreeMap<&str, String> = objects.iter().map(|(k, v)| (k.as_str(), text(v))).collect();
    let expected: BTreeMap<&str, String> = [
        (
            "out/a/dt=2024-03-05/hr=07/team=fraud/a+0+00000000000000000001.txt",
            "a-1\na-3\n",
        ),
        (
            "out/a/dt=2024-03-05/hr=07/team=fraud/a+1+00000000000000000001.txt",
            "a-1\n",
        ),
        (
            "out/a/dt=2024-03-05/hr=08/team=fraud/a+0+00000000000000000002.txt",
            "a-2\n",
        ),
        (
            "out/b/dt=2024-03-05/hr=07/team=.._x/b+0+00000000000000000007.txt",
            "b-7\n",
        ),
        (
            "out/b/dt=2024-03-05/hr=07/team=unknown/b+0+00000000000000000008.txt",
            "b-8\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_lower_offset_starts_a_new_file() {
    let mut h = Harness::memory("url = \"memory://out\"\nroll_count = 100");
    let mut b = events("t", 0, 5..7, TS);
    for offset in 3..5 {
        b.push(&NewEvent {
            key: None,
            body: format!("t-{offset}").as_bytes(),
            headers: &[],
            topic: "t",
            partition: 0,
            offset,
            timestamp: TS,
        });
    }
    h.send(b, 1).await;
    h.shutdown().await.unwrap();
    let objects = h.objects().await;
    assert_eq!(
        text(&objects["out/t+0+00000000000000000005.txt"]),
        lines("t", 5..7)
    );
    assert_eq!(
        text(&objects["out/t+0+00000000000000000003.txt"]),
        lines("t", 3..5)
    );
}

#[tokio::test]
async fn failed_uploads_are_retried_until_they_succeed() {
    let mut h = Harness::memory(
        "url = \"memory://out\"\nroll_count = 2\nretry_backoff_initial = \"1ms\"\nretry_backoff_max = \"4ms\"",
    );
    h.faults.store(3, Ordering::Relaxed);
    h.send(events("t", 0, 0..2, TS), 1).await;
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 1,
            delivered: true
        }
    );
    assert_eq!(h.metric("retries"), 3);
    assert_eq!(h.metric("write_errors"), 3);
    assert_eq!(h.objects().await.len(), 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn local_write_failures_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::local(
        dir.path(),
        "roll_count = 2\nretry_backoff_initial = \"1ms\"\nretry_backoff_max = \"2ms\"",
    );
    // Creating, then committing the file fail once each.
    h.faults.store(1, Ordering::Relaxed);
    h.send(events("t", 0, 0..1, TS), 1).await;
    h.until_events(1).await;
    h.faults.store(1, Ordering::Relaxed);
    h.send(events("t", 0, 1..2, TS), 2).await;
    assert!(h.next_ack().await.delivered);
    assert!(h.next_ack().await.delivered);
    assert_eq!(h.metric("retries"), 2);
    assert_eq!(
        text(&local_files(dir.path())["t+0+00000000000000000000.txt"]),
        lines("t", 0..2)
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn persistent_failure_at_shutdown_fails_the_acks_and_the_sink() {
    let mut h = Harness::memory(
        "url = \"memory://out\"\nroll_count = 100\nshutdown_attempts = 3\nretry_backoff_initial = \"1ms\"\nretry_backoff_max = \"2ms\"",
    );
    h.faults.store(usize::MAX, Ordering::Relaxed);
    h.send(events("t", 0, 0..3, TS), 7).await;
    h.until_events(3).await;
    let err = h.shutdown().await.unwrap_err();
    assert!(err.message.contains("not delivered"), "{err}");
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 7,
            delivered: false
        }
    );
    assert!(h.objects().await.is_empty());
    assert_eq!(h.metric("write_errors"), 3);
    assert_eq!(h.metric("files_written"), 0);
}

#[tokio::test]
async fn an_aborted_sink_never_reports_held_batches_as_delivered() {
    let mut h = Harness::memory("url = \"memory://out\"\nroll_count = 100");
    h.send(events("t", 0, 0..3, TS), 3).await;
    h.until_events(3).await;
    h.task.abort();
    assert_eq!(
        h.next_ack().await,
        AckReport {
            id: 3,
            delivered: false
        }
    );
}

#[tokio::test]
async fn run_rejects_an_invalid_config_with_the_sink_name() {
    let (_tx, rx) = channel(Capacity {
        events: 1,
        bytes: 1,
    });
    let err = run(config("url = \"memory://\""), rx, ctx())
        .await
        .unwrap_err();
    assert_eq!(err.sink, "lake");
    assert!(err.message.contains("roll trigger"), "{err}");
}

#[tokio::test]
async fn run_with_store_writes_under_the_url_prefix() {
    let store = Arc::new(InMemory::new());
    let (tx, rx) = channel(Capacity {
        events: 100,
        bytes: 1 << 20,
    });
    let sink = tokio::spawn(run_with_store(
        config("url = \"memory://bucket/pre/fix\"\nroll_count = 10"),
        store.clone(),
        rx,
        ctx(),
    ));
    tx.send(Batch::unacked(events("t", 0, 0..1, TS)))
        .await
        .unwrap();
    drop(tx);
    sink.await.unwrap().unwrap();
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let keys: Vec<String> = metas.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(keys, ["pre/fix/t+0+00000000000000000000.txt"]);
}

/// Files found under `dir`, recursively, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_restart_removes_the_in_progress_files_a_crash_left() {
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let rest = "path = \"%{topic}\"\nroll_count = 1000000";
    let mut h = Harness::local_with_state(out.path(), state.path(), rest);
    h.send(events("a", 0, 0..10, TS), 1).await;
    h.send(events("b", 0, 0..10, TS), 2).await;
    h.until_events(20).await;
    // The crash: the sink's task goes away with both files open.
    h.task.abort();
    let _ = (&mut h.task).await;
    let left = files_under(out.path());
    assert_eq!(
        left,
        [
            "a/.a+0+00000000000000000000.txt.inprogress",
            "b/.b+0+00000000000000000000.txt.inprogress"
        ]
    );
    // Nothing was acknowledged, so the events come again: from another
    // offset, into another file.
    let mut h = Harness::local_with_state(out.path(), state.path(), rest);
    h.send(events("a", 0, 5..10, TS), 3).await;
    h.shutdown().await.unwrap();
    assert_eq!(h.metric("orphans_removed"), 2);
    assert_eq!(files_under(out.path()), ["a/a+0+00000000000000000005.txt"]);
}

#[tokio::test]
async fn a_clean_stop_leaves_no_in_progress_file_and_no_journal_entry() {
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut h = Harness::local_with_state(out.path(), state.path(), "path = \"%{topic}\"");
    h.send(events("a", 0, 0..10, TS), 1).await;
    h.shutdown().await.unwrap();
    assert_eq!(files_under(out.path()), ["a/a+0+00000000000000000000.txt"]);
    assert_eq!(files_under(state.path()), ["in-progress/lock"]);
}

#[tokio::test]
async fn max_open_files_completes_the_least_recently_written_file() {
    let out = tempfile::tempdir().unwrap();
    let mut h = Harness::local(
        out.path(),
        "path = \"%{topic}\"\nroll_count = 1000000\nmax_open_files = 2",
    );
    h.send(events("a", 0, 0..5, TS), 1).await;
    h.send(events("b", 0, 0..5, TS), 2).await;
    h.until_events(10).await;
    assert!(h.no_ack_yet());
    // A third file: `a`, written least recently, is completed first.
    h.send(events("c", 0, 0..5, TS), 3).await;
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.delivered), (1, true));
    h.until_events(15).await;
    assert_eq!(h.open_files(), 2);
    // `a` again: a new file; `b` makes room.
    h.send(events("a", 0, 5..10, TS), 4).await;
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.delivered), (2, true));
    h.until_events(20).await;
    assert_eq!(h.open_files(), 2);
    assert_eq!(h.metric("rolled_for_max_open_files"), 2);
    h.shutdown().await.unwrap();
    assert_eq!(
        files_under(out.path()),
        [
            "a/a+0+00000000000000000000.txt",
            "a/a+0+00000000000000000005.txt",
            "b/b+0+00000000000000000000.txt",
            "c/c+0+00000000000000000000.txt"
        ]
    );
}

#[tokio::test]
async fn a_store_that_denies_writes_stops_the_sink_instead_of_retrying_forever() {
    use super::test_store::{Misbehaving, Misbehaviour};
    let store = Arc::new(Misbehaving::new(Misbehaviour::DeniesWrites));
    let remote = RemoteStore::new(store, "out".into(), "memory://out".into());
    let mut h = Harness::start(
        config("url = \"memory://out\"\nroll_count = 2"),
        Destination::Remote(remote),
        Arc::new(AtomicUsize::new(0)),
        None,
    );
    h.send(events("t", 0, 0..2, TS), 1).await;
    let e = tokio::time::timeout(WAIT, &mut h.task)
        .await
        .expect("the sink stops by itself")
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string().contains("permission") || e.to_string().contains("denies writes"),
        "{e}"
    );
    assert!(e.to_string().contains("no retry can succeed"), "{e}");
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.delivered), (1, false));
    assert_eq!(h.metric("retries"), 0, "a permanent error is not retried");
}

/// A batch with one event whose rendered directory name is 300 bytes (two
/// 150-byte header values in one component), between two ordinary ones.
fn with_an_unwritable_event() -> BatchBuf {
    let long = "x".repeat(150);
    let mut b = BatchBuf::default();
    for (offset, value) in [(0, "short"), (1, long.as_str()), (2, "short")] {
        b.push(&NewEvent {
            key: None,
            body: format!("e{offset}").as_bytes(),
            headers: &[("a", value.as_bytes()), ("b", value.as_bytes())],
            topic: "t",
            partition: 0,
            offset,
            timestamp: TS,
        });
    }
    b
}

#[tokio::test]
async fn an_event_whose_path_is_too_long_is_dead_lettered() {
    let out = tempfile::tempdir().unwrap();
    let (dl_tx, mut dl_rx) = channel(Capacity {
        events: 100,
        bytes: 1 << 20,
    });
    let config = config(&format!(
        "url = \"file://{}\"\npath = \"%{{a}}%{{b}}\"\nroll_count = 2",
        out.path().display()
    ));
    let dest = Destination::from_config(&config).unwrap();
    let ctx = SinkContext {
        dead_letter: Some(dl_tx),
        ..ctx()
    };
    let mut h = Harness::start_in(config, dest, Arc::new(AtomicUsize::new(0)), None, ctx);
    h.send(with_an_unwritable_event(), 1).await;
    let dead = tokio::time::timeout(WAIT, dl_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.len(), 1);
    let e = dead.events.get(0).unwrap();
    assert_eq!(e.body(), b"e1");
    let why = String::from_utf8_lossy(e.header("sluice.dead_letter.reason").unwrap()).into_owned();
    assert!(
        why.contains("300 bytes, over the file system's 255"),
        "{why}"
    );
    dead.release();
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.delivered), (1, true));
    assert_eq!(h.metric("dead_lettered"), 1);
    h.shutdown().await.unwrap();
    assert_eq!(
        files_under(out.path()),
        ["shortshort/t+0+00000000000000000000.txt"]
    );
}

#[tokio::test]
async fn an_event_whose_path_is_too_long_stops_a_sink_without_dead_letter() {
    let out = tempfile::tempdir().unwrap();
    let mut h = Harness::local(out.path(), "path = \"%{a}%{b}\"\nroll_count = 2");
    h.send(with_an_unwritable_event(), 1).await;
    let e = tokio::time::timeout(WAIT, &mut h.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string().contains("t/0/1 can never be written")
            && e.to_string().contains("dead_letter"),
        "{e}"
    );
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.delivered), (1, false));
}
