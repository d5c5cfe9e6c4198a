//! What a plugin is (its kind) and what the host does when it fails (failure
//! policy, circuit breaker): the plugin host's own vocabulary, read from the
//! configuration by `config` but owned here, so the host depends on nothing
//! of the configuration loader.

use serde::Deserialize;

use sluice_core::units::HumanDuration;

/// What a plugin is for; the component must export the matching interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports `sluice:plugin/decoder`.
    Decoder,
    /// Exports `sluice:plugin/interceptor`.
    Interceptor,
    /// Exports `sluice:plugin/router`.
    Router,
}

impl PluginKind {
    /// The key value (`decoder`, `interceptor`, `router`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decoder => "decoder",
            Self::Interceptor => "interceptor",
            Self::Router => "router",
        }
    }
}

/// What the host does with a batch a plugin failed (trap, timeout, memory
/// cap, plugin error, malformed output), or with every batch while the
/// plugin's circuit breaker is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Isolate the events that make the plugin fail by calling it on halves
    /// of the batch, pass the good ones on, and dead-letter the bad ones with
    /// headers naming plugin, version, error and origin.
    #[default]
    DeadLetter,
    /// Forward the batch unchanged, as if the plugin had kept every event.
    PassThrough,
    /// Stop consuming the source, holding the batch, until a new version of
    /// the plugin arrives or an operator runs `sluice resume`.
    Pause,
}

impl FailurePolicy {
    /// The key value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadLetter => "dead-letter",
            Self::PassThrough => "pass-through",
            Self::Pause => "pause",
        }
    }
}

/// `circuit_breaker = { failures = 5, cool_down = "30s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed batches that open the breaker; 0 never opens it.
    /// Default 5.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the breaker stays open before one batch is tried again (a new
    /// version of the plugin closes it at once). Default `"30s"`.
    #[serde(default = "default_cool_down")]
    pub cool_down: HumanDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            cool_down: default_cool_down(),
        }
    }
}

fn default_failures() -> u32 {
    5
}

fn default_cool_down() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
