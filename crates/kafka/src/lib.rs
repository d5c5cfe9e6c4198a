//! The Kafka client code every Kafka-facing component shares: the
//! consumer, producer and channel of Sluice, and Kafka lookups.
//!
//! - [`properties`]: the librdkafka property table of a component (one
//!   table per component; values inline, from a file or from the
//!   environment; secrets never logged);
//! - [`closing`]: a client's close at shutdown, bounded so it cannot hold
//!   the stop;
//! - [`errors`]: which client errors are permanent, and the [`Health`] of a
//!   client that stops its component on one;
//! - `offsets`: acknowledged offsets per partition, and what may be
//!   committed;
//! - here: the embedded broker's `bootstrap_servers` value, checks of a
//!   property table against Sluice's own keys, and librdkafka's log lines
//!   routed to `tracing`.
//!
//! The source, the sinks, the channel and the lookups depend on this module,
//! never on each other.

pub mod closing;
pub mod errors;
pub mod offsets;
pub mod properties;

pub use errors::{ClientError, Health, Role, describe_error};
pub use properties::{KafkaProperties, KafkaValue, PropertyError};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

use sluice_core::keys::Invalid;

/// The `bootstrap_servers` value that means "the embedded demo broker".
pub const EMBEDDED: &str = "embedded";

/// Properties Sluice sets from its own keys; the `kafka` table must not set them.
const OWN_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("group.id", "group_id"),
    ("group.instance.id", "group_instance_id"),
];

/// Checks a component's property table, `table` being its key (`kafka`,
/// `properties`): no key duplicating a Sluice key, no empty name, every
/// `file` and `env` value readable. The message names the property.
pub fn check_properties(table: &str, props: &KafkaProperties) -> Result<(), PropertyError> {
    if let Some((property, key)) = OWN_KEYS.iter().find(|(p, _)| props.contains_key(*p)) {
        return Err(PropertyError::OwnKey {
            table: table.to_owned(),
            property,
            key,
        });
    }
    props.check(table)
}

/// librdkafka's pause before fetching again for a partition whose prefetch
/// queue is over its thresholds (`queued.min.messages`, 100 000 messages by
/// default, or `queued.max.messages.kbytes`), in milliseconds. librdkafka's
/// default, 1000, stalls a consumer that drains its queue faster than that:
/// with ~100-byte events the queue holds ~100 000 messages, the consumer
/// empties it in a fraction of a second, then waits out the rest of the
/// second. That capped every Sluice source at ~124 000 events/s whatever the
/// pipeline did (the `pipeline` bench: 124 000 → 495 000 events/s with no
/// plugin). 10 ms keeps the thresholds' memory bound and costs one check
/// per partition per 10 ms while the queue is full.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Sets Sluice's defaults of every consumer (source, channel, lookup)
/// before a component's own keys and its property table, which may
/// override them.
pub fn consumer_defaults(config: &mut ClientConfig) -> &mut ClientConfig {
    config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
}

/// Resolves a `bootstrap_servers` value: `"embedded"` becomes the embedded
/// broker's address, anything else is returned as is.
pub fn resolve_bootstrap(value: &str, embedded: Option<&str>) -> Result<String, Invalid> {
    if value.trim() == EMBEDDED {
        embedded.map(str::to_owned).ok_or_else(|| {
            Invalid("`bootstrap_servers = \"embedded\"` but no embedded broker runs; add an `[embedded_broker]` table or name real brokers".to_owned())
        })
    } else {
        Ok(value.to_owned())
    }
}

/// Forwards a librdkafka log line of client `client` to `tracing`, with
/// every secret given to a client scrubbed from it ([`properties::redact`]):
/// at debug level librdkafka may echo property values.
pub fn log_librdkafka(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let message = properties::redact(message);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", client, fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", client, fac, "{message}"),
    }
}
