//! Configuration of the `kafka` source, and the librdkafka property helpers the
//! Kafka sink and the embedded broker share with it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::kafka::{KafkaProperties, KafkaValue, PropertyError, check_properties};
use crate::keys::Invalid;
use crate::units::{ByteSize, HumanDuration};

/// `[sources.<name>]` with `type = "kafka"`: a consumer-group member that
/// turns records into batches and commits offsets only once the batches are
/// delivered.
///
/// ```toml
/// [sources.orders]
/// type = "kafka"
/// bootstrap_servers = "broker-1:9092,broker-2:9092"
/// group_id = "sluice-orders"
/// topics = ["orders"]
/// batch_max_events = 1000
/// batch_max_bytes = "16MiB"
/// batch_max_wait = "100ms"
/// commit_interval = "1s"
/// start_from = "earliest"
/// [sources.orders.kafka]
/// "session.timeout.ms" = 30000
/// ```
///
/// Over TLS and SASL, with the password kept out of the file:
///
/// ```toml
/// [sources.orders.kafka]
/// "security.protocol" = "sasl_ssl"      # or "ssl", "sasl_plaintext"
/// "sasl.mechanism" = "SCRAM-SHA-512"    # or "SCRAM-SHA-256", "PLAIN"
/// "sasl.username" = "sluice"
/// "sasl.password" = { file = "/run/secrets/kafka-password" }  # or { env = "KAFKA_PASSWORD" }
/// "ssl.ca.location" = "/etc/kafka/ca.pem"   # the CA that signed the brokers' certificates
/// ```
///
/// A bounded run (a batch job, like Camus or DataWorks' Kafka reader): read
/// each partition from a start to an end fixed when the run starts, then
/// end; `sluice run` exits 0 with a summary once everything read is
/// delivered (see [`Bounded`]):
///
/// ```toml
/// [sources.orders]
/// type = "kafka"
/// bootstrap_servers = "broker-1:9092"
/// group_id = "sluice-orders-backfill"
/// topics = ["orders"]
/// [sources.orders.bounded]
/// start = { "orders:0" = 120, "orders:1" = 0 }   # or "committed" (default), "earliest", "2026-12-03T00:00:00Z"
/// end = "end_at_start"                          # or "2026-12-04T00:00:00Z", { "orders:0" = 5000, "orders:1" = 4000 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Comma-separated `host:port` list of brokers, or `"embedded"` for the
    /// embedded demo broker (`[embedded_broker]`).
    pub bootstrap_servers: String,
    /// Consumer group; agents sharing it split the partitions between them.
    pub group_id: String,
    /// Static membership (Kafka's `group.instance.id`, KIP-345): a stable
    /// name for this agent within the group, unique per agent. A restarted
    /// agent with the same name gets its partitions back without a
    /// group-wide rebalance, as long as it returns within the session
    /// timeout (`kafka."session.timeout.ms"`). Set it per agent from the
    /// environment, e.g. `group_instance_id = "${HOSTNAME}"` (a StatefulSet
    /// pod's name is stable across restarts). Unset: a dynamic member.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Topics to subscribe to. Exactly one of `topics` and `topic_pattern`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Regular expression (librdkafka syntax) of the topics to subscribe to;
    /// it is anchored at the start (a leading `^` is added if missing) and new
    /// matching topics are picked up as they appear. Exactly one of `topics`
    /// and `topic_pattern`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// A batch is handed on as soon as it holds this many events.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// ...or as soon as its events hold at least this many bytes (keys,
    /// bodies, headers and topic names, as the batch encodes them; the event
    /// that crosses the bound is the batch's last). Bounds a batch's memory,
    /// whatever the record sizes, to this plus one event (1 KiB to 1 GiB;
    /// default 16 MiB).
    #[serde(default = "crate::sources::default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// ...or when this long has passed since its first event arrived.
    #[serde(default = "default_batch_max_wait")]
    pub batch_max_wait: HumanDuration,
    /// Hand a partial batch on as soon as librdkafka holds no further record
    /// and the processing stage is waiting for work (default `true`).
    /// Batches then grow with the load instead of with the clock: an idle
    /// pipeline passes each fetch on at once (the fraud scenario at 10 000
    /// events/s, `latency` bench: p99 125 ms → 25 ms, the broker's own two
    /// hops 20 ms), while a busy one still fills batches up to
    /// `batch_max_events`, because its processing stage has work queued.
    /// `false`: a batch waits until it is full or `batch_max_wait` has
    /// passed, as in Flume's Kafka source.
    #[serde(default = "default_flush_when_idle")]
    pub flush_when_idle: bool,
    /// How often delivered offsets are committed to the group.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// Where a group with no committed offset for a partition starts:
    /// `"earliest"` (default) or `"latest"` (librdkafka's `auto.offset.reset`).
    #[serde(default)]
    pub start_from: StartFrom,
    /// A bounded run: read every partition of `topics` from `bounded.start`
    /// up to `bounded.end` (both fixed when the source starts), hand on
    /// nothing at or past the end, and end the source once every partition
    /// reached its end and everything read is delivered and committed; when
    /// every source of the run has ended, `sluice run` exits 0 and prints a
    /// summary with each partition's offset range. Unset: the source reads
    /// until it is stopped. Needs `topics` (not `topic_pattern`). See
    /// [`Bounded`].
    #[serde(default)]
    pub bounded: Option<Bounded>,
    /// Extra librdkafka consumer properties (`"session.timeout.ms" = 30000`,
    /// `"security.protocol" = "ssl"`, ...), passed through as strings; they
    /// override Sluice's defaults. `enable.auto.commit` and
    /// `enable.auto.offset.store` cannot be turned on: Sluice commits itself.
    ///
    /// A value may instead be read from a file, `{ file = "/run/secrets/x" }`
    /// (its content less one trailing newline), or from an environment
    /// variable, `{ env = "KAFKA_PASSWORD" }`; both are checked when the
    /// configuration is loaded (readable, set, not empty). Secret values
    /// (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, any key naming a
    /// password or secret, ...) are never logged: see
    /// [`properties`](crate::kafka::properties). A wrong password, an untrusted
    /// broker certificate or a missing ACL stops the source with an error
    /// naming the brokers and the cause ([`crate::kafka::errors`]).
    #[serde(default)]
    pub kafka: KafkaProperties,
}

