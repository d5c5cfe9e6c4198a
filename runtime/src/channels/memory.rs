//! The `memory` channel: a bounded in-memory queue of batches.
//!
//! Bounded by events and by bytes (whichever fills first), like Flume's memory
//! channel (`capacity`, `byteCapacity`) but without its failure mode: a full
//! channel never rejects a batch; the sender waits. What the channel holds is
//! lost if the process dies, but nothing in it has been committed at the
//! source yet, so a Kafka source redelivers it (at-least-once).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use super::{Channel, ChannelError, ChannelType, OpenChannel, OpenContext};
pub use super::{ChannelReceiver, ChannelSender, Closed};
use crate::event::Batch;
use crate::keys;
use crate::units::ByteSize;

/// `type = "memory"`.
pub const TYPE: ChannelType = ChannelType {
    name: "memory",
    load: |table, _| Ok(Arc::new(keys::deserialize::<MemoryChannelConfig>(table)?)),
};

/// Keys of a `memory` channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemoryChannelConfig {
    /// Most events held. Default 10000.
    #[serde(default = "default_capacity_events")]
    pub capacity_events: usize,
    /// Most payload bytes held. Default `"64MiB"`.
    #[serde(default = "default_capacity_bytes")]
    pub capacity_bytes: ByteSize,
}

fn default_capacity_events() -> usize {
    10_000
}

fn default_capacity_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

impl Channel for MemoryChannelConfig {
    fn durable(&self) -> bool {
        false
    }

