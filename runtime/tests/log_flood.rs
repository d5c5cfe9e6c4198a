//! Attack: a plugin floods the log, 1 GiB through stderr in lines that each
//! hold a newline followed by a forged host log line, plus `host.log` lines
//! that do the same. The runtime stays up, every event is accounted for,
//! what reaches the log is bounded by the plugin's rate (the rest counted
//! in `plugin.<name>.log_suppressed`, with a summary line), and no forged
//! line starts a line of the log.

mod util;

use std::io::Write;
use std::sync::{Arc, Mutex};

use sluice::metrics::Metrics;
use sluice::plugin::log_gate::{LOG_BURST, LOG_LINES_PER_SECOND};
use sluice::plugin::{Chain, LogGate, PluginEngine, PluginInstance, Sandbox, Stage};
use util::{batch, limits, plugin};

/// A log destination the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_log_flood_is_bounded_counted_and_cannot_forge_lines() {
    let engine = PluginEngine::new().unwrap();
    let metrics = Metrics::default();
    let loaded = engine.load(&plugin("misbehave"), None).unwrap();
    let sandbox = Sandbox {
        limits: limits(60_000),
        log: LogGate::new(metrics.counter("plugin.flood.log_suppressed")),
        ..Sandbox::default()
    };
    let config = r#"{"mode":"flood","flood_bytes":536870912}"#;
    let instance = PluginInstance::sandboxed(engine, loaded, "flood", config.into(), sandbox);
    let mut chain = Chain::new(vec![Stage::new(instance, &metrics)]);

    // `host.log` lines are escaped (unit-tested in `log_gate`); stderr is
    // split at its newlines, each piece a line of its own behind the host's
    // timestamp and level.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let started = std::time::Instant::now();
    // Two events: 512 MiB of stderr each, 1 GiB in all.
    // Global: guest stderr is written on the WASI runtime's threads. This
    // file's only test, so nothing else logs into it.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let out = chain.process(batch(&["a", "b"]));
    let elapsed = started.elapsed();

    assert_eq!(
        out.default.len() + out.dead.len() + out.dropped,
        2,
        "every event accounted for"
    );
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // The plugin's own lines; a summary of dropped lines may precede each.
    let summaries = lines
        .iter()
        .filter(|l| l.contains("plugin log lines dropped"))
        .count();
    let from_plugin = lines
        .iter()
        .filter(|l| l.contains("plugin=\"flood\""))
        .count()
        - summaries;
    let bound = LOG_BURST as usize
        + (LOG_LINES_PER_SECOND as f64 * (elapsed.as_secs_f64() + 1.0)) as usize
        + 10;
    assert!(
        from_plugin <= bound,
        "{from_plugin} plugin lines in {elapsed:?} (bound {bound})"
    );
    assert!(
        from_plugin >= LOG_BURST as usize,
        "the burst is logged: {from_plugin}"
    );
    let suppressed = metrics.get("plugin.flood.log_suppressed");
    assert!(
        suppressed > 100_000,
        "1 GiB of ~8 KiB lines is ~65 000 lines per event: {suppressed}"
    );
    assert!(
        (1..=from_plugin).contains(&summaries),
        "summary lines say lines were dropped: {summaries}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("2026-12-03T00:00:00.000000Z")),
        "no forged line starts a log line"
    );
    assert!(lines.iter().all(|l| l.len() < 4096), "lines are cut");
}
