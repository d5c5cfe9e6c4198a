use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};

use super::delimited::Dialect;
use super::parquet::{ParquetFile, ParquetOptions};
use super::*;
use crate::event::{BatchBuf, NewEvent};
use crate::sinks::object_store::format::Compression;

fn def(name: &str, kind: &str, from: &str) -> ColumnDef {
    toml::from_str(&format!(
        "name = {name:?}\ntype = {kind:?}\nfrom = {from:?}"
    ))
    .unwrap()
}

fn columns(defs: &[(&str, &str, &str)], on: OnMismatch) -> Columns {
    let defs: Vec<ColumnDef> = defs.iter().map(|(n, k, f)| def(n, k, f)).collect();
    Columns::parse(&defs, on).unwrap()
}

fn event(key: Option<&[u8]>, body: &[u8], headers: &[(&str, &[u8])], ts: i64) -> BatchBuf {
    let mut b = BatchBuf::default();
    b.push(&NewEvent {
        key,
        body,
        headers,
        topic: "orders",
        partition: 2,
        offset: 41,
        timestamp: ts,
    });
    b
}

/// The row's cells as readable values.
fn cells(row: &Row) -> Vec<String> {
    row.cells
        .iter()
        .map(|c| match *c {
            Cell::Null => "null".into(),
            Cell::Int(v) => format!("i{v}"),
            Cell::Double(v) => format!("d{v}"),
            Cell::Bool(v) => format!("b{v}"),
            Cell::Bytes { .. } => String::from_utf8_lossy(row.bytes(*c)).into_owned(),
        })
        .collect()
}

const BODY: &[u8] = br#"{"event_id":"e-1","tag":{"desc":"card","n":"7"},"items":[{"id":5},{"id":6}],"amount":67.88,"ok":true,"at":"2025-12-04T10:00:00Z"}"#;

#[test]
fn metadata_json_paths_and_constants_fill_a_row() {
    let cols = columns(
        &[
            ("k", "string", "key"),
            ("v", "json", "value"),
            ("t", "string", "topic"),
            ("p", "int", "partition"),
            ("o", "long", "offset"),
            ("ts", "timestamp", "timestamp"),
            ("hs", "json", "headers"),
            ("h", "string", "header:source"),
            ("id", "string", "json:event_id"),
            ("desc", "string", "json:tag.desc"),
            ("n", "long", "json:tag.n"),
            ("item", "int", "json:items[1].id"),
            ("amount", "double", "json:amount"),
            ("ok", "boolean", "json:ok"),
            ("at", "timestamp", "json:at"),
            ("tag", "json", "json:tag"),
            ("missing", "string", "json:nope.nope"),
            ("src", "string", "const:pos"),
            ("ver", "int", "const:123"),
        ],
        OnMismatch::Null,
    );
    let b = event(
        Some(b"k1"),
        BODY,
        &[("source", b"pos"), ("source", b"2nd")],
        1_700_000_000_000,
    );
    let mut row = Row::new(cols.columns.len());
    assert_eq!(row.fill(&cols, &b.get(0).unwrap()), Ok(0));
    assert_eq!(
        cells(&row),
        [
            "k1",
            std::str::from_utf8(BODY).unwrap(),
            "orders",
            "i2",
            "i41",
            "i1700000000000",
            r#"{"source":"pos"}"#,
            "pos",
            "e-1",
            "card",
            "i7",
            "i6",
            "d67.88",
            "btrue",
            "i1764842400000",
            r#"{"desc":"card","n":"7"}"#,
            "null",
            "pos",
            "i123",
        ]
    );
}