fn default_batch_max_events() -> usize {
    1000
}

fn default_batch_max_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_flush_when_idle() -> bool {
    true
}

fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// Where to start reading partitions without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the consumer joined.
    Latest,
}

impl StartFrom {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// `[sources.<name>.bounded]`: the range of every partition a bounded run
/// reads, `start` (inclusive) to `end` (exclusive). Both are resolved to
/// offsets when the source starts (ends) or when a partition is assigned
/// (starts); a partition whose start is at or past its end is done at once.
///
/// ```toml
/// [sources.orders.bounded]
/// start = "committed"     # default; or "earliest", an RFC 3339 time, or { "orders:0" = 120, ... }
/// end = "end_at_start"    # required; or an RFC 3339 time, or { "orders:0" = 5000, ... }
/// ```
///
/// In a table the keys are `"topic:partition"` and the values offsets; it
/// must list every partition of every topic in `topics`, and only those.
/// With an exactly-once sink a rerun over the same range writes nothing new:
/// the sink skips what its commit log holds. An agent ends once the
/// partitions assigned to it are done: run a bounded job as one agent per
/// consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounded {
    /// Where each partition starts: `"committed"` (default) where the
    /// exactly-once sinks' committed output or the consumer group left off,
    /// else per `start_from`, as an unbounded source starts; `"earliest"`
    /// the oldest retained record; an RFC 3339 time (`"2026-12-03T00:00:00Z"`,
    /// or a TOML date-time) the first offset whose timestamp is at or after
    /// it (the partition's end of log if none is); or a table of offsets,
    /// `{ "orders:0" = 120, "orders:1" = 0 }`.
    #[serde(default)]
    pub start: BoundStart,
    /// Where each partition ends (exclusive; required): `"end_at_start"` the
    /// partition's high watermark when the run starts (under `read_committed`,
    /// the last stable offset), so records produced during the run are not
    /// read; an RFC 3339 time, the first offset whose timestamp is at or
    /// after it (the high watermark if none is); or a table of offsets,
    /// `{ "orders:0" = 5000, "orders:1" = 4000 }`. An offset past the
    /// partition's current end waits for records up to it.
    pub end: BoundEnd,
}

