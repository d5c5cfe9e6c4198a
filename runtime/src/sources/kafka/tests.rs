//! The Kafka source against librdkafka's in-process mock cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::kafka::KafkaValue;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::delivery::SourceLink;
use crate::event::{Ack, Batch};
use crate::metrics::Metrics;
use crate::sources::{SourceContext, SourceError};
use crate::units::HumanDuration;
use crate::wait::until;

const WAIT: Duration = Duration::from_secs(60);

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(topic, partitions, 1).expect("topic");
    mock
}

/// Produces records `k{i}`/`v{i}` for `i` in `range`; returns where each
/// landed: (partition, offset).
async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) -> Vec<(i32, i64)> {
    let n = range.len();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(n);
    for i in range {
        let key = format!("k{i}");
        let body = format!("v{i}");
        let kind = if i % 3 == 0 { "refund" } else { "auth" };
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "i",
                value: Some(&i.to_string()),
            })
            .insert(Header {
                key: "type",
                value: Some(kind),
            })
            .insert(Header {
                key: "null",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&body)
            .headers(headers);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    let mut out = Vec::with_capacity(n);
    for d in deliveries {
        let d = d
            .await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivered");
        out.push((d.partition, d.offset));
    }
    out
}

fn context(name: &str) -> (SourceContext, Arc<Metrics>) {
    // Logs show with a failing test (or `--nocapture`); RUST_LOG filters them.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    let metrics = Metrics::new();
    let ctx = SourceContext {
        name: name.to_owned(),
        metrics: metrics.clone(),
        shutdown: CancellationToken::new(),
        embedded_bootstrap: None,
        state_dir: std::env::temp_dir().join("sluice-test-state"),
    };
    (ctx, metrics)
}

fn config(
    bootstrap: &str,
    topic: &str,
    group: &str,
    max_events: usize,
    max_wait: &str,
) -> KafkaSourceConfig {
    KafkaSourceConfig {
        bootstrap_servers: bootstrap.to_owned(),
        group_id: group.to_owned(),
        group_instance_id: None,
        topics: vec![topic.to_owned()],
        topic_pattern: None,
        batch_max_events: max_events,
        batch_max_bytes: crate::sources::default_batch_max_bytes(),
        batch_max_wait: max_wait.parse::<HumanDuration>().unwrap(),
        flush_when_idle: true,
        commit_interval: "50ms".parse().unwrap(),
        start_from: StartFrom::Earliest,
        bounded: None,
        kafka: Default::default(),
    }
}

