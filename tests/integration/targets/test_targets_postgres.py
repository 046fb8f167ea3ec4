"""Postgres target specifics: exact types, schema-change policy, rejected rows, errors."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.conflicts.rows import row_keys
from syncengine.errors import FatalError, TargetUnavailable
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.postgres import PostgresTarget
from tests.integration.targets.conftest import make_batch, run
from tests.statements import track_statements


def shadow_for(batch: ChangeBatch) -> ShadowUpdate:
    """Shadow upserts for every row, keyed the way the conflict layer keys them."""
    keys = row_keys(batch.to_polars(), batch.key)
    return ShadowUpdate(pa.table({"row_key": keys.to_arrow(), "row_hash": keys.to_arrow()}))


def target(dsn: str, **extra: str) -> PostgresTarget:
    return PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=dsn, **extra), None)


def meta(name: str, type_: pa.DataType, pg: str) -> pa.Field:
    return pa.field(name, type_, metadata={"pg_type": pg})


TYPED = pa.schema(
    [
        pa.field("id", pa.int64()),
        meta("price", pa.decimal128(12, 2), "numeric(12,2)"),
        meta("code", pa.string(), "character varying(20)"),
        meta("ref", pa.string(), "uuid"),
        meta("small", pa.int16(), "smallint"),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("day", pa.date32()),
        pa.field("ok", pa.bool_()),
        pa.field("ratio", pa.float64()),
        pa.field("doc", pa.struct([("a", pa.int64()), ("b", pa.string())])),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("raw", pa.binary()),
        meta("payload", pa.string(), "jsonb"),
    ]
)
TYPED_ROWS = [
    {
        "id": 1,
        "price": Decimal("1234.50"),
        "code": "ab",
        "ref": "0b5d7c1e-8f8a-4c47-9a43-6f2f1f2b9a11",
        "small": 7,
        "at": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "ok": True,
        "ratio": 0.25,
        "doc": {"a": 1, "b": 'q"u,o\nte'},
        "tags": ["x", "y z", 'q"'],
        "raw": b"\x00\xffab",
        "payload": '{"k": [1, 2]}',
    },
    {k: None for k in TYPED.names} | {"id": 2, "code": "", "tags": []},
]


def test_exact_types_from_metadata_round_trip(pg_target_dsn: str) -> None:
    spec = TableSpec("typed", ("id",), TYPED)

    async def scenario() -> pa.Table:
        t = target(pg_target_dsn)
        await t.open()
        spec2 = await t.ensure_table(spec)
        batch = make_batch("typed", ("id",), TYPED_ROWS, TYPED, ["c", "c"], ["1", "2"])
        await t.apply([TableWrite(spec2, batch)], None)
        found = await t.read_rows(spec2, pa.table({"id": [1, 2, 3]}))
        await t.close()
        return found

    found = run(scenario())
    got = sorted(found.to_pylist(), key=lambda r: r["id"])
    assert got[0] == TYPED_ROWS[0] | {"payload": '{"k": [1, 2]}'}
    assert got[1] == TYPED_ROWS[1]
    with psycopg.connect(pg_target_dsn) as conn:
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'typed'::regclass AND attnum > 0"
            ).fetchall()
        )
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'typed'::regclass AND i.indisprimary"
        ).fetchall()
    assert types == {
        "id": "bigint",
        "price": "numeric(12,2)",
        "code": "character varying(20)",
        "ref": "uuid",
        "small": "smallint",
        "at": "timestamp with time zone",
        "day": "date",
        "ok": "boolean",
        "ratio": "double precision",
        "doc": "jsonb",
        "tags": "text[]",
        "raw": "bytea",
        "payload": "jsonb",
    }
    assert pk == [("id",)]


BASE = pa.schema([("id", pa.int64()), ("v", pa.string())])
GROWN = BASE.append(pa.field("extra", pa.string()))


def test_on_schema_change_fail_and_ignore(pg_target_dsn: str) -> None:
    async def scenario() -> None:
        strict = target(pg_target_dsn, on_schema_change="fail")
        await strict.open()
        await strict.ensure_table(TableSpec("t_fail", ("id",), BASE))
        with pytest.raises(FatalError, match="lacks column"):
            await strict.ensure_table(TableSpec("t_fail", ("id",), GROWN))
        await strict.close()

        lax = target(pg_target_dsn, on_schema_change="ignore")
        await lax.open()
        await lax.ensure_table(TableSpec("t_ign", ("id",), BASE))
        spec = await lax.ensure_table(TableSpec("t_ign", ("id",), GROWN))
        assert spec.schema.names == ["id", "v"]
        batch = make_batch(
            "t_ign", ("id",), [{"id": 1, "v": "a", "extra": "x"}], GROWN, ["c"], ["1"]
        )
        await lax.apply([TableWrite(spec, batch)], None)
        await lax.close()

    run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT * FROM t_ign").fetchall() == [(1, "a")]


def test_bad_rows_are_rejected_and_the_rest_commits(pg_target_dsn: str) -> None:
    schema = pa.schema([("id", pa.int64()), meta("qty", pa.int64(), "integer"), ("v", pa.string())])
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bad (id bigint PRIMARY KEY, qty integer CHECK (qty >= 0), v text)"
        )
    rows = [
        {"id": 1, "qty": 1, "v": "ok"},
        {"id": 2, "qty": -5, "v": "check violation"},
        {"id": 3, "qty": 2**40, "v": "integer overflow (fails in COPY)"},
        {"id": 4, "qty": 4, "v": "ok"},
        {"id": 5, "qty": 5, "v": "nul byte \x00 refused"},
        {"id": 6, "qty": 6, "v": "ok"},
    ]

    async def scenario():
        t = target(pg_target_dsn)
        await t.open()
        spec = await t.ensure_table(TableSpec("bad", ("id",), schema))
        batch = make_batch("bad", ("id",), rows, schema, ["c"] * 6, [str(i) for i in range(6)])
        write = TableWrite(spec, batch, shadow_for(batch))
        result = await t.apply([write], Checkpoint("s", "5"))
        checkpoint = await t.get_checkpoint("s")
        keys = sorted(
            (await t.read_shadow("bad", write.shadow.upserts["row_key"].to_pylist()))[
                "row_key"
            ].to_pylist()
        )
        await t.close()
        return result, checkpoint, keys

    result, checkpoint, shadow_keys = run(scenario())
    assert shadow_keys == ['{"id":1}', '{"id":4}', '{"id":6}']  # refused rows get no shadow
    assert sorted(r[1]["id"] for r in result.rejected) == [2, 3, 5]
    assert all(r[0] == "bad" and r[2] for r in result.rejected)
    assert result.upserted == 3
    assert checkpoint == "5"
    with psycopg.connect(pg_target_dsn) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM bad ORDER BY id")] == [1, 4, 6]


def test_errors_carry_retry_policy_and_no_password(pg_target_dsn: str) -> None:
    from tests.servers import free_port

    dsn = f"postgresql://someone:s3cr3tpw@127.0.0.1:{free_port()}/x"

    async def unreachable() -> None:
        await target(dsn).open()

    with pytest.raises(TargetUnavailable) as caught:
        run(unreachable())
    assert "s3cr3tpw" not in str(caught.value)

    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE nokey (id bigint, v text)")

    async def no_key() -> None:
        t = target(pg_target_dsn)
        await t.open()
        try:
            await t.ensure_table(TableSpec("nokey", ("id",), BASE))
        finally:
            await t.close()

    with pytest.raises(FatalError, match="no primary key or unique index"):
        run(no_key())


def test_schema_qualified_names_and_configured_schema(pg_target_dsn: str) -> None:
    async def scenario() -> None:
        t = target(pg_target_dsn, schema="landing")
        await t.open()
        for name in ("plain", "analytics.qualified"):
            spec = await t.ensure_table(TableSpec(name, ("id",), BASE))
            batch = make_batch(name, ("id",), [{"id": 1, "v": name}], BASE, ["c"], ["1"])
            await t.apply([TableWrite(spec, batch)], None)
        await t.close()

    run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT v FROM landing.plain").fetchall() == [("plain",)]
        assert conn.execute("SELECT v FROM analytics.qualified").fetchall() == [
            ("analytics.qualified",)
        ]


@pytest.mark.parametrize("key_type", [pa.int64(), pa.string(), pa.timestamp("us", tz="UTC")])
def test_inserts_take_the_copy_path_only_for_new_keys(pg_target_dsn: str, key_type) -> None:
    """``c`` rows for keys the target already has must upsert (the key probe sends them down
    the staged path), whatever the key type and whether the range probe or the exact one
    decides."""
    import datetime as dt

    schema = pa.schema([("k", key_type), ("v", pa.string())])
    if pa.types.is_timestamp(key_type):
        keys = [dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3, 4)]
    else:
        keys = [1, 2, 3, 4] if pa.types.is_integer(key_type) else ["a", "B", "c", "D"]

    def batch(ks, v, pos):
        rows = [{"k": k, "v": v} for k in ks]
        return make_batch(
            "kp", ("k",), rows, schema, ["c"] * len(ks), [f"{pos}{i}" for i in range(len(ks))]
        )

    async def scenario() -> None:
        t = target(pg_target_dsn)
        await t.open()
        spec = await t.ensure_table(TableSpec("kp", ("k",), schema))
        await t.apply([TableWrite(spec, batch(keys[:2], "first", 1))], None)  # empty: COPY
        await t.apply([TableWrite(spec, batch(keys[2:], "first", 2))], None)  # disjoint: COPY
        result = await t.apply([TableWrite(spec, batch(keys[1:3], "second", 3))], None)
        assert result.upserted == 2 and result.rejected == []
        await t.close()

    run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        got = sorted(r[0] for r in conn.execute("SELECT v FROM kp").fetchall())
    assert got == ["first", "first", "second", "second"]


def typed(name: str, pg: str, defs: list[dict]) -> pa.Field:
    return pa.field(name, pa.string(), metadata={"pg_type": pg, "pg_typedefs": json.dumps(defs)})


MOOD = {"name": "mood", "kind": "enum", "labels": ["sad", "o'k"]}
USER_TYPES = pa.schema(
    [
        pa.field("id", pa.int64()),
        typed("m", "mood", [MOOD]),
        typed("ms", "mood[]", [MOOD]),
        typed(
            "p",
            "pair",
            [
                MOOD,
                {
                    "name": "pair",
                    "kind": "composite",
                    "attributes": [["a", "integer"], ["m", "mood"]],
                },
            ],
        ),
        typed(
            "d",
            "posint",
            [
                {
                    "name": "posint",
                    "kind": "domain",
                    "base": "integer",
                    "not_null": False,
                    "checks": ["CHECK ((VALUE > 0))"],
                }
            ],
        ),
        typed("e", "citext", [{"name": "citext", "kind": "other"}]),
        typed(
            "bad",
            "sneaky",
            [
                {
                    "name": "sneaky",
                    "kind": "domain",
                    "base": "integer",
                    "not_null": False,
                    "checks": ["CHECK (true); DROP TABLE x"],
                }
            ],
        ),
    ]
)


def test_user_defined_types_are_created_in_the_target_schema_or_fall_back_to_text(
    pg_target_dsn: str,
) -> None:
    """Types from ``pg_typedefs`` are created before the table (in ``target.schema``); an
    extension type the target lacks, or a definition that does not look like one, makes the
    column text; an enum that exists gains the labels it lacks."""
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA lake")
        conn.execute("CREATE TYPE lake.mood AS ENUM ('sad')")
    spec = TableSpec("feelings", ("id",), USER_TYPES)
    row = {"id": 1, "m": "o'k", "ms": "{sad,o'k}", "p": "(3,sad)", "d": "5", "e": "Ab", "bad": "1"}

    async def scenario() -> None:
        t = target(pg_target_dsn, schema="lake")
        await t.open()
        spec2 = await t.ensure_table(spec)
        batch = make_batch("feelings", ("id",), [row], USER_TYPES, ["c"], ["1"])
        await t.apply([TableWrite(spec2, batch)], None)
        await t.close()

    run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'lake.feelings'::regclass AND attnum > 0"
            ).fetchall()
        )
        labels = conn.execute("SELECT enum_range(NULL::lake.mood)::text").fetchone()
        stored = conn.execute(
            "SELECT m::text, ms::text, p::text, d::text, e, bad FROM lake.feelings"
        ).fetchone()
        refused = conn.execute("SELECT 1 FROM lake.feelings WHERE d = 0").fetchall()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO lake.feelings (id, d) VALUES (2, 0)")
    assert types == {
        "id": "bigint",
        "m": "lake.mood",
        "ms": "lake.mood[]",
        "p": "lake.pair",
        "d": "lake.posint",
        "e": "text",
        "bad": "text",
    }
    assert labels == ("{sad,o'k}",)
    assert stored == ("o'k", "{sad,o'k}", "(3,sad)", "5", "Ab", "1")
    assert refused == []


def _statement_calls(dsn: str, pattern: str) -> int:
    """How often this database ran statements like ``pattern`` (pg_stat_statements)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query ILIKE %s",
            (pattern,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _savepoints(dsn: str) -> int:
    return _statement_calls(dsn, "SAVEPOINT%")


def test_a_group_takes_savepoints_only_when_a_row_is_refused(pg_target_dsn: str) -> None:
    """A group is tried without a savepoint per statement (two round trips a table that only
    a bad row needs); a refused row rolls that attempt back and the group is applied again
    with them, bisecting to the row: the same result as if they had been there all along."""
    track_statements(pg_target_dsn)
    schema = pa.schema([("id", pa.int64()), meta("qty", pa.int64(), "integer")])
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE sp (id bigint PRIMARY KEY, qty integer CHECK (qty >= 0))")
        conn.execute("INSERT INTO sp SELECT i, 0 FROM generate_series(1, 4) i")

    async def apply(rows: list[dict], ops: list[str], position: str):
        t = target(pg_target_dsn)
        await t.open()
        spec = await t.ensure_table(TableSpec("sp", ("id",), schema))
        n = len(rows)
        batch = make_batch("sp", ("id",), rows, schema, ops, [f"{position}.{i}" for i in range(n)])
        result = await t.apply(
            [TableWrite(spec, batch, shadow_for(batch))], Checkpoint("s", position)
        )
        await t.close()
        return result

    before = _savepoints(pg_target_dsn)
    clean = run(
        apply([{"id": 1, "qty": 1}, {"id": 2, "qty": 2}, {"id": 5, "qty": 5}], ["u", "u", "c"], "1")
    )
    assert clean.rejected == [] and _savepoints(pg_target_dsn) == before
    bad = run(apply([{"id": 3, "qty": -1}, {"id": 4, "qty": 4}], ["u", "u"], "2"))
    assert [r[1]["id"] for r in bad.rejected] == [3]
    assert _savepoints(pg_target_dsn) > before
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT id, qty FROM sp ORDER BY id").fetchall() == [
            (1, 1), (2, 2), (3, 0), (4, 4), (5, 5)
        ]  # fmt: skip
        checkpoint = conn.execute(
            "SELECT position FROM _syncengine.checkpoints WHERE stream = 's'"
        ).fetchone()
    assert checkpoint == ("2",)


