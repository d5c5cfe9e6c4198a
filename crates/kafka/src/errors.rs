//! Which Kafka client errors are permanent, and what a component does about
//! them.
//!
//! librdkafka retries everything: with a wrong password, an untrusted broker
//! certificate or a missing ACL it reconnects and re-requests for as long as
//! the client lives, and a component that only counted and logged its errors
//! would look alive while doing nothing. [`classify`] is the one place that
//! tells those errors — which no retry can cure, only a change of
//! configuration or of ACLs — from the transient ones (a broker down, a
//! timeout, a refused connection, which librdkafka keeps retrying, as it
//! should). Every Kafka client of Sluice — the `kafka` source, the Kafka
//! sink (plain and transactional), the `kafka` channel and Kafka lookup
//! tables — reports its errors to a [`Health`]: its librdkafka error
//! callback (which carries librdkafka's reason, naming the broker) and the
//! errors its own loops see (a delivery report, a consumer error, a
//! transaction call). The first permanent error is kept, logged once and
//! wakes the component's loops ([`Health::failed`]), which stop the
//! component with it; the agent then exits with that error. Every error is
//! counted in the component's `errors` counter.
//!
//! Messages name the brokers (the bootstrap servers; librdkafka's reason
//! usually names the broker too) and the cause, with what to check; secrets
//! are scrubbed from them ([`redact`]).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::properties::{REDACTED, is_secret_key, redact};
use sluice_core::metrics::Counter;

/// Why a Kafka client cannot work until its configuration or ACLs change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SASL authentication failed: wrong username or password, or a
    /// mechanism the broker does not enable.
    Authentication,
    /// The broker's TLS certificate could not be verified against the
    /// trusted CAs (or does not match the broker's name).
    UntrustedCertificate,
    /// The TLS handshake failed for another reason of configuration: no TLS
    /// on that listener, or a client certificate the broker requires or
    /// refuses.
    TlsHandshake,
    /// The client's principal lacks an ACL.
    Authorization(Resource),
}

/// What an authorization failure was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A topic (read, write or describe).
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (the idempotent producer's InitProducerId, among others).
    Cluster,
    /// A transactional id.
    TransactionalId,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Group => "group",
            Self::Cluster => "cluster",
            Self::TransactionalId => "transactional id",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Self::Topic => {
                "READ and DESCRIBE on the topics it consumes, WRITE and DESCRIBE on those it produces to"
            }
            Self::Group => "READ on its consumer group",
            Self::Cluster => {
                "what an idempotent producer needs (WRITE on the topic, or IDEMPOTENT_WRITE on the cluster)"
            }
            Self::TransactionalId => "WRITE and DESCRIBE on its transactional id",
        }
    }
}

/// Whether an error with librdkafka code `code` (if known) and message
/// `reason` is permanent, and why; `None` for transient errors.
///
/// Authentication failures (librdkafka's `-169`, the broker's
/// `SASL_AUTHENTICATION_FAILED` and `UNSUPPORTED_SASL_MECHANISM`) and the
/// broker's authorization failures (topic 29, group 30, cluster 31,
/// transactional id 53) are permanent. A TLS error (`-181`) is permanent
/// when its reason shows a certificate that could not be verified or a
/// handshake that cannot work; other TLS errors are treated as transient. A
/// fatal error (`-150`) or one without a code is judged by its reason, which
/// then holds the underlying cause.
pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Cause> {
    use RDKafkaErrorCode as C;
    match code {
        Some(C::Authentication | C::SaslAuthenticationFailed | C::UnsupportedSASLMechanism) => {
            Some(Cause::Authentication)
        }
        Some(C::TopicAuthorizationFailed) => Some(Cause::Authorization(Resource::Topic)),
        Some(C::GroupAuthorizationFailed) => Some(Cause::Authorization(Resource::Group)),
        Some(C::ClusterAuthorizationFailed) => Some(Cause::Authorization(Resource::Cluster)),
        Some(C::TransactionalIdAuthorizationFailed) => {
            Some(Cause::Authorization(Resource::TransactionalId))
        }
        Some(C::SSL) => classify_tls(reason),
        Some(C::Fatal) | None => classify_reason(reason),
        Some(_) => None,
    }
}

/// [`classify`] of an error returned by a client call or a delivery.
pub(crate) fn classify_error(e: &KafkaError) -> Option<Cause> {
    classify(e.rdkafka_error_code(), &e.to_string())
}