/// `bounded.start`; see [`Bounded::start`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BoundStart {
    /// Where the exactly-once sinks or the group left off, else `start_from`.
    #[default]
    Committed,
    /// The oldest retained record.
    Earliest,
    /// The first offset whose timestamp is at or after this time (ms since
    /// the Unix epoch).
    Time(i64),
    /// An offset per partition.
    Offsets(PartitionOffsets),
}

/// `bounded.end`; see [`Bounded::end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundEnd {
    /// The high watermark when the run starts.
    EndAtStart,
    /// The first offset whose timestamp is at or after this time (ms since
    /// the Unix epoch); the high watermark if none is.
    Time(i64),
    /// An offset per partition (exclusive).
    Offsets(PartitionOffsets),
}

/// A `{ "topic:partition" = offset }` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionOffsets(pub BTreeMap<(String, i32), i64>);

impl PartitionOffsets {
    /// The offset given for `topic`'s `partition`.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .iter()
            .find(|((t, p), _)| *p == partition && t == topic)
            .map(|(_, o)| *o)
    }
}

/// What a `bounded.start` or `bounded.end` value reads as, before its words
/// are checked.
enum Position {
    Word(String),
    Time(i64),
    Offsets(PartitionOffsets),
}

/// The TOML date-time a `toml::Value` hands to serde as a one-key map.
const TOML_DATETIME: &str = "$__toml_private_datetime";

const TIME_EXAMPLE: &str = "an RFC 3339 time such as \"2026-12-03T00:00:00Z\"";

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `"orders:0"` → `("orders", 0)`.
fn parse_topic_partition(key: &str) -> Option<(String, i32)> {
    let (topic, partition) = key.rsplit_once(':')?;
    let partition: i32 = partition.parse().ok()?;
    (!topic.is_empty() && partition >= 0).then(|| (topic.to_owned(), partition))
}

struct PositionVisitor(&'static str);

impl<'de> Visitor<'de> for PositionVisitor {
    type Value = Position;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {TIME_EXAMPLE}, or a table of offsets such as {{ \"orders:0\" = 120 }}",
            self.0
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Position, E> {
        if v.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return parse_time(v).map(Position::Time).ok_or_else(|| {
                E::custom(format!(
                    "{v:?} is not {TIME_EXAMPLE} (a date, a time and an offset or `Z`)"
                ))
            });
        }
        Ok(Position::Word(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Position, A::Error> {
        let mut offsets = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == TOML_DATETIME {
                let text: String = map.next_value()?;
                return parse_time(&text).map(Position::Time).ok_or_else(|| {
                    de::Error::custom(format!(
                        "{text} is not a full date-time with an offset; write {TIME_EXAMPLE}"
                    ))
                });
            }
            let Some(tp) = parse_topic_partition(&key) else {
                return Err(de::Error::custom(format!(
                    "{key:?} does not name a partition; keys are \"topic:partition\", e.g. \"orders:0\""
                )));
            };
            let offset: i64 = map.next_value()?;
            if offset < 0 {
                return Err(de::Error::custom(format!(
                    "the offset of {key:?} is {offset}; offsets are 0 or more"
                )));
            }
            if offsets.insert(tp, offset).is_some() {
                return Err(de::Error::custom(format!("{key:?} is given twice")));
            }
        }
        if offsets.is_empty() {
            return Err(de::Error::custom(
                "the table of offsets is empty; give an offset per partition, e.g. { \"orders:0\" = 120 }",
            ));
        }
        Ok(Position::Offsets(PartitionOffsets(offsets)))
    }
}

impl<'de> Deserialize<'de> for BoundStart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const WORDS: &str = "\"committed\", \"earliest\"";
        match deserializer.deserialize_any(PositionVisitor(WORDS))? {
            Position::Word(w) if w == "committed" => Ok(Self::Committed),
            Position::Word(w) if w == "earliest" => Ok(Self::Earliest),
            Position::Word(w) => Err(de::Error::custom(format!(
                "unknown start {w:?}; expected {WORDS}, {TIME_EXAMPLE}, or a table of offsets such as {{ \"orders:0\" = 120 }}"
            ))),
            Position::Time(t) => Ok(Self::Time(t)),
            Position::Offsets(o) => Ok(Self::Offsets(o)),
        }
    }
}

impl<'de> Deserialize<'de> for BoundEnd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const WORDS: &str = "\"end_at_start\"";
        match deserializer.deserialize_any(PositionVisitor(WORDS))? {
            Position::Word(w) if w == "end_at_start" => Ok(Self::EndAtStart),
            Position::Word(w) => Err(de::Error::custom(format!(
                "unknown end {w:?}; expected {WORDS}, {TIME_EXAMPLE}, or a table of offsets such as {{ \"orders:0\" = 5000 }}"
            ))),
            Position::Time(t) => Ok(Self::Time(t)),
            Position::Offsets(o) => Ok(Self::Offsets(o)),
        }
    }
}

