//! A source's plugin chain (decoder → interceptors → router), how per-event
//! outcomes are applied, and what happens when a plugin fails.
//!
//! Each stage sees the events the previous stage passed on. A route chosen by
//! any stage sticks unless a later stage routes again. Dead-lettered events
//! leave the chain with headers saying which plugin (and version) sent them
//! there, why, and where they came from; the original event (not a
//! half-processed replacement) is what is kept, so it can be replayed.
//!
//! # Versions and lineage
//!
//! A stage built from a [`PluginSlot`] checks for a new version before each
//! batch and switches to it there, never inside a batch. Every event that
//! leaves the chain carries a `sluice.lineage` header naming the version of
//! each plugin that processed it (`name@<first 16 hex digits of sha256>`,
//! `;`-separated), so "which files did the buggy version write?" is a query.
//!
//! Headers under `sluice.` are the host's: an event a plugin returns keeps
//! the host headers of the event it replaces, and any the plugin set are
//! discarded and counted in `plugin.<name>.forged_headers`, so the lineage
//! and dead-letter headers readers see are the host's.
//!
//! # Redacting dead letters
//!
//! A dead letter is the event as the failing stage received it, so what a
//! later stage would have masked is in clear in it. A chain may carry
//! redaction stages ([`Chain::with_redaction`], a source's
//! `dead_letter_interceptors`) that [`Chain::redact`] runs on the dead
//! letters of each batch. They fail closed: a dead letter a redaction stage
//! fails on is written with its body and key withheld
//! ([`DEAD_LETTER_WITHHELD`]), never in clear.
//!
//! # Failures
//!
//! When a plugin fails a batch (trap, timeout, memory cap, plugin error,
//! malformed output) the stage's [`FailurePolicy`] decides:
//!
//! - `dead-letter`: the batch is split in halves and each half retried, down
//!   to single events, so only the events that make the plugin fail are
//!   dead-lettered and the rest go on. Bisection is bounded: after
//!   [`MAX_ISOLATION_FAILURES`] failed sub-calls, or once it has spent four
//!   time budgets, the sub-batches still failing are dead-lettered whole.
//! - `pass-through`: the batch goes on as if the plugin had kept every event.
//! - `pause`: the chain stops and hands the batch back ([`ChainOutput::paused`]);
//!   the processor holds it until a new version arrives or an operator
//!   resumes the source, then runs it again from the first stage.
//!
//! A circuit breaker counts consecutive failed batches; at the configured
//! number it opens and, until a new version arrives or the cool-down passes,
//! the policy is applied without calling the plugin (dead-letter then
//! dead-letters whole batches). After the cool-down one batch is tried: a
//! success closes the breaker, a failure opens it again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_batch::{BatchBuf, EventRef, NO_REPLACEMENT, NewEvent, OutcomeEntry, OutcomeKind};

use super::engine::PluginEngine;
use super::instance::{PluginFailure, PluginInstance, PluginOutput};
use super::policy::{BreakerConfig, FailurePolicy};
use super::registry::PluginSlot;
use sluice_core::metrics::{Counter, FAST_BUCKETS, Histogram, Metrics};
use sluice_core::tap::TapPoint;

use sluice_core::event::is_host_header;
pub use sluice_core::event::{DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON};
/// Header with the SHA-256 of that plugin's file.
pub const DEAD_LETTER_DIGEST: &str = "sluice.dead_letter.plugin_digest";
/// Header with the event's origin, `topic/partition/offset`.
pub const DEAD_LETTER_ORIGIN: &str = "sluice.dead_letter.origin";
/// Header on a dead letter whose body and key were withheld because a
/// dead-letter redaction stage (the source's `dead_letter_interceptors`)
/// failed on it; the value says which stage. The event can be read again
/// from its origin ([`DEAD_LETTER_ORIGIN`]).
pub const DEAD_LETTER_WITHHELD: &str = "sluice.dead_letter.withheld";
/// Header naming the plugin versions that processed an event.
pub const LINEAGE: &str = "sluice.lineage";

/// Most failed sub-calls spent isolating the bad events of one batch.
pub(crate) const MAX_ISOLATION_FAILURES: u32 = 64;

