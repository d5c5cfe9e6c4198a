//! A sink group at run time: one task reads the group's channel and hands
//! each batch to one member sink, through a one-batch memory channel per
//! member, as `[sink_groups.<name>]` says (see
//! [`crate::config::sink_groups`] for the policies).
//!
//! Each batch handed to a member is a copy with an acknowledgement of the
//! group's own; the original acknowledgement is released only when a
//! member delivered the batch. A member that fails it is backed off and the
//! batch goes to another member. A member whose task stops with an error
//! is down: [`supervise`] starts it again after a penalty that doubles
//! from 1 s up to `max_backoff` (as Flume's processors try a failed sink
//! again), on a new member channel it hands the group. Only when every
//! member is down at once does the group fail, and the agent with it: the
//! batches it held go back to their sources.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::channels::{ChannelReceiver, ChannelSender};
use crate::config::sink_groups::{Processor, Selector, SinkGroupDef};
use crate::event::{Ack, AckReport, Batch, BatchBuf};
use crate::metrics::{Counter, Metrics};
use crate::sinks::{Sink, SinkContext};

/// First backoff of a member that failed a batch.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How often availability is looked at again while no member is available.
const RECHECK: Duration = Duration::from_millis(100);

/// The channel between a group and one member: a batch at a time, so a
/// batch waits in the group, not in a member that may fail.
pub(super) fn member_channel() -> (ChannelSender, ChannelReceiver) {
    crate::channels::memory::channel(crate::channels::memory::Capacity {
        events: 1,
        bytes: 1,
    })
}

/// A member started again: its index in the group and its new channel.
pub(super) type Revived = (usize, ChannelSender);

/// One member sink as the group sees it.
pub(super) struct Member {
    pub name: String,
    pub tx: ChannelSender,
    /// Set while the member's task is down; cleared when it is revived.
    pub dead: Arc<AtomicBool>,
    /// The member's `sink.<name>.failing` gauge (retrying its store).
    failing: crate::metrics::Gauge,
    backoff: Duration,
    until: Option<Instant>,
}

impl Member {
    pub fn new(name: &str, tx: ChannelSender, metrics: &Metrics) -> Self {
        Self {
            name: name.to_owned(),
            tx,
            dead: Arc::new(AtomicBool::new(false)),
            failing: metrics.gauge(&format!("sink.{name}.failing")),
            backoff: FIRST_BACKOFF,
            until: None,
        }
    }

    fn available(&self, honour_backoff: bool, now: Instant) -> bool {
        !self.dead.load(Ordering::Acquire)
            && self.failing.load(Ordering::Relaxed) == 0
            && !(honour_backoff && self.until.is_some_and(|u| u > now))
    }
}

/// The group failed: every member is dead.
#[derive(Debug, thiserror::Error)]
#[error("sink group `{group}`: every member sink stopped ({members})")]
pub(super) struct GroupFailed {
    group: String,
    members: String,
}

struct Dispatch {
    group: String,
    def: SinkGroupDef,
    members: Vec<Member>,
    next: usize,
    /// State of the `random` selector.
    rng: u64,
    failovers: Counter,
}

impl Dispatch {
    /// The member for the next batch, if one is available now.
    fn pick(&mut self) -> Option<usize> {
        let now = Instant::now();
        let honour = self.def.processor == Processor::Failover || self.def.backoff;
        let available: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].available(honour, now))
            .collect();
        match (self.def.processor, self.def.selector) {
            // Members are in priority order.
            (Processor::Failover, _) => available.first().copied(),
            (Processor::LoadBalance, Selector::RoundRobin) => {
                let n = self.members.len();
                let pick = (0..n)
                    .map(|k| (self.next + k) % n)
                    .find(|i| available.contains(i))?;
                self.next = (pick + 1) % n;
                Some(pick)
            }
            (Processor::LoadBalance, Selector::Random) if available.is_empty() => None,
            (Processor::LoadBalance, Selector::Random) => {
                // xorshift64: enough to spread batches.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                Some(available[(self.rng % available.len() as u64) as usize])
            }
        }
    }

    fn penalise(&mut self, i: usize) {
        let max = self.def.max_backoff.get();
        let m = &mut self.members[i];
        m.until = Some(Instant::now() + m.backoff);
        warn!(group = %self.group, sink = %m.name, backoff = ?m.backoff, "a member sink failed a batch; another member takes it");
        m.backoff = (m.backoff * 2).min(max);
    }

    fn all_dead(&self) -> bool {
        self.members.iter().all(|m| m.dead.load(Ordering::Acquire))
    }
}