impl Bounded {
    /// Checks what serde cannot, against the source's `topics`.
    fn validate(&self, topics: &[String], has_pattern: bool) -> Result<(), Invalid> {
        if has_pattern {
            return Err(Invalid(
                "`bounded` needs `topics`: a bounded run reads the partitions of named topics, fixed when it starts; replace `topic_pattern` with `topics`".into(),
            ));
        }
        let tables = [("start", self.start.offsets()), ("end", self.end.offsets())];
        for (key, table) in tables {
            let Some(table) = table else { continue };
            if let Some(((topic, partition), _)) =
                table.0.iter().find(|((t, _), _)| !topics.contains(t))
            {
                return Err(Invalid(format!(
                    "`bounded.{key}` names \"{topic}:{partition}\", but `{topic}` is not in `topics`"
                )));
            }
        }
        Ok(())
    }
}

impl BoundStart {
    /// The table, if the start is one.
    pub fn offsets(&self) -> Option<&PartitionOffsets> {
        match self {
            Self::Offsets(o) => Some(o),
            _ => None,
        }
    }
}

impl BoundEnd {
    /// The table, if the end is one.
    pub fn offsets(&self) -> Option<&PartitionOffsets> {
        match self {
            Self::Offsets(o) => Some(o),
            _ => None,
        }
    }
}

/// Consumer properties whose `true` would let librdkafka commit offsets of
/// undelivered events.
const COMMIT_KEYS: &[&str] = &["enable.auto.commit", "enable.auto.offset.store"];

