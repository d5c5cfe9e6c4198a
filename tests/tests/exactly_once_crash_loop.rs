//! Exactly-once into S3 across `kill -9` and rebalances, on a real broker
//! (tansu) and a real S3 server (moto).
//!
//! 200 000 events with unique ids are produced, paced, while Sluice agents
//! run in child processes (this test binary re-executed, running the
//! pipeline in-process) with `exactly_once = true`, a mix of size and
//! interval rolls, and a header that fans every partition out to three
//! directories. Agents are killed with SIGKILL at random moments and
//! restarted. At the end the visible objects (everything outside `_sluice/`)
//! must hold every id exactly once.
//!
//! - `crash_loop`: one agent, killed ≥ 10 times.
//! - `rebalance`: two agents in one consumer group; one is killed and
//!   restarted repeatedly while the other keeps running and takes over.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use object_store::ObjectStore;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_tests::{Services, create_topic, s3, services, unique};

const EVENTS: usize = 200_000;
const PARTITIONS: i32 = 4;
/// Events produced per second: the stream lasts ~40 s, across the kills.
const RATE: usize = 5_000;
const AGENT_ENV: &str = "SLUICE_TEST_AGENT_CONFIG";

/// The scenarios run one at a time: each already runs up to three agents,
/// a broker and an S3 server on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Not a test of its own: the body of an agent process (see module docs).
#[test]
fn agent_process() {
    sluice_tests::run_agent_if_asked(AGENT_ENV);
}

struct Agent {
    child: Child,
    started: Instant,
}

fn spawn_agent(config: &std::path::Path, log: &std::path::Path) -> Result<Agent> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "agent_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AGENT_ENV, config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting an agent")?;
    Ok(Agent {
        child,
        started: Instant::now(),
    })
}

fn config_text(s: &Services, topic: &str, group: &str, prefix: &str) -> String {
    format!(
        r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 1000
batch_max_wait = "100ms"
# A killed agent leaves the group after its session times out; a rebalance
# waits at most max.poll.interval.ms for members to rejoin.
kafka = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000, "max.poll.interval.ms" = 20000 }}
channels = ["lake"]

[channels.lake]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
exactly_once = true
url = "s3://{bucket}/{prefix}"
path = "%{{topic}}/bucket=%{{bucket}}"
roll_size = "48KiB"
roll_interval = "1500ms"
s3 = {{ endpoint = "{s3}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}
"#,
        kafka = s.kafka,
        bucket = s.bucket,
        s3 = s.s3,
    )
}

/// Produces the events, paced at [`RATE`]; returns where each id landed.
async fn produce(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    // One record per record batch: tansu (0.6) answers a fetch from an
    // offset inside a multi-record batch with the *next* batch, silently
    // skipping the rest of the batch holding the offset (Kafka returns the
    // whole batch and the client skips the records before the offset). Any
    // resume mid-batch would then lose records on the broker side.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "1")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let start = Instant::now();
    let mut pending = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        if i % 1000 == 0 {
            let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let id = format!("id-{i:07}");
        let bucket = (i % 3).to_string();
        let record =
            FutureRecord::to(topic)
                .key(&id)
                .payload(&id)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "bucket",
                    value: Some(&bucket),
                }));
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    let mut placed = Vec::with_capacity(EVENTS);
    for p in pending {
        let d = p.await?.map_err(|(e, _)| e)?;
        placed.push((d.partition, d.offset));
    }
    Ok(placed)
}

async fn commit_records(store: &dyn ObjectStore, prefix: &str) -> Result<usize> {
    let p = object_store::path::Path::from(format!("{prefix}/_sluice/commits"));
    let metas: Vec<_> = store.list(Some(&p)).try_collect().await?;
    Ok(metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".json"))
        .count())
}

