//! Resource limits of a plugin instance: a linear-memory cap and counts of
//! wasm objects enforced by a wasmtime `ResourceLimiter` ([`StoreCaps`]),
//! and a time budget per batch enforced by epoch interruption (a ticker
//! thread advances the engine's epoch every [`EPOCH_TICK`]; a call that runs
//! past its deadline traps).

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Core wasm instances a plugin's store may create (a component is several:
/// the Python and JavaScript ones are the largest first-party components,
/// with tens). wasmtime's own default is 10 000.
pub const MAX_INSTANCES: usize = 100;
/// Linear memories a store may create (multi-memory is on; components use
/// one or two). wasmtime's default is 10 000.
pub const MAX_MEMORIES: usize = 8;
/// Tables a store may create. wasmtime's default is 10 000.
pub const MAX_TABLES: usize = 100;
/// Table elements of all a store's tables together; each costs the host a
/// pointer, so this is 8 MiB. Unbounded in wasmtime: `table.grow` could ask
/// the host for ~32 GiB.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// How often the engine's epoch advances; the granularity of time budgets.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of output a call may always return, whatever its input: the
/// output bound is `output_ratio` × (input bytes + this).
pub const OUTPUT_FLOOR_BYTES: usize = 1 << 20;
/// Longest route name or dead-letter reason (a label) a plugin may return.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Labels a call may return beyond one per input event.
pub const EXTRA_LABELS: usize = 64;
/// Longest `plugin-error` message kept (the rest is cut and said so).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// Limits applied to one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of linear memory (all memories together).
    pub memory_bytes: usize,
    /// Longest one batch call may run.
    pub time_budget: Duration,
    /// A call's output (replacement events and labels) may hold at most
    /// this many times its input's bytes, plus [`OUTPUT_FLOOR_BYTES`]; and
    /// at most this many replacement events per input event, plus 64.
    pub output_ratio: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            time_budget: Duration::from_secs(2),
            output_ratio: 4,
        }
    }
}

impl Limits {
    /// The budget in epoch ticks (at least one, rounded up).
    pub(crate) fn budget_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.time_budget.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// Most bytes a call on `input_bytes` may return.
    pub fn output_bytes(&self, input_bytes: usize) -> usize {
        (self.output_ratio as usize).saturating_mul(input_bytes.saturating_add(OUTPUT_FLOOR_BYTES))
    }

    /// Most replacement events a call on `events` may return.
    pub fn output_events(&self, events: usize) -> usize {
        (self.output_ratio as usize)
            .saturating_mul(events)
            .saturating_add(64)
    }
}

/// The `ResourceLimiter` of a plugin's store: `memory_bytes` over all its
/// linear memories together (wasmtime's `StoreLimits` applies a size to
/// each memory separately, so a plugin with two memories had twice its
/// limit), [`MAX_TABLE_ELEMENTS`] over all its tables, and at most
/// [`MAX_INSTANCES`], [`MAX_MEMORIES`] and [`MAX_TABLES`]. A growth past a
/// limit traps, so the batch fails with a message naming the limit.
#[derive(Debug)]
pub struct StoreCaps {
    memory: Pool,
    tables: Pool,
}

/// One quantity shared by several memories (bytes) or tables (elements).
#[derive(Debug)]
struct Pool {
    /// What is limited (`memory`), and in what (`bytes in all its memories`).
    what: &'static str,
    unit: &'static str,
    limit: usize,
    used: usize,
    /// The last growth granted, undone if wasmtime then fails it.
    last_growth: usize,
}

impl Pool {
    fn new(what: &'static str, unit: &'static str, limit: usize) -> Self {
        Self {
            what,
            unit,
            limit,
            used: 0,
            last_growth: 0,
        }
    }

    /// Grants one memory or table going from `current` to `desired`, if
    /// the pool allows it; past the pool's limit, a trap.
    fn grow(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        if total > self.limit {
            wasmtime::bail!(
                "{} limit of {} reached: the plugin asked for {total} {}",
                self.what,
                self.limit,
                self.unit
            );
        }
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.used = total;
        self.last_growth = growth;
        Ok(true)
    }

    /// Gives back the last growth, which wasmtime failed after it was granted.
    fn undo(&mut self) {
        self.used -= std::mem::take(&mut self.last_growth);
    }
}

