"""Removing the state of a table removed from a pipeline (``checkpoints CONFIG remove``, issue
19), on the real servers: with a daemon running (Postgres to Postgres, the table paused with
changes held) and without one (Mongo to Mongo). The removed table's state is gone from the
state store and the target's own state; the other tables' state is untouched and keeps flowing;
``status --tables`` no longer lists the table."""

from __future__ import annotations

import json
import sqlite3

from tests.e2e import test_e2e_tableops as tableops
from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.tableops_support import mongo_pair

ROWS = 300
PG_CONFIG = tableops.PG_CONFIG.replace("[public.a, public.b]", "[public.a, public.b, public.c]")
PG_CONFIG = PG_CONFIG.replace("    batch:", "    conflicts: {strategy: local}\n    batch:")
#: per state table, the column naming the source table
SOURCE_COLUMNS = {
    "chunks": "source_table",
    "table_stats": "source_table",
    "table_requests": "source_table",
    "paused_tables": "source_table",
    "dead_letters": "source_table",
    "held_changes": "target_table",
    "shadow": "target_table",
}


def _state_rows(cli: CLI, names: tuple[str, ...]) -> dict[str, int]:
    """Rows of each state table that belong to the tables ``names`` (source or target)."""
    marks = ",".join("?" * len(names))
    with sqlite3.connect(cli.dir / "state.db") as db:
        return {
            table: db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} IN ({marks})", names
            ).fetchone()[0]
            for table, column in SOURCE_COLUMNS.items()
        }


def _listed(cli: CLI) -> dict[str, str]:
    listed = json.loads(cli.run("status", "--tables", "--json").stdout)
    return {row["table"]: row["state"] for row in listed}


def _target_shadow(dsn: str) -> dict[str, int]:
    return dict(
        rows(dsn, "SELECT target_table, count(*) FROM _syncengine.shadow GROUP BY 1")  # type: ignore[arg-type]
    )


