//! The processing stage of one source: runs the plugin chain on each batch (on
//! a blocking thread, off the async workers) and sends the pieces to channels.
//!
//! When a plugin with the `pause` policy fails a batch, the processor holds
//! that batch and stops taking new ones (the bounded queue from the source
//! fills and the source stops reading), until a new version of the plugin is
//! published or an operator resumes the source (`sluice resume`); then the
//! held batch runs again from the first stage. Nothing is dropped or reordered.
//!
//! Routes name channels. An event routed to a name that is not a channel is
//! dead-lettered with the reason, never dropped. If a channel is closed because
//! its sink failed, the batch's acknowledgement is failed (its offsets will not
//! be committed) and the runtime shuts down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_batch::BatchBuf;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::channels::ChannelSender;
use crate::event::{Ack, Batch, DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON};
use crate::metrics::{Counter, Gauge, Metrics};
use crate::plugin::chain::Paused;
use crate::plugin::registry::Registry;
use crate::plugin::{Chain, ChainOutput};

/// Where a source's events can go.
pub struct Dispatch {
    /// The source's name (for metrics and logs).
    pub source: String,
    /// The source's `channels`.
    pub default: Vec<ChannelSender>,
    /// Every channel by name, for routes.
    pub by_name: BTreeMap<String, ChannelSender>,
    /// The source's `dead_letter` channel.
    pub dead: Option<ChannelSender>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Versions of the plugins, to wait for a new one while paused.
    pub registry: Registry,
    /// Notified when an operator resumes this source.
    pub resume: Arc<Notify>,
}

/// Processes batches from `input` until it ends.
pub async fn run(
    chain: Chain,
    mut input: mpsc::Receiver<Batch>,
    dispatch: Dispatch,
    shutdown: CancellationToken,
) {
    let mut processor = Processor::new(chain, dispatch, shutdown);
    while let Some(batch) = input.recv().await {
        let Batch {
            events,
            ack,
            rejected,
        } = batch;
        let Some(output) = processor.process(events).await else {
            // A panic or a shutdown while paused: the batch is read again.
            ack.fail();
            return;
        };
        let sends = processor.out.route(output, &rejected, &ack);
        processor.out.send(sends, &ack).await;
        // Every piece holds a clone now; this holder's part is done.
        ack.release();
    }
}

/// One source's processing stage while it runs: its chain and its outlet.
struct Processor {
    chain: Chain,
    out: Outlet,
}

/// Where a source's processed batches go, and the stage's metrics. Apart
/// from the chain (which is not `Sync`), so that it can be borrowed across
/// awaits.
struct Outlet {
    dispatch: Dispatch,
    shutdown: CancellationToken,
    dropped: Counter,
    dead_lettered: Counter,
    paused: Gauge,
    pauses: Counter,
}

/// Where a batch's pieces go: a channel each.
type Sends<'a> = Vec<(&'a ChannelSender, BatchBuf)>;

impl Processor {
    fn new(chain: Chain, dispatch: Dispatch, shutdown: CancellationToken) -> Self {
        let metrics = dispatch.metrics.clone();
        let name = |what: &str| format!("source.{}.{what}", dispatch.source);
        let out = Outlet {
            dropped: metrics.counter(&name("dropped_by_plugins")),
            dead_lettered: metrics.counter(&name("dead_lettered")),
            paused: metrics.gauge(&name("paused")),
            pauses: metrics.counter(&name("pauses")),
            dispatch,
            shutdown,
        };
        Self { chain, out }
    }

    /// Runs the chain on `events` (on a blocking thread); while a plugin
    /// with the `pause` policy holds the batch, waits and runs it again.
    /// `None`: the chain panicked (the runtime shuts down) or the runtime
    /// shut down while paused.
    async fn process(&mut self, mut events: BatchBuf) -> Option<ChainOutput> {
        loop {
            if self.chain.is_empty() {
                return Some(ChainOutput {
                    default: events,
                    ..Default::default()
                });
            }
            let moved = std::mem::take(&mut self.chain);
            let mut output = match tokio::task::spawn_blocking(move || {
                let mut chain = moved;
                let out = chain.process(events);
                (chain, out)
            })
            .await
            {
                Ok((back, out)) => {
                    self.chain = back;
                    out
                }
                Err(e) => {
                    tracing::error!(source = %self.out.dispatch.source, "plugin chain panicked: {e}; shutting down");
                    self.out.shutdown.cancel();
                    return None;
                }
            };
            let Some(paused) = output.paused.take() else {
                return Some(output);
            };
            if !self.out.wait_while_paused(&paused).await {
                return None;
            }
            events = paused.batch;
        }
    }
}