    fn open(&self, name: &str, ctx: &OpenContext<'_>) -> Result<OpenChannel, ChannelError> {
        let (tx, rx) = memory_channel(Capacity {
            events: self.capacity_events,
            bytes: usize::try_from(self.capacity_bytes.get()).unwrap_or(usize::MAX),
        });
        tx.limits.register_fill(name, ctx.metrics);
        let (sender, receiver) = (ChannelSender::Memory(tx), ChannelReceiver::Memory(rx));
        Ok(OpenChannel {
            sender,
            receiver,
            settle: None,
            health: None,
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Largest permit count tokio's semaphore accepts in one acquire.
const MAX_PERMITS: usize = u32::MAX as usize >> 3;

/// Capacity limits of a memory channel.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Most events held at once.
    pub events: usize,
    /// Most payload bytes held at once.
    pub bytes: usize,
}

struct Limits {
    held: AtomicUsize,
    events: Semaphore,
    bytes: Semaphore,
    capacity: Capacity,
}

impl Limits {
    /// Registers the channel's fill (`channel.<name>.queued_events`,
    /// `.queued_bytes`) and capacity as gauges read at scrape time.
    fn register_fill(self: &Arc<Self>, name: &str, metrics: &crate::metrics::Metrics) {
        let clamp = |n: usize| n.clamp(1, MAX_PERMITS);
        let (events, bytes) = (clamp(self.capacity.events), clamp(self.capacity.bytes));
        let me = Arc::downgrade(self);
        metrics.gauge_fn(&format!("channel.{name}.queued_events"), move || {
            me.upgrade().map_or(0, |l| {
                events.saturating_sub(l.events.available_permits()) as i64
            })
        });
        let me = Arc::downgrade(self);
        metrics.gauge_fn(&format!("channel.{name}.queued_bytes"), move || {
            me.upgrade().map_or(0, |l| {
                bytes.saturating_sub(l.bytes.available_permits()) as i64
            })
        });
        let gauge = |what: &str, v: usize| {
            metrics
                .gauge(&format!("channel.{name}.{what}"))
                .store(v as i64, Ordering::Relaxed)
        };
        gauge("capacity_events", events);
        gauge("capacity_bytes", bytes);
    }
}

/// The sending side; clone it per producer.
#[derive(Clone)]
pub struct MemorySender {
    tx: mpsc::UnboundedSender<(Batch, u32, u32)>,
    limits: Arc<Limits>,
}

/// The receiving side, owned by one sink.
pub struct MemoryReceiver {
    rx: mpsc::UnboundedReceiver<(Batch, u32, u32)>,
    limits: Arc<Limits>,
}

/// Creates a memory channel with the given capacity.
pub fn channel(capacity: Capacity) -> (ChannelSender, ChannelReceiver) {
    let (tx, rx) = memory_channel(capacity);
    (ChannelSender::Memory(tx), ChannelReceiver::Memory(rx))
}

/// Creates a memory channel, returning its concrete ends.
pub(crate) fn memory_channel(capacity: Capacity) -> (MemorySender, MemoryReceiver) {
    let limits = Arc::new(Limits {
        held: AtomicUsize::new(0),
        events: Semaphore::new(capacity.events.clamp(1, MAX_PERMITS)),
        bytes: Semaphore::new(capacity.bytes.clamp(1, MAX_PERMITS)),
        capacity,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        MemorySender {
            tx,
            limits: limits.clone(),
        },
        MemoryReceiver { rx, limits },
    )
}

impl MemorySender {
    /// Queues a batch, waiting while the channel is full. A batch larger than
    /// the whole capacity is admitted alone once the channel is empty, so an
    /// oversized batch slows the pipeline down but never wedges it.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let events =
            (batch.len().max(1)).min(self.limits.capacity.events.clamp(1, MAX_PERMITS)) as u32;
        let bytes = (batch.events.data_len().max(1))
            .min(self.limits.capacity.bytes.clamp(1, MAX_PERMITS)) as u32;
        // Acquire in a fixed order (events, then bytes) so senders cannot deadlock.
        let (Ok(e), Ok(b)) = (
            self.limits.events.acquire_many(events).await,
            self.limits.bytes.acquire_many(bytes).await,
        ) else {
            return Err(Closed(batch));
        };
        e.forget();
        b.forget();
        self.limits.held.fetch_add(batch.len(), Ordering::Relaxed);
        self.tx.send((batch, events, bytes)).map_err(|e| {
            let (batch, events, bytes) = e.0;
            self.limits.held.fetch_sub(batch.len(), Ordering::Relaxed);
            self.limits.events.add_permits(events as usize);
            self.limits.bytes.add_permits(bytes as usize);
            Closed(batch)
        })
    }

    /// Events currently held.
    pub fn held_events(&self) -> usize {
        self.limits.held.load(Ordering::Relaxed)
    }
}

impl MemoryReceiver {
    /// The next batch; `None` once all senders are dropped and the channel is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let (batch, events, bytes) = self.rx.recv().await?;
        self.limits.held.fetch_sub(batch.len(), Ordering::Relaxed);
        self.limits.events.add_permits(events as usize);
        self.limits.bytes.add_permits(bytes as usize);
        Some(batch)
    }
}

impl Drop for MemoryReceiver {
    /// A sink that stops early (it failed) drops its receiver with batches
    /// still queued: fail their acknowledgements, so their offsets are never
    /// committed and the events are redelivered rather than lost.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok((batch, _, _)) = self.rx.try_recv() {
            batch.ack.fail();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_batch::{BatchBuf, NewEvent};

    use super::*;

    fn batch(n: usize) -> Batch {
        let mut b = BatchBuf::default();
        for i in 0..n {
            b.push(&NewEvent {
                key: None,
                body: b"0123456789",
                headers: &[],
                topic: "t",
                partition: 0,
                offset: i as i64,
                timestamp: -1,
            });
        }
        Batch::unacked(b)
    }

    #[tokio::test]
    async fn full_channel_makes_sender_wait_until_drained() {
        let (tx, mut rx) = channel(Capacity {
            events: 10,
            bytes: 1 << 20,
        });
        tx.send(batch(6)).await.unwrap();
        let second = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(6)).await.is_ok() }
        });
        // The second send cannot complete while 6 of 10 slots are taken.
        tokio::time::timeout(Duration::from_millis(50), async {
            while !second.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect_err("second send completed although the channel was full");
        assert_eq!(tx.held_events(), 6);
        assert_eq!(rx.recv().await.unwrap().len(), 6);
        assert!(second.await.unwrap());
        assert_eq!(rx.recv().await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn bytes_bound_applies_too() {
        let (tx, mut rx) = channel(Capacity {
            events: 1000,
            bytes: 30,
        });
        tx.send(batch(1)).await.unwrap();
        tx.send(batch(1)).await.unwrap();
        let third = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(1)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        rx.recv().await.unwrap();
        assert!(third.await.unwrap());
    }

    #[tokio::test]
    async fn oversized_batch_is_admitted_alone_and_nothing_is_lost() {
        let (tx, mut rx) = channel(Capacity {
            events: 5,
            bytes: 1 << 20,
        });
        tx.send(batch(50)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().len(), 50);
    }

    #[tokio::test]
    async fn batches_left_in_a_dropped_channel_are_not_delivered() {
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let (tx, rx) = channel(Capacity {
            events: 100,
            bytes: 1 << 20,
        });
        let mut b = batch(3);
        b.ack = crate::event::Ack::new(9, ack_tx);
        tx.send(b).await.unwrap();
        drop(rx);
        let report = ack_rx.recv().await.unwrap();
        assert_eq!(report.id, 9);
        assert!(!report.delivered);
    }

    #[tokio::test]
    async fn receiver_sees_end_after_senders_drop() {
        let (tx, mut rx) = channel(Capacity {
            events: 5,
            bytes: 100,
        });
        tx.send(batch(2)).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap().len(), 2);
        assert!(rx.recv().await.is_none());
    }
}
