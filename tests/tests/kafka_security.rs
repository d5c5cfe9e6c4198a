//! Scenarios: every Kafka client of Sluice against a broker that
//! authenticates and authorizes — Apache Kafka with SSL, SASL_SSL and
//! SASL_PLAINTEXT listeners and ACLs (`scripts/kafka.sh`, started by
//! `scripts/services.sh`; see [`sluice_tests::secure`]).
//!
//! - **Over each listener** — SSL; SASL_SSL with SCRAM-SHA-256 and with
//!   SCRAM-SHA-512; SASL_PLAINTEXT with PLAIN — an agent (`sluice run`, this
//!   test binary re-executed) runs a `kafka` source → channel → Kafka sink
//!   pipeline over that listener, and every record of the input topic must
//!   arrive in the output topic. Between them the passes use a `kafka`
//!   channel, the transactional sink (`exactly_once = true`) and a Kafka
//!   lookup table (followed by the agent, and in-process to check it fills),
//!   and give the password inline, as `{ file = ... }` and as
//!   `{ env = ... }`. The password must appear nowhere in the agent's output
//!   or data directory (one pass runs with librdkafka's `debug` logs on).
//! - **Bad credentials** — a wrong SCRAM password, an untrusted CA
//!   (`ssl.ca.location` = an unrelated CA), a user without ACLs: for each,
//!   five agents run at once, each with one client misconfigured (the
//!   source, the Kafka sink, the transactional sink, a `kafka` channel, a
//!   lookup table; the others use the PLAINTEXT listener). Each must exit
//!   non-zero within 30 s with an `error: ...` naming the component, the
//!   broker address and the cause, and no password anywhere in its output
//!   or data directory.
//! - **Compression** — topics produced with gzip, snappy, lz4 and zstd are
//!   read, and the Kafka sink writes with each `compression.type`; the
//!   output is read back with a plain consumer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_tests::secure::{
    Listener, Mechanism, Password, Secure, files_containing, interrupt, secure, toml_string,
    wait_for_exit,
};
use sluice_tests::{create_topic, spawn_agent, unique};

const AGENT_ENV: &str = "SLUICE_TEST_SECURITY_AGENT_CONFIG";
/// Records per input topic.
const RECORDS: usize = 200;
/// How long a working pipeline gets to deliver every record.
const DELIVERY_WITHIN: Duration = Duration::from_secs(90);
/// How soon an agent with bad credentials must have stopped.
const FAIL_WITHIN: Duration = Duration::from_secs(30);

/// Not a test of its own: the body of an agent process (this test binary
/// re-executed by [`spawn_agent`]).
#[test]
fn agent_process() {
    sluice_tests::secure::run_cli_agent_if_asked(AGENT_ENV, "info,librdkafka=debug");
}

/// Produces `n` records `<tag>-<i>` (keys `k<i>`) to `topic` over PLAINTEXT,
/// compressed with `codec`; returns the bodies.
async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    codec: &str,
    tag: &str,
) -> Result<Vec<String>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .create()
        .context("creating a producer")?;
    let bodies: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let mut pending = Vec::with_capacity(n);
    for (i, body) in bodies.iter().enumerate() {
        let key = format!("k{i}");
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(body))
                .map_err(|(e, _)| e)?,
        );
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(bodies)
}

/// Reads `topic` from the beginning over PLAINTEXT (`read_committed`) until
/// every body of `want` was seen or `within` passed, or `agent` exited;
/// returns the bodies seen. Blocking.
fn read_until(
    bootstrap: &str,
    topic: &str,
    want: &HashSet<String>,
    within: Duration,
    agent: Option<&mut Child>,
) -> Result<HashSet<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("sec-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut agent = agent;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + within;
    while !want.is_subset(&seen) && Instant::now() < deadline {
        if let Some(child) = agent.as_deref_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("the agent exited ({status}) before delivering everything");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            seen.insert(String::from_utf8_lossy(m.payload().unwrap_or(&[])).into_owned());
        }
    }
    Ok(seen)
}

