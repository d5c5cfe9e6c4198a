//! Tables through the `sluice` binary, read back by DuckDB through the view
//! `sluice ddl --dialect duckdb` prints: Parquet, csv and tsv from one
//! generator, a bounded run that exits by itself; type mismatches sent to
//! the dead-letter channel with their reason; and the config checks of the
//! table keys, with file and line.
//!
//! DuckDB is PyPI's `duckdb` (`scripts/services.sh install`); without it the
//! DuckDB parts are skipped with a message, unless `SLUICE_REQUIRE_SERVICES=1`
//! (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::files_under;

mod util;

const EVENTS: u64 = 2000;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn reader() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/lake/read_lake.py")
}

/// Whether DuckDB can be used here.
fn duckdb() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert_ne!(
            std::env::var("SLUICE_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "DuckDB and PyArrow are required (scripts/services.sh install)"
        );
        eprintln!("skipped: no DuckDB/PyArrow (scripts/services.sh install)");
    }
    ok
}

fn table(name: &str, format: &str, extra: &str, out: &Path) -> String {
    format!(
        r#"
[channels.{name}]
type = "memory"

[sinks.{name}]
type = "object_store"
channel = "{name}"
url = "file://{dir}"
path = "kind={name}/dt=%Y-%m-%d"
format = "{format}"
roll_count = 700
roll_interval = "1s"
{extra}

[[sinks.{name}.columns]]
name = "id"
type = "long"
from = "json:id"
[[sinks.{name}.columns]]
name = "label"
type = "string"
from = "json:label"
[[sinks.{name}.columns]]
name = "score"
type = "double"
from = "json:score"
[[sinks.{name}.columns]]
name = "odd"
type = "boolean"
from = "json:flags[0]"
[[sinks.{name}.columns]]
name = "raw_key"
type = "binary"
from = "key"
[[sinks.{name}.columns]]
name = "at"
type = "timestamp"
from = "timestamp"
[[sinks.{name}.columns]]
name = "source"
type = "string"
from = "topic"
"#,
        dir = out.display()
    )
}

