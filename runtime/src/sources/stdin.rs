//! The `stdin` source: each line of Sluice's standard input becomes an
//! event; the source ends at end of input, and the run shuts down once
//! everything read is delivered (`producer | sluice run pipe.toml`).
//!
//! ```toml
//! [sources.pipe]
//! type = "stdin"
//! channels = ["out"]
//! ```
//!
//! Events: body = the line without its `\n`, no key, no headers; topic =
//! the source's name, partition 0, timestamp = the time it was read (ms),
//! offsets counting lines from the start time in microseconds (as the
//! `exec` source does). A line longer than `max_line_bytes` is split into
//! numbered pieces (header `sluice.exec.part`), never dropped.
//!
//! Standard input cannot be read again: a batch not delivered is counted in
//! `undelivered_batches` and logged. Behind a `file` channel a batch is safe
//! once the channel acknowledged it.
//!
//! Metrics: `source.<name>.events`, `.bytes`, `.batches`, `.lines_split`,
//! `.undelivered_batches`, histogram `.delivery_seconds`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::batcher::{self, Batcher, Limits, LineSplitter, OutputClosed, Report};
use super::{SourceContext, SourceError};
use crate::event::{Batch, NewEvent};
use crate::units::{ByteSize, HumanDuration};

/// `[sources.<name>]` with `type = "stdin"`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// A batch is handed on as soon as it holds this many events. Default 1000.
    #[serde(default = "batcher::default_max_events")]
    pub batch_max_events: usize,
    /// ...or this many bytes (1 KiB to 1 GiB; default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first line. Default `"100ms"`.
    #[serde(default = "batcher::default_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// Longest event body; longer lines are split. Default `"1MiB"`.
    #[serde(default = "batcher::default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
}

impl StdinSourceConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            max_wait: self.batch_max_wait,
        }
    }

    /// Checks what serde cannot; on error, the key and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.limits().check()?;
        batcher::check_max_line_bytes(self.max_line_bytes)
    }
}

/// `type = "stdin"`.
pub const TYPE: super::SourceType = super::SourceType {
    name: "stdin",
    load: |table| {
        let config: StdinSourceConfig = crate::keys::deserialize(table)?;
        config.validate()?;
        Ok(std::sync::Arc::new(config))
    },
};

impl super::Source for StdinSourceConfig {
    fn rereads(&self) -> bool {
        false
    }

    /// It ends at the end of its input, once all it read is delivered.
    fn bounded(&self) -> bool {
        true
    }

    fn run(
        &self,
        output: mpsc::Sender<Batch>,
        ctx: SourceContext,
        _link: std::sync::Arc<crate::delivery::SourceLink>,
    ) -> futures::future::BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(read_lines(self.clone(), tokio::io::stdin(), output, ctx))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Reads `input` line by line until it ends or shutdown; see the module docs.
pub(crate) async fn read_lines(
    config: StdinSourceConfig,
    input: impl AsyncRead + Unpin,
    output: mpsc::Sender<Batch>,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    let mut batcher: Batcher<()> = Batcher::new(config.limits(), output, &ctx);
    let mut splitter = LineSplitter::new(config.max_line_bytes.get() as usize);
    let lines_split = ctx.counter("lines_split");
    let mut reader = BufReader::with_capacity(64 << 10, input);
    let mut next_offset = batcher::now_us();
    let shutdown = ctx.shutdown.clone();
    let mut closed = false;
    loop {
        let deadline = batcher.deadline();
        let chunk = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            report = batcher.report() => {
                log_report(&ctx, report);
                continue;
            }
            _ = batcher::sleep_until(deadline) => {
                if batcher.flush(()).await.is_err() {
                    closed = true;
                    break;
                }
                continue;
            }
            buf = reader.fill_buf() => match buf {
                Ok([]) => break,
                Ok(bytes) => bytes.to_vec(),
                Err(e) => {
                    warn!(source = %ctx.name, error = %e, "reading standard input failed; ending the source");
                    break;
                }
            },
        };
        reader.consume(chunk.len());
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = splitter.feed(rest, &mut |line| {
                if line.part == Some(0) {
                    lines_split.fetch_add(1, Ordering::Relaxed);
                }
                push_line(&mut batcher, &ctx.name, &mut next_offset, line);
            });
            rest = &rest[n..];
            if batcher.full() && batcher.flush(()).await.is_err() {
                closed = true;
                break;
            }
        }
        if closed {
            break;
        }
    }
    splitter.finish(&mut |line| push_line(&mut batcher, &ctx.name, &mut next_offset, line));
    let flushed: Result<(), OutputClosed> = batcher.flush(()).await;
    for report in batcher.drain(Duration::MAX).await {
        log_report(&ctx, report);
    }
    info!(source = %ctx.name, "stdin source stopped");
    if (closed || flushed.is_err()) && !shutdown.is_cancelled() {
        return Err(SourceError {
            source_name: ctx.name.clone(),
            message: "the processing stage stopped receiving batches before shutdown".into(),
        });
    }
    Ok(())
}

fn push_line(
    batcher: &mut Batcher<()>,
    topic: &str,
    next_offset: &mut i64,
    line: batcher::Line<'_>,
) {
    let part = line.part.map(|p| p.to_string());
    let headers: Vec<(&str, &[u8])> = part
        .iter()
        .map(|p| (super::exec::PART_HEADER, p.as_bytes()))
        .collect();
    batcher.push(&NewEvent {
        key: None,
        body: line.bytes,
        headers: &headers,
        topic,
        partition: 0,
        offset: *next_offset,
        timestamp: batcher::now_ms(),
    });
    *next_offset += 1;
}

fn log_report(ctx: &SourceContext, report: Report<()>) {
    if !report.delivered {
        error!(source = %ctx.name, "a batch was not delivered and standard input cannot be read again; use a file channel");
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn every_line_of_the_input_becomes_an_event_and_the_source_ends() {
        let metrics = Metrics::new();
        let ctx = SourceContext {
            name: "pipe".into(),
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            embedded_bootstrap: None,
            state_dir: std::env::temp_dir(),
        };
        let config: StdinSourceConfig =
            toml::from_str("batch_max_events = 3\nmax_line_bytes = 5").unwrap();
        config.validate().unwrap();
        let input: &[u8] = b"a\nb\nc\nd\n0123456789\nlast";
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(read_lines(config, input, tx, ctx));
        let mut bodies = Vec::new();
        let mut offsets = Vec::new();
        while let Some(batch) = rx.recv().await {
            assert!(batch.len() <= 3);
            for e in batch.events.iter() {
                bodies.push(String::from_utf8_lossy(e.body()).into_owned());
                offsets.push(e.offset());
            }
            batch.release();
        }
        task.await.unwrap().unwrap();
        assert_eq!(bodies, ["a", "b", "c", "d", "01234", "56789", "last"]);
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(metrics.get("source.pipe.events"), 7);
        assert_eq!(metrics.get("source.pipe.lines_split"), 1);
        assert_eq!(metrics.get("source.pipe.undelivered_batches"), 0);
    }

    #[test]
    fn keys_are_checked() {
        let bad = |t: &str| {
            toml::from_str::<StdinSourceConfig>(t)
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert_eq!(bad("batch_max_events = 0"), "batch_max_events");
        assert_eq!(bad("max_line_bytes = 0"), "max_line_bytes");
        assert!(toml::from_str::<StdinSourceConfig>("command = 1").is_err());
    }
}