/// How a stage handles failures.
#[derive(Debug, Clone, Copy, Default)]
pub struct StagePolicy {
    /// What to do with a failed batch.
    pub on_failure: FailurePolicy,
    /// When to stop calling the plugin.
    pub breaker: BreakerConfig,
}

/// One plugin of a chain with its counters and failure state.
pub struct Stage {
    /// The plugin.
    pub instance: PluginInstance,
    slot: Option<(Arc<PluginSlot>, PluginEngine)>,
    generation: u64,
    policy: StagePolicy,
    failures_in_row: u32,
    open_until: Option<Instant>,
    last_failure: Option<PluginFailure>,
    batches: Counter,
    events: Counter,
    dropped: Counter,
    dead_lettered: Counter,
    failures: Counter,
    passed_through: Counter,
    breaker_opened: Counter,
    swaps: Counter,
    /// Host headers (`sluice.*`) a plugin set on its output and the host
    /// discarded ([`push_replacement`]).
    forged_headers: Counter,
    /// Wall-clock time of each call, failed or not.
    batch_seconds: Arc<Histogram>,
    /// `plugin:<name>`: what the stage passes on.
    tap: Arc<TapPoint>,
}

impl Stage {
    /// Wraps a fixed instance (no reloads, default policy), registering
    /// `plugin.<name>.*` counters.
    pub fn new(instance: PluginInstance, metrics: &Metrics) -> Self {
        let c = |what: &str| metrics.counter(&format!("plugin.{}.{what}", instance.name()));
        Self {
            batches: c("batches"),
            events: c("events"),
            dropped: c("dropped"),
            dead_lettered: c("dead_lettered"),
            failures: c("failures"),
            passed_through: c("passed_through"),
            breaker_opened: c("breaker_opened"),
            swaps: c("swaps"),
            forged_headers: c("forged_headers"),
            batch_seconds: metrics.histogram(
                &format!("plugin.{}.batch_seconds", instance.name()),
                FAST_BUCKETS,
            ),
            tap: metrics.tap(&format!("plugin:{}", instance.name())),
            slot: None,
            generation: 0,
            policy: StagePolicy::default(),
            failures_in_row: 0,
            open_until: None,
            last_failure: None,
            instance,
        }
    }

    /// A stage running the current version of `slot` and following it to
    /// new versions at batch boundaries.
    pub fn from_slot(
        slot: Arc<PluginSlot>,
        engine: &PluginEngine,
        policy: StagePolicy,
        metrics: &Metrics,
    ) -> Self {
        let generation = slot.current().generation;
        let mut stage = Self::new(slot.instance(engine), metrics);
        stage.slot = Some((slot, engine.clone()));
        stage.generation = generation;
        stage.policy = policy;
        stage
    }