fn run(config: &Path) {
    let out = sluice()
        .args(["--log-level", "warn", "run", "--no-status"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ddl(config: &Path, sink: &str, dialect: &str) -> String {
    let out = sluice()
        .args(["ddl"])
        .arg(config)
        .args([sink, "--dialect", dialect, "--table", sink])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice ddl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read_view(sql: &str, view: &str, dir: &Path) -> Value {
    let file = dir.join(format!("{view}.sql"));
    std::fs::write(&file, sql).unwrap();
    let out = Command::new("python3")
        .arg(reader())
        .arg("duckdb-ddl")
        .arg(&file)
        .arg(view)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB refused:\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn parquet_csv_and_tsv_tables_read_back_through_sluice_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let config = dir.path().join("lake.toml");
    let text = format!(
        r#"
data_dir = "{state}"

[sources.gen]
type = "generator"
count = {EVENTS}
key = "k{{n}}"
body = '{{"id": {{n}}, "label": "n,{{n}}\t\"q\"", "score": "{{n}}.5", "flags": [true]}}'
channels = ["p", "c", "t"]
{p}{c}{t}"#,
        state = dir.path().join("state").display(),
        p = table("p", "parquet", "compression = \"gzip\"", &out),
        c = table(
            "c",
            "csv",
            "header_row = true\ncompression = \"zstd\"",
            &out
        ),
        t = table("t", "tsv", "header_row = true", &out),
    );
    std::fs::write(&config, text).unwrap();
    run(&config);

    // Files: hidden until complete, named by format and compression.
    let mut names: Vec<String> = files_under(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    for (kind, suffix) in [("p", ".parquet"), ("c", ".csv.zst"), ("t", ".tsv")] {
        let files = files_under(&out.join(format!("kind={kind}")));
        assert_eq!(
            files.len(),
            3,
            "{kind}: 2000 events in files of 700: {files:?}"
        );
        assert!(files.iter().all(|f| f.to_string_lossy().ends_with(suffix)));
    }

    // The statements of the other engines say what each needs.
    let hive = ddl(&config, "p", "hive");
    for part in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `p` (",
        "  `id` BIGINT,",
        "  `at` TIMESTAMP,",
        "PARTITIONED BY (`kind` STRING, `dt` STRING)",
        "STORED AS PARQUET",
        "MSCK REPAIR TABLE `p`",
    ] {
        assert!(hive.contains(part), "{part:?} missing:\n{hive}");
    }
    assert!(
        hive.contains(&format!("LOCATION '{}'", out.display())),
        "{hive}"
    );
    let trino = ddl(&config, "t", "trino");
    for part in [
        "format = 'TEXTFILE'",
        "skip_header_line_count = 1",
        "partitioned_by = ARRAY['kind', 'dt']",
        "\"raw_key\" VARBINARY",
    ] {
        assert!(trino.contains(part), "{part:?} missing:\n{trino}");
    }
    let spark = ddl(&config, "c", "spark");
    for part in [
        "USING csv",
        "header 'true'",
        "compression 'zstd'",
        "PARTITIONED BY (`kind`, `dt`)",
    ] {
        assert!(spark.contains(part), "{part:?} missing:\n{spark}");
    }

    if !duckdb() {
        return;
    }
    for view in ["p", "c", "t"] {
        let read = read_view(&ddl(&config, view, "duckdb"), view, dir.path());
        assert_eq!(
            read["columns"],
            serde_json::json!({
                "id": "BIGINT", "label": "VARCHAR", "score": "DOUBLE", "odd": "BOOLEAN",
                "raw_key": "BLOB", "at": "TIMESTAMP WITH TIME ZONE", "source": "VARCHAR",
                "kind": "VARCHAR", "dt": "VARCHAR",
            }),
            "{view}"
        );
        let rows = read["rows"].as_array().unwrap();
        assert_eq!(rows.len() as u64, EVENTS, "{view}");
        let mut seen = vec![false; EVENTS as usize];
        for row in rows {
            let n = row["id"].as_u64().unwrap();
            assert!(
                !std::mem::replace(&mut seen[n as usize], true),
                "{view}: {n} twice"
            );
            // tsv escapes are Hive's; DuckDB reads them as they are written.
            let label = if view == "t" {
                format!("n,{n}\\t\"q\"")
            } else {
                format!("n,{n}\t\"q\"")
            };
            assert_eq!(row["label"], label.as_str(), "{view}");
            assert_eq!(row["score"], n as f64 + 0.5, "{view}");
            assert_eq!(row["odd"], true);
            assert_eq!(row["raw_key"], hex::encode(format!("k{n}")), "{view}");
            assert_eq!(row["source"], "gen");
            assert_eq!(row["kind"], view);
            assert!(row["at"].as_i64().unwrap() > 1_700_000_000_000);
        }
    }
}

#[test]
fn type_mismatches_go_to_the_dead_letter_channel_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let rejects = dir.path().join("rejects.jsonl");
    let config = dir.path().join("lake.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{state}"

[sources.gen]
type = "generator"
count = 10
body = '{{"id": {{n}}, "amount": "{{n}}x"}}'
channels = ["p"]

[channels.p]
type = "memory"
[channels.rejects]
type = "memory"

[sinks.p]
type = "object_store"
channel = "p"
dead_letter = "rejects"
url = "file://{out}"
path = "t"
format = "parquet"
roll_count = 100
roll_interval = "1s"
on_type_mismatch = "dead_letter"
columns = [
  {{ name = "id", type = "long", from = "json:id" }},
  {{ name = "amount", type = "double", from = "json:amount" }},
]

[sinks.r]
type = "file"
channel = "rejects"
path = "{rejects}"
format = "jsonl"
"#,
            state = dir.path().join("state").display(),
            out = out.display(),
            rejects = rejects.display(),
        ),
    )
    .unwrap();
    run(&config);
    let lines: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(
            line["headers"]["sluice.dead_letter.reason"],
            format!("column `amount` (double): \"{n}x\" is not a number").as_str()
        );
        assert_eq!(line["headers"]["sluice.dead_letter.sink"], "p");
    }
    assert!(
        files_under(&out).is_empty(),
        "nothing fits, no file: {:?}",
        files_under(&out)
    );

    // Without `dead_letter` the policy is refused where it is written.
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = text.replace("dead_letter = \"rejects\"\n", "");
    std::fs::write(&config, &bad).unwrap();
    // Reported at the sink's name in its table header, `[sinks.p]`.
    let line = bad.lines().position(|l| l == "[sinks.p]").unwrap() + 1;
    let check = sluice().arg("validate").arg(&config).output().unwrap();
    assert_eq!(check.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!(
            "lake.toml:{line}:8: `sinks.p`: `on_type_mismatch` = \"dead_letter\" needs `dead_letter`"
        )),
        "want line {line}: {stderr}"
    );

    // Table keys on a format that has no table, and a table without columns.
    for (from, to, want) in [
        (
            "format = \"parquet\"",
            "format = \"jsonl\"",
            "`columns` is for the table formats",
        ),
        (
            "roll_count = 100",
            "roll_count = 100\nheader_row = true",
            "`header_row` is for csv and tsv",
        ),
        (
            "format = \"parquet\"",
            "format = \"parquet\"\ncompression = \"snappy\"\nsuccess_markers = true",
            "has no time escape",
        ),
    ] {
        let text = text.replace(from, to);
        std::fs::write(&config, &text).unwrap();
        let check = sluice().arg("validate").arg(&config).output().unwrap();
        assert_eq!(check.status.code(), Some(2), "{want}");
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(
            stderr.contains(want) && stderr.contains("lake.toml:"),
            "{want}: {stderr}"
        );
    }
}
