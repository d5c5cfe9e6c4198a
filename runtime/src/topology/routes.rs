//! The route table: which channel each name reaches, shared by every
//! processor and changed by a live reload.
//!
//! A processor resolves its batch's destinations here per batch (never per
//! event). A reload that rebuilds a channel marks its name
//! [`Route::Pending`] first: processors sending there wait (their sources
//! with them: backpressure, not loss) until the new channel is in place. A
//! removed name is gone: events routed to it are dead-lettered as for any
//! name that is no channel. At shutdown the table is cleared once the
//! processors have ended, which closes the channels so their sinks drain.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::channels::ChannelSender;

/// Where a name leads now.
#[derive(Clone)]
pub enum Route {
    /// To this channel.
    Ready(ChannelSender),
    /// To a channel being rebuilt: wait.
    Pending,
}

/// Channel names to channels; see the module docs.
#[derive(Default)]
pub struct RouteTable {
    map: ArcSwap<BTreeMap<String, Route>>,
    changed: Notify,
}

impl RouteTable {
    /// Sets where `name` leads.
    pub fn set(&self, name: &str, route: Route) {
        self.map.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.insert(name.to_owned(), route.clone());
            m
        });
        self.changed.notify_waiters();
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) {
        self.map.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.remove(name);
            m
        });
        self.changed.notify_waiters();
    }

    /// Removes every route: the table holds no channel open any more.
    pub fn clear(&self) {
        self.map.store(Arc::new(BTreeMap::new()));
        self.changed.notify_waiters();
    }

    /// Whether `name` leads to a channel (ready or being rebuilt).
    pub fn knows(&self, name: &str) -> bool {
        self.map.load().contains_key(name)
    }

    /// The channel `name` leads to if it is ready now.
    pub fn sender_now(&self, name: &str) -> Option<ChannelSender> {
        match self.map.load().get(name) {
            Some(Route::Ready(tx)) => Some(tx.clone()),
            _ => None,
        }
    }

    /// The channel `name` leads to, waiting while it is rebuilt; `None` if
    /// no channel has that name.
    pub async fn sender(&self, name: &str) -> Option<ChannelSender> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.map.load().get(name) {
                None => return None,
                Some(Route::Ready(tx)) => return Some(tx.clone()),
                Some(Route::Pending) => {}
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::memory::{self, Capacity};

    #[tokio::test]
    async fn a_pending_route_waits_for_its_channel() {
        let table = Arc::new(RouteTable::default());
        assert!(table.sender("lake").await.is_none());
        table.set("lake", Route::Pending);
        assert!(table.knows("lake"));
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.sender("lake").await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while pending");
        let (tx, _rx) = memory::channel(Capacity {
            events: 10,
            bytes: 1000,
        });
        table.set("lake", Route::Ready(tx));
        assert!(waiter.await.unwrap());
        table.remove("lake");
        assert!(!table.knows("lake") && table.sender("lake").await.is_none());
    }
}
