//! Renders the metrics registry in Prometheus' text exposition format
//! (version 0.0.4).
//!
//! A registry name `<kind>.<component>.<what>` becomes the family
//! `sluice_<kind>_<what>` (counters get `_total`) with the label
//! `component="<component>"`, plus `type` (the component's type) and, for
//! sources and plugins, `team`. A source's per-partition lag
//! (`source.<n>.lag.<topic>.<partition>`) becomes
//! `sluice_source_partition_lag_messages{topic,partition}`. Every family
//! Sluice registers is listed in [`FAMILIES`] with its help text; the
//! operations guide documents the same list (a test holds them together).
//! Process metrics (`process_*`, Prometheus' standard names) come from
//! `/proc` and `sluice_build_info` names the version.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metrics::{Metrics, Sample};

/// What a family is, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Every metric family Sluice exports: name, type, help. Process metrics
/// are listed too.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "sluice_build_info",
        Kind::Gauge,
        "Always 1; the `version` label is the running Sluice.",
    ),
    (
        "sluice_up",
        Kind::Gauge,
        "1 while every pipeline runs, 0 while starting or shutting down.",
    ),
    (
        "sluice_config_reloads_total",
        Kind::Counter,
        "Configuration reloads applied.",
    ),
    (
        "sluice_config_reloads_rejected_total",
        Kind::Counter,
        "Configuration reloads refused (invalid, or changing what needs a restart); the running configuration went on.",
    ),
    (
        "sluice_config_reload_seconds",
        Kind::Histogram,
        "Time to apply a reloaded configuration, from reading the file to the last component started.",
    ),
    // sources
    (
        "sluice_source_events_total",
        Kind::Counter,
        "Events read by a source.",
    ),
    (
        "sluice_source_starts_total",
        Kind::Counter,
        "Times a source started: 1, plus one per live reload that rebuilt it.",
    ),
    (
        "sluice_source_bytes_total",
        Kind::Counter,
        "Payload bytes (key and body) read by a source.",
    ),
    (
        "sluice_source_batches_total",
        Kind::Counter,
        "Batches a source handed to its processing stage.",
    ),
    (
        "sluice_source_commits_total",
        Kind::Counter,
        "Offset commits a Kafka source sent.",
    ),
    (
        "sluice_source_errors_total",
        Kind::Counter,
        "Client errors of a source (each is retried unless it stops the source).",
    ),
    (
        "sluice_source_undelivered_batches_total",
        Kind::Counter,
        "Batches that some sink could not make durable: their offsets are not committed and they are read again.",
    ),
    (
        "sluice_source_rejected_total",
        Kind::Counter,
        "Records a source sent to the dead-letter channel itself (e.g. over the size limit).",
    ),
    (
        "sluice_source_host_headers_dropped_total",
        Kind::Counter,
        "Record headers named like the host's (`sluice.*`) dropped on read.",
    ),
    (
        "sluice_source_lines_split_total",
        Kind::Counter,
        "Lines of a line-reading source (exec, stdin, spooldir) cut because they exceeded the line limit.",
    ),
    (
        "sluice_source_files_completed_total",
        Kind::Counter,
        "Files a spooldir source ingested and renamed or deleted.",
    ),
    (
        "sluice_source_file_errors_total",
        Kind::Counter,
        "Files a spooldir source could not read or complete (left in place until a restart).",
    ),
    (
        "sluice_source_rotations_total",
        Kind::Counter,
        "Rotations a taildir source followed (a renamed file read to its end and closed, or a truncation).",
    ),
    (
        "sluice_source_truncations_total",
        Kind::Counter,
        "Files a taildir source saw shrink (copy-truncate rotation) and read again from their start.",
    ),
    (
        "sluice_source_files_tracked",
        Kind::Gauge,
        "Files a taildir source follows now.",
    ),
    (
        "sluice_source_rereads_total",
        Kind::Counter,
        "Times a file source read its files again from the acknowledged positions (a batch not delivered, or a sink's request).",
    ),
    (
        "sluice_source_requests_total",
        Kind::Counter,
        "Requests an http source received.",
    ),
    (
        "sluice_source_requests_rejected_total",
        Kind::Counter,
        "Requests an http source answered with a 4xx (bad body, too large, no token, wrong path or method).",
    ),
    (
        "sluice_source_requests_throttled_total",
        Kind::Counter,
        "Requests an http source answered 503 because the pipeline had no room.",
    ),
    (
        "sluice_source_messages_total",
        Kind::Counter,
        "Messages a syslog source received, parsed or not (UDP datagrams the kernel dropped are not seen).",
    ),
    (
        "sluice_source_messages_invalid_total",
        Kind::Counter,
        "Messages a syslog source could not parse (kept raw with `syslog.invalid`, or dropped with `keep_unparsed = false`).",
    ),
    (
        "sluice_source_messages_truncated_total",
        Kind::Counter,
        "Messages a syslog source cut to `max_message_bytes`.",
    ),
    (
        "sluice_source_connections_total",
        Kind::Counter,
        "TCP connections a syslog source accepted and served.",
    ),
    (
        "sluice_source_connections_refused_total",
        Kind::Counter,
        "TCP connections a syslog source closed at once because `max_connections` were open.",
    ),
    (
        "sluice_source_restarts_total",
        Kind::Counter,
        "Restarts of an exec source's command.",
    ),
    (
        "sluice_source_dropped_by_plugins_total",
        Kind::Counter,
        "Events a source's plugins dropped.",
    ),
    (
        "sluice_source_dead_lettered_total",
        Kind::Counter,
        "Events of a source sent to its dead-letter channel by plugins or the router.",
    ),
    (
        "sluice_source_dead_letters_withheld_total",
        Kind::Counter,
        "Dead letters whose body and key were withheld because redacting them failed.",
    ),
    (
        "sluice_source_pauses_total",
        Kind::Counter,
        "Times a plugin with `on_failure = \"pause\"` paused a source.",
    ),
    (
        "sluice_source_paused",
        Kind::Gauge,
        "1 while a plugin holds the source paused (see `sluice resume`).",
    ),
    (
        "sluice_source_lag_messages",
        Kind::Gauge,
        "Consumer lag of a Kafka source over its assigned partitions, in records.",
    ),
    (
        "sluice_source_partition_lag_messages",
        Kind::Gauge,
        "Consumer lag of one assigned partition, in records.",
    ),
    (
        "sluice_source_assigned_partitions",
        Kind::Gauge,
        "Partitions assigned to a Kafka source now; -1 before it first joined its group.",
    ),
    (
        "sluice_source_bounded_partitions_left",
        Kind::Gauge,
        "Partitions of a bounded Kafka source assigned and not yet at their end; 0 once the run's range is read.",
    ),
    (
        "sluice_source_last_commit_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last offset commit the broker confirmed (0: none yet).",
    ),
    (
        "sluice_source_delivery_seconds",
        Kind::Histogram,
        "Time from a batch's first record read to every sink holding the batch durably (end-to-end latency).",
    ),
    // plugins
    (
        "sluice_plugin_batches_total",
        Kind::Counter,
        "Batches a plugin processed.",
    ),
    (
        "sluice_plugin_events_total",
        Kind::Counter,
        "Events a plugin processed.",
    ),
    (
        "sluice_plugin_dropped_total",
        Kind::Counter,
        "Events a plugin dropped.",
    ),
    (
        "sluice_plugin_dead_lettered_total",
        Kind::Counter,
        "Events a plugin dead-lettered.",
    ),
    (
        "sluice_plugin_failures_total",
        Kind::Counter,
        "Failed plugin calls (trap, timeout, out of memory, output over its bound, error returned).",
    ),
    (
        "sluice_plugin_passed_through_total",
        Kind::Counter,
        "Events passed on unprocessed because the plugin failed and its policy is `pass_through`.",
    ),
    (
        "sluice_plugin_breaker_opened_total",
        Kind::Counter,
        "Times a plugin's circuit breaker opened.",
    ),
    (
        "sluice_plugin_swaps_total",
        Kind::Counter,
        "Times a pipeline switched to a new version of a plugin.",
    ),
    (
        "sluice_plugin_forged_headers_total",
        Kind::Counter,
        "Host headers (`sluice.*`) a plugin set and the host discarded.",
    ),
    (
        "sluice_plugin_reloads_total",
        Kind::Counter,
        "New versions of a plugin file loaded.",
    ),
    (
        "sluice_plugin_reloads_rejected_total",
        Kind::Counter,
        "New versions of a plugin file refused (did not compile, instantiate or match its pin); the old one runs on.",
    ),
    (
        "sluice_plugin_file_missing_total",
        Kind::Counter,
        "Times a plugin file was found missing on reload.",
    ),
    (
        "sluice_plugin_log_suppressed_total",
        Kind::Counter,
        "Plugin log lines dropped by the team's log rate limit.",
    ),
    (
        "sluice_plugin_batch_seconds",
        Kind::Histogram,
        "Wall-clock time of one plugin call on one batch.",
    ),
    // channels
    (
        "sluice_channel_events_in_total",
        Kind::Counter,
        "Events written into a durable channel.",
    ),
    (
        "sluice_channel_starts_total",
        Kind::Counter,
        "Times a channel opened: 1, plus one per live reload that rebuilt it.",
    ),
    (
        "sluice_channel_events_out_total",
        Kind::Counter,
        "Events a durable channel handed to its sink.",
    ),
    (
        "sluice_channel_fsyncs_total",
        Kind::Counter,
        "fsyncs of a file channel's log.",
    ),
    (
        "sluice_channel_corrupt_records_total",
        Kind::Counter,
        "Corrupt records a file channel skipped on replay (counted, kept aside).",
    ),
    (
        "sluice_channel_corrupt_bytes_total",
        Kind::Counter,
        "Bytes of corrupt records a file channel skipped on replay.",
    ),
    (
        "sluice_channel_replayed_events_total",
        Kind::Counter,
        "Events a file channel replayed after a restart.",
    ),
    (
        "sluice_channel_disk_full_total",
        Kind::Counter,
        "Writes a file channel retried because its disk was full.",
    ),
    (
        "sluice_channel_write_errors_total",
        Kind::Counter,
        "Failed writes of a channel (retried).",
    ),
    (
        "sluice_channel_read_errors_total",
        Kind::Counter,
        "Failed reads of a channel (retried).",
    ),
    (
        "sluice_channel_undelivered_batches_total",
        Kind::Counter,
        "Batches a channel could not keep; their source reads them again.",
    ),
    (
        "sluice_channel_duplicates_dropped_total",
        Kind::Counter,
        "Events of a file source read again after a restart that a file channel already held, and dropped.",
    ),
    (
        "sluice_sink_group_failovers_total",
        Kind::Counter,
        "Batches a member sink of a group failed and the group gave to another member.",
    ),
    (
        "sluice_sink_group_member_restarts_total",
        Kind::Counter,
        "Member sinks of a group started again after they stopped with an error.",
    ),
    (
        "sluice_channel_commits_total",
        Kind::Counter,
        "Offset commits of a kafka channel's consumer.",
    ),
    (
        "sluice_channel_errors_total",
        Kind::Counter,
        "Client errors of a kafka channel.",
    ),
    (
        "sluice_channel_bytes_on_disk",
        Kind::Gauge,
        "Bytes a file channel's log holds on disk.",
    ),
    (
        "sluice_channel_queued_events",
        Kind::Gauge,
        "Events a memory channel holds now.",
    ),
    (
        "sluice_channel_queued_bytes",
        Kind::Gauge,
        "Payload bytes a memory channel holds now.",
    ),
    (
        "sluice_channel_capacity_events",
        Kind::Gauge,
        "Most events a memory channel holds.",
    ),
    (
        "sluice_channel_capacity_bytes",
        Kind::Gauge,
        "Most payload bytes a memory channel holds.",
    ),
    // sinks
    (
        "sluice_sink_events_total",
        Kind::Counter,
        "Events a sink wrote.",
    ),
    (
        "sluice_sink_starts_total",
        Kind::Counter,
        "Times a sink started: 1, plus one per live reload that rebuilt it.",
    ),
    (
        "sluice_sink_bytes_total",
        Kind::Counter,
        "Bytes a sink wrote.",
    ),
    (
        "sluice_sink_files_written_total",
        Kind::Counter,
        "Files an object-store sink made visible.",
    ),
    (
        "sluice_sink_type_mismatches_total",
        Kind::Counter,
        "Table values that did not fit their column's type (written as null, or their event dead-lettered, by `on_type_mismatch`).",
    ),
    (
        "sluice_sink_success_markers_total",
        Kind::Counter,
        "`_SUCCESS` markers an object-store sink wrote into complete time partitions.",
    ),
    (
        "sluice_sink_commits_total",
        Kind::Counter,
        "Commit records an exactly-once object-store sink wrote.",
    ),
    (
        "sluice_sink_commit_conflicts_total",
        Kind::Counter,
        "Commits refused because another agent committed the range (a rebalance race; the other agent's output stands).",
    ),
    (
        "sluice_sink_retries_total",
        Kind::Counter,
        "Re-attempts of failed sink operations.",
    ),
    (
        "sluice_sink_write_errors_total",
        Kind::Counter,
        "Failed sink operations (each retried unless permanent).",
    ),
    (
        "sluice_sink_errors_total",
        Kind::Counter,
        "Errors of a Kafka sink's producer.",
    ),
    (
        "sluice_sink_disk_full_total",
        Kind::Counter,
        "Sink writes retried because the local disk was full.",
    ),
    (
        "sluice_sink_stale_events_total",
        Kind::Counter,
        "Events dropped by a sink because their partition was revoked (its new owner reads them again).",
    ),
    (
        "sluice_sink_skipped_committed_events_total",
        Kind::Counter,
        "Events an exactly-once sink skipped because it had committed them already.",
    ),
    (
        "sluice_sink_orphans_removed_total",
        Kind::Counter,
        "Uncommitted files of a crashed run an exactly-once sink removed.",
    ),
    (
        "sluice_sink_rolled_for_max_open_files_total",
        Kind::Counter,
        "Files completed early to stay within `max_open_files`.",
    ),
    (
        "sluice_sink_dead_lettered_total",
        Kind::Counter,
        "Events a sink sent to its dead-letter channel.",
    ),
    (
        "sluice_sink_transactions_committed_total",
        Kind::Counter,
        "Kafka transactions an exactly-once Kafka sink committed.",
    ),
    (
        "sluice_sink_transactions_aborted_total",
        Kind::Counter,
        "Kafka transactions an exactly-once Kafka sink aborted (their batches are read again).",
    ),
    (
        "sluice_sink_sibling_waits_total",
        Kind::Counter,
        "Times a transactional sink waited for other sinks of the same batches.",
    ),
    (
        "sluice_sink_open_files",
        Kind::Gauge,
        "Files an object-store sink holds open.",
    ),
    (
        "sluice_sink_failing",
        Kind::Gauge,
        "1 from a failed write until a write succeeds.",
    ),
    (
        "sluice_sink_last_commit_timestamp_seconds",
        Kind::Gauge,
        "Unix time a file of an object-store sink last became visible (0: none yet).",
    ),
    // lookups
    (
        "sluice_lookup_records_total",
        Kind::Counter,
        "Records a lookup table read from its topic.",
    ),
    (
        "sluice_lookup_refused_total",
        Kind::Counter,
        "Records a lookup table refused (over its size limits).",
    ),
    (
        "sluice_lookup_errors_total",
        Kind::Counter,
        "Client errors of a Kafka lookup table.",
    ),
    // the embedded demo broker
    (
        "sluice_embedded_feed_events_total",
        Kind::Counter,
        "Events the embedded demo feed produced.",
    ),
    (
        "sluice_embedded_feed_malformed_total",
        Kind::Counter,
        "Deliberately malformed events among them.",
    ),
    // the process
    (
        "process_cpu_seconds_total",
        Kind::Counter,
        "User and system CPU time of the process.",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory of the process.",
    ),
    (
        "process_open_fds",
        Kind::Gauge,
        "Open file descriptors of the process.",
    ),
    (
        "process_start_time_seconds",
        Kind::Gauge,
        "Unix time the process started.",
    ),
];

