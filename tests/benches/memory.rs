//! Memory benchmark: Sluice's resident memory while it works off a consumer
//! lag of `SLUICE_BENCH_EVENTS` events (default 10 000 000), against the
//! buffer bounds its configuration sets.
//!
//! Needs a broker (`scripts/services.sh start; source target/services.env`);
//! run with `cargo bench -p sluice-tests --bench memory`.
//!
//! The events (the `pipeline` bench's ~190-byte JSON, 2 partitions) are all
//! produced before Sluice starts, so its group begins `SLUICE_BENCH_EVENTS`
//! behind. Sluice runs in a process of its own (this bench re-executed), a
//! `kafka` source → `memory` channel → rolled `text` files, no plugin, every
//! setting at its default; the bench samples the process's resident set
//! (`VmRSS`) at every million events and reads its peak (`VmHWM`) at the
//! end.
//!
//! The buffer bounds, from the defaults the run uses:
//!
//! - librdkafka's prefetch: `queued.max.messages.kbytes` (16 MiB, Sluice's
//!   default) plus one `fetch.message.max.bytes` (1 MiB) per partition,
//!   by which librdkafka documents it may overshoot;
//! - the source's batches: the open one, two queued for processing, and per
//!   lane one queued and one being processed, each at most
//!   `batch_max_events` (1000) events;
//! - the `memory` channel: `capacity_events` (10 000) events;
//! - the sink: one batch being written and, per open file, the 1 MiB output
//!   buffer (`LOCAL_FLUSH_BYTES`).
//!
//! `SLUICE_BENCH_SOURCE_EXTRA` is appended to the source's section (to
//! compare a setting).
//!
//! Event-counted bounds are converted to bytes with the size an event has in
//! a batch (body, key, topic name, offsets).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::{card_event, create_topic, unique};

/// Set (to a config's text) in the re-executed bench that runs Sluice.
const AGENT: &str = "SLUICE_BENCH_MEMORY_AGENT";
const PARTITIONS: i32 = 2;
const MIB: f64 = (1 << 20) as f64;

fn main() -> anyhow::Result<()> {
    if let Ok(config) = std::env::var(AGENT) {
        return agent(&config);
    }
    let Ok(kafka) = std::env::var("SLUICE_TEST_KAFKA") else {
        eprintln!("set SLUICE_TEST_KAFKA (scripts/services.sh start) to run this benchmark");
        return Ok(());
    };
    let events: u64 = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let topic = unique("lag");
    let bytes = rt.block_on(async {
        create_topic(&kafka, &topic, PARTITIONS).await?;
        produce(&kafka, &topic, events).await
    })?;
    drop(rt);
    let body = bytes as f64 / events as f64;
    println!("{events} events of {body:.0} bytes on average produced: the lag");

    let out = tempfile::tempdir()?;
    let config = format!(
        r#"
[sources.lag]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
start_from = "earliest"
channels = ["files"]
{extra}

[channels.files]
type = "memory"

[sinks.files]
type = "object_store"
channel = "files"
url = "file://{out}"
path = "%{{topic}}/%Y-%m-%d"
format = "text"
roll_size = "64MiB"
roll_interval = "10s"
"#,
        group = unique("memory"),
        out = out.path().display(),
        extra = std::env::var("SLUICE_BENCH_SOURCE_EXTRA").unwrap_or_default(),
    );

    // An event in a batch: body, key (~7 B), topic name, offsets and sizes.
    let event = body + 7.0 + topic.len() as f64 + 40.0;
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as f64;
    let prefetch = 16.0 * MIB + PARTITIONS as f64 * MIB;
    let batches = (3.0 + 2.0 * lanes) * 1000.0 * event;
    let channel = 10_000.0 * event;
    let sink = 1000.0 * event + MIB;
    let bound = prefetch + batches + channel + sink;
    println!(
        "buffer bounds: prefetch {:.1} MiB + source batches {:.1} MiB + channel {:.1} MiB + sink {:.1} MiB = {:.1} MiB",
        prefetch / MIB,
        batches / MIB,
        channel / MIB,
        sink / MIB,
        bound / MIB
    );

    let mut child = Command::new(std::env::current_exe()?)
        .env(AGENT, &config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let lines = BufReader::new(child.stdout.take().expect("piped stdout"));
    let started = Instant::now();
    let mut next_mark = 0;
    let mut samples = Vec::new();
    let mut done = false;
    for line in lines.lines() {
        let line = line?;
        let Some(written) = line.strip_prefix("written ") else {
            continue;
        };
        let written: u64 = written.parse()?;
        if written >= next_mark {
            let rss = status_kib(pid, "VmRSS:")?;
            samples.push((written, rss, started.elapsed()));
            next_mark += 1_000_000;
        }
        if written >= events {
            done = true;
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "Sluice wrote {written} of {events} events in 900 s"
        );
    }
    let peak = status_kib(pid, "VmHWM:")?;
    // SAFETY: `pid` is the child started above and not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait()?;
    anyhow::ensure!(done, "the Sluice process ended before writing every event");

    println!("\n| events written | RSS (MiB) | seconds |\n|---|---|---|");
    for (written, rss, at) in &samples {
        println!(
            "| {written} | {:.1} | {:.1} |",
            *rss as f64 / 1024.0,
            at.as_secs_f64()
        );
    }
    let peak = peak as f64 * 1024.0;
    println!(
        "\npeak RSS {:.1} MiB = {:.2} × the buffer bounds ({:.1} MiB) at a lag of {events} events",
        peak / MIB,
        peak / bound,
        bound / MIB
    );
    Ok(())
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("malformed {line}"))?
        .parse()?)
}

/// Produces `events` JSON events of ~190 bytes, 100 000 in flight at most;
/// returns their total size.
async fn produce(kafka: &str, topic: &str, events: u64) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let mut bytes = 0;
    let mut pending = Vec::with_capacity(100_000);
    for i in 0..events {
        let body = card_event(i);
        bytes += body.len() as u64;
        let key = i.to_string();
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&body))
                .map_err(|(e, _)| e)?,
        );
        if pending.len() == pending.capacity() {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(bytes)
}

/// The re-executed bench: runs `config` and prints the events written so
/// far every 100 ms until it is terminated.
fn agent(config: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let config = sluice::config::parse(std::path::Path::new("memory.toml"), config, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let metrics = Arc::new(Metrics::default());
        let options = RunOptions {
            metrics: metrics.clone(),
            ..Default::default()
        };
        let run = tokio::spawn(topology::run(config, options));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !run.is_finished() {
            tick.tick().await;
            // The bench stops reading once it has its figures.
            if writeln!(
                std::io::stdout(),
                "written {}",
                metrics.get("sink.files.events")
            )
            .is_err()
            {
                break;
            }
        }
        run.await??;
        Ok(())
    })
}
