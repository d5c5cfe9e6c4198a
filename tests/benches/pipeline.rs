//! Pipeline benchmark: broker → Sluice → files (and the S3 server), against
//! a raw librdkafka group consumer on the same broker, data and consumer
//! properties.
//!
//! Needs a broker (`scripts/services.sh start; source target/services.env`;
//! the S3 variant runs when `SLUICE_TEST_S3` is set too) and the plugins
//! (`scripts/build-plugins.sh`); run with
//! `cargo bench -p sluice-tests --bench pipeline`.
//!
//! The data: `SLUICE_BENCH_EVENTS` (default 1 000 000) JSON events of ~190
//! bytes with a `card_number` to mask, on `SLUICE_BENCH_PARTITIONS` (default
//! 2) partitions, each variant reading them from the earliest offset with a
//! new consumer group.
//!
//! The baseline reads them with librdkafka's batch consume API
//! (`rd_kafka_consume_batch_queue`), no processing, configured with exactly
//! the consumer properties a Sluice source uses
//! ([`KafkaSourceConfig::client_config`]). Each variant prints:
//!
//! - **steady** events/s: from the first event seen (by the raw consumer; by
//!   Sluice's sink) to the last, so group joins and plugin compiles do not
//!   count; its ratio to the baseline's steady rate is the figure the goals
//!   are stated in;
//! - **total** events/s: from start (before the group join) to the last;
//! - **CPU s per M events**: user + system time of this process during the
//!   variant (the producer has finished by then), per million events.
//!
//! `SLUICE_BENCH_ONLY` runs the variants whose label contains it (e.g.
//! `mask`, under a profiler; the baseline always runs), and
//! `SLUICE_BENCH_SOURCE_EXTRA` is appended to the source's section (e.g.
//! `kafka = { "fetch.queue.backoff.ms" = 1000 }` to compare a property).

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::sources::kafka::KafkaSourceConfig;
use sluice::topology::{self, RunOptions};
use sluice_tests::{card_event, create_bucket, create_topic, plugin, unique};

/// What one variant measured.
struct Measured {
    label: String,
    events: usize,
    steady: Duration,
    total: Duration,
    cpu: Duration,
    /// Bytes of the files written (local file variants).
    on_disk: Option<u64>,
}

impl Measured {
    fn steady_rate(&self) -> f64 {
        self.events as f64 / self.steady.as_secs_f64()
    }
}

/// Where a Sluice variant writes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Files,
    S3,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let Ok(kafka) = std::env::var("SLUICE_TEST_KAFKA") else {
        eprintln!("set SLUICE_TEST_KAFKA (scripts/services.sh start) to run this benchmark");
        return Ok(());
    };
    let s3 = std::env::var("SLUICE_TEST_S3").ok();
    let events = env_number("SLUICE_BENCH_EVENTS", 1_000_000);
    let partitions = env_number("SLUICE_BENCH_PARTITIONS", 2) as i32;
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let topic = unique("bench");
        create_topic(&kafka, &topic, partitions).await?;
        let bytes = produce(&kafka, &topic, events).await?;
        println!(
            "{events} events of {} bytes on average, {partitions} partitions",
            bytes / events
        );

        let mut results = vec![raw_consume(&kafka, &topic, events)?];
        println!("{}", line(&results[0], results[0].steady_rate()));
        // Label, plugin, exactly-once, target, lanes (`parallelism`; None:
        // the default, one per core), admin endpoint scraped every second.
        // The mask lanes give the scaling curve; the admin pair, run twice
        // alternately, the endpoint's cost.
        let admin_pair = [
            (
                "Sluice, mask plugin, 1 lane, admin off → files",
                Some("mask"),
                false,
                Target::Files,
                Some(1),
                false,
            ),
            (
                "Sluice, mask plugin, 1 lane, admin scraped every 1 s → files",
                Some("mask"),
                false,
                Target::Files,
                Some(1),
                true,
            ),
        ];
        let variants = [
            (
                "Sluice, no plugin → files",
                None,
                false,
                Target::Files,
                None,
                false,
            ),
            (
                "Sluice, no plugin → S3",
                None,
                false,
                Target::S3,
                None,
                false,
            ),
            (
                "Sluice, no plugin, exactly-once → files",
                None,
                true,
                Target::Files,
                None,
                false,
            ),
            (
                "Sluice, noop plugin → files",
                Some("noop"),
                false,
                Target::Files,
                None,
                false,
            ),
            (
                "Sluice, mask plugin, 1 lane → files",
                Some("mask"),
                false,
                Target::Files,
                Some(1),
                false,
            ),
            (
                "Sluice, mask plugin, 2 lanes → files",
                Some("mask"),
                false,
                Target::Files,
                Some(2),
                false,
            ),
        ];
        let formats = [
            ("Sluice, no plugin → jsonl+zstd files", Output::JsonlZstd),
            (
                "Sluice, no plugin → parquet files (snappy)",
                Output::Parquet("snappy"),
            ),
            (
                "Sluice, no plugin → parquet files (zstd)",
                Output::Parquet("zstd"),
            ),
        ];
        let variants =
            variants
                .into_iter()
                .chain(admin_pair)
                .chain(admin_pair)
                .map(|v| (v, Output::Text))
                .chain(formats.map(|(label, output)| {
                    ((label, None, false, Target::Files, None, false), output)
                }));
        for ((label, interceptor, exactly_once, target, lanes, admin), output) in variants {
            if only.as_deref().is_some_and(|only| !label.contains(only)) {
                continue;
            }
            let store = match (target, &s3) {
                (Target::Files, _) => None,
                (Target::S3, Some(endpoint)) => Some(endpoint.as_str()),
                (Target::S3, None) => {
                    println!("{label}: skipped (no SLUICE_TEST_S3)");
                    continue;
                }
            };
            let run = Run {
                kafka: &kafka,
                topic: &topic,
                events,
                interceptor,
                exactly_once,
                s3: store,
                lanes,
                admin,
                output,
            };
            let measured = run.measure(label).await?;
            println!("{}", line(&measured, results[0].steady_rate()));
            results.push(measured);
        }
        println!("\n{}", table(&results));
        Ok(())
    })
}

