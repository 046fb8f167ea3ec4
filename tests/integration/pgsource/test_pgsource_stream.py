"""Streaming from a real slot: every mapped type, unchanged TOAST, truncate, schema change,
restart after an acknowledged position."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import pyarrow as pa
import pytest

from syncengine.config.models import BatchConfig
from syncengine.sources.base import resume_position
from tests.integration.pgsource.pgsource_helpers import (  # noqa: F401 - fixture
    both_decode_modes,
    drain,
    execute,
    first_rows,
    make_source,
    rows,
)

pytestmark = pytest.mark.usefixtures("both_decode_modes")

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE alltypes (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, n12 numeric(12,2), nbig numeric,
  n50 numeric(50,10), r real, d double precision, t text, vc varchar(10), ch char(3),
  b boolean, by bytea, dd date, tm time, ts timestamp, tz timestamptz, iv interval,
  u uuid, j json, jb jsonb, ia integer[], ba bigint[], ta text[], m mood, ip inet,
  big text
)"""

INSERT = """
INSERT INTO alltypes VALUES (
  1, -32768, 2147483647, 1234567890.12,
  123456789012345678901234567890123456789012345.000000000001,
  1234567890123456789012345678901234567890.0123456789, 1.5, -2.25e-300, 'héllo', 'abc', 'x',
  true, '\\x00ff10', '2024-02-29', '13:14:15.123456', '2024-01-02 03:04:05.678901',
  '2024-01-02 03:04:05+02', '1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2]}', '{"b": {"c": null}}', '{1,NULL,3}', '{9000000000}', '{x,"y,z",NULL,"NULL"}',
  'happy', '192.168.1.5/24',
  (SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 32768) g)
)"""


def test_every_type_and_unchanged_toast_round_trip(pg_dsn):
    async def scenario():
        execute(pg_dsn, TYPES_DDL)
        source = make_source(pg_dsn, ["alltypes"])
        await source.open()
        _, start = await drain(source, None)
        execute(
            pg_dsn,
            INSERT,
            "UPDATE alltypes SET i2 = 7 WHERE id = 1",
            "DELETE FROM alltypes WHERE id = 1",
        )
        batches, _ = await drain(source, start)
        await source.close()
        return batches

    batches = asyncio.run(scenario())
    got = rows(batches, "public.alltypes")
    assert [r["_op"] for r in got] == ["c", "u", "d"]
    ins, upd, dele = got
    assert len(ins["big"]) == 1024 * 1024
    expected = {
        "i2": -32768,
        "i4": 2147483647,
        "n12": Decimal("1234567890.12"),
        "nbig": "123456789012345678901234567890123456789012345.000000000001",
        "n50": "1234567890123456789012345678901234567890.0123456789",
        "r": 1.5,
        "d": -2.25e-300,
        "t": "héllo",
        "vc": "abc",
        "ch": "x  ",
        "b": True,
        "by": b"\x00\xff\x10",
        "dd": dt.date(2024, 2, 29),
        "tm": dt.time(13, 14, 15, 123456),
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "tz": dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC),
        "iv": "1 year 2 mons 3 days 04:05:06",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": '{"a": [1, 2]}',
        "jb": '{"b": {"c": null}}',
        "ia": [1, None, 3],
        "ba": [9000000000],
        "ta": ["x", "y,z", None, "NULL"],
        "m": "happy",
        "ip": "192.168.1.5/24",
    }
    for column, value in expected.items():
        assert ins[column] == value, column
    # the update did not touch the TOASTed column: it is marked unsent, not NULL
    assert upd["i2"] == 7 and upd["big"] is None and upd["_unsent.big"] is True
    assert ins["_unsent.big"] is False
    assert dele["_before.id"] == 1
    schema = next(b for b in batches if b.num_rows).data.schema
    types = {
        "i2": pa.int16(),
        "i4": pa.int32(),
        "id": pa.int64(),
        "n12": pa.decimal128(12, 2),
        "nbig": pa.string(),
        "r": pa.float32(),
        "d": pa.float64(),
        "b": pa.bool_(),
        "by": pa.binary(),
        "dd": pa.date32(),
        "tm": pa.time64("us"),
        "ts": pa.timestamp("us"),
        "tz": pa.timestamp("us", tz="UTC"),
        "ia": pa.list_(pa.int32()),
        "ba": pa.list_(pa.int64()),
        "ta": pa.list_(pa.string()),
        "m": pa.string(),
    }
    for column, type_ in types.items():
        assert schema.field(column).type == type_, column
    meta = {c: schema.field(c).metadata[b"pg_type"] for c in ("n12", "vc", "ts", "ia", "m", "tz")}
    assert meta == {
        "n12": b"numeric(12,2)",
        "vc": b"character varying(10)",
        "ts": b"timestamp without time zone",
        "ia": b"integer[]",
        "m": b"mood",
        "tz": b"timestamp with time zone",
    }


