//! Scenarios: lookup tables stay current.
//!
//! - A file table is swapped in whole when its file is replaced (write to a
//!   temporary file, rename it over the table's file), and a file that fails
//!   to parse leaves the previous content in place without stopping the
//!   watcher.
//! - A Kafka table follows a (compacted) topic over a real broker (Apache Kafka):
//!   every partition from the beginning, then updates and deletions (a record
//!   with an empty or null value) as they arrive.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice::lookup::LookupTable;
use sluice::lookup::config::{FileLookupConfig, KafkaLookupConfig};
use sluice::metrics::Metrics;
use sluice::plugin::Registry;
use sluice::plugin::engine::PluginEngine;
use sluice::plugin::reload::{WatchSet, WatchedTable};
use sluice_tests::stream::until;
use sluice_tests::{create_topic, services, unique};

/// Replaces `path` atomically, the way an operator should deploy a table.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The CSV row stored under `key`, parsed.
fn row(table: &LookupTable, key: &str) -> Option<Value> {
    table
        .get(key)
        .map(|v| serde_json::from_str(&v).expect("a CSV row is stored as a JSON object"))
}

const WATCH_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_table_is_reloaded_when_its_file_changes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cards_path = dir.path().join("cards.csv");
    std::fs::write(
        &cards_path,
        "card,home,limit\n4111,Berlin,500\n5500,Paris,900\n",
    )?;
    // A second table in the same directory, listed after the first: once a
    // change to it is visible, the watcher has finished with every earlier
    // change to `cards.csv` (events are handled in order, and the tables of
    // one batch in the order of `tables`).
    let marks_path = dir.path().join("marks.csv");
    std::fs::write(&marks_path, "id,n\nmark,0\n")?;

    let cards_config = FileLookupConfig {
        path: cards_path.clone(),
        format: None,
        key: "card".into(),
    };
    let marks_config = FileLookupConfig {
        path: marks_path.clone(),
        format: None,
        key: "id".into(),
    };
    let cards = Arc::new(LookupTable::new("cards"));
    cards.replace(sluice::lookup::file::load(&cards_config).map_err(anyhow::Error::msg)?);
    let marks = Arc::new(LookupTable::new("marks"));
    marks.replace(sluice::lookup::file::load(&marks_config).map_err(anyhow::Error::msg)?);
    assert_eq!(cards.len(), 2);
    assert_eq!(
        row(&cards, "4111"),
        Some(json!({"card": "4111", "home": "Berlin", "limit": "500"}))
    );

    let _watcher = sluice::plugin::reload::watch(WatchSet {
        registry: Registry::new(None),
        engine: PluginEngine::new()?,
        tables: vec![
            WatchedTable {
                file: watched(cards_config),
                table: cards.clone(),
            },
            WatchedTable {
                file: watched(marks_config),
                table: marks.clone(),
            },
        ],
        resume_dir: dir.path().join("control"),
        resume: BTreeMap::new(),
    })
    .map_err(anyhow::Error::msg)?;

    // A changed row and a new row: the new content is swapped in whole.
    replace_file(
        &cards_path,
        "card,home,limit\n4111,Berlin,750\n5500,Paris,900\n6011,Madrid,300\n",
    )?;
    until("the changed file is loaded", WATCH_WITHIN, || {
        cards.len() == 3
    })
    .await?;
    let good = [
        (
            "4111",
            json!({"card": "4111", "home": "Berlin", "limit": "750"}),
        ),
        (
            "5500",
            json!({"card": "5500", "home": "Paris", "limit": "900"}),
        ),
        (
            "6011",
            json!({"card": "6011", "home": "Madrid", "limit": "300"}),
        ),
    ];
    for (key, value) in &good {
        assert_eq!(row(&cards, key).as_ref(), Some(value), "key {key}");
    }

    // A file without the key column is refused; the previous content stays.
    replace_file(&cards_path, "number,home,limit\n4111,Berlin,1\n")?;
    replace_file(&marks_path, "id,n\nmark,1\n")?;
    until(
        "the watcher has handled the malformed file",
        WATCH_WITHIN,
        || row(&marks, "mark").is_some_and(|r| r["n"] == "1"),
    )
    .await?;
    assert_eq!(cards.len(), 3, "a malformed file must not be swapped in");
    for (key, value) in &good {
        assert_eq!(row(&cards, key).as_ref(), Some(value), "key {key}");
    }

    // The refusal did not stop the watcher: the next valid file lands.
    replace_file(&cards_path, "card,home,limit\n4111,Berlin,1000\n")?;
    until("the next valid file is loaded", WATCH_WITHIN, || {
        cards.len() == 1
    })
    .await?;
    assert_eq!(
        row(&cards, "4111"),
        Some(json!({"card": "4111", "home": "Berlin", "limit": "1000"}))
    );
    assert_eq!(cards.get("5500"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_table_follows_a_compacted_topic() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("lookup");
    create_topic(&services.kafka, &topic, 3).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("linger.ms", "5")
        .create()?;

    // Enough keys that every one of the 3 partitions holds some.
    let mut expected: BTreeMap<String, String> = (0..30)
        .map(|i| {
            let card = format!("card-{i}");
            let value = json!({"card": card, "home": format!("city-{i}")}).to_string();
            (card, value)
        })
        .collect();
    let mut pending = Vec::new();
    for (card, value) in &expected {
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic).key(card).payload(value))
                .map_err(|(e, _)| e)?,
        );
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }

    let table = Arc::new(LookupTable::new(&unique("cards")));
    let metrics = Metrics::default();
    let follower = sluice::lookup::kafka::follow(
        &KafkaLookupConfig {
            bootstrap_servers: services.kafka.clone(),
            topic: topic.clone(),
            properties: Default::default(),
        },
        &services.kafka,
        table.clone(),
        &metrics,
    )
    .map_err(anyhow::Error::msg)?;

    let matches = |table: &LookupTable, expected: &BTreeMap<String, String>| {
        table.len() == expected.len()
            && expected
                .iter()
                .all(|(k, v)| table.get(k).as_deref() == Some(v.as_str()))
    };
    until(
        "every key is read from the beginning",
        Duration::from_secs(30),
        || matches(&table, &expected),
    )
    .await?;

    // An update, a tombstone with an empty value and one with no value at all.
    let updated = json!({"card": "card-3", "home": "elsewhere"}).to_string();
    producer
        .send(
            FutureRecord::to(&topic).key("card-3").payload(&updated),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    producer
        .send(
            FutureRecord::to(&topic).key("card-7").payload(""),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    producer
        .send(
            FutureRecord::<str, str>::to(&topic).key("card-11"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    expected.insert("card-3".into(), updated);
    expected.remove("card-7");
    expected.remove("card-11");
    until(
        "the update and both deletions are applied",
        Duration::from_secs(30),
        || matches(&table, &expected),
    )
    .await?;
    assert_eq!(table.get("card-7"), None);
    assert_eq!(table.get("card-11"), None);
    assert_eq!(
        metrics.get(&format!("lookup.{}.refused", table.name())),
        0,
        "no record was refused"
    );
    drop(follower);
    Ok(())
}

/// The watcher's view of a file table: its path and how to load it.
fn watched(config: FileLookupConfig) -> sluice::lookup::WatchedFile {
    sluice::lookup::WatchedFile {
        path: config.path.clone(),
        reload: std::sync::Arc::new(move || {
            sluice::lookup::file::load(&config).map_err(Into::into)
        }),
    }
}
