//! `plugin_call`: what a plugin costs per event on the host's hot path.
//!
//! Each iteration does the per-batch work every pipeline does without I/O —
//! build the flat batch from consumed records (as the Kafka source does), run
//! the plugin chain, write the kept events as `text` lines (as a sink does) —
//! for a batch of 1000 events, with no plugin, the `noop` interceptor, and the
//! `mask` interceptor, at 100-byte and 1-KiB JSON bodies. `mask-native` is
//! the baseline for `mask`: the same crate compiled natively and run by the
//! same guest driver over the same flat batch (no text lines written). Criterion reports
//! elements/s; ns/event = 1e9 / throughput.
//!
//! Needs the plugins built first: `scripts/build-plugins.sh`, then
//! `cargo bench -p sluice --bench plugin_call`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::metrics::Metrics;
use sluice::plugin::{Chain, ChainOutput, Limits, PluginEngine, PluginInstance, Stage};
use sluice_batch::{BatchBuf, NewEvent};

const BATCH: usize = 1000;

struct Record {
    key: Vec<u8>,
    body: Vec<u8>,
    offset: i64,
}

fn records(body_size: usize) -> Vec<Record> {
    (0..BATCH)
        .map(|i| {
            let mut body =
                format!(r#"{{"id":"{i:08}","card":"4111111111{i:06}","amount":12.50,"note":""#)
                    .into_bytes();
            while body.len() < body_size - 2 {
                body.push(b'x');
            }
            body.extend_from_slice(b"\"}");
            Record {
                key: format!("k{i}").into_bytes(),
                body,
                offset: i as i64,
            }
        })
        .collect()
}

/// The records as one flat batch, as the Kafka source builds it.
fn flat(records: &[Record]) -> BatchBuf {
    let bytes: usize = records
        .iter()
        .map(|r| r.body.len() + r.key.len() + 16)
        .sum();
    let mut batch = BatchBuf::with_capacity(records.len(), bytes);
    for r in records {
        batch.push(&NewEvent {
            key: Some(&r.key),
            body: &r.body,
            headers: &[],
            topic: "transactions",
            partition: 0,
            offset: r.offset,
            timestamp: 1_413_249_509_000,
        });
    }
    batch
}

fn stage(records: &[Record], chain: Option<&mut Chain>, out: &mut Vec<u8>) -> usize {
    let batch = flat(records);
    let output = match chain {
        Some(chain) => chain.process(batch),
        None => ChainOutput {
            default: batch,
            ..Default::default()
        },
    };
    out.clear();
    for event in output.default.iter() {
        out.extend_from_slice(event.body());
        out.push(b'\n');
    }
    output.default.len()
}

fn plugin_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

fn chain(engine: &PluginEngine, name: &str, config: &str) -> Chain {
    let loaded = engine.load(&plugin_path(name), None).expect("plugin loads");
    let instance = PluginInstance::new(
        engine.clone(),
        loaded,
        name,
        config.into(),
        Limits::default(),
    );
    Chain::new(vec![Stage::new(instance, &Metrics::default())])
}

fn bench(c: &mut Criterion) {
    let engine = PluginEngine::new().expect("engine");
    let mut group = c.benchmark_group("plugin_call");
    group.throughput(Throughput::Elements(BATCH as u64));
    for size in [100usize, 1024] {
        let input = records(size);
        let mut out = Vec::with_capacity(BATCH * (size + 1));
        let label = if size == 100 { "100B" } else { "1KiB" };
        group.bench_with_input(BenchmarkId::new("none", label), &input, |b, input| {
            b.iter(|| black_box(stage(input, None, &mut out)))
        });
        let mut noop = chain(&engine, "noop", "{}");
        group.bench_with_input(BenchmarkId::new("noop", label), &input, |b, input| {
            b.iter(|| black_box(stage(input, Some(&mut noop), &mut out)))
        });
        let mut mask = chain(&engine, "mask", r#"{"fields":["card"],"keep_last":4}"#);
        assert_eq!(stage(&input, Some(&mut mask), &mut out), BATCH);
        assert!(
            !out.windows(16).any(|w| w.starts_with(b"4111111111")),
            "mask did not mask"
        );
        group.bench_with_input(BenchmarkId::new("mask", label), &input, |b, input| {
            b.iter(|| black_box(stage(input, Some(&mut mask), &mut out)))
        });
        // The same plugin compiled natively, run by the same driver over the
        // same flat batch: what WebAssembly costs against native code.
        sluice_guest::testing::set_config(r#"{"fields":["card"],"keep_last":4}"#);
        let batch = flat(&input);
        assert_eq!(
            sluice_guest::testing::run_encoded(mask::mask, &batch).expect("native mask"),
            BATCH,
            "native mask masks every event"
        );
        group.bench_with_input(
            BenchmarkId::new("mask-native", label),
            &input,
            |b, input| {
                b.iter(|| {
                    let batch = flat(input);
                    black_box(sluice_guest::testing::run_encoded(mask::mask, &batch))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
