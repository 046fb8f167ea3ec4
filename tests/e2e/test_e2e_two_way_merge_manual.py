"""Two-way ``merge`` and ``manual`` through the real CLI on two real Postgres servers: a
concurrent edit on both sides and its converged result, whichever direction meets it first."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_two_way import (
    SNAPSHOT,
    applied,
    audit,
    both_edit,
    converge,
    make_cli,
    seed,
)
from tests.e2e.test_e2e_two_way_kill import applied_total, free_port, quiet

ROW = "SELECT id, name, qty FROM items WHERE id = %s"


@pytest.fixture
def sides(pg_dsn, pg_target_dsn):
    return seed(pg_dsn, pg_target_dsn)


@pytest.mark.parametrize("first", ["orders", "orders.reverse"])
@pytest.mark.parametrize("later", ["source", "target"])
def test_merge_combines_fields_and_settles_a_clash_by_commit_time(tmp_path, sides, later, first):
    """id 1: the source changes name, the target qty (different fields: both kept); id 4: both
    change name (the later commit wins); ids 2 and 3: an update against a delete (the later
    commit wins, whole row). The same on both sides whichever direction meets them first."""
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: merge}")
    cli.run("sync", "--once")
    earlier = "target" if later == "source" else "source"
    both_edit(
        src, tgt, earlier, later,
        "UPDATE items SET name = 'src' WHERE id IN (1, 4); DELETE FROM items WHERE id = 2; "
        "UPDATE items SET name = 'src' WHERE id = 3",
        "UPDATE items SET qty = 100 WHERE id = 1; UPDATE items SET name = 'tgt' WHERE id = 4; "
        "UPDATE items SET name = 'tgt' WHERE id = 2; DELETE FROM items WHERE id = 3",
    )  # fmt: skip
    cli.run("sync", "--once", "--pipeline", first)  # either direction may meet them first
    converge(cli)
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    for dsn in (src, tgt):
        assert rows(dsn, ROW, (1,)) == [(1, "src", 100)]  # merged: a field from each side
        assert rows(dsn, ROW, (4,)) == [(4, "src" if later == "source" else "tgt", 4)]
        expected = {"source": [(3, "src")], "target": [(2, "tgt")]}[later]
        assert rows(dsn, "SELECT id, name FROM items WHERE id IN (2, 3) ORDER BY id") == expected
    outcomes = {(k, o) for _, k, s, o in audit(cli) if s == "merge"}
    assert {('{"id":1}', "merged"), ('{"id":4}', "merged")} <= outcomes, audit(cli)
    assert {'{"id":2}', '{"id":3}'} <= {k for k, _ in outcomes}, audit(cli)


def conflicts(cli: CLI) -> list[dict]:
    return json.loads(cli.run("conflicts", "list", "--json").stdout)


def park(cli: CLI, src: str, tgt: str) -> dict:
    """Both sides edit id 1; the forward direction meets it first and parks it, the reverse
    one then holds the target's edit behind that same conflict."""
    cli.run("sync", "--once")
    both_edit(
        src, tgt, "source", "target",
        "UPDATE items SET name = 'src' WHERE id = 1", "UPDATE items SET name = 'tgt' WHERE id = 1",
    )  # fmt: skip
    # sync runs the forward direction first, then the reverse one
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
    (parked,) = conflicts(cli)
    assert (parked["pipeline"], parked["key"]) == ("orders", {"id": 1})
    return parked


