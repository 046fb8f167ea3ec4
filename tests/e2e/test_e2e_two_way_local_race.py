"""Two-way: a local delete that lands between a direction's read-back of a row and its write.

The direction reads the target's rows, resolves, then writes them in the same REPEATABLE READ
transaction. A person's ``DELETE`` of such a row committed in between used to go unseen: the
write's ``INSERT … ON CONFLICT`` found no live row and inserted it again, while the other
direction carried the delete across, so one side kept the row and the other lost it (the
two-writers-and-kills test caught it once in CI). The daemon is stopped right after its
staging step (fault point ``postgres.after_stage``), the row is deleted at the target, then
the daemon goes on: the delete waits for the write (the row read back is locked until it
commits), then both sides end the same, without the row (the delete came last).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.harness import execute, rows, wait_for
from tests.e2e.test_e2e_local_edit_race import edit_while_stopped
from tests.e2e.test_e2e_two_way import SNAPSHOT, make_cli, seed


@pytest.mark.parametrize(
    "conflicts", ["{prefer: source}", "{strategy: timestamp}", "{strategy: merge}"]
)
def test_a_local_delete_between_read_back_and_write_is_not_undone(
    tmp_path, pg_dsn, pg_target_dsn, conflicts
):
    src, tgt = seed(pg_dsn, pg_target_dsn)
    cli = make_cli(tmp_path, src, tgt, conflicts)
    cli.run("sync", "--once")  # the backfill: both sides hold rows 1..50
    assert rows(tgt, SNAPSHOT) == rows(src, SNAPSHOT)
    cli.env["SYNCENGINE_FAULT"] = "postgres.after_stage:stop"  # SIGSTOP there, once
    daemon = cli.start("run")
    try:
        execute(src, "UPDATE items SET name = 'changed at the source' WHERE id = 7")
        edit_while_stopped(daemon, tgt, "DELETE FROM items WHERE id = 7")
        wait_for(lambda: 7 not in {r[0] for r in rows(src, SNAPSHOT)}, 60)
        wait_for(lambda: rows(tgt, SNAPSHOT) == rows(src, SNAPSHOT), 60)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)  # a failed assertion above left it stopped
        assert cli.stop(daemon) == 0
    assert 7 not in {r[0] for r in rows(tgt, SNAPSHOT)}
    assert len(rows(tgt, SNAPSHOT)) == 49
