"""Reads a lake directory with real readers and prints what they saw as JSON.

Used by the lake tests (tests/tests/lake_parquet.rs, runtime/tests/lake_tables.rs):

  read_lake.py duckdb-rows GLOB          every row DuckDB reads through its Hive
                                        partitioning, with DuckDB's column types
  read_lake.py pyarrow-files DIR        every Parquet file's schema, row groups,
                                        codec and statistics, as PyArrow reads them
  read_lake.py duckdb-ddl SQL_FILE VIEW runs the statement (a `sluice ddl
                                        --dialect duckdb` output), then reads the
                                        view it defines: column types and rows

Rows are printed as JSON objects; timestamps as epoch milliseconds, binary as
hex, so the Rust side compares exact values.
"""

import datetime
import json
import os
import sys


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return round(value.timestamp() * 1000)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def rows_of(relation):
    names = relation.columns
    types = [str(t) for t in relation.types]
    rows = [dict(zip(names, map(plain, row))) for row in relation.fetchall()]
    return {"columns": dict(zip(names, types)), "rows": rows}


def duckdb_rows(glob):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
        "hive_types = {'dt': VARCHAR, 'hr': VARCHAR})"
    )
    return rows_of(rel)


def pyarrow_files(root):
    import pyarrow.parquet as pq

    files = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if not name.endswith(".parquet"):
                continue
            path = os.path.join(dirpath, name)
            f = pq.ParquetFile(path)
            meta = f.metadata
            columns = []
            for i in range(meta.num_columns):
                chunk = meta.row_group(0).column(i)
                columns.append(
                    {
                        "name": chunk.path_in_schema,
                        "physical": chunk.physical_type,
                        "codec": chunk.compression,
                        "statistics": chunk.is_stats_set,
                        "dictionary": chunk.has_dictionary_page,
                    }
                )
            files.append(
                {
                    "path": os.path.relpath(path, root),
                    "rows": meta.num_rows,
                    "row_groups": meta.num_row_groups,
                    "arrow_schema": {fld.name: str(fld.type) for fld in f.schema_arrow},
                    "columns": columns,
                }
            )
    return {"files": files}


def duckdb_ddl(sql_file, view):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with open(sql_file) as f:
        con.execute(f.read())
    return rows_of(con.sql(f'SELECT * FROM "{view}"'))


def main():
    mode = sys.argv[1]
    if mode == "duckdb-rows":
        out = duckdb_rows(sys.argv[2])
    elif mode == "pyarrow-files":
        out = pyarrow_files(sys.argv[2])
    elif mode == "duckdb-ddl":
        out = duckdb_ddl(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