/// Where the committed chain of a partition ends (0 if nothing is committed).
async fn committed_end(
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

/// Waits until a restarted agent commits something new; returns how long it took.
async fn time_to_recover(
    store: &dyn ObjectStore,
    prefix: &str,
    since: Instant,
) -> Result<Duration> {
    let before = commit_records(store, prefix).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if commit_records(store, prefix).await? > before {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no commit within 180 s of a restart")
}

struct Outcome {
    kills: usize,
    lost: usize,
    duplicated: usize,
    recoveries: Vec<Duration>,
    objects: usize,
}

async fn run_scenario(name: &str, agents: usize, kills: usize) -> Result<Option<Outcome>> {
    let Some(services) = services() else {
        return Ok(None);
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let topic = unique(&format!("eo-{name}"));
    let group = unique("eo");
    let prefix = unique(&format!("eo-{name}"));
    create_topic(&services.kafka, &topic, PARTITIONS).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::File::create(&config)?
        .write_all(config_text(&services, &topic, &group, &prefix).as_bytes())?;
    let log = dir.path().join("agents.log");
    let store = s3(&services)?;

    let producer = tokio::spawn({
        let bootstrap = services.kafka.clone();
        let topic = topic.clone();
        async move { produce(&bootstrap, &topic).await }
    });

    let mut running: Vec<Agent> = (0..agents)
        .map(|_| spawn_agent(&config, &log))
        .collect::<Result<_>>()?;
    // A deterministic "random" schedule: kill moments between 1.5 and 5 s.
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ (kills as u64);
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(1500 + rng % 3500);
        // The victim is always agent 0; with two agents, agent 1 takes over.
        let victim = &mut running[0];
        let alive_for = victim.started.elapsed();
        if alive_for < wait {
            tokio::time::sleep(wait - alive_for).await;
        }
        victim.child.kill().context("SIGKILL")?;
        victim.child.wait()?;
        let restarted = Instant::now();
        running[0] = spawn_agent(&config, &log)?;
        let recovered = time_to_recover(&store, &prefix, restarted).await;
        recoveries.push(recovered.with_context(|| {
            format!(
                "log:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            )
        })?);
    }
    let placed = producer.await??;
    // Wait until every partition's committed chain reaches its end offset,
    // then stop the agents (SIGKILL again: what is committed is final).
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in &placed {
        let e = ends.entry(p).or_default();
        *e = (*e).max(o + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let mut done = true;
        for (&p, &end) in &ends {
            if committed_end(&store, &prefix, &topic, p).await? < end {
                done = false;
            }
        }
        if done {
            break;
        }
        for agent in &mut running {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "an agent stopped by itself ({status}); log:\n{}",
                    tail(&std::fs::read_to_string(&log).unwrap_or_default())
                );
            }
        }
        if Instant::now() > deadline {
            for agent in &mut running {
                let _ = agent.child.kill();
            }
            let mut reached = Vec::new();
            for &p in ends.keys() {
                reached.push((p, committed_end(&store, &prefix, &topic, p).await?));
            }
            bail!(
                "the committed output reached {reached:?}, not the end offsets {ends:?}, in time; \
                 group and error lines of the agents' log:\n{}",
                notable(&std::fs::read_to_string(&log).unwrap_or_default())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for agent in &mut running {
        agent.child.kill()?;
        agent.child.wait()?;
    }

    // Every visible object, i.e. everything outside `_sluice/`.
    let p = object_store::path::Path::from(prefix.as_str());
    let metas: Vec<_> = store.list(Some(&p)).try_collect().await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut objects = 0;
    for meta in metas {
        let key = meta.location.as_ref();
        if key.contains("/_sluice/") {
            continue;
        }
        objects += 1;
        let bytes = store.get(&meta.location).await?.bytes().await?;
        for line in std::str::from_utf8(&bytes)?.lines() {
            *seen.entry(line.to_owned()).or_default() += 1;
        }
    }
    let missing: Vec<(i32, i64)> = (0..EVENTS)
        .filter(|i| !seen.contains_key(&format!("id-{i:07}")))
        .map(|i| placed[i])
        .collect();
    let lost = missing.len();
    if lost > 0 {
        let mut m = missing.clone();
        m.sort();
        eprintln!(
            "lost (partition, offset), first 40: {:?}",
            &m[..m.len().min(40)]
        );
        let kept = dir.keep();
        eprintln!("agent log kept at {}", kept.display());
    }
    let duplicated: usize = seen.values().map(|&n| n.saturating_sub(1)).sum();
    Ok(Some(Outcome {
        kills,
        lost,
        duplicated,
        recoveries,
        objects,
    }))
}

/// The log lines that tell what the group and the agents did.
fn notable(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            [
                "assigned", "revoked", "resuming", "WARN", "ERROR", "panicked",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn report(name: &str, o: &Outcome) {
    let mut r = o.recoveries.clone();
    r.sort();
    let p50 = r.get(r.len() / 2).copied().unwrap_or_default();
    let max = r.last().copied().unwrap_or_default();
    println!(
        "{name}: {EVENTS} events checked, {} kills, {} lost, {} duplicated, {} visible objects, \
         time to next commit after a restart p50 {:.1} s max {:.1} s",
        o.kills,
        o.lost,
        o.duplicated,
        o.objects,
        p50.as_secs_f64(),
        max.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop() -> Result<()> {
    let Some(o) = run_scenario("crash", 1, 10).await? else {
        return Ok(());
    };
    report("crash_loop", &o);
    assert_eq!(o.lost, 0, "ids lost");
    assert_eq!(o.duplicated, 0, "ids duplicated");
    assert!(
        o.objects > 20,
        "size and interval rolls should write many objects"
    );
    Ok(())
}

/// Ignored: after repeated kills tansu's group keeps the killed agents as
/// members (each live agent is given one of the four partitions, and the
/// partitions assigned to dead members are never read again), so some
/// committed chains stop short of the end. Every assignment that is served
/// resumes at its committed position. Run it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu keeps killed agents as group members; their partitions stall"]
async fn rebalance() -> Result<()> {
    let Some(o) = run_scenario("rebalance", 2, 6).await? else {
        return Ok(());
    };
    report("rebalance", &o);
    assert_eq!(o.lost, 0, "ids lost");
    assert_eq!(o.duplicated, 0, "ids duplicated");
    Ok(())
}
