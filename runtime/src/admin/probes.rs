//! `/health` and `/ready`: what an orchestrator asks before it restarts an
//! agent or counts it in.
//!
//! `/health` answers 200 while the process serves requests at all (the
//! admin task runs on the same runtime as the pipelines). `/ready` answers
//! 200 only while the pipelines run (not while plugins compile at startup,
//! nor once shutdown began), every Kafka source has joined its consumer
//! group, no source is paused by a plugin, and no sink's last write failed;
//! otherwise 503. Both give their reasons as JSON. The checks read the
//! metrics registry, so they cost nothing on the pipelines' path.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::metrics::Metrics;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Loading plugins and opening channels.
    Starting = 0,
    /// Every pipeline runs.
    Running = 1,
    /// Draining: sources stopped reading.
    Stopping = 2,
}

/// The run's phase, shared by the topology (which sets it) and the probes.
#[derive(Debug, Default)]
pub struct PhaseCell(AtomicU8);

impl PhaseCell {
    /// Sets the phase.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }

    /// The phase now.
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Stopping,
        }
    }
}

/// What must hold for the agent to be ready.
#[derive(Debug, Clone)]
enum Check {
    /// A Kafka source has joined its group.
    Joined(String),
    /// A source is not paused.
    NotPaused(String),
    /// A sink's last write did not fail.
    Writing(String),
}

/// The readiness checks of one configuration.
#[derive(Debug, Clone)]
pub struct Probes {
    checks: Vec<Check>,
    born: Instant,
}

/// One failed check, as `/ready` reports it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NotReady {
    /// `source.<name>`, `sink.<name>` or `sluice`.
    pub component: String,
    /// Why.
    pub reason: String,
}

/// `/ready`'s answer.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Whether every check holds.
    pub ready: bool,
    /// The checks that do not.
    pub failing: Vec<NotReady>,
}

impl Probes {
    /// The checks `config` implies. (A Kafka source's
    /// `assigned_partitions` is -1 from before it starts until its first
    /// assignment: the topology sets it so.)
    pub fn new(config: &Config) -> Self {
        let mut checks = Vec::new();
        for (name, def) in &config.sources {
            if def.type_name == "kafka" {
                checks.push(Check::Joined(name.clone()));
            }
            checks.push(Check::NotPaused(name.clone()));
        }
        for name in config.sinks.keys() {
            checks.push(Check::Writing(name.clone()));
        }
        static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        Self {
            checks,
            born: *STARTED.get_or_init(Instant::now),
        }
    }

    /// `/health`'s answer.
    pub fn health(&self, phase: Phase) -> serde_json::Value {
        serde_json::json!({
            "status": "ok",
            "phase": match phase {
                Phase::Starting => "starting",
                Phase::Running => "running",
                Phase::Stopping => "stopping",
            },
            "uptime_seconds": self.born.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// `/ready`'s answer.
    pub fn readiness(&self, phase: Phase, metrics: &Metrics) -> Readiness {
        let mut failing = Vec::new();
        match phase {
            Phase::Running => {}
            Phase::Starting => failing.push(NotReady {
                component: "sluice".into(),
                reason: "starting: loading plugins and opening channels".into(),
            }),
            Phase::Stopping => failing.push(NotReady {
                component: "sluice".into(),
                reason: "shutting down: draining and committing".into(),
            }),
        }
        for check in &self.checks {
            let (component, reason) = match check {
                Check::Joined(s)
                    if metrics.gauge_value(&format!("source.{s}.assigned_partitions")) < 0 =>
                {
                    (
                        format!("source.{s}"),
                        "has not joined its consumer group yet",
                    )
                }
                Check::NotPaused(s) if metrics.gauge_value(&format!("source.{s}.paused")) > 0 => (
                    format!("source.{s}"),
                    "paused by a plugin with on_failure = \"pause\" (see `sluice resume`)",
                ),
                Check::Writing(s) if metrics.gauge_value(&format!("sink.{s}.failing")) > 0 => {
                    (format!("sink.{s}"), "its last write failed; retrying")
                }
                _ => continue,
            };
            failing.push(NotReady {
                component,
                reason: reason.into(),
            });
        }
        Readiness {
            ready: failing.is_empty(),
            failing,
        }
    }
}