def test_truncate_and_schema_change_mid_stream(pg_dsn):
    async def scenario():
        execute(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, a text)")
        source = make_source(pg_dsn, ["public.s"])
        await source.open()
        _, start = await drain(source, None)
        execute(
            pg_dsn,
            "INSERT INTO s VALUES (1, 'x')",
            "ALTER TABLE s ADD COLUMN b int",
            "INSERT INTO s VALUES (2, 'y', 5)",
            "ALTER TABLE s DROP COLUMN a",
            "UPDATE s SET b = 6 WHERE id = 2",
            "TRUNCATE s",
        )
        batches, _ = await drain(source, start)
        await source.close()
        return batches

    batches = [b for b in asyncio.run(scenario()) if b.num_rows]
    shapes = [(b.data_columns, b.data.column("_op").to_pylist()) for b in batches]
    assert shapes == [
        (["id", "a"], ["c"]),
        (["id", "a", "b"], ["c"]),
        (["id", "b"], ["u", "t"]),
    ]
    assert batches[1].data.column("b").to_pylist() == [5]
    assert batches[2].data.column("b").to_pylist() == [6, None]


def test_restart_after_acknowledged_position_gets_exactly_the_rest(pg_dsn):
    async def scenario():
        execute(pg_dsn, "CREATE TABLE r (id int PRIMARY KEY, v int)")
        source = make_source(pg_dsn, ["r"])
        await source.open()
        _, start = await drain(source, None)
        for i in range(5):
            execute(pg_dsn, f"INSERT INTO r VALUES ({i}, {i})")
        # read up to the third commit, acknowledge it, stop
        seen, acked = [], None
        stream = source.stream(start)
        async for batch in stream:
            seen.extend(batch.data.column("id").to_pylist())
            resume = resume_position(batch)
            if resume and len(seen) >= 3:
                await source.acknowledge(resume)
                acked = resume
                break
        await stream.aclose()
        await source.close()
        execute(pg_dsn, "INSERT INTO r VALUES (10, 10)", "UPDATE r SET v = -1 WHERE id = 0")
        again = make_source(pg_dsn, ["r"])
        await again.open()
        batches, _ = await drain(again, acked)
        await again.close()
        return seen, rows(batches)

    seen, after = asyncio.run(scenario())
    assert sorted(seen)[:3] == [0, 1, 2]
    tail = [(r["_op"], r["id"]) for r in after]
    expected_tail = [("c", i) for i in range(5) if i not in seen] + [("c", 10), ("u", 0)]
    assert tail == expected_tail