    /// Sets the failure policy.
    pub fn with_policy(mut self, policy: StagePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The generation this stage runs (0 for a fixed instance).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The plugin's slot, if the stage follows one.
    pub fn slot(&self) -> Option<&Arc<PluginSlot>> {
        self.slot.as_ref().map(|(s, _)| s)
    }

    /// Switches to the slot's current version if it changed. A new version
    /// closes the circuit breaker.
    pub fn refresh(&mut self) {
        let Some((slot, engine)) = &self.slot else {
            return;
        };
        let current = slot.current();
        if current.generation == self.generation {
            return;
        }
        self.instance = PluginInstance::sandboxed(
            engine.clone(),
            current.loaded.clone(),
            self.instance.name(),
            current.config_json.to_string(),
            current.sandbox.clone(),
        );
        if let Some(policy) = current.policy {
            self.policy = policy;
        }
        self.generation = current.generation;
        self.failures_in_row = 0;
        self.open_until = None;
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs the plugin on `batch` under the stage's policy. `Err` means the
    /// policy is `pause` and the batch must be held.
    fn call(&mut self, batch: &BatchBuf) -> Result<PluginOutput, PluginFailure> {
        // Past the cool-down the breaker is half-open: this batch decides.
        if let Some(until) = self.open_until
            && Instant::now() < until
        {
            let failure = self
                .last_failure
                .clone()
                .unwrap_or_else(|| PluginFailure::Returned("circuit breaker open".into()));
            let reason = format!(
                "plugin `{}` circuit breaker open after {} consecutive failed batches; last: {failure}",
                self.instance.name(),
                self.failures_in_row
            );
            return self.apply_policy(batch, failure, Some(reason));
        }
        let started = Instant::now();
        let called = self.instance.call(batch);
        self.batch_seconds.observe(started.elapsed());
        match called {
            Ok(out) => {
                self.failures_in_row = 0;
                self.open_until = None;
                Ok(out)
            }
            Err(failure) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.failures_in_row += 1;
                self.last_failure = Some(failure.clone());
                let breaker = self.policy.breaker;
                if breaker.failures > 0 && self.failures_in_row >= breaker.failures {
                    if self.open_until.is_none() {
                        self.breaker_opened.fetch_add(1, Ordering::Relaxed);
                    }
                    self.open_until = Some(Instant::now() + breaker.cool_down.get());
                    tracing::error!(
                        plugin = self.instance.name(),
                        failures = self.failures_in_row,
                        cool_down = ?breaker.cool_down.get(),
                        "circuit breaker open: applying `{}` without calling the plugin until a new version arrives or the cool-down passes",
                        self.policy.on_failure.as_str()
                    );
                }
                tracing::warn!(
                    plugin = self.instance.name(),
                    events = batch.len(),
                    policy = self.policy.on_failure.as_str(),
                    "plugin {failure}"
                );
                self.apply_policy(batch, failure, None)
            }
        }
    }

    /// Applies the failure policy to a batch the plugin failed (or was not
    /// called on, with `whole` giving the reason, while the breaker is open).
    fn apply_policy(
        &mut self,
        batch: &BatchBuf,
        failure: PluginFailure,
        whole: Option<String>,
    ) -> Result<PluginOutput, PluginFailure> {
        match self.policy.on_failure {
            FailurePolicy::PassThrough => {
                self.passed_through
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(keep_all(batch.len()))
            }
            FailurePolicy::Pause => Err(failure),
            FailurePolicy::DeadLetter => Ok(match whole {
                Some(reason) => dead_letter_all(batch.len(), reason),
                None => {
                    let mut budget = Isolation {
                        failures_left: MAX_ISOLATION_FAILURES,
                        deadline: Instant::now()
                            + 4 * self
                                .instance
                                .sandbox()
                                .limits
                                .time_budget
                                .max(Duration::from_millis(10)),
                    };
                    self.isolate(batch, failure, &mut budget)
                }
            }),
        }
    }

    /// Finds the events of `batch` that make the plugin fail by bisection.
    fn isolate(
        &mut self,
        batch: &BatchBuf,
        failure: PluginFailure,
        budget: &mut Isolation,
    ) -> PluginOutput {
        if batch.len() <= 1 || budget.failures_left == 0 || Instant::now() >= budget.deadline {
            return dead_letter_all(
                batch.len(),
                format!("plugin `{}` {failure}", self.instance.name()),
            );
        }
        let mid = batch.len() / 2;
        let mut out = PluginOutput {
            outcomes: Vec::with_capacity(batch.len()),
            replacements: BatchBuf::default(),
            labels: Vec::new(),
        };
        for half in [slice(batch, 0..mid), slice(batch, mid..batch.len())] {
            let part = match self.instance.call(&half) {
                Ok(o) => o,
                Err(f) => {
                    budget.failures_left = budget.failures_left.saturating_sub(1);
                    self.isolate(&half, f, budget)
                }
            };
            append_output(&mut out, part);
        }
        out
    }
}

struct Isolation {
    failures_left: u32,
    deadline: Instant,
}

/// A copy of the events of `batch` in `range`.
fn slice(batch: &BatchBuf, range: std::ops::Range<usize>) -> BatchBuf {
    let mut out = BatchBuf::with_capacity(
        range.len(),
        batch.data_len() / batch.len().max(1) * range.len(),
    );
    for i in range {
        if let Some(e) = batch.get(i) {
            out.push_ref(&e, None);
        }
    }
    out
}

/// Appends the outcomes of `part` to `out`, renumbering its replacements and labels.
fn append_output(out: &mut PluginOutput, part: PluginOutput) {
    let rbase = out.replacements.len() as u32;
    let lbase = out.labels.len() as u32;
    for e in part.replacements.iter() {
        out.replacements.push_ref(&e, None);
    }
    out.labels.extend(part.labels);
    out.outcomes
        .extend(part.outcomes.into_iter().map(|o| OutcomeEntry {
            kind: o.kind,
            label: o.label + lbase,
            replacement: if o.replacement == NO_REPLACEMENT {
                NO_REPLACEMENT
            } else {
                o.replacement + rbase
            },
        }));
}

fn keep_all(n: usize) -> PluginOutput {
    PluginOutput {
        outcomes: vec![
            OutcomeEntry {
                kind: OutcomeKind::Keep,
                label: 0,
                replacement: NO_REPLACEMENT,
            };
            n
        ],
        replacements: BatchBuf::default(),
        labels: Vec::new(),
    }
}

fn dead_letter_all(n: usize, reason: String) -> PluginOutput {
    PluginOutput {
        outcomes: vec![
            OutcomeEntry {
                kind: OutcomeKind::DeadLetter,
                label: 0,
                replacement: NO_REPLACEMENT,
            };
            n
        ],
        replacements: BatchBuf::default(),
        labels: vec![reason],
    }
}

/// A batch held because a plugin with the `pause` policy failed it.
#[derive(Debug)]
pub struct Paused {
    /// The chain's input batch, to run again from the first stage.
    pub batch: BatchBuf,
    /// The plugin that failed.
    pub plugin: String,
    /// Why.
    pub failure: PluginFailure,
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
    /// Set when a `pause` plugin failed: nothing else is set then.
    pub paused: Option<Paused>,
}

/// The ordered plugins of one source.
#[derive(Default)]
pub struct Chain {
    stages: Vec<Stage>,
    /// Whether a stage may pause, so the input must be kept for a retry.
    may_pause: bool,
    /// The stages dead letters pass through ([`Chain::redact`]).
    redaction: Option<Box<Chain>>,
}

/// The dead letters of a batch after the redaction stages.
#[derive(Debug, Default)]
pub struct Redacted {
    /// The dead letters to send: as the stages passed them on, or withheld.
    pub events: BatchBuf,
    /// Dead letters a redaction stage dropped on purpose.
    pub dropped: usize,
    /// Dead letters whose body and key were withheld (a stage failed or
    /// dead-lettered them), each with a [`DEAD_LETTER_WITHHELD`] header.
    pub withheld: usize,
}

impl Chain {
    /// A chain running `stages` in order.
    pub fn new(stages: Vec<Stage>) -> Self {
        let may_pause = stages
            .iter()
            .any(|s| s.policy.on_failure == FailurePolicy::Pause);
        Self {
            stages,
            may_pause,
            redaction: None,
        }
    }

