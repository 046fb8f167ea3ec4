"""The binary COPY passthrough of snapshot chunks, through the real CLI on real servers.

Whether a chunk passed through is read from what the servers executed (``pg_stat_statements``
on a cluster of this module's own), never from the engine's variables: the source ran
``COPY (SELECT … <range>) TO STDOUT (FORMAT binary)`` and the target ``COPY … FROM STDIN
(FORMAT binary)``, or the source ran the decoded path's ``FORMAT csv`` reads.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from syncengine.config.loader import load_config
from syncengine.runtime.pipeline import Pipeline
from syncengine.sources.base import resume_position
from syncengine.state import SQLiteStateStore
from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.reliability.rel_support import apply_audit, install_apply_audit
from tests.servers import PostgresServer

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SYNCENGINE_TEST_PG_DSN")), reason="needs its own cluster"
)


def config(tables: list[str], chunk_rows: int = 500, mappings: str = "") -> str:
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          pt:
            source:
              type: postgres
              dsn: ${{SRC_DSN}}
              tables: [{", ".join(tables)}]
              snapshot_chunk_rows: {chunk_rows}
            target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
            batch: {{max_rows: 1000, max_wait: 100ms}}
        """
    ) + textwrap.indent(textwrap.dedent(mappings), "    ")


@pytest.fixture(scope="module")
def counted() -> Iterator[PostgresServer]:
    """A cluster that counts every statement (``pg_stat_statements``, utility ones too)."""
    server = PostgresServer(
        settings={
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track_utility": "on",
            "pg_stat_statements.max": "10000",
        }
    ).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def dbs(counted: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, str]]:
    names = [f"pt_src_{tmp_path.name[-12:]}", f"pt_tgt_{tmp_path.name[-12:]}"]
    names = [n.replace("-", "_").lower() for n in names]
    with psycopg.connect(counted.dsn(), autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    src, tgt = (counted.dsn(n) for n in names)
    for dsn in (src, tgt):  # the view, to read the counts from either database
        execute(dsn, "CREATE EXTENSION pg_stat_statements")
    execute(src, "SELECT pg_stat_statements_reset()")
    yield src, tgt
    with psycopg.connect(counted.dsn(), autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def copies(dsn: str, table: str, fmt: str) -> int:
    """How many ``COPY … (FORMAT fmt)`` statements naming ``table`` the server ran in the
    database of ``dsn`` (both directions: the source's reads, the target's writes)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        (calls,) = conn.execute(
            "SELECT coalesce(sum(s.calls), 0)::int FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
            "AND s.query ILIKE 'COPY%%' AND s.query ILIKE %s AND s.query ILIKE %s",
            (f"%{table}%", f"%FORMAT {fmt}%"),
        ).fetchone()
    return int(calls)


def dump(dsn: str, table: str) -> list[tuple[object, ...]]:
    """Every row in Postgres's own text form, in key order: equal dumps = equal values."""
    return rows(dsn, f"SELECT id, t::text FROM {table} t ORDER BY id")  # test-only names


def column_types(dsn: str, table: str) -> list[tuple[object, ...]]:
    return rows(
        dsn,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    )


# every type the snapshot tests cover, values the decoded path cannot carry, NULLs, TOAST
EVERY_TYPE = (
    "CREATE TABLE every (id bigint PRIMARY KEY, i2 smallint, i4 integer, txt text, "
    "vc varchar(10), ch char(5), big numeric, money numeric(12,2), r real, d double precision, "
    "b boolean, raw bytea, day date, tod time, ts timestamp, tstz timestamptz, span interval, "
    "u uuid, j json, jb jsonb, ints integer[], texts text[], bools boolean[], "
    "floats double precision[], grid integer[], addr inet, mac macaddr, doc xml, huge text, "
    "blob bytea)",
    "INSERT INTO every SELECT g, (g % 30000)::smallint, g * 7, 'row ' || g || E' \\t\"q\",\\n', "
    "left(md5(g::text), 10), 'c' || (g % 9), "
    "('12345678901234567890123456789012345678901234567890.' || g)::numeric, "
    "(g * 1.25)::numeric(12,2), g / 3.0, g / 7.0, g % 2 = 0, "
    "decode(md5(g::text), 'hex'), date '2024-01-01' + g, time '00:00' + g * interval '1 s', "
    "timestamp '2024-01-01' + g * interval '1 min', "
    "timestamptz '2024-01-01 00:00+00' + g * interval '1 h', "
    "make_interval(years => g % 3, days => g % 40, secs => g / 1000.0), md5(g::text)::uuid, "
    "json_build_object('g', g, 'unicode', 'ü€𝄞'), jsonb_build_object('g', g, 'n', null), "
    "ARRAY[g, NULL, -g], ARRAY['a', NULL, 'NULL', '\"q\"'], ARRAY[true, NULL], "
    "ARRAY[g / 3.0, 'Infinity'::float8], ARRAY[[g, 1], [2, 3]], '10.0.0.1'::inet + g, "
    "'08:00:2b:01:02:03'::macaddr, xmlparse(content '<a>' || g || '</a>'), NULL, NULL "
    "FROM generate_series(1, 3000) g",
    # values with no Arrow form, and NULLs in every column but the key
    "INSERT INTO every (id, big, r, d, day, ts, tstz) VALUES "
    "(3001, 'NaN', 'NaN', '-Infinity', 'infinity', '-infinity', 'infinity'), "
    "(3002, NULL, NULL, NULL, date '0044-03-15 BC', NULL, NULL)",
    "INSERT INTO every (id) VALUES (3003)",
    # TOAST-sized values, stored out of line
    "UPDATE every SET huge = (SELECT string_agg(md5(g::text || id), '') "
    "FROM generate_series(1, 40000) g), blob = decode(repeat(md5(id::text), 20000), 'hex') "
    "WHERE id % 1000 = 0",
)


def test_passthrough_backfill_is_exact_for_every_type(dbs, tmp_path):
    src, tgt = dbs
    execute(src, *EVERY_TYPE)
    cli = CLI(tmp_path, config(["public.every"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    result = cli.run("backfill", "--parallel", "2")
    assert "3003 rows copied" in result.stdout + result.stderr
    assert column_types(tgt, "every") == column_types(src, "every")
    assert dump(tgt, "every") == dump(src, "every")
    huge = rows(tgt, "SELECT sum(length(huge)), sum(length(blob)) FROM every")
    assert huge == [(3 * 1_280_000, 3 * 320_000)]
    # taken: 7 chunks read in binary at the source and written in binary at the target,
    # nothing decoded; the done-marks committed at the target; remote keeps no shadow rows
    assert copies(src, "every", "binary") == 7
    assert copies(tgt, "every", "binary") == 7
    assert copies(src, "every", "csv") == 0
    marks = rows(
        tgt, "SELECT count(*), sum(row_count) FROM _syncengine.chunks WHERE status = 'done'"
    )
    assert marks == [(7, 3003)]
    assert rows(tgt, "SELECT count(*) FROM _syncengine.shadow") == [(0,)]
    state = SQLiteStateStore(tmp_path / "state.db")
    chunks = state.get_chunks("pt", "public.every")
    assert [c.status for c in chunks] == ["done"] * 7 and sum(c.rows for c in chunks) == 3003


PLAIN = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer NOT NULL, note text)",
    "INSERT INTO {t} SELECT g, g % 50, 'n' || g FROM generate_series(1, 2000) g",
)


def test_passthrough_falls_back_where_it_would_not_be_exact(dbs, tmp_path):
    """Not an identity mapping, other column types, a row the target refuses, a filter the
    snapshot cannot push: each table gets exactly the rows the decoded path gives it, and
    only the plain one and the one with a pushed filter are copied through (the refused one
    except for its refused chunk)."""
    src, tgt = dbs
    tables = ["plain", "excluding", "retyped", "checked", "narrowed", "lowered"]
    for table in tables:
        execute(src, *(s.format(t=table) for s in PLAIN))
    execute(
        tgt,
        "CREATE TABLE retyped (id bigint PRIMARY KEY, qty bigint NOT NULL, note text)",
        "CREATE TABLE checked (id bigint PRIMARY KEY, qty integer NOT NULL CHECK (id <> 1234), "
        "note text)",
    )
    mappings = """
        mappings:
          - source: public.excluding
            exclude: [note]
          - source: public.narrowed
            filter: qty < 25
          - source: public.lowered
            filter: lower(note) LIKE 'n1%'
    """
    cli = CLI(
        tmp_path,
        config([f"public.{t}" for t in tables], mappings=mappings),
        {"SRC_DSN": src, "TGT_DSN": tgt},
    )
    cli.run("backfill", "--parallel", "2")
    expected = rows(src, "SELECT id, qty, note FROM plain ORDER BY id")
    assert rows(tgt, "SELECT id, qty, note FROM plain ORDER BY id") == expected
    assert rows(tgt, "SELECT id, qty, NULL FROM excluding ORDER BY id") == [
        (i, q, None) for i, q, _ in expected
    ]
    assert column_types(tgt, "excluding") == [("id", "bigint"), ("qty", "integer")]
    assert rows(tgt, "SELECT id, qty, note FROM retyped ORDER BY id") == expected
    assert rows(tgt, "SELECT id, qty, note FROM checked ORDER BY id") == [
        r for r in expected if r[0] != 1234
    ]
    assert rows(tgt, "SELECT id, qty, note FROM narrowed ORDER BY id") == [
        r for r in expected if r[1] < 25
    ]
    assert rows(tgt, "SELECT id, qty, note FROM lowered ORDER BY id") == [
        r for r in expected if r[2].startswith("n1")
    ]
    letters = SQLiteStateStore(tmp_path / "state.db").list_dead_letters("pt")
    assert len(letters) == 1 and '"id": 1234' in letters[0].payload
    assert "check" in letters[0].reason.lower()
    # what ran: plain and checked in binary (checked: its 3rd chunk was refused, then read as
    # CSV and its rows bisected); the others decoded
    # (5 chunks each; pg_stat_statements counts only statements that succeeded)
    assert copies(src, "plain", "binary") == 5 and copies(src, "plain", "csv") == 0
    assert copies(src, "checked", "binary") == 5 and copies(src, "checked", "csv") == 1
    assert copies(tgt, "checked", "binary") == 4
    assert copies(src, "narrowed", "binary") >= 3 and copies(src, "narrowed", "csv") == 0
    for table in ("excluding", "retyped", "lowered"):
        assert copies(src, table, "binary") == 0 and copies(src, table, "csv") == 5


def test_stream_after_passthrough_applies_changes_and_replays_safely(dbs, tmp_path, monkeypatch):
    """Updates (with and without the TOASTed column), deletes and inserts of passed-through
    rows reach the target, and the same changes delivered a second time (a replay) leave
    it equal to the source."""
    src, tgt = dbs
    execute(
        src,
        "CREATE TABLE acct (id bigint PRIMARY KEY, counter integer NOT NULL, note text, big text)",
        "INSERT INTO acct SELECT g, 0, 'seed ' || g, CASE WHEN g % 100 = 0 THEN "
        "(SELECT string_agg(md5(x::text || g), '') FROM generate_series(1, 40000) x) END "
        "FROM generate_series(1, 3000) g",
    )
    cli = CLI(tmp_path, config(["public.acct"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.run("backfill")
    assert copies(src, "acct", "binary") == 7
    execute(
        src,
        "UPDATE acct SET counter = counter + 1, note = 'upd' WHERE id % 3 = 0",  # big unsent
        "UPDATE acct SET big = md5(big) WHERE id % 200 = 0",
        "DELETE FROM acct WHERE id % 7 = 0",
        "INSERT INTO acct SELECT g, 5, 'late', NULL FROM generate_series(3001, 3100) g",
        "UPDATE acct SET counter = counter + 10 WHERE id % 5 = 0",
    )
    query = "SELECT id, counter, note, md5(big) FROM acct ORDER BY id"

    async def apply_twice() -> int:
        """Read the changes once without acknowledging them, apply them, then apply them
        all again, each batch with its own checkpoint."""
        loaded = load_config(str(cli.config))
        pipeline = Pipeline("pt", loaded.pipelines["pt"], SQLiteStateStore(tmp_path / "state.db"))
        await pipeline.open()
        try:
            start = await pipeline.checkpoint()
            until = await pipeline.source.current_position()
            batches = [b async for b in pipeline.source.stream(start, until)]
            applied = 0
            for _ in range(2):
                for batch in batches:
                    report = await pipeline.process([batch], resume_position(batch))
                    applied += sum(report.applied.values())
                if not applied:
                    break
                assert rows(tgt, query) == rows(src, query)
            return applied
        finally:
            await pipeline.close()

    for name in ("SRC_DSN", "TGT_DSN", "SYNCENGINE_STATE"):
        monkeypatch.setenv(name, cli.env[name])
    assert asyncio.run(apply_twice()) > 1000
    assert rows(tgt, query) == rows(src, query)
    cli.run("sync", "--once")  # and the stream from the checkpoint finds nothing to redo
    assert rows(tgt, query) == rows(src, query)


AUDITED = (
    "CREATE TABLE acct (id bigint PRIMARY KEY, counter integer NOT NULL, note text, big text)",
)


def _seed_audited(src: str, tgt: str, n: int) -> None:
    execute(
        src,
        *AUDITED,
        f"INSERT INTO acct SELECT g, 0, 'seed ' || g, NULL FROM generate_series(1, {n}) g",
    )
    execute(tgt, *AUDITED)
    install_apply_audit(tgt, "acct", "id", "counter")


def test_killed_after_a_chunk_commit_resumes_without_copying_it_again(dbs, tmp_path):
    """SIGKILL right after the first chunk's target commit, before the state store heard of
    it: the rerun takes the target's done-mark and writes no key twice."""
    src, tgt = dbs
    _seed_audited(src, tgt, 3000)
    cli = CLI(tmp_path, config(["public.acct"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.env["SYNCENGINE_FAULT"] = "postgres.passthrough_after_commit:kill"
    killed = cli.run("backfill", "--parallel", "1", check=False)
    assert killed.returncode == -signal.SIGKILL
    assert rows(tgt, "SELECT count(*) FROM acct") == [(500,)]
    del cli.env["SYNCENGINE_FAULT"]
    resumed = cli.run("backfill", "--parallel", "2")
    assert "1 chunk(s) found committed at the target" in resumed.stdout + resumed.stderr
    query = "SELECT id, counter, note FROM acct ORDER BY id"
    assert rows(tgt, query) == rows(src, query)
    audit = apply_audit(tgt, "acct")
    assert audit.writes == 3000 and audit.reinserted == 0 and audit.repeated == 0, audit


def test_backfill_killed_at_random_resumes_per_chunk(dbs, tmp_path):
    """SIGKILL at random moments while chunks are copied; each rerun resumes; the target
    ends equal to the source with every key written once."""
    src, tgt = dbs
    _seed_audited(src, tgt, 60_000)
    cli = CLI(tmp_path, config(["public.acct"], chunk_rows=2000), {"SRC_DSN": src, "TGT_DSN": tgt})
    rng = random.Random(16)
    kills = 0
    for attempt in range(3):
        proc = cli.start("backfill", "--parallel", "2")
        if attempt == 0:  # the first kill lands among the copied chunks
            wait_for(lambda: rows(tgt, "SELECT count(*) FROM acct")[0][0] > 0, 60, 0.02)
        else:  # then at random, while the resumed snapshot reads
            time.sleep(rng.uniform(0.5, 2.5))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
    cli.run("backfill", "--parallel", "2", timeout=300)
    query = "SELECT id, counter, note FROM acct ORDER BY id"
    assert rows(tgt, query) == rows(src, query)
    audit = apply_audit(tgt, "acct")
    assert audit.reinserted == 0 and audit.repeated == 0 and audit.regressed == 0, audit
    assert kills >= 1, cli.daemon_logs()
    assert copies(src, "acct", "binary") >= 1