/// One variant's figures: steady events/s, its ratio to `baseline`'s
/// steady rate, total events/s, CPU seconds per million events.
fn figures(m: &Measured, baseline: f64) -> (f64, f64, f64, f64) {
    let steady = m.steady_rate();
    (
        steady,
        steady / baseline,
        m.events as f64 / m.total.as_secs_f64(),
        m.cpu.as_secs_f64() * 1e6 / m.events as f64,
    )
}

/// One variant's line, printed as it finishes.
fn line(m: &Measured, baseline: f64) -> String {
    let (steady, ratio, total, cpu) = figures(m, baseline);
    let disk = m
        .on_disk
        .map(|b| format!(", {:.1} MB on disk", b as f64 / 1e6))
        .unwrap_or_default();
    format!(
        "{}: {steady:.0} events/s steady (ratio to raw {ratio:.2}), {total:.0} events/s total, {cpu:.2} CPU s per M events{disk}",
        m.label
    )
}

/// Every variant as a Markdown table (the README's form).
fn table(results: &[Measured]) -> String {
    let baseline = results[0].steady_rate();
    let mut out = String::from(
        "| pipeline | events/s (steady) | ratio to raw | events/s (total) | CPU s per M events | MB on disk |\n|---|---|---|---|---|---|\n",
    );
    for m in results {
        let (steady, ratio, total, cpu) = figures(m, baseline);
        let disk = m
            .on_disk
            .map(|b| format!("{:.1}", b as f64 / 1e6))
            .unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | {steady:.0} | {ratio:.2} | {total:.0} | {cpu:.2} | {disk} |\n",
            m.label
        ));
    }
    out
}

/// Produces `events` JSON events; returns their total size.
async fn produce(kafka: &str, topic: &str, events: usize) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut pending = Vec::with_capacity(events);
    let mut bytes = 0;
    for i in 0..events {
        // ~190 bytes, like a card authorisation.
        let body = card_event(i as u64);
        bytes += body.len();
        let key = i.to_string();
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&body))
                .map_err(|(e, _)| e)?,
        );
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(bytes)
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The consumer properties a Sluice source reading `topic` as group
/// `group` would use.
fn source_properties(kafka: &str, topic: &str, group: &str) -> anyhow::Result<ClientConfig> {
    let config: KafkaSourceConfig = toml::from_str(&format!(
        "bootstrap_servers = \"{kafka}\"\ngroup_id = \"{group}\"\ntopics = [\"{topic}\"]\nstart_from = \"earliest\"\n"
    ))?;
    config.validate()?;
    let mut properties = config.client_config(kafka, "sluice-bench-raw")?;
    // The source reads statistics through its context; this loop has none.
    properties.remove("statistics.interval.ms");
    Ok(properties)
}

