//! Sluice's vocabulary, shared by every other crate of the runtime and
//! depending on none of them: what flows ([`event`]: batches and their
//! acknowledgements), how components are configured ([`keys`]: a component's
//! keys and its errors; [`units`]: sizes and durations), what is counted
//! ([`metrics`]; and the ranges bounded sources read, [`ranges`]), what can be watched live ([`tap`]) and what kind an error is ([`error`]: transient, permanent,
//! a full disk).

pub mod durable;
pub mod error;
pub mod event;
pub mod keys;
pub mod metrics;
pub mod ranges;
pub mod tap;
pub mod units;
