//! Configuration of the `kafka` source, and the librdkafka property helpers the
//! Kafka sink and the embedded broker share with it.

use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::kafka::{KafkaProperties, PropertyError, check_properties};
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
}