def test_manual_parks_on_both_sides_and_resolving_writes_both(tmp_path, sides):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: manual}")
    parked = park(cli, src, tgt)
    assert parked["held_changes"] == 1  # the target's edit, held by the reverse direction
    # parked on both sides: more edits of the key wait too, on either side
    execute(src, "UPDATE items SET qty = 7 WHERE id = 1")
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
    assert rows(src, ROW, (1,)) == [(1, "src", 7)]
    assert rows(tgt, ROW, (1,)) == [(1, "tgt", 1)]
    assert conflicts(cli)[0]["held_changes"] == 2
    # other keys are not blocked
    execute(tgt, "UPDATE items SET name = 'free' WHERE id = 9")
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 1}

    out = cli.run("conflicts", "resolve", str(parked["id"]), "--take", "local").stdout
    # the target's row, then the source's later edit (held, released in commit order)
    assert "released 1 held change(s)" in out, out
    for dsn in (src, tgt):
        assert rows(dsn, ROW, (1,)) == [(1, "src", 7)]
    # written under the manual origin: each reader takes it as an echo, nothing ping-pongs
    for _ in range(2):
        assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    assert conflicts(cli) == []
    decided = {(d, k, o) for d, k, s, o in audit(cli) if s == "manual"}
    assert {("orders", '{"id":1}', "take_local"), ("orders.reverse", '{"id":1}', "take_local")} <= (
        decided
    ), audit(cli)
    # the key flows again, both ways
    execute(tgt, "UPDATE items SET name = 'after' WHERE id = 1")
    converge(cli)
    assert rows(src, ROW, (1,)) == [(1, "after", 7)]


@pytest.mark.parametrize("take", ["local", "remote"])
def test_manual_resolution_without_later_edits_is_the_chosen_row_on_both_sides(
    tmp_path, sides, take
):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: manual}")
    parked = park(cli, src, tgt)
    out = cli.run("conflicts", "resolve", str(parked["id"]), "--take", take).stdout
    assert "released 0 held change(s)" in out, out  # the target's held edit was the conflict
    chosen = "tgt" if take == "local" else "src"
    for dsn in (src, tgt):
        assert rows(dsn, ROW, (1,)) == [(1, chosen, 1)]
    converge(cli)
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    # the shadows agree with both sides: a later edit is a plain change, not a conflict
    execute(src, "UPDATE items SET qty = 5 WHERE id = 1")
    assert applied(cli.run("sync", "--once")) == {"orders": 1, "orders.reverse": 0}
    assert rows(tgt, ROW, (1,)) == [(1, chosen, 5)]
    assert conflicts(cli) == []


def commit_together(*edits: tuple[str, str]) -> None:
    """Each statement in a transaction on its side, committed back to back: both are written
    before the daemon reads either (a concurrent edit, not one after the other)."""
    connections = [psycopg.connect(dsn) for dsn, _ in edits]
    try:
        for conn, (_, statement) in zip(connections, edits, strict=True):
            conn.execute(statement)
        for conn in connections:
            conn.commit()
    finally:
        for conn in connections:
            conn.close()


def test_manual_resolved_while_the_daemon_runs(tmp_path, sides):
    """The daemon holds both directions' origins; the resolution writes under the manual one,
    both sides end equal and the applied counters stop (nothing ping-pongs)."""
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: manual}")
    cli.run("sync", "--once")
    port = free_port()
    daemon = cli.start("run", "--metrics-port", str(port))
    try:
        wait_for(lambda: applied_total(port) >= 0, timeout=60)
        commit_together((src, "UPDATE items SET name = 'src' WHERE id = 1"),
                        (tgt, "UPDATE items SET name = 'tgt' WHERE id = 1"))  # fmt: skip
        wait_for(lambda: len(conflicts(cli)) == 1 and conflicts(cli)[0]["held_changes"] == 1)
        (parked,) = conflicts(cli)
        execute(tgt, "UPDATE items SET name = 'free' WHERE id = 2")  # other keys flow
        wait_for(lambda: rows(src, ROW, (2,)) == [(2, "free", 2)])
        cli.run("conflicts", "resolve", str(parked["id"]), "--take", "merged")
        wait_for(lambda: rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT), timeout=30)
        wait_for(lambda: quiet(port, 2), timeout=30)
        settled = applied_total(port)
        time.sleep(3)
        assert applied_total(port) == settled
        assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
        assert conflicts(cli) == []
    finally:
        assert cli.stop(daemon) == 0