impl KafkaSourceConfig {
    /// Checks what serde cannot; the message names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("`bootstrap_servers` is empty; list brokers as \"host:port,host:port\" or write \"embedded\"".into());
        }
        if self.group_id.trim().is_empty() {
            return Err(Invalid(
                "`group_id` is empty; name the consumer group".into(),
            ));
        }
        if let Some(id) = &self.group_instance_id
            && (id.trim().is_empty() || id.len() > 249 || id.chars().any(char::is_control))
        {
            return Err(Invalid(format!(
                "`group_instance_id` {id:?} is not a usable member name: it must be 1 to 249 characters without control characters; leave it out for a dynamic member"
            )));
        }
        match (&self.topic_pattern, self.topics.is_empty()) {
            (None, true) => {
                return Err(
                    "set `topics` (a list of names) or `topic_pattern` (a regular expression)"
                        .into(),
                );
            }
            (Some(_), false) => {
                return Err(Invalid(
                    "`topics` and `topic_pattern` are both set; keep one".into(),
                ));
            }
            (Some(p), true) if p.trim_start_matches('^').is_empty() => {
                return Err(Invalid("`topic_pattern` is empty".into()));
            }
            _ => {}
        }
        if let Some(t) = self.topics.iter().find(|t| t.trim().is_empty()) {
            return Err(Invalid(format!("`topics` holds an empty name ({t:?})")));
        }
        if self.batch_max_events == 0 {
            return Err(Invalid("`batch_max_events` must be at least 1".into()));
        }
        if self.batch_max_wait.get().is_zero() {
            return Err(Invalid("`batch_max_wait` must be longer than 0ms".into()));
        }
        crate::sources::check_batch_max_bytes(self.batch_max_bytes)
            .map_err(|e| Invalid(format!("`batch_max_bytes` {e}")))?;
        if self.commit_interval.get().is_zero() {
            return Err(Invalid("`commit_interval` must be longer than 0ms".into()));
        }
        if let Some(bounded) = &self.bounded {
            bounded.validate(&self.topics, self.topic_pattern.is_some())?;
            if self.kafka.get("statistics.interval.ms").is_some_and(|v| {
                matches!(v, KafkaValue::Int(0))
                    || matches!(v, KafkaValue::Str(s) if s.trim() == "0")
            }) {
                return Err(Invalid(
                    "`kafka.\"statistics.interval.ms\"` = 0 turns off the statistics a bounded run reads to see that a partition ending in transaction markers is done; remove it or set it above 0".into(),
                ));
            }
        }
        check_properties("kafka", &self.kafka).map_err(|e| e.to_string())?;
        for key in COMMIT_KEYS {
            if let Some(v) = self.kafka.get(*key)
                && !v.is_false()
            {
                return Err(Invalid(format!(
                    "`kafka.\"{key}\"` cannot be enabled: Sluice commits offsets itself, only after delivery; remove it"
                )));
            }
        }
        Ok(())
    }

    /// The subscription as librdkafka takes it (patterns start with `^`).
    pub(crate) fn subscription(&self) -> Vec<String> {
        match &self.topic_pattern {
            Some(p) if p.starts_with('^') => vec![p.clone()],
            Some(p) => vec![format!("^{p}")],
            None => self.topics.clone(),
        }
    }

    /// The consumer configuration: Sluice's defaults, then the `kafka` table
    /// (`file` and `env` values read now).
    pub fn client_config(
        &self,
        bootstrap: &str,
        client_id: &str,
    ) -> Result<ClientConfig, PropertyError> {
        let mut config = ClientConfig::new();
        crate::kafka::consumer_defaults(&mut config)
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &self.group_id)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.start_from.as_str())
            .set("statistics.interval.ms", "1000")
            // librdkafka prefetches up to this much per partition queue while
            // the source is blocked on backpressure; keep it modest.
            .set("queued.max.messages.kbytes", "16384");
        if let Some(id) = &self.group_instance_id {
            config.set("group.instance.id", id);
        }
        self.kafka.apply(&mut config)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::resolve_bootstrap;

    const EXAMPLE: &str = r#"
        bootstrap_servers = "broker-1:9092,broker-2:9092"
        group_id = "sluice-orders"
        topics = ["orders"]
        batch_max_events = 500
        batch_max_wait = "250ms"
        commit_interval = "2s"
        start_from = "latest"
        [kafka]
        "session.timeout.ms" = 30000
        "check.crcs" = true
        "security.protocol" = "plaintext"
    "#;

    #[test]
    fn parses_the_example() {
        let c: KafkaSourceConfig = toml::from_str(EXAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.batch_max_events, 500);
        assert_eq!(c.batch_max_wait.get(), Duration::from_millis(250));
        assert_eq!(c.start_from, StartFrom::Latest);
        let cc = c.client_config("b:9092", "sluice-test").unwrap();
        assert_eq!(cc.get("session.timeout.ms"), Some("30000"));
        assert_eq!(cc.get("check.crcs"), Some("true"));
        assert_eq!(cc.get("auto.offset.reset"), Some("latest"));
        assert_eq!(cc.get("enable.auto.commit"), Some("false"));
        assert_eq!(cc.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(cc.get("group.instance.id"), None);
        assert_eq!(
            cc.get("fetch.queue.backoff.ms"),
            Some(crate::kafka::FETCH_QUEUE_BACKOFF_MS),
            "no one-second stall after each drained prefetch queue"
        );
    }

    #[test]
    fn the_kafka_table_overrides_sluices_defaults() {
        let c: KafkaSourceConfig = toml::from_str(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\n[kafka]\n\"fetch.queue.backoff.ms\" = 500\n\"queued.max.messages.kbytes\" = 1024",
        )
        .unwrap();
        c.validate().unwrap();
        let cc = c.client_config("b:9092", "sluice-test").unwrap();
        assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("500"));
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("1024"));
    }

    #[test]
    fn static_membership_sets_the_instance_id() {
        let c: KafkaSourceConfig = toml::from_str(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\ngroup_instance_id = \"agent-0\"",
        )
        .unwrap();
        c.validate().unwrap();
        let cc = c.client_config("b:9092", "sluice-test").unwrap();
        assert_eq!(cc.get("group.instance.id"), Some("agent-0"));
    }

    #[test]
    fn defaults_apply() {
        let c: KafkaSourceConfig = toml::from_str(
            "bootstrap_servers = \"embedded\"\ngroup_id = \"g\"\ntopic_pattern = \"logs-.*\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.batch_max_events, 1000);
        assert_eq!(c.batch_max_wait.get(), Duration::from_millis(100));
        assert_eq!(c.commit_interval.get(), Duration::from_secs(1));
        assert_eq!(c.start_from, StartFrom::Earliest);
        assert_eq!(c.subscription(), vec!["^logs-.*".to_owned()]);
        assert_eq!(
            resolve_bootstrap(&c.bootstrap_servers, Some("127.0.0.1:1")).unwrap(),
            "127.0.0.1:1"
        );
        assert!(
            resolve_bootstrap(&c.bootstrap_servers, None)
                .unwrap_err()
                .0
                .contains("[embedded_broker]")
        );
    }

    #[test]
    fn rejects_what_cannot_work() {
        let base = "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\n";
        let check = |extra: &str| {
            toml::from_str::<KafkaSourceConfig>(&format!("{base}{extra}"))
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.0))
        };
        assert!(check("topics = [\"a\"]").is_ok());
        assert!(check("").unwrap_err().contains("topic_pattern"));
        assert!(
            check("topics = [\"a\"]\ntopic_pattern = \"b\"")
                .unwrap_err()
                .contains("keep one")
        );
        assert!(
            check("topics = [\"a\"]\nbatch_max_events = 0")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(check("topics = [\"a\"]\nbatch_max_wait = \"0ms\"").is_err());
        assert!(check("topics = [\"a\"]\nbatch_max_bytes = \"64KiB\"").is_ok());
        for bad in ["100B", "2GiB"] {
            let e = check(&format!("topics = [\"a\"]\nbatch_max_bytes = \"{bad}\"")).unwrap_err();
            assert!(e.contains("`batch_max_bytes` must be between"), "{e}");
        }
        assert!(
            check("topics = [\"a\"]\nunknown = 1")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(check("topics = [\"a\"]\nstart_from = \"middle\"").is_err());
        assert!(
            check("topics = [\"a\"]\n[kafka]\n\"enable.auto.commit\" = true")
                .unwrap_err()
                .contains("commits offsets itself")
        );
        assert!(check("topics = [\"a\"]\n[kafka]\n\"enable.auto.commit\" = false").is_ok());
        assert!(
            check("topics = [\"a\"]\n[kafka]\n\"group.id\" = \"x\"")
                .unwrap_err()
                .contains("group_id")
        );
        assert!(
            check("topics = [\"a\"]\n[kafka]\n\"group.instance.id\" = \"x\"")
                .unwrap_err()
                .contains("group_instance_id")
        );
        assert!(
            check("topics = [\"a\"]\ngroup_instance_id = \" \"")
                .unwrap_err()
                .contains("member name")
        );
    }

    /// The bounded example of the struct docs, as the loader reads it.
    const BOUNDED: &str = r#"
        bootstrap_servers = "broker-1:9092"
        group_id = "sluice-orders-backfill"
        topics = ["orders"]
        [bounded]
        start = { "orders:0" = 120, "orders:1" = 0 }
        end = "end_at_start"
    "#;

    /// Loads `text` as the `kafka` source type does: the key at fault and
    /// the message, or the configuration.
    fn load(text: &str) -> Result<KafkaSourceConfig, (String, String)> {
        let table: toml::Value =
            toml::from_str(text).map_err(|e| (String::new(), e.to_string()))?;
        match (super::super::TYPE.load)(table) {
            Ok(source) => Ok(source
                .as_any()
                .downcast_ref::<KafkaSourceConfig>()
                .expect("a kafka source")
                .clone()),
            Err(crate::keys::KeyError::Keys(e)) => {
                Err((e.path().to_string(), e.inner().to_string()))
            }
            Err(crate::keys::KeyError::Invalid { at, message }) => Err((at.join("."), message)),
        }
    }

    #[test]
    fn parses_the_bounded_example() {
        let c = load(BOUNDED).unwrap();
        let b = c.bounded.expect("bounded");
        assert_eq!(
            b.start,
            BoundStart::Offsets(PartitionOffsets(
                [
                    (("orders".to_owned(), 0), 120),
                    (("orders".to_owned(), 1), 0)
                ]
                .into()
            ))
        );
        assert_eq!(b.end, BoundEnd::EndAtStart);
        assert_eq!(b.start.offsets().unwrap().get("orders", 0), Some(120));
    }

    #[test]
    fn bounded_positions_are_words_times_or_tables() {
        let with = |bounded: &str| {
            load(&format!(
                "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\", \"u:v\"]\n[bounded]\n{bounded}"
            ))
            .map(|c| c.bounded.expect("bounded"))
        };
        let b = with("end = \"end_at_start\"").unwrap();
        assert_eq!(
            (b.start, b.end),
            (BoundStart::Committed, BoundEnd::EndAtStart)
        );
        let b = with("start = \"earliest\"\nend = \"2026-12-03T01:00:00+01:00\"").unwrap();
        assert_eq!(b.start, BoundStart::Earliest);
        assert_eq!(b.end, BoundEnd::Time(1_796_256_000_000));
        // A TOML date-time, unquoted.
        let b = with("start = 2026-12-03T00:00:00Z\nend = \"end_at_start\"").unwrap();
        assert_eq!(b.start, BoundStart::Time(1_796_256_000_000));
        // Straight from TOML text, a date-time is a map to serde.
        let b: Bounded =
            toml::from_str("start = 2026-12-03T00:00:00Z\nend = \"end_at_start\"").unwrap();
        assert_eq!(b.start, BoundStart::Time(1_796_256_000_000));
        let e = toml::from_str::<Bounded>("end = 2026-12-03").unwrap_err();
        assert!(e.to_string().contains("not a full date-time"), "{e}");
        // A topic name may hold a colon: the partition follows the last one.
        let b = with("end = { \"u:v:3\" = 9 }").unwrap();
        assert_eq!(b.end.offsets().unwrap().get("u:v", 3), Some(9));
    }

    #[test]
    fn bad_bounded_values_name_the_key() {
        let base = "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\n";
        let cases: &[(&str, &str, &str)] = &[
            (
                "[bounded]\nstart = \"earliest\"",
                "bounded",
                "missing field `end`",
            ),
            (
                "[bounded]\nend = \"latest\"",
                "bounded.end",
                "unknown end \"latest\"",
            ),
            (
                "[bounded]\nstart = \"newest\"\nend = \"end_at_start\"",
                "bounded.start",
                "unknown start \"newest\"",
            ),
            (
                "[bounded]\nend = \"2026-13-01\"",
                "bounded.end",
                "is not an RFC 3339 time",
            ),
            (
                "[bounded]\nend = 2026-12-03",
                "bounded.end",
                "is not an RFC 3339 time",
            ),
            (
                "[bounded]\nend = { \"t\" = 5 }",
                "bounded.end",
                "keys are \"topic:partition\"",
            ),
            (
                "[bounded]\nend = { \"t:-1\" = 5 }",
                "bounded.end",
                "does not name a partition",
            ),
            (
                "[bounded]\nend = { \"t:0\" = -5 }",
                "bounded.end",
                "offsets are 0 or more",
            ),
            (
                "[bounded]\nend = {}",
                "bounded.end",
                "the table of offsets is empty",
            ),
            (
                "[bounded]\nend = 5",
                "bounded.end",
                "\"end_at_start\", an RFC 3339 time",
            ),
            (
                "[bounded]\nend = \"end_at_start\"\nstop = 1",
                "bounded.stop",
                "unknown field `stop`",
            ),
            (
                "[bounded]\nend = { \"x:0\" = 5 }",
                "bounded.end",
                "`x` is not in `topics`",
            ),
            (
                "[bounded]\nstart = { \"x:0\" = 5 }\nend = \"end_at_start\"",
                "bounded.start",
                "`x` is not in `topics`",
            ),
            (
                "[bounded]\nend = \"end_at_start\"\n[kafka]\n\"statistics.interval.ms\" = 0",
                "kafka.statistics.interval.ms",
                "`kafka.\"statistics.interval.ms\"` = 0",
            ),
        ];
        for (extra, key, message) in cases {
            let (at, got) = load(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(at, *key, "{extra}: {got}");
            assert!(got.contains(message), "{extra}: {got}");
        }
        let (at, got) = load(
            "bootstrap_servers = \"b:9092\"\ngroup_id = \"g\"\ntopic_pattern = \"t.*\"\n[bounded]\nend = \"end_at_start\"",
        )
        .unwrap_err();
        assert_eq!(at, "bounded");
        assert!(got.contains("`bounded` needs `topics`"), "{got}");
    }
}
