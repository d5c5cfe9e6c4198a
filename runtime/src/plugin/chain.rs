//! A source's plugin chain (decoder → interceptors → router) and how per-event
//! outcomes are applied.
//!
//! Each stage sees the events the previous stage passed on. A route chosen by
//! any stage sticks unless a later stage routes again. Dead-lettered events
//! leave the chain with headers saying which plugin sent them there and why;
//! the original event (not a half-processed replacement) is what is kept, so it
//! can be replayed. When a plugin fails a whole batch (trap, timeout, memory
//! cap, plugin error, malformed output) every event of that batch is
//! dead-lettered the same way: nothing is dropped, and the runtime goes on.

use std::sync::atomic::Ordering;

use sluice_batch::{BatchBuf, NO_REPLACEMENT, OutcomeKind};

use super::instance::{PluginFailure, PluginInstance};
use crate::metrics::{Counter, Metrics};

/// Header naming why an event was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "sluice.dead_letter.reason";
/// Header naming the plugin that dead-lettered the event.
pub const DEAD_LETTER_PLUGIN: &str = "sluice.dead_letter.plugin";
/// Header with the SHA-256 of that plugin's file.
pub const DEAD_LETTER_DIGEST: &str = "sluice.dead_letter.plugin_digest";

/// One plugin of a chain with its counters.
pub struct Stage {
    /// The plugin.
    pub instance: PluginInstance,
    batches: Counter,
    events: Counter,
    dropped: Counter,
    dead_lettered: Counter,
    failures: Counter,
}

impl Stage {
    /// Wraps an instance, registering `plugin.<name>.*` counters.
    pub fn new(instance: PluginInstance, metrics: &Metrics) -> Self {
        let c = |what: &str| metrics.counter(&format!("plugin.{}.{what}", instance.name()));
        Self {
            batches: c("batches"),
            events: c("events"),
            dropped: c("dropped"),
            dead_lettered: c("dead_lettered"),
            failures: c("failures"),
            instance,
        }
    }
}

/// What a chain made of one batch.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Events for the source's default channels.
    pub default: BatchBuf,
    /// Events routed to a named channel, one batch per name.
    pub routed: Vec<(String, BatchBuf)>,
    /// Events to dead-letter, with reason headers.
    pub dead: BatchBuf,
    /// Events dropped on purpose by a plugin.
    pub dropped: usize,
}

/// The ordered plugins of one source.
#[derive(Default)]
pub struct Chain {
    stages: Vec<Stage>,
}

impl Chain {
    /// A chain running `stages` in order.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages }
    }

    /// Whether the chain has no plugins.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs every stage over `batch` and sorts the result by destination.
    pub fn process(&mut self, batch: BatchBuf) -> ChainOutput {
        let mut out = ChainOutput::default();
        let mut current = batch;
        // Route of each event of `current`, as an index into `route_names`.
        let mut routes: Vec<Option<u32>> = Vec::new();
        let mut route_names: Vec<String> = Vec::new();
        for stage in &mut self.stages {
            if current.is_empty() {
                break;
            }
            stage.batches.fetch_add(1, Ordering::Relaxed);
            stage
                .events
                .fetch_add(current.len() as u64, Ordering::Relaxed);
            let result = match stage.instance.call(&current) {
                Ok(r) => r,
                Err(failure) => {
                    stage.failures.fetch_add(1, Ordering::Relaxed);
                    stage
                        .dead_lettered
                        .fetch_add(current.len() as u64, Ordering::Relaxed);
                    tracing::warn!(
                        plugin = stage.instance.name(),
                        events = current.len(),
                        "plugin {failure}; dead-lettering the batch"
                    );
                    dead_letter_all(&mut out.dead, &current, &stage.instance, &failure);
                    current.clear();
                    routes.clear();
                    break;
                }
            };
            let untouched = result
                .outcomes
                .iter()
                .all(|o| o.kind == OutcomeKind::Keep && o.replacement == NO_REPLACEMENT);
            if untouched {
                continue;
            }
            let mut next = BatchBuf::with_capacity(current.len(), current.data_len());
            let mut next_routes = Vec::with_capacity(current.len());
            for (i, outcome) in result.outcomes.iter().enumerate() {
                let Some(original) = current.get(i) else {
                    break;
                };
                let route = routes.get(i).copied().flatten();
                match outcome.kind {
                    OutcomeKind::Drop => {
                        out.dropped += 1;
                        stage.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    OutcomeKind::DeadLetter => {
                        stage.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        let reason = &result.labels[outcome.label as usize];
                        push_dead_letter(&mut out.dead, &original, reason, &stage.instance);
                    }
                    OutcomeKind::Keep | OutcomeKind::Modify | OutcomeKind::RouteTo => {
                        match result.replacements.get(outcome.replacement as usize) {
                            Some(replacement) if outcome.replacement != NO_REPLACEMENT => {
                                next.push_ref(&replacement, Some(&original))
                            }
                            _ => next.push_ref(&original, None),
                        }
                        let route = if outcome.kind == OutcomeKind::RouteTo {
                            let name = &result.labels[outcome.label as usize];
                            let id = match route_names.iter().position(|n| n == name) {
                                Some(id) => id,
                                None => {
                                    route_names.push(name.clone());
                                    route_names.len() - 1
                                }
                            };
                            Some(id as u32)
                        } else {
                            route
                        };
                        next_routes.push(route);
                    }
                }
            }
            current = next;
            routes = next_routes;
        }
        if routes.iter().all(Option::is_none) {
            out.default = current;
            return out;
        }
        let mut routed: Vec<BatchBuf> = vec![BatchBuf::default(); route_names.len()];
        for (i, event) in current.iter().enumerate() {
            match routes[i] {
                Some(r) => routed[r as usize].push_ref(&event, None),
                None => out.default.push_ref(&event, None),
            }
        }
        out.routed = route_names.into_iter().zip(routed).collect();
        out
    }
}

/// Dead-letters every event of `batch` because `instance` failed it.
pub fn dead_letter_all(
    dead: &mut BatchBuf,
    batch: &BatchBuf,
    instance: &PluginInstance,
    failure: &PluginFailure,
) {
    let reason = format!("plugin `{}` {failure}", instance.name());
    for event in batch.iter() {
        push_dead_letter(dead, &event, &reason, instance);
    }
}

/// Appends `event` to `dead` with the headers naming `reason` and the plugin.
fn push_dead_letter(
    dead: &mut BatchBuf,
    event: &sluice_batch::EventRef<'_>,
    reason: &str,
    instance: &PluginInstance,
) {
    dead.push_with_headers(
        event,
        &[
            (DEAD_LETTER_REASON, reason.as_bytes()),
            (DEAD_LETTER_PLUGIN, instance.name().as_bytes()),
            (DEAD_LETTER_DIGEST, instance.digest().as_bytes()),
        ],
    );
}
