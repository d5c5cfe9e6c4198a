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
use crate::event::Batch;
use crate::metrics::Metrics;
use crate::plugin::Chain;
use crate::plugin::chain::{DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON};
use crate::plugin::registry::Registry;

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
    mut chain: Chain,
    mut input: mpsc::Receiver<Batch>,
    dispatch: Dispatch,
    shutdown: CancellationToken,
) {
    let dropped = dispatch
        .metrics
        .counter(&format!("source.{}.dropped_by_plugins", dispatch.source));
    let dead_lettered = dispatch
        .metrics
        .counter(&format!("source.{}.dead_lettered", dispatch.source));
    let paused_gauge = dispatch
        .metrics
        .gauge(&format!("source.{}.paused", dispatch.source));
    let pauses = dispatch
        .metrics
        .counter(&format!("source.{}.pauses", dispatch.source));
    while let Some(batch) = input.recv().await {
        let Batch {
            mut events,
            ack,
            rejected,
        } = batch;
        let output = loop {
            if chain.is_empty() {
                break crate::plugin::ChainOutput {
                    default: events,
                    ..Default::default()
                };
            }
            let moved = std::mem::take(&mut chain);
            let mut output = match tokio::task::spawn_blocking(move || {
                let mut chain = moved;
                let out = chain.process(events);
                (chain, out)
            })
            .await
            {
                Ok((back, out)) => {
                    chain = back;
                    out
                }
                Err(e) => {
                    tracing::error!(source = %dispatch.source, "plugin chain panicked: {e}; shutting down");
                    ack.fail();
                    shutdown.cancel();
                    return;
                }
            };
            let Some(paused) = output.paused.take() else {
                break output;
            };
            // Listen for a new version and for `sluice resume` before the
            // pause is counted and shown: whoever sees it and acts at once
            // (an operator, a deploy script) is not missed.
            let mut new_version = match dispatch.registry.get(&paused.plugin) {
                Some(slot) => slot.subscribe(),
                None => tokio::sync::watch::channel(0).1,
            };
            new_version.mark_unchanged();
            let resumed = dispatch.resume.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            paused_gauge.store(1, Ordering::Relaxed);
            pauses.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                source = %dispatch.source,
                plugin = %paused.plugin,
                "plugin {}; source paused until a new version of `{}` arrives or `sluice resume` is run",
                paused.failure,
                paused.plugin
            );
            tokio::select! {
                _ = new_version.changed() => tracing::info!(source = %dispatch.source, "new plugin version; resuming"),
                _ = resumed => tracing::info!(source = %dispatch.source, "resumed by the operator"),
                _ = shutdown.cancelled() => {
                    // The held batch is not acknowledged: its offsets stay
                    // uncommitted and it is read again after a restart.
                    ack.fail();
                    paused_gauge.store(0, Ordering::Relaxed);
                    return;
                }
            }
            paused_gauge.store(0, Ordering::Relaxed);
            events = paused.batch;
        };
        dropped.fetch_add(output.dropped as u64, Ordering::Relaxed);
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
        let mut sends: Vec<(&ChannelSender, BatchBuf)> = Vec::new();
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
            dead_lettered.fetch_add(dead.len() as u64, Ordering::Relaxed);
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
        for (tx, events) in sends {
            let piece = Batch::new(events, ack.clone());
            if let Err(closed) = tx.send(piece).await {
                closed.0.ack.fail();
                tracing::error!(source = %dispatch.source, "a channel's sink has stopped; shutting down");
                shutdown.cancel();
            }
        }
        // Every piece holds a clone now; this holder's part is done.
        ack.release();
    }
}
