//! `sandbox`: what hot swap and per-team sandboxing cost. A bench script
//! (not criterion: it measures latencies and throughput under interference),
//! printing one line per measurement:
//!
//! 1. **swap pause**: a chain runs batches of 1000 × 100 B events through
//!    `noop` back to back while new builds are published; the latency of the
//!    batch that switches versions (p50/p99) against ordinary batches.
//! 2. **deploy → live**: from the `rename` of a new file into the watched
//!    directory until the first batch processed by it (p50/p99).
//! 3. **restart**: loading `mask` with an empty compile cache (cold compile)
//!    and with a warm one.
//! 4. **team isolation**: team B's `mask` throughput alone, then while team
//!    A's plugin runs one of the hostile-plugin attacks on every batch
//!    (breaker off), one table row per attack, with A's events accounted for.
//! 5. **epoch interruption**: `mask` ns/event with and without it.
//!
//! Build the plugins first (`scripts/build-plugins.sh`), then
//! `cargo bench -p sluice --bench sandbox`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice::config::{BreakerConfig, PluginKind};
use sluice::metrics::Metrics;
use sluice::plugin::engine::tagged_build;
use sluice::plugin::reload::{self, WatchSet};
use sluice::plugin::{
    Chain, EngineOptions, Limits, PluginEngine, PluginInstance, PluginSlot, Registry, Sandbox,
    SlotSpec, Stage, StagePolicy,
};
use sluice_batch::{BatchBuf, NewEvent};

fn plugin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"))
}

