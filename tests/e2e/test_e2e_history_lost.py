"""A Postgres source that lost the changes after the pipeline's checkpoint, as it happens:
a slot the server invalidated (``max_slot_wal_keep_size``), and a slot ahead of a target
restored from an older backup. Rows deleted during the lost span are in neither a new copy nor
the stream; a resync copies every table again and sweeps them, by itself
(``on_history_lost: resnapshot``) or after ``checkpoints reset``.

Before: ``sync`` stopped with "cannot read from logical replication slot" and no way out
(``checkpoints reset`` then failed the same way: the backfill reused the invalidated slot);
dropping the slot by hand and copying again left the deleted rows at the target for good; a
slot ahead of the checkpoint was streamed from silently, skipping the changes between; and
``status`` said nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.integration.mongosource.mongosource_helpers import expired_like
from tests.servers import PostgresServer

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source:
          type: postgres
          dsn: "${SRC_DSN}"
          tables: [public.items]
          on_history_lost: ${ON_LOST}
          slot: ${SLOT}
          heartbeat: 0
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
ITEMS = "SELECT id, note FROM items ORDER BY id"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A cluster that invalidates a slot holding more than 1 MB of WAL past its position."""
    server = PostgresServer(
        settings={"max_slot_wal_keep_size": "1MB", "max_wal_size": "64MB", "min_wal_size": "32MB"}
    ).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def databases(server: PostgresServer) -> tuple[str, str]:
    names = [f"{side}_{uuid.uuid4().hex[:8]}" for side in ("src", "tgt")]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    src, tgt = (server.dsn(name) for name in names)
    execute(
        src,
        "CREATE TABLE items (id bigint PRIMARY KEY, note text)",
        "INSERT INTO items SELECT i, 'a' FROM generate_series(1, 100) i",
    )
    return src, tgt


def _cli(tmp_path, databases: tuple[str, str], on_lost: str) -> CLI:
    src, tgt = databases
    slot = f"slot_{uuid.uuid4().hex[:8]}"  # slot names are per cluster: one a test
    env = {"SRC_DSN": src, "TGT_DSN": tgt, "ON_LOST": on_lost, "SLOT": slot}
    return CLI(tmp_path, CONFIG, env)


def _slot_status(src: str) -> str | None:
    found = rows(
        src, "SELECT wal_status FROM pg_replication_slots WHERE database = current_database()"
    )
    return found[0][0] if found else None


def _lose_history(src: str) -> None:
    """Changes the target has not seen (deletes among them), then WAL past the slot's limit and
    checkpoints until the server invalidates the slot."""
    execute(
        src,
        "DELETE FROM items WHERE id <= 10",
        "UPDATE items SET note = 'b' WHERE id BETWEEN 11 AND 20",
        "INSERT INTO items SELECT i, 'new' FROM generate_series(101, 110) i",
    )
    for _ in range(8):
        execute(
            src,
            "CREATE TABLE IF NOT EXISTS filler (pad text)",
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        )
        if _slot_status(src) == "lost":
            return
    raise AssertionError(f"the slot was not invalidated: {_slot_status(src)}")


def _resync_requests(cli: CLI) -> list[tuple[str, str]]:
    with sqlite3.connect(cli.dir / "state.db") as db:
        return db.execute(
            "SELECT position, details FROM checkpoints WHERE stream = 'resync'"
        ).fetchall()


def test_an_invalidated_slot_stops_the_pipeline_until_a_reset_resyncs_it(tmp_path, databases):
    src, tgt = databases
    cli = _cli(tmp_path, databases, "fail")
    cli.run("sync", "--once")
    _lose_history(src)

    failed = cli.run("sync", "--once", check=False)
    assert failed.returncode != 0
    assert "was invalidated by the server" in failed.stderr, failed.stderr
    assert "on_history_lost: resnapshot" in failed.stderr and "Traceback" not in failed.stderr
    (status,) = json.loads(cli.run("status", "--json").stdout)
    assert "was invalidated by the server (max_slot_wal_keep_size)" in status["warning"]

    cli.run("checkpoints", "reset", "-p", "replica", "--yes")
    (status,) = json.loads(cli.run("status", "--json").stdout)
    assert status["resync"] == "copy: checkpoints reset"  # the resync under way
    shown = cli.run("checkpoints", "show").stdout  # printed the forgotten position only
    assert "replica\tresync under way\tcopy: checkpoints reset" in shown, shown
    (shown_json,) = json.loads(cli.run("checkpoints", "show", "--json").stdout)
    assert shown_json["resync"] == "copy: checkpoints reset"
    result = cli.run("sync", "--once")
    assert "dropped, made anew" in result.stderr
    assert rows(tgt, ITEMS) == rows(src, ITEMS)  # ids 1–10 deleted by the sweep
    assert _slot_status(src) != "lost"
    assert _resync_requests(cli) == []  # done
    execute(src, "UPDATE items SET note = 'streamed' WHERE id = 50")
    cli.run("sync", "--once")
    assert rows(tgt, ITEMS) == rows(src, ITEMS)
    assert cli.run("verify").returncode == 0


