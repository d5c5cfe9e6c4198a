//! Probes whether the broker at `SLUICE_TEST_KAFKA` supports what the
//! exactly-once Kafka sink needs: a transactional producer (InitProducerId
//! with a `transactional.id`, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn) and consumers reading `read_committed` (aborted
//! records hidden). Prints each step's outcome; fails on the first missing
//! piece so the report names it.
//!
//! Run: `scripts/services.sh start; source target/services.env;
//! cargo test -p sluice-tests --test kafka_transactions_probe -- --nocapture`.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice_tests::{create_topic, unique};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_supports_transactions_and_read_committed() -> anyhow::Result<()> {
    let Ok(bootstrap) = std::env::var("SLUICE_TEST_KAFKA") else {
        eprintln!("skipped: SLUICE_TEST_KAFKA is not set");
        return Ok(());
    };
    let input = unique("probe-in");
    let output = unique("probe-out");
    let group = unique("probe-group");
    create_topic(&bootstrap, &input, 1).await?;
    create_topic(&bootstrap, &output, 1).await?;
    tokio::task::spawn_blocking(move || probe(&bootstrap, &input, &output, &group)).await?
}

/// The same probe against librdkafka's mock cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_supports_transactions_and_read_committed() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| {
        let mock = rdkafka::mocking::MockCluster::new(1)?;
        mock.create_topic("probe-in", 1, 1)?;
        mock.create_topic("probe-out", 1, 1)?;
        probe(
            &mock.bootstrap_servers(),
            "probe-in",
            "probe-out",
            "probe-group",
        )
    })
    .await?
}

fn step<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> anyhow::Result<T> {
    match r {
        Ok(v) => {
            eprintln!("probe: {name}: ok");
            Ok(v)
        }
        Err(e) => {
            eprintln!("probe: {name}: FAILED: {e}");
            anyhow::bail!("{name}: {e}")
        }
    }
}

fn probe(bootstrap: &str, input: &str, output: &str, group: &str) -> anyhow::Result<()> {
    // A group member, for its group metadata.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&[input])?;
    let deadline = Instant::now() + T;
    while consumer.assignment()?.count() == 0 && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    step(
        "join group (JoinGroup/SyncGroup)",
        if consumer.assignment()?.count() > 0 {
            Ok(())
        } else {
            Err("no assignment")
        },
    )?;
    let metadata = step(
        "consumer group metadata",
        consumer.group_metadata().ok_or("none"),
    )?;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{group}-txn"))
        .set("transaction.timeout.ms", "30000")
        .create()?;
    step(
        "InitProducerId with transactional.id (init_transactions)",
        producer.init_transactions(T),
    )?;

    // A committed transaction with offsets.
    step("begin_transaction", producer.begin_transaction())?;
    step(
        "produce in transaction (AddPartitionsToTxn + Produce)",
        producer
            .send(BaseRecord::<(), _>::to(output).payload("committed"))
            .map_err(|(e, _)| e),
    )?;
    step("flush", producer.flush(T))?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(input, 0, Offset::Offset(42))?;
    step(
        "send_offsets_to_transaction (AddOffsetsToTxn + TxnOffsetCommit)",
        producer.send_offsets_to_transaction(&offsets, &metadata, T),
    )?;
    step(
        "commit_transaction (EndTxn commit)",
        producer.commit_transaction(T),
    )?;

    // An aborted transaction.
    step("begin_transaction (2)", producer.begin_transaction())?;
    step(
        "produce in transaction (2)",
        producer
            .send(BaseRecord::<(), _>::to(output).payload("aborted"))
            .map_err(|(e, _)| e),
    )?;
    step("flush (2)", producer.flush(T))?;
    step(
        "abort_transaction (EndTxn abort)",
        producer.abort_transaction(T),
    )?;

    // And a last committed one, after the aborted records.
    step("begin_transaction (3)", producer.begin_transaction())?;
    producer
        .send(BaseRecord::<(), _>::to(output).payload("committed-2"))
        .map_err(|(e, _)| e)?;
    step("commit_transaction (3)", producer.commit_transaction(T))?;

    // The offsets sent to the transaction are the group's committed ones.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(input, 0);
    let committed = step(
        "OffsetFetch of the transaction's offsets",
        consumer.committed_offsets(tpl, T),
    )?;
    let got = committed
        .find_partition(input, 0)
        .map(|e| e.offset())
        .unwrap_or(Offset::Invalid);
    step(
        "committed offset is the one sent to the transaction",
        if got == Offset::Offset(42) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        },
    )?;

    // read_committed hides the aborted record; read_uncommitted shows it.
    let read = |isolation: &str| -> anyhow::Result<Vec<String>> {
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("probe-reader"))
            .set("isolation.level", isolation)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(output, 0, Offset::Beginning)?;
        reader.assign(&tpl)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(m) = reader.poll(Duration::from_millis(100)) {
                let m = m?;
                out.push(String::from_utf8_lossy(m.payload().unwrap_or(&[])).into_owned());
            }
        }
        Ok(out)
    };
    let committed_view = read("read_committed")?;
    let uncommitted_view = read("read_uncommitted")?;
    eprintln!("probe: read_committed sees {committed_view:?}");
    eprintln!("probe: read_uncommitted sees {uncommitted_view:?}");
    step(
        "read_committed hides aborted records",
        if committed_view == ["committed", "committed-2"] {
            Ok(())
        } else {
            Err(format!("{committed_view:?}"))
        },
    )?;
    Ok(())
}