fn batch(n: usize) -> BatchBuf {
    let mut b = BatchBuf::default();
    for i in 0..n {
        let body = format!(
            r#"{{"id":"{i:08}","card":"4111111111{i:06}","amount":12.50,"note":"xxxxxxxxxxxxxxxx"}}"#
        );
        b.push(&NewEvent {
            key: None,
            body: body.as_bytes(),
            headers: &[],
            topic: "t",
            partition: 0,
            offset: i as i64,
            timestamp: 0,
        });
    }
    b
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn swap_pause_and_deploy_latency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    let noop = std::fs::read(plugin("noop")).unwrap();
    std::fs::write(&path, &noop).unwrap();
    let engine = PluginEngine::with_options(EngineOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..Default::default()
    })
    .unwrap();
    let metrics = Metrics::default();
    let slot = PluginSlot::load(
        &engine,
        SlotSpec {
            name: "p".into(),
            kind: PluginKind::Interceptor,
            path: path.clone(),
            team: "t".into(),
            pin: None,
            config_json: "{}".into(),
            sandbox: Sandbox::default(),
        },
        &metrics,
    )
    .unwrap();
    let mut registry = Registry::new(None);
    registry.insert(slot.clone());
    let _watcher = reload::watch(WatchSet {
        registry,
        engine: engine.clone(),
        tables: Vec::new(),
        resume_dir: dir.path().join("control"),
        resume: BTreeMap::new(),
    })
    .unwrap();
    let mut chain = Chain::new(vec![Stage::from_slot(
        slot.clone(),
        &engine,
        StagePolicy::default(),
        &metrics,
    )]);
    let input = batch(1000);
    let stop = Arc::new(AtomicBool::new(false));
    let deployed_at = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let deployer = {
        let stop = stop.clone();
        let deployed_at = deployed_at.clone();
        let slot = slot.clone();
        std::thread::spawn(move || {
            for n in 1..=30u64 {
                std::thread::sleep(Duration::from_millis(150));
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, tagged_build(&noop, &format!("build-{n}"))).unwrap();
                deployed_at.lock().unwrap().push(Instant::now());
                std::fs::rename(&tmp, &path).unwrap();
                while slot.current().generation < n + 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut normal = Vec::new();
    let mut swapping = Vec::new();
    let mut live = Vec::new();
    let mut generation = slot.current().generation;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let out = chain.process(input.clone());
        let took = started.elapsed();
        assert_eq!(out.default.len(), 1000);
        let now = chain.stages()[0].generation();
        if now != generation {
            swapping.push(took);
            if let Some(at) = deployed_at.lock().unwrap().get((now - 2) as usize) {
                live.push(Instant::now().duration_since(*at));
            }
            generation = now;
        } else {
            normal.push(took);
        }
    }
    deployer.join().unwrap();
    normal.sort();
    swapping.sort();
    live.sort();
    println!(
        "swap pause: batch of 1000 with a version switch p50 {:?} p99 {:?}; ordinary batch p50 {:?} p99 {:?} ({} swaps, {} batches)",
        pct(&swapping, 0.5),
        pct(&swapping, 0.99),
        pct(&normal, 0.5),
        pct(&normal, 0.99),
        swapping.len(),
        normal.len()
    );
    println!(
        "deploy -> live (rename to first batch on the new version, debounce {:?}): p50 {:?} p99 {:?}",
        reload::DEBOUNCE,
        pct(&live, 0.5),
        pct(&live, 0.99)
    );
}

fn restart_cached_vs_cold() {
    let dir = tempfile::tempdir().unwrap();
    let mask = plugin("mask");
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let key = sluice::plugin::CacheKey::ephemeral();
    for i in 0..5 {
        let cache = dir.path().join(format!("cache{i}"));
        let engine = PluginEngine::with_options(EngineOptions {
            cache_dir: Some(cache.clone()),
            cache_key: Some(key.clone()),
            ..Default::default()
        })
        .unwrap();
        let l = engine.load(&mask, None).unwrap();
        assert!(!l.cached);
        cold.push(l.compile_time);
        engine.remember(&l);
        let engine = PluginEngine::with_options(EngineOptions {
            cache_dir: Some(cache),
            cache_key: Some(key.clone()),
            ..Default::default()
        })
        .unwrap();
        let l = engine.load(&mask, None).unwrap();
        assert!(l.cached);
        cached.push(l.compile_time);
    }
    cold.sort();
    cached.sort();
    println!(
        "restart: loading mask.wasm (963 KB) cold compile median {:?}, from the compile cache median {:?}",
        cold[2], cached[2]
    );
}

fn mask_chain(engine: &PluginEngine, metrics: &Metrics, name: &str) -> Chain {
    let loaded = engine.load(&plugin("mask"), None).unwrap();
    Chain::new(vec![Stage::new(
        PluginInstance::new(
            engine.clone(),
            loaded,
            name,
            r#"{"fields":["card"]}"#.into(),
            Limits::default(),
        ),
        metrics,
    )])
}

fn throughput(chain: &mut Chain, input: &BatchBuf, for_: Duration) -> f64 {
    let started = Instant::now();
    let mut events = 0u64;
    while started.elapsed() < for_ {
        events += chain.process(input.clone()).default.len() as u64;
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// The attacks of the hostile-plugin suite that run inside a batch, as
/// `misbehave` modes, with the time budget each runs under.
const ATTACKS: &[(&str, &str, u64)] = &[
    // The control: a busy neighbour that behaves. What it costs B is what
    // any second busy pipeline costs on this machine.
    (
        "none: a busy neighbour that behaves",
        r#"{"mode":"keep"}"#,
        2000,
    ),
    ("spin to the time budget", r#"{"mode":"spin"}"#, 200),
    ("sleep an hour through WASI", r#"{"mode":"sleep"}"#, 200),
    ("allocate without bound", r#"{"mode":"alloc"}"#, 2000),
    ("trap", r#"{"mode":"trap"}"#, 2000),
    (
        "20 MiB reason x 100 events",
        r#"{"mode":"huge-reason"}"#,
        2000,
    ),
    ("get-many of 10^6 keys", r#"{"mode":"lookup-bomb"}"#, 2000),
    (
        "log flood, 64 KiB per event",
        r#"{"mode":"flood","flood_bytes":65536}"#,
        2000,
    ),
    ("forged provenance headers", r#"{"mode":"forge"}"#, 2000),
];

/// Team A runs each attack on every batch (100 events, breaker off) while
/// team B's `mask` pipeline runs beside it: B's throughput against B alone
/// measured just before (same run, same machine), and whether every event of
/// A's batches is accounted for (out + dropped + dead-lettered = in).
fn team_isolation() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let input = batch(1000);
    let mut b = mask_chain(&engine, &metrics, "b");
    let window = Duration::from_millis(1500);
    // Warm up B (first calls, allocator).
    throughput(&mut b, &input, Duration::from_millis(500));
    println!(
        "team isolation (team B: mask on 1000-event batches; team A: misbehave, breaker off; {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| attack by team A | A's batches | A's events in | accounted for | B alone (events/s, median) | B beside A (median) | ratio (median of 3 rounds) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, config, budget_ms) in ATTACKS {
        let (mut ratios, mut alones, mut besides) = (Vec::new(), Vec::new(), Vec::new());
        let (mut batches, mut events_in, mut accounted) = (0u64, 0u64, 0u64);
        // Alone, then beside the attack, ROUNDS times: the machine's noise
        // (±10% between windows) is of the size of what is measured.
        for _ in 0..ROUNDS {
            let alone = throughput(&mut b, &input, window);
            let stop = Arc::new(AtomicBool::new(false));
            let attacker = {
                let engine = engine.clone();
                let stop = stop.clone();
                let config = config.to_string();
                let budget = Duration::from_millis(*budget_ms);
                std::thread::spawn(move || {
                    let metrics = Metrics::default();
                    let loaded = engine.load(&plugin("misbehave"), None).unwrap();
                    let mut a = Chain::new(vec![
                        Stage::new(
                            PluginInstance::new(
                                engine.clone(),
                                loaded,
                                "a",
                                config,
                                Limits {
                                    memory_bytes: 64 << 20,
                                    time_budget: budget,
                                    ..Limits::default()
                                },
                            ),
                            &metrics,
                        )
                        .with_policy(StagePolicy {
                            // Breaker off: the attack really runs on every batch.
                            breaker: BreakerConfig {
                                failures: 0,
                                ..Default::default()
                            },
                            ..Default::default()
                        }),
                    ]);
                    let hundred = batch(100);
                    let (mut batches, mut events_in, mut accounted) = (0u64, 0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let out = a.process(hundred.clone());
                        let routed: usize = out.routed.iter().map(|(_, b)| b.len()).sum();
                        // Every event of every attacking batch is accounted for.
                        assert_eq!(
                            out.default.len() + routed + out.dropped + out.dead.len(),
                            hundred.len()
                        );
                        batches += 1;
                        events_in += hundred.len() as u64;
                        accounted +=
                            (out.default.len() + routed + out.dropped + out.dead.len()) as u64;
                    }
                    (batches, events_in, accounted)
                })
            };
            let beside = throughput(&mut b, &input, window);
            stop.store(true, Ordering::Relaxed);
            let (n, i, a) = attacker.join().unwrap();
            (batches, events_in, accounted) = (batches + n, events_in + i, accounted + a);
            ratios.push(beside / alone);
            alones.push(alone);
            besides.push(beside);
        }
        println!(
            "| {name} | {batches} | {events_in} | {accounted} | {:.0} | {:.0} | {:.2} |",
            median(&mut alones),
            median(&mut besides),
            median(&mut ratios)
        );
    }
}

/// Rounds of the team isolation bench per attack.
const ROUNDS: usize = 3;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn epoch_cost() {
    let metrics = Metrics::default();
    let input = batch(1000);
    let mut results = Vec::new();
    for epoch in [false, true, false, true] {
        let engine = PluginEngine::with_options(EngineOptions {
            epoch_interruption: epoch,
            ..Default::default()
        })
        .unwrap();
        let mut chain = mask_chain(&engine, &metrics, "m");
        throughput(&mut chain, &input, Duration::from_millis(500));
        let eps = throughput(&mut chain, &input, Duration::from_secs(3));
        results.push((epoch, 1e9 / eps));
    }
    let avg = |e: bool| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == e).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "epoch interruption on mask (1000 × ~100 B): {:.0} ns/event without, {:.0} ns/event with: {:+.1}%",
        avg(false),
        avg(true),
        100.0 * (avg(true) / avg(false) - 1.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    swap_pause_and_deploy_latency();
    restart_cached_vs_cold();
    team_isolation();
    epoch_cost();
}