fn classify_tls(reason: &str) -> Option<Cause> {
    let r = reason.to_ascii_lowercase();
    if r.contains("certificate verify failed") || r.contains("could not be verified") {
        Some(Cause::UntrustedCertificate)
    } else if [
        "wrong version number",
        "unexpected message",
        "packet length too long",
        "bad certificate",
        "certificate required",
        "unknown ca",
        "certificate unknown",
    ]
    .iter()
    .any(|p| r.contains(p))
    {
        Some(Cause::TlsHandshake)
    } else {
        None
    }
}

fn classify_reason(reason: &str) -> Option<Cause> {
    let r = reason.to_ascii_lowercase();
    for (text, resource) in [
        ("topic authorization failed", Resource::Topic),
        ("group authorization failed", Resource::Group),
        ("cluster authorization failed", Resource::Cluster),
        (
            "transactional id authorization failed",
            Resource::TransactionalId,
        ),
    ] {
        if r.contains(text) {
            return Some(Cause::Authorization(resource));
        }
    }
    if r.contains("sasl authentication") || r.contains("authentication failed") {
        return Some(Cause::Authentication);
    }
    if r.contains("ssl handshake failed") {
        return classify_tls(reason);
    }
    None
}

impl Cause {
    /// The error message: the cause at `brokers`, librdkafka's `reason`
    /// (secrets scrubbed), and what to check.
    pub fn describe(self, brokers: &str, reason: &str) -> String {
        let reason = redact(reason);
        match self {
            Self::Authentication => format!(
                "authentication failed at `{brokers}`: {reason}; check `sasl.mechanism`, `sasl.username` and `sasl.password`"
            ),
            Self::UntrustedCertificate => format!(
                "the TLS certificate of `{brokers}` is not trusted: {reason}; set `ssl.ca.location` to the CA that signed the brokers' certificates"
            ),
            Self::TlsHandshake => format!(
                "the TLS handshake with `{brokers}` failed: {reason}; check `security.protocol` (does the listener speak TLS?) and the client certificate (`ssl.certificate.location`, `ssl.key.location`)"
            ),
            Self::Authorization(resource) => format!(
                "{} authorization failed at `{brokers}`: {reason}; grant the client's principal {}",
                resource.name(),
                resource.hint()
            ),
        }
    }
}

/// `e` as text, with no secret in it: a client configuration error names
/// the property but not the value of a secret one, and registered secrets
/// are scrubbed from the rest.
pub fn describe_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) if is_secret_key(key) => {
            format!("Client config error: {desc} {key} {REDACTED}")
        }
        e => redact(&e.to_string()).into_owned(),
    }
}

sluice_core::message_error! {
    /// A Kafka client that cannot start or go on: the message names what it
    /// was doing, the brokers and the cause (secrets scrubbed). The component
    /// stops with it.
    pub struct ClientError;
}

impl ClientError {
    /// The same error, with what was being done put in front.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self(format!("{what}: {}", self.0))
    }
}

/// The kind of component a [`Health`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `[sources.<name>]`.
    Source,
    /// `[sinks.<name>]`.
    Sink,
    /// `[channels.<name>]`.
    Channel,
    /// `[lookups.<name>]`.
    Lookup,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Sink => "sink",
            Self::Channel => "channel",
            Self::Lookup => "lookup",
        })
    }
}

/// The state of one component's Kafka clients: counts their errors and
/// keeps the first permanent one. Shared by the clients' contexts and the
/// component's loops.
pub struct Health {
    role: Role,
    name: String,
    brokers: String,
    errors: Counter,
    failure: OnceLock<String>,
    failed: CancellationToken,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("component", &self.component())
            .field("brokers", &self.brokers)
            .field("failure", &self.failure.get())
            .finish()
    }
}

impl Health {
    /// The health of component `name` talking to `brokers`; errors are
    /// counted in `errors`.
    pub fn new(role: Role, name: &str, brokers: &str, errors: Counter) -> Arc<Self> {
        Arc::new(Self {
            role,
            name: name.to_owned(),
            brokers: brokers.to_owned(),
            errors,
            failure: OnceLock::new(),
            failed: CancellationToken::new(),
        })
    }

    /// "source `orders`".
    pub fn component(&self) -> String {
        format!("{} `{}`", self.role, self.name)
    }

    /// The brokers, as configured.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// librdkafka's error callback: counts the error, and records it if it
    /// is permanent; a transient one is logged (librdkafka retries).
    pub fn client_error(&self, error: &KafkaError, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        match classify(error.rdkafka_error_code(), reason) {
            Some(cause) => self.fail(cause.describe(&self.brokers, reason)),
            None => {
                let reason = redact(reason);
                warn!(component = %self.component(), error = %describe_error(error), reason = %reason, "kafka client error; librdkafka retries");
            }
        }
    }