/// Runs group `group` until its channel ends and every batch is delivered
/// (or every member is dead).
pub(super) async fn run(
    group: String,
    def: SinkGroupDef,
    mut input: ChannelReceiver,
    members: Vec<Member>,
    mut revived: mpsc::UnboundedReceiver<Revived>,
    metrics: Arc<Metrics>,
) -> Result<(), GroupFailed> {
    let mut d = Dispatch {
        failovers: metrics.counter(&format!("sink_group.{group}.failovers")),
        group,
        def,
        members,
        next: 0,
        rng: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1,
    };
    info!(group = %d.group, members = ?d.members.iter().map(|m| &m.name).collect::<Vec<_>>(), "sink group started");
    let (report_tx, mut reports) = mpsc::unbounded_channel::<AckReport>();
    let mut pending: HashMap<u64, (BatchBuf, Ack, usize)> = HashMap::new();
    let mut queue: VecDeque<(BatchBuf, Ack)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut input_open = true;
    loop {
        if d.all_dead() {
            let members = d
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            error!(group = %d.group, "every member sink stopped; the group stops");
            // Unreleased acks fail: the sources read those batches again.
            drop(queue);
            drop(pending);
            return Err(GroupFailed {
                group: d.group,
                members,
            });
        }
        // Hand queued batches to available members.
        while let Some(i) = queue.front().and_then(|_| d.pick()) {
            let (events, ack) = queue.pop_front().expect("front checked");
            let id = next_id;
            next_id += 1;
            let copy = Batch::new(events.clone(), Ack::new(id, report_tx.clone()));
            pending.insert(id, (events, ack, i));
            let tx = d.members[i].tx.clone();
            let send = tx.send(copy);
            tokio::pin!(send);
            let sent = loop {
                tokio::select! {
                    biased;
                    sent = &mut send => break Some(sent),
                    Some(r) = reports.recv() => on_report(&mut d, &mut pending, &mut queue, r),
                    // A member that died with a batch queued never takes another.
                    _ = tokio::time::sleep(RECHECK) => if d.members[i].dead.load(Ordering::Acquire) {
                        break None;
                    },
                }
            };
            if !matches!(sent, Some(Ok(()))) {
                // Its task ended: the copy is dropped, its ack fails, and the
                // batch comes back through the reports.
                warn!(group = %d.group, sink = %d.members[i].name, "a member sink is gone");
                d.members[i].dead.store(true, Ordering::Release);
            }
        }
        if !input_open && queue.is_empty() && pending.is_empty() {
            break;
        }
        let idle = queue.is_empty();
        tokio::select! {
            batch = input.recv(), if input_open && idle => match batch {
                Some(batch) => queue.push_back((batch.events, batch.ack)),
                None => input_open = false,
            },
            Some(r) = reports.recv() => on_report(&mut d, &mut pending, &mut queue, r),
            Some((i, tx)) = revived.recv() => {
                let m = &mut d.members[i];
                m.tx = tx;
                m.dead.store(false, Ordering::Release);
                info!(group = %d.group, sink = %m.name, "a member sink started again");
            }
            _ = tokio::time::sleep(RECHECK), if !idle || !pending.is_empty() => {}
        }
    }
    info!(group = %d.group, "sink group stopped");
    Ok(())
}

/// How [`supervise`] reaches its group.
pub(super) struct Supervision {
    /// The member's index in the group.
    pub index: usize,
    pub dead: Arc<AtomicBool>,
    /// Where a revived member's channel goes; closed once the group ended.
    pub revive: mpsc::UnboundedSender<Revived>,
    /// The group's `max_backoff`: the longest penalty.
    pub max_backoff: Duration,
    /// `sink_group.<group>.member_restarts`.
    pub restarts: Counter,
}

