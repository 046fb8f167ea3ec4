"""The primary key of a first backfill's table built after the load, through the real CLI.

What ran is read from the servers (``pg_stat_statements``, the catalog), never from the
engine's variables: the table the engine created had no key while its chunks were copied,
got it from one ``ALTER TABLE … ADD PRIMARY KEY``, and a table the user created was never
altered. Kills land during the copy and during the key build; every rerun ends with the
source's rows, each key once, and the key in place.
"""

from __future__ import annotations

import random
import signal
import time

from psycopg import sql

import tests.e2e.test_e2e_passthrough as passthrough_tests
from tests.e2e.harness import CLI, execute, rows, wait_for

# the same cluster (one with pg_stat_statements) and databases as the passthrough tests
counted, dbs = passthrough_tests.counted, passthrough_tests.dbs
config, copies = passthrough_tests.config, passthrough_tests.copies

SOURCE = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, qty integer NOT NULL, note text)",
    "INSERT INTO {t} SELECT g, g % 50, 'n' || g FROM generate_series(1, {n}) g",
)
QUERY = "SELECT id, qty, note FROM {t} ORDER BY id"


def seed(src: str, table: str, n: int) -> None:
    execute(src, *(s.format(t=table, n=n) for s in SOURCE))


def primary_key(dsn: str, table: str) -> list[tuple[object, ...]]:
    """The columns of ``table``'s primary key (empty: none)."""
    return rows(
        dsn,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    )


def marks(dsn: str) -> list[tuple[object, ...]]:
    return rows(dsn, "SELECT name FROM _syncengine.meta WHERE name LIKE 'key_after_load %%'")


def key_builds(dsn: str, table: str) -> int:
    """How many ``ALTER TABLE … ADD PRIMARY KEY`` on ``table`` the target committed."""
    return int(
        rows(
            dsn,
            "SELECT coalesce(sum(s.calls), 0)::int FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
            "AND s.query ILIKE 'ALTER TABLE%%ADD PRIMARY KEY%%' AND s.query ILIKE %s",
            (f"%{table}%",),
        )[0][0]
    )


def assert_equal_and_keyed(src: str, tgt: str, table: str, n: int) -> None:
    assert rows(tgt, QUERY.format(t=table)) == rows(src, QUERY.format(t=table))
    assert rows(tgt, f"SELECT count(*), count(DISTINCT id) FROM {table}") == [(n, n)]
    assert primary_key(tgt, table) == [("id",)]
    assert marks(tgt) == []


