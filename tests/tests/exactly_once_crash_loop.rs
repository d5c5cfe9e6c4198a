//! Exactly-once into S3 across `kill -9` and rebalances, on a real broker
//! (tansu) and a real S3 server (moto).
//!
//! 200 000 events with unique ids are produced, paced over [`STREAM`], while
//! Sluice agents run in child processes (this test binary re-executed,
//! running the pipeline in-process) with `exactly_once = true`, a mix of
//! size and interval rolls (interval rolls in the steady stream, size rolls
//! while an agent catches up after a restart; the test checks that both
//! happened), and a header that fans every partition out to three
//! directories. Agents are killed with SIGKILL at random moments, 1.5–5 s
//! after every partition is served again, and restarted, all while the
//! stream flows. At the end the visible objects (everything outside
//! `_sluice/`) must hold every id exactly once.
//!
//! - `crash_loop`: one agent, killed ≥ 10 times.
//! - `rebalance`: two agents in one consumer group; one is killed and
//!   restarted repeatedly while the other keeps running. Every restart moves
//!   partitions between the agents (see `client_id`), and the test checks
//!   in the commit chains that they changed hands.
//!
//! ## tansu's group coordinator, and the order of a restart
//!
//! tansu 0.6 mishandles one case of member expiry: when a *heartbeat* finds
//! that another member's session has expired, it removes that member but
//! keeps the group `Stable` at the same generation with the old assignment.
//! The survivors are told to rejoin, rejoin at that generation and are handed
//! their old partitions again; the leader's new assignment is ignored. The
//! partitions of the dead member are then read by nobody until some *new*
//! member joins (which does bump the generation). A restarted agent that
//! joined *before* its predecessor expired is not new any more when the
//! expiry happens, so its predecessor's partitions would stall for good. And
//! a dead leader stays leader, so no assignment can complete again.
//!
//! Apache Kafka has neither problem. The rebalance scenario therefore does
//! what tansu needs and no more: the surviving agent starts first (so it
//! leads the group), and a killed agent is restarted once the coordinator no
//! longer lists it as a member, which the test awaits by describing the group.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use object_store::ObjectStore;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_tests::{Services, create_topic, s3, services, unique};

const EVENTS: usize = 200_000;
const PARTITIONS: i32 = 4;
/// How long the events take to produce: long enough that every kill hits
/// the agents mid-stream (a kill cycle takes ~10–15 s).
const STREAM: Duration = Duration::from_secs(150);
/// The sink's `roll_size`: in the steady stream a file gets ~110 events
/// (~1.2 KiB) per 1.5 s interval roll; a catch-up fills it faster.
const ROLL_SIZE: u64 = 3 * 1024;
const AGENT_ENV: &str = "SLUICE_TEST_AGENT_CONFIG";

/// The scenarios run one at a time: each already runs up to three agents,
/// a broker and an S3 server on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Not a test of its own: the body of an agent process (see module docs).
#[test]
fn agent_process() {
    sluice_tests::run_agent_if_asked(AGENT_ENV);
}

/// Where an agent runs: its scenario's config template, log and directory.
struct Slot<'a> {
    services: &'a Services,
    topic: &'a str,
    group: &'a str,
    prefix: &'a str,
    dir: &'a std::path::Path,
    log: &'a std::path::Path,
}

impl Slot<'_> {
    /// Starts incarnation `run` of agent `index`, with the Kafka client id
    /// (and so the prefix of its group member id) [`client_id`].
    fn spawn(&self, index: usize, run: usize) -> Result<Child> {
        let client = client_id(index, run);
        let config = self.dir.join(format!("{client}.toml"));
        std::fs::File::create(&config)?.write_all(
            config_text(self.services, self.topic, self.group, self.prefix, &client).as_bytes(),
        )?;
        sluice_tests::spawn_agent(AGENT_ENV, &config, self.log)
    }
}

