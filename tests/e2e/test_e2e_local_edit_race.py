"""One-way, a strategy that keeps target edits: a hand edit that lands between the pipeline's
read-back of a row and its write.

The conflict step reads the target rows, decides, then the apply writes. A person's update or
delete committed in between was not seen: the row still matched its shadow when read, so the
source's change was written over the edit (an update lost, a deleted row back), no conflict
recorded, under the very strategies chosen to keep such edits. The daemon is stopped right
after its staging step (fault point ``postgres.after_stage``), the row is edited at the
target, then the daemon goes on: the edit waits for the write (the row read back is locked
until it commits) and is then kept, and the source's next change of the row is a conflict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import threading

import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_history_lost import _stopped
from tests.e2e.test_e2e_two_way import SNAPSHOT, TABLE

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      orders:
        source:
          type: postgres
          dsn: "${SRC_DSN}"
          tables: [public.items]
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)

EDITS = {
    "update": ("UPDATE items SET name = 'by hand' WHERE id = 7", [(7, "by hand", 7)]),
    "delete": ("DELETE FROM items WHERE id = 7", []),
}


def edit_while_stopped(daemon: subprocess.Popen[str], dsn: str, statement: str) -> None:
    """Once ``daemon`` stopped inside its apply (row 7 read back, its write staged), run
    ``statement`` at ``dsn``: it must wait while the row read back is locked, and complete
    once the daemon goes on and commits."""
    wait_for(lambda: _stopped(daemon.pid), 60)
    done = threading.Event()

    def by_hand() -> None:
        execute(dsn, statement)
        done.set()

    person = threading.Thread(target=by_hand)
    person.start()
    assert not done.wait(3)  # the row read back is locked until the write commits
    os.kill(daemon.pid, signal.SIGCONT)
    person.join(60)
    assert done.is_set()


@pytest.mark.parametrize("conflicts", ["{strategy: local}", "{strategy: manual}"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edit_between_read_back_and_write_is_kept(
    tmp_path, pg_dsn, pg_target_dsn, conflicts, edit
):
    src, tgt = pg_dsn, pg_target_dsn
    execute(
        src, TABLE, "INSERT INTO items SELECT i, 'n' || i, i, now() FROM generate_series(1, 50) i"
    )
    execute(tgt, TABLE)
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    cli = CLI(tmp_path, config, {"SRC_DSN": src, "TGT_DSN": tgt})
    cli.run("sync", "--once")  # the backfill
    statement, kept = EDITS[edit]
    cli.env["SYNCENGINE_FAULT"] = "postgres.after_stage:stop"  # SIGSTOP there, once
    daemon = cli.start("run")
    try:
        execute(src, "UPDATE items SET name = 'at the source' WHERE id = 7")
        edit_while_stopped(daemon, tgt, statement)
        row7 = lambda: [r for r in rows(tgt, SNAPSHOT) if r[0] == 7]  # noqa: E731
        assert row7() == kept  # the edit came last: it applied over the source's change
        # the source's next change of the row meets the edit: a conflict, the edit stays
        execute(src, "UPDATE items SET name = 'again at the source' WHERE id = 7")
        execute(src, "UPDATE items SET qty = -1 WHERE id = 8")
        wait_for(lambda: (8, "n8", -1) in rows(tgt, SNAPSHOT), 60)
        assert row7() == kept
    finally:
        os.kill(daemon.pid, signal.SIGCONT)  # a failed assertion above left it stopped
        assert cli.stop(daemon) == 0
    parked = json.loads(cli.run("conflicts", "list", "--json").stdout or "[]")
    assert [c["key"] for c in parked] == ([{"id": 7}] if "manual" in conflicts else [])


@pytest.mark.parametrize("edit", ["update", "delete"])
def test_a_hand_edit_of_a_mongo_document_between_read_back_and_write_is_kept(
    tmp_path, pg_dsn, mongo_uri, mongo_db, edit
):
    """A Mongo target has no row locks: its transaction reads the documents it writes again
    and finds the hand edit made since the read-back, and the group is decided again."""
    execute(
        pg_dsn,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int)",  # no timestamp: Mongo
        "INSERT INTO items SELECT i, 'n' || i, i FROM generate_series(1, 50) i",  # keeps ms
    )
    config = CONFIG.replace("{CONFLICTS}", "{strategy: local}").replace(
        '{type: postgres, dsn: "${TGT_DSN}"}',
        '{type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}',
    )
    cli = CLI(tmp_path, config, {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db})
    cli.run("sync", "--once")
    cli.env["SYNCENGINE_FAULT"] = "mongo.before_transaction:stop"  # SIGSTOP there, once
    daemon = cli.start("run")
    with MongoClient(mongo_uri) as client:
        items = client[mongo_db]["items"]
        try:
            execute(pg_dsn, "UPDATE items SET name = 'at the source' WHERE id = 7")
            wait_for(lambda: _stopped(daemon.pid), 60)  # row 7 read back and decided
            if edit == "update":
                items.update_one({"_id": 7}, {"$set": {"name": "by hand"}})
            else:
                items.delete_one({"_id": 7})
            os.kill(daemon.pid, signal.SIGCONT)
            execute(pg_dsn, "UPDATE items SET qty = -1 WHERE id = 8")
            wait_for(lambda: (items.find_one({"_id": 8}) or {}).get("qty") == -1, 60)
            doc = items.find_one({"_id": 7})
            assert (doc and doc["name"]) == ("by hand" if edit == "update" else None), doc
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
            assert cli.stop(daemon) == 0
            print(cli.daemon_logs()[-6000:])
    assert "decided again" in cli.daemon_logs()
