"""Two-way Postgres ↔ Postgres through the real CLI: each side's change reaches the other once,
the engine's own writes never come back (replication origins), conflicts converge."""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
import time

import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      orders:
        two_way: true
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.items]
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, stamp timestamptz)"
SNAPSHOT = "SELECT id, name, qty FROM items ORDER BY id"


def make_cli(tmp_path, src: str, tgt: str, conflicts: str = "{prefer: source}") -> CLI:
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    return CLI(tmp_path, config, {"SRC_DSN": src, "TGT_DSN": tgt})


def seed(src: str, tgt: str) -> tuple[str, str]:
    """50 rows at the source, the same table empty at the target."""
    execute(
        src, TABLE, "INSERT INTO items SELECT i, 'n' || i, i, now() FROM generate_series(1, 50) i"
    )
    execute(tgt, TABLE)
    return src, tgt


@pytest.fixture
def sides(pg_dsn, pg_target_dsn):
    return seed(pg_dsn, pg_target_dsn)


def applied(result) -> dict[str, int]:
    """``name: N change(s) applied`` lines of ``sync --once`` by direction."""
    return {
        m[1]: int(m[2])
        for m in re.finditer(r"^(\S+): (\d+) change\(s\) applied", result.stdout, re.M)
    }


def test_each_side_reaches_the_other_once_and_nothing_comes_back(tmp_path, sides):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt)
    cli.run("sync", "--once")
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    execute(
        src, "UPDATE items SET name = 'from source' WHERE id = 1", "DELETE FROM items WHERE id = 2"
    )
    execute(
        tgt,
        "UPDATE items SET name = 'from target' WHERE id = 3",
        "INSERT INTO items VALUES (99, 't', 9, now())",
    )
    first = applied(cli.run("sync", "--once"))
    assert first == {"orders": 2, "orders.reverse": 2}, first
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    assert rows(src, "SELECT name FROM items WHERE id IN (1, 3) ORDER BY id") == [
        ("from source",),
        ("from target",),
    ]
    # the engine's writes carry its replication origins: the readers drop them, nothing echoes
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == {"orders": 0, "orders.reverse": 0}, again
    origins = rows(src, "SELECT external_id FROM pg_replication_origin_status ORDER BY 1")
    assert ("syncengine_orders_reverse",) in origins


def audit(cli: CLI) -> list[tuple[str, str, str, str]]:
    """(direction, row key, strategy, outcome) of every audited conflict decision."""
    with sqlite3.connect(cli.env["SYNCENGINE_STATE"]) as db:
        return db.execute(
            "SELECT pipeline, row_key, strategy, outcome FROM audit ORDER BY pipeline, row_key"
        ).fetchall()


def both_edit(src: str, tgt: str, first: str, second: str, src_sql: str, tgt_sql: str) -> None:
    """The same keys edited on both sides before either change is synced, ``first`` side
    committing first (so its commit time is the older)."""
    by_side = {"source": (src, src_sql), "target": (tgt, tgt_sql)}
    for side in (first, second):
        dsn, statement = by_side[side]
        execute(dsn, statement)
        time.sleep(0.01)  # distinct commit times


def converge(cli: CLI) -> None:
    """Sync until both directions apply nothing (at most a few rounds)."""
    for _ in range(4):
        if applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}:
            return
    raise AssertionError("the directions kept applying changes (ping-pong)")


#: id 1 updated on both sides, 2 deleted at the source and updated at the target, 3 the reverse
SRC_EDITS = (
    "UPDATE items SET name = 'src' WHERE id = 1; DELETE FROM items WHERE id = 2; "
    "UPDATE items SET name = 'src' WHERE id = 3"
)
TGT_EDITS = (
    "UPDATE items SET name = 'tgt' WHERE id = 1; UPDATE items SET name = 'tgt' WHERE id = 2; "
    "DELETE FROM items WHERE id = 3"
)


