//! Kafka client properties: Flume passes `kafka.consumer.*` and
//! `kafka.producer.*` to the Java client; Sluice passes its `kafka` (or
//! `properties`) table to librdkafka. Most names are the same; the rest are
//! renamed, turned into their librdkafka form (JAAS → `sasl.username`,
//! hostname verification), or reported (Java keystores, classes).
//! Whatever is kept is checked against librdkafka itself, so an output
//! never holds a property the client would refuse at start.

use rdkafka::ClientConfig;

use super::{Component, Ctx, sanitize};
use crate::import::toml_out::Value;

/// Which Java client the properties were for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    Consumer,
    Producer,
}

/// The librdkafka properties for Java client property `key` = `raw` of
/// component `c` (`full` is its key in the component, for messages):
/// usually one, two for a JAAS login, none after reporting what cannot be
/// carried over.
pub(super) fn properties(
    ctx: &mut Ctx,
    c: &Component,
    client: Client,
    full: &str,
    key: &str,
    raw: &str,
) -> Vec<(String, Value)> {
    let value = raw.trim();
    let keep = |k: &str, v: &str| vec![(k.to_owned(), typed(v))];
    let out = match key {
        "key.serializer" | "value.serializer" | "key.deserializer" | "value.deserializer" => {
            ctx.note(c, full, "ignored: Sluice passes keys and values as bytes");
            return Vec::new();
        }
        "enable.auto.commit" | "auto.commit.enable" | "enable.auto.offset.store" => {
            ctx.note(
                c,
                full,
                "ignored: Sluice commits offsets itself, once events are delivered",
            );
            return Vec::new();
        }
        "bootstrap.servers" | "group.id" | "group.instance.id" => {
            ctx.note(c, full, "ignored here: Sluice has its own key for it (`bootstrap_servers`, `group_id`, `group_instance_id`)");
            return Vec::new();
        }
        "ssl.truststore.location" => {
            ctx.unmapped(c, full, format!("librdkafka reads PEM files, not Java truststores: export the CA certificate (`keytool -exportcert -rfc -keystore {value} -alias <alias> -file ca.pem`) and set `ssl.ca.location`"));
            return Vec::new();
        }
        "ssl.keystore.location" => {
            ctx.unmapped(c, full, format!("librdkafka reads PEM files, not Java keystores: convert `{value}` (`keytool -importkeystore -deststoretype PKCS12`, then `openssl pkcs12 -nokeys` / `-nocerts -nodes`) and set `ssl.certificate.location` and `ssl.key.location`"));
            return Vec::new();
        }
        "ssl.truststore.password"
        | "ssl.truststore.type"
        | "ssl.keystore.password"
        | "ssl.keystore.type" => {
            ctx.note(
                c,
                full,
                "ignored: it belongs to a Java key or trust store (see the store's own line)",
            );
            return Vec::new();
        }
        "ssl.disableTLSHostnameVerification" => {
            if super::truthy(value) {
                keep("ssl.endpoint.identification.algorithm", "none")
            } else {
                return Vec::new();
            }
        }
        "ssl.endpoint.identification.algorithm" if value.is_empty() => {
            keep("ssl.endpoint.identification.algorithm", "none")
        }
        "sasl.jaas.config" => return jaas(ctx, c, full, value),
        "partition.assignment.strategy" => match assignors(value) {
            Ok(v) => keep(key, &v),
            Err(class) => {
                ctx.unmapped(c, full, format!("`{class}` is a Java class; librdkafka's assignors are `range`, `roundrobin` and `cooperative-sticky`"));
                return Vec::new();
            }
        },
        "max.request.size" => keep("message.max.bytes", value),
        "receive.buffer.bytes" => keep("socket.receive.buffer.bytes", value),
        "send.buffer.bytes" => keep("socket.send.buffer.bytes", value),
        "fetch.max.wait.ms" => keep("fetch.wait.max.ms", value),
        "buffer.memory" => {
            ctx.note(
                c,
                full,
                "ignored: librdkafka bounds its queue with `queue.buffering.max.kbytes`",
            );
            return Vec::new();
        }
        "max.poll.records" => {
            ctx.note(
                c,
                full,
                "ignored: Sluice batches by `batch_max_events` and `batch_max_wait`",
            );
            return Vec::new();
        }
        "acks" | "request.required.acks" if client == Client::Producer => {
            if matches!(value, "all" | "-1") {
                keep("acks", "all")
            } else {
                ctx.note(c, full, format!("`{value}` left out: Sluice produces with `acks=all` and idempotence, so an acknowledged event is on every in-sync replica (stronger than Flume's default `1`)"));
                return Vec::new();
            }
        }
        "interceptor.classes"
        | "partitioner.class"
        | "metric.reporters"
        | "sasl.login.callback.handler.class"
        | "sasl.client.callback.handler.class" => {
            ctx.unmapped(c, full, "Java classes cannot run in Sluice: port what it does to a plugin (`sluice plugin new --lang rust <name>`), or leave it out");
            return Vec::new();
        }
        _ => keep(key, value),
    };
    out.into_iter()
        .filter(|(k, v)| match librdkafka_accepts(k, v) {
            Ok(()) => true,
            Err(e) => {
                ctx.unmapped(c, full, format!("left out: librdkafka refuses `{k}` ({e}); it is a Java client setting without a librdkafka equivalent, or a value librdkafka reads differently"));
                false
            }
        })
        .collect()
}