/// The agent's output, for messages.
fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Fails if any of `secrets` is in the agent's log or under `data_dir`.
fn assert_no_secret(log: &Path, data_dir: &Path, secrets: &[&str]) {
    for secret in secrets {
        let text = log_text(log);
        assert!(
            !text.contains(secret),
            "a password is in the agent's output {}:\n{text}",
            log.display()
        );
        let files = files_containing(data_dir, secret);
        assert!(files.is_empty(), "a password is in {files:?}");
    }
}

/// Which clients of a pipeline pass go over the secured listener besides
/// the source and the sink.
#[derive(Debug, Clone, Copy)]
struct Pass {
    listener: Listener,
    /// A `kafka` channel between source and sink (else `memory`).
    kafka_channel: bool,
    /// The sink is transactional (needs a memory channel).
    exactly_once: bool,
    /// A Kafka lookup table follows a topic over the listener.
    lookup: bool,
    /// librdkafka's own debug logs (`debug = "security,broker,conf"`).
    debug: bool,
}

/// How a pass gives the password.
#[derive(Debug, Clone, Copy)]
enum Form {
    Inline,
    File,
    Env,
}

async fn pipeline_over(pass: Pass, form: Form) -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (input, output) = (unique("sec-in"), unique("sec-out"));
    create_topic(&s.plaintext, &input, 2).await?;
    create_topic(&s.plaintext, &output, 1).await?;
    let want: HashSet<String> = produce(&s.plaintext, &input, RECORDS, "none", &input)
        .await?
        .into_iter()
        .collect();

    let password = match form {
        Form::Inline => Password::Inline(s.password.clone()),
        Form::File => {
            // Outside the data directory, which is searched for the password.
            let path = dir.path().join("kafka-password");
            std::fs::write(&path, format!("{}\n", s.password))?;
            Password::File(path)
        }
        Form::Env => Password::Env("SLUICE_TEST_KAFKA_PASSWORD".into()),
    };
    let mut props = s.properties_toml(pass.listener, &s.ca, &s.user, &password);
    if pass.debug {
        props += "\"debug\" = \"security,broker,conf\"\n";
    }
    let bootstrap = s.bootstrap(pass.listener).to_owned();
    let chan_topic = unique("sec-chan");
    let channel = if pass.kafka_channel {
        create_topic(&s.plaintext, &chan_topic, 2).await?;
        format!(
            "type = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ntopic = \"{chan_topic}\"\ngroup_id = \"{}\"\nbatch_max_wait = \"20ms\"\n[channels.buffer.properties]\n{props}",
            unique("sec-chan-group")
        )
    } else {
        "type = \"memory\"\n".to_owned()
    };
    let transactions = if pass.exactly_once {
        format!(
            "exactly_once = true\ntransactional_id = \"{}\"\ntransaction_max_wait = \"50ms\"\n",
            unique("sec-txn")
        )
    } else {
        String::new()
    };
    let stores = unique("sec-stores");
    let lookup = if pass.lookup {
        create_topic(&s.plaintext, &stores, 1).await?;
        produce(&s.plaintext, &stores, 5, "none", "store").await?;
        format!(
            "[lookups.stores]\ntype = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ntopic = \"{stores}\"\n[lookups.stores.properties]\n{props}\n"
        )
    } else {
        String::new()
    };
    let config_text = format!(
        r#"data_dir = "data"

{lookup}
[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topics = ["{input}"]
batch_max_wait = "20ms"
channels = ["buffer"]
[sources.in.kafka]
{props}
[channels.buffer]
{channel}
[sinks.out]
type = "kafka"
channel = "buffer"
bootstrap_servers = "{bootstrap}"
topic = "{output}"
{transactions}[sinks.out.kafka]
{props}"#,
        group = unique("sec-group"),
    );
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, &config_text)?;
    let log = dir.path().join("agent.log");
    let data_dir = dir.path().join("data");
    let mut agent = spawn_agent(AGENT_ENV, &config, &log)?;

    // The lookup table fills over the listener (in-process, same config).
    if pass.lookup {
        let loaded = sluice::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(cfg) = loaded.lookups.get("stores").and_then(|def| {
            def.kind
                .as_any()
                .downcast_ref::<sluice::lookup::config::KafkaLookupConfig>()
        }) else {
            bail!("no kafka lookup `stores` in {config_text}");
        };
        let table = std::sync::Arc::new(sluice::lookup::LookupTable::new("stores"));
        let metrics = sluice::metrics::Metrics::default();
        let follower = tokio::task::block_in_place(|| {
            sluice::lookup::kafka::follow(cfg, &bootstrap, table.clone(), &metrics)
        })
        .map_err(anyhow::Error::msg)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while table.len() < 5 {
            ensure!(
                Instant::now() < deadline,
                "the lookup table holds {} of 5 keys after 30 s",
                table.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(table.get("k3").as_deref(), Some("store-3"));
        drop(follower);
    }

    let (seen, mut agent) = {
        let (plaintext, output, want) = (s.plaintext.clone(), output.clone(), want.clone());
        tokio::task::spawn_blocking(move || {
            let seen = read_until(
                &plaintext,
                &output,
                &want,
                DELIVERY_WITHIN,
                Some(&mut agent),
            );
            (seen, agent)
        })
        .await?
    };
    let stopped = interrupt(&mut agent, Duration::from_secs(30))?;
    let seen = seen.with_context(|| log_text(&log))?;
    let missing = want.difference(&seen).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {RECORDS} records did not arrive over {:?}; agent output:\n{}",
        pass.listener,
        log_text(&log)
    );
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the agent did not stop cleanly ({stopped:?}):\n{}",
        log_text(&log)
    );
    assert_no_secret(&log, &data_dir, &[&s.password]);
    eprintln!(
        "{:?} ({form:?} password): {RECORDS} records delivered; agent output {} lines",
        pass.listener,
        log_text(&log).lines().count()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ssl_with_a_transactional_sink_and_a_lookup_table() -> Result<()> {
    let pass = Pass {
        listener: Listener::Ssl,
        kafka_channel: false,
        exactly_once: true,
        lookup: true,
        debug: false,
    };
    pipeline_over(pass, Form::Inline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_ssl_scram_sha_256_with_a_kafka_channel_and_a_password_file() -> Result<()> {
    let pass = Pass {
        listener: Listener::SaslSsl(Mechanism::ScramSha256),
        kafka_channel: true,
        exactly_once: false,
        lookup: true,
        debug: false,
    };
    pipeline_over(pass, Form::File).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_ssl_scram_sha_512_with_a_transactional_sink_and_the_password_in_the_environment()
-> Result<()> {
    let pass = Pass {
        listener: Listener::SaslSsl(Mechanism::ScramSha512),
        kafka_channel: false,
        exactly_once: true,
        lookup: false,
        debug: false,
    };
    pipeline_over(pass, Form::Env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_plaintext_plain_with_a_kafka_channel_and_librdkafka_debug_logs() -> Result<()> {
    let pass = Pass {
        listener: Listener::SaslPlaintext(Mechanism::Plain),
        kafka_channel: true,
        exactly_once: false,
        lookup: true,
        debug: true,
    };
    pipeline_over(pass, Form::Inline).await
}

/// The client that gets the bad settings; the others use PLAINTEXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Source,
    Sink,
    TransactionalSink,
    Channel,
    Lookup,
}

impl Part {
    const ALL: [Part; 5] = [
        Part::Source,
        Part::Sink,
        Part::TransactionalSink,
        Part::Channel,
        Part::Lookup,
    ];

    /// How the error names the component.
    fn component(self) -> &'static str {
        match self {
            Part::Source => "source `in`",
            Part::Sink | Part::TransactionalSink => "sink `out`",
            Part::Channel => "channel `buffer`",
            Part::Lookup => "lookup `stores`",
        }
    }
}

/// Topics the bad-credential agents use, created once per scenario.
struct Topics {
    input: String,
    output: String,
    stores: String,
}

/// A pipeline whose `part` talks to `bad_bootstrap` with `bad_props`.
fn bad_config(s: &Secure, t: &Topics, part: Part, bad_bootstrap: &str, bad_props: &str) -> String {
    let plain = &s.plaintext;
    let (src_bootstrap, src_props) = match part {
        Part::Source => (bad_bootstrap, bad_props),
        _ => (plain.as_str(), ""),
    };
    let lookup = match part {
        Part::Lookup => format!(
            "[lookups.stores]\ntype = \"kafka\"\nbootstrap_servers = \"{bad_bootstrap}\"\ntopic = \"{}\"\n[lookups.stores.properties]\n{bad_props}\n",
            t.stores
        ),
        _ => String::new(),
    };
    let channel = match part {
        Part::Channel => format!(
            "type = \"kafka\"\nbootstrap_servers = \"{bad_bootstrap}\"\ntopic = \"{}\"\ngroup_id = \"{}\"\n[channels.buffer.properties]\n{bad_props}",
            unique("sec-bad-chan"),
            unique("sec-bad-chan-group")
        ),
        _ => "type = \"memory\"\n".to_owned(),
    };
    let sink = match part {
        Part::Sink | Part::TransactionalSink => format!(
            "type = \"kafka\"\nchannel = \"buffer\"\nbootstrap_servers = \"{bad_bootstrap}\"\ntopic = \"{}\"\n{}[sinks.out.kafka]\n{bad_props}",
            t.output,
            if part == Part::TransactionalSink {
                format!(
                    "exactly_once = true\ntransactional_id = \"{}\"\n",
                    unique("sec-bad-txn")
                )
            } else {
                String::new()
            }
        ),
        _ => "type = \"null\"\nchannel = \"buffer\"\n".to_owned(),
    };
    format!(
        r#"data_dir = "data"

{lookup}
[sources.in]
type = "kafka"
bootstrap_servers = "{src_bootstrap}"
group_id = "{group}"
topics = ["{input}"]
channels = ["buffer"]
[sources.in.kafka]
{src_props}
[channels.buffer]
{channel}
[sinks.out]
{sink}"#,
        group = unique("sec-bad-group"),
        input = t.input,
    )
}

/// Runs one agent per [`Part`] with `listener`, `ca`, `user` and `password`
/// on that part, at once; each must fail within [`FAIL_WITHIN`] with an
/// error naming the part's component, the listener's address and `cause`,
/// and none of `secrets` may appear in its output or data directory.
async fn each_client_fails(
    listener: Listener,
    ca: &Path,
    user: &str,
    password: Password,
    cause: &str,
    secrets: &[&str],
) -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    let t = Topics {
        input: unique("sec-bad-in"),
        output: unique("sec-bad-out"),
        stores: unique("sec-bad-stores"),
    };
    for topic in [&t.input, &t.output, &t.stores] {
        create_topic(&s.plaintext, topic, 1).await?;
    }
    produce(&s.plaintext, &t.input, 20, "none", "bad").await?;
    produce(&s.plaintext, &t.stores, 1, "none", "store").await?;
    let bad_bootstrap = s.bootstrap(listener).to_owned();
    let bad_props = s.properties_toml(listener, ca, user, &password);

    let root = tempfile::tempdir()?;
    let mut runs: Vec<(Part, PathBuf, PathBuf, Instant, Child)> = Vec::new();
    for part in Part::ALL {
        let dir = root.path().join(format!("{part:?}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("pipeline.toml");
        std::fs::write(
            &config,
            bad_config(&s, &t, part, &bad_bootstrap, &bad_props),
        )?;
        let log = dir.join("agent.log");
        let started = Instant::now();
        let child = spawn_agent(AGENT_ENV, &config, &log)?;
        runs.push((part, dir, log, started, child));
    }
    let outcomes = tokio::task::spawn_blocking(move || {
        runs.into_iter()
            .map(|(part, dir, log, started, mut child)| {
                let waited =
                    wait_for_exit(&mut child, started, FAIL_WITHIN + Duration::from_secs(30));
                (part, dir, log, waited)
            })
            .collect::<Vec<_>>()
    })
    .await?;

    let mut failures = Vec::new();
    for (part, dir, log, waited) in outcomes {
        let (status, elapsed) = waited?;
        let text = log_text(&log);
        let component = part.component();
        let error_line = text.lines().find(|l| {
            l.starts_with("error: ")
                && l.contains(component)
                && l.contains(&bad_bootstrap)
                && l.contains(cause)
        });
        eprintln!(
            "{part:?}: exited {status:?} after {elapsed:?}: {}",
            error_line.unwrap_or("(no matching error line)")
        );
        match status {
            None => failures.push(format!("{part:?}: still running after {elapsed:?}")),
            Some(st) if st.success() => failures.push(format!("{part:?}: exited successfully")),
            Some(_) if elapsed > FAIL_WITHIN => {
                failures.push(format!("{part:?}: took {elapsed:?} to fail"))
            }
            Some(_) => {}
        }
        if error_line.is_none() {
            failures.push(format!(
                "{part:?}: no `error: ...` line naming {component}, `{bad_bootstrap}` and `{cause}` in:\n{text}"
            ));
        }
        assert_no_secret(&log, &dir.join("data"), secrets);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_scram_password_stops_each_client_soon_and_clearly() -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    let wrong = format!("wrong-{}", unique("pw"));
    each_client_fails(
        Listener::SaslSsl(Mechanism::ScramSha256),
        &s.ca,
        &s.user,
        Password::Inline(wrong.clone()),
        "authentication failed",
        &[&wrong, &s.password],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_stops_each_client_soon_and_clearly() -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    each_client_fails(
        Listener::SaslSsl(Mechanism::ScramSha512),
        &s.other_ca,
        &s.user,
        Password::Env("SLUICE_TEST_KAFKA_PASSWORD".into()),
        "is not trusted",
        &[&s.password],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_acls_stops_each_client_soon_and_clearly() -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("noacl-password");
    std::fs::write(&file, format!("{}\n", s.noacl_password))?;
    each_client_fails(
        Listener::SaslPlaintext(Mechanism::Plain),
        &s.ca,
        &s.noacl_user,
        Password::File(file),
        "authorization failed",
        &[&s.noacl_password, &s.password],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_is_read_and_written() -> Result<()> {
    let Some(s) = secure() else {
        return Ok(());
    };
    const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];
    let mut inputs = Vec::new();
    let mut want = HashSet::new();
    for codec in CODECS {
        let topic = unique(&format!("codec-in-{codec}"));
        create_topic(&s.plaintext, &topic, 1).await?;
        want.extend(produce(&s.plaintext, &topic, RECORDS, codec, &topic).await?);
        inputs.push(topic);
    }
    let mut text = format!(
        "[sources.in]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\ntopics = [{}]\nbatch_max_wait = \"20ms\"\nchannels = [{}]\n",
        s.plaintext,
        unique("codec-group"),
        inputs
            .iter()
            .map(|t| toml_string(t))
            .collect::<Vec<_>>()
            .join(", "),
        CODECS
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut outputs = Vec::new();
    for codec in CODECS {
        let output = unique(&format!("codec-out-{codec}"));
        create_topic(&s.plaintext, &output, 1).await?;
        text += &format!(
            "\n[channels.{codec}]\ntype = \"memory\"\n\n[sinks.{codec}]\ntype = \"kafka\"\nchannel = \"{codec}\"\nbootstrap_servers = \"{}\"\ntopic = \"{output}\"\n[sinks.{codec}.kafka]\n\"compression.type\" = \"{codec}\"\n\"linger.ms\" = 20\n",
            s.plaintext
        );
        outputs.push((codec, output));
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("codecs.toml");
    let config =
        sluice::config::parse(&path, &text, |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = tokio::time::timeout(
        Duration::from_secs(120),
        sluice::topology::run(
            config,
            sluice::topology::RunOptions {
                exit_when_idle: Some(Duration::from_secs(3)),
                ..Default::default()
            },
        ),
    )
    .await
    .context("the pipeline did not go idle in 120 s")??;
    for (codec, output) in outputs {
        let delivered = metrics.get(&format!("sink.{codec}.events"));
        assert!(
            delivered >= want.len() as u64,
            "the {codec} sink delivered {delivered} of {} events",
            want.len()
        );
        let (plaintext, want2) = (s.plaintext.clone(), want.clone());
        let seen = tokio::task::spawn_blocking(move || {
            read_until(&plaintext, &output, &want2, Duration::from_secs(30), None)
        })
        .await??;
        assert_eq!(
            want.difference(&seen).count(),
            0,
            "records written with compression.type = {codec} not read back"
        );
    }
    Ok(())
}
