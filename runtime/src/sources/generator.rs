//! The `generator` source: numbered events for demos, benchmarks and
//! tests, at a steady rate or as fast as the pipeline takes them (Flume's
//! `seq` and stress sources).
//!
//! ```toml
//! [sources.demo]
//! type = "generator"
//! count = 100000          # 0: until shutdown
//! rate = 5000             # events per second; 0: as fast as possible
//! body = '{"n": {n}, "at": {ts}}'
//! channels = ["out"]
//! ```
//!
//! Event `n` (from 0): body = `body` with `{n}` replaced by `n` and `{ts}`
//! by the time in milliseconds; key = `key` likewise (no key if unset);
//! topic = the source's name, partition 0, offset = the start time in
//! microseconds plus `n` (ascending across restarts), timestamp = now.
//! With `count` the source ends once it generated them all, and the run
//! shuts down when they are delivered.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`,
//! `.undelivered_batches`, histogram `.delivery_seconds`.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use super::batcher::{self, Batcher, Limits};
use super::{SourceContext, SourceError};
use crate::event::{Batch, NewEvent};
use crate::units::{ByteSize, HumanDuration};

/// `[sources.<name>]` with `type = "generator"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSourceConfig {
    /// How many events; 0 (default) generates until shutdown.
    #[serde(default)]
    pub count: u64,
    /// Events per second; 0 (default) as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: u64,
    /// The body template: `{n}` is the event's number, `{ts}` the time in
    /// milliseconds. Default `"{n}"`.
    #[serde(default = "default_body")]
    pub body: String,
    /// The key template (same placeholders); no key if unset.
    #[serde(default)]
    pub key: Option<String>,
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "batcher::default_max_events")]
    pub batch_max_events: usize,
    /// ...or this many bytes (1 KiB to 1 GiB; default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first event. Default `"100ms"`.
    #[serde(default = "batcher::default_max_wait")]
    pub batch_max_wait: HumanDuration,
}

fn default_body() -> String {
    "{n}".into()
}

impl GeneratorSourceConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            max_wait: self.batch_max_wait,
        }
    }

    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.rate > 10_000_000 {
            return Err((
                "rate",
                "must be at most 10000000 events per second (0 for unlimited)".into(),
            ));
        }
        self.limits().check()
    }
}

/// `type = "generator"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "generator",
    load: |table| {
        let config: GeneratorSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(std::sync::Arc::new(config))
    },
};

impl super::Source for GeneratorSourceConfig {
    fn rereads(&self) -> bool {
        false
    }

    /// With `count` it ends on its own, once all it generated is delivered.
    fn bounded(&self) -> bool {
        self.count > 0
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        _link: std::sync::Arc<crate::delivery::SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(run(self.clone(), output, ctx))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Fills `{n}` and `{ts}` of a template.
fn fill(template: &str, n: u64, ts: i64, out: &mut String) {
    out.clear();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{n}") {
            out.push_str(&n.to_string());
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{ts}") {
            out.push_str(&ts.to_string());
            rest = t;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
}

async fn run(
    config: GeneratorSourceConfig,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    let mut batcher: Batcher<()> = Batcher::new(config.limits(), output, &ctx);
    let first_offset = batcher::now_us();
    let started = Instant::now();
    let shutdown = ctx.shutdown.clone();
    let (mut body, mut key) = (String::new(), String::new());
    let mut n = 0u64;
    let mut closed = false;
    while (config.count == 0 || n < config.count) && !shutdown.is_cancelled() {
        if config.rate > 0 {
            // Event n is due at n / rate seconds after the start.
            let due = started + Duration::from_secs_f64(n as f64 / config.rate as f64);
            if due > Instant::now() {
                if !batcher.is_empty() && batcher.deadline().is_some_and(|d| d <= due) {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(batcher.deadline().unwrap_or(due)) => {}
                    }
                    if batcher.flush(()).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
        }
        while let Some(report) = batcher.ready_reports().pop() {
            let _ = report;
        }
        let ts = batcher::now_ms();
        fill(&config.body, n, ts, &mut body);
        if let Some(k) = &config.key {
            fill(k, n, ts, &mut key);
        }
        batcher.push(&NewEvent {
            key: config.key.as_ref().map(|_| key.as_bytes()),
            body: body.as_bytes(),
            headers: &[],
            topic: &ctx.name,
            partition: 0,
            offset: first_offset + n as i64,
            timestamp: ts,
        });
        n += 1;
        let due = batcher.deadline().is_some_and(|d| d <= Instant::now());
        if (batcher.full() || due) && batcher.flush(()).await.is_err() {
            closed = true;
            break;
        }
    }
    let _ = batcher.flush(()).await;
    batcher.drain(Duration::MAX).await;
    info!(source = %ctx.name, events = n, "generator source stopped");
    if closed && !shutdown.is_cancelled() {
        return Err(SourceError {
            source_name: ctx.name.clone(),
            message: "the processing stage stopped receiving batches before shutdown".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn templates_fill_placeholders_and_keep_other_braces() {
        let mut out = String::new();
        fill("{\"n\": {n}, \"at\": {ts}} {x}", 7, 12, &mut out);
        assert_eq!(out, "{\"n\": 7, \"at\": 12} {x}");
    }

    #[tokio::test]
    async fn generates_count_numbered_events_then_ends() {
        let metrics = Metrics::new();
        let ctx = SourceContext {
            name: "gen".into(),
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            embedded_bootstrap: None,
            state_dir: std::env::temp_dir(),
        };
        let config: GeneratorSourceConfig =
            toml::from_str("count = 2500\nkey = \"k{n}\"\nbatch_max_events = 1000").unwrap();
        config.validate().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(run(config, tx, ctx));
        let mut n = 0u64;
        while let Some(batch) = rx.recv().await {
            for e in batch.events.iter() {
                assert_eq!(e.body(), n.to_string().as_bytes());
                assert_eq!(e.key(), Some(format!("k{n}").as_bytes()));
                n += 1;
            }
            batch.release();
        }
        task.await.unwrap().unwrap();
        assert_eq!(n, 2500);
        assert_eq!(metrics.get("source.gen.batches"), 3);
    }

    #[test]
    fn rate_is_bounded() {
        let c: GeneratorSourceConfig = toml::from_str("rate = 100000000").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "rate");
    }
}