    /// The chain with `stages` run on its dead letters ([`Chain::redact`]).
    /// Their failure policy becomes `dead-letter` whatever it was (a
    /// redaction stage must neither pass a dead letter on in clear nor hold
    /// the source); their circuit breakers stay.
    pub fn with_redaction(mut self, stages: Vec<Stage>) -> Self {
        if stages.is_empty() {
            self.redaction = None;
            return self;
        }
        let stages = stages
            .into_iter()
            .map(|s| {
                let breaker = s.policy.breaker;
                s.with_policy(StagePolicy {
                    on_failure: FailurePolicy::DeadLetter,
                    breaker,
                })
            })
            .collect();
        self.redaction = Some(Box::new(Chain::new(stages)));
        self
    }

    /// Whether dead letters pass through redaction stages.
    pub fn redacts(&self) -> bool {
        self.redaction.is_some()
    }

    /// Runs the redaction stages on `dead` (the dead letters of a batch,
    /// with their reason headers). What the stages keep, modify or route
    /// is sent as the dead letter, with the headers it came with; what they
    /// drop is counted; what they fail on or dead-letter is sent with its
    /// body and key withheld and a [`DEAD_LETTER_WITHHELD`] header, so no
    /// dead letter is written in clear and none is lost without a trace.
    pub fn redact(&mut self, dead: BatchBuf) -> Redacted {
        let Some(redaction) = self.redaction.as_mut() else {
            return Redacted {
                events: dead,
                ..Redacted::default()
            };
        };
        if dead.is_empty() {
            return Redacted::default();
        }
        let out = redaction.process(dead);
        let mut events = out.default;
        for (_, routed) in &out.routed {
            for event in routed.iter() {
                events.push_ref(&event, None);
            }
        }
        for event in out.dead.iter() {
            push_withheld(&mut events, &event);
        }
        Redacted {
            events,
            dropped: out.dropped,
            withheld: out.dead.len(),
        }
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
        let original = self.may_pause.then(|| batch.clone());
        let mut current = batch;
        let mut routes = Routes::default();
        let mut lineage = String::new();
        for stage in &mut self.stages {
            if current.is_empty() {
                break;
            }
            stage.refresh();
            if !lineage.is_empty() {
                lineage.push(';');
            }
            lineage.push_str(stage.instance.name());
            lineage.push('@');
            lineage.push_str(stage.instance.loaded().short_digest());
            stage.batches.fetch_add(1, Ordering::Relaxed);
            stage
                .events
                .fetch_add(current.len() as u64, Ordering::Relaxed);
            let result = match stage.call(&current) {
                Ok(r) => r,
                Err(failure) => {
                    return ChainOutput {
                        paused: Some(Paused {
                            batch: original.unwrap_or_default(),
                            plugin: stage.instance.name().to_owned(),
                            failure,
                        }),
                        ..Default::default()
                    };
                }
            };
            let untouched = result
                .outcomes
                .iter()
                .all(|o| o.kind == OutcomeKind::Keep && o.replacement == NO_REPLACEMENT);
            if !untouched {
                current = apply(stage, &result, &current, &mut routes, &mut out);
            }
            stage.tap.offer(&current);
        }
        sort(out, current, routes, lineage.as_bytes())
    }
}

/// Where the events of the chain's current batch go: per event, a route (an
/// index into `names`) or the source's channels (`None`).
#[derive(Default)]
struct Routes {
    of_event: Vec<Option<u32>>,
    names: Vec<String>,
}

impl Routes {
    /// The index of route `name`, added if new.
    fn id(&mut self, name: &str) -> u32 {
        let id = match self.names.iter().position(|n| n == name) {
            Some(id) => id,
            None => {
                self.names.push(name.to_owned());
                self.names.len() - 1
            }
        };
        id as u32
    }
}

/// Applies one stage's outcomes to `current`: drops and dead letters leave
/// it (into `out`), kept events (or their replacements) and their routes
/// make the next batch.
fn apply(
    stage: &Stage,
    result: &PluginOutput,
    current: &BatchBuf,
    routes: &mut Routes,
    out: &mut ChainOutput,
) -> BatchBuf {
    let mut next = BatchBuf::with_capacity(current.len(), current.data_len());
    let mut next_routes = Vec::with_capacity(current.len());
    for (i, outcome) in result.outcomes.iter().enumerate() {
        let Some(original) = current.get(i) else {
            break;
        };
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
                        let forged = push_replacement(&mut next, &replacement, &original);
                        if forged > 0 {
                            stage.forged_headers.fetch_add(forged, Ordering::Relaxed);
                        }
                    }
                    _ => next.push_ref(&original, None),
                }
                let route = if outcome.kind == OutcomeKind::RouteTo {
                    Some(routes.id(&result.labels[outcome.label as usize]))
                } else {
                    routes.of_event.get(i).copied().flatten()
                };
                next_routes.push(route);
            }
        }
    }
    routes.of_event = next_routes;
    next
}