/// Reads `events` events with librdkafka's batch consume API and no
/// processing beyond summing payload sizes.
fn raw_consume(kafka: &str, topic: &str, events: usize) -> anyhow::Result<Measured> {
    let properties = source_properties(kafka, topic, &unique("raw"))?;
    let cpu = cpu_time();
    let started = Instant::now();
    let mut errstr = [0 as std::ffi::c_char; 512];
    // SAFETY: plain librdkafka C API use; every pointer comes from librdkafka
    // and is destroyed once, messages before the queue, the queue before the
    // handle.
    unsafe {
        let conf = rd::rd_kafka_conf_new();
        for (name, value) in properties.config_map() {
            let (name, value) = (
                CString::new(name.as_bytes())?,
                CString::new(value.as_bytes())?,
            );
            let set = rd::rd_kafka_conf_set(
                conf,
                name.as_ptr(),
                value.as_ptr(),
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            anyhow::ensure!(
                set == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK,
                "{name:?}: {}",
                CStr::from_ptr(errstr.as_ptr()).to_string_lossy()
            );
        }
        let rk = rd::rd_kafka_new(
            rd::rd_kafka_type_t::RD_KAFKA_CONSUMER,
            conf,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        anyhow::ensure!(
            !rk.is_null(),
            "{}",
            CStr::from_ptr(errstr.as_ptr()).to_string_lossy()
        );
        rd::rd_kafka_poll_set_consumer(rk);
        let topics = rd::rd_kafka_topic_partition_list_new(1);
        let name = CString::new(topic)?;
        rd::rd_kafka_topic_partition_list_add(topics, name.as_ptr(), -1);
        let subscribed = rd::rd_kafka_subscribe(rk, topics);
        rd::rd_kafka_topic_partition_list_destroy(topics);
        anyhow::ensure!(
            subscribed == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            "subscribing: {subscribed:?}"
        );
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        let mut messages = vec![std::ptr::null_mut::<rd::rd_kafka_message_t>(); 10_000];
        let (mut seen, mut bytes, mut first) = (0, 0usize, None);
        while seen < events {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "raw consumer timed out"
            );
            let n =
                rd::rd_kafka_consume_batch_queue(queue, 100, messages.as_mut_ptr(), messages.len());
            for &message in &messages[..n.max(0) as usize] {
                if (*message).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    first.get_or_insert_with(Instant::now);
                    seen += 1;
                    bytes += (*message).len;
                }
                rd::rd_kafka_message_destroy(message);
            }
        }
        let ended = Instant::now();
        std::hint::black_box(bytes);
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_consumer_close(rk);
        rd::rd_kafka_destroy(rk);
        Ok(Measured {
            label: "raw librdkafka group consumer (batch API, same properties)".into(),
            events,
            steady: ended - first.unwrap_or(started),
            total: ended - started,
            cpu: cpu_time() - cpu,
            on_disk: None,
        })
    }
}

/// What a variant's files are.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// The body and a newline.
    Text,
    /// One JSON object per event (key, value, metadata), zstd-compressed.
    JsonlZstd,
    /// Parquet with the events' fields as typed columns, pages compressed
    /// with this codec.
    Parquet(&'static str),
}

/// The columns of [`card_event`]s, and the metadata, as Parquet columns.
const CARD_COLUMNS: &str = r#"
[[sinks.files.columns]]
name = "id"
type = "string"
from = "json:id"
[[sinks.files.columns]]
name = "ts"
type = "timestamp"
from = "json:ts"
[[sinks.files.columns]]
name = "user"
type = "string"
from = "json:user"
[[sinks.files.columns]]
name = "merchant"
type = "string"
from = "json:merchant"
[[sinks.files.columns]]
name = "card_number"
type = "string"
from = "json:card_number"
[[sinks.files.columns]]
name = "amount"
type = "double"
from = "json:amount"
[[sinks.files.columns]]
name = "currency"
type = "string"
from = "json:currency"
[[sinks.files.columns]]
name = "country"
type = "string"
from = "json:country"
[[sinks.files.columns]]
name = "kafka_partition"
type = "int"
from = "partition"
[[sinks.files.columns]]
name = "kafka_offset"
type = "long"
from = "offset"
[[sinks.files.columns]]
name = "kafka_timestamp"
type = "timestamp"
from = "timestamp"
"#;

