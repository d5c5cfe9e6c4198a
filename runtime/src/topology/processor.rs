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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_batch::BatchBuf;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::routes::RouteTable;
use crate::event::{Ack, Batch, DEAD_LETTER_PLUGIN, DEAD_LETTER_REASON};
use crate::metrics::{Counter, Gauge, Metrics};
use crate::plugin::chain::{DEAD_LETTER_WITHHELD, Paused};
use crate::plugin::registry::Registry;
use crate::plugin::{Chain, ChainOutput};
use crate::tap::TapPoint;

/// Where a source's events can go.
#[derive(Clone)]
pub struct Dispatch {
    /// The source's name (for metrics and logs).
    pub source: String,
    /// The source's `channels`.
    pub default: Vec<String>,
    /// Channels this source may not route to (see
    /// `Config::channels_closed_to`).
    pub closed: BTreeSet<String>,
    /// The source's `dead_letter` channel.
    pub dead: Option<String>,
    /// Where each channel name leads now.
    pub routes: Arc<RouteTable>,
    /// The run's shutdown: a panicking chain or a stopped sink fires it.
    /// (The processor's own token stops this source alone.)
    pub fatal: CancellationToken,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Versions of the plugins, to wait for a new one while paused.
    pub registry: Registry,
    /// Notified when an operator resumes this source.
    pub resume: Arc<Notify>,
}

/// Processes batches from `input` until it ends, with one lane per chain in
/// `chains` (at least one; see [`lanes`]).
pub async fn run(
    mut chains: Vec<Chain>,
    input: mpsc::Receiver<Batch>,
    dispatch: Dispatch,
    shutdown: CancellationToken,
) {
    if chains.len() > 1 {
        return lanes(chains, input, dispatch, shutdown).await;
    }
    let chain = chains.pop().unwrap_or_else(|| Chain::new(Vec::new()));
    lane(chain, input, dispatch, shutdown).await;
}

/// Several lanes: each batch is cut into one piece per lane (an event goes
/// to lane `partition mod lanes`), and each lane processes its pieces in
/// order with its own chain, on its own blocking thread, so plugins run on
/// every core while each partition's events keep their order. Every piece
/// holds a clone of the batch's ack: the batch counts as delivered when all
/// its pieces are. A lane that holds a batch (a paused plugin) stops taking
/// pieces; once its queue is full the cutting waits, and the source with it.
/// A lane that ends (a panic, or a shutdown while paused) ends the cutting:
/// batches not taken are failed by the source and read again.
async fn lanes(
    chains: Vec<Chain>,
    mut input: mpsc::Receiver<Batch>,
    dispatch: Dispatch,
    shutdown: CancellationToken,
) {
    let count = chains.len();
    let mut queues = Vec::with_capacity(count);
    let mut running = tokio::task::JoinSet::new();
    for chain in chains {
        let (tx, rx) = mpsc::channel(1);
        running.spawn(lane(chain, rx, dispatch.clone(), shutdown.clone()));
        queues.push(tx);
    }
    'batches: loop {
        // A batch is taken only once every lane has taken its last piece
        // (each lane then works on one piece with the next one queued).
        // While a lane is behind, the source's batch stays with the source,
        // which keeps filling it: the source sees a busy stage and does not
        // hand on small batches (`flush_when_idle`).
        let mut permits = Vec::with_capacity(count);
        for queue in &queues {
            match queue.reserve().await {
                Ok(permit) => permits.push(permit),
                // The lane ended (a panic or a shutdown while paused).
                Err(_) => break 'batches,
            }
        }
        let Some(batch) = input.recv().await else {
            break;
        };
        let Batch {
            events,
            ack,
            mut rejected,
        } = batch;
        for (index, (piece, permit)) in cut(events, count).into_iter().zip(permits).enumerate() {
            // The source's rejected records travel with the first piece.
            if piece.is_empty() && (index > 0 || rejected.is_empty()) {
                continue;
            }
            let mut piece = Batch::new(piece, ack.clone());
            piece.rejected = std::mem::take(&mut rejected);
            permit.send(piece);
        }
        ack.release();
    }
    drop(queues);
    while running.join_next().await.is_some() {}
}

/// `events` as one piece per lane: an event goes to lane `partition mod
/// lanes`. A batch of one lane's partitions is moved, not copied.
fn cut(events: BatchBuf, lanes: usize) -> Vec<BatchBuf> {
    let lane_of = |partition: i32| partition.rem_euclid(lanes as i32) as usize;
    let first = events.get(0).map_or(0, |e| lane_of(e.partition()));
    let mut pieces: Vec<BatchBuf> = (0..lanes).map(|_| BatchBuf::default()).collect();
    if events.iter().all(|e| lane_of(e.partition()) == first) {
        pieces[first] = events;
        return pieces;
    }
    for event in events.iter() {
        pieces[lane_of(event.partition())].push_ref(&event, None);
    }
    pieces
}