/// A property value as TOML: integers and booleans as such.
fn typed(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return Value::Int(n);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::str(v),
    }
}

/// Whether librdkafka takes `key` = `value` (checked without a client).
fn librdkafka_accepts(key: &str, value: &Value) -> Result<(), String> {
    let text = match value {
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) | Value::Interp(s) => s.clone(),
        // `{ env = ... }` secrets are checked when the configuration loads.
        _ => return Ok(()),
    };
    ClientConfig::new()
        .set(key, text)
        .create_native_config()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Java assignor classes → librdkafka's names; `Err` with the first class
/// that has none.
fn assignors(value: &str) -> Result<String, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|class| {
            let simple = class.rsplit('.').next().unwrap_or(class);
            match simple {
                "RangeAssignor" | "range" => Ok("range"),
                "RoundRobinAssignor" | "roundrobin" => Ok("roundrobin"),
                "CooperativeStickyAssignor" | "cooperative-sticky" => Ok("cooperative-sticky"),
                _ => Err(class.to_owned()),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|names| names.join(","))
}

/// `sasl.jaas.config`: PLAIN and SCRAM logins become `sasl.username` and a
/// password read from the environment; Kerberos logins their keytab and
/// principal.
fn jaas(ctx: &mut Ctx, c: &Component, full: &str, value: &str) -> Vec<(String, Value)> {
    let module = value.split_whitespace().next().unwrap_or("");
    let options = jaas_options(value);
    let get = |k: &str| options.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if module.ends_with("PlainLoginModule") || module.ends_with("ScramLoginModule") {
        let (Some(user), Some(_)) = (get("username"), get("password")) else {
            ctx.unmapped(c, full, "a JAAS login without `username` and `password`: set `sasl.username` and `sasl.password`");
            return Vec::new();
        };
        let var = format!(
            "{}_{}_KAFKA_PASSWORD",
            sanitize(&ctx.agent.name),
            sanitize(&c.name)
        )
        .to_ascii_uppercase()
        .replace('-', "_");
        ctx.note(c, full, format!("the password moved out of the file: Sluice reads it from the environment variable `{var}` (set it to the `password` of this line); the user name became `sasl.username`"));
        return vec![
            ("sasl.username".into(), Value::str(user)),
            (
                "sasl.password".into(),
                Value::Inline(vec![("env".into(), Value::str(var))]),
            ),
        ];
    }
    if module.ends_with("Krb5LoginModule") {
        let mut out = Vec::new();
        if let Some(keytab) = get("keyTab") {
            out.push(("sasl.kerberos.keytab".to_owned(), Value::str(keytab)));
        }
        if let Some(principal) = get("principal") {
            out.push(("sasl.kerberos.principal".to_owned(), Value::str(principal)));
        }
        ctx.note(c, full, "Kerberos: librdkafka logs in with `kinit` using `sasl.kerberos.keytab` and `sasl.kerberos.principal` (written from this line); `sasl.mechanism` GSSAPI is librdkafka's default too");
        return out;
    }
    ctx.unmapped(c, full, format!("the JAAS login module `{module}` has no librdkafka equivalent: set librdkafka's `sasl.*` properties instead"));
    Vec::new()
}

/// The `name="value"` options of a JAAS line.
fn jaas_options(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_owned();
        let after = rest[eq + 1..].trim_start();
        let (v, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => {
                let end = after
                    .find(|c: char| c.is_whitespace() || c == ';')
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push((name, v.to_owned()));
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_options_are_read() {
        let line = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cr=t";"#;
        assert_eq!(
            jaas_options(line),
            [
                ("username".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "s3cr=t".to_owned())
            ]
        );
        assert_eq!(
            jaas_options("Krb5LoginModule required useKeyTab=true keyTab=\"/k.keytab\";"),
            [
                ("useKeyTab".to_owned(), "true".to_owned()),
                ("keyTab".to_owned(), "/k.keytab".to_owned())
            ]
        );
    }

    #[test]
    fn assignor_classes_map_to_librdkafka_names() {
        assert_eq!(
            assignors("org.apache.kafka.clients.consumer.RoundRobinAssignor").unwrap(),
            "roundrobin"
        );
        assert_eq!(
            assignors("range, cooperative-sticky").unwrap(),
            "range,cooperative-sticky"
        );
        assert!(assignors("com.example.Mine").is_err());
    }

    #[test]
    fn librdkafka_checks_names_and_values() {
        assert!(librdkafka_accepts("linger.ms", &Value::Int(5)).is_ok());
        assert!(librdkafka_accepts("compression.type", &Value::str("snappy")).is_ok());
        assert!(librdkafka_accepts("security.protocol", &Value::str("SASL_SSL")).is_ok());
        assert!(librdkafka_accepts("max.block.ms", &Value::Int(5)).is_err());
        assert!(librdkafka_accepts("compression.type", &Value::str("brotli")).is_err());
    }
}
