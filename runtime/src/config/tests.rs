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
    let ChannelDef::Memory(memory) = &config.channels["lake"];
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
    let SourceKind::Kafka(kafka) = &config.sources["tx"].kind;
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
