"""Databases whose session defaults are not Postgres's own (a European DateStyle, SQL-standard
intervals, 15-digit floats, escaped bytea, a local time zone), set the way their owners set
them (ALTER DATABASE … SET): the values arrive exactly, under every strategy, and verify agrees.
"""

from __future__ import annotations

import textwrap
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {strategy: "${STRATEGY}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SETTINGS = {
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "sql_standard",
    "extra_float_digits": "0",
    "bytea_output": "escape",
    "TimeZone": "Asia/Kolkata",
}
SEED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, d date, ts timestamp, tz timestamptz, "
    "iv interval, f8 float8, f4 real, b bytea, n numeric, ds date[], j jsonb, t time, "
    "note text)",
    "INSERT INTO items SELECT i, date '2024-01-02' + i, timestamp '2024-01-02 03:04:05.123456' "
    "+ i * interval '1 day', timestamptz '2024-01-02 03:04:05.654321+00' + i * interval '1 h', "
    "interval '-1 days +02:03:04.5' * i, 0.1 + i / 3.0, (0.1 + i / 7.0)::real, "
    "'\\x00ff10'::bytea || int4send(i), i / 3.0, ARRAY[date '2024-02-03' + i], "
    "jsonb_build_object('x', 0.1 + i / 3.0), time '13:14:15.5', 'n' FROM generate_series(1, 50) i",
)
ALL = (
    "SELECT id, d::text, ts::text, (tz AT TIME ZONE 'UTC')::text, "
    "to_char(iv, 'YYYY MM DD HH24 MI SS US'), f8::text, f4::text, encode(b, 'hex'), n::text, "
    "ds::text, j::text, t::text, note FROM items ORDER BY id"
)


def _unusual(dsn: str, settings: dict[str, str] = SETTINGS) -> None:
    """``settings`` as the database's defaults, as its owner would set them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        for setting, value in settings.items():
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )


def _exact(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, options="-c extra_float_digits=3 -c TimeZone=UTC "
                         "-c DateStyle=ISO -c IntervalStyle=postgres") as conn:  # fmt: skip
        return conn.execute(ALL).fetchall()


@pytest.mark.parametrize("strategy", ["remote", "local", "manual", "merge"])
def test_unusual_session_defaults(tmp_path, pg_dsn, pg_target_dsn, strategy):
    _unusual(pg_dsn)
    _unusual(pg_target_dsn)
    execute(pg_dsn, *SEED)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "STRATEGY": strategy})
    cli.run("sync", "--once")
    assert _exact(pg_target_dsn) == _exact(pg_dsn)
    execute(
        pg_dsn,
        "UPDATE items SET note = 'changed' WHERE id <= 10",
        "UPDATE items SET f8 = f8 * 3, iv = iv * 2, d = d + 1, b = b || '\\x01' WHERE id > 40",
        "INSERT INTO items SELECT id + 100, d, ts, tz, iv, f8, f4, b, n, ds, j, t, note "
        "FROM items WHERE id <= 5",
    )
    result = cli.run("sync", "--once")
    assert _exact(pg_target_dsn) == _exact(pg_dsn)
    assert "conflict" not in result.stderr.lower(), result.stderr
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


LIMITS = {"statement_timeout": "50ms", "idle_in_transaction_session_timeout": "100ms"}
BIG = (
    "CREATE TABLE items (id bigint PRIMARY KEY, note text)",
    "INSERT INTO items SELECT i, repeat('x', 200) FROM generate_series(1, 300000) i",
)


def test_a_databases_time_limits_do_not_stop_a_backfill(tmp_path, pg_dsn, pg_target_dsn):
    """Limits a database's owner set for their applications: a chunk's COPY, the primary key
    built after the load and the snapshot's readers all take longer than these. The engine
    bounds its own waits; before, the source's limit ended ``sync`` with a traceback and the
    target's with "canceling statement due to statement timeout"."""
    execute(pg_dsn, *BIG)
    _unusual(pg_dsn, LIMITS)
    _unusual(pg_target_dsn, LIMITS)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "STRATEGY": "remote"})
    cli.run("sync", "--once", timeout=300)
    unlimited = "-c statement_timeout=0"  # the test's own statements
    with psycopg.connect(pg_dsn, autocommit=True, options=unlimited) as conn:
        conn.execute("UPDATE items SET note = 'y' WHERE id % 3 = 0")
    cli.run("sync", "--once", timeout=300)
    count = "SELECT count(*), count(*) FILTER (WHERE note = 'y') FROM items"
    with psycopg.connect(pg_target_dsn, options=unlimited) as conn:
        assert conn.execute(count).fetchall() == [(300000, 100000)]


def test_a_short_wal_sender_timeout_does_not_end_the_stream(tmp_path, pg_dsn, pg_target_dsn):
    """The walsender ends a connection that sent nothing for ``wal_sender_timeout``, also while
    the stream is paused behind a busy applier. A database may set it far below the server's
    60 s (here 1 s); the stream reports four times as often. Before, every status went out
    every 10 s and the drain ended with "server closed the connection unexpectedly"."""
    execute(pg_dsn, "CREATE TABLE items (id bigint PRIMARY KEY, note text)",
            "INSERT INTO items SELECT i, 'a' FROM generate_series(1, 100000) i")  # fmt: skip
    _unusual(pg_dsn, {"wal_sender_timeout": "1s"})
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "STRATEGY": "local"})
    cli.run("sync", "--once")
    for round_ in (1, 2, 3):
        execute(pg_dsn, "UPDATE items SET note = note || 'b'",
                f"INSERT INTO items SELECT i + {round_ * 1_000_000}, 'c' "
                "FROM generate_series(1, 100000) i")  # fmt: skip
    cli.run("sync", "--once", timeout=300)
    both = "SELECT count(*), min(note), max(note) FROM items"
    assert rows(pg_target_dsn, both) == rows(pg_dsn, both) == [(400000, "abbb", "cbb")]