/// Appends a plugin's `replacement` for `original` to `next`. The host's
/// headers (`sluice.*`) are the original's, whatever the plugin returned: a
/// plugin can neither forge provenance (a `sluice.lineage` or a dead-letter
/// reason of its own, which readers taking the first value would believe)
/// nor erase it. Returns how many host headers the plugin set that the
/// original does not have (forged ones; copies of the original's are not
/// counted).
fn push_replacement(
    next: &mut BatchBuf,
    replacement: &EventRef<'_>,
    original: &EventRef<'_>,
) -> u64 {
    let host = |event: &EventRef<'_>| {
        event
            .headers()
            .map_while(Result::ok)
            .any(|(name, _)| is_host_header(name))
    };
    if !host(replacement) && !host(original) {
        next.push_ref(replacement, Some(original));
        return 0;
    }
    let originals: Vec<(&str, &[u8])> = original
        .headers()
        .map_while(Result::ok)
        .filter(|(name, _)| is_host_header(name))
        .collect();
    let mut forged = 0;
    let mut headers = Vec::new();
    for (name, value) in replacement.headers().map_while(Result::ok) {
        if !is_host_header(name) {
            headers.push((name, value));
        } else if !originals.contains(&(name, value)) {
            forged += 1;
        }
    }
    headers.extend_from_slice(&originals);
    next.push(&NewEvent {
        key: replacement.key(),
        body: replacement.body(),
        headers: &headers,
        topic: original.topic(),
        partition: original.partition(),
        offset: original.offset(),
        timestamp: replacement.timestamp(),
    });
    forged
}