/// The client id of incarnation `run` of agent `index`. The range assignor
/// hands the lower partitions to the member whose id sorts first, so agent 0
/// sorts before agent 1 on even runs and after it on odd ones: every restart
/// moves partitions between the two agents.
fn client_id(index: usize, run: usize) -> String {
    let rank = match index {
        0 if run.is_multiple_of(2) => "a",
        0 => "z",
        _ => "m",
    };
    format!("{rank}-agent{index}-{run}")
}

fn config_text(s: &Services, topic: &str, group: &str, prefix: &str, client: &str) -> String {
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
kafka = {{ "client.id" = "{client}", "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000, "max.poll.interval.ms" = 20000 }}
channels = ["lake"]

[channels.lake]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
exactly_once = true
url = "s3://{bucket}/{prefix}"
path = "%{{topic}}/bucket=%{{bucket}}"
roll_size = "{roll_kib}KiB"
roll_interval = "1500ms"
s3 = {{ endpoint = "{s3}", region = "us-east-1", path_style = true, allow_http = true, access_key_id = "test", secret_access_key = "test" }}
"#,
        kafka = s.kafka,
        roll_kib = ROLL_SIZE / 1024,
        bucket = s.bucket,
        s3 = s.s3,
    )
}

/// Produces the events, paced over [`STREAM`]; returns where each id landed.
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
            let due = start + STREAM.mul_f64(i as f64 / EVENTS as f64);
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

/// Where the published part of a partition's chain ends (0 if nothing is
/// published): the end of the record `HEAD` names. A record is the commit;
/// its files become visible just after it, and `HEAD` moves once they are.
async fn published_end(
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

/// How often a partition's chain passed between agent `pid` and the others:
/// consecutive records (in offset order) of which one side wrote one.
async fn handovers(store: &dyn ObjectStore, prefix: &str, pid: u32) -> Result<usize> {
    let dir = object_store::path::Path::from(format!("{prefix}/_sluice/commits"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let mine = format!("/{pid}");
    let mut chains: HashMap<i64, Vec<(i64, bool)>> = HashMap::new();
    for meta in metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".json"))
    {
        let body = store.get(&meta.location).await?.bytes().await?;
        let record: serde_json::Value = serde_json::from_slice(&body)?;
        let field = |k: &str| {
            record[k]
                .as_i64()
                .with_context(|| format!("record without `{k}`"))
        };
        let by_pid = record["agent"].as_str().is_some_and(|a| a.ends_with(&mine));
        chains
            .entry(field("partition")?)
            .or_default()
            .push((field("start")?, by_pid));
    }
    Ok(chains
        .values_mut()
        .map(|chain| {
            chain.sort();
            chain.windows(2).filter(|w| w[0].1 != w[1].1).count()
        })
        .sum())
}

/// The committed end of every partition.
async fn committed_ends(
    store: &dyn ObjectStore,
    prefix: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>> {
    let mut ends = HashMap::new();
    for p in 0..PARTITIONS {
        ends.insert(p, committed_end(store, prefix, topic, p).await?);
    }
    Ok(ends)
}

/// Waits until every partition is served again after a kill: its committed
/// chain has moved past where it stood at the kill (`before`), or it has
/// caught up with the partition's high watermark. Returns the time since
/// `killed`.
async fn time_to_recover(
    store: &dyn ObjectStore,
    admin: &BaseConsumer,
    prefix: &str,
    topic: &str,
    before: &HashMap<i32, i64>,
    killed: Instant,
) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut waiting = Vec::new();
        for (&p, &was) in before {
            let now = committed_end(store, prefix, topic, p).await?;
            if now > was {
                continue;
            }
            // A failed query counts as still waiting (high watermark -1).
            let high = tokio::task::block_in_place(|| {
                admin.fetch_watermarks(topic, p, Duration::from_secs(10))
            })
            .map_or(-1, |(_, high)| high);
            if now < high || high < 0 {
                waiting.push((p, now, high));
            }
        }
        if waiting.is_empty() {
            return Ok(killed.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "partitions not served within 180 s of a kill, as (partition, committed, high \
                 watermark): {waiting:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The consumer group as its coordinator describes it: state and member ids
/// (`("", [])` before the group exists).
fn describe_group(admin: &BaseConsumer, group: &str) -> Result<(String, Vec<String>)> {
    let list = tokio::task::block_in_place(|| {
        admin.fetch_group_list(Some(group), Duration::from_secs(10))
    })?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|info| {
            (
                info.state().to_owned(),
                info.members().iter().map(|m| m.id().to_owned()).collect(),
            )
        })
        .unwrap_or_default())
}

/// Waits (up to 90 s) until `done(state, members)` holds for the group.
async fn await_group(
    admin: &BaseConsumer,
    group: &str,
    what: &str,
    done: impl Fn(&str, &[String]) -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        // A failed description is "not yet": the deadline decides.
        let (state, members) = describe_group(admin, group)
            .unwrap_or_else(|e| (format!("not described ({e:#})"), Vec::new()));
        if done(&state, &members) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("waited 90 s for {what}; the group is {state} with members {members:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Outcome {
    kills: usize,
    lost: usize,
    duplicated: usize,
    recoveries: Vec<Duration>,
    /// How long the coordinator took to drop each killed agent (rebalance).
    expiries: Vec<Duration>,
    /// Hand-overs of partitions between the surviving agent and the killed
    /// ones, seen in the commit chains (rebalance).
    handovers: usize,
    objects: usize,
    /// Objects of at least `roll_size` bytes, i.e. closed by a size roll.
    size_rolled: usize,
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
    let log = dir.path().join("agents.log");
    let slot = Slot {
        services: &services,
        topic: &topic,
        group: &group,
        prefix: &prefix,
        dir: dir.path(),
        log: &log,
    };
    let store = s3(&services)?;
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .create()?;

    let producer = tokio::spawn({
        let bootstrap = services.kafka.clone();
        let topic = topic.clone();
        async move { produce(&bootstrap, &topic).await }
    });

    // The agents start last to first: agent 1, which is never killed, joins
    // alone and leads the group (see module docs).
    let mut running: Vec<Child> = Vec::new();
    for index in (0..agents).rev() {
        running.insert(0, slot.spawn(index, 0)?);
        if index > 0 {
            let me = format!("{}-", client_id(index, 0));
            await_group(
                &admin,
                &group,
                "the first agent to lead the group",
                |state, m| state == "Stable" && m.iter().any(|id| id.starts_with(&me)),
            )
            .await?;
        }
    }
    // A deterministic "random" schedule: each kill 1.5–5 s after the agents
    // serve every partition again (the first: after the start).
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ (kills as u64);
    let mut recoveries = Vec::new();
    let mut expiries = Vec::new();
    let mut serving_since = Instant::now();
    for run in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = Duration::from_millis(1500 + rng % 3500);
        tokio::time::sleep_until((serving_since + wait).into()).await;
        // The victim is always agent 0; with two agents, agent 1 keeps going.
        let victim = &mut running[0];
        victim.kill().context("SIGKILL")?;
        victim.wait()?;
        let killed = Instant::now();
        let before = committed_ends(&store, &prefix, &topic).await?;
        if agents > 1 {
            // Judged on an answer that lists the survivor: an empty or
            // failed description says nothing about the killed agent.
            let gone = format!("{}-", client_id(0, run));
            let survivor = format!("{}-", client_id(1, 0));
            expiries.push(
                await_group(
                    &admin,
                    &group,
                    "the killed agent to leave the group",
                    |_, m| {
                        m.iter().any(|id| id.starts_with(&survivor))
                            && !m.iter().any(|id| id.starts_with(&gone))
                    },
                )
                .await?,
            );
        }
        running[0] = slot.spawn(0, run + 1)?;
        let recovered = time_to_recover(&store, &admin, &prefix, &topic, &before, killed).await;
        recoveries.push(recovered.with_context(|| format!("log:\n{}", tail(&log)))?);
        serving_since = Instant::now();
    }
    let placed = producer.await??;
    // Wait until every partition's committed chain reaches its end offset,
    // and its files are published, then stop the agents (SIGKILL again:
    // what is committed is final; a commit's files are published just after
    // it, or by the next owner's recovery).
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &(p, o) in &placed {
        let e = ends.entry(p).or_default();
        *e = (*e).max(o + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let mut done = true;
        for (&p, &end) in &ends {
            if published_end(&store, &prefix, &topic, p).await? < end {
                done = false;
            }
        }
        if done {
            break;
        }
        for agent in &mut running {
            if let Some(status) = agent.try_wait()? {
                bail!(
                    "an agent stopped by itself ({status}); log:\n{}",
                    tail(&log)
                );
            }
        }
        if Instant::now() > deadline {
            for agent in &mut running {
                let _ = agent.kill();
            }
            let mut reached = Vec::new();
            for &p in ends.keys() {
                reached.push((p, published_end(&store, &prefix, &topic, p).await?));
            }
            bail!(
                "the published output reached {reached:?}, not the end offsets {ends:?}, in time; \
                 group and error lines of the agents' log:\n{}",
                notable(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let handovers = match running.get(1) {
        Some(survivor) => handovers(&store, &prefix, survivor.id()).await?,
        None => 0,
    };
    for agent in &mut running {
        agent.kill()?;
        agent.wait()?;
    }

    // Every visible object, i.e. everything outside `_sluice/`.
    let p = object_store::path::Path::from(prefix.as_str());
    let metas: Vec<_> = store.list(Some(&p)).try_collect().await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut objects, mut size_rolled) = (0, 0);
    for meta in metas {
        let key = meta.location.as_ref();
        if key.contains("/_sluice/") {
            continue;
        }
        objects += 1;
        // A size roll closes a file once it has reached `roll_size`; an
        // interval roll (or a partition-wide roll) leaves it smaller.
        if meta.size >= ROLL_SIZE {
            size_rolled += 1;
        }
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
        expiries,
        handovers,
        objects,
        size_rolled,
    }))
}

/// The log lines that tell what the group and the agents did.
fn notable(log: &std::path::Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
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

/// The end of the agents' log.
fn tail(log: &std::path::Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The median and the maximum of some durations, in seconds.
fn p50_max(d: &[Duration]) -> (f64, f64) {
    let mut d = d.to_vec();
    d.sort();
    let p50 = d.get(d.len() / 2).copied().unwrap_or_default();
    let max = d.last().copied().unwrap_or_default();
    (p50.as_secs_f64(), max.as_secs_f64())
}

fn report(name: &str, o: &Outcome) {
    let (p50, max) = p50_max(&o.recoveries);
    println!(
        "{name}: {EVENTS} events checked, {} kills, {} lost, {} duplicated, {} visible objects \
         ({} closed by size, the others by interval), time from a kill until every partition is \
         served again p50 {p50:.1} s max {max:.1} s",
        o.kills, o.lost, o.duplicated, o.objects, o.size_rolled,
    );
    if !o.expiries.is_empty() {
        let (p50, max) = p50_max(&o.expiries);
        println!(
            "{name}: the coordinator dropped a killed agent after p50 {p50:.1} s max {max:.1} s; \
             partitions changed hands {} times between the agents",
            o.handovers
        );
    }
}

/// Both roll policies closed files.
fn assert_rolls(o: &Outcome) {
    assert!(o.size_rolled > 0, "no file was closed by a size roll");
    assert!(
        o.objects > o.size_rolled,
        "no file was closed by an interval roll"
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
    assert_rolls(&o);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance() -> Result<()> {
    let Some(o) = run_scenario("rebalance", 2, 10).await? else {
        return Ok(());
    };
    report("rebalance", &o);
    assert_eq!(o.lost, 0, "ids lost");
    assert_eq!(o.duplicated, 0, "ids duplicated");
    assert_eq!(
        o.expiries.len(),
        10,
        "every kill was seen by the coordinator"
    );
    assert_rolls(&o);
    // Agent 1 alone, then agent 0 taking half, would be 2 hand-overs;
    // alternating halves at every restart while data flows gives many more.
    assert!(
        o.handovers >= 6,
        "partitions should move between the agents at restarts ({} hand-overs)",
        o.handovers
    );
    Ok(())
}
