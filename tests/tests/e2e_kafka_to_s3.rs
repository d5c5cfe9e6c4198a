//! End to end through real protocols: 100 000 card transactions in the seed
//! format are produced to a 3-partition topic on a real broker (Apache Kafka); Sluice
//! decodes, masks and time-stamps them and writes `jsonl` to a real S3 server
//! (moto) under `%{topic}/dt=%Y-%m-%d/hr=%H`, rolling by size and interval.
//! The test reads every object back and checks that every transaction is
//! there exactly once, no card number is visible, every file holds what its
//! name says, and the committed offsets equal the end offsets.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::topology::{self, RunOptions};
use sluice_tests::{create_topic, plugin, read_all, s3, services, unique};

const EVENTS: usize = 100_000;
const PARTITIONS: i32 = 3;

fn transaction(i: usize) -> (String, String, String) {
    let id = format!(
        "{:08x}-7a1e-4c0d-9e2b-{:012x}",
        i,
        i.wrapping_mul(2_654_435_761) % (1 << 48)
    );
    let card = format!(
        "4{:015}",
        (i as u64).wrapping_mul(7_919_000_003) % 1_000_000_000_000_000
    );
    // Spread over six hours of one day so the data lands in several partitions.
    let hour = i % 6;
    let line = format!(
        "{id}|{card}|2014-10-14 {hour:02}:{:02}:{:02}|{}.{:02}|{}",
        i % 60,
        (i / 60) % 60,
        i % 500,
        i % 100,
        1000 + i % 700
    );
    (id, card, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_land_in_s3_decoded_masked_and_committed() -> anyhow::Result<()> {
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("card-tx");
    let group = unique("e2e");
    let prefix = unique("lake");
    create_topic(&services.kafka, &topic, PARTITIONS).await?;

    // Produce the transactions.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let mut cards = HashSet::new();
    let mut ids = HashSet::new();
    let mut pending = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let (id, card, line) = transaction(i);
        let record = FutureRecord::to(&topic).key(&id).payload(&line);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        cards.insert(card);
        ids.insert(id);
    }
    // End offsets from the delivery reports: the producer's own
    // acknowledgements are the reference.
    let mut end_offsets: HashMap<i32, i64> = HashMap::new();
    for delivery in pending {
        let rdkafka::producer::future_producer::Delivery {
            partition, offset, ..
        } = delivery.await?.map_err(|(e, _)| e)?;
        let end = end_offsets.entry(partition).or_default();
        *end = (*end).max(offset + 1);
    }

    // Run Sluice until it has been idle for a while (batch mode).
    let config_text = format!(
        r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 2000
decoder = "decode"
interceptors = ["mask", "stamp"]
channels = ["lake"]
dead_letter = "rejects"

[plugins.decode]
type = "decoder"
path = "{decode}"
config = {{ delimiter = "|", fields = [
  {{ name = "id", type = "string" }},
  {{ name = "card", type = "string" }},
  {{ name = "time", type = "string" }},
  {{ name = "amount", type = "float" }},
  {{ name = "store", type = "int" }},
] }}

[plugins.mask]
type = "interceptor"
path = "{mask}"
config = {{ fields = ["card"], keep_last = 4 }}

[plugins.stamp]
type = "interceptor"
path = "{stamp}"
config = {{ source = "field", field = "time", format = "%Y-%m-%d %H:%M:%S" }}

[channels.lake]
type = "memory"

[channels.rejects]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "s3://{bucket}/{prefix}"
path = "%{{topic}}/dt=%Y-%m-%d/hr=%H"
format = "jsonl"
roll_size = "256KiB"
roll_interval = "2s"
s3 = {{ endpoint = "{s3}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}

[sinks.rejects]
type = "null"
channel = "rejects"
"#,
        kafka = services.kafka,
        bucket = services.bucket,
        s3 = services.s3,
        decode = plugin("delimited").display(),
        mask = plugin("mask").display(),
        stamp = plugin("timestamp").display(),
    );
    let config = sluice::config::parse(std::path::Path::new("e2e.toml"), &config_text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = tokio::time::timeout(
        Duration::from_secs(300),
        topology::run(
            config,
            RunOptions {
                exit_when_idle: Some(Duration::from_secs(3)),
                ..Default::default()
            },
        ),
    )
    .await??;
    assert_eq!(
        metrics.get("sink.rejects.events"),
        0,
        "no valid transaction may be dead-lettered"
    );

    // Read everything back.
    let store = s3(&services)?;
    let objects = read_all(&store, &prefix).await?;
    assert!(
        objects.len() > 10,
        "size and interval rolls should give many files, got {}",
        objects.len()
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (path, bytes) in &objects {
        let name = path.rsplit('/').next().unwrap_or_default();
        assert!(
            !name.starts_with('.') && !name.starts_with('_'),
            "in-progress object visible: {path}"
        );
        let stem = name
            .strip_suffix(".jsonl")
            .unwrap_or_else(|| panic!("unexpected object {path}"));
        let mut parts = stem.split('+');
        let (file_topic, file_partition, file_offset) = (
            parts.next().unwrap_or_default(),
            parts
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .expect("partition in name"),
            parts
                .next()
                .and_then(|p| p.parse::<i64>().ok())
                .expect("offset in name"),
        );
        assert_eq!(file_topic, topic);
        let text = std::str::from_utf8(bytes)?;
        // No card number survives anywhere in the file.
        for run in text.split(|c: char| !c.is_ascii_digit()) {
            assert!(!cards.contains(run), "unmasked card {run} in {path}");
        }
        let mut last_offset = None;
        for (n, line) in text.lines().enumerate() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            assert_eq!(record["topic"], topic.as_str(), "{path}:{n}");
            assert_eq!(record["partition"], file_partition, "{path}:{n}");
            let offset = record["offset"].as_i64().expect("offset");
            if n == 0 {
                assert_eq!(
                    offset, file_offset,
                    "{path}: first offset differs from the name"
                );
            }
            assert!(
                last_offset.is_none_or(|l| offset > l),
                "{path}: offsets not ascending"
            );
            last_offset = Some(offset);
            let value = &record["value"];
            let card = value["card"].as_str().expect("card");
            assert!(
                card.len() == 16
                    && card[..12].chars().all(|c| c == '*')
                    && card[12..].chars().all(|c| c.is_ascii_digit()),
                "{path}:{n}: card not masked to its last 4 digits: {card}"
            );
            let time = value["time"].as_str().expect("time");
            let (date, hour) = (&time[..10], &time[11..13]);
            assert!(
                path.contains(&format!("/dt={date}/hr={hour}/")),
                "{path}:{n}: record time {time} in the wrong partition"
            );
            *seen
                .entry(value["id"].as_str().expect("id").to_owned())
                .or_default() += 1;
        }
    }
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(missing, 0, "{missing} transactions missing");
    assert_eq!(
        duplicated, 0,
        "{duplicated} transactions written more than once"
    );
    assert_eq!(seen.len(), EVENTS);

    // The group's committed offsets equal the end offsets.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("group.id", &group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    for p in 0..PARTITIONS {
        let end = end_offsets.get(&p).copied().unwrap_or(0);
        let got = committed.find_partition(&topic, p).map(|e| e.offset());
        assert_eq!(
            got,
            Some(Offset::Offset(end)),
            "partition {p}: committed offset is not the end offset"
        );
    }
    assert_eq!(end_offsets.values().sum::<i64>() as usize, EVENTS);
    Ok(())
}