def _creates(dsn: str) -> int:
    return _statement_calls(dsn, 'CREATE TEMP TABLE IF NOT EXISTS "_syncengine_stage%')


def test_a_staging_table_is_created_once_a_session_unless_its_transaction_rolled_back(
    pg_target_dsn: str,
) -> None:
    track_statements(pg_target_dsn)
    schema = pa.schema([("id", pa.int64()), meta("qty", pa.int64(), "integer")])
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE st (id bigint PRIMARY KEY, qty integer CHECK (qty >= 0))")
        conn.execute("INSERT INTO st SELECT i, 0 FROM generate_series(1, 9) i")
    creates: list[int] = []

    async def scenario():
        t = target(pg_target_dsn)
        await t.open()
        spec = await t.ensure_table(TableSpec("st", ("id",), schema))
        groups = [  # (rows, ops): clean, clean, one refused row, clean
            ([{"id": 1, "qty": 1}, {"id": 2, "qty": 2}], ["u", "u"]),
            ([{"id": 3, "qty": 3}], ["u"]),
            ([{"id": 4, "qty": -4}, {"id": 5, "qty": 5}], ["u", "u"]),
            ([{"id": 6, "qty": 6}], ["u"]),
        ]
        for n, (rows, ops) in enumerate(groups, start=1):
            positions = [f"{n}.{i}" for i in range(len(rows))]
            batch = make_batch("st", ("id",), rows, schema, ops, positions)
            await t.apply([TableWrite(spec, batch, shadow_for(batch))], Checkpoint("s", str(n)))
            creates.append(_creates(pg_target_dsn))
        await t.close()

    run(scenario())
    first = creates[0]
    assert first >= 1
    # the second group reuses what the first committed; the refused row's first attempt rolled
    # its transaction back, but its table was created earlier and stays; the last group too
    assert creates == [first, first, first, first]
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT id, qty FROM st WHERE id <= 6 ORDER BY id").fetchall() == [
            (1, 1), (2, 2), (3, 3), (4, 0), (5, 5), (6, 6)
        ]  # fmt: skip

    # a session whose first group is refused a row: the attempt that created the staging table
    # rolled back (dropping it), so the attempt with savepoints must create it again
    async def refused_first():
        t = target(pg_target_dsn)
        await t.open()
        spec = await t.ensure_table(TableSpec("st", ("id",), schema))
        rows = [{"id": 7, "qty": -7}, {"id": 8, "qty": 8}]
        batch = make_batch("st", ("id",), rows, schema, ["u", "u"], ["9.0", "9.1"])
        result = await t.apply([TableWrite(spec, batch, shadow_for(batch))], Checkpoint("s", "9"))
        await t.close()
        return result

    result = run(refused_first())
    assert [r[1]["id"] for r in result.rejected] == [7]
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT qty FROM st WHERE id IN (7, 8) ORDER BY id").fetchall() == [
            (0,),
            (8,),
        ]
