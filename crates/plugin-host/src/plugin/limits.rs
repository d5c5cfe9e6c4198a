//! Resource limits of a plugin instance: a linear-memory cap enforced by a
//! wasmtime `ResourceLimiter`, and a time budget per batch enforced by epoch
//! interruption (a ticker thread advances the engine's epoch every
//! [`EPOCH_TICK`]; a call that runs past its deadline traps).

use std::time::Duration;

/// How often the engine's epoch advances; the granularity of time budgets.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of linear memory (all memories together).
    pub memory_bytes: usize,
    /// Longest one batch call may run.
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            time_budget: Duration::from_secs(2),
        }
    }
}

impl Limits {
    /// The budget in epoch ticks (at least one, rounded up).
    pub(crate) fn budget_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.time_budget.as_nanos().div_ceil(tick) as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_rounds_up_to_whole_ticks() {
        let l = |ms| Limits {
            memory_bytes: 0,
            time_budget: Duration::from_millis(ms),
        };
        assert_eq!(l(0).budget_ticks(), 1);
        assert_eq!(l(10).budget_ticks(), 1);
        assert_eq!(l(11).budget_ticks(), 2);
        assert_eq!(l(2000).budget_ticks(), 200);
    }
}