def test_first_backfill_builds_the_key_after_the_load(dbs, tmp_path):
    """The engine's table gets its key from one build after its chunks were copied through;
    the user's own table (with its key) is copied into and never altered; the stream after
    it upserts against the key."""
    src, tgt = dbs
    seed(src, "fresh", 3000)
    seed(src, "mine", 1000)
    execute(tgt, "CREATE TABLE mine (id bigint PRIMARY KEY, qty integer NOT NULL, note text)")
    cli = CLI(tmp_path, config(["public.fresh", "public.mine"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    done = cli.run("backfill", "--parallel", "2")
    assert "built the primary key of public.fresh after the load" in done.stdout + done.stderr
    assert_equal_and_keyed(src, tgt, "fresh", 3000)
    assert rows(tgt, QUERY.format(t="mine")) == rows(src, QUERY.format(t="mine"))
    assert copies(tgt, "fresh", "binary") == 7 and copies(tgt, "mine", "binary") == 3
    assert key_builds(tgt, "fresh") == 1 and key_builds(tgt, "mine") == 0
    # the key columns stayed NOT NULL throughout; the stream's upserts find the key
    assert rows(
        tgt, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'fresh'::regclass "
        "AND attname = 'id'"
    ) == [(True,)]  # fmt: skip
    execute(src, "UPDATE fresh SET qty = -1 WHERE id <= 10", "DELETE FROM fresh WHERE id = 11")
    cli.run("sync", "--once")
    assert rows(tgt, QUERY.format(t="fresh")) == rows(src, QUERY.format(t="fresh"))


def test_killed_during_the_copy_resumes_and_builds_the_key(dbs, tmp_path):
    """SIGKILL after the first chunk's commit: the table has that chunk and no key; the
    rerun builds the key before it reconciles the remaining chunks by key."""
    src, tgt = dbs
    seed(src, "fresh", 3000)
    cli = CLI(tmp_path, config(["public.fresh"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.env["SYNCENGINE_FAULT"] = "postgres.passthrough_after_commit:kill"
    killed = cli.run("backfill", "--parallel", "1", check=False)
    assert killed.returncode == -signal.SIGKILL
    assert rows(tgt, "SELECT count(*) FROM fresh") == [(500,)]
    assert primary_key(tgt, "fresh") == [] and len(marks(tgt)) == 1
    del cli.env["SYNCENGINE_FAULT"]
    cli.run("backfill", "--parallel", "2")
    assert_equal_and_keyed(src, tgt, "fresh", 3000)


def test_killed_during_the_key_build_resumes_and_builds_it(dbs, tmp_path):
    """SIGKILL inside the key's transaction (the index built, not committed): every row is
    in, the key is not; the rerun copies nothing again and builds it."""
    src, tgt = dbs
    seed(src, "fresh", 3000)
    cli = CLI(tmp_path, config(["public.fresh"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.env["SYNCENGINE_FAULT"] = "postgres.key_built:kill"
    killed = cli.run("backfill", "--parallel", "2", check=False)
    assert killed.returncode == -signal.SIGKILL
    assert rows(tgt, "SELECT count(*) FROM fresh") == [(3000,)]
    assert primary_key(tgt, "fresh") == [] and len(marks(tgt)) == 1
    assert rows(tgt, "SELECT count(*) FROM _syncengine.checkpoints") == [(0,)]
    del cli.env["SYNCENGINE_FAULT"]
    resumed = cli.run("backfill", "--parallel", "2")
    assert "backfill complete, 0 rows" in resumed.stdout + resumed.stderr
    assert_equal_and_keyed(src, tgt, "fresh", 3000)
    assert copies(tgt, "fresh", "binary") == 7  # no chunk copied twice
    assert rows(tgt, "SELECT count(*) FROM _syncengine.checkpoints") == [(1,)]


def test_backfill_killed_at_random_ends_equal_and_keyed(dbs, tmp_path):
    """SIGKILL at random moments of a two-worker backfill into a table the engine creates
    (the first while chunks are copied without the key, then anywhere: the resumed snapshot,
    the key build); the last run ends with the source's rows, each key once, and the key."""
    src, tgt = dbs
    seed(src, "fresh", 60_000)
    cli = CLI(tmp_path, config(["public.fresh"], chunk_rows=2000), {"SRC_DSN": src, "TGT_DSN": tgt})
    rng = random.Random(33)
    kills = 0
    for attempt in range(3):
        proc = cli.start("backfill", "--parallel", "2")
        if attempt == 0:  # the first kill lands among the copied chunks, before the key
            wait_for(lambda: _copied(tgt) > 0, 60, 0.02)
        else:
            time.sleep(rng.uniform(0.3, 2.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
        if attempt == 0:
            assert primary_key(tgt, "fresh") == [] and len(marks(tgt)) == 1
    cli.run("backfill", "--parallel", "2", timeout=300)
    assert kills >= 1, cli.daemon_logs()
    assert_equal_and_keyed(src, tgt, "fresh", 60_000)


def _copied(dsn: str) -> int:
    found = rows(dsn, "SELECT to_regclass('public.fresh') IS NOT NULL")[0][0]
    return int(rows(dsn, "SELECT count(*) FROM fresh")[0][0]) if found else 0


def test_a_key_that_cannot_be_built_fails_loudly_and_keeps_the_rows(dbs, tmp_path):
    """Duplicate keys (here put there by hand while the key was pending) stop the run with
    the table's name and a non-zero exit; no row is dropped, the mark stays."""
    src, tgt = dbs
    seed(src, "fresh", 3000)
    cli = CLI(tmp_path, config(["public.fresh"]), {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.env["SYNCENGINE_FAULT"] = "postgres.key_built:kill"
    cli.run("backfill", "--parallel", "2", check=False)
    del cli.env["SYNCENGINE_FAULT"]
    execute(tgt, "INSERT INTO fresh VALUES (7, 0, 'twin')")
    failed = cli.run("backfill", "--parallel", "2", check=False)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "primary key (id) of public.fresh" in out and "Traceback" not in out
    assert rows(tgt, "SELECT count(*) FROM fresh") == [(3001,)]
    assert primary_key(tgt, "fresh") == [] and len(marks(tgt)) == 1


def test_a_chunk_the_target_refuses_waits_for_the_key(counted, tmp_path):
    """A LATIN1 target refuses a chunk holding a character it cannot store (the source is
    UTF8): that chunk takes the decoded path (ON CONFLICT, bisected to a dead letter), which
    builds the key first; the other chunks were copied through without it."""
    suffix = tmp_path.name[-12:].replace("-", "_").lower()
    names = {"UTF8": f"kl_src_{suffix}", "LATIN1": f"kl_tgt_{suffix}"}
    for encoding, name in names.items():
        execute(
            counted.dsn(),
            sql.SQL("CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
            .format(sql.Identifier(name), sql.Literal(encoding))
            .as_string(None),
        )
    src, tgt = counted.dsn(names["UTF8"]), counted.dsn(names["LATIN1"])
    try:
        execute(tgt, "CREATE EXTENSION pg_stat_statements")
        seed(src, "fresh", 3000)
        execute(src, "UPDATE fresh SET note = 'euro €' WHERE id = 2345")
        execute(src, "UPDATE fresh SET note = 'café' WHERE id = 2346")
        cli = CLI(tmp_path, config(["public.fresh"]), {"SRC_DSN": src, "TGT_DSN": tgt})
        done = cli.run("backfill", "--parallel", "2")
        assert "chunk 4 of public.fresh refused by the target" in done.stderr
        # the decoded path wrote the refused chunk's other rows after the key was built: the
        # key's catalog row and those rows carry the xids of their transactions
        (written_after,) = rows(
            tgt,
            "SELECT count(*) FROM fresh f, pg_class c "
            "WHERE f.xmin::text::bigint > c.xmin::text::bigint AND c.relname = 'fresh_pkey'",
        )[0]
        assert written_after > 0
        # the row the target's encoding cannot hold is a dead letter, not mis-encoded text
        # (the session reads the decoded path's bytes as UTF-8); 'é' converts
        letters = cli.run("deadletters", "list", "--json").stdout
        assert "2345" in letters and "LATIN1" in letters
        unlike = "SELECT id, qty, note FROM fresh WHERE id <> 2345 ORDER BY id"
        assert rows(tgt, unlike) == rows(src, unlike)
        assert rows(tgt, "SELECT note FROM fresh WHERE id = 2346") == [("café",)]
        assert rows(tgt, "SELECT count(*), count(DISTINCT id) FROM fresh") == [(2999, 2999)]
        assert primary_key(tgt, "fresh") == [("id",)] and marks(tgt) == []
        assert copies(tgt, "fresh", "binary") == 6  # the refused chunk's COPY failed
        assert key_builds(tgt, "fresh") == 1
    finally:
        execute(
            src,
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE active_pid IS NOT NULL AND database = current_database()",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = current_database()",
        )
        for name in names.values():
            execute(
                counted.dsn(),
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                .format(sql.Identifier(name))
                .as_string(None),
            )


def test_backfill_parallel_comes_from_the_config_unless_the_flag_says(dbs, tmp_path):
    """``backfill: {parallel: N}`` in the pipeline sets the workers; ``--parallel`` wins."""
    src, tgt = dbs
    seed(src, "fresh", 1000)
    text = config(["public.fresh"]).replace("    batch:", "    backfill: {parallel: 3}\n    batch:")
    cli = CLI(tmp_path, text, {"SRC_DSN": src, "TGT_DSN": tgt})
    assert "pt: backfill, 3 chunk(s) at once" in cli.run("backfill").stderr
    execute(tgt, "DROP TABLE fresh", "DROP SCHEMA _syncengine CASCADE")
    (tmp_path / "state.db").unlink()
    assert "pt: backfill, 1 chunk(s) at once" in cli.run("backfill", "--parallel", "1").stderr
    assert_equal_and_keyed(src, tgt, "fresh", 1000)