    /// An error librdkafka only logs (a transaction made abortable, whose
    /// records are then purged): recorded if its message shows a permanent
    /// cause.
    pub fn logged_error(&self, message: &str) {
        if let Some(cause) = classify(None, message) {
            self.fail(cause.describe(&self.brokers, message));
        }
    }

    /// An error returned by a call or a delivery (counted by the caller):
    /// records it if it is permanent and returns the failure then.
    pub fn check(&self, error: &KafkaError) -> Option<String> {
        let cause = classify_error(error)?;
        self.fail(cause.describe(&self.brokers, &error.to_string()));
        self.failure().map(str::to_owned)
    }

    /// The message for a client's fatal error `code`/`reason` (librdkafka's
    /// `fatal_error()`), recorded as the failure: a permanent cause is
    /// described as such.
    pub fn fatal(&self, code: RDKafkaErrorCode, reason: &str) -> String {
        let message = match classify(Some(code), reason).or_else(|| classify_reason(reason)) {
            Some(cause) => cause.describe(&self.brokers, reason),
            None => format!(
                "fatal client error at `{}`: {code:?}: {}",
                self.brokers,
                redact(reason)
            ),
        };
        self.fail(message);
        self.failure().map(str::to_owned).unwrap_or_default()
    }

    /// Records `message` as the failure unless one is recorded already.
    pub fn fail(&self, message: String) {
        if self.failure.set(message).is_ok() {
            error!(component = %self.component(), error = %self.failure().unwrap_or_default(), "permanent kafka client error; stopping");
            self.failed.cancel();
        }
    }

