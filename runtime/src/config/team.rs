//! `[teams.<name>]`: who owns which plugins, with which limits, capabilities
//! and failure policy.
//!
//! ```toml
//! [teams.payments]
//! plugin_dir = "plugins/payments"   # watched; plugin paths of the team are relative to it
//! memory_limit = "64MiB"            # linear memory per plugin instance
//! time_budget = "500ms"             # per batch, enforced by epoch interruption
//! output_ratio = 4                  # a call's output: at most 4 × (its input + 1 MiB)
//! max_instances = 8                 # live plugin instances of the team, all pipelines together
//! lookups = ["customers"]           # lookup tables its plugins may read
//! env = []                          # host environment variables its plugins may read
//! clock = false                     # real wall clock (otherwise it reads 1970-01-01)
//! on_failure = "dead-letter"        # or "pass-through", "pause"
//! circuit_breaker = { failures = 5, cool_down = "30s" }
//! ```
//!
//! Nothing is granted by default. Plugins and sources without a `team` belong
//! to the implicit team [`DEFAULT_TEAM`], which has the defaults above and no
//! grants; its plugin paths are relative to the configuration file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::plugin::{BreakerConfig, FailurePolicy};

use crate::units::{ByteSize, HumanDuration};

/// The team of plugins and sources that name none.
pub const DEFAULT_TEAM: &str = "default";

/// `[teams.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamDef {
    /// Directory holding the team's plugin files, relative to the
    /// configuration file. Watched: a changed file is swapped in live.
    pub plugin_dir: PathBuf,
    /// Cap on each plugin instance's linear memory. Default `"64MiB"`.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Longest one plugin call may take on one batch. Default `"2s"`.
    #[serde(default = "default_time_budget")]
    pub time_budget: HumanDuration,
    /// A plugin call's output (replacement events, route names, dead-letter
    /// reasons) may hold at most this many times its input's bytes plus
    /// 1 MiB, and this many replacement events per input event plus 64; a
    /// call over it fails its batch (the failure policy applies), before the
    /// host copies any of it. 1 to 1000; default 4.
    #[serde(default = "default_output_ratio")]
    pub output_ratio: u32,
    /// Most live plugin instances of this team (one per plugin per source
    /// using it). Default 16.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
    /// Names of `[lookups.<name>]` tables the team's plugins may read.
    #[serde(default)]
    pub lookups: Vec<String>,
    /// Host environment variables passed to the team's plugins (by name;
    /// absent ones are skipped). Default none.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether the team's plugins see the real wall clock (see
    /// [`Capabilities::clock`]). Default `false`.
    #[serde(default)]
    pub clock: bool,
    /// What happens to a batch when a plugin of this team fails it.
    /// Default `"dead-letter"`.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// When to stop calling a failing plugin.
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
}

impl TeamDef {
    /// The implicit team of components that name none.
    pub(crate) fn default_team(base: PathBuf) -> Self {
        Self {
            plugin_dir: base,
            memory_limit: default_memory_limit(),
            time_budget: default_time_budget(),
            output_ratio: default_output_ratio(),
            max_instances: usize::MAX,
            lookups: Vec::new(),
            env: Vec::new(),
            clock: false,
            on_failure: FailurePolicy::default(),
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl TeamDef {
    /// What the team's plugins are granted.
    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            lookups: self.lookups.clone(),
            env: self.env.clone(),
            clock: self.clock,
        }
    }
}

/// What a team's plugins may reach beyond their batch and `host.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Names of lookup tables the plugins may read.
    pub lookups: Vec<String>,
    /// Host environment variables passed to the plugins.
    pub env: Vec<String>,
    /// Whether the plugins see the real wall clock. Without it the WASI wall
    /// clock reads the Unix epoch, so output cannot depend on when it ran;
    /// the monotonic clock always runs (language runtimes need it, and it
    /// tells nothing about the date).
    pub clock: bool,
}

pub(super) fn default_memory_limit() -> ByteSize {
    ByteSize(64 << 20)
}

pub(super) fn default_time_budget() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

fn default_output_ratio() -> u32 {
    4
}

fn default_max_instances() -> usize {
    16
}