/// Runs member sink `kind` on `input` until its channel ends; each time it
/// stops with an error instead, marks it down and starts it again after a
/// penalty on a new channel, until the group has ended. The penalty
/// doubles from 1 s up to `max_backoff` and is 1 s again after a run that
/// lasted longer than `max_backoff`.
pub(super) async fn supervise(
    kind: Arc<dyn Sink>,
    mut input: ChannelReceiver,
    ctx: SinkContext,
    s: Supervision,
) {
    let mut penalty = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let Err(e) = kind.run(input, ctx.clone()).await else {
            return; // its channel ended: the group is done with it
        };
        s.dead.store(true, Ordering::Release);
        if started.elapsed() > s.max_backoff {
            penalty = FIRST_BACKOFF;
        }
        error!(sink = %ctx.name, error = %e, restart_in = ?penalty, "a sink of a group stopped; the group carries on without it and starts it again after a penalty");
        tokio::select! {
            _ = tokio::time::sleep(penalty) => {}
            _ = s.revive.closed() => return,
        }
        penalty = (penalty * 2).min(s.max_backoff);
        let (tx, rx) = member_channel();
        if s.revive.send((s.index, tx)).is_err() {
            return;
        }
        s.restarts.fetch_add(1, Ordering::Relaxed);
        input = rx;
    }
}

