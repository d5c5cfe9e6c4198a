//! The `logger` sink: writes each event to the log (Flume's logger sink), for
//! debugging pipelines. Events are acknowledged once logged.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Guarantee, Sink, SinkContext, SinkError, SinkType};
use crate::channels::ChannelReceiver;
use crate::keys;

/// `type = "logger"`.
pub const TYPE: SinkType = SinkType {
    name: "logger",
    takes_dead_letter: false,
    load: |table| Ok(Arc::new(keys::deserialize::<LoggerSinkConfig>(table)?)),
};

/// `type = "logger"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerSinkConfig {
    /// Longest body prefix logged, in bytes; longer bodies are cut with `…`.
    /// Default 256.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

impl Default for LoggerSinkConfig {
    fn default() -> Self {
        Self {
            max_body: default_max_body(),
        }
    }
}

fn default_max_body() -> usize {
    256
}

impl Sink for LoggerSinkConfig {
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn run(
        &self,
        input: ChannelReceiver,
        ctx: SinkContext,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(run(self.clone(), input, ctx))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Logs every event of `input` until it ends.
pub async fn run(
    config: LoggerSinkConfig,
    mut input: ChannelReceiver,
    ctx: SinkContext,
) -> Result<(), SinkError> {
    let events = ctx.counter("events");
    while let Some(batch) = input.recv().await {
        for event in batch.events.iter() {
            let body = event.body();
            let shown = String::from_utf8_lossy(&body[..body.len().min(config.max_body)]);
            let cut = if body.len() > config.max_body {
                "…"
            } else {
                ""
            };
            let headers: Vec<String> = event
                .headers()
                .map_while(Result::ok)
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect();
            tracing::info!(
                sink = %ctx.name,
                topic = event.topic(),
                partition = event.partition(),
                offset = event.offset(),
                headers = %headers.join(","),
                "{shown}{cut}"
            );
        }
        events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.release();
    }
    Ok(())
}