@pytest.mark.parametrize("first", ["orders", "orders.reverse"])
@pytest.mark.parametrize("later", ["source", "target"])
def test_timestamp_last_writer_wins_deletes_included(tmp_path, sides, later, first):
    """Deterministic update-vs-delete in both orders: id 2 is deleted at the source and updated
    at the target, id 3 the reverse; whichever commits later wins on both sides, whichever
    direction meets the pair first (a delete is never resurrected, an update never lost)."""
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: timestamp}")
    cli.run("sync", "--once")
    earlier = "target" if later == "source" else "source"
    both_edit(src, tgt, earlier, later, SRC_EDITS, TGT_EDITS)
    cli.run("sync", "--once", "--pipeline", first)  # either direction may meet them first
    converge(cli)
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    # id 1: both updated, the later commit wins on both sides
    assert rows(src, "SELECT name FROM items WHERE id = 1") == [
        ("src" if later == "source" else "tgt",)
    ]
    # ids 2 and 3: an update against a delete, the later commit wins
    expected = {"source": [(3, "src")], "target": [(2, "tgt")]}[later]
    for dsn in (src, tgt):
        assert rows(dsn, "SELECT id, name FROM items WHERE id IN (2, 3) ORDER BY id") == expected
    # each conflict is decided (and audited) where it is met first
    decided = {k for _, k, s, _ in audit(cli) if s == "timestamp"}
    assert {'{"id":1}', '{"id":2}', '{"id":3}'} <= decided, audit(cli)


@pytest.mark.parametrize("order", ["update first", "delete first"])
def test_timestamp_provisional_row_over_an_unknown_delete_is_corrected(tmp_path, sides, order):
    """The forward direction meets a source update while the target has deleted the row (it
    cannot know when): it writes the update provisionally; the reverse direction carries the
    delete to the source when it is newer, and the forward direction then writes it back."""
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, "{strategy: timestamp}")
    cli.run("sync", "--once")
    update = (src, "UPDATE items SET name = 'src' WHERE id = 7")
    delete = (tgt, "DELETE FROM items WHERE id = 7")
    for dsn, statement in [update, delete] if order == "update first" else [delete, update]:
        execute(dsn, statement)
        time.sleep(0.01)
    cli.run("sync", "--once", "--pipeline", "orders")  # forward runs first: delete unknown
    converge(cli)
    expected = [] if order == "update first" else [(7, "src")]
    for dsn in (src, tgt):
        assert rows(dsn, "SELECT id, name FROM items WHERE id = 7") == expected
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    assert '{"id":7}' in {k for _, k, _, _ in audit(cli)}, audit(cli)


@pytest.mark.parametrize("prefer", ["source", "target"])
def test_prefer_side_wins_every_conflict_in_both_directions(tmp_path, sides, prefer):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt, f"{{prefer: {prefer}}}")
    cli.run("sync", "--once")
    # the preferred side commits first: its older edits still win
    other = "target" if prefer == "source" else "source"
    both_edit(src, tgt, prefer, other, SRC_EDITS, TGT_EDITS)
    converge(cli)
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    winner = src if prefer == "source" else tgt
    expected = {
        "source": [(1, "src"), (3, "src")],  # the source's delete of 2 wins too
        "target": [(1, "tgt"), (2, "tgt")],
    }[prefer]
    assert rows(winner, "SELECT id, name FROM items WHERE id <= 3 ORDER BY id") == expected
    # audited in the direction that met the conflict: the forward one (it syncs first here)
    outcomes = {(d, k): o for d, k, _, o in audit(cli)}
    for key in ('{"id":1}', '{"id":2}', '{"id":3}'):
        assert outcomes[("orders", key)] == ("remote" if prefer == "source" else "local"), outcomes


def test_status_shows_both_directions(tmp_path, sides):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt)
    cli.run("sync", "--once")
    report = json.loads(cli.run("status", "--json", "--pipeline", "orders").stdout)
    by_name = {info["pipeline"]: info for info in report}
    assert by_name["orders"]["direction"] == "source->target"
    assert by_name["orders.reverse"]["direction"] == "target->source"
    assert all(info["checkpoint"] for info in report), report


def test_daemon_first_start_runs_both_directions(tmp_path, sides):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt)
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT), timeout=90)
        execute(src, "UPDATE items SET name = 'live src' WHERE id = 5")
        execute(tgt, "UPDATE items SET name = 'live tgt' WHERE id = 6")
        wait_for(
            lambda: (
                rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
                and rows(src, "SELECT name FROM items WHERE id IN (5, 6) ORDER BY id")
                == [("live src",), ("live tgt",)]
            ),
            timeout=30,
        )
    finally:
        assert cli.stop(daemon) == 0
    # what the daemon applied is checkpointed in both directions: nothing is left to apply
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
