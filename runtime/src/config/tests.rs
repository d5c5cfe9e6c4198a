//! Configuration loading: positions and keys in errors, references, env.

use std::path::Path;

use super::*;

const VALID: &str = r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
channels = ["lake"]

[channels.lake]
type = "memory"
capacity_events = 500

[sinks.lake]
type = "null"
channel = "lake"
"#;

fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    parse(Path::new("conf/test.toml"), text, |name| {
        (name == "BROKER").then(|| "10.0.0.1:9092".to_string())
    })
}

fn single_error(text: &str) -> ConfigError {
    let errors = parse_str(text).expect_err("config should be rejected").0;
    assert_eq!(errors.len(), 1, "expected one error, got {errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn a_valid_config_loads() {
    let config = parse_str(VALID).unwrap();
    assert_eq!(config.sources["tx"].channels, vec!["lake".to_string()]);
    let Some(memory) = config.channels["lake"]
        .as_any()
        .downcast_ref::<crate::channels::memory::MemoryChannelConfig>()
    else {
        panic!("expected a memory channel");
    };
    assert_eq!(memory.capacity_events, 500);
    assert_eq!(config.sinks["lake"].channel, "lake");
}

#[test]
fn a_misspelled_key_names_file_line_col_and_key() {
    let text = VALID.replace("capacity_events = 500", "capacity_evnts = 500");
    let err = single_error(&text);
    assert_eq!((err.line, err.col), (11, 1));
    assert_eq!(err.key, "channels.lake.capacity_evnts");
    let shown = err.to_string();
    assert!(
        shown.starts_with("conf/test.toml:11:1: `channels.lake.capacity_evnts`: unknown key"),
        "{shown}"
    );
    assert!(
        shown.contains("capacity_events"),
        "should list expected keys: {shown}"
    );
}

#[test]
fn a_misspelled_key_inside_a_component_is_located() {
    let text = VALID.replace("group_id = \"g\"", "group_idd = \"g\"");
    let errors = parse_str(&text).unwrap_err().0;
    let err = errors
        .iter()
        .find(|e| e.key == "sources.tx.group_idd")
        .unwrap_or_else(|| panic!("no error for the key: {errors:?}"));
    assert_eq!((err.line, err.col), (5, 1));
}

#[test]
fn wrong_types_and_values_are_explained() {
    let err = single_error(&VALID.replace("capacity_events = 500", "capacity_events = \"lots\""));
    assert_eq!(err.key, "channels.lake.capacity_events");
    assert_eq!(err.line, 11);
    let err = single_error(&VALID.replace("type = \"null\"", "type = \"hdfs\""));
    assert_eq!(err.key, "sinks.lake.type");
    assert!(err.message.contains("`object_store`"), "{}", err.message);
}

#[test]
fn dangling_references_are_errors() {
    let errors = parse_str(&VALID.replace("channel = \"lake\"", "channel = \"laek\""))
        .unwrap_err()
        .0;
    let err = errors
        .iter()
        .find(|e| e.key == "sinks.lake.channel")
        .expect("error on the sink");
    assert!(
        err.message.contains("no channel named `laek`"),
        "{}",
        err.message
    );
    assert_eq!((err.line, err.col), (15, 1));
    // The channel it meant is now drained by nobody, which is reported too.
    assert!(errors.iter().any(|e| e.key == "channels.lake"));

    let text = VALID.replace(
        "channels = [\"lake\"]",
        "channels = [\"lake\"]\ninterceptors = [\"mask\"]\ndead_letter = \"lake\"",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sources.tx.interceptors.0");
    assert!(
        err.message.contains("no plugin named `mask`"),
        "{}",
        err.message
    );
}

#[test]
fn dead_letter_interceptors_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("mask.wasm");
    std::fs::write(&wasm, b"\0asm").unwrap();
    let plugins = format!(
        "{VALID}\n[plugins.mask]\ntype = \"interceptor\"\npath = \"{0}\"\n\n[plugins.dec]\ntype = \"decoder\"\npath = \"{0}\"\n",
        wasm.display()
    );
    // Without a dead-letter channel they have nothing to redact.
    let text = plugins.replace(
        "channels = [\"lake\"]",
        "channels = [\"lake\"]\ndead_letter_interceptors = [\"mask\"]",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sources.tx.dead_letter_interceptors");
    assert!(err.message.contains("`dead_letter`"), "{}", err.message);
    // Each names an interceptor.
    let text = plugins.replace(
        "channels = [\"lake\"]",
        "channels = [\"lake\"]\ndead_letter = \"lake\"\ndead_letter_interceptors = [\"mask\", \"dec\"]",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sources.tx.dead_letter_interceptors.1");
    assert!(
        err.message.contains("needs a `interceptor`"),
        "{}",
        err.message
    );
    // A valid one loads, apart from the chain.
    let text = plugins.replace(
        "channels = [\"lake\"]",
        "channels = [\"lake\"]\ndead_letter = \"lake\"\ndead_letter_interceptors = [\"mask\"]",
    );
    let config = parse_str(&text).unwrap();
    let source = &config.sources["tx"];
    assert_eq!(source.chain().count(), 0);
    assert_eq!(source.plugins().collect::<Vec<_>>(), ["mask"]);
}

#[test]
fn plugins_need_a_dead_letter_channel_and_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("mask.wasm");
    std::fs::write(&wasm, b"\0asm").unwrap();
    let text = format!(
        "{VALID}\n[plugins.mask]\ntype = \"interceptor\"\npath = \"{}\"\n",
        wasm.display()
    )
    .replace(
        "channels = [\"lake\"]",
        "channels = [\"lake\"]\ninterceptors = [\"mask\"]",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sources.tx");
    assert!(err.message.contains("dead_letter"), "{}", err.message);

    let text = text.replace("mask.wasm", "nope.wasm").replace(
        "interceptors = [\"mask\"]",
        "interceptors = [\"mask\"]\ndead_letter = \"lake\"",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "plugins.mask.path");
    assert!(err.message.contains("does not exist"), "{}", err.message);
}

#[test]
fn environment_variables_are_interpolated_or_reported() {
    let config = parse_str(&VALID.replace("127.0.0.1:9092", "${BROKER}")).unwrap();
    let Some(kafka) = config.sources["tx"]
        .kind
        .as_any()
        .downcast_ref::<crate::sources::kafka::KafkaSourceConfig>()
    else {
        panic!("expected a kafka source");
    };
    assert_eq!(kafka.bootstrap_servers, "10.0.0.1:9092");
    let err = single_error(&VALID.replace("127.0.0.1:9092", "${MISSING_BROKER}"));
    assert_eq!((err.line, err.col), (4, 22));
    assert!(err.message.contains("MISSING_BROKER"));
}

#[test]
fn toml_syntax_errors_have_positions() {
    let err = single_error("[sources.tx\ntype = 1");
    assert_eq!(err.line, 1);
    assert!(err.message.starts_with("invalid TOML"), "{}", err.message);
}

#[test]
fn unknown_top_level_sections_are_rejected() {
    let err = single_error(&format!("{VALID}\n[sink.x]\ntype = \"null\"\n"));
    assert_eq!(err.key, "sink");
    assert!(err.message.contains("`sinks`"), "{}", err.message);
}

const TEAMS: &str = r#"
[teams.payments]
plugin_dir = "plugins/payments"
max_instances = 1
lookups = ["customers"]

[teams.risk]
plugin_dir = "plugins/risk"

[lookups.customers]
type = "file"
path = "data/customers.csv"
key = "card"

[sources.tx]
type = "kafka"
team = "payments"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
interceptors = ["mask"]
channels = ["lake"]
dead_letter = "lake"

[plugins.mask]
type = "interceptor"
team = "payments"
path = "mask.wasm"

[channels.lake]
type = "memory"

[sinks.lake]
type = "null"
channel = "lake"
"#;

/// Errors of a config, ignoring the missing plugin files of these examples.
fn errors_besides_files(text: &str) -> Vec<ConfigError> {
    match parse_str(text) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.into_iter()
                .filter(|e| !e.message.contains("does not exist"))
                .collect()
        }
    }
}

#[test]
fn team_plugins_resolve_inside_the_team_directory_and_inherit_its_settings() {
    let errors = errors_besides_files(TEAMS);
    assert!(errors.is_empty(), "{errors:?}");
    let config = parse_str(TEAMS).err().unwrap();
    // Only the plugin file is missing, at the team's directory.
    assert!(
        config.0[0].message.contains("plugins/payments/mask.wasm"),
        "{:?}",
        config.0
    );
}

#[test]
fn a_plugin_of_another_team_needs_explicit_sharing() {
    let text = TEAMS.replace(
        "team = \"payments\"\nbootstrap",
        "team = \"risk\"\nbootstrap",
    );
    let errors = errors_besides_files(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "sources.tx.interceptors.0");
    assert!(
        errors[0].message.contains("not shared with team `risk`"),
        "{}",
        errors[0].message
    );
    let shared = text.replace(
        "path = \"mask.wasm\"",
        "path = \"mask.wasm\"\nshared_with = [\"risk\"]",
    );
    assert!(errors_besides_files(&shared).is_empty());
}

#[test]
fn team_and_plugin_keys_are_validated_with_their_key() {
    let cases = [
        (
            TEAMS.replace("team = \"payments\"\npath", "team = \"nobody\"\npath"),
            "plugins.mask.team",
            "no team named `nobody`",
        ),
        (
            TEAMS.replace("path = \"mask.wasm\"", "path = \"../risk/mask.wasm\""),
            "plugins.mask.path",
            "must lie inside the team's plugin_dir",
        ),
        (
            TEAMS.replace(
                "path = \"mask.wasm\"",
                "path = \"mask.wasm\"\nsha256 = \"abc\"",
            ),
            "plugins.mask.sha256",
            "64 hex digits",
        ),
        (
            TEAMS.replace("lookups = [\"customers\"]", "lookups = [\"payroll\"]"),
            "teams.payments.lookups.0",
            "no lookup table named `payroll`",
        ),
        (
            TEAMS.replace(
                "interceptors = [\"mask\"]",
                "interceptors = [\"mask\", \"mask\"]",
            ),
            "teams.payments.max_instances",
            "needs 2 plugin instances",
        ),
        (
            format!(
                "data_dir = \"state\"\n{}",
                TEAMS.replace("plugins/risk", "state/../state/plugins")
            ),
            "teams.risk.plugin_dir",
            "lies inside data_dir",
        ),
        (
            TEAMS.replace("[teams.risk]", "[teams.risk]\noutput_ratio = 0"),
            "teams.risk.output_ratio",
            "must be from 1 to 1000",
        ),
        (
            TEAMS.replace("[teams.risk]", "[teams.risk]\non_failure = \"explode\""),
            "teams.risk.on_failure",
            "unknown variant",
        ),
        (
            TEAMS.replace(
                "[teams.risk]",
                "[teams.default]\nplugin_dir = \"x\"\n[teams.risk]",
            ),
            "teams.default",
            "implicit team",
        ),
    ];
    for (text, key, message) in cases {
        let errors = errors_besides_files(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.key == key && e.message.contains(message)),
            "expected `{key}`: {message}; got {errors:?}"
        );
    }
}

