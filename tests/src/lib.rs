//! Shared helpers of the end-to-end tests: where the real services are
//! (`scripts/services.sh` starts them and exports their addresses), where the
//! built plugins are, and small Kafka/S3 utilities.
//!
//! A test that needs a service it cannot find is skipped with a message when
//! run ad hoc, and fails when `SLUICE_REQUIRE_SERVICES=1` (as in
//! `scripts/test.sh` and CI), so CI can never pass by skipping.

pub mod broker;
pub mod faults;
pub mod secure;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Addresses of the real services.
#[derive(Debug, Clone)]
pub struct Services {
    /// Kafka bootstrap servers (`host:port`).
    pub kafka: String,
    /// S3 endpoint URL.
    pub s3: String,
    /// A bucket that exists.
    pub bucket: String,
}

/// The services from the environment, or `None` (with a message) when they
/// are absent and not required.
pub fn services() -> Option<Services> {
    let kafka = std::env::var("SLUICE_TEST_KAFKA").ok();
    let s3 = std::env::var("SLUICE_TEST_S3").ok();
    match (kafka, s3) {
        (Some(kafka), Some(s3)) => Some(Services {
            kafka,
            s3,
            bucket: std::env::var("SLUICE_TEST_S3_BUCKET").unwrap_or_else(|_| "sluice-test".into()),
        }),
        _ if std::env::var("SLUICE_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("SLUICE_TEST_KAFKA and SLUICE_TEST_S3 must be set (scripts/services.sh start)")
        }
        _ => {
            eprintln!("skipped: no Kafka/S3 services; run scripts/test.sh to start them");
            None
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a built first-party plugin (`scripts/build-plugins.sh`).
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating admin client")?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .context("creating topic")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}

/// An S3 client for the test server.
pub fn s3(services: &Services) -> Result<AmazonS3> {
    AmazonS3Builder::new()
        .with_bucket_name(&services.bucket)
        .with_endpoint(&services.s3)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .context("building S3 client")
}

/// Every object under `prefix` with its bytes, sorted by path.
pub async fn read_all(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let prefix = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut out = Vec::new();
    for meta in metas {
        let bytes = store.get(&meta.location).await?.bytes().await?;
        out.push((meta.location.to_string(), bytes.to_vec()));
    }
    out.sort();
    Ok(out)
}

/// Event `i` of the benches' data: a ~170-byte JSON card authorisation
/// with a `card_number` to mask.
pub fn card_event(i: u64) -> String {
    format!(
        r#"{{"id":"{i:010}","ts":"2026-12-03T10:{:02}:{:02}.{:03}Z","user":"u{:06}","merchant":"m-{:05}","card_number":"4111111111{:06}","amount":{}.{:02},"currency":"EUR","country":"DE"}}"#,
        i / 60_000 % 60,
        i / 1000 % 60,
        i % 1000,
        i % 250_000,
        i % 20_000,
        i % 1_000_000,
        i % 900 + 1,
        i % 100,
    )
}

/// A unique-enough suffix for topic, group and prefix names.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates `bucket` on the S3 server at `endpoint` (`http://host:port`, a
/// moto server, which takes unsigned requests); an existing bucket is fine.
pub async fn create_bucket(endpoint: &str, bucket: &str) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("S3 endpoint {endpoint:?} is not an http:// URL"))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(hostport)
        .await
        .with_context(|| format!("connecting to {hostport}"))?;
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .context("creating a bucket: no answer")??;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).unwrap_or_default();
    if status != "200" && status != "409" {
        bail!(
            "creating bucket {bucket}: {}",
            answer.lines().next().unwrap_or_default()
        );
    }
    Ok(())
}