def test_the_daemon_resyncs_by_itself_with_on_history_lost_resnapshot(tmp_path, databases):
    src, tgt = databases
    cli = _cli(tmp_path, databases, "resnapshot")
    cli.run("sync", "--once")
    _lose_history(src)
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(tgt, ITEMS) == rows(src, ITEMS), 60)
        execute(src, "DELETE FROM items WHERE id = 50", "INSERT INTO items VALUES (500, 'live')")
        wait_for(lambda: rows(tgt, ITEMS) == rows(src, ITEMS), 60)
    finally:
        assert cli.stop(daemon) == 0
    logs = cli.daemon_logs()
    assert "SOURCE HISTORY LOST" in logs and logs.count("backfill complete") == 1, logs
    assert _resync_requests(cli) == []


def test_a_slot_ahead_of_a_restored_target_is_lost_history(tmp_path, databases):
    """The target restored from a backup older than what the slot confirmed: streaming from
    the older checkpoint would silently start at the slot's position instead."""
    src, tgt = databases
    cli = _cli(tmp_path, databases, "fail")
    cli.run("sync", "--once")
    (old,) = rows(tgt, "SELECT position FROM _syncengine.checkpoints")[0]
    execute(src, "DELETE FROM items WHERE id <= 5", "UPDATE items SET note = 'c' WHERE id = 6")
    cli.run("sync", "--once")
    execute(tgt, f"UPDATE _syncengine.checkpoints SET position = '{old}'")
    execute(tgt, "INSERT INTO items SELECT i, 'a' FROM generate_series(1, 5) i",
            "UPDATE items SET note = 'a' WHERE id = 6")  # fmt: skip
    failed = cli.run("sync", "--once", check=False)
    assert "past this pipeline's checkpoint" in failed.stderr, failed.stderr
    assert rows(tgt, "SELECT count(*) FROM items") == [(100,)]  # nothing skipped silently

    cli.env["ON_LOST"] = "resnapshot"
    result = cli.run("sync", "--once")
    assert "SOURCE HISTORY LOST" in result.stderr
    assert rows(tgt, ITEMS) == rows(src, ITEMS)


def test_a_resync_interrupted_after_its_copy_sweeps_on_the_next_run(tmp_path, databases):
    """The copy done, the sweeps not: a ``backfill`` run alone copies but does not sweep; the
    request stays, and the next ``sync`` sweeps before it streams."""
    src, tgt = databases
    cli = _cli(tmp_path, databases, "fail")
    cli.run("sync", "--once")
    execute(tgt, "INSERT INTO items VALUES (9001, 'ghost')")  # a row the source never had
    cli.run("checkpoints", "reset", "-p", "replica", "--yes")
    cli.run("backfill")
    assert rows(tgt, "SELECT count(*) FROM items WHERE id = 9001") == [(1,)]
    assert [details for _, details in _resync_requests(cli)] != []
    cli.run("sync", "--once")
    assert rows(tgt, ITEMS) == rows(src, ITEMS)
    assert _resync_requests(cli) == []