impl StoreCaps {
    /// Caps for a store with `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory: Pool::new("memory", "bytes in all its memories", limits.memory_bytes),
            tables: Pool::new("table", "elements in all its tables", MAX_TABLE_ELEMENTS),
        }
    }

    /// Bytes of linear memory the store holds, all memories together.
    pub fn memory_used(&self) -> usize {
        self.memory.used
    }
}

impl ResourceLimiter for StoreCaps {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory.grow(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.undo();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.tables.grow(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.tables.undo();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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
            ..Limits::default()
        };
        assert_eq!(l(0).budget_ticks(), 1);
        assert_eq!(l(10).budget_ticks(), 1);
        assert_eq!(l(11).budget_ticks(), 2);
        assert_eq!(l(2000).budget_ticks(), 200);
    }

    #[test]
    fn memory_is_capped_over_all_memories_together() {
        let mut caps = StoreCaps::new(&Limits {
            memory_bytes: 10 << 20,
            ..Limits::default()
        });
        // Two memories of 4 MiB each fit; growing either past 10 MiB in all
        // traps, though each alone would be under the limit.
        assert!(caps.memory_growing(0, 4 << 20, None).unwrap());
        assert!(caps.memory_growing(0, 4 << 20, None).unwrap());
        assert_eq!(caps.memory_used(), 8 << 20);
        let err = caps.memory_growing(4 << 20, 7 << 20, None).unwrap_err();
        assert!(err.to_string().contains("memory limit"), "{err}");
        // A growth wasmtime fails after it was granted is given back.
        assert!(caps.memory_growing(4 << 20, 6 << 20, None).unwrap());
        caps.memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .unwrap();
        assert_eq!(caps.memory_used(), 8 << 20);
        // Past a memory's own maximum: refused, not counted.
        assert!(
            !caps
                .memory_growing(4 << 20, 5 << 20, Some(4 << 20))
                .unwrap()
        );
        assert_eq!(caps.memory_used(), 8 << 20);
    }

    /// Instantiates the core module `wat` in a store with 64 MiB caps.
    fn instantiate(wat: &str) -> wasmtime::Result<()> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat)?;
        let mut store = wasmtime::Store::new(
            &engine,
            StoreCaps::new(&Limits {
                memory_bytes: 64 << 20,
                ..Limits::default()
            }),
        );
        store.limiter(|caps| caps);
        wasmtime::Instance::new(&mut store, &module, &[]).map(drop)
    }

    #[test]
    fn a_second_memory_counts_against_the_same_limit() {
        // 40 MiB each (640 pages): one fits in 64 MiB, two do not.
        instantiate("(module (memory 640))").unwrap();
        let err = instantiate("(module (memory 640) (memory 640))").unwrap_err();
        assert!(format!("{err:#}").contains("memory limit"), "{err:#}");
        // Growing the second memory at run time traps the same way.
        let err = instantiate(
            "(module (memory 640) (memory $b 1)
               (func $grow (drop (memory.grow $b (i32.const 639))))
               (start $grow))",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("memory limit"), "{err:#}");
    }

    #[test]
    fn table_grow_to_the_maximum_traps() {
        let err = instantiate(
            "(module (table $t 1 funcref)
               (func $grow (drop (table.grow $t (ref.null func) (i32.const -2))))
               (start $grow))",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("table limit"), "{err:#}");
    }

    #[test]
    fn memories_and_tables_are_counted() {
        let memories: String = (0..=MAX_MEMORIES).map(|_| "(memory 0)").collect();
        assert!(instantiate(&format!("(module {memories})")).is_err());
        let tables: String = (0..=MAX_TABLES).map(|_| "(table 0 funcref)").collect();
        assert!(instantiate(&format!("(module {tables})")).is_err());
        let fits: String = (0..MAX_MEMORIES).map(|_| "(memory 0)").collect();
        instantiate(&format!("(module {fits})")).unwrap();
    }

    #[test]
    fn table_elements_are_capped_over_all_tables() {
        let mut caps = StoreCaps::new(&Limits::default());
        assert!(caps.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(caps.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(caps.table_growing(10, 11, None).is_err());
        // What `table.grow` to the maximum of a table would ask for.
        let mut fresh = StoreCaps::new(&Limits::default());
        assert!(fresh.table_growing(0, u32::MAX as usize, None).is_err());
    }
}