    /// The permanent error, if one was recorded.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Waits until a permanent error is recorded; returns it.
    pub async fn failed(&self) -> &str {
        self.failed.cancelled().await;
        self.failure().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaRespErr;

    use super::*;
    use crate::properties::register_secret;

    use RDKafkaErrorCode as C;

    #[test]
    fn authentication_failures_are_permanent() {
        let reason = "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256 (after 12ms in state AUTH_REQ)";
        assert_eq!(
            classify(Some(C::Authentication), reason),
            Some(Cause::Authentication)
        );
        for code in [C::SaslAuthenticationFailed, C::UnsupportedSASLMechanism] {
            assert_eq!(classify(Some(code), ""), Some(Cause::Authentication));
        }
    }

    #[test]
    fn tls_errors_are_judged_by_their_reason() {
        let untrusted = "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)";
        assert_eq!(
            classify(Some(C::SSL), untrusted),
            Some(Cause::UntrustedCertificate)
        );
        assert_eq!(
            classify(
                Some(C::SSL),
                "SSL handshake failed: error:0A00010B:SSL routines::wrong version number"
            ),
            Some(Cause::TlsHandshake)
        );
        assert_eq!(
            classify(
                Some(C::SSL),
                "SSL handshake failed: ssl/record/rec_layer_s3.c:1605: error:0A000412:SSL routines::sslv3 alert bad certificate"
            ),
            Some(Cause::TlsHandshake)
        );
        // A TLS error without a configuration cause is retried.
        assert_eq!(
            classify(
                Some(C::SSL),
                "SSL transport error: Connection reset by peer"
            ),
            None
        );
    }

    #[test]
    fn authorization_failures_are_permanent() {
        for (code, resource) in [
            (C::TopicAuthorizationFailed, Resource::Topic),
            (C::GroupAuthorizationFailed, Resource::Group),
            (C::ClusterAuthorizationFailed, Resource::Cluster),
            (
                C::TransactionalIdAuthorizationFailed,
                Resource::TransactionalId,
            ),
        ] {
            assert_eq!(
                classify(Some(code), ""),
                Some(Cause::Authorization(resource))
            );
        }
        // As a consumer error, a delivery error, a transaction error.
        let consumed = KafkaError::MessageConsumption(C::TopicAuthorizationFailed);
        assert_eq!(
            classify_error(&consumed),
            Some(Cause::Authorization(Resource::Topic))
        );
        let delivered = KafkaError::MessageProduction(
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED.into(),
        );
        assert_eq!(
            classify_error(&delivered),
            Some(Cause::Authorization(Resource::Topic))
        );
        let group = KafkaError::ConsumerCommit(C::GroupAuthorizationFailed);
        assert_eq!(
            classify_error(&group),
            Some(Cause::Authorization(Resource::Group))
        );
    }

    #[test]
    fn fatal_errors_are_judged_by_their_reason() {
        assert_eq!(
            classify(
                Some(C::Fatal),
                "Fatal error: Broker: Cluster authorization failed: Failed to acquire idempotence PID from broker sasl_plaintext://127.0.0.1:9095/1: Broker: Cluster authorization failed"
            ),
            Some(Cause::Authorization(Resource::Cluster))
        );
        assert_eq!(
            classify(
                Some(C::Fatal),
                "Fatal error: Broker: Group authorization failed: JoinGroup failed"
            ),
            Some(Cause::Authorization(Resource::Group))
        );
        assert_eq!(
            classify(
                Some(C::Fatal),
                "Fatal error: Local: Inconsistent state: producer fenced"
            ),
            None
        );
    }

    #[test]
    fn transient_errors_stay_transient() {
        for (code, reason) in [
            (
                C::AllBrokersDown,
                "1/1 brokers are down: authentication failed elsewhere",
            ),
            (
                C::BrokerTransportFailure,
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
            ),
            (C::OperationTimedOut, "Timed out"),
            (C::RequestTimedOut, ""),
            (C::UnknownTopicOrPartition, "topic authorization failed?"),
            (C::NotCoordinator, ""),
            (C::KafkaStorageError, ""),
        ] {
            assert_eq!(classify(Some(code), reason), None, "{code:?}");
        }
        assert_eq!(classify_error(&KafkaError::Canceled), None);
    }

    #[test]
    fn messages_name_the_brokers_and_the_cause_without_secrets() {
        register_secret("pa55-in-a-reason");
        let m = Cause::Authentication.describe(
            "127.0.0.1:9094",
            "SASL authentication error: bad password pa55-in-a-reason",
        );
        assert_eq!(
            m,
            "authentication failed at `127.0.0.1:9094`: SASL authentication error: bad password [redacted]; check `sasl.mechanism`, `sasl.username` and `sasl.password`"
        );
        let m = Cause::Authorization(Resource::Group)
            .describe("b:1", "Broker: Group authorization failed");
        assert!(
            m.starts_with("group authorization failed at `b:1`: "),
            "{m}"
        );
        assert!(m.contains("READ on its consumer group"), "{m}");
        let m = Cause::UntrustedCertificate.describe("b:1", "certificate verify failed");
        assert!(
            m.contains("not trusted") && m.contains("ssl.ca.location"),
            "{m}"
        );
    }

    #[test]
    fn configuration_errors_hide_secret_values() {
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "sasl.password".into(),
            "hunter2-config".into(),
        );
        let shown = describe_error(&e);
        assert!(!shown.contains("hunter2-config"), "{shown}");
        assert!(shown.contains("sasl.password [redacted]"), "{shown}");
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "linger.ms".into(),
            "soon".into(),
        );
        assert!(describe_error(&e).ends_with("linger.ms soon"));
    }

    #[tokio::test]
    async fn health_keeps_the_first_permanent_error_and_counts_all() {
        let errors = Counter::default();
        let health = Health::new(Role::Source, "orders", "127.0.0.1:9094", errors.clone());
        health.client_error(
            &KafkaError::Global(C::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(health.failure(), None);
        health.client_error(
            &KafkaError::Global(C::Authentication),
            "SASL authentication error: Authentication failed",
        );
        health.client_error(&KafkaError::Global(C::GroupAuthorizationFailed), "later");
        assert_eq!(errors.load(Ordering::Relaxed), 3);
        let first = health.failed().await;
        assert!(
            first.starts_with("authentication failed at `127.0.0.1:9094`"),
            "{first}"
        );
        assert_eq!(health.component(), "source `orders`");
        // A per-message error reports the recorded failure.
        let m = health
            .check(&KafkaError::MessageConsumption(C::TopicAuthorizationFailed))
            .unwrap();
        assert_eq!(m, first);
        assert_eq!(
            health.check(&KafkaError::MessageConsumption(C::OperationTimedOut)),
            None
        );
    }

    #[test]
    fn fatal_client_errors_get_a_message() {
        let health = Health::new(Role::Sink, "out", "b:1", Counter::default());
        let m = health.fatal(
            C::ClusterAuthorizationFailed,
            "Failed to acquire idempotence PID",
        );
        assert!(
            m.starts_with("cluster authorization failed at `b:1`"),
            "{m}"
        );
        let other = Health::new(Role::Sink, "out", "b:1", Counter::default());
        let m = other.fatal(C::InvalidProducerEpoch, "epoch bumped");
        assert!(
            m.starts_with("fatal client error at `b:1`: InvalidProducerEpoch"),
            "{m}"
        );
    }
}