const EXACTLY_ONCE: &str = r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
channels = ["lake"]

[channels.lake]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "lake"
url = "file:///tmp/lake"
roll_interval = "10s"
exactly_once = true
"#;

#[test]
fn an_exactly_once_sink_fed_by_one_kafka_source_loads() {
    let config = parse_str(EXACTLY_ONCE).unwrap();
    assert_eq!(config.exactly_once_source("lake"), Some("tx"));
    assert!(config.channels_closed_to("tx").is_empty());
    assert_eq!(config.channels_closed_to("other"), vec!["lake".to_string()]);
}

#[test]
fn an_exactly_once_sink_fed_by_two_sources_is_rejected_at_its_key() {
    let text = format!(
        "{EXACTLY_ONCE}\n[sources.tx2]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ngroup_id = \"g2\"\ntopics = [\"u\"]\nchannels = [\"lake\"]\n"
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sinks.lake.exactly_once");
    assert_eq!(err.line, 17, "{err}");
    assert!(err.message.contains("exactly one source"), "{err}");
    assert!(err.message.contains("`tx2`"), "{err}");
}

#[test]
fn an_exactly_once_sink_needs_a_memory_channel() {
    let text = EXACTLY_ONCE.replace(
        "[channels.lake]\ntype = \"memory\"",
        "[channels.lake]\ntype = \"file\"",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sinks.lake.exactly_once");
    assert!(err.message.contains("`memory` channel"), "{err}");
}

#[test]
fn an_exactly_once_channel_cannot_take_dead_letters() {
    let text = EXACTLY_ONCE.replace(
        "channels = [\"lake\"]\n",
        "channels = [\"lake\"]\ndead_letter = \"lake\"\n",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sinks.lake.exactly_once");
    assert!(err.message.contains("dead_letter"), "{err}");
}

#[test]
fn a_bounded_source_loads_and_its_sinks_must_release_without_more_input() {
    let bounded = EXACTLY_ONCE.replace(
        "channels = [\"lake\"]\n",
        "channels = [\"lake\"]\n[sources.tx.bounded]\nstart = { \"t:0\" = 5 }\nend = \"2026-12-03T00:00:00Z\"\n",
    );
    let config = parse_str(&bounded).unwrap();
    assert!(config.sources["tx"].kind.bounded());
    // A file that rolls by size alone would hold the last batch for ever.
    let err = single_error(&bounded.replace("roll_interval = \"10s\"", "roll_size = \"1MiB\""));
    assert_eq!(err.key, "sinks.lake", "{err}");
    assert!(err.message.contains("bounded source `tx`"), "{err}");
    assert!(err.message.contains("roll_idle"), "{err}");
    // A bad key inside `bounded` is reported with its position.
    let errors = parse_str(&bounded.replace("\"t:0\" = 5", "\"u:0\" = 5"))
        .unwrap_err()
        .0;
    let err = &errors[0];
    assert_eq!(err.key, "sources.tx.bounded.start", "{err}");
    assert_eq!(err.line, 9, "{err}");
    assert!(err.message.contains("`u` is not in `topics`"), "{err}");
}

/// A generator with `count` and standard input end on their own and wait
/// until everything they sent is acknowledged: like a bounded Kafka source,
/// they cannot feed a sink that holds its last file open until more input.
#[test]
fn finite_generators_and_stdin_feed_only_sinks_that_release_without_more_input() {
    let lake = |source: &str, roll: &str| {
        format!(
            "[sources.gen]\n{source}\nchannels = [\"lake\"]\n\n[channels.lake]\ntype = \"memory\"\n\n[sinks.lake]\ntype = \"object_store\"\nchannel = \"lake\"\nurl = \"file:///tmp/lake\"\n{roll}\n"
        )
    };
    let by_size = "roll_size = \"1MiB\"";
    for source in ["type = \"generator\"\ncount = 1000", "type = \"stdin\""] {
        let err = single_error(&lake(source, by_size));
        assert_eq!(err.key, "sinks.lake", "{err}");
        assert!(err.message.contains("`gen`"), "{err}");
        assert!(err.message.contains("roll_interval"), "{err}");
        let config = parse_str(&lake(source, "roll_size = \"1MiB\"\nroll_idle = \"2s\"")).unwrap();
        assert!(config.sources["gen"].kind.bounded(), "{source}");
    }
    // Without `count` a generator runs until shutdown, which flushes.
    let endless = parse_str(&lake("type = \"generator\"\nrate = 10", by_size)).unwrap();
    assert!(!endless.sources["gen"].kind.bounded());
}

const EXACTLY_ONCE_KAFKA: &str = r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
channels = ["auths"]

[channels.auths]
type = "memory"

[sinks.auths]
type = "kafka"
channel = "auths"
bootstrap_servers = "127.0.0.1:9092"
topic = "flume.auths"
exactly_once = true
transaction_max_events = 5000
"#;

#[test]
fn an_exactly_once_kafka_sink_loads() {
    let config = parse_str(EXACTLY_ONCE_KAFKA).unwrap();
    let Some(k) = config.sinks["auths"]
        .kind
        .as_any()
        .downcast_ref::<crate::sinks::kafka::KafkaSinkConfig>()
    else {
        panic!("a kafka sink")
    };
    assert!(k.exactly_once);
    assert_eq!(k.transaction_max_events(), 5000);
    assert_eq!(config.sources_feeding("auths"), ["tx"]);
}

#[test]
fn an_exactly_once_sink_needs_exactly_one_source() {
    let second = r#"
[sources.other]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g2"
topics = ["u"]
channels = ["auths"]
"#;
    let err = single_error(&format!("{EXACTLY_ONCE_KAFKA}{second}"));
    assert_eq!(err.key, "sinks.auths.exactly_once");
    assert_eq!((err.line, err.col), (17, 1));
    assert!(err.message.contains("`other`, `tx`"), "{}", err.message);
    assert!(
        err.to_string()
            .starts_with("conf/test.toml:17:1: `sinks.auths.exactly_once`"),
        "{err}"
    );

    // A router may send events to any channel: its source counts as a feeder.
    let text = EXACTLY_ONCE_KAFKA.replace(
        "channels = [\"auths\"]\n",
        "channels = [\"lake\"]\n\n[channels.lake]\ntype = \"memory\"\n\n[sinks.lake]\ntype = \"null\"\nchannel = \"lake\"\n",
    );
    let err = single_error(&text);
    assert_eq!(err.key, "sinks.auths.exactly_once");
    assert!(err.message.contains("fed by none"), "{}", err.message);
}

#[test]
fn transaction_keys_are_checked() {
    let err = single_error(&EXACTLY_ONCE_KAFKA.replace("exactly_once = true\n", ""));
    assert_eq!(err.key, "sinks.auths");
    assert!(
        err.message.contains("`transaction_max_events`"),
        "{}",
        err.message
    );
    let err = single_error(
        &EXACTLY_ONCE_KAFKA.replace("topic = \"flume.auths\"", "topic_header = \"to\""),
    );
    assert!(err.message.contains("needs `topic`"), "{}", err.message);
    let err = single_error(&format!(
        "{EXACTLY_ONCE_KAFKA}[sinks.auths.kafka]\n\"transactional.id\" = \"x\"\n"
    ));
    assert!(
        err.message.contains("`transactional_id`"),
        "{}",
        err.message
    );
    let err = single_error(&EXACTLY_ONCE_KAFKA.replace("5000", "0"));
    assert!(err.message.contains("at least 1"), "{}", err.message);
}

const DURABLE: &str = r#"
data_dir = "state"

[sources.edge]
type = "exec"
command = ["vmstat", "1"]
channels = ["wal"]

[channels.wal]
type = "file"
max_bytes = "10MiB"

[channels.buffer]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "sluice-buffer"
group_id = "lake"

[sinks.a]
type = "null"
channel = "wal"

[sinks.b]
type = "null"
channel = "buffer"
"#;

#[test]
fn durable_channels_and_the_exec_source_load() {
    let config = parse_str(DURABLE).unwrap();
    let Some(file) = config.channels["wal"]
        .as_any()
        .downcast_ref::<crate::channels::file::FileChannelConfig>()
    else {
        panic!("expected a file channel");
    };
    // The default directory lives under data_dir, relative to the file.
    assert_eq!(
        file.dir.as_deref(),
        Some(Path::new("conf/state/channels/wal"))
    );
    assert_eq!(file.max_bytes.get(), 10 << 20);
    let Some(kafka) = config.channels["buffer"]
        .as_any()
        .downcast_ref::<crate::channels::kafka::KafkaChannelConfig>()
    else {
        panic!("expected a kafka channel");
    };
    assert_eq!(kafka.topic, "sluice-buffer");
    let Some(exec) = config.sources["edge"]
        .kind
        .as_any()
        .downcast_ref::<crate::sources::exec::ExecSourceConfig>()
    else {
        panic!("expected an exec source");
    };
    assert_eq!(exec.command, vec!["vmstat".to_string(), "1".to_string()]);
    assert!(exec.restart);
}

#[test]
fn durable_channel_and_exec_keys_are_validated_with_file_line_col_and_key() {
    let cases = [
        (
            DURABLE.replace("max_bytes = \"10MiB\"", "max_bytes = 0"),
            "channels.wal.max_bytes",
            (11, 1),
            "more than 0",
        ),
        (
            DURABLE.replace("max_bytes = \"10MiB\"", "segment_size = \"1KiB\""),
            "channels.wal.segment_size",
            (11, 1),
            "64KiB",
        ),
        (
            DURABLE.replace("max_bytes = \"10MiB\"", "fsync_interval = \"1s\""),
            "channels.wal.fsync_interval",
            (11, 1),
            "only applies",
        ),
        (
            DURABLE.replace("max_bytes = \"10MiB\"", "fsync = \"sometimes\""),
            "channels.wal.fsync",
            (11, 1),
            "unknown variant",
        ),
        (
            DURABLE.replace("max_bytes = \"10MiB\"", "max_byte = 5"),
            "channels.wal.max_byte",
            (11, 1),
            "unknown key",
        ),
        (
            DURABLE.replace("topic = \"sluice-buffer\"", "topic = \"\""),
            "channels.buffer.topic",
            (16, 1),
            "is empty",
        ),
        (
            DURABLE.replace("group_id = \"lake\"", "group_id = \"lake\"\nbatch_max_events = 0"),
            "channels.buffer.batch_max_events",
            (18, 1),
            "at least 1",
        ),
        (
            DURABLE.replace("command = [\"vmstat\", \"1\"]", "command = []"),
            "sources.edge.command",
            (6, 1),
            "is empty",
        ),
        (
            DURABLE.replace(
                "command = [\"vmstat\", \"1\"]",
                "command = [\"vmstat\"]\nstderr = \"file\"",
            ),
            "sources.edge.stderr",
            (7, 1),
            "unknown variant",
        ),
        (
            DURABLE.replace(
                "command = [\"vmstat\", \"1\"]",
                "command = [\"vmstat\"]\nmax_line_bytes = 0",
            ),
            "sources.edge.max_line_bytes",
            (7, 1),
            "between",
        ),
        (
            DURABLE.replace(
                "max_bytes = \"10MiB\"",
                "dir = \"q\"\n\n[channels.wal2]\ntype = \"file\"\ndir = \"q\"\n[sinks.c]\ntype = \"null\"\nchannel = \"wal2\"",
            ),
            "channels.wal2.dir",
            (15, 1),
            "already uses",
        ),
    ];
    for (text, key, (line, col), message) in cases {
        let errors = parse_str(&text).expect_err(key).0;
        let err = errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for `{key}`: {errors:?}"));
        assert!(err.message.contains(message), "{key}: {}", err.message);
        assert_eq!((err.line, err.col), (line, col), "{key}");
        assert!(
            err.to_string()
                .starts_with(&format!("conf/test.toml:{line}:{col}: `{key}`")),
            "{err}"
        );
    }
}

#[test]
fn unreadable_secret_references_point_at_their_property() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("kafka-password");
    let present = dir.path().join("ca-password");
    std::fs::write(&present, "s3cret-from-a-file\n").unwrap();
    let unset = "SLUICE_CONFIG_TEST_SURELY_UNSET_7e2a";
    let text = format!(
        r#"
[lookups.stores]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "stores"
[lookups.stores.properties]
"sasl.password" = {{ env = "{unset}" }}

[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
channels = ["buffer"]
[sources.tx.kafka]
"security.protocol" = "sasl_ssl"
"sasl.password" = {{ file = "{missing}" }}
"ssl.key.password" = {{ file = "{present}" }}

[channels.buffer]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "sluice-buffer"
group_id = "lake"
properties = {{ "sasl.password" = {{ env = "{unset}" }} }}

[sinks.out]
type = "kafka"
channel = "buffer"
bootstrap_servers = "127.0.0.1:9092"
topic = "out"
[sinks.out.kafka]
"sasl.password" = {{ file = "{missing}" }}
"#,
        missing = missing.display(),
        present = present.display(),
    );
    let errors = parse_str(&text).expect_err("unreadable references").0;
    let shown: Vec<(String, usize, String)> = errors
        .iter()
        .map(|e| (e.key.clone(), e.line, e.message.clone()))
        .collect();
    assert_eq!(errors.len(), 4, "{shown:?}");
    let find = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error at {key}: {shown:?}"))
    };
    let lookup = find("lookups.stores.properties.sasl.password");
    assert_eq!(lookup.line, 7);
    assert!(
        lookup
            .message
            .contains(&format!("environment variable `{unset}` is not set")),
        "{}",
        lookup.message
    );
    let source = find("sources.tx.kafka.sasl.password");
    assert_eq!(source.line, 17);
    assert!(
        source
            .message
            .starts_with("`kafka.\"sasl.password\"`: cannot read `")
            && source.message.contains(&missing.display().to_string()),
        "{}",
        source.message
    );
    assert!(
        find("channels.buffer.properties.sasl.password")
            .message
            .contains(unset)
    );
    assert_eq!(find("sinks.out.kafka.sasl.password").line, 33);
    assert!(
        errors.iter().all(|e| !e.to_string().contains("s3cret")),
        "{shown:?}"
    );
}

const SINK_DEAD_LETTER: &str = r#"
[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["t"]
channels = ["out"]

[channels.out]
type = "memory"
[channels.rejects]
type = "memory"

[sinks.out]
type = "kafka"
channel = "out"
bootstrap_servers = "127.0.0.1:9092"
topic = "copy"
dead_letter = "rejects"

[sinks.rejects]
type = "logger"
channel = "rejects"
"#;

#[test]
fn a_sink_dead_letter_channel_is_checked() {
    let c = parse_str(SINK_DEAD_LETTER).unwrap();
    assert_eq!(c.sinks["out"].dead_letter.as_deref(), Some("rejects"));
    let cases = [
        (
            "dead_letter = \"rejects\"",
            "dead_letter = \"nope\"",
            "sinks.out.dead_letter",
            "no channel named `nope`",
        ),
        (
            "dead_letter = \"rejects\"",
            "dead_letter = \"out\"",
            "sinks.out.dead_letter",
            "the channel this sink drains",
        ),
        (
            "type = \"logger\"\nchannel = \"rejects\"",
            "type = \"logger\"\nchannel = \"rejects\"\ndead_letter = \"out\"",
            "sinks.rejects",
            "for `kafka` and `object_store` sinks",
        ),
    ];
    for (from, to, key, message) in cases {
        let errors = parse_str(&SINK_DEAD_LETTER.replace(from, to))
            .unwrap_err()
            .0;
        assert!(
            errors
                .iter()
                .any(|e| e.key == key && e.message.contains(message)),
            "{to}: {errors:?}"
        );
    }
}

#[test]
fn an_object_store_sink_beside_a_transactional_sink_must_roll_by_time() {
    let beside = |rolls: &str| {
        EXACTLY_ONCE_KAFKA.replace(
            "channels = [\"auths\"]\n",
            &format!(
                "channels = [\"auths\", \"copy\"]\n\n[channels.copy]\ntype = \"memory\"\n\n[sinks.copy]\ntype = \"object_store\"\nchannel = \"copy\"\nurl = \"file:///tmp/copy\"\n{rolls}\n"
            ),
        )
    };
    let err = single_error(&beside("roll_size = \"1MiB\""));
    assert_eq!(err.key, "sinks.copy");
    assert!(
        err.message.contains("`roll_interval` or `roll_idle`"),
        "{}",
        err.message
    );
    parse_str(&beside("roll_size = \"1MiB\"\nroll_idle = \"5s\"")).unwrap();
    parse_str(&beside("roll_interval = \"10s\"")).unwrap();
}

#[test]
fn a_file_sink_loads_and_its_keys_are_located() {
    let text = r#"
[sources.s]
type = "exec"
command = ["true"]
channels = ["out"]

[channels.out]
type = "memory"

[sinks.out]
type = "file"
channel = "out"
path = "/tmp/sluice-out.jsonl"
format = "jsonl"
"#;
    let config = parse_str(text).unwrap();
    let Some(file) = config.sinks["out"]
        .kind
        .as_any()
        .downcast_ref::<crate::sinks::file::FileSinkConfig>()
    else {
        panic!("a file sink")
    };
    assert!(file.fsync);
    let err = single_error(&text.replace("format = \"jsonl\"", "fsink = true"));
    assert_eq!(err.key, "sinks.out.fsink");
    assert_eq!((err.line, err.col), (14, 1));
    let err = single_error(&text.replace("/tmp/sluice-out.jsonl", "/"));
    assert_eq!(err.key, "sinks.out.path");
    let errors = parse_str(&format!("{text}dead_letter = \"out\"\n"))
        .unwrap_err()
        .0;
    assert!(
        errors
            .iter()
            .any(|e| e.key == "sinks.out" && e.message.contains("a `file` sink never rejects")),
        "{errors:?}"
    );
}

#[test]
fn parallelism_is_checked_and_defaults_to_the_cores() {
    let config = parse_str(VALID).unwrap();
    assert_eq!(config.sources["tx"].parallelism, default_parallelism());
    assert!((1..=DEFAULT_MAX_PARALLELISM).contains(&default_parallelism()));
    let set = VALID.replace("topics = [\"t\"]", "topics = [\"t\"]\nparallelism = 4");
    assert_eq!(parse_str(&set).unwrap().sources["tx"].parallelism, 4);
    for bad in ["0", "65"] {
        let err = single_error(&VALID.replace(
            "topics = [\"t\"]",
            &format!("topics = [\"t\"]\nparallelism = {bad}"),
        ));
        assert_eq!(err.key, "sources.tx.parallelism");
        assert_eq!((err.line, err.col), (7, 1));
        assert!(err.message.contains("expected 1 to 64"), "{}", err.message);
    }
    let err = single_error(&VALID.replace(
        "topics = [\"t\"]",
        "topics = [\"t\"]\nparallelism = \"all\"",
    ));
    assert_eq!(err.key, "sources.tx.parallelism");
}

#[test]
fn component_names_are_plain_words() {
    let text = VALID.replace("[sinks.lake]", "[sinks.\"lake.v2\"]");
    let e = single_error(&text);
    assert_eq!(e.key, "sinks.lake.v2");
    assert!(e.message.contains("not a valid name"), "{}", e.message);
    assert_eq!(e.line, 13);
}

#[test]
fn the_admin_section_is_checked_where_it_is_written() {
    let e = single_error(&format!("{VALID}\n[admin]\nlisten = \"0.0.0.0:9464\"\n"));
    assert_eq!(e.key, "admin.listen");
    assert!(e.message.contains("token_file"), "{}", e.message);
    let e = single_error(&format!(
        "{VALID}\n[admin]\nlisten = \"127.0.0.1:9464\"\nport = 1\n"
    ));
    assert_eq!(e.key, "admin.port");
    let e = single_error(&format!("{VALID}\n[admin]\nlisten = \"localhost\"\n"));
    assert_eq!(e.key, "admin.listen");
    let ok = parse_str(&format!("{VALID}\n[admin]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
    assert_eq!(ok.admin.unwrap().listen.port(), 9464);
}

#[test]
fn a_kafka_topic_named_like_a_file_source_cannot_share_its_durable_channel() {
    let text = |pattern: &str| {
        format!(
            r#"data_dir = "/tmp/sluice-test"

[sources.app]
type = "taildir"
filegroups = {{ a = "/var/log/app/*.log" }}
channels = ["wal"]

[sources.tx]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
{pattern}
channels = ["wal"]

[channels.wal]
type = "file"

[sinks.out]
type = "null"
channel = "wal"
"#
        )
    };
    for clash in ["topics = [\"app\"]", "topic_pattern = \"a.p\""] {
        let err = single_error(&text(clash));
        assert_eq!(err.key, "sources.tx.channels", "{err}");
        assert!(
            err.message.contains("shares the durable channel `wal`"),
            "{err}"
        );
    }
    assert!(parse_str(&text("topics = [\"other\"]")).is_ok());
}

#[test]
fn an_exactly_once_sink_may_be_fed_by_a_file_source() {
    let text = r#"data_dir = "/tmp/sluice-test"

[sources.app]
type = "spooldir"
dir = "/var/spool/app"
channels = ["mem"]

[channels.mem]
type = "memory"

[sinks.lake]
type = "object_store"
channel = "mem"
url = "file:///tmp/lake"
roll_interval = "10s"
exactly_once = true
"#;
    let config = parse_str(text).unwrap();
    assert_eq!(config.exactly_once_source("lake"), Some("app"));
    let exec = text.replace(
        "type = \"spooldir\"\ndir = \"/var/spool/app\"",
        "type = \"exec\"\ncommand = [\"date\"]",
    );
    let err = single_error(&exec);
    assert!(
        err.message.contains("re-read from a committed position"),
        "{err}"
    );
}