/// One lane: runs its chain on each batch from `input` and sends the
/// pieces on, in order.
async fn lane(
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
        processor.out.source_tap.offer(&events);
        let Some(mut output) = processor.process(events).await else {
            // A panic or a shutdown while paused: the batch is read again.
            ack.fail();
            return;
        };
        processor.out.gather_dead(&mut output, &rejected);
        let Some(output) = processor.redact(output).await else {
            ack.fail();
            return;
        };
        let sends = processor.out.route(output, &ack);
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
    withheld: Counter,
    paused: Gauge,
    pauses: Counter,
    /// `source:<name>`: what the source read.
    source_tap: Arc<TapPoint>,
}

/// Where a batch's pieces go: a channel each, by name.
type Sends = Vec<(String, BatchBuf)>;

impl Processor {
    fn new(chain: Chain, dispatch: Dispatch, shutdown: CancellationToken) -> Self {
        let metrics = dispatch.metrics.clone();
        let name = |what: &str| format!("source.{}.{what}", dispatch.source);
        let out = Outlet {
            dropped: metrics.counter(&name("dropped_by_plugins")),
            dead_lettered: metrics.counter(&name("dead_lettered")),
            withheld: metrics.counter(&name("dead_letters_withheld")),
            paused: metrics.gauge(&name("paused")),
            pauses: metrics.counter(&name("pauses")),
            source_tap: metrics.tap(&format!("source:{}", dispatch.source)),
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
                    self.out.dispatch.fatal.cancel();
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

    /// Runs the source's dead-letter redaction stages (on a blocking
    /// thread) over the batch's dead letters; `None` if they panicked (the
    /// runtime shuts down).
    async fn redact(&mut self, mut output: ChainOutput) -> Option<ChainOutput> {
        if !self.chain.redacts() || output.dead.is_empty() {
            return Some(output);
        }
        let moved = std::mem::take(&mut self.chain);
        let dead = std::mem::take(&mut output.dead);
        match tokio::task::spawn_blocking(move || {
            let mut chain = moved;
            let redacted = chain.redact(dead);
            (chain, redacted)
        })
        .await
        {
            Ok((back, redacted)) => {
                self.chain = back;
                output.dead = redacted.events;
                output.dropped += redacted.dropped;
                if redacted.withheld > 0 {
                    self.out
                        .withheld
                        .fetch_add(redacted.withheld as u64, Ordering::Relaxed);
                    tracing::warn!(source = %self.out.dispatch.source, events = redacted.withheld, "a dead-letter redaction stage failed; those dead letters are written without body and key (header {DEAD_LETTER_WITHHELD})");
                }
                Some(output)
            }
            Err(e) => {
                tracing::error!(source = %self.out.dispatch.source, "dead-letter redaction panicked: {e}; shutting down");
                self.out.dispatch.fatal.cancel();
                None
            }
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

    /// Moves into `output.dead` what cannot go on as it is: the records the
    /// source rejected (when the source has a dead-letter channel; without
    /// one they are delivered as they are now, escaped and with the reason
    /// in their headers, rather than failed again and again) and events
    /// routed to a name that is no channel.
    fn gather_dead(&self, output: &mut ChainOutput, rejected: &BatchBuf) {
        let dispatch = &self.dispatch;
        let rejects = if dispatch.dead.is_some() {
            &mut output.dead
        } else {
            &mut output.default
        };
        for event in rejected.iter() {
            rejects.push_ref(&event, None);
        }
        let routed = std::mem::take(&mut output.routed);
        for (route, events) in routed {
            if dispatch.routes.knows(&route) && !dispatch.closed.contains(&route) {
                output.routed.push((route, events));
                continue;
            }
            let reason = format!("route `{route}` names no channel");
            for event in events.iter() {
                output.dead.push_with_headers(
                    &event,
                    &[
                        (DEAD_LETTER_REASON, reason.as_bytes()),
                        (DEAD_LETTER_PLUGIN, b"router"),
                    ],
                );
            }
        }
    }

    /// Splits the chain's output into one piece per channel: the source's
    /// channels, routes, dead letters ([`Outlet::gather_dead`] first).
    fn route(&self, output: ChainOutput, ack: &Ack) -> Sends {
        let dispatch = &self.dispatch;
        self.dropped
            .fetch_add(output.dropped as u64, Ordering::Relaxed);
        let dead = output.dead;
        let output_default = output.default;
        let mut sends: Sends = Vec::new();
        if !output_default.is_empty() {
            let n = dispatch.default.len();
            let mut events = Some(output_default);
            for (i, channel) in dispatch.default.iter().enumerate() {
                let piece = if i + 1 == n {
                    events.take().unwrap_or_default()
                } else {
                    events.clone().unwrap_or_default()
                };
                sends.push((channel.clone(), piece));
            }
        }
        // `gather_dead` left only routes to channels.
        sends.extend(output.routed);
        if !dead.is_empty() {
            self.dead_lettered
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            match &dispatch.dead {
                Some(channel) => sends.push((channel.clone(), dead)),
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
    async fn send(&self, sends: Sends, ack: &Ack) {
        for (channel, events) in sends {
            // A route being rebuilt is waited for, unless this source stops
            // (the run's shutdown while a reload failed half-way).
            let tx = tokio::select! {
                biased; // a ready route is taken even while stopping
                tx = self.dispatch.routes.sender(&channel) => tx,
                _ = self.shutdown.cancelled() => None,
            };
            let Some(tx) = tx else {
                // Removed by a reload while this batch was on its way: the
                // batch is read again, not lost.
                tracing::warn!(source = %self.dispatch.source, %channel, "channel removed; failing the batch, which is read again");
                ack.fail();
                continue;
            };
            self.dispatch
                .metrics
                .tap(&format!("channel:{channel}"))
                .offer(&events);
            let piece = Batch::new(events, ack.clone());
            if let Err(closed) = tx.send(piece).await {
                closed.0.ack.fail();
                tracing::error!(source = %self.dispatch.source, "a channel's sink has stopped; shutting down");
                self.dispatch.fatal.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sluice_batch::NewEvent;

    use super::*;
    use crate::channels::memory::{self, Capacity};
    use crate::topology::routes::Route;

    fn event(partition: i32, offset: i64) -> NewEvent<'static> {
        NewEvent {
            key: None,
            body: b"{}",
            headers: &[],
            topic: "t",
            partition,
            offset,
            timestamp: 0,
        }
    }

    #[test]
    fn cutting_keeps_each_partitions_order_and_moves_a_one_lane_batch() {
        let mut events = BatchBuf::default();
        for offset in 0..30 {
            events.push(&event((offset % 5) as i32, offset));
        }
        let pieces = cut(events, 2);
        assert_eq!(pieces.len(), 2);
        for (lane, piece) in pieces.iter().enumerate() {
            let seen: Vec<(i32, i64)> = piece.iter().map(|e| (e.partition(), e.offset())).collect();
            assert!(
                seen.iter().all(|(p, _)| *p as usize % 2 == lane),
                "{seen:?}"
            );
            assert!(
                seen.windows(2).all(|w| w[0].1 < w[1].1),
                "in order: {seen:?}"
            );
        }
        assert_eq!(pieces[0].len() + pieces[1].len(), 30);

        let mut one_lane = BatchBuf::default();
        one_lane.push(&event(3, 0));
        one_lane.push(&event(1, 1));
        let pieces = cut(one_lane, 2);
        assert_eq!((pieces[0].len(), pieces[1].len()), (0, 2));
    }

    #[tokio::test]
    async fn lanes_keep_each_partitions_order_and_deliver_a_batch_once_all_its_pieces_are() {
        let (to_sink, mut sink) = memory::channel(Capacity {
            events: 1_000_000,
            bytes: 1 << 30,
        });
        let routes = Arc::new(RouteTable::default());
        routes.set("sink", Route::Ready(to_sink));
        let dispatch = Dispatch {
            source: "s".into(),
            default: vec!["sink".into()],
            closed: BTreeSet::new(),
            dead: None,
            routes,
            metrics: Arc::new(Metrics::default()),
            registry: Registry::default(),
            resume: Arc::new(Notify::new()),
            fatal: CancellationToken::new(),
        };
        let (input, batches) = mpsc::channel(2);
        let chains = (0..3).map(|_| Chain::new(Vec::new())).collect();
        let processing = tokio::spawn(run(chains, batches, dispatch, CancellationToken::new()));
        let (ack_tx, mut reports) = mpsc::unbounded_channel();
        let (batches_sent, per_batch, partitions) = (40u64, 100i64, 7i32);
        let feed = tokio::spawn(async move {
            let mut next = vec![0i64; partitions as usize];
            for id in 0..batches_sent {
                let mut events = BatchBuf::default();
                for i in 0..per_batch {
                    let p = ((i * 3 + id as i64) % partitions as i64) as i32;
                    events.push(&event(p, next[p as usize]));
                    next[p as usize] += 1;
                }
                let batch = Batch::new(events, Ack::new(id, ack_tx.clone()));
                input.send(batch).await.unwrap();
            }
        });

        let mut last: HashMap<i32, i64> = HashMap::new();
        let mut received = 0;
        while received < batches_sent as i64 * per_batch {
            let batch = sink.recv().await.expect("every event arrives");
            for e in batch.events.iter() {
                let previous = last.insert(e.partition(), e.offset());
                assert!(
                    previous.is_none_or(|p| p + 1 == e.offset()),
                    "partition {} went from {previous:?} to {}",
                    e.partition(),
                    e.offset()
                );
                received += 1;
            }
            batch.release();
        }
        feed.await.unwrap();
        processing.await.unwrap();
        let mut delivered = Vec::new();
        while let Ok(report) = reports.try_recv() {
            assert!(report.delivered, "batch {}", report.id);
            delivered.push(report.id);
        }
        delivered.sort_unstable();
        assert_eq!(
            delivered,
            (0..batches_sent).collect::<Vec<_>>(),
            "one report per batch"
        );
    }
}