/// The kinds of component whose metrics carry a `component` label.
const COMPONENT_KINDS: &[&str] = &[
    "source",
    "sink",
    "channel",
    "plugin",
    "lookup",
    "sink_group",
];

/// What the renderer knows of each component: its type and team.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `(kind, name)` → the component's `type`.
    pub types: BTreeMap<(String, String), String>,
    /// `(kind, name)` → its team, for sources and plugins.
    pub teams: BTreeMap<(String, String), String>,
}

/// One series: its family, labels, and value.
struct Series {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

enum Value {
    Int(i128),
    Float(f64),
    Histogram {
        bounds: &'static [f64],
        cumulative: Vec<u64>,
        sum: f64,
    },
}

/// Renders every metric of `metrics`, plus the process's own.
pub fn render(metrics: &Metrics, catalog: &Catalog, up: bool) -> String {
    let mut families: BTreeMap<String, (Kind, Vec<Series>)> = BTreeMap::new();
    let mut add = |family: String, kind: Kind, series: Series| {
        families
            .entry(family)
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(series);
    };
    metrics.visit(|name, sample| {
        let (kind, value) = match sample {
            Sample::Counter(v) => (Kind::Counter, Value::Int(v as i128)),
            Sample::Gauge(v) => (Kind::Gauge, Value::Int(v as i128)),
            Sample::Histogram(h) => (
                Kind::Histogram,
                Value::Histogram {
                    bounds: h.bounds(),
                    cumulative: h.cumulative(),
                    sum: h.sum_seconds(),
                },
            ),
        };
        let (family, labels) = family_of(name, kind, catalog);
        add(family, kind, Series { labels, value });
    });
    let one = |labels| Series {
        labels,
        value: Value::Int(1),
    };
    add(
        "sluice_build_info".into(),
        Kind::Gauge,
        one(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
    );
    add(
        "sluice_up".into(),
        Kind::Gauge,
        Series {
            labels: Vec::new(),
            value: Value::Int(up as i128),
        },
    );
    for (family, kind, value) in process_metrics() {
        add(
            family.into(),
            kind,
            Series {
                labels: Vec::new(),
                value,
            },
        );
    }

    let mut out = String::with_capacity(16 << 10);
    for (family, (kind, series)) in &families {
        let help = FAMILIES
            .iter()
            .find(|(f, _, _)| f == family)
            .map_or("Sluice metric.", |(_, _, h)| h);
        let _ = writeln!(out, "# HELP {family} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {family} {}", kind.as_str());
        for s in series {
            match &s.value {
                Value::Int(v) => {
                    let _ = writeln!(out, "{family}{} {v}", labels(&s.labels, None));
                }
                Value::Float(v) => {
                    let _ = writeln!(out, "{family}{} {}", labels(&s.labels, None), float(*v));
                }
                Value::Histogram {
                    bounds,
                    cumulative,
                    sum,
                } => {
                    for (i, n) in cumulative.iter().enumerate() {
                        let le = bounds.get(i).map_or("+Inf".to_owned(), |b| float(*b));
                        let _ =
                            writeln!(out, "{family}_bucket{} {n}", labels(&s.labels, Some(&le)));
                    }
                    let count = cumulative.last().copied().unwrap_or(0);
                    let l = labels(&s.labels, None);
                    let _ = writeln!(out, "{family}_sum{l} {}", float(*sum));
                    let _ = writeln!(out, "{family}_count{l} {count}");
                }
            }
        }
    }
    out
}

/// The family and labels of registry name `name`.
fn family_of(name: &str, kind: Kind, catalog: &Catalog) -> (String, Vec<(&'static str, String)>) {
    let parts = name
        .split_once('.')
        .and_then(|(k, rest)| rest.split_once('.').map(|(c, what)| (k, c, what)))
        .filter(|(k, _, _)| COMPONENT_KINDS.contains(k));
    let Some((component_kind, component, what)) = parts else {
        return (
            format!("sluice_{}{}", sanitize(name), suffix(kind)),
            Vec::new(),
        );
    };
    let mut labels = vec![("component", component.to_owned())];
    let key = (component_kind.to_owned(), component.to_owned());
    if let Some(t) = catalog.types.get(&key) {
        labels.push(("type", t.clone()));
    }
    if let Some(t) = catalog.teams.get(&key) {
        labels.push(("team", t.clone()));
    }
    if component_kind == "source"
        && let Some(tp) = what.strip_prefix("lag.")
        && let Some((topic, partition)) = tp.rsplit_once('.')
    {
        labels.push(("topic", topic.to_owned()));
        labels.push(("partition", partition.to_owned()));
        return ("sluice_source_partition_lag_messages".into(), labels);
    }
    let what = match (component_kind, what) {
        ("source", "lag") => "lag_messages",
        (_, other) => other,
    };
    (
        format!("sluice_{component_kind}_{}{}", sanitize(what), suffix(kind)),
        labels,
    )
}

fn suffix(kind: Kind) -> &'static str {
    if kind == Kind::Counter { "_total" } else { "" }
}

/// `name` with every character Prometheus does not allow in a metric name
/// replaced by `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `{a="x",b="y"}`, with `le` last for a histogram bucket; empty without labels.
fn labels(labels: &[(&str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let all = labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    out.push('}');
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The process's CPU time, memory, descriptors and start time, from
/// `/proc/self` (nothing where it cannot be read).
fn process_metrics() -> Vec<(&'static str, Kind, Value)> {
    let mut out = Vec::new();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i128;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        // Fields after the command name, which is in parentheses and may hold spaces.
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): utime is field 14, stime 15, starttime 22, rss 24.
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (field(14), field(15)) {
            out.push((
                "process_cpu_seconds_total",
                Kind::Counter,
                Value::Float((u + s) / ticks),
            ));
        }
        if let Some(rss) = field(24) {
            out.push((
                "process_resident_memory_bytes",
                Kind::Gauge,
                Value::Int(rss as i128 * page),
            ));
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            out.push((
                "process_start_time_seconds",
                Kind::Gauge,
                Value::Float(boot + start / ticks),
            ));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push((
            "process_open_fds",
            Kind::Gauge,
            Value::Int(dir.count() as i128),
        ));
    }
    out
}

/// Unix time the machine booted (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.types
            .insert(("source".into(), "tx".into()), "kafka".into());
        c.teams
            .insert(("source".into(), "tx".into()), "payments".into());
        c.teams
            .insert(("plugin".into(), "mask".into()), "payments".into());
        c
    }

    #[test]
    fn names_become_families_with_component_labels() {
        let m = Metrics::new();
        m.counter("source.tx.events")
            .fetch_add(7, Ordering::Relaxed);
        m.gauge("source.tx.lag.orders.v1.2")
            .store(40, Ordering::Relaxed);
        m.gauge("source.tx.lag").store(41, Ordering::Relaxed);
        m.histogram("plugin.mask.batch_seconds", &[0.001, 0.01])
            .observe(Duration::from_micros(300));
        let text = render(&m, &catalog(), true);
        assert!(
            text.contains("# TYPE sluice_source_events_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_source_events_total{component=\"tx\",type=\"kafka\",team=\"payments\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "sluice_source_partition_lag_messages{component=\"tx\",type=\"kafka\",team=\"payments\",topic=\"orders.v1\",partition=\"2\"} 40\n"
        ), "{text}");
        assert!(
            text.contains(
                "sluice_source_lag_messages{component=\"tx\",type=\"kafka\",team=\"payments\"} 41\n"
            ),
            "{text}"
        );
        assert!(text.contains("sluice_plugin_batch_seconds_bucket{component=\"mask\",team=\"payments\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("sluice_plugin_batch_seconds_bucket{component=\"mask\",team=\"payments\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "sluice_plugin_batch_seconds_count{component=\"mask\",team=\"payments\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_up 1\n") && text.contains("sluice_build_info{version="),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn every_rendered_family_has_its_help_and_one_type_line() {
        let m = Metrics::new();
        m.counter("sink.lake.files_written")
            .fetch_add(1, Ordering::Relaxed);
        m.gauge("channel.c.queued_events");
        let text = render(&m, &Catalog::default(), false);
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let family = line.split(' ').nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
            let help = format!("# HELP {family} ");
            let help_line = text.lines().find(|l| l.starts_with(&help)).unwrap();
            assert!(
                !help_line.ends_with("Sluice metric."),
                "{family} is not in FAMILIES"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("topic", "a\"b\\c\nd".into())], None),
            "{topic=\"a\\\"b\\\\c\\nd\"}"
        );
        assert_eq!(labels(&[], Some("+Inf")), "{le=\"+Inf\"}");
    }

    #[test]
    fn families_are_unique_and_follow_the_naming_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, kind, help) in FAMILIES {
            assert!(seen.insert(*name), "{name} twice");
            assert!(!help.is_empty());
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert_eq!(*kind == Kind::Counter, name.ends_with("_total"), "{name}");
        }
    }
}
