//! Probes whether the broker at `SLUICE_TEST_KAFKA_TXN` (the Apache Kafka
//! broker of `scripts/services.sh`), or else `SLUICE_TEST_KAFKA`, supports what the
//! exactly-once Kafka sink needs: a transactional producer (InitProducerId
//! with a `transactional.id`, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn) and consumers reading `read_committed` (aborted
//! records hidden). Prints each step's outcome.
//!
//! Found here: Apache Kafka passes every step; librdkafka's mock cluster
//! speaks the whole protocol but keeps no transaction state (offsets sent to
//! a transaction are not stored, aborted records stay visible to
//! `read_committed`); tansu 0.6.0 (no longer used by the tests) had no
//! EndTxn (API key 26), so a transaction could be neither committed nor
//! aborted. The probe of `SLUICE_TEST_KAFKA_TXN` must pass; that of
//! `SLUICE_TEST_KAFKA` fails only with `SLUICE_REQUIRE_TXN=1`, which also
//! makes a missing `SLUICE_TEST_KAFKA_TXN` a failure.
//!
//! Run: `scripts/services.sh start; source target/services.env;
//! cargo test -p sluice-tests --test kafka_transactions_probe -- --nocapture`.

use sluice_tests::{create_topic, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_supports_transactions_and_read_committed() -> anyhow::Result<()> {
    let require = std::env::var("SLUICE_REQUIRE_TXN").as_deref() == Ok("1");
    let txn = std::env::var("SLUICE_TEST_KAFKA_TXN").ok();
    assert!(
        txn.is_some() || !require,
        "SLUICE_REQUIRE_TXN=1 but SLUICE_TEST_KAFKA_TXN is not set (scripts/services.sh start)"
    );
    let must_pass = txn.is_some() || require;
    let Some(bootstrap) = txn.or_else(|| std::env::var("SLUICE_TEST_KAFKA").ok()) else {
        eprintln!("skipped: neither SLUICE_TEST_KAFKA_TXN nor SLUICE_TEST_KAFKA is set");
        return Ok(());
    };
    let input = unique("probe-in");
    let output = unique("probe-out");
    let group = unique("probe-group");
    create_topic(&bootstrap, &input, 1).await?;
    create_topic(&bootstrap, &output, 1).await?;
    let gaps = tokio::task::spawn_blocking(move || {
        sluice_tests::probe_transactions(&bootstrap, &input, &output, &group)
    })
    .await??;
    eprintln!("broker lacks: {gaps:?}");
    if must_pass {
        assert!(gaps.is_empty(), "the broker lacks {gaps:?}");
    }
    Ok(())
}

/// The same probe against librdkafka's mock cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_speaks_the_transaction_protocol() -> anyhow::Result<()> {
    let gaps = tokio::task::spawn_blocking(|| -> anyhow::Result<Vec<String>> {
        let mock = rdkafka::mocking::MockCluster::new(1)?;
        mock.create_topic("probe-in", 1, 1)?;
        mock.create_topic("probe-out", 1, 1)?;
        sluice_tests::probe_transactions(
            &mock.bootstrap_servers(),
            "probe-in",
            "probe-out",
            "probe-group",
        )
    })
    .await??;
    eprintln!("mock cluster lacks: {gaps:?}");
    // The protocol is all there; the state behind it is not.
    assert!(gaps.iter().all(|g| g.starts_with("semantics:")), "{gaps:?}");
    Ok(())
}
