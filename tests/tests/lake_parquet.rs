//! Kafka → Parquet tables on S3, exactly once across `kill -9`, read back by
//! real readers (DuckDB through its Hive partitioning, PyArrow), on the
//! reference broker (Apache Kafka) and a real S3 server (moto).
//!
//! 30 000 records with keys (every 10th without), headers and nested JSON
//! values go to a 3-partition topic, paced over [`STREAM`], with event
//! times spread over two and a half hours (`dt=/hr=` partitions 00, 01,
//! 02). An agent writes them through a column spec of metadata, JSON-path,
//! header and constant columns into Parquet with size and interval rolls,
//! `exactly_once` and `_SUCCESS` markers; it is killed with SIGKILL twice
//! mid-stream and restarted. Then:
//!
//! - DuckDB reads every record exactly once, every column with its type and
//!   the value it was produced with (a JSON `amount` that is no number is
//!   null, as `on_type_mismatch = "null"` says), `dt`/`hr` matching the
//!   event time;
//! - PyArrow reads every file's schema (Arrow types, codec, statistics);
//! - `_SUCCESS` is in hours 00 and 01 (complete: the watermark passed their
//!   end plus the allowed lateness) and not in 02, and each was written after
//!   every data file of its hour;
//! - the DuckDB view `sluice ddl --dialect duckdb` prints, pointed at the
//!   same files, returns the same rows with the column types of the spec.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::TryStreamExt;
use object_store::ObjectStore;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use sluice_tests::stream::{Deadline, Record, produce_paced};
use sluice_tests::{
    committed_end, create_topic, mirror, published_end, read_lake, s3, services, unique,
};

const EVENTS: usize = 30_000;
const PARTITIONS: i32 = 3;
/// How long the records take to produce: both kills land mid-stream.
const STREAM: Duration = Duration::from_secs(48);
/// Event time of record 0: 2026-01-01T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000;
/// Event times span 150 minutes: hours 00 and 01 whole, 02 half.
const SPAN_MS: i64 = 150 * 60_000;
const AGENT_ENV: &str = "SLUICE_TEST_LAKE_AGENT_CONFIG";

/// Not a test of its own: the body of an agent process.
#[test]
fn agent_process() {
    sluice_tests::run_agent_if_asked(AGENT_ENV);
}

fn time_of(i: usize) -> i64 {
    BASE_MS + (i as i64) * SPAN_MS / EVENTS as i64
}

fn value_of(i: usize) -> Value {
    let amount = if i % 1000 == 7 {
        json!("n/a")
    } else {
        json!(i as f64 * 0.25)
    };
    json!({
        "id": format!("e-{i:06}"),
        "user": {"name": format!("u{}", i % 50), "tags": ["a", format!("t{}", i % 3)]},
        "items": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": i % 7}],
        "amount": amount,
        "flag": i.is_multiple_of(2),
    })
}

fn key_of(i: usize) -> Option<String> {
    (i % 10 != 3).then(|| format!("k-{i}"))
}

const COLUMNS: &str = r#"
[[sinks.lake.columns]]
name = "event_id"
type = "string"
from = "json:id"
[[sinks.lake.columns]]
name = "user_name"
type = "string"
from = "json:user.name"
[[sinks.lake.columns]]
name = "tags"
type = "json"
from = "json:user.tags"
[[sinks.lake.columns]]
name = "second_qty"
type = "long"
from = "json:items[1].qty"
[[sinks.lake.columns]]
name = "amount"
type = "double"
from = "json:amount"
[[sinks.lake.columns]]
name = "flag"
type = "boolean"
from = "json:flag"
[[sinks.lake.columns]]
name = "record_key"
type = "string"
from = "key"
[[sinks.lake.columns]]
name = "trace"
type = "string"
from = "header:trace"
[[sinks.lake.columns]]
name = "all_headers"
type = "json"
from = "headers"
[[sinks.lake.columns]]
name = "kafka_partition"
type = "int"
from = "partition"
[[sinks.lake.columns]]
name = "kafka_offset"
type = "long"
from = "offset"
[[sinks.lake.columns]]
name = "event_time"
type = "timestamp"
from = "timestamp"
[[sinks.lake.columns]]
name = "origin"
type = "string"
from = "const:pos-eu"
"#;

fn config_text(kafka: &str, s3: &str, bucket: &str, topic: &str, prefix: &str) -> String {
    format!(
        r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{topic}-lake"
topics = ["{topic}"]
batch_max_events = 500
batch_max_wait = "100ms"
kafka = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000 }}
channels = ["lake"]

[channels.lake]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "s3://{bucket}/{prefix}"
path = "dt=%Y-%m-%d/hr=%H"
format = "parquet"
compression = "zstd"
exactly_once = true
roll_size = "192KiB"
roll_interval = "2s"
success_markers = true
allowed_lateness = "1m"
# Longer than a restart's rebalance and catch-up (6 s session timeout): a
# partition still catching up must not count as idle.
marker_idle_timeout = "20s"
s3 = {{ endpoint = "{s3}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}

[sinks.lake.parquet]
row_group_rows = 400
{COLUMNS}"#
    )
}