@pytest.fixture
def rls_role(pg_dsn):
    """A role that owns ``items`` under forced row-level security (only tenant 1's rows
    visible to it), with what the engine needs besides: REPLICATION and CREATE (for the
    publication). Dropped after."""
    role = f"rls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.Identifier(role)))  # fmt: skip
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, tenant int, note text)")
        conn.execute("INSERT INTO items SELECT i, i % 3, 'a' FROM generate_series(1, 30) i")
        conn.execute(sql.SQL("ALTER TABLE items OWNER TO {}").format(sql.Identifier(role)))
        conn.execute("ALTER TABLE items ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE items FORCE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY tenant_one ON items FOR ALL USING (tenant = 1)")
    yield role
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE items")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_rows_hidden_by_row_level_security_stop_the_backfill(
    tmp_path, pg_dsn, pg_target_dsn, rls_role
):
    """Policies apply to a snapshot's ``COPY`` but not to the stream (pgoutput sends every
    row's changes). Before, the backfill copied tenant 1's 10 rows of 30 and said it was
    complete; a later change of a hidden row then brought that row alone."""
    source = make_conninfo(pg_dsn, user=rls_role)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": source, "TGT_DSN": pg_target_dsn, "STRATEGY": "remote"})
    refused = cli.run("sync", "--once", check=False)
    assert refused.returncode == 1
    assert "affected by row-level security policy" in refused.stderr
    assert "BYPASSRLS" in refused.stderr
    execute(pg_dsn, sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(rls_role)))
    cli.run("sync", "--once")
    execute(pg_dsn, "UPDATE items SET note = 'b' WHERE id IN (2, 3)")
    cli.run("sync", "--once")
    every = "SELECT id, tenant, note FROM items ORDER BY id"
    assert len(rows(pg_target_dsn, every)) == 30
    assert rows(pg_target_dsn, every) == rows(pg_dsn, every)


@pytest.mark.parametrize("side", ["source", "target"])
def test_idle_connections_outlive_a_databases_idle_session_timeout(
    tmp_path, pg_dsn, pg_target_dsn, side
):
    """A daemon's catalog and target connections idle as long as the stream is quiet; a
    database's ``idle_session_timeout`` (here 1 s) closed them, and the pipeline stopped
    ("terminating connection due to idle-session timeout", taken for a fatal error)."""
    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, note text)",
            "INSERT INTO items VALUES (1, 'a')")  # fmt: skip
    _unusual(pg_dsn if side == "source" else pg_target_dsn, {"idle_session_timeout": "1s"})
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "STRATEGY": "remote"})
    daemon = cli.start("run")
    count = "SELECT count(*) FROM items"
    try:
        wait_for(lambda: rows(pg_target_dsn, count) == [(1,)], 60)
        for i in (2, 3):
            time.sleep(2.5)  # every connection idle past the limit
            execute(pg_dsn, f"INSERT INTO items VALUES ({i}, 'b')")
            wait_for(lambda i=i: rows(pg_target_dsn, count) == [(i,)], 60)
        assert daemon.poll() is None
    finally:
        cli.stop(daemon)
    logs = cli.daemon_logs()
    assert "idle-session" not in logs and "pipeline stopped" not in logs, logs


@pytest.fixture
def latin1_dsn(pg_dsn, tmp_path):
    """A source database in LATIN1 on the test server (dropped after, its slots with it)."""
    name = f"latin1_{uuid.uuid4().hex[:8]}"
    create = "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(create).format(sql.Identifier(name)))
    dsn = make_conninfo(pg_dsn, dbname=name)
    yield dsn
    execute(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = current_database() AND NOT active")  # fmt: skip
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("strategy", ["remote", "local"])
def test_a_latin1_source_database(tmp_path, latin1_dsn, pg_target_dsn, strategy):
    """pgoutput and ``COPY`` send text in the session's client encoding, which was the
    database's own unless the DSN said otherwise: the first 'é' stopped the pipeline ("not
    valid UTF-8"). The source's sessions ask for UTF-8; the server converts."""
    execute(latin1_dsn, "CREATE TABLE items (id int PRIMARY KEY, note text, doc jsonb, "
            "code varchar(10))", "INSERT INTO items VALUES (1, 'café ü ß', "
            "'{\"n\": \"naïve\"}', 'ñ'), (2, 'plain', '{}', 'x')")  # fmt: skip
    env = {"SRC_DSN": latin1_dsn, "TGT_DSN": pg_target_dsn, "STRATEGY": strategy}
    cli = CLI(tmp_path, CONFIG, env)
    cli.run("sync", "--once")
    execute(latin1_dsn, "UPDATE items SET note = 'Grüße ÿ' WHERE id = 2",
            "INSERT INTO items VALUES (3, 'à la', '{\"é\": 1}', 'ö')")  # fmt: skip
    cli.run("sync", "--once")
    every = "SELECT id, note, doc::text, code FROM items ORDER BY id"
    assert rows(pg_target_dsn, every) == rows(latin1_dsn, every)
    assert rows(pg_target_dsn, "SELECT note FROM items WHERE id = 2") == [("Grüße ÿ",)]
    assert cli.run("verify", check=False).returncode == 0