/// Sorts the chain's final batch by destination, stamping each event with
/// the `lineage` of plugin versions that processed it (if any ran).
fn sort(mut out: ChainOutput, current: BatchBuf, routes: Routes, lineage: &[u8]) -> ChainOutput {
    let stamp = !lineage.is_empty();
    let stamped = |into: &mut BatchBuf, event: &EventRef<'_>| {
        if stamp {
            into.push_with_headers(event, &[(LINEAGE, lineage)]);
        } else {
            into.push_ref(event, None);
        }
    };
    if routes.of_event.iter().all(Option::is_none) {
        if stamp {
            let mut default = BatchBuf::with_capacity(
                current.len(),
                current.data_len() + current.len() * (lineage.len() + 24),
            );
            for event in current.iter() {
                stamped(&mut default, &event);
            }
            out.default = default;
        } else {
            out.default = current;
        }
        return out;
    }
    let mut routed: Vec<BatchBuf> = vec![BatchBuf::default(); routes.names.len()];
    for (i, event) in current.iter().enumerate() {
        match routes.of_event[i] {
            Some(r) => stamped(&mut routed[r as usize], &event),
            None => stamped(&mut out.default, &event),
        }
    }
    out.routed = routes.names.into_iter().zip(routed).collect();
    out
}

/// Appends `event` to `dead` with the headers naming `reason`, the plugin and
/// version, and the event's origin.
/// Appends `event` without its body and key, with its headers and a
/// [`DEAD_LETTER_WITHHELD`] header naming the redaction stage that failed
/// (the last [`DEAD_LETTER_PLUGIN`] it was given).
fn push_withheld(out: &mut BatchBuf, event: &EventRef<'_>) {
    let stage = event
        .headers()
        .filter_map(Result::ok)
        .filter(|(name, _)| *name == DEAD_LETTER_PLUGIN)
        .last()
        .map_or(&b""[..], |(_, value)| value);
    let mut headers: Vec<(&str, &[u8])> = event.headers().filter_map(Result::ok).collect();
    headers.push((DEAD_LETTER_WITHHELD, stage));
    out.push(&NewEvent {
        key: None,
        body: b"",
        headers: &headers,
        topic: event.topic(),
        partition: event.partition(),
        offset: event.offset(),
        timestamp: event.timestamp(),
    });
}

fn push_dead_letter(
    dead: &mut BatchBuf,
    event: &EventRef<'_>,
    reason: &str,
    instance: &PluginInstance,
) {
    let origin = format!("{}/{}/{}", event.topic(), event.partition(), event.offset());
    dead.push_with_headers(
        event,
        &[
            (DEAD_LETTER_REASON, reason.as_bytes()),
            (DEAD_LETTER_PLUGIN, instance.name().as_bytes()),
            (DEAD_LETTER_DIGEST, instance.digest().as_bytes()),
            (DEAD_LETTER_ORIGIN, origin.as_bytes()),
        ],
    );
}