/// Checks what Kafka → Kafka exactly-once needs from the broker at
/// `bootstrap` (topics `input` and `output` exist, one partition each):
/// transactions (InitProducerId with a `transactional.id`,
/// AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn commit and
/// abort), offsets sent to a transaction stored as the group's, and
/// `read_committed` readers not seeing aborted records. Returns what is
/// missing: `protocol: <step>: <error>` (the probe stops there) or
/// `semantics: <what>`; empty when everything works. Blocking.
pub fn probe_transactions(
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
) -> Result<Vec<String>> {
    use std::time::Instant;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    const T: Duration = Duration::from_secs(20);
    let mut gaps = Vec::new();
    macro_rules! step {
        ($name:expr, $r:expr) => {
            match $r {
                Ok(v) => {
                    eprintln!("probe: {}: ok", $name);
                    v
                }
                Err(e) => {
                    eprintln!("probe: {}: FAILED: {e}", $name);
                    gaps.push(format!("protocol: {}: {e}", $name));
                    return Ok(gaps);
                }
            }
        };
    }

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
    step!(
        "joining a group",
        if consumer.assignment()?.count() > 0 {
            Ok(())
        } else {
            Err("no assignment")
        }
    );
    let metadata = step!(
        "consumer group metadata",
        consumer.group_metadata().ok_or("none")
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{group}-txn"))
        .set("transaction.timeout.ms", "30000")
        .create()?;
    step!(
        "InitProducerId with a transactional.id",
        producer.init_transactions(T)
    );
    step!("begin_transaction", producer.begin_transaction());
    step!(
        "producing in a transaction (AddPartitionsToTxn, Produce)",
        producer
            .send(BaseRecord::<(), _>::to(output).payload("committed"))
            .map_err(|(e, _)| e)
    );
    step!("flush", producer.flush(T));
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(input, 0, Offset::Offset(42))?;
    step!(
        "send_offsets_to_transaction (AddOffsetsToTxn, TxnOffsetCommit)",
        producer.send_offsets_to_transaction(&offsets, &metadata, T)
    );
    step!("EndTxn commit", producer.commit_transaction(T));
    step!("begin_transaction", producer.begin_transaction());
    step!(
        "producing in a transaction",
        producer
            .send(BaseRecord::<(), _>::to(output).payload("aborted"))
            .map_err(|(e, _)| e)
    );
    step!("flush", producer.flush(T));
    step!("EndTxn abort", producer.abort_transaction(T));
    step!("begin_transaction", producer.begin_transaction());
    step!(
        "producing in a transaction",
        producer
            .send(BaseRecord::<(), _>::to(output).payload("committed-2"))
            .map_err(|(e, _)| e)
    );
    step!("EndTxn commit", producer.commit_transaction(T));

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(input, 0);
    let committed = step!("OffsetFetch", consumer.committed_offsets(tpl, T));
    let got = committed
        .find_partition(input, 0)
        .map_or(Offset::Invalid, |e| e.offset());
    if got != Offset::Offset(42) {
        gaps.push(format!(
            "semantics: offsets sent to a transaction are not stored (committed offset {got:?}, sent 42)"
        ));
    }
    let read = |isolation: &str| -> Result<Vec<String>> {
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
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && out.len() < 3 {
            if let Some(m) = reader.poll(Duration::from_millis(100)) {
                out.push(String::from_utf8_lossy(m?.payload().unwrap_or(&[])).into_owned());
            }
        }
        Ok(out)
    };
    let seen = read("read_committed")?;
    eprintln!("probe: read_committed sees {seen:?}");
    if seen != ["committed", "committed-2"] {
        gaps.push(format!(
            "semantics: read_committed does not hide aborted records (sees {seen:?})"
        ));
    }
    Ok(gaps)
}

/// Starts an agent process: this test binary re-executed to run only its
/// `agent_process` test, which calls [`run_agent_if_asked`] with `env_var`
/// set to `config`. Its stdout and stderr are appended to `log`.
pub fn spawn_agent(
    env_var: &str,
    config: &std::path::Path,
    log: &std::path::Path,
) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};

    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "agent_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_var, config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting an agent")
}

/// The body of an agent process: a test binary re-executed with `env_var`
/// naming a config runs that pipeline until it is killed. Returns at once
/// (doing nothing) when `env_var` is unset, i.e. in the ordinary test run.
/// Agents are the test binary itself, so they always run this checkout's
/// code (a shared target directory may hold another checkout's `sluice`).
pub fn run_agent_if_asked(env_var: &str) {
    let Ok(config_path) = std::env::var(env_var) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=warn")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = sluice::config::load(std::path::Path::new(&config_path)).expect("config");
        sluice::topology::run(config, sluice::topology::RunOptions::default())
            .await
            .expect("pipeline");
    });
}

/// Where the committed chain of a partition ends (0 if nothing is committed).
pub async fn committed_end(
    store: &dyn ObjectStore,
    prefix: &str,
    topic: &str,
    partition: i32,
) -> Result<i64> {
    let dir =
        object_store::path::Path::from(format!("{prefix}/_sluice/commits/{topic}+{partition}"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let Some(last) = metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".json"))
        .map(|m| m.location.clone())
        .max()
    else {
        return Ok(0);
    };
    let body = store.get(&last).await?.bytes().await?;
    let record: serde_json::Value = serde_json::from_slice(&body)?;
    record["end"].as_i64().context("record without `end`")
}

/// Where the published part of a partition's chain ends (0 if nothing is
/// published): the end of the record `HEAD` names. A record is the commit;
/// its files become visible just after it, and `HEAD` moves once they are.
pub async fn published_end(
    store: &dyn ObjectStore,
    prefix: &str,
    topic: &str,
    partition: i32,
) -> Result<i64> {
    let dir = format!("{prefix}/_sluice/commits/{topic}+{partition}");
    let head = match store
        .get(&object_store::path::Path::from(format!("{dir}/HEAD")))
        .await
    {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let start: i64 = std::str::from_utf8(&head)?.trim().parse()?;
    let record = object_store::path::Path::from(format!("{dir}/{start:020}.json"));
    let body = store.get(&record).await?.bytes().await?;
    let record: serde_json::Value = serde_json::from_slice(&body)?;
    record["end"].as_i64().context("record without `end`")
}

/// Runs `tests/lake/read_lake.py MODE ARGS...` (DuckDB and PyArrow, which
/// `scripts/services.sh install` installs) and returns the JSON it prints.
pub fn read_lake(mode: &str, args: &[&str]) -> Result<serde_json::Value> {
    let script = repo_root().join("tests/lake/read_lake.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(mode)
        .args(args)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!(
            "{} {mode} {args:?} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the lake reader's JSON")
}

/// Copies every object under `prefix/` except the `_sluice/` bookkeeping
/// into `dir`, keeping paths: the lake as a reader sees it, for the local
/// readers (DuckDB, PyArrow). Returns the relative paths copied.
pub async fn mirror(
    store: &dyn ObjectStore,
    prefix: &str,
    dir: &std::path::Path,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (key, body) in read_all(store, prefix).await? {
        let rel = key
            .strip_prefix(prefix)
            .unwrap_or(&key)
            .trim_start_matches('/')
            .to_owned();
        if rel.starts_with("_sluice/") {
            continue;
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, body)?;
        names.push(rel);
    }
    names.sort();
    Ok(names)
}

/// Every file under `dir`, recursively, sorted; none if `dir` is missing.
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