#[test]
fn absent_values_are_null_and_mismatches_follow_the_policy() {
    let spec = [
        ("k", "string", "key"),
        ("ts", "timestamp", "timestamp"),
        ("amount", "long", "json:amount"),
        ("h", "int", "header:n"),
    ];
    let b = event(None, br#"{"amount":"lots"}"#, &[("n", b"x")], -1);
    let e = b.get(0).unwrap();

    let mut row = Row::new(4);
    assert_eq!(row.fill(&columns(&spec, OnMismatch::Null), &e), Ok(2));
    assert_eq!(cells(&row), ["null", "null", "null", "null"]);

    let err = row
        .fill(&columns(&spec, OnMismatch::DeadLetter), &e)
        .unwrap_err();
    assert_eq!(err.column, "amount");
    assert_eq!(
        err.to_string(),
        r#"column `amount` (long): "lots" is not a 64-bit integer"#
    );

    // A body that is not JSON is a mismatch of every `json:` column.
    let b = event(None, b"not json", &[], -1);
    let err = row
        .fill(
            &columns(&[("id", "string", "json:id")], OnMismatch::DeadLetter),
            &b.get(0).unwrap(),
        )
        .unwrap_err();
    assert!(err.why.starts_with("the value is not JSON"), "{err}");

    // Bytes that are not UTF-8 do not fit a string, but fit binary.
    let b = event(Some(&[0xff, 0xfe]), b"", &[], -1);
    let cols = columns(
        &[("s", "string", "key"), ("b", "binary", "key")],
        OnMismatch::Null,
    );
    assert_eq!(row.fill(&cols, &b.get(0).unwrap()), Ok(1));
    assert_eq!(row.cells[0], Cell::Null);
    assert_eq!(row.bytes(row.cells[1]), [0xff, 0xfe]);
}

#[test]
fn bad_specs_are_refused_with_the_column_and_reason() {
    let refuse = |defs: &[(&str, &str, &str)]| {
        let defs: Vec<ColumnDef> = defs.iter().map(|(n, k, f)| def(n, k, f)).collect();
        Columns::parse(&defs, OnMismatch::Null).unwrap_err().0
    };
    for (defs, want) in [
        (vec![("a", "string", "nothing")], "expected `key`"),
        (vec![("a", "int", "const:x")], "does not fit type `int`"),
        (
            vec![("a", "boolean", "offset")],
            "cannot be a `boolean` column",
        ),
        (
            vec![("a", "long", "headers")],
            "make the column `json` or `string`",
        ),
        (vec![("1a", "string", "key")], "starts with a digit"),
        (vec![("a b", "string", "key")], "only ASCII letters"),
        (
            vec![("a", "string", "key"), ("A", "string", "value")],
            "used by an earlier column",
        ),
        (vec![("a", "string", "json:x..y")], "empty field name"),
        (vec![("a", "string", "header:")], "needs a header name"),
    ] {
        let got = refuse(&defs);
        assert!(got.contains(want), "{defs:?}: {got}");
    }
    assert!(refuse(&[]).contains("at least one"));
}

#[test]
fn csv_and_tsv_quote_escape_and_mark_nulls() {
    let cols = columns(
        &[
            ("s", "string", "json:s"),
            ("n", "long", "json:n"),
            ("t", "timestamp", "json:t"),
            ("b", "binary", "key"),
            ("x", "double", "json:x"),
        ],
        OnMismatch::Null,
    );
    let b = event(
        Some(b"hi"),
        br#"{"s":"a,\"b\"\tc\nd\\","t":1764842400123,"x":0.5}"#,
        &[],
        -1,
    );
    let mut row = Row::new(5);
    row.fill(&cols, &b.get(0).unwrap()).unwrap();
    let mut out = Vec::new();
    Dialect::Csv.header(&cols, &mut out);
    Dialect::Csv.encode(&cols, &row, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "s,n,t,b,x\n\"a,\"\"b\"\"\tc\nd\\\",,2025-12-04 10:00:00.123,aGk=,0.5\n"
    );
    let mut out = Vec::new();
    Dialect::Tsv.encode(&cols, &row, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "a,\"b\"\\tc\\nd\\\\\t\\N\t2025-12-04 10:00:00.123\taGk=\t0.5\n"
    );
}

#[test]
fn parquet_files_read_back_with_their_types_nulls_and_statistics() {
    let cols = columns(
        &[
            ("id", "string", "json:event_id"),
            ("item", "int", "json:items[0].id"),
            ("o", "long", "offset"),
            ("amount", "double", "json:amount"),
            ("ok", "boolean", "json:ok"),
            ("ts", "timestamp", "timestamp"),
            ("k", "binary", "key"),
            ("opt", "string", "json:nope"),
        ],
        OnMismatch::Null,
    );
    let options = ParquetOptions {
        row_group_rows: 3000,
        ..ParquetOptions::default()
    };
    let mut file =
        ParquetFile::new(&cols, options.properties(Compression::Zstd, None).unwrap()).unwrap();
    let b = event(Some(b"key"), BODY, &[], 1_700_000_000_000);
    let mut row = Row::new(cols.columns.len());
    row.fill(&cols, &b.get(0).unwrap()).unwrap();
    // Drained as it is written, as the sink does.
    let mut bytes = Vec::new();
    for _ in 0..10_000 {
        file.push(&row).unwrap();
        bytes.append(file.output());
    }
    bytes.append(&mut file.finish().unwrap());

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
    let meta = reader.metadata().clone();
    assert_eq!(meta.num_row_groups(), 4, "10 000 rows in groups of 3000");
    let stats = meta.row_group(0).column(2).statistics().unwrap();
    assert_eq!(stats.null_count_opt(), Some(0));
    let schema = reader.schema().clone();
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect::<Vec<_>>(),
        [
            "Utf8",
            "Int32",
            "Int64",
            "Float64",
            "Boolean",
            "Timestamp(ms, \"UTC\")",
            "Binary",
            "Utf8"
        ]
    );
    let mut rows = 0;
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "e-1");
        assert_eq!(batch.column(1).as_primitive::<Int32Type>().value(0), 5);
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(0), 41);
        assert_eq!(
            batch.column(3).as_primitive::<Float64Type>().value(0),
            67.88
        );
        assert!(batch.column(4).as_boolean().value(0));
        assert_eq!(
            batch
                .column(5)
                .as_primitive::<TimestampMillisecondType>()
                .value(0),
            1_700_000_000_000
        );
        assert_eq!(batch.column(6).as_binary::<i32>().value(0), b"key");
        assert_eq!(batch.column(7).null_count(), batch.num_rows());
    }
    assert_eq!(rows, 10_000);
}
