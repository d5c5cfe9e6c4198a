//! Unit tests of the Flume mapping: each component kind on its own, read
//! back as Sluice reads the output.

use std::path::Path;

use super::{Options, convert};
use crate::import::properties::parse;
use crate::import::{Imported, Severity};

/// Imports agent `a1` of `text`.
fn import(text: &str) -> Imported {
    import_agent(text, "a1")
}

fn import_agent(text: &str, agent: &str) -> Imported {
    let props = parse(text).unwrap();
    convert(
        "flume.conf",
        &props,
        &Options {
            agent: agent.into(),
            plugin_dir: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The output as Sluice reads it: interpolated (every variable set to
/// `<NAME>`), then parsed.
fn toml_of(imported: &Imported) -> toml::Table {
    let text = crate::config::interpolate::interpolate(&imported.toml, |n| Some(format!("<{n}>")))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", imported.toml));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

/// The output loaded as a Sluice configuration; panics with the errors.
fn loads(imported: &Imported) -> crate::config::Config {
    crate::config::parse(
        Path::new("/nonexistent/imported.toml"),
        &imported.toml,
        |n| Some(format!("value-of-{n}")),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

/// The messages of findings of `severity` whose key ends with `key`.
fn findings(imported: &Imported, severity: Severity, key: &str) -> Vec<String> {
    imported
        .report
        .findings
        .iter()
        .filter(|f| f.severity == severity && f.key.ends_with(key))
        .map(|f| f.message.clone())
        .collect()
}

fn unmapped(imported: &Imported, key: &str) -> Vec<String> {
    findings(imported, Severity::Unmapped, key)
}

const MEMORY_LOGGER: &str = "a1.channels = c1\na1.sinks = k1\na1.channels.c1.type = memory\na1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n";

#[test]
fn kafka_source_new_keys() {
    let i = import(&format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.batchSize = 5000\n\
         a1.sources.r1.batchDurationMillis = 2000\n\
         a1.sources.r1.kafka.bootstrap.servers = localhost:9092\n\
         a1.sources.r1.kafka.topics = test1, test2\n\
         a1.sources.r1.kafka.consumer.group.id = custom.g.id\n\
         a1.sources.r1.kafka.consumer.session.timeout.ms = 30000\n\
         a1.sources.r1.kafka.consumer.key.deserializer = org.apache.kafka.common.serialization.StringDeserializer\n\
         a1.sources.r1.kafka.consumer.max.block.ms = 5\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    assert_eq!(r1["type"].as_str(), Some("kafka"));
    assert_eq!(r1["bootstrap_servers"].as_str(), Some("localhost:9092"));
    assert_eq!(r1["group_id"].as_str(), Some("custom.g.id"));
    assert_eq!(r1["topics"].as_array().unwrap().len(), 2);
    assert_eq!(r1["topics"][1].as_str(), Some("test2"));
    assert_eq!(r1["batch_max_events"].as_integer(), Some(5000));
    assert_eq!(r1["batch_max_wait"].as_str(), Some("2s"));
    assert_eq!(r1["start_from"].as_str(), Some("latest"));
    assert_eq!(r1["channels"][0].as_str(), Some("c1"));
    assert_eq!(r1["kafka"]["session.timeout.ms"].as_integer(), Some(30000));
    assert!(r1["kafka"].get("key.deserializer").is_none());
    // A Java-only property librdkafka refuses is reported, not written.
    assert!(r1["kafka"].get("max.block.ms").is_none());
    assert_eq!(unmapped(&i, "max.block.ms").len(), 1);
    let config = loads(&i);
    assert_eq!(config.sources["r1"].type_name, "kafka");
}

#[test]
fn kafka_source_old_keys_and_regex() {
    let i = import(&format!(
        "a1.sources = r1 r2\n\
         a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.zookeeperConnect = zk:2181\n\
         a1.sources.r1.topic = orders\n\
         a1.sources.r1.groupId = g\n\
         a1.sources.r2.type = org.apache.flume.source.kafka.KafkaSource\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.kafka.bootstrap.servers = b:9092\n\
         a1.sources.r2.kafka.topics = ignored\n\
         a1.sources.r2.kafka.topics.regex = ^topic[0-9]$\n\
         a1.sources.r2.kafka.consumer.auto.offset.reset = earliest\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    assert_eq!(
        t["sources"]["r1"]["bootstrap_servers"].as_str(),
        Some("CHANGE-ME:9092")
    );
    assert_eq!(t["sources"]["r1"]["topics"][0].as_str(), Some("orders"));
    assert_eq!(t["sources"]["r1"]["group_id"].as_str(), Some("g"));
    assert!(unmapped(&i, "r1.zookeeperConnect")[0].contains("ZooKeeper"));
    assert_eq!(
        t["sources"]["r2"]["topic_pattern"].as_str(),
        Some("^topic[0-9]$")
    );
    assert!(t["sources"]["r2"].get("topics").is_none());
    assert_eq!(t["sources"]["r2"]["start_from"].as_str(), Some("earliest"));
    loads(&i);
}

#[test]
fn exec_source() {
    let i = import(&format!(
        "a1.sources = r1 r2\n\
         a1.sources.r1.type = exec\n\
         a1.sources.r1.command = tail -F /var/log/secure\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r2.type = EXEC\n\
         a1.sources.r2.command = for i in /path/*.txt; do cat $i; done\n\
         a1.sources.r2.shell = /bin/bash -c\n\
         a1.sources.r2.restart = true\n\
         a1.sources.r2.restartThrottle = 2500\n\
         a1.sources.r2.logStdErr = false\n\
         a1.sources.r2.batchSize = 20\n\
         a1.sources.r2.batchTimeout = 3000\n\
         a1.sources.r2.channels = c1\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    let argv: Vec<&str> = r1["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(argv, ["sh", "-c", "tail -F /var/log/secure"]);
    assert_eq!(r1["restart"].as_bool(), Some(false));
    let r2 = &t["sources"]["r2"];
    let argv: Vec<&str> = r2["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // `$i` survives Sluice's `${VAR}` interpolation.
    assert_eq!(
        argv,
        ["/bin/bash", "-c", "for i in /path/*.txt; do cat $i; done"]
    );
    assert_eq!(r2["restart"].as_bool(), Some(true));
    assert_eq!(r2["restart_backoff"].as_str(), Some("2500ms"));
    assert_eq!(r2["stderr"].as_str(), Some("ignore"));
    assert_eq!(r2["batch_max_events"].as_integer(), Some(20));
    assert_eq!(r2["batch_max_wait"].as_str(), Some("3s"));
    assert_eq!(i.report.unmapped(), 0, "{:?}", i.report);
    loads(&i);
}

#[test]
fn spooldir_source() {
    let i = import(&format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.spoolDir = /var/log/apache/flumeSpool\n\
         a1.sources.r1.fileSuffix = .DONE\n\
         a1.sources.r1.deletePolicy = immediate\n\
         a1.sources.r1.includePattern = ^.*\\\\.log$\n\
         a1.sources.r1.ignorePattern = (?<=x)y\n\
         a1.sources.r1.fileHeader = true\n\
         a1.sources.r1.basenameHeader = true\n\
         a1.sources.r1.basenameHeaderKey = name\n\
         a1.sources.r1.consumeOrder = random\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.deserializer.maxLineLength = 4096\n\
         a1.sources.r1.recursiveDirectorySearch = true\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    assert_eq!(r1["type"].as_str(), Some("spooldir"));
    assert_eq!(r1["dir"].as_str(), Some("/var/log/apache/flumeSpool"));
    assert_eq!(r1["completed_suffix"].as_str(), Some(".DONE"));
    assert_eq!(r1["delete_policy"].as_str(), Some("immediate"));
    assert_eq!(r1["include_pattern"].as_str(), Some(r"^.*\.log$"));
    assert!(r1.get("ignore_pattern").is_none(), "look-behind is refused");
    assert_eq!(unmapped(&i, "ignorePattern").len(), 1);
    assert_eq!(r1["file_header"].as_str(), Some("file"));
    assert_eq!(r1["basename_header"].as_str(), Some("name"));
    assert_eq!(r1["consume_order"].as_str(), Some("random"));
    assert_eq!(r1["batch_max_events"].as_integer(), Some(100));
    assert_eq!(r1["max_line_bytes"].as_integer(), Some(4096));
    assert_eq!(unmapped(&i, "recursiveDirectorySearch").len(), 1);
    loads(&i);
}

#[test]
fn taildir_source() {
    let i = import(&format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = org.apache.flume.source.taildir.TaildirSource\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.positionFile = /var/log/flume/taildir_position.json\n\
         a1.sources.r1.filegroups = f1 f2 f3\n\
         a1.sources.r1.filegroups.f1 = /var/log/test1/example\\\\.log\n\
         a1.sources.r1.headers.f1.headerKey1 = value1\n\
         a1.sources.r1.filegroups.f2 = /var/log/test2/.*log.*\n\
         a1.sources.r1.headers.f2.headerKey1 = value2\n\
         a1.sources.r1.headers.f2.headerKey2 = value2-2\n\
         a1.sources.r1.filegroups.f3 = /var/log/test3/(a|b)\\\\.log\n\
         a1.sources.r1.headers.f3.k = v\n\
         a1.sources.r1.fileHeader = true\n\
         a1.sources.r1.fileHeaderKey = path\n\
         a1.sources.r1.skipToEnd = true\n\
         a1.sources.r1.idleTimeout = 120000\n\
         a1.sources.r1.batchSize = 50\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    assert_eq!(r1["type"].as_str(), Some("taildir"));
    assert_eq!(
        r1["filegroups"]["f1"].as_str(),
        Some("/var/log/test1/example.log")
    );
    assert_eq!(
        r1["filegroups"]["f2"].as_str(),
        Some("/var/log/test2/*log*")
    );
    assert!(r1["filegroups"].get("f3").is_none());
    assert!(unmapped(&i, "filegroups.f3")[0].contains("glob"));
    assert_eq!(
        r1["group_headers"]["f2"]["headerKey2"].as_str(),
        Some("value2-2")
    );
    assert!(r1["group_headers"].get("f3").is_none());
    assert_eq!(
        r1["position_file"].as_str(),
        Some("/var/log/flume/taildir_position.sluice.json")
    );
    assert_eq!(r1["file_header"].as_str(), Some("path"));
    assert_eq!(r1["skip_to_end"].as_bool(), Some(true));
    assert_eq!(r1["idle_timeout"].as_str(), Some("2m"));
    assert_eq!(r1["batch_max_events"].as_integer(), Some(50));
    loads(&i);
}

#[test]
fn http_source() {
    let i = import(&format!(
        "a1.sources = r1 r2\n\
         a1.sources.r1.type = http\n\
         a1.sources.r1.port = 5140\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.ssl = true\n\
         a1.sources.r1.keystore = /etc/flume/ks.jks\n\
         a1.sources.r1.keystore-password = secret\n\
         a1.sources.r2.type = org.apache.flume.source.http.HTTPSource\n\
         a1.sources.r2.bind = localhost\n\
         a1.sources.r2.port = 8080\n\
         a1.sources.r2.handler = org.apache.flume.sink.solr.morphline.BlobHandler\n\
         a1.sources.r2.handler.maxBlobLength = 1000000\n\
         a1.sources.r2.channels = c1\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    assert_eq!(r1["listen"].as_str(), Some("0.0.0.0:5140"));
    assert_eq!(r1["format"].as_str(), Some("json"));
    assert_eq!(r1["token_env"].as_str(), Some("A1_R1_TOKEN"));
    assert!(r1.get("tls_cert").is_none());
    assert!(unmapped(&i, "r1.ssl")[0].contains("PEM"));
    assert!(unmapped(&i, "r1.bind")[0].contains("A1_R1_TOKEN"));
    let r2 = &t["sources"]["r2"];
    assert_eq!(r2["listen"].as_str(), Some("127.0.0.1:8080"));
    assert!(r2.get("token_env").is_none());
    assert_eq!(r2["format"].as_str(), Some("lines"));
    assert_eq!(r2["max_body_bytes"].as_integer(), Some(1_000_000));
}

#[test]
fn syslog_sources() {
    let i = import(&format!(
        "a1.sources = r1 r2 r3\n\
         a1.sources.r1.type = syslogtcp\n\
         a1.sources.r1.host = localhost\n\
         a1.sources.r1.port = 5140\n\
         a1.sources.r1.eventSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r2.type = syslogudp\n\
         a1.sources.r2.host = syslog.example.com\n\
         a1.sources.r2.port = 514\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r3.type = multiport_syslogtcp\n\
         a1.sources.r3.host = 0.0.0.0\n\
         a1.sources.r3.ports = 10001 10002\n\
         a1.sources.r3.portHeader = port\n\
         a1.sources.r3.channels = c1\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let s = &t["sources"];
    assert_eq!(s["r1"]["protocol"].as_str(), Some("tcp"));
    assert_eq!(s["r1"]["listen"].as_str(), Some("127.0.0.1:5140"));
    assert_eq!(s["r1"]["max_message_bytes"].as_integer(), Some(480));
    assert_eq!(s["r2"]["protocol"].as_str(), Some("udp"));
    assert_eq!(s["r2"]["listen"].as_str(), Some("0.0.0.0:514"));
    assert!(unmapped(&i, "r2.host")[0].contains("host name"));
    assert_eq!(s["r3-10001"]["listen"].as_str(), Some("0.0.0.0:10001"));
    assert_eq!(s["r3-10002"]["listen"].as_str(), Some("0.0.0.0:10002"));
    // The port header is a static interceptor per port.
    let p1 = s["r3-10001"]["interceptors"][0].as_str().unwrap();
    let p2 = s["r3-10002"]["interceptors"][0].as_str().unwrap();
    assert_eq!(t["plugins"][p1]["config"]["value"].as_str(), Some("10001"));
    assert_eq!(t["plugins"][p2]["config"]["key"].as_str(), Some("port"));
    assert_eq!(s["r3-10002"]["dead_letter"].as_str(), Some("dead-letter"));
}

#[test]
fn seq_and_stress_become_generators() {
    let i = import(&format!(
        "a1.sources = r1 r2\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = 1000\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r2.type = org.apache.flume.source.StressSource\n\
         a1.sources.r2.size = 16\n\
         a1.sources.r2.maxTotalEvents = 10\n\
         a1.sources.r2.channels = c1\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    assert_eq!(t["sources"]["r1"]["type"].as_str(), Some("generator"));
    assert_eq!(t["sources"]["r1"]["count"].as_integer(), Some(1000));
    assert_eq!(t["sources"]["r1"]["body"].as_str(), Some("{n}"));
    assert_eq!(t["sources"]["r2"]["count"].as_integer(), Some(10));
    assert_eq!(t["sources"]["r2"]["body"].as_str().map(str::len), Some(16));
    loads(&i);
}

#[test]
fn channels() {
    let i = import(
        "a1.channels = m f s j x\n\
         a1.sinks = k1 k2 k3 k4 k5\n\
         a1.channels.m.type = memory\n\
         a1.channels.m.capacity = 1000\n\
         a1.channels.m.byteCapacity = 800000\n\
         a1.channels.m.transactionCapacity = 100\n\
         a1.channels.f.type = file\n\
         a1.channels.f.checkpointDir = /mnt/flume/checkpoint\n\
         a1.channels.f.dataDirs = /mnt/flume/data\n\
         a1.channels.f.maxFileSize = 1024\n\
         a1.channels.f.encryption.activeKey = key-0\n\
         a1.channels.s.type = SPILLABLEMEMORY\n\
         a1.channels.s.memoryCapacity = 10000\n\
         a1.channels.s.dataDirs = /mnt/spill\n\
         a1.channels.j.type = jdbc\n\
         a1.channels.x.type = com.example.MyChannel\n\
         a1.sinks.k1.type = null\na1.sinks.k1.channel = m\n\
         a1.sinks.k2.type = null\na1.sinks.k2.channel = f\n\
         a1.sinks.k3.type = null\na1.sinks.k3.channel = s\n\
         a1.sinks.k4.type = null\na1.sinks.k4.channel = j\n\
         a1.sinks.k5.type = null\na1.sinks.k5.channel = x\n",
    );
    let t = toml_of(&i);
    let c = &t["channels"];
    assert_eq!(c["m"]["type"].as_str(), Some("memory"));
    assert_eq!(c["m"]["capacity_events"].as_integer(), Some(1000));
    assert_eq!(c["m"]["capacity_bytes"].as_integer(), Some(800_000));
    assert_eq!(c["f"]["type"].as_str(), Some("file"));
    assert_eq!(c["f"]["dir"].as_str(), Some("/mnt/flume/data"));
    assert_eq!(c["f"]["segment_size"].as_integer(), Some(64 << 10));
    assert_eq!(unmapped(&i, "encryption.activeKey").len(), 1);
    assert_eq!(c["s"]["type"].as_str(), Some("file"));
    assert_eq!(c["s"]["dir"].as_str(), Some("/mnt/spill"));
    assert_eq!(c["j"]["type"].as_str(), Some("file"));
    assert_eq!(unmapped(&i, "j.type").len(), 1);
    assert_eq!(c["x"]["type"].as_str(), Some("memory"));
    assert_eq!(unmapped(&i, "x.type").len(), 1);
    let config = loads(&i);
    assert_eq!(config.channels.len(), 5);
}

#[test]
fn kafka_channel_three_ways() {
    let i = import(
        "a1.sources = r1 r2\n\
         a1.channels = both sinkless sourceless\n\
         a1.sinks = k1 k2\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = both\n\
         a1.sources.r2.type = seq\na1.sources.r2.channels = sinkless\n\
         a1.channels.both.type = org.apache.flume.channel.kafka.KafkaChannel\n\
         a1.channels.both.kafka.bootstrap.servers = k:9092\n\
         a1.channels.both.kafka.topic = channel1\n\
         a1.channels.both.kafka.consumer.group.id = flume-consumer\n\
         a1.channels.both.kafka.producer.compression.type = lz4\n\
         a1.channels.sinkless.type = org.apache.flume.channel.kafka.KafkaChannel\n\
         a1.channels.sinkless.kafka.bootstrap.servers = k:9092\n\
         a1.channels.sinkless.kafka.topic = out\n\
         a1.channels.sinkless.parseAsFlumeEvent = false\n\
         a1.channels.sourceless.type = org.apache.flume.channel.kafka.KafkaChannel\n\
         a1.channels.sourceless.brokerList = k:9092\n\
         a1.channels.sourceless.topic = in\n\
         a1.channels.sourceless.groupId = loader\n\
         a1.sinks.k1.type = logger\na1.sinks.k1.channel = both\n\
         a1.sinks.k2.type = logger\na1.sinks.k2.channel = sourceless\n",
    );
    let t = toml_of(&i);
    let both = &t["channels"]["both"];
    assert_eq!(both["type"].as_str(), Some("kafka"));
    assert_eq!(both["topic"].as_str(), Some("channel1"));
    assert_eq!(both["group_id"].as_str(), Some("flume-consumer"));
    assert_eq!(both["properties"]["compression.type"].as_str(), Some("lz4"));
    // Without a sink: a memory channel drained by a Kafka sink.
    assert_eq!(t["channels"]["sinkless"]["type"].as_str(), Some("memory"));
    assert_eq!(t["sinks"]["sinkless-kafka"]["type"].as_str(), Some("kafka"));
    assert_eq!(t["sinks"]["sinkless-kafka"]["topic"].as_str(), Some("out"));
    // Without a source: a Kafka source into a memory channel.
    assert_eq!(t["channels"]["sourceless"]["type"].as_str(), Some("memory"));
    let src = &t["sources"]["sourceless-kafka"];
    assert_eq!(src["topics"][0].as_str(), Some("in"));
    assert_eq!(src["group_id"].as_str(), Some("loader"));
    assert_eq!(src["channels"][0].as_str(), Some("sourceless"));
    loads(&i);
}

#[test]
fn hdfs_sink() {
    let i = import(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = hdfs\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hdfs.path = s3a://lake/flume/events/%{topic}/%Y-%m-%d/%H%M/%S\n\
         a1.sinks.k1.hdfs.filePrefix = events-\n\
         a1.sinks.k1.hdfs.fileType = CompressedStream\n\
         a1.sinks.k1.hdfs.codeC = gzip\n\
         a1.sinks.k1.hdfs.rollInterval = 600\n\
         a1.sinks.k1.hdfs.rollSize = 0\n\
         a1.sinks.k1.hdfs.rollCount = 100000\n\
         a1.sinks.k1.hdfs.idleTimeout = 30\n\
         a1.sinks.k1.hdfs.maxOpenFiles = 5000\n\
         a1.sinks.k1.hdfs.round = true\n\
         a1.sinks.k1.hdfs.roundValue = 10\n\
         a1.sinks.k1.hdfs.roundUnit = minute\n",
    );
    let t = toml_of(&i);
    let k1 = &t["sinks"]["k1"];
    assert_eq!(k1["type"].as_str(), Some("object_store"));
    assert_eq!(k1["url"].as_str(), Some("s3://lake/flume/events"));
    assert_eq!(k1["path"].as_str(), Some("%{topic}/%Y-%m-%d/%H%M/%S"));
    assert_eq!(k1["compression"].as_str(), Some("gzip"));
    assert_eq!(k1["format"].as_str(), Some("text"));
    assert_eq!(k1["roll_interval"].as_str(), Some("10m"));
    assert!(k1.get("roll_size").is_none());
    assert_eq!(k1["roll_count"].as_integer(), Some(100_000));
    assert_eq!(k1["roll_idle"].as_str(), Some("30s"));
    assert_eq!(k1["max_open_files"].as_integer(), Some(5000));
    assert_eq!(unmapped(&i, "hdfs.round").len(), 1);
    assert!(unmapped(&i, "hdfs.path").is_empty());
    loads(&i);

    // Flume's defaults: SequenceFile (reported), and rolls of 30 s, 1024 B, 10 events.
    let d = import(
        "a1.channels = c1\na1.sinks = k1\na1.channels.c1.type = memory\n\
         a1.sinks.k1.type = hdfs\na1.sinks.k1.channel = c1\na1.sinks.k1.hdfs.path = /flume/events\n",
    );
    let t = toml_of(&d);
    let k1 = &t["sinks"]["k1"];
    assert_eq!(k1["url"].as_str(), Some("s3://CHANGE-ME/flume/events"));
    assert!(k1.get("path").is_none());
    assert_eq!(k1["roll_interval"].as_str(), Some("30s"));
    assert_eq!(k1["roll_size"].as_integer(), Some(1024));
    assert_eq!(k1["roll_count"].as_integer(), Some(10));
    assert_eq!(unmapped(&d, "hdfs.fileType").len(), 1);
    assert_eq!(unmapped(&d, "hdfs.path").len(), 1);
    loads(&d);

    // No roll trigger at all: one is added, reported.
    let n = import(
        "a1.channels = c1\na1.sinks = k1\na1.channels.c1.type = memory\n\
         a1.sinks.k1.type = hdfs\na1.sinks.k1.channel = c1\na1.sinks.k1.hdfs.fileType = DataStream\n\
         a1.sinks.k1.hdfs.path = file:///data/%[localhost]/%t\n\
         a1.sinks.k1.hdfs.rollInterval = 0\na1.sinks.k1.hdfs.rollSize = 0\na1.sinks.k1.hdfs.rollCount = 0\n",
    );
    let t = toml_of(&n);
    assert_eq!(t["sinks"]["k1"]["roll_interval"].as_str(), Some("1h"));
    assert_eq!(t["sinks"]["k1"]["url"].as_str(), Some("file:///data"));
    assert_eq!(t["sinks"]["k1"]["path"].as_str(), Some("<HOSTNAME>"));
    assert!(n.toml.contains("path = \"${HOSTNAME}\""), "{}", n.toml);
    assert_eq!(unmapped(&n, "hdfs.rollInterval").len(), 1);
    assert_eq!(unmapped(&n, "hdfs.path").len(), 1, "%t");
}

#[test]
fn file_roll_logger_null_and_kafka_sinks() {
    let i = import(
        "a1.channels = c1 c2 c3 c4 c5\na1.sinks = roll once log nul kafka\n\
         a1.channels.c1.type = memory\na1.channels.c2.type = memory\na1.channels.c3.type = memory\n\
         a1.channels.c4.type = memory\na1.channels.c5.type = memory\n\
         a1.sinks.roll.type = file_roll\na1.sinks.roll.channel = c1\n\
         a1.sinks.roll.sink.directory = /var/log/flume\n\
         a1.sinks.once.type = FILE_ROLL\na1.sinks.once.channel = c2\n\
         a1.sinks.once.sink.directory = /var/log/once\na1.sinks.once.sink.rollInterval = 0\n\
         a1.sinks.log.type = logger\na1.sinks.log.channel = c3\n\
         a1.sinks.nul.type = null\na1.sinks.nul.channel = c4\n\
         a1.sinks.kafka.type = org.apache.flume.sink.kafka.KafkaSink\na1.sinks.kafka.channel = c5\n\
         a1.sinks.kafka.brokerList = b:9092\na1.sinks.kafka.topic = %{dest}\n\
         a1.sinks.kafka.requiredAcks = -1\na1.sinks.kafka.kafka.producer.max.request.size = 2097152\n",
    );
    let t = toml_of(&i);
    let s = &t["sinks"];
    assert_eq!(s["roll"]["type"].as_str(), Some("object_store"));
    assert_eq!(s["roll"]["url"].as_str(), Some("file:///var/log/flume"));
    assert_eq!(s["roll"]["roll_interval"].as_str(), Some("30s"));
    assert_eq!(s["once"]["type"].as_str(), Some("file"));
    assert_eq!(s["once"]["path"].as_str(), Some("/var/log/once/once.log"));
    assert_eq!(s["log"]["type"].as_str(), Some("logger"));
    assert_eq!(s["log"]["max_body"].as_integer(), Some(16));
    assert_eq!(s["nul"]["type"].as_str(), Some("null"));
    let k = &s["kafka"];
    assert_eq!(k["bootstrap_servers"].as_str(), Some("b:9092"));
    assert!(k.get("topic").is_none());
    assert_eq!(k["topic_header"].as_str(), Some("dest"));
    assert_eq!(k["key_header"].as_str(), Some("key"));
    assert_eq!(k["kafka"]["acks"].as_str(), Some("all"));
    assert_eq!(
        k["kafka"]["message.max.bytes"].as_integer(),
        Some(2_097_152)
    );
    loads(&i);
}

#[test]
fn unsupported_sinks_keep_events_on_disk() {
    let i = import(
        "a1.channels = c1\na1.sinks = k1\na1.channels.c1.type = memory\n\
         a1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\na1.sinks.k1.hostname = h\na1.sinks.k1.port = 4545\n",
    );
    let t = toml_of(&i);
    assert_eq!(t["sinks"]["k1"]["type"].as_str(), Some("file"));
    assert_eq!(
        t["sinks"]["k1"]["path"].as_str(),
        Some("/var/lib/sluice/a1/k1.jsonl")
    );
    assert!(unmapped(&i, "k1.type")[0].contains("Avro"));
    // Its keys are not reported one by one.
    assert!(findings(&i, Severity::Note, "k1.hostname").is_empty());
    loads(&i);
}

#[test]
fn replicating_and_multiplexing_selectors() {
    let i = import(
        "a1.sources = r1 r2\na1.channels = c1 c2 c3 c4\na1.sinks = k1 k2 k3 k4\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = c1 c2 c3 c4\n\
         a1.sources.r1.selector.type = multiplexing\n\
         a1.sources.r1.selector.header = state\n\
         a1.sources.r1.selector.mapping.CZ = c1\n\
         a1.sources.r1.selector.mapping.US = c2 c3\n\
         a1.sources.r1.selector.default = c4\n\
         a1.sources.r2.type = seq\na1.sources.r2.channels = c1 c2\n\
         a1.sources.r2.selector.optional = c2\n\
         a1.channels.c1.type = memory\na1.channels.c2.type = memory\n\
         a1.channels.c3.type = memory\na1.channels.c4.type = memory\n\
         a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n\
         a1.sinks.k2.type = null\na1.sinks.k2.channel = c2\n\
         a1.sinks.k3.type = null\na1.sinks.k3.channel = c3\n\
         a1.sinks.k4.type = null\na1.sinks.k4.channel = c4\n",
    );
    let t = toml_of(&i);
    let r1 = &t["sources"]["r1"];
    assert_eq!(r1["router"].as_str(), Some("r1-selector"));
    assert_eq!(r1["channels"].as_array().unwrap().len(), 1);
    assert_eq!(r1["channels"][0].as_str(), Some("c4"));
    assert_eq!(r1["dead_letter"].as_str(), Some("dead-letter"));
    assert_eq!(r1["team"].as_str(), Some("a1"));
    let router = &t["plugins"]["r1-selector"];
    assert_eq!(router["type"].as_str(), Some("router"));
    assert_eq!(router["path"].as_str(), Some("header_router.wasm"));
    assert_eq!(router["config"]["header"].as_str(), Some("state"));
    assert_eq!(router["config"]["routes"]["CZ"].as_str(), Some("c1"));
    assert_eq!(router["config"]["routes"]["US"].as_str(), Some("c2"));
    assert_eq!(router["config"]["default"].as_str(), Some("c4"));
    assert_eq!(unmapped(&i, "selector.mapping.US").len(), 1);
    assert_eq!(t["teams"]["a1"]["plugin_dir"].as_str(), Some("plugins"));
    // Replicating: every channel; `optional` noted.
    assert_eq!(t["sources"]["r2"]["channels"].as_array().unwrap().len(), 2);
    assert!(t["sources"]["r2"].get("router").is_none());
    assert_eq!(findings(&i, Severity::Note, "selector.optional").len(), 1);
    // The dead-letter channel is drained.
    assert_eq!(
        t["sinks"]["dead-letter"]["channel"].as_str(),
        Some("dead-letter")
    );
}

#[test]
fn sink_groups() {
    let i = import(
        "a1.sources = r1\na1.channels = c1 c2 c3\na1.sinks = k1 k2 k3 k4 k5 k6\na1.sinkgroups = g1 g2\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = c1 c2 c3\n\
         a1.channels.c1.type = memory\na1.channels.c2.type = memory\na1.channels.c3.type = memory\n\
         a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n\
         a1.sinks.k2.type = null\na1.sinks.k2.channel = c1\n\
         a1.sinks.k3.type = null\na1.sinks.k3.channel = c2\n\
         a1.sinks.k4.type = null\na1.sinks.k4.channel = c2\n\
         a1.sinks.k5.type = null\na1.sinks.k5.channel = c3\n\
         a1.sinks.k6.type = null\na1.sinks.k6.channel = c3\n\
         a1.sinkgroups.g1.sinks = k1 k2\n\
         a1.sinkgroups.g1.processor.type = failover\n\
         a1.sinkgroups.g1.processor.priority.k1 = 5\n\
         a1.sinkgroups.g1.processor.priority.k2 = 10\n\
         a1.sinkgroups.g1.processor.maxpenalty = 10000\n\
         a1.sinkgroups.g2.sinks = k3 k4\n\
         a1.sinkgroups.g2.processor.type = load_balance\n\
         a1.sinkgroups.g2.processor.selector = random\n\
         a1.sinkgroups.g2.processor.selector.maxTimeOut = 20000\n",
    );
    let t = toml_of(&i);
    let g1 = &t["sink_groups"]["g1"];
    assert_eq!(g1["processor"].as_str(), Some("failover"));
    assert_eq!(g1["sinks"].as_array().unwrap().len(), 2);
    assert_eq!(g1["priorities"]["k2"].as_integer(), Some(10));
    assert_eq!(g1["max_backoff"].as_str(), Some("10s"));
    let g2 = &t["sink_groups"]["g2"];
    assert_eq!(g2["processor"].as_str(), Some("load_balance"));
    assert_eq!(g2["selector"].as_str(), Some("random"));
    assert_eq!(g2["backoff"].as_bool(), Some(false));
    assert_eq!(g2["max_backoff"].as_str(), Some("20s"));
    // Two sinks on c3 outside any group take turns, as in Flume.
    let implicit = &t["sink_groups"]["c3-sinks"];
    assert_eq!(implicit["processor"].as_str(), Some("load_balance"));
    assert_eq!(implicit["sinks"].as_array().unwrap().len(), 2);
    assert_eq!(i.report.unmapped(), 0, "{:?}", i.report);
}

#[test]
fn interceptors_of_each_kind() {
    let i = import(&format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = ts h st id rm sr rf re custom\n\
         a1.sources.r1.interceptors.ts.type = timestamp\n\
         a1.sources.r1.interceptors.ts.headerName = when\n\
         a1.sources.r1.interceptors.h.type = org.apache.flume.interceptor.HostInterceptor$Builder\n\
         a1.sources.r1.interceptors.h.hostHeader = hostname\n\
         a1.sources.r1.interceptors.st.type = static\n\
         a1.sources.r1.interceptors.st.key = datacenter\n\
         a1.sources.r1.interceptors.st.value = NEW_YORK\n\
         a1.sources.r1.interceptors.id.type = org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder\n\
         a1.sources.r1.interceptors.id.headerName = uuid\n\
         a1.sources.r1.interceptors.id.preserveExisting = false\n\
         a1.sources.r1.interceptors.rm.type = remove_header\n\
         a1.sources.r1.interceptors.rm.fromList = a, b ,c\n\
         a1.sources.r1.interceptors.sr.type = search_replace\n\
         a1.sources.r1.interceptors.sr.searchPattern = ^[A-Za-z0-9_]+\n\
         a1.sources.r1.interceptors.sr.replaceString = $0!\n\
         a1.sources.r1.interceptors.rf.type = regex_filter\n\
         a1.sources.r1.interceptors.rf.regex = .*DEBUG.*\n\
         a1.sources.r1.interceptors.rf.excludeEvents = true\n\
         a1.sources.r1.interceptors.re.type = regex_extractor\n\
         a1.sources.r1.interceptors.re.regex = (\\\\d):(\\\\d):(\\\\d)\n\
         a1.sources.r1.interceptors.re.serializers = s1 s2 s3\n\
         a1.sources.r1.interceptors.re.serializers.s1.name = one\n\
         a1.sources.r1.interceptors.re.serializers.s2.name = two\n\
         a1.sources.r1.interceptors.re.serializers.s3.name = three\n\
         a1.sources.r1.interceptors.custom.type = com.example.Enricher$Builder\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    let chain: Vec<&str> = t["sources"]["r1"]["interceptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        chain,
        [
            "r1-ts", "r1-h", "r1-st", "r1-id", "r1-rm", "r1-sr", "r1-rf", "r1-re"
        ]
    );
    let p = &t["plugins"];
    assert_eq!(p["r1-ts"]["path"].as_str(), Some("timestamp.wasm"));
    assert_eq!(p["r1-ts"]["config"]["header"].as_str(), Some("when"));
    assert_eq!(p["r1-ts"]["config"]["source"].as_str(), Some("kafka"));
    let mode = |n: &str| p[n]["config"]["mode"].as_str().unwrap().to_owned();
    assert_eq!(mode("r1-h"), "host");
    assert_eq!(p["r1-h"]["config"]["header"].as_str(), Some("hostname"));
    assert_eq!(p["r1-h"]["config"]["env"].as_str(), Some("HOSTNAME"));
    assert_eq!(t["teams"]["a1"]["env"][0].as_str(), Some("HOSTNAME"));
    assert_eq!(mode("r1-st"), "static");
    assert_eq!(
        p["r1-st"]["config"]["preserve_existing"].as_bool(),
        Some(true)
    );
    assert_eq!(mode("r1-id"), "uuid");
    assert_eq!(p["r1-id"]["config"]["header"].as_str(), Some("uuid"));
    assert_eq!(
        p["r1-id"]["config"]["preserve_existing"].as_bool(),
        Some(false)
    );
    assert_eq!(mode("r1-rm"), "remove_header");
    assert_eq!(
        p["r1-rm"]["config"]["from_list"].as_array().unwrap().len(),
        3
    );
    assert_eq!(mode("r1-sr"), "search_replace");
    assert_eq!(p["r1-sr"]["config"]["replace_string"].as_str(), Some("$0!"));
    assert_eq!(mode("r1-rf"), "regex_filter");
    assert_eq!(p["r1-rf"]["config"]["exclude_events"].as_bool(), Some(true));
    assert_eq!(mode("r1-re"), "regex_extractor");
    assert_eq!(
        p["r1-re"]["config"]["regex"].as_str(),
        Some(r"(\d):(\d):(\d)")
    );
    assert_eq!(
        p["r1-re"]["config"]["serializers"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        p["r1-re"]["config"]["serializers"][2]["name"].as_str(),
        Some("three")
    );
    assert!(p.get("r1-custom").is_none());
    assert!(
        unmapped(&i, "interceptors.custom.type")[0]
            .contains("sluice plugin new --lang rust custom")
    );
    // Every plugin belongs to the team, and the source has a dead-letter channel.
    assert!(
        p.as_table()
            .unwrap()
            .values()
            .all(|v| v["team"].as_str() == Some("a1"))
    );
    assert_eq!(
        t["sources"]["r1"]["dead_letter"].as_str(),
        Some("dead-letter")
    );
    // Apart from the plugin files (not built in unit tests), the output loads.
    let errors = crate::config::parse(Path::new("/nonexistent/x.toml"), &i.toml, |_| None)
        .expect_err("the plugin files are missing");
    assert!(
        errors
            .0
            .iter()
            .all(|e| e.message.contains("does not exist")),
        "{errors}"
    );
}

#[test]
fn unsupported_sources_are_left_out_as_comments() {
    let i = import(&format!(
        "a1.sources = r1 r2\n\
         a1.sources.r1.type = avro\na1.sources.r1.bind = 0.0.0.0\na1.sources.r1.port = 4141\na1.sources.r1.channels = c1\n\
         a1.sources.r2.type = netcat\na1.sources.r2.channels = c1\n\
         {MEMORY_LOGGER}"
    ));
    let t = toml_of(&i);
    assert!(t.get("sources").is_none());
    assert!(i.toml.contains("# Flume source `r1`"), "{}", i.toml);
    assert!(unmapped(&i, "r1.type")[0].contains("Avro"));
    assert!(unmapped(&i, "r2.type")[0].contains("http"));
    loads(&i);
}

#[test]
fn wiring_problems_are_reported() {
    let i = import(
        "a1.sources = r1 ghost\na1.channels = c1 lonely\na1.sinks = k1 k2\n\
         a1.sources.r1.type = seq\na1.sources.r1.channels = c1 nope\n\
         a1.channels.c1.type = memory\na1.channels.lonely.type = memory\n\
         a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n\
         a1.sinks.k2.type = null\na1.sinks.k2.channel = missing\n\
         a1.sinks.unlisted.type = null\n\
         a1.sinks.k1.channel = c1\n\
         a1.configfilters = f1\n",
    );
    assert!(unmapped(&i, "a1.sources")[0].contains("`ghost`"));
    assert!(unmapped(&i, "r1.channels")[0].contains("`nope`"));
    assert!(unmapped(&i, "k2.channel")[0].contains("`missing`"));
    assert!(unmapped(&i, "a1.channels.lonely")[0].contains("no sink drains"));
    assert!(unmapped(&i, "a1.configfilters")[0].contains("environment"));
    assert_eq!(findings(&i, Severity::Note, "a1.sinks.unlisted").len(), 1);
    assert!(findings(&i, Severity::Note, "a1.sinks.k1.channel")[0].contains("line 9"));
    let t = toml_of(&i);
    assert_eq!(
        t["sinks"]["lonely-undrained"]["type"].as_str(),
        Some("file")
    );
    loads(&i);
}

#[test]
fn names_are_made_valid_and_unique() {
    let i = import(
        "a1.sources = r@1\na1.channels = c\\u00e91\na1.sinks = k1\n\
         a1.sources.r@1.type = seq\na1.sources.r@1.channels = c\\u00e91\n\
         a1.channels.c\\u00e91.type = memory\n\
         a1.sinks.k1.type = null\na1.sinks.k1.channel = c\\u00e91\n",
    );
    let t = toml_of(&i);
    assert_eq!(t["sources"]["r_1"]["channels"][0].as_str(), Some("c_1"));
    assert_eq!(t["sinks"]["k1"]["channel"].as_str(), Some("c_1"));
    loads(&i);
}

#[test]
fn an_agent_without_components_is_an_error_naming_the_others() {
    let props =
        parse("# comment\nedge.sources = r1\nedge.sources.r1.type = seq\ncore.channels = c1\n")
            .unwrap();
    let err = convert(
        "flume.conf",
        &props,
        &Options {
            agent: "a1".into(),
            plugin_dir: None,
        },
    )
    .unwrap_err();
    assert!(err.contains("agent `a1` has no components"), "{err}");
    assert!(err.contains("`edge` (from line 2)"), "{err}");
    assert!(err.contains("`core` (from line 4)"), "{err}");
    let props = parse("a1.sources.r1.type = seq\n").unwrap();
    let err = convert(
        "flume.conf",
        &props,
        &Options {
            agent: "a1".into(),
            plugin_dir: None,
        },
    )
    .unwrap_err();
    assert!(err.contains("first key is on line 1"), "{err}");
}

#[test]
fn other_agents_in_the_file_are_ignored() {
    let i = import_agent(
        "other.sources = x\nother.sources.x.type = avro\n\
         edge.sources = r1\nedge.channels = c1\nedge.sinks = k1\n\
         edge.sources.r1.type = seq\nedge.sources.r1.channels = c1\n\
         edge.channels.c1.type = memory\nedge.sinks.k1.type = null\nedge.sinks.k1.channel = c1\n",
        "edge",
    );
    assert_eq!(i.report.unmapped(), 0);
    assert_eq!(i.summary.sources, 1);
    assert!(i.toml.contains("Flume agent `edge`"));
    loads(&i);
}

#[test]
fn every_section_names_its_flume_component() {
    let i = import(&format!(
        "a1.sources = r1\na1.sources.r1.type = seq\na1.sources.r1.channels = c1\n{MEMORY_LOGGER}"
    ));
    assert!(
        i.toml
            .contains("# From Flume source `r1` (flume.conf:2), type seq.\n[sources.r1]"),
        "{}",
        i.toml
    );
    assert!(
        i.toml
            .contains("# From Flume channel `c1` (flume.conf:6), type memory.\n[channels.c1]"),
        "{}",
        i.toml
    );
    assert!(
        i.toml
            .contains("# From Flume sink `k1` (flume.conf:7), type logger.\n[sinks.k1]"),
        "{}",
        i.toml
    );
}
