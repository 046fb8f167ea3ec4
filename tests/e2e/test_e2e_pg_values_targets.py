"""Postgres values without an Arrow form into Mongo and Parquet follow the documented mapping
(docs/postgres-source.md, "Values beyond Arrow"), through the backfill and the stream, and never
become a silent null."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import numpy as np
import pyarrow as pa
from bson import Decimal128
from pymongo import MongoClient

from syncengine.targets.parquet import read_log
from tests.e2e.harness import CLI, execute

SOURCE = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok')",
    "CREATE TABLE v (id int PRIMARY KEY, ts timestamptz, d date, t time, ia int[][], "
    "n numeric(12,2), mo mood)",
)
ROWS = (
    "(1, 'infinity', 'infinity', '24:00:00', '{{1,2},{3,NULL}}', 'NaN', 'ok')",
    "(2, '-infinity', '-infinity', '12:00:00', '{5}', '1.25', 'sad')",
    "(3, '0044-03-15 12:00:00+00 BC', '4713-01-01 BC', '00:00:00', '[0:1]={7,8}', NULL, NULL)",
)


def config(target: str) -> str:
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          other:
            source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.v]}}
            target: {target}
            batch: {{max_rows: 100, max_wait: 100ms}}
        """
    )


def ms(iso: str) -> int:
    """Milliseconds since 1970 of a proleptic Gregorian instant (year 0 = 1 BC)."""
    return int(np.datetime64(iso, "ms").astype(np.int64))


def seed_and_sync(cli: CLI, pg_dsn: str) -> None:
    """Rows 1-3 through the backfill, rows 11-13 (the same values) through the stream."""
    execute(pg_dsn, *SOURCE, "INSERT INTO v VALUES " + ", ".join(ROWS))
    cli.run("backfill")
    again = [r.replace("(", "(1", 1) for r in ROWS]
    execute(pg_dsn, "INSERT INTO v VALUES " + ", ".join(again))
    result = cli.run("sync", "--once")
    assert "dead letter" not in result.stderr.lower(), result.stderr


def test_mongo_gets_postgres_text_for_dates_beyond_python_and_nested_arrays(
    tmp_path, pg_dsn, mongo_uri, mongo_db
):
    target = '{type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}'
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, config(target), env)
    seed_and_sync(cli, pg_dsn)
    with MongoClient(mongo_uri) as client:
        docs = {d["_id"]: d for d in client[mongo_db].v.find({})}
    assert sorted(docs) == [1, 2, 3, 11, 12, 13]
    for base in (0, 10):  # backfill and stream alike
        one, two, three = docs[base + 1], docs[base + 2], docs[base + 3]
        # beyond Python's datetime (years 1-9999): Postgres's text, never a silent null
        assert one["ts"] == "infinity" and one["d"] == "infinity"
        assert two["ts"] == "-infinity" and two["d"] == "-infinity"
        assert three["ts"] == "0044-03-15 12:00:00+00 BC"
        assert three["d"] == "4713-01-01 BC"
        assert one["t"] == "24:00:00" and two["t"] == "12:00:00"
        assert one["ia"] == [[1, 2], [3, None]] and two["ia"] == [5]
        assert three["ia"] == "[0:1]={7,8}"  # explicit bounds: only the text keeps them
        assert one["n"] == Decimal128("NaN") and two["n"] == Decimal128(Decimal("1.25"))
        assert one["mo"] == "ok" and three["mo"] is None and three["n"] is None


def test_parquet_keeps_native_types_and_the_source_type_of_text_columns(tmp_path, pg_dsn):
    target = f'{{type: parquet, path: "{tmp_path / "lake"}"}}'
    cli = CLI(tmp_path, config(target), {"SRC_DSN": pg_dsn})
    seed_and_sync(cli, pg_dsn)
    log = read_log(tmp_path / "lake", "v")
    by_id = {r["id"]: r for r in log.select(["id", "t", "ia", "n", "mo"]).to_pylist()}
    for base in (0, 10):
        assert by_id[base + 1]["t"] == "24:00:00"
        assert by_id[base + 1]["ia"] == "{{1,2},{3,NULL}}"
        assert by_id[base + 2]["ia"] == "{5}"  # native in its own batch, text once unified
        assert by_id[base + 3]["ia"] == "[0:1]={7,8}"
        assert by_id[base + 1]["n"] == "NaN" and by_id[base + 1]["mo"] == "ok"
    stamps = log.column("ts").cast(pa.int64()).to_pylist()
    ids = log.column("id").to_pylist()
    got = dict(zip(ids, stamps, strict=True))
    assert got[1] == got[11] == 2**63 - 1 and got[2] == got[12] == -(2**63)
    assert got[3] == got[13] == ms("-0043-03-15T12:00:00") * 1000
    assert log.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    # every file records the Postgres type, also of a column it holds as text
    import pyarrow.parquet as pq

    for path in sorted((tmp_path / "lake" / "v").glob("date=*/*.parquet")):
        schema = pq.read_schema(path)
        assert schema.field("t").metadata[b"pg_type"] == b"time without time zone"
        assert schema.field("ia").metadata[b"pg_type"] == b"integer[]"
        assert schema.field("ts").metadata[b"pg_type"] == b"timestamp with time zone"
