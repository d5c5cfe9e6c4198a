//! `[sink_groups.<name>]`: several sinks draining one channel together,
//! like Flume's sink processors.
//!
//! ```toml
//! [sink_groups.lake]
//! sinks = ["primary", "standby"]   # each drains the same channel
//! processor = "failover"           # or "load_balance"
//! priorities = { primary = 10, standby = 5 }
//! max_backoff = "30s"
//! ```
//!
//! - `failover`: every batch goes to the available sink of highest
//!   priority (default: the order of `sinks`, first highest). A sink is
//!   unavailable while it reports itself failing (retrying its store) or
//!   after it failed a batch, for a backoff that doubles from 1 s up to
//!   `max_backoff`; the batch goes to the next sink. When the higher sink
//!   recovers, batches go back to it.
//! - `load_balance`: batches go to the available sinks in turn
//!   (`selector = "round_robin"`, default) or at random (`"random"`);
//!   with `backoff = true` (default) a sink that failed a batch is left
//!   out for its backoff, otherwise only while it reports failing.
//!
//! A batch a sink fails is given to another; its source's acknowledgement
//! waits until one delivered it, so nothing is lost (a batch may be
//! written twice if a sink failed it after writing part of it:
//! at-least-once, as in Flume). A member sink that stops with an error
//! (one that cannot open its store, say) does not stop the agent: it is
//! started again after a penalty that doubles from 1 s up to
//! `max_backoff`, as Flume's processors try a failed sink again, and is
//! counted in `sluice_sink_group_member_restarts_total`. The group stops
//! the agent only when every member is down at once. Exactly-once sinks
//! cannot be members (their committed positions are their own).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::units::HumanDuration;

/// How a group picks the sink of each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processor {
    /// The available sink of highest priority.
    Failover,
    /// The available sinks in turn, or at random.
    LoadBalance,
}

/// How `load_balance` picks among available sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// Any, at random.
    Random,
}

/// `[sink_groups.<name>]`; see the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkGroupDef {
    /// The member sinks (at least two), all draining the same channel.
    pub sinks: Vec<String>,
    /// `"failover"` or `"load_balance"`. Required.
    pub processor: Processor,
    /// `failover`: sink → priority, higher first. Default: the order of `sinks`.
    #[serde(default)]
    pub priorities: BTreeMap<String, i32>,
    /// `load_balance`: `"round_robin"` (default) or `"random"`.
    #[serde(default)]
    pub selector: Selector,
    /// `load_balance`: leave a sink that failed a batch out for a backoff.
    /// Default `true` (`failover` always does).
    #[serde(default = "default_true")]
    pub backoff: bool,
    /// Longest backoff of a sink that failed a batch, and longest penalty
    /// before a member that stopped starts again (both double from 1 s).
    /// Default `"30s"`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
}

fn default_true() -> bool {
    true
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl SinkGroupDef {
    /// Checks the keys on their own; on error, the key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.sinks.len() < 2 {
            return Err(("sinks", "a group needs at least two sinks".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = self.sinks.iter().find(|s| !seen.insert(*s)) {
            return Err(("sinks", format!("`{twice}` is listed twice")));
        }
        if let Some(stray) = self.priorities.keys().find(|k| !self.sinks.contains(k)) {
            return Err(("priorities", format!("`{stray}` is not in `sinks`")));
        }
        if self.processor == Processor::LoadBalance && !self.priorities.is_empty() {
            return Err(("priorities", "priorities are for `failover`".into()));
        }
        if self.max_backoff.get() < Duration::from_secs(1) {
            return Err(("max_backoff", "must be at least 1s".into()));
        }
        Ok(())
    }

    /// The members, highest priority first (failover order).
    pub fn by_priority(&self) -> Vec<String> {
        let mut members: Vec<(i64, usize, &String)> = self
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = self.priorities.get(s).map_or(-(i as i64), |p| *p as i64);
                (p, i, s)
            })
            .collect();
        members.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        members.into_iter().map(|(_, _, s)| s.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(text: &str) -> SinkGroupDef {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn priorities_order_the_members() {
        let g = group("sinks = [\"a\", \"b\", \"c\"]\nprocessor = \"failover\"");
        assert_eq!(g.by_priority(), ["a", "b", "c"]);
        let g = group(
            "sinks = [\"a\", \"b\"]\nprocessor = \"failover\"\npriorities = { a = 1, b = 5 }",
        );
        assert_eq!(g.by_priority(), ["b", "a"]);
        g.validate().unwrap();
    }

    #[test]
    fn keys_are_checked() {
        let bad = |t: &str| group(t).validate().unwrap_err().0;
        assert_eq!(bad("sinks = [\"a\"]\nprocessor = \"failover\""), "sinks");
        assert_eq!(
            bad("sinks = [\"a\", \"a\"]\nprocessor = \"failover\""),
            "sinks"
        );
        assert_eq!(
            bad("sinks = [\"a\", \"b\"]\nprocessor = \"failover\"\npriorities = { c = 1 }"),
            "priorities"
        );
        assert_eq!(
            bad("sinks = [\"a\", \"b\"]\nprocessor = \"load_balance\"\nmax_backoff = \"10ms\""),
            "max_backoff"
        );
        assert!(
            toml::from_str::<SinkGroupDef>("sinks = [\"a\", \"b\"]\nprocessor = \"round_robin\"")
                .is_err()
        );
    }
}