/// Committed offsets of `group` and high watermarks, per partition.
fn committed_and_end(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> (Vec<i64>, Vec<i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let committed = (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect();
    let end = (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect();
    (committed, end)
}

/// An event as received, owned.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    key: Option<Vec<u8>>,
    body: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: i64,
}

fn seen(batch: &Batch) -> Vec<Seen> {
    batch
        .events
        .iter()
        .map(|e| Seen {
            key: e.key().map(<[u8]>::to_vec),
            body: e.body().to_vec(),
            headers: e
                .headers()
                .map(|h| h.map(|(k, v)| (k.to_owned(), v.to_vec())).unwrap())
                .collect(),
            topic: e.topic().to_owned(),
            partition: e.partition(),
            offset: e.offset(),
            timestamp: e.timestamp(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_record_once_and_commits_the_end() {
    const N: usize = 1500;
    let mock = cluster("in", 3);
    let bootstrap = mock.bootstrap_servers();
    let placed = produce(&bootstrap, "in", 0..N).await;
    let (ctx, metrics) = context("orders");
    let (tx, mut rx) = mpsc::channel(4);
    let source = tokio::spawn(run(
        config(&bootstrap, "in", "g-all", 100, "20ms"),
        tx,
        ctx.clone(),
        SourceLink::new("s"),
    ));

    let mut by_key: HashMap<Vec<u8>, Seen> = HashMap::new();
    timeout(WAIT, async {
        while by_key.len() < N {
            let batch = rx.recv().await.expect("source ended early");
            assert!(batch.len() <= 100);
            for e in seen(&batch) {
                let key = e.key.clone().expect("key");
                assert!(by_key.insert(key, e).is_none(), "duplicate record");
            }
            batch.release();
        }
    })
    .await
    .expect("all records arrive");

    for (i, (partition, offset)) in placed.iter().enumerate() {
        let e = &by_key[format!("k{i}").as_bytes()];
        assert_eq!(e.body, format!("v{i}").into_bytes());
        assert_eq!(
            (e.topic.as_str(), e.partition, e.offset),
            ("in", *partition, *offset)
        );
        let kind: &[u8] = if i % 3 == 0 { b"refund" } else { b"auth" };
        assert_eq!(
            e.headers,
            vec![
                ("i".to_owned(), i.to_string().into_bytes()),
                ("type".to_owned(), kind.to_vec()),
                ("null".to_owned(), Vec::new()),
            ]
        );
        assert!(
            e.timestamp > 1_600_000_000_000,
            "create time kept: {}",
            e.timestamp
        );
    }

    ctx.shutdown.cancel();
    let rest = timeout(WAIT, async {
        let mut n = 0;
        while let Some(b) = rx.recv().await {
            n += b.len();
            b.release();
        }
        n
    })
    .await
    .expect("output closes after shutdown");
    assert_eq!(rest, 0, "nothing left to hand on");
    timeout(WAIT, source)
        .await
        .expect("source stops")
        .unwrap()
        .expect("source succeeds");

    let (committed, end) = committed_and_end(&bootstrap, "g-all", "in", 3);
    assert_eq!(committed, end);
    assert_eq!(end.iter().sum::<i64>(), N as i64);
    assert_eq!(metrics.get("source.orders.events"), N as u64);
    assert!(metrics.get("source.orders.batches") >= (N / 100) as u64);
    assert!(metrics.get("source.orders.commits") >= 1);
    assert!(metrics.get("source.orders.bytes") > 0);
    assert_eq!(metrics.get("source.orders.undelivered_batches"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_commits_past_an_unacknowledged_batch() {
    let mock = cluster("held", 1);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "held", 0..100).await;
    let (ctx, metrics) = context("held");
    let (tx, mut rx) = mpsc::channel(16);
    // Batches are cut by count only: ids 0..9 hold offsets 10*id..10*id+9.
    let source = tokio::spawn(run(
        config(&bootstrap, "held", "g-held", 10, "1h"),
        tx,
        ctx.clone(),
        SourceLink::new("s"),
    ));

    let mut held: Option<Ack> = None;
    timeout(WAIT, async {
        let mut received = 0;
        while received < 100 {
            let batch = rx.recv().await.expect("source ended early");
            assert_eq!(batch.len(), 10);
            received += batch.len();
            if batch.ack.id() == 3 {
                assert_eq!(batch.events.get(0).unwrap().offset(), 30);
                held = Some(batch.ack.clone());
            }
            batch.release();
        }
    })
    .await
    .expect("all records arrive");
    let held = held.expect("batch 3 was seen");

    // Batches 0..2 are delivered, 3 is not, 4..9 are: the commit stops at 30.
    timeout(WAIT, async {
        loop {
            let b = bootstrap.clone();
            let (committed, _) =
                tokio::task::spawn_blocking(move || committed_and_end(&b, "g-held", "held", 1))
                    .await
                    .unwrap();
            if committed[0] == 30 {
                break;
            }
            assert!(
                committed[0] < 30,
                "committed past the held batch: {committed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the delivered prefix is committed");

    // librdkafka's consumer lag counts from the committed offset: the held
    // batch and everything after it.
    let lag = metrics.gauge("source.held.lag");
    until("a lag of 70", WAIT, || {
        lag.load(std::sync::atomic::Ordering::Relaxed) == 70
    })
    .await;

    // Shutdown waits for the held batch; failing it lets the source finish
    // without ever committing past it.
    ctx.shutdown.cancel();
    assert!(rx.recv().await.is_none(), "output closes after shutdown");
    assert!(!source.is_finished(), "the source waits for the held batch");
    held.fail();
    drop(held);
    timeout(WAIT, source)
        .await
        .expect("source stops")
        .unwrap()
        .expect("source succeeds");
    let (committed, end) = committed_and_end(&bootstrap, "g-held", "held", 1);
    assert_eq!((committed[0], end[0]), (30, 100));
    assert_eq!(metrics.get("source.held.undelivered_batches"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_batches_by_count() {
    let mock = cluster("count", 1);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "count", 0..35).await;
    let (ctx, metrics) = context("count");
    let (tx, mut rx) = mpsc::channel(16);
    // Cut by count and time only: a batch never leaves early.
    let config = KafkaSourceConfig {
        flush_when_idle: false,
        ..config(&bootstrap, "count", "g-count", 10, "1h")
    };
    let source = tokio::spawn(run(config, tx, ctx.clone(), SourceLink::new("s")));

    let mut sizes = Vec::new();
    let mut offsets = Vec::new();
    timeout(WAIT, async {
        while sizes.len() < 3 {
            let batch = rx.recv().await.expect("source ended early");
            sizes.push(batch.len());
            offsets.extend(batch.events.iter().map(|e| e.offset()));
            batch.release();
        }
    })
    .await
    .expect("three full batches");
    assert_eq!(sizes, vec![10, 10, 10]);

    // The last 5 records wait for the (hour-long) timer, or for shutdown.
    until("35 events", WAIT, || {
        metrics.get("source.count.events") == 35
    })
    .await;
    ctx.shutdown.cancel();
    let last = timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .expect("partial batch on shutdown");
    assert_eq!(last.len(), 5);
    offsets.extend(last.events.iter().map(|e| e.offset()));
    last.release();
    assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
    assert_eq!(offsets, (0..35).collect::<Vec<i64>>());
    timeout(WAIT, source).await.unwrap().unwrap().unwrap();
    let (committed, _) = committed_and_end(&bootstrap, "g-count", "count", 1);
    assert_eq!(committed, vec![35]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_batches_by_time() {
    let mock = cluster("time", 2);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "time", 0..7).await;
    let (ctx, _metrics) = context("time");
    let (tx, mut rx) = mpsc::channel(16);
    let config = KafkaSourceConfig {
        flush_when_idle: false,
        ..config(&bootstrap, "time", "g-time", 1000, "200ms")
    };
    let source = tokio::spawn(run(config, tx, ctx.clone(), SourceLink::new("s")));

    // Far fewer records than `batch_max_events`: only the timer hands them on.
    let mut received = 0;
    timeout(WAIT, async {
        while received < 7 {
            let batch = rx.recv().await.expect("source ended early");
            received += batch.len();
            batch.release();
        }
    })
    .await
    .expect("the timer flushes the partial batch");
    assert!(!ctx.shutdown.is_cancelled());
    ctx.shutdown.cancel();
    assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
    timeout(WAIT, source).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_a_partial_batch_on_when_processing_waits() {
    let mock = cluster("idle", 2);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "idle", 0..7).await;
    let (ctx, _metrics) = context("idle");
    let (tx, mut rx) = mpsc::channel(16);
    // Neither the count nor the hour-long timer would hand these 7 on.
    let source = tokio::spawn(run(
        config(&bootstrap, "idle", "g-idle", 1000, "1h"),
        tx,
        ctx.clone(),
        SourceLink::new("s"),
    ));

    let mut offsets = Vec::new();
    timeout(WAIT, async {
        while offsets.len() < 7 {
            let batch = rx.recv().await.expect("source ended early");
            offsets.extend(batch.events.iter().map(|e| (e.partition(), e.offset())));
            batch.release();
        }
    })
    .await
    .expect("the idle processing stage gets the partial batch");
    assert!(!ctx.shutdown.is_cancelled());
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 7, "each record once: {offsets:?}");
    ctx.shutdown.cancel();
    assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
    timeout(WAIT, source).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn embedded_without_a_broker_is_a_clear_error() {
    let (ctx, _metrics) = context("demo");
    let (tx, _rx) = mpsc::channel(1);
    let err = run(
        config("embedded", "t", "g", 10, "1s"),
        tx,
        ctx,
        SourceLink::new("s"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("[embedded_broker]"), "{err}");
}

/// Keys of the events a source handed on, shared with the collecting task.
type Keys = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Collects the keys of every batch a source hands on, acknowledging at once.
fn collect_keys(mut rx: mpsc::Receiver<Batch>) -> (tokio::task::JoinHandle<()>, Keys) {
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = keys.clone();
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let mut keys = sink.lock().unwrap();
            keys.extend(batch.events.iter().map(|e| e.key().unwrap().to_vec()));
            batch.release();
        }
    });
    (task, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_correct_when_a_second_member_joins() {
    let mock = cluster("shared", 3);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "shared", 0..300).await;

    let (ctx_a, metrics_a) = context("a");
    let (tx_a, rx_a) = mpsc::channel(4);
    // The mock coordinator waits up to a session timeout for members to
    // rejoin; keep it short.
    let member = || {
        let mut c = config(&bootstrap, "shared", "g-shared", 50, "20ms");
        c.kafka
            .insert("session.timeout.ms".into(), KafkaValue::Int(6000));
        c.kafka
            .insert("heartbeat.interval.ms".into(), KafkaValue::Int(500));
        c
    };
    let source_a = tokio::spawn(run(member(), tx_a, ctx_a.clone(), SourceLink::new("a")));
    let (task_a, keys_a) = collect_keys(rx_a);
    until("300 keys at the first member", WAIT, || {
        keys_a.lock().unwrap().len() >= 300
    })
    .await;

    // A second member joins: the group rebalances, the first member commits
    // what it delivered and gives up partitions.
    let (ctx_b, metrics_b) = context("b");
    let (tx_b, rx_b) = mpsc::channel(4);
    let source_b = tokio::spawn(run(member(), tx_b, ctx_b.clone(), SourceLink::new("b")));
    let (task_b, keys_b) = collect_keys(rx_b);
    produce(&bootstrap, "shared", 300..600).await;

    // Every record arrives at least once (duplicates are allowed around the
    // rebalance), and the group ends up committed at the end of each partition.
    let distinct = || {
        let mut all: Vec<Vec<u8>> = keys_a.lock().unwrap().clone();
        all.extend(keys_b.lock().unwrap().iter().cloned());
        all.sort();
        all.dedup();
        all.len()
    };
    until("600 distinct keys", WAIT, || distinct() == 600).await;
    let (committed, end) = timeout(WAIT, async {
        loop {
            let b = bootstrap.clone();
            let (committed, end) =
                tokio::task::spawn_blocking(move || committed_and_end(&b, "g-shared", "shared", 3))
                    .await
                    .unwrap();
            if committed == end {
                break (committed, end);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the group commits the end of every partition");
    assert_eq!(end.iter().sum::<i64>(), 600);
    assert_eq!(committed, end);
    // Each member's gauge counts what it holds after the revocation and the
    // new assignment: the three partitions, split between the two.
    let assigned = || {
        [
            metrics_a.gauge_value("source.a.assigned_partitions"),
            metrics_b.gauge_value("source.b.assigned_partitions"),
        ]
    };
    until("the partitions split between the members", WAIT, || {
        let [a, b] = assigned();
        a > 0 && b > 0 && a + b == 3
    })
    .await;

    ctx_a.shutdown.cancel();
    ctx_b.shutdown.cancel();
    for source in [source_a, source_b] {
        timeout(WAIT, source).await.unwrap().unwrap().unwrap();
    }
    task_a.await.unwrap();
    task_b.await.unwrap();
    let (committed, end) = committed_and_end(&bootstrap, "g-shared", "shared", 3);
    assert_eq!(committed, end);
}

/// Produces one record to partition 0 whose headers are `ok=1`, a key that
/// is not UTF-8 (`trace\xff`, added through librdkafka's C API: rdkafka's
/// own header type only takes `&str` keys) and `after=2`.
async fn produce_bad_header_key(bootstrap: &str, topic: &str) {
    use rdkafka::bindings as rdsys;
    use rdkafka::message::BorrowedHeaders;

    let headers = OwnedHeaders::new().insert(Header {
        key: "ok",
        value: Some("1"),
    });
    let bad: &[u8] = b"trace\xff";
    let value: &[u8] = b"v";
    // SAFETY: a `&BorrowedHeaders` is the address of librdkafka's header
    // list (rdkafka casts it so itself); `rd_kafka_header_add` copies name
    // and value, both valid for the call.
    let err = unsafe {
        let list =
            headers.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t;
        rdsys::rd_kafka_header_add(
            list,
            bad.as_ptr().cast(),
            bad.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(err, rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    let headers = headers.insert(Header {
        key: "after",
        value: Some("2"),
    });
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let record = FutureRecord::to(topic)
        .partition(0)
        .key("k")
        .payload("body")
        .headers(headers);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_that_is_not_utf8_is_dead_lettered_not_a_panic() {
    let mock = cluster("in", 1);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "in", 0..3).await;
    produce_bad_header_key(&bootstrap, "in").await;
    produce(&bootstrap, "in", 3..6).await;
    let (ctx, metrics) = context("orders");
    let (tx, mut rx) = mpsc::channel(4);
    let source = tokio::spawn(run(
        config(&bootstrap, "in", "g-bad-key", 100, "20ms"),
        tx,
        ctx.clone(),
        SourceLink::new("s"),
    ));
    let (mut events, mut rejected) = (Vec::new(), Vec::new());
    timeout(WAIT, async {
        while events.len() + rejected.len() < 7 {
            let batch = rx.recv().await.expect("source ended early");
            events.extend(seen(&batch));
            let Batch {
                ack, rejected: r, ..
            } = batch;
            rejected.extend(seen(&Batch::new(r, Ack::none())));
            ack.release();
        }
    })
    .await
    .expect("every record handed on");
    assert_eq!(events.len(), 6, "the other records are events as usual");
    assert_eq!(rejected.len(), 1);
    let r = &rejected[0];
    assert_eq!((r.offset, r.body.as_slice()), (3, &b"body"[..]));
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("ok").as_deref(), Some("1"));
    assert_eq!(
        header("trace\\xff").as_deref(),
        Some("v"),
        "{:?}",
        r.headers
    );
    assert_eq!(header("after").as_deref(), Some("2"));
    let reason = header("sluice.dead_letter.reason").expect("a reason");
    assert!(reason.contains("7472616365ff"), "{reason}");
    assert_eq!(metrics.get("source.orders.rejected"), 1);
    // Delivered like any batch: the offset after the record is committed.
    drop(rx);
    ctx.shutdown.cancel();
    let _ = timeout(WAIT, source).await.expect("source stops");
    let (committed, _) = committed_and_end(&bootstrap, "g-bad-key", "in", 1);
    assert_eq!(committed, [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_cannot_forge_the_hosts_headers() {
    let mock = cluster("forged", 1);
    let bootstrap = mock.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "sluice.lineage",
            value: Some("mask@0000000000000000"),
        })
        .insert(Header {
            key: "trace",
            value: Some("t-1"),
        })
        .insert(Header {
            key: "sluice.dead_letter.reason",
            value: Some("nothing to see"),
        });
    producer
        .send(
            FutureRecord::to("forged")
                .key("k")
                .payload("body")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    let (ctx, metrics) = context("forged");
    let (tx, mut rx) = mpsc::channel(4);
    let source = tokio::spawn(run(
        config(&bootstrap, "forged", "g-forged", 100, "20ms"),
        tx,
        ctx.clone(),
        SourceLink::new("s"),
    ));
    let batch = timeout(WAIT, rx.recv())
        .await
        .expect("a batch in time")
        .expect("source ended early");
    let events = seen(&batch);
    batch.release();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].headers,
        vec![("trace".to_owned(), b"t-1".to_vec())],
        "only the producer's own header is left"
    );
    assert_eq!(metrics.get("source.forged.host_headers_dropped"), 2);
    ctx.shutdown.cancel();
    timeout(WAIT, source).await.unwrap().unwrap().unwrap();
}

/// `config` with `bounded = { start, end }`.
fn bounded_config(
    bootstrap: &str,
    topic: &str,
    group: &str,
    start: BoundStart,
    end: BoundEnd,
) -> KafkaSourceConfig {
    KafkaSourceConfig {
        bounded: Some(Bounded { start, end }),
        ..config(bootstrap, topic, group, 100, "20ms")
    }
}

/// `{ "<topic>:<p>" = offset }`.
fn offsets(topic: &str, entries: &[(i32, i64)]) -> PartitionOffsets {
    PartitionOffsets(
        entries
            .iter()
            .map(|&(p, o)| ((topic.to_owned(), p), o))
            .collect(),
    )
}

/// A bounded source running on the mock cluster, and its output.
struct BoundedRun {
    source: tokio::task::JoinHandle<Result<(), SourceError>>,
    rx: mpsc::Receiver<Batch>,
    ctx: SourceContext,
    metrics: Arc<Metrics>,
}

impl BoundedRun {
    /// Starts source `name` of group `group` over `topic`, bounded by
    /// `start` and `end`.
    fn start(
        bootstrap: &str,
        (name, topic, group): (&str, &str, &str),
        start: BoundStart,
        end: BoundEnd,
    ) -> Self {
        let (ctx, metrics) = context(name);
        let (tx, rx) = mpsc::channel(4);
        let source = tokio::spawn(run(
            bounded_config(bootstrap, topic, group, start, end),
            tx,
            ctx.clone(),
            SourceLink::new("s"),
        ));
        Self {
            source,
            rx,
            ctx,
            metrics,
        }
    }

    /// The events of the first batch (released).
    async fn first_batch(&mut self) -> Vec<Seen> {
        let first = timeout(WAIT, self.rx.recv())
            .await
            .expect("a first batch")
            .expect("source ended early");
        let events = seen(&first);
        first.release();
        events
    }

    /// Every further event, until the source ends on its own with `Ok`.
    async fn finish(&mut self) -> Vec<Seen> {
        let events = receive_to_the_end(&mut self.rx).await;
        timeout(WAIT, &mut self.source)
            .await
            .expect("the source ends on its own")
            .unwrap()
            .expect("a bounded run ends with Ok");
        events
    }
}

/// Receives every batch until the source closes its output (a bounded
/// source does when it ends), releasing each; returns the events.
async fn receive_to_the_end(rx: &mut mpsc::Receiver<Batch>) -> Vec<Seen> {
    timeout(WAIT, async {
        let mut events = Vec::new();
        while let Some(batch) = rx.recv().await {
            events.extend(seen(&batch));
            batch.release();
        }
        events
    })
    .await
    .expect("the bounded source ends and closes its output")
}

/// `(partition, offset)` of `events`, sorted.
fn positions(events: &[Seen]) -> Vec<(i32, i64)> {
    let mut out: Vec<(i32, i64)> = events.iter().map(|e| (e.partition, e.offset)).collect();
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_end_at_start_leaves_later_records_unread() {
    let mock = cluster("b-end", 3);
    let bootstrap = mock.bootstrap_servers();
    let placed = produce(&bootstrap, "b-end", 0..300).await;
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("backfill", "b-end", "g-b-end"),
        BoundStart::Earliest,
        BoundEnd::EndAtStart,
    );
    // The first batch comes after the ends were fixed: what is produced
    // from now on is past them.
    let mut events = bounded.first_batch().await;
    let later = produce(&bootstrap, "b-end", 300..400).await;
    events.extend(bounded.finish().await);
    assert!(
        !bounded.ctx.shutdown.is_cancelled(),
        "no shutdown was needed"
    );
    let metrics = &bounded.metrics;

    let mut expected = placed.clone();
    expected.sort_unstable();
    assert_eq!(
        positions(&events),
        expected,
        "every record there at the start, once"
    );
    let keys: std::collections::HashSet<&[u8]> =
        events.iter().filter_map(|e| e.key.as_deref()).collect();
    assert!(
        (300..400).all(|i| !keys.contains(format!("k{i}").as_bytes())),
        "a record produced after the start was read"
    );
    assert_eq!(later.len(), 100);

    // Committed at the ends fixed at the start, not at today's ends.
    let (committed, end) = committed_and_end(&bootstrap, "g-b-end", "b-end", 3);
    let mut at_start = vec![0i64; 3];
    for (p, o) in &placed {
        at_start[*p as usize] = at_start[*p as usize].max(o + 1);
    }
    assert_eq!(committed, at_start);
    assert_eq!(end.iter().sum::<i64>(), 400);
    let ranges = metrics.ranges().all();
    assert_eq!(ranges.len(), 3);
    for r in &ranges {
        assert_eq!((r.source.as_str(), r.topic.as_str()), ("backfill", "b-end"));
        assert_eq!((r.start, r.end), (0, at_start[r.partition as usize]));
        assert_eq!(r.events, r.end as u64);
        assert!(r.complete);
    }
    assert_eq!(
        metrics.gauge_value("source.backfill.bounded_partitions_left"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_offset_tables_fix_each_partitions_range() {
    let mock = cluster("b-tab", 3);
    let bootstrap = mock.bootstrap_servers();
    let placed = produce(&bootstrap, "b-tab", 0..300).await;
    let mut count = [0i64; 3];
    for (p, _) in &placed {
        count[*p as usize] += 1;
    }
    assert!(count.iter().all(|&n| n >= 30), "{count:?}");
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("tab", "b-tab", "g-b-tab"),
        BoundStart::Offsets(offsets("b-tab", &[(0, 10), (1, 0), (2, 7)])),
        // Partition 2: an empty range, done at once.
        BoundEnd::Offsets(offsets("b-tab", &[(0, 25), (1, 30), (2, 7)])),
    );
    let events = bounded.finish().await;
    let metrics = &bounded.metrics;
    let expected: Vec<(i32, i64)> = (10..25)
        .map(|o| (0, o))
        .chain((0..30).map(|o| (1, o)))
        .collect();
    assert_eq!(positions(&events), expected);
    let ranges: Vec<(i32, i64, i64, u64, bool)> = metrics
        .ranges()
        .all()
        .iter()
        .map(|r| (r.partition, r.start, r.end, r.events, r.complete))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (0, 10, 25, 15, true),
            (1, 0, 30, 30, true),
            (2, 7, 7, 0, true)
        ]
    );
    let (committed, _) = committed_and_end(&bootstrap, "g-b-tab", "b-tab", 3);
    assert_eq!(committed, vec![25, 30, -1], "nothing read of partition 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_time_end_with_no_later_record_is_the_end_at_start() {
    let mock = cluster("b-time", 2);
    let bootstrap = mock.bootstrap_servers();
    let placed = produce(&bootstrap, "b-time", 0..50).await;
    // No record is this recent: each partition ends at its high watermark.
    let tomorrow = chrono::Utc::now().timestamp_millis() + 86_400_000;
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("time", "b-time", "g-b-time"),
        BoundStart::Committed,
        BoundEnd::Time(tomorrow),
    );
    let mut events = bounded.first_batch().await;
    produce(&bootstrap, "b-time", 50..80).await;
    events.extend(bounded.finish().await);
    let mut expected = placed;
    expected.sort_unstable();
    assert_eq!(positions(&events), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_empty_ranges_end_at_once() {
    let mock = cluster("b-empty", 2);
    let bootstrap = mock.bootstrap_servers();
    // Nothing in the topic: the end at the start is 0.
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("empty", "b-empty", "g-b-empty"),
        BoundStart::Committed,
        BoundEnd::EndAtStart,
    );
    assert!(bounded.finish().await.is_empty());
    let ranges: Vec<(i32, i64, i64, bool)> = bounded
        .metrics
        .ranges()
        .all()
        .iter()
        .map(|r| (r.partition, r.start, r.end, r.complete))
        .collect();
    assert_eq!(ranges, vec![(0, 0, 0, true), (1, 0, 0, true)]);

    // Records there, but a start time later than all of them: empty too.
    produce(&bootstrap, "b-empty", 0..20).await;
    let later = chrono::Utc::now().timestamp_millis() + 86_400_000;
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("late", "b-empty", "g-b-empty-2"),
        BoundStart::Time(later),
        BoundEnd::EndAtStart,
    );
    assert!(bounded.finish().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_tables_must_match_the_topics_partitions() {
    let mock = cluster("b-bad", 2);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "b-bad", 0..10).await;
    let cases = [
        (
            BoundStart::Earliest,
            BoundEnd::Offsets(offsets("b-bad", &[(0, 5)])),
            "`bounded.end` gives no offset for \"b-bad:1\"",
        ),
        (
            BoundStart::Offsets(offsets("b-bad", &[(0, 0), (1, 0), (2, 0)])),
            BoundEnd::EndAtStart,
            "`bounded.start` names \"b-bad:2\", which does not exist (`b-bad` has 2 partitions)",
        ),
        (
            BoundStart::Offsets(offsets("b-bad", &[(0, 500), (1, 0)])),
            BoundEnd::Offsets(offsets("b-bad", &[(0, 900), (1, 9)])),
            "`bounded.start` of \"b-bad:0\" is 500, past the partition's end of log",
        ),
    ];
    for (start, end, expected) in cases {
        let (ctx, _metrics) = context("bad");
        let (tx, _rx) = mpsc::channel(4);
        let err = timeout(
            WAIT,
            run(
                bounded_config(&bootstrap, "b-bad", "g-b-bad", start, end),
                tx,
                ctx,
                SourceLink::new("s"),
            ),
        )
        .await
        .expect("fails at once")
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.starts_with("source `bad`: "), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_before_the_end_stops_a_bounded_source_as_usual() {
    let mock = cluster("b-stop", 1);
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, "b-stop", 0..50).await;
    // The end is past the log: the run waits for records that never come.
    let mut bounded = BoundedRun::start(
        &bootstrap,
        ("stop", "b-stop", "g-b-stop"),
        BoundStart::Earliest,
        BoundEnd::Offsets(offsets("b-stop", &[(0, 1000)])),
    );
    let mut read = 0;
    while read < 50 {
        read += bounded.first_batch().await.len();
    }
    bounded.ctx.shutdown.cancel();
    assert!(bounded.finish().await.is_empty());
    let metrics = &bounded.metrics;
    let (committed, _) = committed_and_end(&bootstrap, "g-b-stop", "b-stop", 1);
    assert_eq!(committed, vec![50]);
    let ranges = metrics.ranges().all();
    assert_eq!(
        ranges
            .iter()
            .map(|r| (r.start, r.next, r.end, r.events, r.complete))
            .collect::<Vec<_>>(),
        vec![(0, 50, 1000, 50, false)]
    );
}