/// Produces the records, paced over [`STREAM`]; returns each one's
/// (partition, offset).
async fn produce(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    produce_paced(bootstrap, topic, EVENTS, STREAM, 500, |i| Record {
        key: key_of(i),
        payload: value_of(i).to_string(),
        partition: Some(i as i32 % PARTITIONS),
        timestamp: Some(time_of(i)),
        headers: vec![("trace", format!("t-{i}")), ("source", "pos".to_owned())],
    })
    .await
}

/// The topic's end offsets.
fn high_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    (0..PARTITIONS)
        .map(|p| {
            Ok(consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_lake_exactly_once_across_kills_read_by_duckdb_and_pyarrow() -> Result<()> {
    let Some(s) = services() else { return Ok(()) };
    let store = s3(&s)?;
    let topic = unique("lake");
    let prefix = unique("lake");
    create_topic(&s.kafka, &topic, PARTITIONS).await?;
    let work = tempfile::tempdir()?;
    let config = work.path().join("agent.toml");
    std::fs::File::create(&config)?
        .write_all(config_text(&s.kafka, &s.s3, &s.bucket, &topic, &prefix).as_bytes())?;
    let log = work.path().join("agents.log");

    let producing = tokio::spawn({
        let (kafka, topic) = (s.kafka.clone(), topic.clone());
        async move { produce(&kafka, &topic).await }
    });
    let mut agent = sluice_tests::spawn_agent(AGENT_ENV, &config, &log)?;
    let outcome = async {
        // Two kills, each once the agent has committed more than before.
        let mut kills = 0;
        let mut last = 0;
        while kills < 2 {
            let mut wait = Deadline::new("a new commit", Duration::from_secs(60));
            let committed = loop {
                let mut sum = 0;
                for p in 0..PARTITIONS {
                    sum += committed_end(&store, &prefix, &topic, p).await?;
                }
                if sum > last + 1500 {
                    break sum;
                }
                wait.tick(Duration::from_millis(250)).await?;
            };
            last = committed;
            ensure!(
                !producing.is_finished(),
                "the stream ended before kill {}",
                kills + 1
            );
            agent.kill()?;
            agent.wait()?;
            kills += 1;
            agent = sluice_tests::spawn_agent(AGENT_ENV, &config, &log)?;
        }
        let placed = producing.await??;
        let ends = high_watermarks(&s.kafka, &topic)?;
        let mut wait = Deadline::new("every record published", Duration::from_secs(120));
        for (p, end) in ends.iter().enumerate() {
            while published_end(&store, &prefix, &topic, p as i32).await? < *end {
                wait.tick(Duration::from_millis(250)).await?;
            }
        }
        let marker = |hr: &str| {
            object_store::path::Path::from(format!("{prefix}/dt=2026-01-01/hr={hr}/_SUCCESS"))
        };
        let mut wait = Deadline::new("the markers of hours 00 and 01", Duration::from_secs(60));
        for m in [marker("00"), marker("01")] {
            while store.head(&m).await.is_err() {
                wait.tick(Duration::from_millis(250)).await?;
            }
        }
        check(&store, &prefix, &placed, work.path()).await
    }
    .await;
    let _ = agent.kill();
    let _ = agent.wait();
    if outcome.is_err() {
        eprintln!(
            "agent log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    outcome
}

async fn check(
    store: &dyn ObjectStore,
    prefix: &str,
    placed: &[(i32, i64)],
    work: &std::path::Path,
) -> Result<()> {
    // Markers: in the complete hours only, each after its hour's data.
    let listed: Vec<_> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await?;
    let mut latest_data: HashMap<String, _> = HashMap::new();
    let mut markers = BTreeMap::new();
    for meta in &listed {
        let key = meta.location.as_ref();
        let rel = key
            .strip_prefix(prefix)
            .unwrap_or(key)
            .trim_start_matches('/');
        if rel.starts_with("_sluice/") {
            continue;
        }
        let (dir, name) = rel
            .rsplit_once('/')
            .context("a file outside any partition")?;
        if name == "_SUCCESS" {
            markers.insert(dir.to_owned(), meta.last_modified);
        } else {
            ensure!(
                name.ends_with(".parquet") && !name.starts_with('.'),
                "unexpected object {rel}"
            );
            let latest = latest_data
                .entry(dir.to_owned())
                .or_insert(meta.last_modified);
            *latest = (*latest).max(meta.last_modified);
        }
    }
    assert_eq!(
        markers.keys().cloned().collect::<Vec<_>>(),
        ["dt=2026-01-01/hr=00", "dt=2026-01-01/hr=01"],
        "_SUCCESS only in complete hours"
    );
    for (dir, at) in &markers {
        ensure!(
            *at >= latest_data[dir],
            "{dir}: _SUCCESS written before its last data file"
        );
    }
    let files = latest_data.len();
    ensure!(files == 3, "three hour partitions, got {files}");

    let lake = work.join("lake");
    let names = mirror(store, prefix, &lake).await?;
    let parquet: Vec<&String> = names.iter().filter(|n| n.ends_with(".parquet")).collect();
    ensure!(
        parquet.len() > 3 * PARTITIONS as usize,
        "size and interval rolls: more than one file per hour and partition, got {}",
        parquet.len()
    );

    // PyArrow: every file's schema, codec and statistics.
    let files = read_lake("pyarrow-files", &[lake.to_str().context("path")?])?;
    let files = files["files"].as_array().context("files")?;
    ensure!(files.len() == parquet.len());
    let want_schema = json!({
        "event_id": "string", "user_name": "string", "tags": "string",
        "second_qty": "int64", "amount": "double", "flag": "bool",
        "record_key": "string", "trace": "string", "all_headers": "string",
        "kafka_partition": "int32", "kafka_offset": "int64",
        "event_time": "timestamp[ms, tz=UTC]", "origin": "string",
    });
    let mut multi_group = false;
    for f in files {
        assert_eq!(f["arrow_schema"], want_schema, "{}", f["path"]);
        multi_group |= f["row_groups"].as_u64() > Some(1);
        for c in f["columns"].as_array().context("columns")? {
            assert_eq!(c["codec"], "ZSTD", "{c}");
            assert_eq!(c["statistics"], true, "{c}");
        }
    }
    ensure!(
        multi_group,
        "some file has several row groups (row_group_rows = 400)"
    );

    // DuckDB: every record once, with its values and types.
    let glob = format!("{}/*/*/*.parquet", lake.display());
    let read = read_lake("duckdb-rows", &[&glob])?;
    let want_types = json!({
        "event_id": "VARCHAR", "user_name": "VARCHAR", "tags": "VARCHAR",
        "second_qty": "BIGINT", "amount": "DOUBLE", "flag": "BOOLEAN",
        "record_key": "VARCHAR", "trace": "VARCHAR", "all_headers": "VARCHAR",
        "kafka_partition": "INTEGER", "kafka_offset": "BIGINT",
        "event_time": "TIMESTAMP WITH TIME ZONE", "origin": "VARCHAR",
        "dt": "VARCHAR", "hr": "VARCHAR",
    });
    assert_eq!(read["columns"], want_types);
    compare_rows(read["rows"].as_array().context("rows")?, placed)?;

    // `sluice ddl --dialect duckdb`, over the same files.
    let loaded =
        sluice::config::load(&work.join("agent.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sink = loaded.sinks["lake"]
        .kind
        .as_any()
        .downcast_ref::<sluice::sinks::object_store::ObjectStoreSinkConfig>()
        .context("an object_store sink")?;
    use sluice::sinks::object_store::table::ddl;
    let sql = ddl::ddl(
        "lake",
        sink,
        ddl::Dialect::Duckdb,
        &ddl::DdlOptions {
            table: Some("orders".into()),
            location: Some(lake.display().to_string()),
            ..Default::default()
        },
    )?;
    let sql_file = work.join("orders.sql");
    std::fs::write(&sql_file, &sql)?;
    let viewed = read_lake(
        "duckdb-ddl",
        &[sql_file.to_str().context("path")?, "orders"],
    )?;
    assert_eq!(viewed["columns"], want_types, "{sql}");
    compare_rows(viewed["rows"].as_array().context("rows")?, placed)?;
    Ok(())
}

/// Every produced record exactly once, each column as produced.
fn compare_rows(rows: &[Value], placed: &[(i32, i64)]) -> Result<()> {
    ensure!(rows.len() == EVENTS, "{} rows, want {EVENTS}", rows.len());
    let mut seen = vec![false; EVENTS];
    for row in rows {
        let id = row["event_id"].as_str().context("event_id")?;
        let i: usize = id.strip_prefix("e-").context("id")?.parse()?;
        ensure!(!seen[i], "{id} read twice");
        seen[i] = true;
        let v = value_of(i);
        let (partition, offset) = placed[i];
        let hour = (time_of(i) - BASE_MS) / 3_600_000;
        let want = json!({
            "event_id": id,
            "user_name": v["user"]["name"],
            "tags": v["user"]["tags"].to_string(),
            "second_qty": v["items"][1]["qty"],
            "amount": if v["amount"].is_number() { v["amount"].clone() } else { Value::Null },
            "flag": v["flag"],
            "record_key": key_of(i),
            "trace": format!("t-{i}"),
            "all_headers": r#"{"trace":"t-"#.to_owned() + &i.to_string() + r#"","source":"pos"}"#,
            "kafka_partition": partition,
            "kafka_offset": offset,
            "event_time": time_of(i),
            "origin": "pos-eu",
            "dt": "2026-01-01",
            "hr": format!("{hour:02}"),
        });
        assert_eq!(row, &want, "record {i}");
    }
    Ok(())
}
