//! Scenario: 50 plugin swaps while 200 000 events flow through a real broker
//! (Apache Kafka) into files. Each swap deploys a new build of the interceptor into
//! the team's plugin directory (same behaviour, new digest) while events keep
//! being produced. Every event must come out exactly once, stamped with
//! exactly one version of the plugin (a version that was really deployed),
//! and the output must show the versions changing over time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::metrics::Metrics;
use sluice::topology::{self, RunOptions};
use sluice_tests::stream::Deadline;
use sluice_tests::{create_topic, files_under, plugin, services, unique};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 200_000;
const SWAPS: usize = 50;

/// Build `n` of the stage plugin: same behaviour, its own digest.
fn build(component: &[u8], n: usize) -> Vec<u8> {
    sluice::plugin::engine::tagged_build(component, &format!("build-{n}"))
}

fn digest16(bytes: &[u8]) -> String {
    sluice::plugin::engine::digest(bytes)[..16].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_load_lose_nothing_and_stamp_one_version_per_event() -> anyhow::Result<()>
{
    let Some(services) = services() else {
        return Ok(());
    };
    let topic = unique("swap");
    create_topic(&services.kafka, &topic, 3).await?;
    let dir = tempfile::tempdir()?;
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    let noop = std::fs::read(plugin("noop"))?;
    let first = build(&noop, 0);
    std::fs::write(plugin_dir.join("stage.wasm"), &first)?;
    let mut deployed: HashSet<String> = HashSet::from([digest16(&first)]);
    let out = dir.path().join("out");

    let config_text = format!(
        r#"
data_dir = "{data}"

[teams.payments]
plugin_dir = "{plugin_dir}"
time_budget = "2s"

[sources.tx]
type = "kafka"
team = "payments"
bootstrap_servers = "{kafka}"
group_id = "{group}"
topics = ["{topic}"]
batch_max_events = 1000
batch_max_wait = "50ms"
interceptors = ["stage"]
channels = ["lake"]
dead_letter = "rejects"

[plugins.stage]
type = "interceptor"
team = "payments"
path = "stage.wasm"

[channels.lake]
type = "memory"

[channels.rejects]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "file://{out}"
path = "%{{topic}}"
format = "jsonl"
roll_size = "1MiB"

[sinks.rejects]
type = "null"
channel = "rejects"
"#,
        data = dir.path().join("data").display(),
        plugin_dir = plugin_dir.display(),
        kafka = services.kafka,
        group = unique("swap"),
        out = out.display(),
    );
    let config = sluice::config::parse(std::path::Path::new("swap.toml"), &config_text, |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = std::sync::Arc::new(Metrics::default());
    // Stopped by the test once every event has passed the plugin, not by
    // idleness: between chunks nothing flows while a new build compiles.
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(topology::run(
        config,
        RunOptions {
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            ..Default::default()
        },
    ));

    // Produce in 50 chunks; after each chunk, deploy a new build and wait
    // until it is live before producing the next one.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("linger.ms", "5")
        .create()?;
    let chunk = EVENTS / SWAPS;
    let mut swap_times = Vec::new();
    for s in 0..SWAPS {
        let mut pending = Vec::with_capacity(chunk);
        for i in s * chunk..(s + 1) * chunk {
            let key = i.to_string();
            let body = format!("ev-{i}");
            pending.push(
                producer
                    .send_result(FutureRecord::to(&topic).key(&key).payload(&body))
                    .map_err(|(e, _)| e)?,
            );
        }
        for p in pending {
            p.await?.map_err(|(e, _)| e)?;
        }
        // Let this chunk start flowing through the running version.
        let mut wait = Deadline::new("events flowing", Duration::from_secs(60));
        while metrics.get("plugin.stage.events") < (s * chunk + 1) as u64 {
            wait.tick(Duration::from_millis(5)).await?;
        }
        let next = build(&noop, s + 1);
        deployed.insert(digest16(&next));
        let tmp = plugin_dir.join("stage.wasm.tmp");
        std::fs::write(&tmp, &next)?;
        let started = Instant::now();
        std::fs::rename(&tmp, plugin_dir.join("stage.wasm"))?;
        let mut wait = Deadline::new(&format!("swap {s} to go live"), Duration::from_secs(30));
        while metrics.get("plugin.stage.reloads") < (s + 1) as u64 {
            wait.tick(Duration::from_millis(5)).await?;
        }
        swap_times.push(started.elapsed());
    }
    let mut wait = Deadline::new("every event to pass the plugin", Duration::from_secs(120));
    while metrics.get("plugin.stage.events") < EVENTS as u64 {
        wait.tick(Duration::from_millis(20)).await?;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(300), run).await???;
    assert_eq!(metrics.get("plugin.stage.reloads"), SWAPS as u64);
    assert_eq!(metrics.get("plugin.stage.reloads_rejected"), 0);

    // Read every file back.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut versions_seen: HashSet<String> = HashSet::new();
    for path in files_under(&out) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "in-progress file left: {name}");
        for line in std::fs::read_to_string(&path)?.lines() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let body = record["value"].as_str().expect("text body").to_string();
            let lineage = record["headers"]["sluice.lineage"]
                .as_str()
                .expect("every event is stamped");
            let version = lineage
                .strip_prefix("stage@")
                .unwrap_or_else(|| panic!("one version of one plugin, got `{lineage}`"));
            assert!(!version.contains(';'), "one version per event: {lineage}");
            assert!(deployed.contains(version), "unknown version {version}");
            versions_seen.insert(version.to_string());
            *seen.entry(body).or_default() += 1;
        }
    }
    let missing = (0..EVENTS)
        .filter(|i| !seen.contains_key(&format!("ev-{i}")))
        .count();
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    swap_times.sort();
    eprintln!(
        "hot swap under load: {} events out, {missing} missing, {duplicated} duplicated, {} versions in the output; deploy→live p50 {:?} max {:?}",
        seen.len(),
        versions_seen.len(),
        swap_times[swap_times.len() / 2],
        swap_times[swap_times.len() - 1]
    );
    assert_eq!(missing, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(seen.len(), EVENTS);
    assert!(
        versions_seen.len() >= SWAPS / 2,
        "the output should show many versions, saw {}",
        versions_seen.len()
    );
    Ok(())
}