fn on_report(
    d: &mut Dispatch,
    pending: &mut HashMap<u64, (BatchBuf, Ack, usize)>,
    queue: &mut VecDeque<(BatchBuf, Ack)>,
    r: AckReport,
) {
    let Some((events, ack, i)) = pending.remove(&r.id) else {
        return;
    };
    if r.delivered {
        d.members[i].backoff = FIRST_BACKOFF;
        ack.release();
    } else {
        d.failovers.fetch_add(1, Ordering::Relaxed);
        d.penalise(i);
        queue.push_front((events, ack));
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::timeout;

    use super::*;
    use crate::channels::memory::{Capacity, channel};

    const WAIT: Duration = Duration::from_secs(20);

    struct Harness {
        input: ChannelSender,
        members: Vec<ChannelReceiver>,
        acks: mpsc::UnboundedReceiver<AckReport>,
        acks_tx: mpsc::UnboundedSender<AckReport>,
        task: tokio::task::JoinHandle<Result<(), GroupFailed>>,
        metrics: Arc<Metrics>,
        dead: Vec<Arc<AtomicBool>>,
        revive: mpsc::UnboundedSender<Revived>,
    }

    fn start(def: &str, names: &[&str]) -> Harness {
        let def: SinkGroupDef = toml::from_str(def).unwrap();
        let metrics = Metrics::new();
        let (input, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let mut receivers = Vec::new();
        let mut members = Vec::new();
        for name in names {
            let (tx, rx) = channel(Capacity {
                events: 1,
                bytes: 1,
            });
            receivers.push(rx);
            members.push(Member::new(name, tx, &metrics));
        }
        let dead = members.iter().map(|m| m.dead.clone()).collect();
        let (revive, revived) = mpsc::unbounded_channel();
        let task = tokio::spawn(run("g".into(), def, rx, members, revived, metrics.clone()));
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Harness {
            input,
            members: receivers,
            acks,
            acks_tx,
            task,
            metrics,
            dead,
            revive,
        }
    }

    impl Harness {
        async fn send(&self, id: u64) {
            let mut events = BatchBuf::default();
            events.push(&crate::event::NewEvent {
                key: None,
                body: b"x",
                headers: &[],
                topic: "t",
                partition: 0,
                offset: id as i64,
                timestamp: 0,
            });
            let batch = Batch::new(events, Ack::new(id, self.acks_tx.clone()));
            assert!(self.input.send(batch).await.is_ok());
        }

        async fn take(&mut self, member: usize) -> Batch {
            timeout(WAIT, self.members[member].recv())
                .await
                .expect("a batch in time")
                .expect("open")
        }

        async fn report(&mut self) -> AckReport {
            timeout(WAIT, self.acks.recv()).await.unwrap().unwrap()
        }
    }

    fn id_of(batch: &Batch) -> i64 {
        batch.events.get(0).unwrap().offset()
    }

    #[tokio::test]
    async fn failover_moves_to_the_next_sink_and_back_after_the_backoff() {
        let mut h = start(
            "sinks = [\"a\", \"b\"]\nprocessor = \"failover\"",
            &["a", "b"],
        );
        h.send(1).await;
        let first = h.take(0).await;
        assert_eq!(id_of(&first), 1);
        // `a` fails it: `b` gets it; the source's ack waits for `b`.
        first.ack.fail();
        drop(first);
        let again = h.take(1).await;
        assert_eq!(id_of(&again), 1);
        assert!(
            h.acks.try_recv().is_err(),
            "not acknowledged before delivery"
        );
        again.release();
        assert!(h.report().await.delivered);
        assert_eq!(h.metrics.get("sink_group.g.failovers"), 1);
        // While `a` backs off, `b` takes the next batch; after 1 s, `a` again.
        h.send(2).await;
        let b2 = h.take(1).await;
        assert_eq!(id_of(&b2), 2);
        b2.release();
        tokio::time::sleep(FIRST_BACKOFF).await;
        h.send(3).await;
        let b3 = h.take(0).await;
        assert_eq!(id_of(&b3), 3);
        b3.release();
        // A sink that reports itself failing (retrying its store) is skipped.
        h.metrics
            .gauge("sink.a.failing")
            .store(1, Ordering::Relaxed);
        h.send(4).await;
        let b4 = h.take(1).await;
        assert_eq!(id_of(&b4), 4);
        b4.release();
        for _ in 0..3 {
            assert!(h.report().await.delivered);
        }
    }

    #[tokio::test]
    async fn load_balance_takes_turns_and_the_group_fails_when_every_member_is_dead() {
        let mut h = start(
            "sinks = [\"a\", \"b\"]\nprocessor = \"load_balance\"",
            &["a", "b"],
        );
        let mut order = Vec::new();
        for id in 0..4 {
            h.send(id).await;
            let member = if id % 2 == 0 { 0 } else { 1 };
            let batch = h.take(member).await;
            order.push((member, id_of(&batch)));
            batch.release();
        }
        assert_eq!(order, [(0, 0), (1, 1), (0, 2), (1, 3)]);
        for _ in 0..4 {
            assert!(h.report().await.delivered);
        }
        // Both members stop: the batch held comes back failed to its source.
        for d in &h.dead {
            d.store(true, Ordering::Release);
        }
        h.send(9).await;
        assert!(!h.report().await.delivered);
        let failed = timeout(WAIT, h.task).await.unwrap().unwrap();
        assert!(failed.is_err());
    }

    /// A sink that stops with an error on its first run and delivers every
    /// batch on the next.
    #[derive(Debug, Default)]
    struct FailsFirst {
        runs: std::sync::atomic::AtomicUsize,
    }

    impl Sink for FailsFirst {
        fn guarantee(&self) -> crate::sinks::Guarantee {
            crate::sinks::Guarantee::AtLeastOnce
        }

        fn run(
            &self,
            mut input: ChannelReceiver,
            ctx: SinkContext,
        ) -> futures::future::BoxFuture<'static, Result<(), crate::sinks::SinkError>> {
            let first = self.runs.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    return Err(crate::sinks::SinkError {
                        sink: ctx.name,
                        message: "cannot open its store".into(),
                    });
                }
                while let Some(batch) = input.recv().await {
                    batch.release();
                }
                Ok(())
            })
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[tokio::test]
    async fn a_member_that_stopped_starts_again_after_its_penalty_and_takes_batches_back() {
        let mut h = start(
            "sinks = [\"a\", \"b\"]\nprocessor = \"failover\"",
            &["a", "b"],
        );
        let input = std::mem::replace(&mut h.members[0], member_channel().1);
        let ctx = SinkContext {
            name: "a".into(),
            metrics: h.metrics.clone(),
            embedded_bootstrap: None,
            link: None,
            state_dir: None,
            dead_letter: None,
        };
        let supervision = Supervision {
            index: 0,
            dead: h.dead[0].clone(),
            revive: h.revive.clone(),
            max_backoff: Duration::from_secs(1),
            restarts: h.metrics.counter("sink_group.g.member_restarts"),
        };
        let supervisor = tokio::spawn(supervise(
            Arc::new(FailsFirst::default()),
            input,
            ctx,
            supervision,
        ));
        // `a` stopped at once: `b` takes the batch, whichever saw it first.
        h.send(1).await;
        let batch = h.take(1).await;
        assert_eq!(id_of(&batch), 1);
        batch.release();
        assert!(h.report().await.delivered);
        // After its penalty `a` runs again, and takes the next batch itself.
        let (metrics, dead) = (h.metrics.clone(), h.dead[0].clone());
        crate::wait::until("`a` to start again", WAIT, || {
            metrics.get("sink_group.g.member_restarts") == 1 && !dead.load(Ordering::Acquire)
        })
        .await;
        // (Nothing releases what reaches `b` now: only `a` can deliver it.)
        h.send(2).await;
        assert!(h.report().await.delivered);
        // The group ends: so does the supervisor.
        drop(h.input);
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
        timeout(WAIT, supervisor).await.unwrap().unwrap();
    }
}