def test_pg_remove_state_with_the_daemon_running(tmp_path, pg_dsn, pg_target_dsn):
    for table in ("a", "b", "c"):
        execute(
            pg_dsn,
            f"CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL)",
            f"INSERT INTO {table} SELECT i, 0 FROM generate_series(1, {ROWS}) i",
        )
    cli = CLI(tmp_path, PG_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    try:
        for table in ("a", "b", "c"):
            q = f"SELECT count(*) FROM {table}"
            wait_for(lambda q=q: rows(pg_target_dsn, q)[0][0] == ROWS, 120)
        execute(pg_dsn, "UPDATE a SET n = 1", "UPDATE b SET n = 1", "UPDATE c SET n = 1")
        query = "SELECT id, n FROM {} ORDER BY id"
        for table in ("a", "b", "c"):
            q = query.format(table)
            wait_for(lambda q=q: rows(pg_target_dsn, q) == rows(pg_dsn, q), 60)
        # c paused with changes held: its pause, held changes, counters and shadow are state
        cli.run("pause", "--pipeline", "p", "--table", "c")
        execute(pg_dsn, "UPDATE c SET n = 2 WHERE id <= 50")
        wait_for(lambda: _state_rows(cli, ("public.c",))["held_changes"] > 0, 60)
        kept = _state_rows(cli, ("public.c", "c"))
        assert kept["paused_tables"] == kept["table_stats"] == 1
        shadow = _target_shadow(pg_target_dsn)
        assert shadow.get("c", 0) > 0 and shadow.get("a", 0) > 0 and shadow.get("b", 0) > 0

        # still in the config: refused, exit 2, nothing removed
        refused = cli.run("checkpoints", "remove", "-p", "p", "--table", "c", "--yes", check=False)
        assert refused.returncode == 2 and "still reads public.c" in refused.stderr
        # gone from the file, but the daemon was not reloaded: it still reads c and refuses
        cli.config.write_text(PG_CONFIG.replace(", public.c]", "]"))
        refused = cli.run("checkpoints", "remove", "-p", "p", "--table", "c", "--yes", check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "the running daemon (pid" in refused.stderr and "still reads" in refused.stderr
        # nothing removed; the refused request stays as its record (until a removal succeeds)
        assert _state_rows(cli, ("public.c", "c")) == {**kept, "table_requests": 1}
        assert _target_shadow(pg_target_dsn) == shadow
        assert _listed(cli)["public.c"] == "removed"  # status reads the file

        cli.run("reload")
        wait_for(lambda: "tables removed public.c" in cli.daemon_logs(), 30)
        wait_for(lambda: "no longer publishes public.c" in cli.daemon_logs(), 60)
        assert _listed(cli)["public.c"] == "removed"
        others = _state_rows(cli, ("public.a", "public.b", "a", "b"))
        done = cli.run("checkpoints", "remove", "-p", "p", "--table", "c", "--yes")
        assert "removed by the running daemon" in done.stdout
        assert "state of removed table public.c removed" in cli.daemon_logs()

        assert set(_state_rows(cli, ("public.c", "c")).values()) == {0}
        assert _state_rows(cli, ("public.a", "public.b", "a", "b")) == others
        after = _target_shadow(pg_target_dsn)
        assert "c" not in after and after == {t: n for t, n in shadow.items() if t != "c"}
        assert not rows(
            pg_target_dsn,
            "SELECT 1 FROM _syncengine.chunks WHERE source_table = 'public.c' UNION ALL "
            "SELECT 1 FROM _syncengine.meta WHERE name LIKE 'shadow_kept/p/c'",
        )
        assert set(_listed(cli)) == {"public.a", "public.b"}
        # the target table stays as it was; the others keep flowing and c's state stays gone
        assert rows(pg_target_dsn, "SELECT count(*) FROM c WHERE n = 2") == [(0,)]
        execute(pg_dsn, "UPDATE a SET n = 3", "UPDATE c SET n = 3")
        q = query.format("a")
        wait_for(lambda: rows(pg_target_dsn, q) == rows(pg_dsn, q), 60)
        assert set(_state_rows(cli, ("public.c", "c")).values()) == {0}
        assert set(_listed(cli)) == {"public.a", "public.b"}
        assert daemon.poll() is None
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0


MONGO_CONFIG = tableops.MONGO_CONFIG.replace("[a, b]", "[a, b, c]").replace(
    "    batch:", "    conflicts: {strategy: local}\n    batch:"
)


def test_mongo_remove_state_without_a_daemon(tmp_path, mongo_uri, mongo_db):
    pair = mongo_pair(tmp_path, MONGO_CONFIG, mongo_uri, mongo_db, "abc", ROWS)
    cli, src, tgt, converged = pair.cli, pair.src, pair.tgt, pair.converged

    def shadow() -> dict[str, int]:
        """Shadow rows per target collection, wherever the target keeps them."""
        found = {t: tgt["_syncengine_shadow"].count_documents({"t": t}) for t in "abc"}
        in_store = _state_rows(cli, ("a", "b", "c"))["shadow"]  # without transactions
        return {**found, "sqlite": in_store}

    daemon = cli.start("run")
    try:
        for name in ("a", "b", "c"):
            wait_for(lambda n=name: tgt[n].count_documents({}) == ROWS, 120)
        for name in ("a", "b", "c"):
            src[name].update_many({}, {"$set": {"n": 1}})
        for name in ("a", "b", "c"):
            wait_for(lambda n=name: converged(n), 60)
    finally:
        assert cli.stop(daemon) == 0
    try:
        before = shadow()
        assert before["c"] > 0 or before["sqlite"] > 0
        assert _state_rows(cli, ("c",))["table_stats"] == 1
        refused = cli.run("checkpoints", "remove", "-p", "p", "--table", "a", "--yes", check=False)
        assert refused.returncode == 2 and "still reads a" in refused.stderr
        cli.config.write_text(cli.config.read_text().replace("[a, b, c]", "[a, b]"))
        assert _listed(cli)["c"] == "removed"
        others = _state_rows(cli, ("a", "b"))
        target_others = {t: before[t] for t in ("a", "b")}
        done = cli.run("checkpoints", "remove", "-p", "p", "--table", "c", "--yes")
        assert "state of c removed" in done.stdout
        assert set(_state_rows(cli, ("c",)).values()) == {0}
        assert _state_rows(cli, ("a", "b")) == others
        after = shadow()
        assert after["c"] == 0 and {t: after[t] for t in ("a", "b")} == target_others
        assert set(_listed(cli)) == {"a", "b"}
        assert tgt["c"].count_documents({}) == ROWS  # the target collection stays
        # the pipeline runs on without c: a flows, c's state is not created again
        daemon = cli.start("run")
        src["a"].update_many({}, {"$set": {"n": 2}})
        src["c"].update_many({}, {"$set": {"n": 2}})
        wait_for(lambda: converged("a"), 60)
        assert cli.stop(daemon) == 0
        assert set(_state_rows(cli, ("c",)).values()) == {0}
        assert shadow()["c"] == 0
        assert set(_listed(cli)) == {"a", "b"}
    finally:
        pair.close()