def test_a_resync_interrupted_before_its_reset_is_reset_on_the_next_run(tmp_path, databases):
    """A crash between recording the request and forgetting the positions: the next run sees
    the request in its reset phase and forgets them then."""
    src, tgt = databases
    cli = _cli(tmp_path, databases, "fail")
    cli.run("sync", "--once")
    execute(src, "DELETE FROM items WHERE id <= 3")
    execute(tgt, "INSERT INTO items VALUES (9001, 'ghost')")
    with sqlite3.connect(cli.dir / "state.db") as db:
        db.execute(
            "INSERT INTO checkpoints(pipeline, stream, position, details, version, updated_at) "
            "VALUES ('replica', 'resync', '', '{\"phase\": \"reset\", \"reason\": \"test\"}', "
            "1, '2026-12-07T00:00:00+00:00')"
        )
    result = cli.run("sync", "--once")
    assert "backfill complete" in result.stderr
    assert rows(tgt, ITEMS) == rows(src, ITEMS)
    assert _resync_requests(cli) == []


MONGO_CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      docs:
        source: {type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}", collections: [items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)


@pytest.mark.parametrize("command", ["sync", "run"])
def test_a_mongo_oplog_that_rolled_over_is_resynced_once(
    tmp_path, mongo_uri, mongo_db, pg_target_dsn, command
):
    """``on_history_lost: resnapshot`` (Mongo's default). Before, the daemon's answer copied
    again without moving the checkpoint, so the stream failed again from the same expired
    token and copied again, forever; ``sync`` stopped; and a deleted document stayed."""
    client: MongoClient = MongoClient(mongo_uri)
    items = client[mongo_db]["items"]
    items.insert_many([{"_id": i, "n": 0} for i in range(1, 51)])
    env = {"MONGO_URI": mongo_uri, "MONGO_DB": mongo_db, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, MONGO_CONFIG, env)
    cli.run("sync", "--once")
    items.insert_one({"_id": 51, "n": 0})
    cli.run("sync", "--once")  # a checkpoint holding a resume token
    items.delete_many({"_id": {"$lte": 5}})
    items.update_one({"_id": 6}, {"$set": {"n": 1}})
    (position,) = rows(pg_target_dsn, "SELECT position FROM _syncengine.checkpoints")[0]
    expired = expired_like(str(position))  # what an oplog that rolled over leaves
    execute(pg_target_dsn, f"UPDATE _syncengine.checkpoints SET position = '{expired}'")
    query = "SELECT _id::int, n::int FROM items ORDER BY 1"

    def source() -> list[tuple]:
        return [(d["_id"], d["n"]) for d in items.find().sort("_id")]

    if command == "sync":
        logs = cli.run("sync", "--once").stderr
    else:
        daemon = cli.start("run")
        try:
            wait_for(lambda: rows(pg_target_dsn, query) == source(), 60)
            items.insert_one({"_id": 100, "n": 7})  # and it streams again afterwards
            wait_for(lambda: rows(pg_target_dsn, query) == source(), 60)
        finally:
            assert cli.stop(daemon) == 0
        logs = cli.daemon_logs()
    assert rows(pg_target_dsn, query) == source()
    assert "SOURCE HISTORY LOST" in logs and logs.count("backfill complete") == 1, logs
    client.close()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_the_target_failing_while_the_daemon_records_a_resync(tmp_path, databases):
    """The daemon meets the lost history and records the resync; the target's connection
    is cut right then (the request stored, the positions not yet forgotten at the target).
    The pipeline stopped as failed until someone restarted the daemon; it now retries,
    and the stored request is carried out on the next round."""
    src, tgt = databases
    cli = _cli(tmp_path, databases, "resnapshot")
    cli.run("sync", "--once")
    _lose_history(src)
    cli.env["SYNCENGINE_FAULT"] = "resync.before_reset:stop"  # SIGSTOP there, once
    daemon = cli.start("run")
    try:
        wait_for(lambda: _stopped(daemon.pid), 60)
        execute(
            tgt,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        os.kill(daemon.pid, signal.SIGCONT)
        wait_for(lambda: rows(tgt, ITEMS) == rows(src, ITEMS), 90)
        execute(src, "DELETE FROM items WHERE id = 60", "INSERT INTO items VALUES (600, 'live')")
        wait_for(lambda: rows(tgt, ITEMS) == rows(src, ITEMS), 60)
    finally:
        assert cli.stop(daemon) == 0
    logs = cli.daemon_logs()
    assert "SOURCE HISTORY LOST" in logs and "transient failure" in logs, logs
    assert "pipeline stopped" not in logs, logs
    assert _resync_requests(cli) == []