def test_replica_identity_full_and_key_change_send_before_images(pg_dsn):
    async def scenario():
        execute(
            pg_dsn,
            "CREATE TABLE full_t (id int PRIMARY KEY, a text, b int)",
            "ALTER TABLE full_t REPLICA IDENTITY FULL",
            "CREATE TABLE keyed (id int PRIMARY KEY, a text)",
        )
        source = make_source(pg_dsn, ["full_t", "keyed"])
        await source.open()
        _, start = await drain(source, None)
        execute(
            pg_dsn,
            "INSERT INTO full_t VALUES (1, 'x', 10)",
            "UPDATE full_t SET b = 11 WHERE id = 1",
            "DELETE FROM full_t WHERE id = 1",
            "INSERT INTO keyed VALUES (1, 'k')",
            "UPDATE keyed SET id = 2 WHERE id = 1",
        )
        batches, _ = await drain(source, start)
        await source.close()
        return batches

    batches = asyncio.run(scenario())
    full = rows(batches, "public.full_t")
    assert [(r["_op"], r["_before.id"], r["_before.a"], r["_before.b"]) for r in full] == [
        ("c", None, None, None),
        ("u", 1, "x", 10),
        ("d", 1, "x", 11),
    ]
    assert full[2]["a"] == "x" and full[2]["b"] == 11  # the old row, in the data columns too
    assert next(b for b in batches if b.table == "public.full_t").key == ("id",)
    keyed = rows(batches, "public.keyed")
    # a key change: the old key's row goes first, then the new key's row
    assert [(r["_op"], r["id"], r["_before.id"]) for r in keyed] == [
        ("c", 1, None),
        ("d", 1, 1),
        ("u", 2, 1),
    ]


def test_snapshot_and_stream_give_identical_arrow_for_every_type(pg_dsn):
    async def scenario():
        execute(pg_dsn, TYPES_DDL)
        source = make_source(pg_dsn, ["alltypes"])
        await source.open()
        _, start = await drain(source, None)
        execute(
            pg_dsn,
            INSERT,
            "INSERT INTO alltypes (id, t, ta, j) VALUES "
            "(2, E'line\\nbreak, \"quoted\"', '{}', NULL), (3, '', '{\"\"}', 'null')",
        )
        batches, _ = await drain(source, start)
        scanned = [b async for b in source.scan("alltypes")]
        await source.close()
        return batches, scanned

    batches, scanned = asyncio.run(scenario())
    streamed = pa.concat_tables([b.rows for b in batches if b.num_rows])
    snap = pa.concat_tables([b.rows for b in scanned])
    assert snap.schema.equals(streamed.schema, check_metadata=True)
    assert snap.to_pylist() == streamed.to_pylist()
    by_id = {r["id"]: r for r in snap.to_pylist()}
    assert by_id[2]["t"] == 'line\nbreak, "quoted"' and by_id[2]["ta"] == []
    assert by_id[3]["t"] == "" and by_id[3]["ta"] == [""] and by_id[3]["j"] == "null"
    assert by_id[2]["i2"] is None


def test_a_lone_transaction_is_handed_out_long_before_max_wait(pg_dsn):
    """Adaptive groups: with the stream quiet after a commit, the rows go out after
    ``streaming.QUIET`` seconds, not ``batch.max_wait`` (5 s here)."""

    async def scenario():
        execute(pg_dsn, "CREATE TABLE lone (id int PRIMARY KEY)")
        source = make_source(pg_dsn, ["lone"])
        source.batch = BatchConfig(max_rows=1000, max_wait=5.0)
        await source.open()
        _, start = await drain(source, None)
        stream = source.stream(start)

        first = asyncio.ensure_future(first_rows(stream))
        await asyncio.sleep(0.5)  # the stream is up and idle
        started = time.monotonic()
        execute(pg_dsn, "INSERT INTO lone VALUES (1), (2)")
        batch = await asyncio.wait_for(first, 10)
        waited = time.monotonic() - started
        await stream.aclose()
        await source.close()
        return batch, waited

    batch, waited = asyncio.run(scenario())
    assert batch.data.column("id").to_pylist() == [1, 2]
    assert resume_position(batch) is not None
    assert waited < 2.5, f"took {waited:.2f} s: held for max_wait"