impl Outlet {
    /// Waits for a new version of the plugin that paused, or `sluice
    /// resume`; `false` if the runtime shuts down first (the held batch is
    /// then not acknowledged: its offsets stay uncommitted and it is read
    /// again after a restart).
    async fn wait_while_paused(&self, paused: &Paused) -> bool {
        // Listen for a new version and for `sluice resume` before the
        // pause is counted and shown: whoever sees it and acts at once
        // (an operator, a deploy script) is not missed.
        let mut new_version = match self.dispatch.registry.get(&paused.plugin) {
            Some(slot) => slot.subscribe(),
            None => tokio::sync::watch::channel(0).1,
        };
        new_version.mark_unchanged();
        let resumed = self.dispatch.resume.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        self.paused.store(1, Ordering::Relaxed);
        self.pauses.fetch_add(1, Ordering::Relaxed);
        let source = &self.dispatch.source;
        tracing::error!(
            source = %source,
            plugin = %paused.plugin,
            "plugin {}; source paused until a new version of `{}` arrives or `sluice resume` is run",
            paused.failure,
            paused.plugin
        );
        let resumed = tokio::select! {
            _ = new_version.changed() => {
                tracing::info!(source = %source, "new plugin version; resuming");
                true
            }
            _ = resumed => {
                tracing::info!(source = %source, "resumed by the operator");
                true
            }
            _ = self.shutdown.cancelled() => false,
        };
        self.paused.store(0, Ordering::Relaxed);
        resumed
    }

    /// Splits the chain's output (and the records the source rejected) into
    /// one piece per channel: the source's channels, routes, dead letters.
    fn route<'a>(&'a self, output: ChainOutput, rejected: &BatchBuf, ack: &Ack) -> Sends<'a> {
        let dispatch = &self.dispatch;
        self.dropped
            .fetch_add(output.dropped as u64, Ordering::Relaxed);
        let mut dead = output.dead;
        let mut output_default = output.default;
        // Records the source could not hand on as they are: dead-lettered,
        // or (a source without a dead-letter channel) delivered as they are
        // now, escaped and with the reason in their headers, rather than
        // failed again and again.
        let rejects = if dispatch.dead.is_some() {
            &mut dead
        } else {
            &mut output_default
        };
        for event in rejected.iter() {
            rejects.push_ref(&event, None);
        }
        let mut sends: Sends<'a> = Vec::new();
        if !output_default.is_empty() {
            let n = dispatch.default.len();
            let mut events = Some(output_default);
            for (i, tx) in dispatch.default.iter().enumerate() {
                let piece = if i + 1 == n {
                    events.take().unwrap_or_default()
                } else {
                    events.clone().unwrap_or_default()
                };
                sends.push((tx, piece));
            }
        }
        for (route, events) in output.routed {
            match dispatch.by_name.get(&route) {
                Some(tx) => sends.push((tx, events)),
                None => {
                    let reason = format!("route `{route}` names no channel");
                    for event in events.iter() {
                        dead.push_with_headers(
                            &event,
                            &[
                                (DEAD_LETTER_REASON, reason.as_bytes()),
                                (DEAD_LETTER_PLUGIN, b"router"),
                            ],
                        );
                    }
                }
            }
        }
        if !dead.is_empty() {
            self.dead_lettered
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            match &dispatch.dead {
                Some(tx) => sends.push((tx, dead)),
                None => {
                    // Validation requires a dead-letter channel wherever plugins
                    // run; without one, keep the batch uncommitted rather than lose it.
                    tracing::error!(source = %dispatch.source, events = dead.len(), "no dead_letter channel; failing the batch");
                    ack.fail();
                }
            }
        }
        sends
    }

    /// Sends each piece with its own clone of `ack`; a closed channel (its
    /// sink stopped) fails the batch and shuts the runtime down.
    async fn send(&self, sends: Sends<'_>, ack: &Ack) {
        for (tx, events) in sends {
            let piece = Batch::new(events, ack.clone());
            if let Err(closed) = tx.send(piece).await {
                closed.0.ack.fail();
                tracing::error!(source = %self.dispatch.source, "a channel's sink has stopped; shutting down");
                self.shutdown.cancel();
            }
        }
    }
}