impl Output {
    /// The sink keys of this output.
    fn keys(self) -> String {
        match self {
            Self::Text => "format = \"text\"\n".into(),
            Self::JsonlZstd => "format = \"jsonl\"\ncompression = \"zstd\"\n".into(),
            Self::Parquet(codec) => {
                format!("format = \"parquet\"\ncompression = \"{codec}\"\n{CARD_COLUMNS}")
            }
        }
    }
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// One Sluice variant: Kafka → (a plugin) → rolled files.
struct Run<'a> {
    kafka: &'a str,
    topic: &'a str,
    events: usize,
    interceptor: Option<&'a str>,
    exactly_once: bool,
    /// The S3 server's endpoint, to write there instead of local files.
    s3: Option<&'a str>,
    /// The source's `parallelism`, if set.
    lanes: Option<usize>,
    /// Whether the admin endpoint runs, scraped every second.
    admin: bool,
    /// What the files are.
    output: Output,
}

impl Run<'_> {
    /// The configuration; `out` is the local directory for files.
    async fn config(&self, out: &std::path::Path, admin: Option<u16>) -> anyhow::Result<String> {
        let chain = match self.interceptor {
            Some(name) => {
                let config = if name == "mask" {
                    "config = { fields = [\"card_number\"] }"
                } else {
                    ""
                };
                format!(
                    "interceptors = [\"p\"]\ndead_letter = \"dead\"\n\n[plugins.p]\ntype = \"interceptor\"\npath = \"{}\"\n{config}\n\n[channels.dead]\ntype = \"memory\"\n\n[sinks.dead]\ntype = \"null\"\nchannel = \"dead\"\n",
                    plugin(name).display()
                )
            }
            None => String::new(),
        };
        let destination = match self.s3 {
            Some(endpoint) => {
                let bucket = unique("bench");
                create_bucket(endpoint, &bucket).await?;
                format!(
                    "url = \"s3://{bucket}/out\"\ns3 = {{ endpoint = \"{endpoint}\", region = \"us-east-1\", path_style = true, allow_http = true, access_key_id = \"test\", secret_access_key = \"test\" }}"
                )
            }
            None => format!("url = \"file://{}\"", out.display()),
        };
        let admin = admin
            .map(|port| format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"))
            .unwrap_or_default();
        Ok(format!(
            r#"
{admin}
[channels.files]
type = "memory"

[sinks.files]
type = "object_store"
channel = "files"
{destination}
path = "%{{topic}}/%Y-%m-%d"
roll_size = "{roll_size}"
roll_interval = "10s"
exactly_once = {exactly_once}
{output}

[sources.bench]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
start_from = "earliest"
batch_max_events = 1000
channels = ["files"]
{lanes}
{extra}
{chain}"#,
            kafka = self.kafka,
            topic = self.topic,
            exactly_once = self.exactly_once,
            group = unique("sluice"),
            // Exactly-once commits every roll: roll often enough to pay for it.
            roll_size = if self.exactly_once { "4MiB" } else { "64MiB" },
            lanes = self
                .lanes
                .map(|n| format!("parallelism = {n}"))
                .unwrap_or_default(),
            extra = std::env::var("SLUICE_BENCH_SOURCE_EXTRA").unwrap_or_default(),
            output = self.output.keys(),
        ))
    }

    async fn measure(&self, label: &str) -> anyhow::Result<Measured> {
        let out = tempfile::tempdir()?;
        let port = if self.admin {
            Some(
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port(),
            )
        } else {
            None
        };
        let text = self.config(out.path(), port).await?;
        let config = sluice::config::parse(std::path::Path::new("bench.toml"), &text, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let metrics = std::sync::Arc::new(Metrics::default());
        let options = RunOptions {
            metrics: metrics.clone(),
            ..Default::default()
        };
        let shutdown = options.shutdown.clone();
        let cpu = cpu_time();
        let started = Instant::now();
        let run = tokio::spawn(topology::run(config, options));
        let scraper = port.map(|port| tokio::spawn(scrape_every_second(port)));
        let written = || metrics.get("sink.files.events");
        let mut first = None;
        while written() < self.events as u64 {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "sluice run timed out"
            );
            if first.is_none() && written() > 0 {
                first = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ended = Instant::now();
        if let Some(scraper) = scraper {
            scraper.abort();
        }
        // Written: stop, which also completes (renames or uploads) the open files.
        shutdown.cancel();
        run.await??;
        Ok(Measured {
            label: label.to_owned(),
            events: self.events,
            steady: ended - first.unwrap_or(started),
            total: ended - started,
            cpu: cpu_time() - cpu,
            on_disk: self.s3.is_none().then(|| bytes_under(out.path())),
        })
    }
}

/// What Prometheus does to an agent: `GET /metrics` every second, the whole
/// answer read.
async fn scrape_every_second(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if s.write_all(request.as_bytes()).await.is_ok() {
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body).await;
            std::hint::black_box(body);
        }
    }
}
